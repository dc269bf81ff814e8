"""What every reference heatmap method shares: finding layers, the class score, normalisation.

The conventions are those of docs/authoring.md ("Heatmap conventions"):
- the class score is the pre-activation logit of the model's last Dense layer, recomputed from
  that layer's input with its kernel and bias; a single sigmoid unit scores z for class 1 and
  -z for class 0;
- maps are upsampled with bilinear `tf.image.resize` and then min-max normalised per image with
  max(range, eps) in the denominator, so a flat map becomes zeros instead of NaN;
- everything is batched and compiled once per model: a method object builds its feature model
  in the constructor and compiles its maps function at the first call, then reuses both;
- one forward pass serves every class and every option set asked for together (`raw`).

Other score definitions ("probability", "loss") exist only so the judge can recognise the usual
mistakes by reproducing them; they are not conventions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import keras
import numpy as np
import tensorflow as tf

EPS = 1e-8
Score = Literal["logit", "probability", "loss"]


def normalize_maps(maps: tf.Tensor, eps: float = EPS) -> tf.Tensor:
    """Per-image min-max to [0, 1]: (m - min) / max(max - min, eps), over every axis but the first."""
    axes = list(range(1, len(maps.shape)))
    low = tf.reduce_min(maps, axis=axes, keepdims=True)
    high = tf.reduce_max(maps, axis=axes, keepdims=True)
    return (maps - low) / tf.maximum(high - low, eps)


def normalize_maps_np(maps: np.ndarray, eps: float = EPS) -> np.ndarray:
    """normalize_maps for numpy arrays (the judge re-normalises recorded maps with it)."""
    maps = np.asarray(maps, dtype=np.float64)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    return (maps - low) / np.maximum(maps.max(axis=axes, keepdims=True) - low, eps)


def resize_maps(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """(B, h, w) -> (B, H, W) with bilinear tf.image.resize (half-pixel centres, as the notebooks do).

    Other conventions (scipy.ndimage.zoom, corner alignment) are mistakes the judge recognises by
    resizing the grid maps itself (autograder.checks.heatmaps.upsample), not conventions.
    """
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


# ----------------------------------------------------------------------------- model anatomy


def find_layer(model: keras.Model, name: str) -> list[keras.layers.Layer]:
    """The path of layers from MODEL's top level down to the layer called NAME (nested sub-models included)."""
    for layer in model.layers:
        if layer.name == name:
            return [layer]
        if isinstance(layer, keras.Model):
            try:
                return [layer, *find_layer(layer, name)]
            except KeyError:
                continue
    raise KeyError(name)


def last_dense(model: keras.Model) -> keras.layers.Dense:
    """The last Dense layer in execution order, looking inside nested sub-models."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense):
            return layer
        if isinstance(layer, keras.Model):
            try:
                return last_dense(layer)
            except ValueError:
                continue
    raise ValueError("the model has no Dense layer: the class score is the logit of its last Dense layer")


def feature_model(model: keras.Model, layer_name: str | None) -> keras.Model:
    """A model from MODEL's input to [activations of LAYER_NAME, input of the last Dense] (or only the latter).

    A functional model whose layers are all at its top level reuses its own symbolic tensors (any
    topology works). A Sequential, and a model with the layer inside a nested sub-model (e.g. a
    VGG16 base kept as one layer), are replayed layer by layer on a fresh input, opening nested
    models the same way: a Sequential's layers can belong to several graphs (a loaded Sequential
    is built more than once), so `layer.output` and `dense.input` need not be connected. Replaying
    assumes a chain, which a Sequential is and every model of this course is.
    """
    dense = last_dense(model)
    top = {layer.name for layer in model.layers}
    inputs = model.inputs[0]
    on_top = dense.name in top and (layer_name is None or layer_name in top)
    if on_top and not isinstance(model, keras.Sequential):
        outputs = [dense.input] if layer_name is None else [model.get_layer(layer_name).output, dense.input]
        return keras.Model(inputs, outputs)
    x = keras.Input(shape=tuple(inputs.shape[1:]), dtype=inputs.dtype)
    found: dict[str, keras.KerasTensor] = {}
    _replay(model, x, layer_name, dense, found)
    if layer_name is not None and "layer" not in found:
        raise KeyError(f"no layer named {layer_name!r} in the model")
    outputs = [found["dense_in"]] if layer_name is None else [found["layer"], found["dense_in"]]
    return keras.Model(x, outputs)


def _replay(model: keras.Model, x, layer_name: str | None, dense: keras.layers.Layer, found: dict):
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer is dense:
            found["dense_in"] = x
        if isinstance(layer, keras.Model) and _contains(layer, layer_name, dense):
            x = _replay(layer, x, layer_name, dense, found)
        else:
            x = layer(x)
        if layer.name == layer_name:
            found["layer"] = x
    return x


def _contains(model: keras.Model, layer_name: str | None, dense: keras.layers.Layer) -> bool:
    try:
        find_layer(model, dense.name)
        return True
    except KeyError:
        pass
    if layer_name is None:
        return False
    try:
        find_layer(model, layer_name)
        return True
    except KeyError:
        return False


# ----------------------------------------------------------------------------- class score


class ClassScore:
    """The class score from the last Dense layer's input: its logit (or, for diagnosis, a usual mistake)."""

    def __init__(self, dense: keras.layers.Dense, kind: Score = "logit"):
        self.kernel = dense.kernel
        self.bias = dense.bias
        self.units = int(dense.units)
        self.activation: Callable = dense.activation
        self.kind = kind

    @property
    def num_classes(self) -> int:
        return 2 if self.units == 1 else self.units

    def check_class(self, class_index: int) -> int:
        c = int(class_index)
        if not 0 <= c < self.num_classes:
            raise ValueError(f"class_index {class_index} is not a class of this model (0..{self.num_classes - 1})")
        return c

    def logits(self, features: tf.Tensor) -> tf.Tensor:
        z = tf.matmul(features, self.kernel)
        return z + self.bias if self.bias is not None else z

    def __call__(self, features: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
        """(B, features) -> (B,) score of CLASS_INDEX (an int32 scalar tensor)."""
        logits = self.logits(features)
        if self.units == 1:
            z = logits[:, 0]
            sign = tf.where(tf.equal(class_index, 1), 1.0, -1.0)
            if self.kind == "logit":
                return sign * z
            if self.kind == "probability":
                return tf.sigmoid(sign * z)
            return tf.nn.softplus(-sign * z)  # binary crossentropy of the target class
        if self.kind == "logit":
            return tf.gather(logits, class_index, axis=1)
        if self.kind == "probability":
            return tf.gather(self.activation(logits), class_index, axis=1)
        return -tf.gather(tf.nn.log_softmax(logits), class_index, axis=1)  # crossentropy of the target class

    def direction(self, class_index: tf.Tensor) -> tf.Tensor:
        """d logit-score / d features: the Dense kernel column (sign-flipped for class 0 of a sigmoid unit)."""
        if self.units == 1:
            return self.kernel[:, 0] * tf.where(tf.equal(class_index, 1), 1.0, -1.0)
        return tf.gather(self.kernel, class_index, axis=1)


# ----------------------------------------------------------------------------- method base


def _frozen(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(options.items()))


class HeatmapMethod:
    """A heatmap method bound to one model: build once, call on many batches.

    Subclasses declare their options with defaults (`defaults`) and implement
    `_maps(images, classes, variants)` in TensorFlow ops: the raw maps of every class for every
    option set, from ONE forward pass, so the judge gets the reference and every known mistake for
    the price of one (the layers below the map are where the cost is). `raw` compiles that once per
    (number of classes, variants) with a batch-size-agnostic signature, so neither a new batch size
    nor new class indices retrace; `finish` upsamples and normalises.
    """

    defaults: ClassVar[dict[str, Any]] = {"score": "logit"}
    layer_name: str | None = None

    def __init__(self, model: keras.Model, layer_name: str | None = None, **options: Any):
        self.model = model
        self.layer_name = layer_name
        self.options = self._with(self.defaults, options)
        self.features = feature_model(model, layer_name)
        dense = last_dense(model)
        self.scores = {kind: ClassScore(dense, kind) for kind in ("logit", "probability", "loss")}
        self.score = self.scores[self.options.get("score", "logit")]
        shape = tuple(model.inputs[0].shape[1:])
        self.input_size = (int(shape[0]), int(shape[1]))
        self._image_spec = tf.TensorSpec((None, *shape), tf.float32)
        self._raw: dict[tuple, Callable] = {}

    def _maps(self, images: tf.Tensor, classes: tf.Tensor, variants: list[dict[str, Any]]) -> list[list[tf.Tensor]]:
        """Raw (un-normalised) maps [variant][class] -> (B, h, w) at the method's own resolution."""
        raise NotImplementedError

    def _features(self, images: tf.Tensor) -> list[tf.Tensor]:
        """[activations of the layer, input of the last Dense], or [the latter] without a layer."""
        out = self.features(images, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _with(self, options: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(changes) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no option {unknown[0]!r} (options: {sorted(self.defaults)})")
        return {**options, **changes}

    def variant(self, **changes: Any) -> dict[str, Any]:
        """This method's options with CHANGES (a known mistake's options, e.g. relu=False)."""
        return self._with(self.options, changes)

    def raw_function(self, n_classes: int, variants: Sequence[Mapping[str, Any]] | None = None) -> Callable:
        """The compiled (images, classes) -> (V, C, B, h, w) raw maps for N_CLASSES classes and VARIANTS."""
        chosen = [dict(v) for v in (variants or [self.options])]
        key = (int(n_classes), tuple(_frozen(v) for v in chosen))
        if key not in self._raw:

            def run(images, classes):
                return tf.stack([tf.stack(row) for row in self._maps(images, classes, chosen)])

            signature = [self._image_spec, tf.TensorSpec((key[0],), tf.int32)]
            self._raw[key] = tf.function(run, input_signature=signature)
        return self._raw[key]

    def raw(self, images, classes: Sequence[int], variants: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
        """Raw maps (V, C, B, h, w): every option set in VARIANTS (default: this method's own) for every class."""
        checked = [self.score.check_class(c) for c in classes]
        images = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        return self.raw_function(len(checked), variants)(images, tf.constant(checked, tf.int32)).numpy()

    def finish(self, raw: np.ndarray, upsample: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(maps, spread, scale) of raw maps (B, h, w): normalised (upsampled to the input size first when
        UPSAMPLE) and, per image, the raw map's max - min and max |value| at that resolution.

        A raw spread tiny against the scale means the normalised map is mostly rounding noise.
        """
        maps = tf.convert_to_tensor(np.asarray(raw, dtype=np.float32))
        if upsample and tuple(maps.shape[1:3]) != self.input_size:
            maps = resize_maps(maps, self.input_size)
        spread = tf.reduce_max(maps, axis=(1, 2)) - tf.reduce_min(maps, axis=(1, 2))
        return normalize_maps(maps).numpy(), spread.numpy(), tf.reduce_max(tf.abs(maps), axis=(1, 2)).numpy()

    def with_conditioning(self, images, class_index: int, upsample: bool = True) -> tuple[np.ndarray, ...]:
        """(maps, spread, scale) for one class: see `finish`."""
        return self.finish(self.raw(images, [class_index])[0, 0], bool(upsample))

    def __call__(self, images, class_index: int, upsample: bool = True) -> np.ndarray:
        """Normalised maps (B, H, W) as float32 numpy, H, W the input size (or the conv grid without upsampling)."""
        return self.with_conditioning(images, class_index, upsample)[0]

    def class_scores(self, features: tf.Tensor, classes: tf.Tensor, kinds: Sequence[str]) -> dict[tuple, tf.Tensor]:
        """(kind, i) -> the summed score of classes[i] over the batch (images are independent in inference
        mode, so the gradient of the sum is each image's own gradient)."""
        return {
            (kind, i): tf.reduce_sum(self.scores[kind](features, classes[i]))
            for kind in kinds
            for i in range(int(classes.shape[0]))
        }

    @staticmethod
    def per_variant_and_class(
        variants: list[dict[str, Any]], classes: tf.Tensor, one: Callable[[dict[str, Any], int], tf.Tensor]
    ) -> list[list[tf.Tensor]]:
        """[variant][class] -> ONE(variant, i), i the index into CLASSES: the shape `_maps` returns."""
        return [[one(v, i) for i in range(int(classes.shape[0]))] for v in variants]

"""Heatmaps for Lab 5: CAM, saliency and Grad-CAM as the earlier labs built them, batched, for any model.

Labs 1-4 ask you to write these yourself; Lab 5 measures them, so it needs versions that work on
*any* model of the course's shape (a chain of layers ending in global average pooling and a
Dense layer), including copies whose layers have been re-initialised. The conventions are the
course's (docs/authoring.md): the class score is the last Dense layer's logit, maps are resized
with bilinear tf.image.resize to the input size and min-max normalised per image with an epsilon,
so a flat map becomes zeros. Every function takes a batch (B, H, W, C) and either one class index
for the whole batch or one per image (an int array (B,), e.g. the true labels), and returns float32
numpy maps (B, H, W), equal to the maps of the images one at a time: one call serves a whole batch
of mixed classes, with no loop over classes.

The models are run layer by layer in eager mode: nothing is compiled per model, so calling these
on a fresh randomised copy costs no retracing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 1e-8


def _layers(model):
    import keras

    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not chain or not isinstance(chain[-1], keras.layers.Dense):
        raise ValueError("the model must end in a Dense layer (the course's CAM-ready head)")
    return chain


def _forward(model, images, layer_name: str | None):
    """(activations of LAYER_NAME or None, class logits) for a batch, running the layers one by one."""
    import tensorflow as tf

    chain = _layers(model)
    x, activations = images, None
    for layer in chain[:-1]:
        x = layer(x, training=False)
        if layer.name == layer_name:
            activations = x
    if layer_name is not None and activations is None:
        raise KeyError(f"no layer named {layer_name!r} before the last Dense layer")
    dense = chain[-1]
    logits = tf.matmul(x, dense.kernel) + dense.bias
    return activations, logits, dense


def _classes(class_index, batch_size: int) -> np.ndarray:
    """CLASS_INDEX (an int, or one per image) as an int array (B,)."""
    classes = np.asarray(class_index)
    if classes.ndim == 0:
        return np.full(batch_size, int(classes), dtype=np.int64)
    if classes.shape != (batch_size,):
        raise ValueError(f"class_index must be an int or {batch_size} ints (one per image), got shape {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"class_index must hold ints (class numbers), got dtype {classes.dtype}")
    return classes.astype(np.int64)


def _sigmoid_sign(classes: np.ndarray) -> np.ndarray:
    """A single sigmoid unit scores z for class 1 and -z for class 0: +1 or -1 per image."""
    return np.where(classes == 1, 1.0, -1.0)


def _direction(dense, classes: np.ndarray):
    """(units_in, B): the Dense weights of each image's class score (a single sigmoid unit: +w for 1, -w for 0)."""
    import tensorflow as tf

    if int(dense.units) == 1:
        return dense.kernel[:, :1] * tf.constant(_sigmoid_sign(classes)[None, :], dense.kernel.dtype)
    return tf.gather(dense.kernel, classes, axis=1)


def _score(logits, dense, classes: np.ndarray):
    """Each image's class score: the logit of its class (a single sigmoid unit: z for class 1, -z for class 0)."""
    import tensorflow as tf

    if int(dense.units) == 1:
        return logits[:, 0] * tf.constant(_sigmoid_sign(classes), logits.dtype)
    return tf.gather(logits, classes, axis=1, batch_dims=1)


def normalize(maps, eps: float = EPS) -> np.ndarray:
    """Per-image min-max to [0, 1]: (m - min) / max(max - min, eps); a flat map becomes zeros."""
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / np.maximum(high - low, np.float32(eps))


def _resize(maps, size: tuple[int, int]):
    import tensorflow as tf

    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


def _batch(images):
    import tensorflow as tf

    return tf.convert_to_tensor(np.asarray(images, dtype=np.float32))


def class_logits(model, images) -> np.ndarray:
    """(B, units) logits of the last Dense layer (its output before the activation)."""
    return _forward(model, _batch(images), None)[1].numpy()


def cam(model, images, class_index, layer_name: str) -> np.ndarray:
    """Class Activation Map: sum_k A_k * W[k, c] on LAYER_NAME's output, resized, normalised."""
    import tensorflow as tf

    batch = _batch(images)
    activations, _, dense = _forward(model, batch, layer_name)
    direction = _direction(dense, _classes(class_index, batch.shape[0]))
    maps = tf.einsum("bijk,kb->bij", activations, direction)
    return normalize(_resize(maps, batch.shape[1:3]))


def saliency(model, images, class_index) -> np.ndarray:
    """Vanilla saliency: max over channels of |d logit_c / d x|, normalised."""
    import tensorflow as tf

    batch = _batch(images)
    classes = _classes(class_index, batch.shape[0])
    with tf.GradientTape() as tape:
        tape.watch(batch)
        _, logits, dense = _forward(model, batch, None)
        total = tf.reduce_sum(_score(logits, dense, classes))
    grads = tape.gradient(total, batch)
    return normalize(tf.reduce_max(tf.abs(grads), axis=-1))


def grad_cam(model, images, class_index, layer_name: str) -> np.ndarray:
    """Grad-CAM: relu(sum_k w_k A_k), w_k the spatial mean of d logit_c / d A_k, resized, normalised."""
    import tensorflow as tf

    batch = _batch(images)
    classes = _classes(class_index, batch.shape[0])
    with tf.GradientTape() as tape:
        activations, logits, dense = _forward(model, batch, layer_name)
        total = tf.reduce_sum(_score(logits, dense, classes))
    grads = tape.gradient(total, activations)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    maps = tf.nn.relu(tf.einsum("bijk,bk->bij", activations, weights))
    return normalize(_resize(maps, batch.shape[1:3]))


def methods(layer_name: str) -> dict[str, Callable[..., np.ndarray]]:
    """{"CAM", "saliency", "Grad-CAM"}: functions (model, images, class_index) -> maps, for LAYER_NAME;
    CLASS_INDEX is one int or one per image."""
    return {
        "CAM": lambda model, images, c: cam(model, images, c, layer_name),
        "saliency": saliency,
        "Grad-CAM": lambda model, images, c: grad_cam(model, images, c, layer_name),
    }


def linear_classifier(weights, bias, image_shape):
    """A Keras model Flatten -> Dense(softmax) with the given weights (N, classes): its curves are known exactly.

    The Lab 5 grader uses it to check deletion and insertion curves against their closed form.
    """
    import keras

    weights = np.asarray(weights, dtype=np.float32)
    model = keras.Sequential(
        [
            keras.Input(shape=tuple(int(d) for d in image_shape)),
            keras.layers.Flatten(),
            keras.layers.Dense(weights.shape[1], activation="softmax"),
        ]
    )
    model.layers[-1].set_weights([weights, np.asarray(bias, dtype=np.float32)])
    return model

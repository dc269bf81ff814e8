"""The VGG16 convolutional base for Lab 4, with ImageNet weights when they are on this machine.

Nothing here downloads: the weights are used when the file is in the Keras cache, at
``weights_path`` or at $CNNVIS_VGG16_WEIGHTS; otherwise the base is randomly initialised and a
one-line notice is printed (to stdout: nbgrader scores a cell that wrote to stderr as failed).
The architecture, and so the model summary and parameter count, is the same either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

VGG16_WEIGHTS_ENV = "CNNVIS_VGG16_WEIGHTS"
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_BASE_PARAMS = 14_714_688
WEIGHTS_CHOICES = ("auto", "imagenet", "none")


def find_vgg16_weights(weights_path: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing VGG16 no-top weights file: weights_path, $CNNVIS_VGG16_WEIGHTS, the Keras cache."""
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    candidates = [weights_path, os.environ.get(VGG16_WEIGHTS_ENV), keras_home / "models" / VGG16_NOTOP_FILE]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    return None


def vgg16_base(
    input_shape: tuple[int, int, int] = (224, 224, 3), weights: str = "auto", weights_path: str | None = None
):
    """keras.applications.VGG16(include_top=False): ImageNet weights if found, else random ones.

    weights: "auto" (ImageNet weights when found, else weights=None with a printed notice),
    "imagenet" (raise FileNotFoundError when not found: no download is attempted), or "none".
    Returns a keras.Model named "vgg16" with 14,714,688 parameters either way.
    """
    import keras

    if weights not in WEIGHTS_CHOICES:
        raise ValueError(f"weights must be one of {WEIGHTS_CHOICES}, got {weights!r}")
    found = find_vgg16_weights(weights_path) if weights != "none" else None
    if weights == "imagenet" and found is None:
        raise FileNotFoundError(
            f"VGG16 ImageNet weights not found: put {VGG16_NOTOP_FILE} in ~/.keras/models/, "
            f"pass weights_path, or set ${VGG16_WEIGHTS_ENV}"
        )
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=tuple(input_shape))
    if found is not None:
        base.load_weights(str(found))
        print(f"VGG16 base: ImageNet weights from {found}.")
    elif weights == "auto":
        print("VGG16 base: ImageNet weights not found on this machine, using random weights (weights=None).")
    return base


def vgg16_preprocess(images01: np.ndarray) -> np.ndarray:
    """RGB images in [0, 1] to what VGG16 expects: float32, BGR, ImageNet channel means subtracted.

    VGG16 was trained with Caffe, on BGR images in [0, 255] centred by the ImageNet mean
    (103.939, 116.779, 123.68) and not scaled. keras.applications.vgg16.preprocess_input does
    exactly that, so the tensor the model sees is BGR and centred, while our images, the files
    we read and the heatmaps we show stay RGB in [0, 1]. Never feed [0, 1] RGB to VGG16 directly,
    and never convert the images for display back from this tensor.
    """
    from keras.applications import vgg16

    images = np.asarray(images01, dtype=np.float32) * np.float32(255.0)
    return np.asarray(vgg16.preprocess_input(images), dtype=np.float32)


def model_above(model, layer_name: str):
    """The layers of MODEL after LAYER_NAME as a model of their own, on LAYER_NAME's output (weights shared).

    Training it trains those layers of MODEL: they are the same layer objects.
    """
    import keras

    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ValueError(f"{model.name} has no layer {layer_name!r}")
    start = names.index(layer_name) + 1
    features = keras.Input(shape=tuple(model.get_layer(layer_name).output.shape[1:]), name=f"{layer_name}_features")
    outputs = features
    for layer in model.layers[start:]:
        outputs = layer(outputs)
    return keras.Model(features, outputs, name=f"above_{layer_name}")


def fit_above_frozen(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    frozen_through: str,
    epochs: int,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
):
    """Fine-tune the trainable top of MODEL on features of its frozen base computed once; return the history.

    Layers up to FROZEN_THROUGH never change, so their output for a given image never changes either:
    computing it once and training only the layers above on it gives the same updates as fitting the
    whole model (no augmentation, no dropout or batch norm below the cut), at a fraction of the cost, since
    every epoch after the first skips the frozen blocks' forward pass. The learning rate warms up over the
    first tenth of the steps, then follows a cosine decay to zero: large steps early on, small ones at the
    end, so a short run settles instead of jumping around. The loss and metrics are MODEL's own (compile
    it first).
    """
    import keras

    if not all(
        not layer.trainable for layer in model.layers[: [x.name for x in model.layers].index(frozen_through) + 1]
    ):
        raise ValueError(f"the layers up to {frozen_through!r} must be frozen (trainable=False)")
    base = keras.Model(model.inputs[0], model.get_layer(frozen_through).output)
    features = base.predict(np.asarray(images, dtype=np.float32), batch_size=batch_size, verbose=0)
    top = model_above(model, frozen_through)
    steps = max(1, int(epochs) * -(-len(features) // int(batch_size)))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps, warmup_target=float(learning_rate), warmup_steps=max(1, steps // 10)
    )
    top.compile(optimizer=keras.optimizers.Adam(schedule), loss=model.loss, metrics=["accuracy"])
    keras.utils.set_random_seed(seed)  # the shuffling order
    return top.fit(
        features, np.asarray(labels), batch_size=int(batch_size), epochs=int(epochs), verbose=0, shuffle=True
    )

"""How close the reference heatmaps come to their cost limit, and how they compare with tf-keras-vis.

    python benchmarks/heatmaps.py            # 300x300 CNN (Labs 2-3) and VGG16 224 (Lab 4), 7 repeats
    python benchmarks/heatmaps.py --quick    # the 300x300 CNN only, 3 repeats

For each method, model and batch size (1 and 8), in one run: the reference's time (a normal call:
numpy in, numpy out); the limit, which is one compiled forward pass of the same model and batch
for CAM and Grad-CAM (with a GAP + Dense head Grad-CAM needs no more) and a compiled forward +
backward to the input for saliency; and tf-keras-vis 0.8.7 on the same input (no CAM there).
Times are medians of interleaved repeats (limit, reference, tf-keras-vis in turn, so that load
from other processes hits all three alike), after one warm-up call each. The limits return the
model's output alongside any gradient: a bound that returned only the gradient would let the
graph optimiser skip the convolutional stack and look impossibly fast.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from autograder.reference import CAM, GradCAM, Saliency  # noqa: E402

L = keras.layers


def cnn300() -> keras.Model:
    """The Lab 3 model (also Lab 2's body): four 3x3 conv layers with pooling, GAP, Dense(2) softmax."""
    layers: list = [keras.Input((300, 300, 3))]
    for i, filters in enumerate((16, 32, 64, 128)):
        layers.append(L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv2d_{i}"))
        if i < 3:
            layers.append(L.MaxPooling2D(name=f"max_pooling2d_{i}"))
    layers += [L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax", name="dense")]
    return keras.Sequential(layers, name="cnn300")


def vgg16_224() -> keras.Model:
    """The Lab 4 model: VGG16 (weights=None offline; the cost is the same) + GAP + Dense(2) softmax."""
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    x = L.GlobalAveragePooling2D()(base.outputs[0])
    return keras.Model(base.inputs[0], L.Dense(2, activation="softmax", name="dense")(x), name="vgg16_224")


def forward_limit(model: keras.Model) -> Callable:
    run = tf.function(lambda x: model(x, training=False))
    return lambda x: run(tf.convert_to_tensor(x)).numpy()


def forward_backward_limit(model: keras.Model) -> Callable:
    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=False)
            total = tf.reduce_sum(y[:, 1])
        return tape.gradient(total, x), y  # return y too, so the forward pass cannot be optimised away

    def call(x):
        grad, y = run(tf.convert_to_tensor(x))
        return grad.numpy(), y.numpy()

    return call


def tf_keras_vis(method: str, model: keras.Model, layer: str) -> Callable | None:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency as TkvSaliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    wrapped = keras.Model(model.inputs, model.outputs)  # tf-keras-vis needs a functional model on Keras 3
    if method == "gradcam":
        tool = Gradcam(wrapped, model_modifier=ReplaceToLinear(), clone=True)
        return lambda x: tool(CategoricalScore([1] * len(x)), x, penultimate_layer=layer)
    if method == "saliency":
        tool = TkvSaliency(wrapped, model_modifier=ReplaceToLinear(), clone=True)
        return lambda x: tool(CategoricalScore([1] * len(x)), x, keepdims=False)
    return None


def median_times(fns: dict[str, Callable | None], x: np.ndarray, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name, fn in fns.items() if fn is not None}
    for name in times:
        fns[name](x)  # warm-up: tracing and first-call costs are not what is measured
    for _ in range(repeats):
        for name in times:
            start = time.perf_counter()
            fns[name](x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 300x300 CNN only, 3 repeats")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    models = [(cnn300, "conv2d_3")] if args.quick else [(cnn300, "conv2d_3"), (vgg16_224, "block5_conv3")]
    keras.utils.set_random_seed(0)
    header = (
        f"{'model':<10} {'method':<9} {'batch':>5} {'reference':>10} {'limit':>10} {'ratio':>6} "
        f"{'tf-keras-vis':>12} {'speed-up':>8}"
    )
    print(f"median of {repeats} interleaved repeats, milliseconds; ratio = reference / limit")
    print(header)
    for build, layer in models:
        model = build()
        forward, forward_backward = forward_limit(model), forward_backward_limit(model)
        methods = {
            "cam": (CAM(model, layer), forward),
            "gradcam": (GradCAM(model, layer), forward),
            "saliency": (Saliency(model), forward_backward),
        }
        for name, (reference, limit) in methods.items():
            tkv = tf_keras_vis(name, model, layer)
            for batch in (1, 8):
                x = np.random.default_rng(batch).random((batch, *model.inputs[0].shape[1:]), dtype=np.float32)
                t = median_times({"reference": lambda x, r=reference: r(x, 1), "limit": limit, "tkv": tkv}, x, repeats)
                tkv_text = (
                    f"{t['tkv'] * 1e3:12.1f} {t['tkv'] / t['reference']:7.1f}x"
                    if "tkv" in t
                    else (f"{'n/a':>12} {'':>8}")
                )
                print(
                    f"{model.name:<10} {name:<9} {batch:>5} {t['reference'] * 1e3:10.1f} {t['limit'] * 1e3:10.1f} "
                    f"{t['reference'] / t['limit']:6.2f} {tkv_text}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The reference heatmaps against an independent implementation (tf-keras-vis) and against mathematics.

Also home of the seed-model builders the other heatmap tests import (`seed_cnn`, `seed_vgg16`).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.saliency import Saliency as TkvSaliency
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from autograder.course import load_course
from autograder.reference import CAM, GradCAM, Saliency, normalize_maps_np
from autograder.reference.base import feature_model

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
L = keras.layers


def seed_cnn(key: str, size: int | None = None, seed: int = 0) -> keras.Sequential:
    """A Lab 1-3 model exactly as course.yml specifies it (layer names included), optionally at another input size."""
    spec = load_course(ROOT).models[key]
    shape = tuple(spec.input_shape)
    if size is not None:
        shape = (size, size, shape[2])
    keras.utils.set_random_seed(seed)
    layers: list = [keras.Input(shape)]
    for layer in spec.layers:
        name, cls, out = layer.name, layer.cls, layer.output_shape
        if cls == "Conv2D":
            layers.append(L.Conv2D(out[-1], 3, padding="same", activation="relu", name=name))
        elif cls == "MaxPooling2D":
            layers.append(L.MaxPooling2D(name=name))
        elif cls == "GlobalAveragePooling2D":
            layers.append(L.GlobalAveragePooling2D(name=name))
        elif cls == "Dense":
            layers.append(L.Dense(spec.units, activation=spec.activation, name=name))
    return keras.Sequential(layers)


def seed_vgg16(size: int = 224, seed: int = 0) -> keras.Model:
    """The Lab 4 model as the seed shows it (VGG16 weights=None, flattened, + GAP + Dense(2) softmax)."""
    keras.utils.set_random_seed(seed)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    x = L.GlobalAveragePooling2D(name="global_average_pooling2d")(base.outputs[0])
    return keras.Model(base.inputs[0], L.Dense(2, activation="softmax", name="dense")(x))


def random_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def _tkv(tool_class, model: keras.Model, run):
    """Run a tf-keras-vis tool on MODEL with its last activation made linear (logits), without cloning.

    Cloning VGG16 costs seconds, so ReplaceToLinear works in place and the activation is put back after.
    (The Keras 3 Sequential has to be wrapped as a functional model for tf-keras-vis.)
    """
    dense = model.layers[-1]
    activation = dense.activation
    try:
        return run(tool_class(keras.Model(model.inputs, model.outputs), model_modifier=ReplaceToLinear(), clone=False))
    finally:
        dense.activation = activation


def tkv_gradcam(model: keras.Model, images: np.ndarray, c: int, layer: str, relu: bool = True) -> np.ndarray:
    """tf-keras-vis Grad-CAM at the conv grid, un-normalised (its upsampling is corner-aligned, ours is not)."""
    kwargs = {} if relu else {"activation_modifier": None}
    score = CategoricalScore([c] * len(images))
    return _tkv(
        Gradcam,
        model,
        lambda tool: tool(score, images, penultimate_layer=layer, expand_cam=False, normalize_cam=False, **kwargs),
    )


def tkv_saliency(model: keras.Model, images: np.ndarray, c: int) -> np.ndarray:
    score = CategoricalScore([c] * len(images))
    return _tkv(TkvSaliency, model, lambda tool: tool(score, images, keepdims=False, normalize_map=False))


@pytest.fixture(scope="module")
def lab3() -> keras.Sequential:
    return seed_cnn("lab3")


@pytest.fixture(scope="module")
def vgg16() -> keras.Model:
    return seed_vgg16()


def test_saliency_matches_tf_keras_vis_on_lab3(lab3):
    x = random_images(2, (300, 300, 3))
    for c in (0, 1):
        ours = Saliency(lab3)(x, c)
        theirs = normalize_maps_np(tkv_saliency(lab3, x, c))
        assert ours.shape == (2, 300, 300) and ours.dtype == np.float32
        assert np.abs(ours - theirs).max() < 1e-5


def test_gradcam_and_cam_match_tf_keras_vis_on_lab3(lab3):
    x = random_images(2, (300, 300, 3), seed=1)
    flat_count = 0
    for c in (0, 1):
        ours = GradCAM(lab3, "conv2d_3")(x, c, upsample=False)
        theirs = normalize_maps_np(tkv_gradcam(lab3, x, c, "conv2d_3"))
        assert ours.shape == (2, 37, 37)
        assert np.abs(ours - theirs).max() < 1e-5
        flat_count += int((ours.max(axis=(1, 2)) == 0).sum())
        # CAM is Grad-CAM without its ReLU for a GAP + Dense head.
        cam = CAM(lab3, "conv2d_3")(x, c, upsample=False)
        no_relu = normalize_maps_np(tkv_gradcam(lab3, x, c, "conv2d_3", relu=False))
        assert np.abs(cam - no_relu).max() < 1e-5
    assert flat_count < 4, "every Grad-CAM map was flat: the comparison would prove nothing"


def test_gradcam_matches_tf_keras_vis_on_vgg16(vgg16):
    x = random_images(1, (224, 224, 3), seed=2) * 255 - 120
    for c in (0, 1):
        ours = GradCAM(vgg16, "block5_conv3")(x, c, upsample=False)
        theirs = normalize_maps_np(tkv_gradcam(vgg16, x, c, "block5_conv3"))
        assert ours.shape == (1, 14, 14)
        assert np.abs(ours - theirs).max() < 1e-5


def test_vgg16_nested_base_gives_the_same_maps_as_flattened(vgg16):
    # The same layers (same weights) with the convolutional base kept as one nested sub-model.
    base = keras.Model(vgg16.inputs, vgg16.get_layer("block5_pool").output, name="vgg16")
    inputs = keras.Input((224, 224, 3))
    nested = keras.Model(inputs, vgg16.get_layer("dense")(vgg16.get_layer("global_average_pooling2d")(base(inputs))))
    assert "block5_conv3" not in {layer.name for layer in nested.layers}
    x = random_images(1, (224, 224, 3), seed=3) * 255 - 120
    a = GradCAM(vgg16, "block5_conv3").with_conditioning(x, 1, upsample=False)
    b = GradCAM(nested, "block5_conv3").with_conditioning(x, 1, upsample=False)
    np.testing.assert_allclose(b[0], a[0], atol=1e-5)
    np.testing.assert_allclose(b[2], a[2], rtol=1e-4)


def test_cam_equals_gradcam_up_to_normalisation_with_nonnegative_weights():
    """With W >= 0 and ReLU activations CAM >= 0, so Grad-CAM's ReLU is a no-op: equal after normalisation."""
    model = seed_cnn("lab1", seed=4)
    dense = model.get_layer("dense")
    dense.kernel.assign(tf.abs(dense.kernel))
    x = random_images(4, (28, 28, 1), seed=4)
    for c in (0, 7):
        cam = CAM(model, "conv2d_3")(x, c)
        gradcam = GradCAM(model, "conv2d_3")(x, c)
        assert cam.max() == pytest.approx(1.0)
        np.testing.assert_allclose(gradcam, cam, atol=1e-5)


def test_sigmoid_unit_class_zero_scores_minus_z():
    model = seed_cnn("lab2", size=64, seed=5)
    x = random_images(3, (64, 64, 3), seed=5)
    one, zero = CAM(model, "conv2d_3"), CAM(model, "conv2d_3")
    np.testing.assert_allclose(zero(x, 0, upsample=False), 1 - one(x, 1, upsample=False), atol=1e-5)
    sal_one, sal_zero = Saliency(model)(x, 1), Saliency(model)(x, 0)
    np.testing.assert_allclose(sal_zero, sal_one, atol=1e-6)  # |d(-z)/dx| = |dz/dx|
    grad_one = GradCAM(model, "conv2d_3")(x, 1, upsample=False)
    grad_zero = GradCAM(model, "conv2d_3")(x, 0, upsample=False)
    overlap = (grad_one > 0) & (grad_zero > 0)
    assert not overlap.any(), "class 0 and class 1 Grad-CAM of a sigmoid unit have opposite signs before the ReLU"
    with pytest.raises(ValueError, match="class_index 2"):
        CAM(model, "conv2d_3")(x, 2)


def test_batch_equals_per_image_and_no_retracing(lab3):
    method = GradCAM(seed_cnn("lab1", seed=6), "conv2d_3")
    x = random_images(5, (28, 28, 1), seed=6)
    batch = method(x, 3)
    singles = np.concatenate([method(x[i : i + 1], 3) for i in range(5)])
    np.testing.assert_allclose(singles, batch, atol=1e-5)
    method(x[:2], 4)  # another batch size and class: same trace
    assert method.raw_function(1).experimental_get_tracing_count() == 1


def test_variants_and_classes_from_one_forward_pass_equal_separate_calls():
    """The judge asks for the reference and every known mistake of every class in one call (one forward pass)."""
    model = seed_cnn("lab1", seed=9)
    x = random_images(3, (28, 28, 1), seed=9)
    cases = [
        (GradCAM(model, "conv2d_3"), [{"relu": False}, {"score": "loss"}, {"score": "probability", "relu": False}]),
        (Saliency(model), [{"reduce": "sum"}, {"absolute": False}, {"score": "loss"}]),
        (CAM(model, "conv2d_3"), [{"relu": True}]),
    ]
    for method, changes in cases:
        variants = [method.options, *(method.variant(**c) for c in changes)]
        together = method.raw(x, [0, 7, 3], variants)
        assert together.shape[:3] == (len(variants), 3, 3)
        for v, options in enumerate(variants):
            alone = type(method)(model, **({"layer_name": "conv2d_3"} if method.layer_name else {}), **options)
            for i, c in enumerate((0, 7, 3)):
                np.testing.assert_allclose(together[v, i], alone.raw(x, [c])[0, 0], rtol=1e-5, atol=1e-6)
        method.raw(x[:1], [5, 1, 2], variants)  # another batch size and other classes: same trace
        assert method.raw_function(3, variants).experimental_get_tracing_count() == 1
    with pytest.raises(TypeError, match="no option 'absolute'"):
        GradCAM(model, "conv2d_3").variant(absolute=False)


def test_flat_maps_become_zeros_not_nan():
    """An untrained model (zero biases) maps a zero image to exactly flat maps: zeros, never NaN."""
    model = seed_cnn("lab1", seed=7)
    zero = np.zeros((1, 28, 28, 1), np.float32)
    for method in (CAM(model, "conv2d_3"), GradCAM(model, "conv2d_3"), Saliency(model)):
        maps, spread, _ = method.with_conditioning(zero, 0)
        assert spread[0] == 0.0
        assert np.isfinite(maps).all() and (maps == 0).all()


def test_gradcam_on_a_loaded_sequential(tmp_path):
    """A loaded Sequential's layers belong to several graphs: layer.output and dense.input are not connected."""
    model = seed_cnn("lab1", seed=8)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    a, feats = feature_model(loaded, "conv2d_3")(random_images(2, (28, 28, 1)))
    assert tuple(a.shape) == (2, 3, 3, 128) and tuple(feats.shape) == (2, 128)
    x = random_images(3, (28, 28, 1), seed=8)
    np.testing.assert_allclose(GradCAM(loaded, "conv2d_3")(x, 2), GradCAM(model, "conv2d_3")(x, 2), atol=1e-6)

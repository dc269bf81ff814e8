"""cnnvis.explain (Lab 5's toolkit heatmaps) against the judge's references, and its per-image classes.

The toolkit's CAM, saliency and Grad-CAM run the layers eagerly so that a freshly randomised copy
costs no retracing; the references (autograder/reference/) compile a feature model. Both must give
the same maps, for softmax and single-sigmoid heads, and one call with a class per image must equal
one call per class and one call per image.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnvis import explain

TOLERANCE = 1e-5  # float32 maps in [0, 1], the same ops in another order


def _model(units: int):
    import keras

    keras.utils.set_random_seed(3)
    activation = "sigmoid" if units == 1 else "softmax"
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(units, activation=activation),
        ]
    )


@pytest.fixture(scope="module", params=[3, 1], ids=["softmax-3", "sigmoid-1"])
def model(request):
    return _model(request.param)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((6, 12, 12, 1)).astype(np.float32)


def _references(model):
    from autograder.reference import CAM, GradCAM, Saliency

    return {"CAM": CAM(model, "conv_b"), "saliency": Saliency(model), "Grad-CAM": GradCAM(model, "conv_b")}


def test_each_method_matches_the_reference(model, images):
    references = _references(model)
    for name, method in explain.methods("conv_b").items():
        for c in (0, 1):
            got = method(model, images, c)
            assert got.dtype == np.float32 and got.shape == images.shape[:3]
            np.testing.assert_allclose(got, references[name](images, c), atol=TOLERANCE, err_msg=f"{name} class {c}")


def test_a_class_per_image_equals_a_call_per_class_and_per_image(model, images):
    labels = np.array([0, 1, 1, 0, 1, 0])
    for name, method in explain.methods("conv_b").items():
        mixed = method(model, images, labels)
        for c in (0, 1):
            chosen = labels == c
            np.testing.assert_allclose(mixed[chosen], method(model, images[chosen], c), atol=TOLERANCE, err_msg=name)
        one_by_one = np.concatenate([method(model, images[i : i + 1], int(labels[i])) for i in range(len(images))])
        np.testing.assert_allclose(mixed, one_by_one, atol=TOLERANCE, err_msg=name)


def test_flat_maps_become_zeros_not_nan():
    maps = explain.normalize(np.ones((2, 4, 4)))
    assert np.array_equal(maps, np.zeros((2, 4, 4), np.float32))


@pytest.mark.parametrize(
    "bad, says",
    [(np.array([0, 1]), "got shape"), (np.zeros((6, 1), int), "got shape"), (np.array([0.0] * 6), "got dtype float64")],
)
def test_a_class_array_of_the_wrong_shape_or_type_is_refused(model, images, bad, says):
    with pytest.raises(ValueError, match=says):
        explain.saliency(model, images, bad)

"""Do the reference heatmaps mean something? Localisation and a model-randomisation sanity check.

A Lab 1 model trained briefly on generated Fashion-MNIST (2 epochs, 2,048 images) must point at
the object (the map's peak inside the object's box) for most correctly classified test images,
clearly above chance (the boxes' mean share of the image). With the weights re-initialised, the
maps must change: the mean Spearman rank correlation between the trained and the randomised
model's maps stays below a bound (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Measured on this machine (seed 1): accuracy 0.89; pointing CAM 0.77, Grad-CAM 0.77, saliency
0.86 of 57 correct images, chance 0.39; mean rank correlation with the randomised model -0.22
(CAM), 0.07 (Grad-CAM, over the 43 maps that are not flat), 0.29 (saliency).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.stats import spearmanr
from test_reference import seed_cnn

from autograder.checks.heatmaps import _pointing
from autograder.reference import CAM, GradCAM, Saliency
from cnnvis import data

POINTING_FLOOR = 0.6
ABOVE_CHANCE = 0.15
RANK_CORRELATION_CEILING = 0.5
METHODS = {
    "cam": lambda m: CAM(m, "conv2d_3"),
    "gradcam": lambda m: GradCAM(m, "conv2d_3"),
    "saliency": Saliency,
}


@pytest.fixture(scope="module")
def trained():
    model = seed_cnn("lab1", seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    train = data.generate_fashion_mnist(2048, 1)
    model.fit(train.images, train.labels, epochs=2, batch_size=32, verbose=0)
    test = data.generate_fashion_mnist(64, 2)
    correct = model.predict(test.images, verbose=0).argmax(axis=1) == test.labels
    return model, test, correct


def maps_by_own_class(method, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's map for its own class, batched per class (the reference takes one class per batch)."""
    out = np.zeros(images.shape[:3], np.float32)
    for c in np.unique(labels):
        chosen = labels == c
        out[chosen] = method(images[chosen], int(c))
    return out


def test_the_briefly_trained_model_learned(trained):
    _, _, correct = trained
    assert correct.mean() >= 0.75, f"accuracy {correct.mean():.2f}: the localisation figures would mean little"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_pointing_game_on_correctly_classified_images(trained, name):
    model, test, correct = trained
    images, labels, boxes = test.images[correct], test.labels[correct], test.boxes[correct]
    hits = _pointing(maps_by_own_class(METHODS[name](model), images, labels), boxes)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / float(images.shape[1] * images.shape[2])
    chance = float(areas.mean())
    print(f"{name}: pointing {hits.mean():.2f} of {len(hits)} correct images, chance {chance:.2f}")
    assert hits.mean() >= POINTING_FLOOR, f"{name}: the peak is inside the box for only {hits.mean():.2f}"
    assert hits.mean() >= chance + ABOVE_CHANCE, f"{name}: pointing {hits.mean():.2f} is near chance {chance:.2f}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_maps_change_when_the_weights_are_randomised(trained, name):
    model, test, correct = trained
    # Same architecture, freshly initialised weights; the noise gives the zero-initialised biases a value too.
    randomised = keras.models.clone_model(model)
    randomised.set_weights([w + np.random.default_rng(3).normal(0, 0.05, w.shape) for w in randomised.get_weights()])
    images, labels = test.images[correct], test.labels[correct]
    ours = maps_by_own_class(METHODS[name](model), images, labels)
    theirs = maps_by_own_class(METHODS[name](randomised), images, labels)
    rhos = [spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(ours, theirs, strict=True) if np.ptp(b) > 0]
    rho = float(np.mean(rhos))
    print(f"{name}: mean rank correlation with the randomised model {rho:.2f} over {len(rhos)} images")
    assert len(rhos) >= len(ours) // 2
    assert rho < RANK_CORRELATION_CEILING, f"{name}: maps barely depend on the weights (rank correlation {rho:.2f})"

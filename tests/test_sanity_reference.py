"""The Lab 5 references (autograder/reference/{pointing_game,deletion,randomisation}.py) against
independent float64 versions written here the slow, obvious way (loops over pixels and steps,
scipy.stats.spearmanr), on the hypothesis-generated probe inputs of autograder/sanity_strategies.

Quantus 0.6.0 was considered as the cross-check and not taken as a dev dependency: it pulls pandas,
OpenCV, scikit-image and scikit-learn for three metrics, its metrics run a model wrapper's own
perturbation loop, and its defaults differ from the conventions the lab states (ties, step counts).
Measured agreement (README): max abs difference 0 for pointing hits, <= 1e-12 for chance rates,
perturbed images, curves, areas and rank correlations.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from autograder import sanity_strategies as SS
from autograder.reference import deletion as D
from autograder.reference import pointing_game as P
from autograder.reference import randomisation as R
from autograder.strategies import draw_examples

TOLERANCE = 1e-12  # float64 against float64: rounding only


def slow_pointing(maps: np.ndarray, boxes: np.ndarray) -> tuple[list[bool], list[float]]:
    hits, chance = [], []
    for m, (y0, x0, y1, x1) in zip(maps.astype(np.float64), boxes, strict=True):
        top = m.max()
        peaks = [(y, x) for y in range(m.shape[0]) for x in range(m.shape[1]) if m[y, x] == top]
        hits.append(all(y0 <= y < y1 and x0 <= x < x1 for y, x in peaks))
        chance.append((y1 - y0) * (x1 - x0) / m.size)
    return hits, chance


def slow_perturb(images, maps, steps, baseline, mode) -> np.ndarray:
    images = np.asarray(images, np.float64)
    b, h, w, c = images.shape
    out = np.zeros((b, steps + 1, h, w, c))
    for i in range(b):
        pixels = [(y, x) for y in range(h) for x in range(w)]
        ranked = sorted(range(h * w), key=lambda k, i=i: (-float(maps[i][pixels[k]]), k))  # ties: raster order
        for k in range(steps + 1):
            chosen = {pixels[j] for j in ranked[: (k * h * w) // steps]}
            for y, x in pixels:
                from_image = (y, x) not in chosen if mode == "deletion" else (y, x) in chosen
                out[i, k, y, x] = images[i, y, x] if from_image else baseline[y, x]
    return out


def slow_softmax_curve(weights, bias, sequence, class_index) -> np.ndarray:
    curves = np.zeros(sequence.shape[:2])
    for i in range(sequence.shape[0]):
        for k in range(sequence.shape[1]):
            z = sequence[i, k].reshape(-1) @ np.asarray(weights, np.float64) + np.asarray(bias, np.float64)
            e = np.exp(z - z.max())
            curves[i, k] = e[class_index] / e.sum()
    return curves


@pytest.mark.parametrize("seed", [1, 2])
def test_pointing_game_agrees(seed: int):
    for maps, boxes in draw_examples(SS.pointing_batch(), 20, seed):
        hits, chance = P.pointing_game(maps, boxes)
        slow_hits, slow_chance = slow_pointing(maps, boxes)
        assert hits.tolist() == slow_hits
        assert np.abs(chance - slow_chance).max() <= TOLERANCE


def test_perturbation_curves_and_areas_agree():
    for kw in draw_examples(SS.linear_curve_inputs(), 12, 3):
        args = {k: kw[k] for k in ("images", "maps", "steps", "baseline", "mode")}
        sequence = D.perturb(**args)
        slow = slow_perturb(**args)
        assert np.abs(sequence - slow).max() <= TOLERANCE
        curves = D.linear_curves(kw["weights"], kw["bias"], class_index=kw["class_index"], **args)
        assert np.abs(curves - slow_softmax_curve(kw["weights"], kw["bias"], slow, kw["class_index"])).max() <= 1e-12
        x = np.linspace(0.0, 1.0, kw["steps"] + 1)
        areas = [np.trapezoid(c, x) for c in curves]
        assert np.abs(D.area_under_curve(curves) - areas).max() <= TOLERANCE


def test_a_linear_scorers_deletion_curve_in_closed_form():
    """One class, one feature per pixel: deleting pixel j onto zeros removes exactly w_j x_j from the logit."""
    rng = np.random.default_rng(0)
    image = rng.random((1, 4, 4, 1))
    w = rng.normal(size=16)
    weights = np.stack([w, np.zeros(16)], axis=1)  # logit_0 = w . x, logit_1 = 0
    maps = (w * image.reshape(-1)).reshape(1, 4, 4)  # the exact contribution of each pixel
    curves = D.linear_curves(weights, np.zeros(2), image, maps, 0, 16, np.zeros((4, 4, 1)), "deletion")
    contributions = np.sort(maps.reshape(-1))[::-1]
    logits = contributions.sum() - np.concatenate([[0.0], np.cumsum(contributions)])
    assert np.abs(curves[0] - 1 / (1 + np.exp(-logits))).max() <= 1e-12


@pytest.mark.parametrize("case", SS.MAP_PAIR_CASES)
def test_rank_correlation_agrees_with_scipy(case: str):
    for a, b in draw_examples(SS.map_pairs(case), 4, 5):
        ours = R.spearman(a, b)
        for i in range(len(a)):
            if a[i].min() == a[i].max() or b[i].min() == b[i].max():
                assert ours[i] == 0.0  # scipy returns nan for a constant input; the lab defines 0
                continue
            assert abs(ours[i] - spearmanr(a[i].ravel(), b[i].ravel()).statistic) <= TOLERANCE
        if case in ("identical", "monotone"):
            assert np.allclose(ours, 1.0, atol=TOLERANCE)
        if case == "reversed":
            assert np.allclose(ours, -1.0, atol=TOLERANCE)


def test_batch_results_equal_per_image_results():
    for maps, boxes in draw_examples(SS.pointing_batch(batch=4), 5, 6):
        hits, chance = P.pointing_game(maps, boxes)
        for i in range(4):
            one = P.pointing_game(maps[i : i + 1], boxes[i : i + 1])
            assert one[0][0] == hits[i] and one[1][0] == chance[i]
    for a, b in draw_examples(SS.map_pairs("tied_zeros"), 3, 7):
        assert np.array_equal(
            R.spearman(a, b), np.concatenate([R.spearman(a[i : i + 1], b[i : i + 1]) for i in range(len(a))])
        )


def test_cascade_order_is_top_down():
    weights = {"conv": [np.ones(1)], "pool": [], "conv_1": [np.ones(1)], "dense": [np.ones(1)]}
    assert R.randomised_layers(weights, 0) == []
    assert R.randomised_layers(weights, 1) == ["dense"]
    assert R.randomised_layers(weights, 2) == ["conv_1", "dense"]
    assert R.randomised_layers(weights, 2, top_down=False) == ["conv", "conv_1"]

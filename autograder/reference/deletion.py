"""Deletion and insertion curves (Petsiuk et al. 2018), float64 numpy.

Conventions (the Lab 5 notebook states them to students):
- pixels are ranked by the map, most important first: a stable sort of -map over the flattened
  (row-major) image, so ties keep raster order;
- K equal steps: after step k (k = 0..K) the first n_k = floor(k * N / K) ranked pixels (N = H * W,
  every channel of a pixel at once) have been *deleted* (set to the baseline image) or *inserted*
  (copied from the image onto the baseline); a curve has K + 1 points, step 0 included;
- the curve is the class *probability* (softmax output) after each step, and its area is the
  trapezoidal rule over x = k / K in [0, 1].
A good map makes the deletion curve fall fast (small area) and the insertion curve rise fast (large area).
"""

from __future__ import annotations

import numpy as np

MODES = ("deletion", "insertion")


def pixel_counts(n_pixels: int, steps: int) -> np.ndarray:
    """(K + 1,) pixels removed (or inserted) after each step: floor(k * N / K)."""
    return (np.arange(steps + 1, dtype=np.int64) * int(n_pixels)) // int(steps)


def rank_positions(maps: np.ndarray, ascending: bool = False) -> np.ndarray:
    """(B, N): each pixel's place in its map's ranking (0 = most important). ASCENDING reproduces a mistake."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    order = np.argsort(flat if ascending else -flat, axis=1, kind="stable")
    positions = np.empty_like(order)
    np.put_along_axis(positions, order, np.arange(flat.shape[1])[None, :], axis=1)
    return positions


def perturb(
    images: np.ndarray,
    maps: np.ndarray,
    steps: int,
    baseline: np.ndarray,
    mode: str,
    ascending: bool = False,
    shift: int = 0,
) -> np.ndarray:
    """(B, K + 1, H, W, C): the images after each step. SHIFT != 0 reproduces an off-by-one in the steps."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    images = np.asarray(images, dtype=np.float64)
    batch, height, width = images.shape[:3]
    counts = pixel_counts(height * width, steps)
    if shift:
        counts = pixel_counts(height * width, steps)[np.clip(np.arange(steps + 1) + shift, 0, steps)]
    chosen = rank_positions(maps, ascending)[:, None, :] < counts[None, :, None]  # (B, K + 1, N)
    chosen = chosen.reshape(batch, steps + 1, height, width, 1)
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float64), images.shape[1:])
    if mode == "deletion":
        return np.where(chosen, base[None, None], images[:, None])
    return np.where(chosen, images[:, None], base[None, None])


def linear_scores(
    weights: np.ndarray, bias: np.ndarray, images: np.ndarray, class_index: int, score: str = "probability"
) -> np.ndarray:
    """Class probability (or, for the diagnosis, logit) of a linear softmax classifier on flattened images."""
    flat = np.asarray(images, dtype=np.float64).reshape(*images.shape[:-3], -1)
    logits = flat @ np.asarray(weights, dtype=np.float64) + np.asarray(bias, dtype=np.float64)
    if score == "logit":
        return logits[..., class_index]
    logits = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=-1, keepdims=True))[..., class_index]


def linear_curves(weights, bias, images, maps, class_index: int, steps: int, baseline, mode: str, **mistake):
    """(B, K + 1) curves of a linear softmax classifier: known exactly, so the judge needs no model."""
    score = mistake.pop("score", "probability")
    return linear_scores(weights, bias, perturb(images, maps, steps, baseline, mode, **mistake), class_index, score)


def area_under_curve(curves: np.ndarray) -> np.ndarray:
    """(B,) trapezoidal area of (B, K + 1) curves over x = k / K in [0, 1]."""
    curves = np.asarray(curves, dtype=np.float64)
    steps = curves.shape[1] - 1
    return (curves.sum(axis=1) - 0.5 * (curves[:, 0] + curves[:, -1])) / steps

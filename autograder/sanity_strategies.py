"""Hypothesis strategies for Lab 5's sanity-check probes: inputs whose right answers are known.

- peaked maps: a map whose maximum sits at a pixel hypothesis chose, with a box around it, away
  from it, or with the peak exactly on the box's last row or column or just past it (end
  exclusive); ties for the maximum inside, straddling or outside the box; all-flat maps;
- perturbation inputs: small images, maps with distinct values or with ties (ranked in raster
  order), step counts that do and do not divide the pixel count, zero and non-zero baselines;
- map pairs for rank correlation: identical and monotonically transformed (correlation 1),
  reversed (-1), flat (0), maps with many tied zeros (as Grad-CAM's ReLU leaves), and batches whose
  maps have wildly different scales (what unnormalised maps look like).
Bulk values come from a numpy generator seeded by hypothesis; `autograder.strategies.draw_examples`
makes the lists deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from autograder.strategies import _rng

BOX_CASES = ("around", "away", "last_row", "past_row", "last_col", "past_col")
TIE_CASES = ("none", "inside", "straddle", "flat")


@st.composite
def pointing_batch(draw: Callable[..., Any], batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps (B, H, W) float32, boxes (B, 4) int64): every map's peak and box placed by hypothesis."""
    b = batch if batch is not None else draw(st.integers(1, 8))
    h, w = draw(st.integers(6, 24)), draw(st.integers(6, 24))
    rng = draw(_rng())
    maps = (0.8 * rng.random((b, h, w))).astype(np.float32)
    boxes = np.zeros((b, 4), dtype=np.int64)
    for i in range(b):
        y, x = draw(st.integers(1, h - 2)), draw(st.integers(1, w - 2))
        maps[i, y, x] = 1.0
        case = draw(st.sampled_from(BOX_CASES))
        y0, x0 = draw(st.integers(0, y)), draw(st.integers(0, x))
        y1, x1 = draw(st.integers(y + 1, h)), draw(st.integers(x + 1, w))
        if case == "last_row":
            y1 = y + 1  # the peak on the box's last row: inside
        elif case == "past_row":
            y1 = y  # the peak one row past the box (end exclusive): outside
            y0 = min(y0, y1 - 1)
        elif case == "last_col":
            x1 = x + 1
        elif case == "past_col":
            x1 = x
            x0 = min(x0, x1 - 1)
        elif case == "away":  # a box in a corner that avoids the peak
            y0, x0, y1, x1 = (0, 0, y, w) if draw(st.booleans()) else (y + 1, 0, h, w)
        boxes[i] = (y0, x0, y1, x1)
        tie = draw(st.sampled_from(TIE_CASES))
        if tie == "inside" and (y1 - y0) * (x1 - x0) > 1:
            maps[i, y0, x0] = maps[i, y1 - 1, x1 - 1] = 1.0  # ties, all inside when the peak is
        elif tie == "straddle" and (y1 < h or x1 < w):
            maps[i, h - 1, w - 1] = 1.0  # a tie outside the box, after the peak in raster order
        elif tie == "flat":
            maps[i] = np.float32(draw(st.sampled_from((0.0, 0.5, 1.0))))
    return maps, boxes


@st.composite
def perturbation_inputs(draw: Callable[..., Any]) -> dict[str, Any]:
    """Keyword arguments of perturb(images, maps, steps, baseline, mode) on small images."""
    rng = draw(_rng())
    b, h, w = draw(st.integers(1, 4)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
    c = draw(st.sampled_from((1, 3)))
    steps = draw(st.sampled_from((1, 2, 3, 4, 5, 7, h * w)))
    images = rng.random((b, h, w, c)).astype(np.float32)
    if draw(st.booleans()):
        maps = rng.permutation(b * h * w).reshape(b, h, w).astype(np.float32) / (b * h * w)  # distinct values
    else:
        maps = np.round(rng.random((b, h, w)) * 3).astype(np.float32) / 3  # four values: ranked in raster order
    kind = draw(st.sampled_from(("zeros", "constant", "image")))
    baseline = {
        "zeros": np.zeros((h, w, c), np.float32),
        "constant": np.full((h, w, c), 0.5, np.float32),
        "image": rng.random((h, w, c)).astype(np.float32),
    }[kind]
    mode = draw(st.sampled_from(("deletion", "insertion")))
    return {"images": images, "maps": maps, "steps": int(steps), "baseline": baseline, "mode": mode}


@st.composite
def linear_curve_inputs(draw: Callable[..., Any]) -> dict[str, Any]:
    """perturbation_inputs plus a linear softmax classifier (weights, bias) and a class: curves known exactly."""
    kwargs = draw(perturbation_inputs())
    rng = draw(_rng())
    n = int(np.prod(kwargs["images"].shape[1:]))
    classes = draw(st.integers(2, 4))
    scale = draw(st.sampled_from((0.3, 1.0, 3.0)))
    kwargs["weights"] = (rng.normal(size=(n, classes)) * scale / np.sqrt(n)).astype(np.float32)
    kwargs["bias"] = rng.normal(size=classes).astype(np.float32)
    kwargs["class_index"] = draw(st.integers(0, classes - 1))
    return kwargs


@st.composite
def curves(draw: Callable[..., Any]) -> np.ndarray:
    """(B, K + 1) curves in [0, 1]: random, constant, or linear in k."""
    rng = draw(_rng())
    b, steps = draw(st.integers(1, 5)), draw(st.integers(1, 12))
    kind = draw(st.sampled_from(("random", "constant", "linear")))
    if kind == "constant":
        return np.repeat(rng.random((b, 1)), steps + 1, axis=1).astype(np.float32)
    if kind == "linear":
        return np.linspace(rng.random(b), rng.random(b), steps + 1, axis=1).astype(np.float32)
    return rng.random((b, steps + 1)).astype(np.float32)


MAP_PAIR_CASES = ("identical", "monotone", "reversed", "flat", "tied_zeros", "random", "scales")


@st.composite
def map_pairs(draw: Callable[..., Any], case: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps_a, maps_b), both (B, H, W) float32, of one of MAP_PAIR_CASES."""
    case = case or draw(st.sampled_from(MAP_PAIR_CASES))
    rng = draw(_rng())
    b, h, w = draw(st.integers(1, 5)), draw(st.integers(4, 16)), draw(st.integers(4, 16))
    a = rng.random((b, h, w)).astype(np.float32)
    if case == "identical":
        return a, a.copy()
    if case == "monotone":
        return a, np.exp(4 * a).astype(np.float32)  # same ranks, different values: Spearman 1, Pearson < 1
    if case == "reversed":
        return a, -a
    if case == "flat":
        return a, np.full_like(a, np.float32(draw(st.sampled_from((0.0, 1.0)))))
    if case == "tied_zeros":  # ReLU'd maps: many exact zeros, ties the ranks must average
        a = np.maximum(a - 0.6, 0).astype(np.float32)
        b_maps = np.maximum(rng.random(a.shape) - 0.5, 0).astype(np.float32)
        return a, np.where(rng.random(a.shape) < 0.5, a, b_maps).astype(np.float32)
    noisy = (a + draw(st.sampled_from((0.1, 0.5, 2.0))) * rng.random(a.shape)).astype(np.float32)
    if case == "scales":  # each map at its own scale and offset, as unnormalised maps are
        scale = (10.0 ** rng.uniform(-3, 3, size=(b, 1, 1))).astype(np.float32)
        return (a * scale).astype(np.float32), (noisy * scale[::-1] + 5).astype(np.float32)
    return a, noisy

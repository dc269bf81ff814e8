"""The pointing game (Zhang et al. 2018), float64 numpy: does each map's maximum lie inside its object's box?

Conventions (the Lab 5 notebook states them to students):
- boxes are (y0, x0, y1, x1) in pixels, end exclusive, one per map;
- a map *hits* when every pixel that attains its maximum lies inside the box: a tie that spills
  outside is a miss, so a flat map (every pixel is the maximum) hits only when the box is the image;
- the chance rate of an image is its box's share of the image area: what a peak placed at a
  uniformly random pixel would score.
"""

from __future__ import annotations

import numpy as np


def inside_boxes(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """(B, H, W) bool: which pixels of each image lie inside its box (end exclusive)."""
    boxes = np.asarray(boxes, dtype=np.int64)
    ys = np.arange(shape[0])[None, :, None]
    xs = np.arange(shape[1])[None, None, :]
    y0, x0, y1, x1 = (boxes[:, k, None, None] for k in range(4))
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def pointing_game(maps: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hits (B,) bool, chance (B,) float64) for maps (B, H, W) and boxes (B, 4)."""
    maps = np.asarray(maps, dtype=np.float64)
    inside = inside_boxes(maps.shape[1:], boxes)
    peaks = maps == maps.max(axis=(1, 2), keepdims=True)
    hits = ~(peaks & ~inside).any(axis=(1, 2))
    return hits, inside.mean(axis=(1, 2))


def first_argmax_hits(maps: np.ndarray, boxes: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """Usual mistakes, for the judge's diagnosis: the first maximum only (argmax), or boxes end inclusive."""
    maps = np.asarray(maps, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.int64)
    y, x = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
    y1, x1 = boxes[:, 2] + int(inclusive), boxes[:, 3] + int(inclusive)
    return (boxes[:, 0] <= y) & (y < y1) & (boxes[:, 1] <= x) & (x < x1)


def inclusive_hits(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mistake: every maximum inside a box read as end inclusive (y1 and x1 counted as inside)."""
    boxes = np.asarray(boxes, dtype=np.int64) + np.array([0, 0, 1, 1])
    return pointing_game(maps, boxes)[0]

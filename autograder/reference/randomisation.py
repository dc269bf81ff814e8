"""The model-parameter randomisation test (Adebayo et al. 2018), float64 numpy.

Conventions (the Lab 5 notebook states them to students):
- the *weighted* layers (those with parameters) are re-initialised from the top (the output
  layer) down, one more at each step: step n re-initialises the last n weighted layers and keeps
  every other layer's trained weights exactly;
- the similarity of two maps is Spearman's rank correlation, per pair of maps: the Pearson
  correlation of their ranks, ties given their average rank (as scipy.stats.spearmanr), and 0
  when either map is flat (no ranking at all), via an epsilon in the denominator.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

EPS = 1e-12


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return (a * b).sum(axis=1) / np.maximum(denominator, EPS)


def _flat_rows(maps: np.ndarray) -> np.ndarray:
    return np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)


def spearman(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """(B,) Spearman rank correlation of each pair of maps (B, H, W), average ranks for ties."""
    a, b = _flat_rows(maps_a), _flat_rows(maps_b)
    return _pearson_rows(rankdata(a, axis=1), rankdata(b, axis=1))


def pearson(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """Mistake, for the diagnosis: the Pearson correlation of the values, not of their ranks."""
    return _pearson_rows(_flat_rows(maps_a), _flat_rows(maps_b))


def ordinal_spearman(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """Mistake: ranks by argsort of argsort (ties broken by position instead of averaged)."""
    a, b = _flat_rows(maps_a), _flat_rows(maps_b)
    return _pearson_rows(a.argsort(axis=1).argsort(axis=1), b.argsort(axis=1).argsort(axis=1))


def pooled_spearman(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """Mistake: ranks taken over the whole batch at once, so each map's scale leaks into the others' ranks."""
    a, b = _flat_rows(maps_a), _flat_rows(maps_b)
    return _pearson_rows(rankdata(a).reshape(a.shape), rankdata(b).reshape(b.shape))


def weighted_layers(weights: dict[str, list[np.ndarray]]) -> list[str]:
    """The names of the layers that have parameters, bottom (input side) to top."""
    return [name for name, arrays in weights.items() if len(arrays)]


def randomised_layers(weights: dict[str, list[np.ndarray]], n_top: int, top_down: bool = True) -> list[str]:
    """The layers step N_TOP re-initialises: the last N_TOP weighted layers (TOP_DOWN=False: the first)."""
    names = weighted_layers(weights)
    return names[len(names) - n_top :] if top_down else names[:n_top]

"""Reference implementations used by the judge (never shipped to students, never importable in their kernel).

    CAM(model, layer_name)(images, class_index)                  -> (B, H, W) in [0, 1]
    Saliency(model)(images, class_index)                         -> (B, H, W) in [0, 1]
    GradCAM(model, layer_name)(images, class_index, upsample)    -> (B, H, W) or the conv grid
    losses.LOSSES[short](y_true, y_pred)                         -> Keras' cross-entropy, numpy float64

Each heatmap object builds its feature model and compiled function once; call it on as many batches
as needed. The heatmap names are imported lazily: `autograder.reference.losses` needs no TensorFlow,
so a worker that grades only label and loss parts never pays for importing it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "EPS": "base",
    "HeatmapMethod": "base",
    "normalize_maps": "base",
    "normalize_maps_np": "base",
    "resize_maps": "base",
    "CAM": "cam",
    "GradCAM": "gradcam",
    "Saliency": "saliency",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)

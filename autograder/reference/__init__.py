"""Reference heatmap methods used by the judge (never shipped to students, never importable in their kernel).

    CAM(model, layer_name)(images, class_index)                  -> (B, H, W) in [0, 1]
    Saliency(model)(images, class_index)                         -> (B, H, W) in [0, 1]
    GradCAM(model, layer_name)(images, class_index, upsample)    -> (B, H, W) or the conv grid

Each object builds its feature model and compiled function once; call it on as many batches as needed.
"""

from autograder.reference.base import EPS, HeatmapMethod, normalize_maps, normalize_maps_np, resize_maps
from autograder.reference.cam import CAM
from autograder.reference.gradcam import GradCAM
from autograder.reference.saliency import Saliency

__all__ = ["CAM", "EPS", "GradCAM", "HeatmapMethod", "Saliency", "normalize_maps", "normalize_maps_np", "resize_maps"]

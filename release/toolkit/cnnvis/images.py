"""Reading a user's image, and laying a heatmap over an image.

Images in this course are RGB float32 in [0, 1], shape (H, W, 3). Files are read with PIL, which
gives RGB (OpenCV's imread gives BGR, a classic source of wrong colours and wrong predictions).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

_EPS = 1e-8


def load_image(path: str | Path, size: int | tuple[int, int]) -> np.ndarray:
    """An image file as RGB float32 in [0, 1], resized (bilinear) to size or (height, width)."""
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else size
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((int(width), int(height)), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 pixels (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an image (H, W), (H, W, 1) or (H, W, 3), got shape {image.shape}")
    return np.clip(image, 0.0, 1.0)


def _normalised_map(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 2-D heatmap min-max scaled to [0, 1] (flat maps become 0) and resized to shape (bilinear)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    heatmap = np.squeeze(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap, got shape {np.shape(heatmap)}")
    heatmap = np.nan_to_num(heatmap, nan=0.0, posinf=0.0, neginf=0.0)
    heatmap = (heatmap - heatmap.min()) / max(float(heatmap.max() - heatmap.min()), _EPS)
    if heatmap.shape != tuple(shape):
        from PIL import Image

        resized = Image.fromarray(heatmap, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
        heatmap = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return heatmap


def colorize(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A 2-D map in [0, 1] through a matplotlib colour map: (H, W, 3) float32 RGB."""
    from matplotlib import colormaps

    return colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3].astype(np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """The heatmap, coloured with cmap, blended over the image: (H, W, 3) float32 in [0, 1].

    The heatmap is min-max normalised (so any scale is fine) and resized to the image if needed;
    grey images are shown as RGB.
    """
    rgb = _as_rgb(image)
    coloured = colorize(_normalised_map(heatmap, rgb.shape[:2]), cmap)
    return np.clip((1.0 - alpha) * rgb + alpha * coloured, 0.0, 1.0).astype(np.float32)


def save_heatmap_png(path: str | Path, image: np.ndarray, heatmap: np.ndarray) -> Path:
    """Save overlay(image, heatmap) as a PNG; the same inputs always give the same bytes."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    # No metadata (no time stamps) and fixed compression: deterministic bytes.
    Image.fromarray(to_uint8(overlay(image, heatmap)), mode="RGB").save(buffer, format="PNG", compress_level=6)
    path.write_bytes(buffer.getvalue())
    return path


def peak_in_box(heatmaps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The pointing game: for each map (N, H, W), whether its maximum lies in its (y0, x0, y1, x1) box.

    A flat map (all values equal, e.g. all zero after Grad-CAM's ReLU) points nowhere: False.
    """
    heatmaps, boxes = np.asarray(heatmaps), np.asarray(boxes)
    flat = heatmaps.reshape(len(heatmaps), -1)
    rows, cols = np.unravel_index(flat.argmax(axis=1), heatmaps.shape[1:])
    y0, x0, y1, x1 = boxes.T
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return inside & (flat.max(axis=1) > flat.min(axis=1))

"""Figures students look at: image grids, heatmap overlays, methods side by side.

Every function returns the matplotlib Figure (so a notebook shows it and a script can save it).
The backend is left alone when one is already chosen (the notebook's inline backend); a script
without a display gets Agg.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from cnnvis.images import _as_rgb, overlay


def _headless_script() -> bool:
    """No backend chosen yet, not in a notebook kernel, and no display to draw on."""
    chosen = "matplotlib.pyplot" in sys.modules or "MPLBACKEND" in os.environ or "ipykernel" in sys.modules
    has_display = sys.platform != "linux" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return not chosen and not has_display


if _headless_script():
    import matplotlib

    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

_CELL_INCHES = 2.4


def _grid(count: int, ncols: int, extra_width: float = 0.0) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, count))
    nrows = max(1, -(-count // ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(_CELL_INCHES * ncols + extra_width, _CELL_INCHES * nrows + 0.3), squeeze=False
    )
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _titles(titles: Sequence[str] | None, count: int) -> list[str]:
    if titles is None:
        return [""] * count
    titles = [str(t) for t in titles]
    if len(titles) != count:
        raise ValueError(f"got {len(titles)} titles for {count} images")
    return titles


def _draw_box(ax, box: Sequence[int], colour: str = "white") -> None:
    y0, x0, y1, x1 = (int(b) for b in box)
    # Pixel (i, j) covers [j - 0.5, j + 0.5] in imshow's coordinates; the box is end exclusive.
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))


def show_images(images: np.ndarray, titles: Sequence[str] | None = None, ncols: int = 8) -> Figure:
    """A grid of images (N, H, W[, C]) in [0, 1], grey or RGB, with optional titles."""
    images = np.asarray(images)
    titles = _titles(titles, len(images))
    fig, axes = _grid(len(images), ncols)
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(_as_rgb(image), interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def show_heatmaps(
    images: np.ndarray,
    heatmaps: np.ndarray,
    titles: Sequence[str] | None = None,
    boxes: np.ndarray | None = None,
    ncols: int = 4,
    alpha: float = 0.45,
) -> Figure:
    """Each heatmap over its image (jet colours), with the object's box if given, and a colour bar."""
    images, heatmaps = np.asarray(images), np.asarray(heatmaps)
    if len(images) != len(heatmaps):
        raise ValueError(f"got {len(heatmaps)} heatmaps for {len(images)} images")
    titles = _titles(titles, len(images))
    fig, axes = _grid(len(images), ncols, extra_width=0.8)
    for index, (ax, image, heatmap, title) in enumerate(zip(axes.flat, images, heatmaps, titles, strict=False)):
        ax.imshow(overlay(image, heatmap, alpha=alpha), interpolation="nearest")
        if boxes is not None:
            _draw_box(ax, boxes[index])
        ax.set_title(title, fontsize=9)
    # Overlays are normalised per image, so one 0-1 jet scale describes them all; room is kept for it
    # on the right so that the figure needs no bbox_inches="tight" to show it whole.
    right = 1.0 - 0.9 / fig.get_figwidth()
    fig.tight_layout(rect=(0.0, 0.0, right, 1.0))
    colour_bar = fig.add_axes((right + 0.1 / fig.get_figwidth(), 0.15, 0.15 / fig.get_figwidth(), 0.7))
    fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap="jet"), cax=colour_bar, label="normalised heat")
    return fig


def compare_heatmaps(
    images: np.ndarray, rows: Mapping[str, np.ndarray], titles: Sequence[str] | None = None, alpha: float = 0.45
) -> Figure:
    """Methods side by side: the images in the first row, then one row of overlays per method."""
    images = np.asarray(images)
    titles = _titles(titles, len(images))
    for name, maps in rows.items():
        if len(maps) != len(images):
            raise ValueError(f"{name}: got {len(maps)} heatmaps for {len(images)} images")
    nrows, ncols = 1 + len(rows), len(images)
    fig, axes = plt.subplots(nrows, ncols, figsize=(_CELL_INCHES * ncols + 0.6, _CELL_INCHES * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for col, (image, title) in enumerate(zip(images, titles, strict=True)):
        axes[0, col].imshow(_as_rgb(image), interpolation="nearest")
        axes[0, col].set_title(title, fontsize=9)
    axes[0, 0].set_ylabel("image", fontsize=10)
    for row, (name, maps) in enumerate(rows.items(), start=1):
        for col, image in enumerate(images):
            axes[row, col].imshow(overlay(image, np.asarray(maps[col]), alpha=alpha), interpolation="nearest")
        axes[row, 0].set_ylabel(name, fontsize=10)
    fig.tight_layout()
    return fig

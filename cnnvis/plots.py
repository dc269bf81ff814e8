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

from cnnvis.images import _as_rgb, _normalised_map


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


# The house style of every heatmap figure in the course: the image stays visible under the map
# (the map's opacity grows with its value, so cold regions show the image as it is), one colour bar
# saying what the colours mean, the object's box when the data has one, and titles that give the
# true class, the predicted class and its probability.
HEAT_CMAP = "jet"
HEAT_ALPHA = 0.6  # opacity of the hottest pixels; a value of 0 is fully transparent
DEFAULT_HEAT_LABEL = "heat, normalised per image (0 = none, 1 = the map's maximum)"


def prediction_title(class_names: Sequence[str], true: int | None, predicted: int, probability: float) -> str:
    """'true cat, predicted dog (p = 0.93)', marked WRONG when they differ; true None for unlabelled images."""
    guess = f"predicted {class_names[int(predicted)]} (p = {float(probability):.2f})"
    if true is None:
        return guess
    verdict = "" if int(true) == int(predicted) else "WRONG: "
    return f"{verdict}true {class_names[int(true)]}\n{guess}"


def heatmap_panel(
    ax,
    image: np.ndarray,
    heatmap: np.ndarray,
    box: Sequence[int] | None = None,
    title: str = "",
    alpha: float = HEAT_ALPHA,
    cmap: str = HEAT_CMAP,
):
    """Draw IMAGE with HEATMAP (min-max normalised, resized to the image) over it on AX; return the map's artist.

    The map's opacity is alpha * value: where the map is cold the image shows through unchanged.
    """
    rgb = _as_rgb(image)
    heat = _normalised_map(heatmap, rgb.shape[:2])
    ax.imshow(rgb, interpolation="nearest")
    artist = ax.imshow(heat, cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha * heat, interpolation="nearest")
    if box is not None:
        _draw_box(ax, box)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return artist


def add_colour_bar(fig: Figure, label: str = DEFAULT_HEAT_LABEL, cmap: str = HEAT_CMAP) -> None:
    """One colour bar at the right of FIG, in room kept for it (no bbox_inches="tight" needed)."""
    right = 1.0 - 1.0 / fig.get_figwidth()
    fig.tight_layout(rect=(0.0, 0.0, right, 1.0))
    bar = fig.add_axes((right + 0.1 / fig.get_figwidth(), 0.15, 0.15 / fig.get_figwidth(), 0.7))
    fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), cax=bar).set_label(label, fontsize=8)


def show_heatmaps(
    images: np.ndarray,
    heatmaps: np.ndarray,
    titles: Sequence[str] | None = None,
    boxes: np.ndarray | None = None,
    ncols: int = 4,
    alpha: float = HEAT_ALPHA,
    label: str = DEFAULT_HEAT_LABEL,
    suptitle: str | None = None,
) -> Figure:
    """Each heatmap over its image (house style), with the object's box if given, and one colour bar."""
    images, heatmaps = np.asarray(images), np.asarray(heatmaps)
    if len(images) != len(heatmaps):
        raise ValueError(f"got {len(heatmaps)} heatmaps for {len(images)} images")
    titles = _titles(titles, len(images))
    fig, axes = _grid(len(images), ncols, extra_width=1.0)
    for index, (ax, image, heatmap, title) in enumerate(zip(axes.flat, images, heatmaps, titles, strict=False)):
        heatmap_panel(ax, image, heatmap, None if boxes is None else boxes[index], title, alpha)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    add_colour_bar(fig, label)
    return fig


def compare_heatmaps(
    images: np.ndarray,
    rows: Mapping[str, np.ndarray],
    titles: Sequence[str] | None = None,
    boxes: np.ndarray | None = None,
    alpha: float = HEAT_ALPHA,
    label: str = DEFAULT_HEAT_LABEL,
    suptitle: str | None = None,
) -> Figure:
    """Methods side by side: the images in the first row, then one row of overlays per method (named on the left)."""
    images = np.asarray(images)
    titles = _titles(titles, len(images))
    for name, maps in rows.items():
        if len(maps) != len(images):
            raise ValueError(f"{name}: got {len(maps)} heatmaps for {len(images)} images")
    nrows, ncols = 1 + len(rows), len(images)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(_CELL_INCHES * ncols + 1.4, _CELL_INCHES * nrows + 0.3), squeeze=False
    )
    for col, (image, title) in enumerate(zip(images, titles, strict=True)):
        axes[0, col].imshow(_as_rgb(image), interpolation="nearest")
        if boxes is not None:
            _draw_box(axes[0, col], boxes[col])
        axes[0, col].set_title(title, fontsize=9)
    for row, maps in enumerate(rows.values(), start=1):
        for col, image in enumerate(images):
            heatmap_panel(
                axes[row, col], image, np.asarray(maps[col]), None if boxes is None else boxes[col], "", alpha
            )
    for row, name in enumerate(["image", *rows]):
        for ax in axes[row]:  # keep the frame off but the row's name on the left
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[row, 0].set_ylabel(name, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    add_colour_bar(fig, label)
    return fig


def pick_correct_and_wrong(
    labels: np.ndarray, predicted: np.ndarray, n_correct: int = 3, n_wrong: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of correct and of wrong predictions to show, taking the classes in turn.

    The first examples of a test set often share a class; taking one per class in turn means a
    figure shows every class among the correct ones, and mistakes of several true classes.
    """
    labels, predicted = np.asarray(labels).reshape(-1), np.asarray(predicted).reshape(-1)

    def round_robin(indices: np.ndarray, count: int) -> np.ndarray:
        per_class = [indices[labels[indices] == c] for c in np.unique(labels[indices])]
        order = [
            group[k]
            for k in range(max((len(g) for g in per_class), default=0))
            for group in per_class
            if k < len(group)
        ]
        return np.asarray(order[:count], dtype=np.int64)

    is_correct = labels == predicted
    return round_robin(np.flatnonzero(is_correct), n_correct), round_robin(np.flatnonzero(~is_correct), n_wrong)

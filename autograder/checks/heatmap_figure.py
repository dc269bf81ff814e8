"""The side-by-side figure of a heatmap verdict: probe image, the student's map, the reference map, the difference.

Rendered with matplotlib's object API on an Agg canvas (no pyplot, no global state, no display),
small enough to embed in a feedback page as a base64 PNG (MAX_BYTES). The pixels come from the
student's recorded maps, but only as numbers drawn by the grader: no kernel bytes reach the PNG.
"""

from __future__ import annotations

import base64
import io

import numpy as np

MAX_BYTES = 100_000
DPI = (80, 60, 45)  # tried in order until the PNG fits MAX_BYTES


def side_by_side(image: np.ndarray, student: np.ndarray, reference: np.ndarray, title: str) -> str | None:
    """A base64 PNG of the four panels (maps in [0, 1], difference student - reference), or None if too big."""
    student = np.nan_to_num(np.asarray(student, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    reference = np.asarray(reference, np.float64)
    for dpi in DPI:
        png = _render(image, student, reference, title, dpi)
        if len(png) * 4 // 3 + 4 <= MAX_BYTES:
            return base64.b64encode(png).decode("ascii")
    return None


def _render(image: np.ndarray, student: np.ndarray, reference: np.ndarray, title: str, dpi: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 3.1), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    grey = image.ndim == 2
    axes[0].imshow(image, cmap="gray" if grey else None, vmin=0.0, vmax=1.0)
    axes[0].set_title("Probe image")
    for ax, maps, name in ((axes[1], student, "Your map"), (axes[2], reference, "Reference map")):
        shown = ax.imshow(maps, cmap="inferno", vmin=0.0, vmax=1.0)
        ax.set_title(name)
    fig.colorbar(shown, ax=axes[1:3], shrink=0.85, label="map value")
    diff = axes[3].imshow(student - reference, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    axes[3].set_title("Yours - reference")
    fig.colorbar(diff, ax=axes[3], shrink=0.85, label="difference")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    return out.getvalue()

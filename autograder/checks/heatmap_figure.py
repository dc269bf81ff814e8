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
# Tried in order until the PNG fits MAX_BYTES (80: 800 x 232 pixels): full colour at 80 dpi (smooth CAM and
# Grad-CAM maps fit), then a 256-colour palette (noisy saliency maps), then smaller.
DPI = (80, 60, 45)


def side_by_side(image: np.ndarray, student: np.ndarray, reference: np.ndarray, title: str) -> str | None:
    """A base64 PNG of the four panels (maps in [0, 1], difference student - reference), or None if too big."""
    student = np.nan_to_num(np.asarray(student, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    reference = np.asarray(reference, np.float64)
    for dpi in DPI:
        png = _render(image, student, reference, title, dpi)
        for candidate in (png, _palette_png(png)) if dpi == DPI[0] else (_palette_png(png),):
            if len(candidate) * 4 // 3 + 4 <= MAX_BYTES:
                return base64.b64encode(candidate).decode("ascii")
    return None


def _palette_png(png: bytes) -> bytes:
    """Re-encode with a 256-colour adaptive palette: noisy saliency maps shrink about 3x, smooth maps look the same."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        out = io.BytesIO()
        im.convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _render(image: np.ndarray, student: np.ndarray, reference: np.ndarray, title: str, dpi: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed axes positions (no constrained layout: it draws the figure twice, the costliest step).
    fig = Figure(figsize=(10.0, 2.9), dpi=dpi)
    FigureCanvasAgg(fig)
    width, bottom, height = 0.185, 0.04, 0.76
    lefts = (0.01, 0.2, 0.39, 0.655)
    axes = [fig.add_axes((left, bottom, width, height)) for left in lefts]
    grey = image.ndim == 2
    axes[0].imshow(image, cmap="gray" if grey else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    names = ("Probe image", "Your map", "Reference map", "Yours - reference")
    for ax, maps in ((axes[1], student), (axes[2], reference)):
        shown = ax.imshow(maps, cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(shown, cax=fig.add_axes((0.58, bottom, 0.012, height)))
    gap = student - reference
    span = max(float(np.abs(gap).max()), 1e-3)  # symmetric, scaled to the largest difference: small ones show
    diff = axes[3].imshow(gap, cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest")
    fig.colorbar(diff, cax=fig.add_axes((0.845, bottom, 0.012, height)))
    for ax, name in zip(axes, names, strict=True):
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    return out.getvalue()

"""Checks on files a notebook writes, judged from the copies cnnvis.evidence.record_files made.

`files.saved_images`: the graded assignment saves one saliency overlay PNG per test image, as the
original course did. The grader decides how many images (the probe); the hidden test asks the
student's save function for that many and records the files it returned:

    n = evidence.probe_calls("asg_saved_images")[0]["count"] if evidence.grading() else len(test_images)
    evidence.record_files("asg_saved_images", sorted(save_saliency_images(model, test_images[:n], "saliency_maps")))

The judge then requires exactly `count` files that exist, decode as PNG, have the model's input
size (`size`, height and width), differ from each other and are not blank. Everything in the
evidence folder was written by untrusted code, so file names are confined to that folder and
images are size-checked before their pixels are decoded (decompression bombs).
"""

from __future__ import annotations

import hashlib
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from autograder.checks import Check, CheckContext, Evidence, register

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
BLANK_STD = 1.0  # grey levels (of 255): below this an image is one flat colour
DEFAULT_SIZE = (300, 300)


class ImageProblem(ValueError):
    """One saved file is not an acceptable image; the message is written for the student."""


def _inside(folder: Path, name: Any) -> Path | None:
    """FOLDER/NAME if NAME is a plain file name inside FOLDER (the record could be forged)."""
    if not isinstance(name, str) or not name:
        return None
    path = (folder / name).resolve()
    root = folder.resolve()
    return path if path.parent == root and path.is_file() else None


def read_png(path: Path, max_bytes: int = MAX_FILE_BYTES, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode PATH as a PNG into an (H, W, 3) uint8 array, refusing anything else or anything huge."""
    from PIL import Image

    size = path.stat().st_size
    if size > max_bytes:
        raise ImageProblem(f"is {size} bytes, more than the {max_bytes} allowed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format != "PNG":
                    raise ImageProblem(f"is a {img.format or 'unknown'} file, not a PNG")
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageProblem(f"is {width}x{height} pixels, far larger than an image of this notebook")
                return np.asarray(img.convert("RGB"))
    except ImageProblem:
        raise
    except Exception as exc:  # truncated, corrupt or not an image at all
        raise ImageProblem(f"cannot be decoded as an image ({type(exc).__name__}: {str(exc)[:120]})") from None


def expected_size(ctx: CheckContext) -> tuple[int, int]:
    """(height, width) of the images the notebook saves: its model's input size."""
    spec = ctx.model_spec
    if spec is None or len(spec.input_shape) < 2:
        return DEFAULT_SIZE
    return int(spec.input_shape[0]), int(spec.input_shape[1])


@register
class SavedImages(Check):
    name = "files.saved_images"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        count = random.Random(ctx.seed).randint(3, 6)
        return [{"count": count, "size": list(expected_size(ctx))}]

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        probe = evidence.probes[0] if evidence.probes else self.probes(ctx)[0]
        count = int(probe["count"])
        height, width = (int(v) for v in probe["size"])
        entries = evidence.values.get("files")
        if not isinstance(entries, list):
            return ["No list of saved files was recorded: your save function must return the paths it wrote."]
        problems: list[str] = []
        if len(entries) != count:
            problems.append(
                f"Asked to save {count} images, your function returned {len(entries)} paths: "
                "save one PNG per image and return the list of their paths."
            )
        digests: dict[str, str] = {}
        for entry in entries[:count]:
            label = f"{Path(str(entry.get('path', '?'))).name!r}" if isinstance(entry, dict) else repr(entry)
            if not isinstance(entry, dict) or not entry.get("exists"):
                problems.append(f"{label} does not exist: save the file before returning its path.")
                continue
            path = _inside(evidence.folder, entry.get("copy"))
            if path is None:
                problems.append(f"{label} was not recorded (the saved files are too large in total).")
                continue
            try:
                pixels = read_png(path)
            except ImageProblem as exc:
                problems.append(f"{label} {exc}.")
                continue
            if pixels.shape[:2] != (height, width):
                problems.append(
                    f"{label} is {pixels.shape[1]}x{pixels.shape[0]} pixels (width x height), expected "
                    f"{width}x{height}: save the overlay at the image size, without figure margins."
                )
            if float(pixels.std()) < BLANK_STD:
                problems.append(f"{label} is blank (a single colour): overlay the saliency map on the image.")
            digest = hashlib.sha256(pixels.tobytes()).hexdigest()
            if digest in digests:
                problems.append(
                    f"{label} has the same pixels as {digests[digest]}: each image needs its own saliency overlay."
                )
            else:
                digests[digest] = label
        return problems

"""Load a Keras model a hidden test recorded, safely.

The file comes from an untrusted kernel, so it is loaded with Keras' safe mode (no lambdas, no
arbitrary code), without custom objects, after a size check. A model that cannot be loaded that
way is a problem for the student to fix, reported as a sentence, never a grader crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_MODEL_BYTES = 200 * 1024 * 1024


class RecordedModelError(ValueError):
    """The recorded model is missing, too large or cannot be loaded safely."""


def load_recorded_model(ref: Any, max_bytes: int = MAX_MODEL_BYTES):
    """REF is what cnnvis.evidence.decode gives for a model: {"model_path": Path, "loss": str}."""
    if not isinstance(ref, dict) or "model_path" not in ref:
        raise RecordedModelError("no Keras model was recorded (the value recorded is not a model)")
    path = Path(ref["model_path"])
    if not path.is_file():
        raise RecordedModelError(f"the recorded model file {path.name} is missing")
    size = path.stat().st_size
    if size > max_bytes:
        raise RecordedModelError(f"the recorded model is {size} bytes, more than the {max_bytes} allowed")
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise RecordedModelError(
            f"the recorded model could not be loaded safely ({type(exc).__name__}: {str(exc)[:200]}); "
            "use only built-in Keras layers, no Lambda layers or custom classes"
        ) from None


def recorded_loss(ref: Any) -> str | None:
    """The loss the student compiled the model with, as recorded (a Keras name such as 'categorical_crossentropy')."""
    return ref.get("loss") if isinstance(ref, dict) else None

"""Load a Keras model a hidden test recorded, safely.

The file comes from an untrusted kernel, so before Keras sees it, its archive and config are
checked against the seed model of the part in course.yml (autograder/checks/model_budget.py:
declared sizes, layer classes, parameters, FLOPs and activations within `grading.judge.cost_factor`
times the seed's); then it is loaded with Keras' safe mode (no lambdas, no arbitrary code),
without custom objects. A model refused or not loadable that way is a problem for the student to
fix, reported as a sentence, never a grader crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autograder.checks.model_budget import ModelRefused, check_recorded_model
from autograder.grading.evidence_read import cut

if TYPE_CHECKING:
    from autograder.checks import CheckContext


class RecordedModelError(ValueError):
    """The recorded model is missing, too large or cannot be loaded safely."""


def load_recorded_model(ref: Any, ctx: CheckContext):
    """REF is what cnnvis.evidence.decode gives for a model: {"model_path": Path, "loss": str}.

    Checked against CTX's model spec (the notebook's `model:`), or the course's largest model
    when the notebook names none.
    """
    if not isinstance(ref, dict) or "model_path" not in ref:
        raise RecordedModelError("no Keras model was recorded (the value recorded is not a model)")
    path = Path(ref["model_path"])
    if not path.is_file():
        raise RecordedModelError(f"the recorded model file {path.name} is missing")
    if path.is_symlink():
        raise RecordedModelError(f"the recorded model file {path.name} is not a regular file")
    spec = ctx.model_spec or max(ctx.course.models.values(), key=lambda m: m.total, default=None)
    if spec is None:
        raise RecordedModelError("this course has no model specification to check a recorded model against")
    try:
        check_recorded_model(path, spec, ctx.course.grading.judge, ctx.course.grading.max_evidence_mb * 2**20)
    except ModelRefused as exc:
        raise RecordedModelError(str(exc)) from None
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise RecordedModelError(
            f"the recorded model could not be loaded safely ({type(exc).__name__}: {cut(str(exc), 200)}); "
            "use only built-in Keras layers, no Lambda layers or custom classes"
        ) from None


def recorded_loss(ref: Any) -> str | None:
    """The loss the student compiled the model with, as recorded (a Keras name such as 'categorical_crossentropy')."""
    return ref.get("loss") if isinstance(ref, dict) else None

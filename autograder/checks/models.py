"""The model summary check: a recorded Keras model against the seed's summary in course.yml.

Layers are compared in order by class, output shape and parameter count (not by name: Keras
numbers layer names per session, so a student who built two models gets conv2d_4). InputLayer
rows are ignored on both sides, and a nested base model (VGG16 inside a functional model) is
flattened, so nesting it or not does not matter. Feedback names the first mismatch and its
likely cause, then the totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from autograder.checks import Check, CheckContext, Evidence, register
from autograder.checks.recorded_models import RecordedModelError, load_recorded_model
from autograder.course import LayerSpec, ModelSpec


@dataclass(frozen=True)
class LayerRow:
    """One row of a model summary, with the configuration the likely-cause hints need."""

    name: str
    cls: str
    output_shape: tuple[int | None, ...]
    params: int
    kernel_size: tuple[int, ...] | None = None
    units: int | None = None


def flat_layers(model: Any) -> list[Any]:
    """The model's layers in order, nested models expanded, InputLayers left out."""
    out: list[Any] = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested Model (e.g. the VGG16 base)
            out += flat_layers(layer)
        else:
            out.append(layer)
    return out


def summary_rows(model: Any) -> list[LayerRow]:
    rows = []
    for layer in flat_layers(model):
        try:
            shape = tuple(None if d is None else int(d) for d in layer.output.shape)
        except (AttributeError, ValueError):  # a layer that was never called has no output
            shape = ()
        kernel = getattr(layer, "kernel_size", None)
        rows.append(
            LayerRow(
                name=layer.name,
                cls=type(layer).__name__,
                output_shape=shape,
                params=int(layer.count_params()) if layer.built else 0,
                kernel_size=tuple(kernel) if kernel is not None else None,
                units=getattr(layer, "units", None),
            )
        )
    return rows


def weight_counts(model: Any) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts."""
    count = lambda ws: int(sum(int(np.prod(w.shape)) for w in ws))  # noqa: E731
    return count(model.trainable_weights), count(model.non_trainable_weights)


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _same(row: LayerRow, exp: LayerSpec) -> bool:
    """Same class and output shape (parameters may differ when an extra layer sits before it)."""
    return row.cls == exp.cls and row.output_shape == tuple(exp.output_shape)


def _layer_hint(i: int, exp: LayerSpec, got: LayerRow, spec: ModelSpec) -> str:
    """Why GOT's output shape differs from EXP's, as a short guess."""
    if got.cls == "Dense":
        return f"{exp.output_shape[-1]} units expected"
    if got.cls == "Conv2D" and got.output_shape[-1] != exp.output_shape[-1]:
        return f"{exp.output_shape[-1]} filters expected"
    if got.cls == "Conv2D" and got.kernel_size and len(got.output_shape) == 4 and len(exp.output_shape) == 4:
        shrink = got.kernel_size[0] - 1
        if shrink and got.output_shape[1] == (exp.output_shape[1] or 0) - shrink:
            return "missing padding='same'?"
    if i == 0:
        return f"is the input shape {tuple(spec.input_shape)}?"
    if got.cls == "MaxPooling2D":
        return "pool_size=2 (with the default padding='valid') expected"
    return "check this layer's arguments"


def summary_problems(model: Any, spec: ModelSpec) -> list[str]:
    """The first mismatch between MODEL and SPEC with its likely cause, or [] when they agree."""
    expected = [layer for layer in spec.layers if layer.cls != "InputLayer"]
    got = summary_rows(model)
    for i, exp in enumerate(expected):
        if i >= len(got):
            missing = ", ".join(f"{e.name} ({e.cls})" for e in expected[i:])
            return [f"the model stops after {len(got)} layers; missing: {missing}."]
        row = got[i]
        where = exp.name  # the seed's name: Keras numbers a student's layers per session (conv2d_4)
        if row.cls != exp.cls:
            hint = ""
            if len(got) > len(expected) and i + 1 < len(got) and got[i + 1].cls == exp.cls:
                hint = f": an extra {row.cls} layer before it?"
            elif len(got) < len(expected) and i + 1 < len(expected) and expected[i + 1].cls == row.cls:
                hint = f": missing the {exp.cls} layer?"
            return [f"layer {i + 1} should be {exp.name} ({exp.cls}), got {row.name} ({row.cls}){hint}"]
        if len(got) > len(expected) and i + 1 < len(got) and _same(got[i + 1], exp) and not _same(row, exp):
            return [
                f"{where}: an extra {row.cls} layer ({row.name}, output {_shape(row.output_shape)}) comes before it"
            ]
        if row.output_shape != tuple(exp.output_shape):
            return [
                f"{where}: output {_shape(row.output_shape)}, expected {_shape(exp.output_shape)}: "
                f"{_layer_hint(i, exp, row, spec)}"
            ]
        if row.params != exp.params:
            hint = "kernel size or bias differ?" if row.cls == "Conv2D" else "use_bias or inputs differ?"
            return [f"{where}: {row.params:,} parameters, expected {exp.params:,}: {hint}"]
    if len(got) > len(expected):
        extra = ", ".join(f"{r.name} ({r.cls})" for r in got[len(expected) :])
        return [f"the model has {len(got) - len(expected)} layers more than the seed's summary: {extra}."]
    return _total_problems(model, spec)


def _total_problems(model: Any, spec: ModelSpec) -> list[str]:
    trainable, frozen = weight_counts(model)
    if trainable + frozen != spec.total:
        return [f"{spec.total:,} parameters in total expected, got {trainable + frozen:,}."]
    if trainable == spec.trainable:
        return []
    if spec.frozen_through:
        hint = f"freeze the VGG16 base up to {spec.frozen_through}"
        if trainable < spec.trainable:
            hint = f"freeze only up to {spec.frozen_through}; the layers after it stay trainable"
    else:
        hint = "every layer should be trainable: nothing is frozen in this model"
    return [f"{spec.trainable:,} trainable expected, got {trainable:,}: {hint}."]


@register
class Summary(Check):
    """The model a hidden test recorded matches the seed's summary for the notebook's model."""

    name = "models.summary"

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        spec = ctx.model_spec
        if spec is None:
            raise ValueError(f"{ctx.notebook.name}: models.summary needs `model:` in course.yml")
        try:
            model = load_recorded_model(evidence.values.get("model"), ctx)
        except RecordedModelError as exc:
            return [str(exc)]
        return summary_problems(model, spec)

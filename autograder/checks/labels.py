"""Checks for label formats, last-layer heads and losses (the review notebook and every lab's labels).

The reference answers live here, in the grading process: the label-format convention, the
table of course.yml `label_formats`, and Keras' loss formulas in numpy float64 for the loss values
(autograder.reference.losses, tested against keras.losses). Probes come from autograder.strategies,
deterministic per part.

Convention for label formats (taught in the review notebook):
- integer: 1-D, whole non-negative numbers (any numeric dtype: [0., 2.] are class ids too);
- one-hot: 2-D of 0/1 with exactly one 1 in every row;
- multi-hot: 2-D of 0/1 otherwise (a row may have no 1 or several);
- anything else (probabilities, 3-D arrays, fractional or negative ids, a scalar) is not a label array.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from hypothesis import strategies as st

from autograder import strategies as S
from autograder.checks import Check, CheckContext, Evidence, register
from autograder.checks.recorded_models import RecordedModelError, load_recorded_model, recorded_loss
from autograder.course import LabelFormat
from autograder.reference import losses as reference_losses

FORMATS = ("integer", "one-hot", "multi-hot")
LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")
MAX_PROBLEMS = 5  # more than this many messages drown the useful first ones


# ----------------------------------------------------------------------------- reference answers


def reference_format(y: Any) -> str:
    """The format of label array Y, or ValueError saying why it is none of the three."""
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ValueError(f"labels must be numbers, got dtype {y.dtype}")
    if y.ndim == 1:
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"a 1-D label array must hold whole class ids, got values such as {_odd_value(y)}")
        if np.any(y < 0):
            raise ValueError(f"class ids cannot be negative, got {int(np.min(y))}")
        return "integer"
    if y.ndim == 2:
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"a 2-D label array must hold only 0 and 1, got values such as {_odd_value(y)}")
        return "one-hot" if np.all(y.sum(axis=1) == 1) else "multi-hot"
    raise ValueError(f"labels are 1-D (batch,) or 2-D (batch, classes), got {y.ndim}-D shape {y.shape}")


def _odd_value(y: np.ndarray) -> str:
    odd = y[(y != np.round(y)) | ~np.isfinite(y)] if y.ndim == 1 else y[(y != 0) & (y != 1)]
    return f"{odd.flat[0]:g}" if odd.size else "?"


def canonical_loss(name: Any) -> str | None:
    """A loss's Keras name: 'CategoricalCrossentropy' and 'categorical-crossentropy' → 'categorical_crossentropy'."""
    if not isinstance(name, str) or not name.strip():
        return None
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip()).lower().replace("-", "_").replace(" ", "_")
    return snake


def _task_of(fmt: LabelFormat) -> str:
    return "multi-label" if fmt.task.startswith("multi-label") else "single-label"


def reference_head(formats: dict[str, LabelFormat], task: str, label_format: str, num_classes: int) -> dict[str, Any]:
    """The last layer and loss for TASK and LABEL_FORMAT from course.yml's table, or ValueError."""
    if label_format not in formats:
        raise ValueError(f"unknown label format {label_format!r}; expected one of {sorted(formats)}")
    fmt = formats[label_format]
    if task != _task_of(fmt):
        raise ValueError(f"{label_format} labels cannot describe a {task} task")
    units = num_classes if fmt.units == "num_classes" else int(fmt.units)
    if label_format == "binary" and num_classes != 2:
        raise ValueError(f"a single sigmoid unit separates exactly 2 classes, not {num_classes}")
    return {"units": units, "activation": fmt.activation, "loss": fmt.loss}


def reference_pairing(y: Any, loss_name: str, units: int) -> str | None:
    """What is wrong with training a head of UNITS units on labels Y with LOSS_NAME, or None."""
    y = np.asarray(y)
    try:
        fmt = reference_format(y)
    except ValueError as exc:
        return f"these are not labels: {exc}"
    loss = canonical_loss(loss_name)
    if loss not in LOSSES:
        return f"unknown loss {loss_name!r}"
    shape = tuple(y.shape)
    if loss == "sparse_categorical_crossentropy":
        if fmt != "integer":
            return f"{fmt} labels of shape {shape} with {loss}, which expects integer class ids of shape (batch_size,)"
        if units < 2:
            return f"a softmax over {units} unit always outputs 1; use at least 2 units"
        if y.size and int(y.max()) >= units:
            return f"class id {int(y.max())} needs at least {int(y.max()) + 1} units, the model has {units}"
        return None
    if loss == "categorical_crossentropy":
        if fmt != "one-hot":
            return (
                f"{fmt} labels of shape {shape} with {loss}, which expects one-hot labels of shape "
                "(batch_size, num_classes)"
            )
        if units != shape[1]:
            return f"one-hot labels with {shape[1]} classes but {units} units"
        return None
    if fmt == "integer":  # binary_crossentropy
        if units == 1 and np.all((y == 0) | (y == 1)):
            return None  # (batch,) of 0/1 against one sigmoid unit: Keras adds the missing axis
        return (
            f"a (batch_size,) array of shape {shape} with {loss} over {units} units; "
            f"it expects 0/1 labels of shape (batch_size, {units})"
        )
    if units != shape[1]:
        return f"labels with {shape[1]} columns but {units} units"
    return None


def describe(y: Any) -> str:
    """'a one-hot array of shape (1, 3)', for messages."""
    y = np.asarray(y)
    try:
        fmt = reference_format(y)
    except ValueError:
        return f"an array of shape {tuple(y.shape)} (dtype {y.dtype}) that is not a label array"
    article = "an" if fmt == "integer" else "a"
    return f"{article} {fmt} array of shape {tuple(y.shape)} (dtype {y.dtype})"


# ----------------------------------------------------------------------------- evidence helpers


def _numeric(value: Any) -> np.ndarray | None:
    if isinstance(value, (dict, str)) or value is None:
        return None
    try:
        array = np.asarray(value)
    except Exception:
        return None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        return None
    return array


def _pairs(evidence: Evidence, problems: list[str]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    if len(evidence.calls) != len(evidence.probes):
        problems.append(f"{len(evidence.calls)} results were recorded for {len(evidence.probes)} test inputs.")
    yield from zip(evidence.probes, evidence.calls, strict=False)  # a length mismatch is reported above


def _returned(call: dict[str, Any]) -> str:
    if not call.get("ok"):
        return f"raised {call.get('error')}: {call.get('message')}"
    return f"returned {_short(call.get('value'))}"


def _short(value: Any) -> str:
    array = _numeric(value)
    if array is not None and array.ndim > 0:
        return f"an array of shape {tuple(array.shape)}"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _expect_value_error(call: dict[str, Any], what: str, why: str) -> str | None:
    """A problem sentence unless CALL raised a ValueError with a message; WHY says what is wrong with the input."""
    if call.get("ok"):
        return f"{what} should raise a ValueError ({why}), but it returned {_short(call.get('value'))}."
    if call.get("error") != "ValueError":
        return f"{what} should raise a ValueError ({why}), but it raised {call.get('error')}: {call.get('message')}."
    if not str(call.get("message") or "").strip():
        return f"{what} raised a ValueError without a message; say what is wrong ({why})."
    return None


def _limit(problems: list[str]) -> list[str]:
    """One message per kind of problem (numbers aside), with how many inputs it hit, at most MAX_PROBLEMS."""
    groups: dict[str, list[str]] = {}
    for problem in problems:
        groups.setdefault(re.sub(r"-?\d[\d.e+-]*", "#", problem), []).append(problem)
    out = [msgs[0] + (f" (and {len(msgs) - 1} similar inputs)" if len(msgs) > 1 else "") for msgs in groups.values()]
    if len(out) > MAX_PROBLEMS:
        return out[:MAX_PROBLEMS] + [f"... and {len(out) - MAX_PROBLEMS} more kinds of problems."]
    return out


def _examples(strategy: st.SearchStrategy[Any], n: int, seed: int) -> list[Any]:
    return S.draw_examples(strategy, n, seed)


def _fixed_examples() -> list[np.ndarray]:
    """Edge cases every probe set includes, whatever hypothesis draws: the seed's examples and batch 1."""
    return [
        np.array([2, 0, 1]),
        np.array([[0, 0, 1]]),
        np.array([[1, 0, 1]]),
        np.array([[0, 0, 0], [0, 1, 0]]),
        np.array([[0.0, 1.0]], dtype=np.float32),
        np.array([0]),
    ]


# ----------------------------------------------------------------------------- review parts


@register
class DetectFormat(Check):
    """label_format(y) → 'integer' | 'one-hot' | 'multi-hot', ValueError for anything else."""

    name = "labels.detect_format"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        arrays = _fixed_examples()
        arrays += [y for _, y, _ in _examples(S.labelled_arrays(), 30, ctx.seed)]
        for i, kind in enumerate(S.INVALID_KINDS):
            arrays += [y for _, y in _examples(S.invalid_label_arrays(kind), 2, ctx.seed + i)]
        return [{"y": y} for y in arrays]

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            y = np.asarray(probe["y"])
            try:
                truth = reference_format(y)
            except ValueError as exc:
                bad = _expect_value_error(call, f"label_format on {describe(y)}", str(exc))
                if bad:
                    problems.append(bad)
                continue
            if not call.get("ok") or call.get("value") != truth:
                problems.append(f"For {describe(y)} your label_format {_returned(call)}, expected {truth!r}.")
        return _limit(problems)


@register
class Convert(Check):
    """to_one_hot(y, num_classes), to_integer(y_one_hot), to_multi_hot(label_sets, num_classes)."""

    name = "labels.convert"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = [
            {"function": "to_one_hot", "y": np.array([2, 0, 1]), "num_classes": 3},
            {"function": "to_integer", "y_one_hot": np.array([[0.0, 0.0, 1.0]])},
            {"function": "to_multi_hot", "label_sets": [[0, 2], [], [1]], "num_classes": 3},
        ]
        for y, c in _examples(S.integer_labels(), 12, ctx.seed):
            calls.append({"function": "to_one_hot", "y": y, "num_classes": c})
        for y, _ in _examples(S.one_hot_labels(), 12, ctx.seed + 1):
            calls.append({"function": "to_integer", "y_one_hot": y})
        for y, c in _examples(S.multi_hot_labels(), 12, ctx.seed + 2):
            calls.append(
                {"function": "to_multi_hot", "label_sets": [np.flatnonzero(r).tolist() for r in y], "num_classes": c}
            )
        return calls

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            fn = probe.get("function")
            if fn == "to_one_hot":
                y, c = np.asarray(probe["y"]), int(probe["num_classes"])
                expected, what = np.eye(c)[y], f"to_one_hot({describe(y)}, num_classes={c})"
            elif fn == "to_integer":
                y = np.asarray(probe["y_one_hot"])
                expected, what = np.argmax(y, axis=1), f"to_integer({describe(y)})"
            else:
                sets, c = probe["label_sets"], int(probe["num_classes"])
                expected = np.zeros((len(sets), c))
                for row, labels in enumerate(sets):
                    expected[row, list(labels)] = 1
                what = f"to_multi_hot of {len(sets)} label sets with num_classes={c}"
                if any(len(s) == 0 for s in sets):
                    what += " (some sets empty)"
            problem = _compare_labels(call, expected, what)
            if problem:
                problems.append(problem)
        return _limit(problems)


def _compare_labels(call: dict[str, Any], expected: np.ndarray, what: str) -> str | None:
    if not call.get("ok"):
        return f"{what} {_returned(call)}."
    got = _numeric(call.get("value"))
    if got is None:
        return f"{what} returned {_short(call.get('value'))}, expected a numpy array."
    if got.shape != expected.shape:
        return f"{what} returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}."
    if not np.array_equal(got, expected):
        row = int(
            np.argwhere(np.any(got != expected, axis=tuple(range(1, got.ndim))) if got.ndim > 1 else got != expected)[
                0
            ][0]
        )
        return f"{what}: row {row} is {got[row].tolist()}, expected {expected[row].astype(int).tolist()}."
    return None


@register
class ChooseHead(Check):
    """choose_head(task, label_format, num_classes) → {'units', 'activation', 'loss'} per course.yml."""

    name = "labels.choose_head"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        formats = ctx.course.label_formats
        combos = [(task, fmt) for fmt in formats for task in ("single-label", "multi-label")]
        counts = _examples(S.class_counts, 6, ctx.seed)
        calls = [{"task": t, "label_format": f, "num_classes": c} for t, f in combos for c in counts]
        calls.append({"task": "single-label", "label_format": "binary", "num_classes": 2})
        calls.append({"task": "single-label", "label_format": "integer", "num_classes": 10})
        return calls

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            what = f"choose_head({probe['task']!r}, {probe['label_format']!r}, {probe['num_classes']})"
            try:
                truth = reference_head(
                    ctx.course.label_formats, probe["task"], probe["label_format"], int(probe["num_classes"])
                )
            except ValueError as exc:
                bad = _expect_value_error(call, what, str(exc))
                if bad:
                    problems.append(bad)
                continue
            if not call.get("ok"):
                problems.append(f"{what} {_returned(call)}; expected {truth}.")
                continue
            got = call.get("value")
            if not isinstance(got, dict) or set(got) < {"units", "activation", "loss"}:
                problems.append(f"{what} returned {_short(got)}; expected a dict with units, activation and loss.")
                continue
            wrong = [
                f"{key}={got[key]!r} (expected {truth[key]!r})"
                for key in ("units", "activation", "loss")
                if (canonical_loss(got[key]) if key == "loss" else got[key]) != truth[key]
            ]
            if wrong:
                problems.append(f"{what}: " + ", ".join(wrong) + ".")
        return _limit(problems)


LOSS_NAMES = {
    "sparse": "sparse_categorical_crossentropy",
    "categorical": "categorical_crossentropy",
    "binary": "binary_crossentropy",
}


@register
class Losses(Check):
    """The three cross-entropies in numpy, batched, mean over the batch, clipped like Keras."""

    name = "labels.losses"
    uses_tensorflow = False
    rtol, atol = 1e-4, 1e-5

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        p = np.array([[0.1, 0.2, 0.7]])
        calls: list[dict[str, Any]] = [
            {"function": "sparse", "y_true": np.array([2]), "y_pred": p},
            {"function": "categorical", "y_true": np.array([[0.0, 0.0, 1.0]]), "y_pred": p},
            {"function": "binary", "y_true": np.array([[1.0, 0.0, 1.0]]), "y_pred": np.array([[0.9, 0.2, 0.8]])},
        ]
        single = S.integer_labels().flatmap(
            lambda yc: st.tuples(st.just(yc[0]), S.softmax_probabilities(len(yc[0]), yc[1]))
        )
        for y, prob in _examples(single, 10, ctx.seed):
            calls.append({"function": "sparse", "y_true": y, "y_pred": prob})
        onehot = S.one_hot_labels().flatmap(lambda yc: st.tuples(st.just(yc[0]), S.softmax_probabilities(*yc[0].shape)))
        for y, prob in _examples(onehot, 10, ctx.seed + 1):
            calls.append({"function": "categorical", "y_true": y, "y_pred": prob})
        multi = st.one_of(S.multi_hot_labels(), S.one_hot_labels()).flatmap(
            lambda yc: st.tuples(st.just(yc[0]), S.sigmoid_probabilities(*yc[0].shape))
        )
        for y, prob in _examples(multi, 10, ctx.seed + 2):
            calls.append({"function": "binary", "y_true": y, "y_pred": prob})
        return calls

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            short = probe.get("function")
            y, p = np.asarray(probe["y_true"]), np.asarray(probe["y_pred"])
            extremes = " (some probabilities exactly 0 or 1)" if np.any((p == 0) | (p == 1)) else ""
            what = f"{LOSS_NAMES[short]} on {describe(y)} and predictions of shape {p.shape}{extremes}"
            if not call.get("ok"):
                problems.append(f"For {what} your function {_returned(call)}.")
                continue
            got = _numeric(call.get("value"))
            if got is None or got.size != 1:
                shape = "nothing numeric" if got is None else f"shape {tuple(got.shape)}"
                problems.append(f"For {what} you returned {shape}; expected one number, the mean over the batch.")
                continue
            value, expected = float(got.reshape(())), reference_losses.LOSSES[short](y, p)
            if not np.isfinite(value):
                problems.append(
                    f"For {what} you returned {value}: clip probabilities to [1e-7, 1 - 1e-7] before the log."
                )
            elif not np.isclose(value, expected, rtol=self.rtol, atol=self.atol):
                problems.append(f"For {what} you returned {value:.6g}, Keras gives {expected:.6g}.")
        return _limit(problems)


@register
class Pairing(Check):
    """check_pairing(y, loss_name, units): ValueError with a message for a mismatch, no error otherwise."""

    name = "labels.pairing"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = [
            {"y": np.array([[0, 0, 1]]), "loss_name": "sparse_categorical_crossentropy", "units": 3},
            {"y": np.array([2, 0, 1]), "loss_name": "binary_crossentropy", "units": 3},
            {"y": np.array([2]), "loss_name": "sparse_categorical_crossentropy", "units": 3},
        ]
        seed = ctx.seed
        for strategy, loss, fits in _pairing_cases():
            for y, c in _examples(strategy, 3, seed):
                calls.append({"y": y, "loss_name": loss, "units": fits(y, c)})
            seed += 1
        return calls

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            y, loss, units = np.asarray(probe["y"]), probe["loss_name"], int(probe["units"])
            what = f"check_pairing({describe(y)}, {loss!r}, units={units})"
            wrong = reference_pairing(y, loss, units)
            if wrong:
                bad = _expect_value_error(call, what, wrong)
                if bad:
                    problems.append(bad)
            elif not call.get("ok"):
                problems.append(f"{what} is a correct pairing, but your function {_returned(call)}.")
        return _limit(problems)


def _pairing_cases() -> list[tuple[st.SearchStrategy[Any], str, Callable[[np.ndarray, int], int]]]:
    """(labels strategy, loss, units for those labels): matched and mismatched pairings."""
    classes = lambda y, c: c  # noqa: E731 - the natural head for these labels
    sparse, cat, bce = LOSSES
    binary_ids = S.integer_labels(num_classes=2)
    return [
        (S.integer_labels(), sparse, classes),  # fine
        (S.one_hot_labels(), cat, classes),  # fine
        (S.multi_hot_labels(), bce, classes),  # fine
        (S.one_hot_labels(), bce, classes),  # fine: a one-hot array is a valid multi-hot array
        (binary_ids.map(lambda yc: (yc[0][:, None], 1)), bce, classes),  # fine: (batch, 1) 0/1, one sigmoid unit
        (binary_ids.map(lambda yc: (yc[0], 1)), bce, classes),  # fine: (batch,) 0/1, one sigmoid unit
        (S.one_hot_labels(), sparse, classes),  # one-hot with sparse
        (S.multi_hot_labels(), sparse, classes),
        (S.integer_labels(), cat, classes),  # integer with categorical
        (S.multi_hot_labels(), cat, classes),
        (S.integer_labels(), bce, classes),  # (batch,) with BCE over several classes
        (S.one_hot_labels(), cat, lambda y, c: c + 1),  # units do not match the classes
        (S.multi_hot_labels(), bce, lambda y, c: c - 1),
        (S.integer_labels(), sparse, lambda y, c: max(2, int(y.max()))),  # too few units for the largest id
    ]


# ----------------------------------------------------------------------------- every lab: labels vs model


@register
class ModelPairing(Check):
    """A lab's prepare_labels(class_ids) gives the model spec's label format, and the model fits it."""

    name = "labels.model_pairing"

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        spec = ctx.model_spec
        if spec is None:
            raise ValueError(f"{ctx.notebook.name}: labels.model_pairing needs `model:` in course.yml")
        ids = [y for y, _ in _examples(S.integer_labels(num_classes=spec.num_classes), 8, ctx.seed)]
        return [{"class_ids": np.array([0])}] + [{"class_ids": y} for y in ids]

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        spec = ctx.model_spec
        assert spec is not None
        fmt = ctx.course.label_formats[spec.label_format]
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            ids = np.asarray(probe["class_ids"])
            expected = expected_labels(spec.label_format, ids, spec.num_classes)
            if not call.get("ok"):
                problems.append(f"prepare_labels on {ids.size} class ids {_returned(call)}.")
                continue
            got = _numeric(call.get("value"))
            if got is None:
                problems.append(f"prepare_labels returned {_short(call.get('value'))}, expected a numpy array.")
            elif got.shape != expected.shape:
                problems.append(
                    f"labels have shape {tuple(got.shape)} ({_format_word(got)}) but the model is compiled with "
                    f"{spec.loss}, which expects {spec.label_format} labels of shape {fmt.shape}."
                )
            elif not np.array_equal(got, expected):
                problems.append(
                    f"labels have the right shape {tuple(got.shape)} but not the right values for class ids "
                    f"{ids[:5].tolist()}...: expected {expected[:5].tolist()}..."
                )
        problems += _model_head_problems(ctx, evidence.values.get("model"))
        return _limit(problems)


def expected_labels(label_format: str, ids: np.ndarray, num_classes: int) -> np.ndarray:
    if label_format == "integer":
        return ids.astype(np.int64)
    if label_format == "one-hot":
        return np.eye(num_classes)[ids]
    if label_format == "binary":
        return ids.reshape(-1, 1)
    raise ValueError(f"no labels for class ids in format {label_format!r}")


def _format_word(y: np.ndarray) -> str:
    if y.ndim == 2 and y.shape[1] == 1 and np.all((y == 0) | (y == 1)):
        return "a binary column"
    try:
        return reference_format(y)
    except ValueError:
        return "not a label array"


def _model_head_problems(ctx: CheckContext, ref: Any) -> list[str]:
    spec = ctx.model_spec
    assert spec is not None
    try:
        model = load_recorded_model(ref, ctx)
    except RecordedModelError as exc:
        return [str(exc)]
    problems: list[str] = []
    loss = canonical_loss(recorded_loss(ref))
    if loss is None:
        problems.append(f"the model is not compiled with a loss; compile it with loss='{spec.loss}'.")
    elif loss != spec.loss:
        problems.append(
            f"the model is compiled with {loss}, but {spec.label_format} labels of shape "
            f"{ctx.course.label_formats[spec.label_format].shape} need {spec.loss}."
        )
    units, activation = last_layer_head(model)
    if units != spec.units:
        problems.append(
            f"the last Dense layer has {units} units, expected {spec.units} for {spec.label_format} labels."
        )
    if activation != spec.activation:
        problems.append(f"the last layer's activation is {activation}, expected {spec.activation} with {spec.loss}.")
    return problems


def last_layer_head(model: Any) -> tuple[int | None, str | None]:
    """(units of the last Dense layer, the activation the model ends with), following a trailing Activation layer."""
    from autograder.checks.models import flat_layers

    layers = flat_layers(model)
    activation = None
    for layer in reversed(layers):
        kind = type(layer).__name__
        if kind == "Activation" and activation is None:
            activation = _activation_name(layer.activation)
        elif kind == "Dense":
            own = _activation_name(layer.activation)
            return int(layer.units), activation or own
    return None, activation


def _activation_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", fn))

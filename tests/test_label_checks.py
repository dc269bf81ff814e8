"""The labels checks through the real evidence channel: correct answers pass, each wrong variant fails
with a message that says what was wrong on which input.

The correct answers are the review notebook's own solution cells (so this also proves the source
notebook's solutions pass its checks); wrong variants wrap them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import keras
import nbformat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder import strategies as S
from autograder.checks import CheckContext, get_check
from autograder.course import load_course
from autograder.grading.judge import Verdict, judge_part
from autograder.reference.losses import LOSSES
from cnnvis import evidence
from cnnvis.evidence import write_bundle

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT)
NOTEBOOK = ROOT / "source" / "review" / "label_loss_review.ipynb"
SOLUTION_CELLS = (
    "review_table",
    "review_label_format_answer",
    "review_convert_answer",
    "review_choose_head_answer",
    "review_losses_answer",
    "review_pairing_answer",
)


@pytest.fixture(scope="module")
def sol() -> dict[str, Any]:
    """The notebook's solution functions, executed from its cells."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    namespace: dict[str, Any] = {"np": np, "display": lambda *a: None, "Markdown": str}
    for grade_id in SOLUTION_CELLS:
        exec(compile(cells[grade_id], f"<{grade_id}>", "exec"), namespace)
    return namespace


def context(grade_id: str) -> CheckContext:
    for assignment in COURSE.assignments:
        for notebook in assignment.notebooks:
            for part in notebook.parts:
                if part.grade_id == grade_id:
                    return CheckContext(COURSE, assignment, notebook, part)
    raise KeyError(grade_id)


@functools.cache
def probes_for(grade_id: str) -> list[dict[str, Any]]:
    """The check's probes; deterministic, so computed once per part for all variants."""
    ctx = context(grade_id)
    return get_check(ctx.part.check).probes(ctx)


def grade(tmp_path: Path, monkeypatch, grade_id: str, fn: Any, **values: Any) -> Verdict:
    """Probes → the real record_calls → the real judge, as in grading."""
    ctx = context(grade_id)
    probes, found = tmp_path / "probes", tmp_path / "evidence"
    write_bundle(probes / grade_id, probes_for(grade_id), name="calls")
    monkeypatch.setenv(evidence.PROBES_ENV, str(probes))
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(found))
    try:
        evidence.record_calls(grade_id, fn, **values)
    except Exception:
        pass  # the student's error is recorded; the judge decides
    return judge_part(ctx, found, probes, max_bytes=50_000_000)


def failed(verdict: Verdict, *fragments: str) -> bool:
    return verdict.score == 0 and all(f in verdict.message for f in fragments)


# ----------------------------------------------------------------------------- detect_format


def test_detect_format(tmp_path, monkeypatch, sol):
    label_format = sol["label_format"]
    assert grade(tmp_path, monkeypatch, "review_detect_format", label_format).passed

    def never_one_hot(y):
        fmt = label_format(y)
        return "multi-hot" if fmt == "one-hot" else fmt

    v = grade(tmp_path, monkeypatch, "review_detect_format", never_one_hot)
    assert failed(v, "For a one-hot array of shape (1, 3)", "returned 'multi-hot', expected 'one-hot'"), v.message

    def accepts_probabilities(y):
        y = np.asarray(y)
        return "one-hot" if y.ndim == 2 and np.allclose(y.sum(axis=1), 1) else label_format(y)

    v = grade(tmp_path, monkeypatch, "review_detect_format", accepts_probabilities)
    assert failed(
        v,
        "that is not a label array should raise a ValueError (a 2-D label array must hold only 0 and 1",
        "but it returned 'one-hot'",
    ), v.message

    def wrong_error(y):
        try:
            return label_format(y)
        except ValueError:
            raise TypeError("bad labels") from None

    v = grade(tmp_path, monkeypatch, "review_detect_format", wrong_error)
    assert failed(v, "should raise a ValueError", "but it raised TypeError: bad labels"), v.message

    def silent_error(y):
        try:
            return label_format(y)
        except ValueError:
            raise ValueError() from None

    v = grade(tmp_path, monkeypatch, "review_detect_format", silent_error)
    assert failed(v, "raised a ValueError without a message"), v.message


# ----------------------------------------------------------------------------- convert


def test_convert(tmp_path, monkeypatch, sol):
    fns = {name: sol[name] for name in ("to_one_hot", "to_integer", "to_multi_hot")}
    assert grade(tmp_path, monkeypatch, "review_convert", fns).passed

    wrong = dict(fns, to_one_hot=lambda y, num_classes: np.eye(int(np.max(y)) + 1)[y])  # classes from the data
    v = grade(tmp_path, monkeypatch, "review_convert", wrong)
    assert failed(v, "to_one_hot(", "returned shape"), v.message

    wrong = dict(fns, to_integer=lambda y_one_hot: np.argmax(y_one_hot, axis=0))
    v = grade(tmp_path, monkeypatch, "review_convert", wrong)
    assert failed(v, "to_integer(a one-hot array of shape"), v.message

    def drops_empty_sets(label_sets, num_classes):
        return fns["to_multi_hot"]([s for s in label_sets if s], num_classes)

    v = grade(tmp_path, monkeypatch, "review_convert", dict(fns, to_multi_hot=drops_empty_sets))
    assert failed(v, "to_multi_hot of 3 label sets with num_classes=3 (some sets empty) returned shape (2, 3)"), (
        v.message
    )


# ----------------------------------------------------------------------------- choose_head


def test_choose_head(tmp_path, monkeypatch, sol):
    choose_head = sol["choose_head"]
    assert grade(tmp_path, monkeypatch, "review_choose_head", choose_head).passed

    def sigmoid_everywhere(task, label_format, num_classes):
        return dict(choose_head(task, label_format, num_classes), activation="sigmoid")

    v = grade(tmp_path, monkeypatch, "review_choose_head", sigmoid_everywhere)
    assert failed(v, "choose_head('single-label', 'integer',", "activation='sigmoid' (expected 'softmax')"), v.message

    def two_units_for_binary(task, label_format, num_classes):
        head = choose_head(task, label_format, num_classes)
        return dict(head, units=num_classes)

    v = grade(tmp_path, monkeypatch, "review_choose_head", two_units_for_binary)
    assert failed(v, "choose_head('single-label', 'binary', 2): units=2 (expected 1)"), v.message

    def never_raises(task, label_format, num_classes):
        return {"units": num_classes, "activation": "softmax", "loss": "categorical_crossentropy"}

    v = grade(tmp_path, monkeypatch, "review_choose_head", never_raises)
    assert failed(
        v,
        "choose_head('multi-label', 'integer',",
        "should raise a ValueError (integer labels cannot describe a multi-label task)",
    ), v.message

    def keras_class_names(task, label_format, num_classes):
        head = choose_head(task, label_format, num_classes)
        return dict(head, loss=keras_class_name(head["loss"]))

    assert grade(tmp_path, monkeypatch, "review_choose_head", keras_class_names).passed, "class names are accepted"


def keras_class_name(loss: str) -> str:
    """'categorical_crossentropy' → 'CategoricalCrossentropy', the name of Keras' loss class."""
    return type(keras.losses.get({"class_name": "".join(w.title() for w in loss.split("_")), "config": {}})).__name__


# ----------------------------------------------------------------------------- losses


KERAS_LOSSES = {
    "sparse": keras.losses.SparseCategoricalCrossentropy,
    "categorical": keras.losses.CategoricalCrossentropy,
    "binary": keras.losses.BinaryCrossentropy,
}


def _keras_value(short: str, y: np.ndarray, p: np.ndarray) -> float:
    loss = KERAS_LOSSES[short](from_logits=False, dtype="float64")
    return float(keras.ops.convert_to_numpy(loss(y.astype(np.float64), p.astype(np.float64))))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_reference_losses_equal_keras_losses(data):
    """The judge's numpy cross-entropies are keras.losses' values, exact 0/1 probabilities included."""
    y, c = data.draw(S.integer_labels())
    p = data.draw(S.softmax_probabilities(len(y), c))
    assert LOSSES["sparse"](y, p) == pytest.approx(_keras_value("sparse", y, p), rel=1e-9, abs=1e-12)
    y1, c1 = data.draw(S.one_hot_labels())
    p1 = data.draw(S.softmax_probabilities(*y1.shape))
    assert LOSSES["categorical"](y1, p1) == pytest.approx(_keras_value("categorical", y1, p1), rel=1e-9, abs=1e-12)
    y2, _ = data.draw(st.one_of(S.multi_hot_labels(), S.one_hot_labels()))
    p2 = data.draw(S.sigmoid_probabilities(*y2.shape))
    assert LOSSES["binary"](y2, p2) == pytest.approx(_keras_value("binary", y2, p2), rel=1e-9, abs=1e-12)


def test_losses(tmp_path, monkeypatch, sol):
    fns = {
        "sparse": sol["sparse_categorical_crossentropy"],
        "categorical": sol["categorical_crossentropy"],
        "binary": sol["binary_crossentropy"],
    }
    assert grade(tmp_path, monkeypatch, "review_losses", fns).passed

    def per_image(y_true, y_pred):
        p = np.clip(y_pred, 1e-7, 1 - 1e-7)
        return -np.log(p[np.arange(len(y_true)), np.asarray(y_true).astype(int)])

    v = grade(tmp_path, monkeypatch, "review_losses", dict(fns, sparse=per_image))
    assert failed(
        v, "sparse_categorical_crossentropy on an integer array", "expected one number, the mean over the batch"
    ), v.message

    def unclipped(y_true, y_pred):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.mean(-np.sum(y_true * np.log(y_pred), axis=-1)))

    v = grade(tmp_path, monkeypatch, "review_losses", dict(fns, categorical=unclipped))
    assert failed(v, "(some probabilities exactly 0 or 1)", "clip probabilities to [1e-7, 1 - 1e-7]"), v.message

    def summed_over_classes(y_true, y_pred):  # the seed's formula read literally: Keras averages over classes
        p = np.clip(y_pred, 1e-7, 1 - 1e-7)
        return float(np.mean(-np.sum(y_true * np.log(p) + (1 - y_true) * np.log(1 - p), axis=-1)))

    v = grade(tmp_path, monkeypatch, "review_losses", dict(fns, binary=summed_over_classes))
    assert failed(
        v, "binary_crossentropy on a multi-hot array of shape (1, 3)", "returned 0.551", "Keras gives 0.18"
    ), v.message


# ----------------------------------------------------------------------------- pairing


def test_pairing(tmp_path, monkeypatch, sol):
    check_pairing = sol["check_pairing"]
    assert grade(tmp_path, monkeypatch, "review_pairing", check_pairing).passed

    v = grade(tmp_path, monkeypatch, "review_pairing", lambda y, loss_name, units: None)
    assert failed(
        v,
        "check_pairing(a one-hot array of shape (1, 3) (dtype int64), 'sparse_categorical_crossentropy', units=3)",
        "should raise a ValueError (one-hot labels of shape (1, 3) with sparse_categorical_crossentropy",
        "but it returned None",
    ), v.message

    def one_hot_only_for_categorical(y, loss_name, units):
        if loss_name == "binary_crossentropy" and np.asarray(y).ndim == 2 and np.all(np.asarray(y).sum(axis=1) == 1):
            raise ValueError("one-hot labels need categorical_crossentropy")
        return check_pairing(y, loss_name, units)

    v = grade(tmp_path, monkeypatch, "review_pairing", one_hot_only_for_categorical)
    assert failed(v, "'binary_crossentropy'", "is a correct pairing, but your function raised ValueError"), v.message


# ----------------------------------------------------------------------------- every lab: labels vs model


def cnn(input_shape: tuple[int, ...], units: int, activation: str) -> keras.Model:
    """The seed's self-defined CAM CNN (Labs 1-3)."""
    layers = [keras.Input(input_shape)]
    for filters in (16, 32, 64):
        layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D()]
    layers += [
        keras.layers.Conv2D(128, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(units, activation=activation),
    ]
    return keras.Sequential(layers)


def compiled(model: keras.Model, loss: Any) -> keras.Model:
    model.compile(optimizer="adam", loss=loss)
    return model


@pytest.fixture(scope="module")
def lab_models() -> dict[str, keras.Model]:
    return {
        "lab1": compiled(cnn((28, 28, 1), 10, "softmax"), "sparse_categorical_crossentropy"),
        "lab2": compiled(cnn((300, 300, 3), 1, "sigmoid"), "binary_crossentropy"),
        "lab3": compiled(cnn((300, 300, 3), 2, "softmax"), keras.losses.CategoricalCrossentropy()),
    }


PREPARE = {
    "lab1_labels": lambda class_ids: np.asarray(class_ids),
    "lab2_labels": lambda class_ids: np.asarray(class_ids, dtype=np.float32).reshape(-1, 1),
    "lab3_labels": lambda class_ids: keras.utils.to_categorical(class_ids, 2),
}


@pytest.mark.parametrize("grade_id", sorted(PREPARE))
def test_model_pairing_accepts_each_labs_pairing(tmp_path, monkeypatch, lab_models, grade_id):
    model = lab_models[grade_id.split("_")[0]]
    assert grade(tmp_path, monkeypatch, grade_id, PREPARE[grade_id], model=model).passed


def test_model_pairing_rejects_mismatches(tmp_path, monkeypatch, lab_models):
    one_hot = lambda class_ids: np.eye(10)[class_ids]  # noqa: E731
    v = grade(tmp_path, monkeypatch, "lab1_labels", one_hot, model=lab_models["lab1"])
    assert failed(
        v,
        "labels have shape (1, 10) (one-hot) but the model is compiled with sparse_categorical_crossentropy, "
        "which expects integer labels of shape (batch_size,)",
    ), v.message

    flat = lambda class_ids: np.asarray(class_ids, dtype=np.float32)  # noqa: E731 - (batch,) not (batch, 1)
    v = grade(tmp_path, monkeypatch, "lab2_labels", flat, model=lab_models["lab2"])
    assert failed(v, "labels have shape (1,) (integer)", "expects binary labels of shape (batch_size, 1)"), v.message

    wrong_loss = compiled(cnn((300, 300, 3), 2, "softmax"), "sparse_categorical_crossentropy")
    v = grade(tmp_path, monkeypatch, "lab3_labels", PREPARE["lab3_labels"], model=wrong_loss)
    assert failed(
        v, "compiled with sparse_categorical_crossentropy, but one-hot labels", "need categorical_crossentropy"
    ), v.message

    logits = compiled(cnn((28, 28, 1), 10, None), "sparse_categorical_crossentropy")
    v = grade(tmp_path, monkeypatch, "lab1_labels", PREPARE["lab1_labels"], model=logits)
    assert failed(v, "the last layer's activation is linear, expected softmax"), v.message

    v = grade(tmp_path, monkeypatch, "lab1_labels", PREPARE["lab1_labels"], model=cnn((28, 28, 1), 10, "softmax"))
    assert failed(v, "the model is not compiled with a loss"), v.message

    v = grade(tmp_path, monkeypatch, "lab1_labels", PREPARE["lab1_labels"], model="not a model")
    assert failed(v, "no Keras model was recorded"), v.message

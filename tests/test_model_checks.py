"""models.summary on the four seed models built here, and on broken variants, through the real
evidence channel (the model is saved as .keras by cnnvis.evidence.record and loaded back safely)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import pytest

from autograder.checks import CheckContext
from autograder.course import load_course
from autograder.grading.judge import Verdict, judge_part
from cnnvis import evidence
from cnnvis.evidence import write_bundle

ROOT = Path(__file__).resolve().parents[1]
COURSE = load_course(ROOT)


def context(grade_id: str) -> CheckContext:
    for assignment in COURSE.assignments:
        for notebook in assignment.notebooks:
            for part in notebook.parts:
                if part.grade_id == grade_id:
                    return CheckContext(COURSE, assignment, notebook, part)
    raise KeyError(grade_id)


def grade(tmp_path: Path, monkeypatch, grade_id: str, model: Any) -> Verdict:
    probes, found = tmp_path / "probes", tmp_path / "evidence"
    write_bundle(probes / grade_id, [], name="calls")
    monkeypatch.setenv(evidence.PROBES_ENV, str(probes))
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(found))
    evidence.record(grade_id, model=model)
    return judge_part(context(grade_id), found, probes, max_bytes=200_000_000)


def cnn(
    input_shape: tuple[int, ...],
    units: int,
    activation: str,
    padding: str = "same",
    pools: int = 3,
    extra_dense: bool = False,
) -> keras.Model:
    """The seed's self-defined CAM CNN (Labs 1-3), with knobs for the usual mistakes."""
    layers: list[Any] = [keras.Input(input_shape)]
    for i, filters in enumerate((16, 32, 64)):
        layers.append(keras.layers.Conv2D(filters, 3, padding=padding, activation="relu"))
        if i < pools:
            layers.append(keras.layers.MaxPooling2D())
    layers += [keras.layers.Conv2D(128, 3, padding="same", activation="relu"), keras.layers.GlobalAveragePooling2D()]
    if extra_dense:
        layers.append(keras.layers.Dense(64, activation="relu"))
    layers.append(keras.layers.Dense(units, activation=activation))
    return keras.Sequential(layers)


@pytest.fixture(scope="module")
def vgg16_base() -> keras.Model:
    """VGG16 without its top, weights=None (offline), frozen up to block4_pool as in Lab 4."""
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    freeze_through(base, "block4_pool")
    return base


def freeze_through(base: keras.Model, last_frozen: str | None) -> None:
    frozen = last_frozen is not None
    for layer in base.layers:
        layer.trainable = not frozen
        if layer.name == last_frozen:
            frozen = False


def head(x: Any) -> Any:
    return keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))


@pytest.mark.parametrize(
    ("grade_id", "model"),
    [
        ("lab1_model", lambda: cnn((28, 28, 1), 10, "softmax")),
        ("lab2_model", lambda: cnn((300, 300, 3), 1, "sigmoid")),
        ("lab3_model", lambda: cnn((300, 300, 3), 2, "softmax")),
    ],
)
def test_seed_cnns_pass(tmp_path, monkeypatch, grade_id, model):
    verdict = grade(tmp_path, monkeypatch, grade_id, model())
    assert verdict.passed, verdict.message


def test_vgg16_passes_flattened_or_nested_and_needs_the_freeze(tmp_path, monkeypatch, vgg16_base):
    flat = keras.Model(vgg16_base.inputs, head(vgg16_base.output))
    assert grade(tmp_path, monkeypatch, "lab4_model", flat).passed

    inputs = keras.Input((224, 224, 3))
    nested = keras.Model(inputs, head(vgg16_base(inputs)))
    verdict = grade(tmp_path, monkeypatch, "lab4_model", nested)
    assert verdict.passed, verdict.message

    freeze_through(vgg16_base, None)
    try:
        verdict = grade(tmp_path, monkeypatch, "lab4_model", flat)
    finally:
        freeze_through(vgg16_base, "block4_pool")
    assert verdict.score == 0
    assert "7,080,450 trainable expected, got 14,715,714: freeze the VGG16 base up to block4_pool" in verdict.message


@pytest.mark.parametrize(
    ("grade_id", "model", "message"),
    [
        (
            "lab1_model",
            lambda: cnn((28, 28, 1), 10, "softmax", padding="valid"),
            "conv2d: output (None, 26, 26, 16), expected (None, 28, 28, 16): missing padding='same'?",
        ),
        (
            "lab1_model",
            lambda: cnn((28, 28, 1), 5, "softmax"),
            "output (None, 5), expected (None, 10): 10 units expected",
        ),
        ("lab2_model", lambda: cnn((300, 300, 3), 2, "softmax"), "expected (None, 1): 1 units expected"),
        (
            "lab3_model",
            lambda: cnn((224, 224, 3), 2, "softmax"),
            "conv2d: output (None, 224, 224, 16), expected (None, 300, 300, 16)",
        ),
        (
            "lab1_model",
            lambda: cnn((28, 28, 1), 10, "softmax", pools=2),
            "layer 6 should be max_pooling2d_2 (MaxPooling2D), got",
        ),
        ("lab1_model", lambda: cnn((28, 28, 1), 10, "softmax", extra_dense=True), "dense: an extra Dense layer"),
        ("lab1_model", lambda: "not a model", "no Keras model was recorded"),
    ],
    ids=["valid-padding", "dense-units", "binary-units", "input-size", "missing-pool", "extra-dense", "no-model"],
)
def test_broken_models_fail_with_the_first_mismatch(tmp_path, monkeypatch, grade_id, model, message):
    verdict = grade(tmp_path, monkeypatch, grade_id, model())
    assert verdict.score == 0
    assert message in verdict.message, verdict.message


def test_input_size_mismatch_names_the_input_shape(tmp_path, monkeypatch):
    verdict = grade(tmp_path, monkeypatch, "lab3_model", cnn((224, 224, 3), 2, "softmax"))
    assert "expected (None, 300, 300, 16): is the input shape (300, 300, 3)?" in verdict.message, verdict.message

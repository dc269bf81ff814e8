"""The heatmap judge end to end: real probes, real evidence folders, real models, judge_part.

Each "student" below is written the way a student would write the function (not with the
reference's options), correct or with one classic mistake; the judge must pass the correct ones
and name each mistake.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_reference import ROOT, seed_cnn, seed_vgg16

from autograder.checks import CheckContext, get_check
from autograder.course import load_course
from autograder.grading.judge import Verdict, judge_part
from cnnvis import evidence
from cnnvis.evidence import write_bundle

SMALL = 64  # Labs 2-4 checks at 64x64: no property here depends on the input size


def context(grade_id: str, spec_from: str | None = None, size: int | None = None) -> CheckContext:
    """The real course's context for GRADE_ID, optionally with its model spec replaced (smaller input)."""
    course = load_course(ROOT)
    for assignment in course.assignments:
        for notebook in assignment.notebooks:
            for part in notebook.parts:
                if part.grade_id == grade_id:
                    if spec_from or size:
                        spec = course.models[spec_from or notebook.model]
                        shape = tuple(spec.input_shape) if size is None else (size, size, spec.input_shape[2])
                        spec = dataclasses.replace(spec, input_shape=shape)
                        course = dataclasses.replace(course, models={**course.models, notebook.model: spec})
                    return CheckContext(course, assignment, notebook, part)
    raise KeyError(grade_id)


def record(tmp_path: Path, ctx: CheckContext, model: keras.Model, student) -> None:
    """Run STUDENT on the check's probes through the kernel side's own evidence.record_calls, as the hidden test does."""
    calls = get_check(ctx.part.check).probes(ctx)
    gid = ctx.part.grade_id
    write_bundle(tmp_path / "probes" / gid, calls, name="calls")
    saved = {k: os.environ.get(k) for k in (evidence.PROBES_ENV, evidence.EVIDENCE_ENV)}
    os.environ[evidence.PROBES_ENV] = str(tmp_path / "probes")
    os.environ[evidence.EVIDENCE_ENV] = str(tmp_path / "evidence")
    try:
        evidence.record_calls(gid, lambda **call: student(model, **call), raise_errors=False, model=model)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def judged(tmp_path: Path, ctx: CheckContext, model: keras.Model, student) -> Verdict:
    record(tmp_path, ctx, model, student)
    return judge_part(ctx, tmp_path / "evidence", tmp_path / "probes", 10**9)


def grade(tmp_path: Path, ctx: CheckContext, model: keras.Model, student) -> str:
    """Record STUDENT's evidence and judge it: "" when the part passes, else the verdict's message."""
    verdict = judged(tmp_path, ctx, model, student)
    return verdict.message if not verdict.passed else ""


# ----------------------------------------------------------------------------- students


def normalise(maps, eps=1e-8):
    low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    return (maps - low) / tf.maximum(high - low, eps)


def no_eps_normalise(maps):
    low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    return (maps - low) / (tf.reduce_max(maps, axis=(1, 2), keepdims=True) - low)


def batch_normalise(maps, eps=1e-8):
    return (maps - tf.reduce_min(maps)) / tf.maximum(tf.reduce_max(maps) - tf.reduce_min(maps), eps)


def resize(maps, size):
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


def class_weights(dense, class_index, flip=True):
    kernel = dense.kernel
    if dense.units == 1:
        return kernel[:, 0] * (1.0 if class_index == 1 or not flip else -1.0)
    return kernel[:, class_index]


def student_cam(model, images, class_index, norm=normalise, before_upsample=False, flip=True):
    cam_model = keras.Model(model.inputs[0], model.get_layer("conv2d_3").output)
    maps = tf.einsum("bijk,k->bij", cam_model(images), class_weights(model.layers[-1], class_index, flip))
    if before_upsample:
        return resize(norm(maps), images.shape[1:3]).numpy()
    return norm(resize(maps, images.shape[1:3])).numpy()


def logit(model, features, class_index, score="logit"):
    dense = model.layers[-1]
    z = tf.matmul(features, dense.kernel) + dense.bias
    if dense.units == 1:
        return z[:, 0] * (1.0 if class_index == 1 else -1.0)
    if score == "probability":
        return tf.nn.softmax(z)[:, class_index]
    if score == "loss":
        return keras.losses.sparse_categorical_crossentropy(np.full(len(z), class_index), tf.nn.softmax(z))
    return z[:, class_index]


def student_saliency(model, images, class_index, score="logit", channels=tf.reduce_max):
    features = keras.Model(model.inputs[0], model.layers[-1].input)
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(logit(model, features(x), class_index, score))
    return normalise(channels(tf.abs(tape.gradient(total, x)), axis=-1)).numpy()


def student_gradcam(model, images, class_index, upsample, score="logit", relu=True, norm=normalise):
    grad_model = keras.Model(model.inputs[0], [model.get_layer("conv2d_3").output, model.layers[-1].input])
    with tf.GradientTape() as tape:
        conv, features = grad_model(images)
        total = tf.reduce_sum(logit(model, features, class_index, score))
    weights = tf.reduce_mean(tape.gradient(total, conv), axis=(1, 2))
    maps = tf.einsum("bijk,bk->bij", conv, weights)
    maps = tf.nn.relu(maps) if relu else maps
    if upsample:
        maps = resize(maps, images.shape[1:3])
    return norm(maps).numpy() if norm else maps.numpy()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab1():
    return seed_cnn("lab1", seed=11)


@pytest.fixture(scope="module")
def lab2_small():
    return seed_cnn("lab2", size=SMALL, seed=12)


@pytest.fixture(scope="module")
def lab3_small():
    return seed_cnn("lab3", size=SMALL, seed=13)


# ----------------------------------------------------------------------------- probes


def test_probes_are_deterministic_mixed_and_small():
    ctx = context("lab4_gradcam", spec_from="lab3", size=SMALL)
    check = get_check("heatmaps.gradcam")
    calls = check.probes(ctx)
    assert [sorted(c) for c in calls[:-1]] == [["class_index", "images", "upsample"]] * (len(calls) - 1)
    assert calls[-1][evidence.ZERO_HEAD] is True and calls[-1]["images"].shape == (1, SMALL, SMALL, 3)
    batch = calls[0]["images"]
    assert batch.shape == (6, SMALL, SMALL, 3) and batch.dtype == np.float32
    assert {c["class_index"] for c in calls} == {0, 1}
    assert [c["upsample"] for c in calls[:3]] == [False, True, True]
    assert all(c["images"].shape[0] == 1 for c in calls[3:])
    assert not calls[-2]["images"].any()  # the constant image
    np.testing.assert_array_equal(calls[3]["images"][0], batch[0])
    from autograder.checks.heatmaps import probe_set

    probe_set.cache_clear()
    again = check.probes(ctx)
    np.testing.assert_array_equal(again[0]["images"], batch)
    other = get_check("heatmaps.cam").probes(context("lab1_cam"))
    assert "upsample" not in other[0] and other[0]["images"].shape == (6, 28, 28, 1)


def test_probe_preprocessing_for_vgg16_is_keras_preprocess_input():
    """The grader preprocesses Lab 4's probes in numpy; students' cnnvis.models uses Keras: same tensor."""
    from autograder.checks.heatmaps import vgg16_preprocess_np
    from cnnvis.models import vgg16_preprocess

    images = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)
    images[0] = 0.0
    images[1] = 1.0
    np.testing.assert_allclose(vgg16_preprocess_np(images), vgg16_preprocess(images), rtol=0, atol=1e-4)
    assert vgg16_preprocess_np(images).dtype == np.float32


# ----------------------------------------------------------------------------- CAM


def test_cam_reference_output_and_a_correct_student_pass(tmp_path, lab1):
    from autograder.reference import CAM

    ctx = context("lab1_cam")
    reference = CAM(lab1, "conv2d_3")
    assert grade(tmp_path / "ref", ctx, lab1, lambda m, images, class_index: reference(images, class_index)) == ""
    assert grade(tmp_path / "student", ctx, lab1, student_cam) == ""


@pytest.mark.parametrize(
    ("student", "expected"),
    [
        (lambda m, images, class_index: student_cam(m, images, class_index, norm=lambda x: x), "not 1"),
        (lambda m, images, class_index: student_cam(m, images, class_index, before_upsample=True), "after upsampling"),
        (lambda m, images, class_index: student_cam(m, images, class_index, norm=no_eps_normalise), "NaN for a flat"),
        (lambda m, images, class_index: student_cam(m, images, class_index, norm=batch_normalise), "its own minimum"),
        (lambda m, images, class_index: student_cam(m, images, 0 if class_index else 1), "map of class"),
        (lambda m, images, class_index: 1 / 0, "raised ZeroDivisionError"),
        (lambda m, images, class_index: student_cam(m, images, class_index)[..., None], "drop the channel axis"),
    ],
    ids=[
        "unnormalised",
        "normalised-before-upsampling",
        "no-epsilon",
        "batch-normalised",
        "wrong-class",
        "raises",
        "channel-axis",
    ],
)
def test_cam_mistakes_are_named(tmp_path, lab1, student, expected):
    message = grade(tmp_path, context("lab1_cam"), lab1, student)
    assert expected in message, message


def test_cam_sigmoid_class_zero_without_sign_flip_is_named(tmp_path, lab2_small):
    ctx = context("lab2_cam", size=SMALL)
    assert grade(tmp_path / "ok", ctx, lab2_small, student_cam) == ""
    message = grade(
        tmp_path / "bad",
        ctx,
        lab2_small,
        lambda m, images, class_index: student_cam(m, images, class_index, flip=False),
    )
    assert "map of class 1, not of class_index=0" in message and "flip the sign" in message, message


# ----------------------------------------------------------------------------- saliency


def test_saliency_correct_student_passes_and_mistakes_are_named(tmp_path, lab3_small):
    ctx = context("lab3_saliency", size=SMALL)
    assert grade(tmp_path / "ok", ctx, lab3_small, student_saliency) == ""
    summed = grade(
        tmp_path / "sum",
        ctx,
        lab3_small,
        lambda m, images, class_index: student_saliency(m, images, class_index, channels=tf.reduce_sum),
    )
    assert "sum over colour channels instead of the maximum" in summed, summed
    softmax = grade(
        tmp_path / "prob",
        ctx,
        lab3_small,
        lambda m, images, class_index: student_saliency(m, images, class_index, score="probability"),
    )
    assert "softmax probability or the loss" in softmax, softmax


# ----------------------------------------------------------------------------- Grad-CAM


def test_gradcam_correct_student_passes_and_mistakes_are_named(tmp_path, lab3_small):
    ctx = context("lab4_gradcam", spec_from="lab3", size=SMALL)
    assert grade(tmp_path / "ok", ctx, lab3_small, student_gradcam) == ""
    loss = grade(
        tmp_path / "loss",
        ctx,
        lab3_small,
        lambda m, images, class_index, upsample: student_gradcam(m, images, class_index, upsample, score="loss"),
    )
    assert "gradient of the loss instead of the class score" in loss and "flips the channel weights" in loss, loss
    assert "peak lies inside the object for" in loss, loss
    no_relu = grade(
        tmp_path / "relu",
        ctx,
        lab3_small,
        lambda m, images, class_index, upsample: student_gradcam(m, images, class_index, upsample, relu=False),
    )
    assert "ReLU is missing" in no_relu, no_relu
    raw = grade(
        tmp_path / "raw",
        ctx,
        lab3_small,
        lambda m, images, class_index, upsample: student_gradcam(
            m, images, class_index, upsample, relu=False, norm=None
        ),
    )
    assert "Negative values" in raw and "missing ReLU" in raw, raw
    ignores_upsample = grade(
        tmp_path / "size",
        ctx,
        lab3_small,
        lambda m, images, class_index, upsample: student_gradcam(m, images, class_index, True),
    )
    assert "with upsample=False return the map at the conv layer's grid" in ignores_upsample, ignores_upsample


def test_lab4_gradcam_on_vgg16_accepts_the_reference_output(tmp_path):
    """The Lab 4 part as course.yml has it (VGG16 preprocessing, block5_conv3), at 64x64 to keep VGG16 cheap."""
    from autograder.reference import GradCAM

    ctx = context("lab4_gradcam", size=SMALL)
    model = seed_vgg16(size=SMALL)
    reference = GradCAM(model, "block5_conv3")
    calls = get_check("heatmaps.gradcam").probes(ctx)
    assert calls[0]["images"].shape == (6, SMALL, SMALL, 3) and calls[0]["images"].min() < -100  # caffe-style
    student = lambda m, images, class_index, upsample: reference(images, class_index, upsample)  # noqa: E731
    assert grade(tmp_path, ctx, model, student) == ""


def test_missing_model_is_reported(tmp_path, lab1):
    ctx = context("lab1_cam")
    calls = get_check("heatmaps.cam").probes(ctx)
    write_bundle(tmp_path / "probes" / "lab1_cam", calls, name="calls")
    results = [{"ok": True, "value": student_cam(lab1, **c)} for c in calls]
    write_bundle(tmp_path / "evidence" / "lab1_cam", {"values": {"model": "not a model"}, "calls": results})
    verdict = judge_part(ctx, tmp_path / "evidence", tmp_path / "probes", 10**9)
    assert not verdict.passed and "no Keras model was recorded" in verdict.message

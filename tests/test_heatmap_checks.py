"""The heatmap judge end to end: real probes, real evidence folders, real models, judge_part.

Each "student" below is written the way a student would write the function (not with the
reference's options), correct or with one classic mistake; the judge must pass the correct ones
and name each mistake.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
    """Run STUDENT on the check's probes through the kernel side's evidence.record_calls, as the hidden test does."""
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
    results = [{"ok": True, "value": student_cam(lab1, c["images"], c["class_index"])} for c in calls]
    write_bundle(tmp_path / "evidence" / "lab1_cam", {"values": {"model": "not a model"}, "calls": results})
    verdict = judge_part(ctx, tmp_path / "evidence", tmp_path / "probes", 10**9)
    assert not verdict.passed and "no Keras model was recorded" in verdict.message


# ----------------------------------------------------------------------------- every diagnosis in one round


def zoomed(maps, size, order):
    """What a student upsampling with scipy (as the original CAM lab did) computes."""
    from scipy import ndimage

    maps = np.asarray(maps)
    return ndimage.zoom(maps, (1, size[0] / maps.shape[1], size[1] / maps.shape[2]), order=order)


def cam_resized_by(how):
    def student(model, images, class_index):
        cam_model = keras.Model(model.inputs[0], model.get_layer("conv2d_3").output)
        maps = tf.einsum("bijk,k->bij", cam_model(images), class_weights(model.layers[-1], class_index))
        size = images.shape[1:3]
        if how == "nearest":
            up = tf.image.resize(maps[..., None], size, method="nearest")[..., 0]
        else:
            up = zoomed(maps, size, order=how)
        return normalise(tf.constant(np.asarray(up, np.float32))).numpy()

    return student


@pytest.mark.parametrize(
    ("how", "code", "expected"),
    [
        (1, "align_corners", "scipy.ndimage.zoom(order=1), or align_corners=True"),
        (2, "zoom_order_2", "scipy.ndimage.zoom(order=2)"),
        (3, "zoom_order_3", "scipy.ndimage.zoom(order=3)"),
        ("nearest", "nearest", "nearest-neighbour resizing"),
    ],
    ids=["zoom1", "zoom2", "zoom3", "nearest"],
)
def test_cam_resizing_conventions_are_named(tmp_path, lab1, how, code, expected):
    verdict = judged(tmp_path, context("lab1_cam"), lab1, cam_resized_by(how))
    assert not verdict.passed and verdict.diagnoses == (code,), verdict
    assert expected in verdict.message and "method='bilinear'" in verdict.message, verdict.message
    assert verdict.message.count("\n") == 0, verdict.message  # one finding: the resizing, nothing invented


@pytest.fixture(scope="module")
def lab3_informative(lab3_small):
    """Lab 3's model with biases and all-positive class weights, as training might leave them: at random
    initialisation ReLU zeroes most Grad-CAM maps, and a test on flat maps could not tell resizings apart."""
    model = keras.models.clone_model(lab3_small)
    rng = np.random.default_rng(5)
    weights = [w if w.ndim > 1 else rng.normal(0.0, 0.1, w.shape).astype(w.dtype) for w in lab3_small.get_weights()]
    weights[-2] = np.abs(weights[-2]) * np.array([1.0, 0.5], np.float32)
    model.set_weights(weights)
    return model


def test_gradcam_zoom_and_the_loss_sign_are_named_together(tmp_path, lab3_informative):
    ctx = context("lab4_gradcam", spec_from="lab3", size=SMALL)

    def student(m, images, class_index, upsample, score="logit"):
        grid = student_gradcam(m, images, class_index, False, score=score, norm=None)
        return (
            normalise(tf.constant(zoomed(grid, images.shape[1:3], 2).astype(np.float32))).numpy()
            if upsample
            else (normalise(tf.constant(grid)).numpy())
        )

    assert judged(tmp_path / "ok", ctx, lab3_informative, student_gradcam).passed
    zoom = judged(tmp_path / "zoom", ctx, lab3_informative, student)
    assert zoom.diagnoses == ("zoom_order_2",), zoom
    both = judged(tmp_path / "both", ctx, lab3_informative, lambda *a, **k: student(*a, **k, score="loss"))
    assert both.diagnoses[:1] == ("score_loss",) and "zoom_order_2" in both.diagnoses, both
    lines = both.message.split("\n")
    assert "gradient of the loss" in lines[0] and "scipy.ndimage.zoom(order=2)" in lines[-1], both.message


def test_8bit_maps_and_integer_dtypes_are_named(tmp_path, lab1):
    ctx = context("lab1_cam")
    as_png = judged(
        tmp_path / "png",
        ctx,
        lab1,
        lambda m, images, class_index: np.round(student_cam(m, images, class_index) * 255).astype(np.float32) / 255,
    )
    assert as_png.diagnoses == ("quantised_8bit",), as_png
    assert "multiples of 1/255" in as_png.message and "tolerance 0.001" in as_png.message, as_png.message
    uint8 = judged(
        tmp_path / "uint8",
        ctx,
        lab1,
        lambda m, images, class_index: (student_cam(m, images, class_index) * 255).astype(np.uint8),
    )
    assert "got uint8, return float32" in uint8.message, uint8.message
    assert {"dtype_uint8", "quantised_8bit", "not_normalised"} <= set(uint8.diagnoses), uint8


@pytest.fixture(scope="module")
def lab1_biased(lab1):
    """Lab 1's model with non-zero biases, as training leaves them: a constant image no longer gives flat maps."""
    model = keras.models.clone_model(lab1)
    rng = np.random.default_rng(5)
    model.set_weights([w if w.ndim > 1 else rng.normal(0.0, 0.3, w.shape).astype(w.dtype) for w in lab1.get_weights()])
    return model


def test_missing_epsilon_shows_on_the_zero_head_probe_and_the_model_is_restored(tmp_path, lab1_biased):
    from autograder.checks.heatmaps import probe_set
    from autograder.reference import CAM

    ctx = context("lab1_cam")
    pset = probe_set(ctx.seed, "fashion_mnist", (28, 28, 1), "scale01", False)
    spread = CAM(lab1_biased, "conv2d_3").with_conditioning(pset.inputs(pset.plan[-2]), pset.plan[-2].class_index)[1]
    assert spread.min() > 1e-3  # the constant image alone would not catch it on this model
    kernel = lab1_biased.layers[-1].kernel.numpy().copy()
    verdict = judged(
        tmp_path / "noeps",
        ctx,
        lab1_biased,
        lambda m, images, class_index: student_cam(m, images, class_index, norm=no_eps_normalise),
    )
    assert verdict.diagnoses == ("no_epsilon",) and "flat by construction" in verdict.message, verdict
    np.testing.assert_array_equal(lab1_biased.layers[-1].kernel.numpy(), kernel)
    recorded = evidence.read_bundle(tmp_path / "noeps" / "evidence" / "lab1_cam")["calls"]
    assert not np.isfinite(recorded[-1]["value"]).any() and np.isfinite(recorded[0]["value"]).all()
    assert judged(tmp_path / "ok", ctx, lab1_biased, student_cam).passed


def test_a_property_failure_does_not_hide_a_wrong_method(tmp_path, lab3_small):
    """The issue's case: the loss-gradient sign error AND a normalisation slip are both named, the serious one first."""
    ctx = context("lab4_gradcam", spec_from="lab3", size=SMALL)
    verdict = judged(
        tmp_path,
        ctx,
        lab3_small,
        lambda m, images, class_index, upsample: student_gradcam(
            m, images, class_index, upsample, score="loss", norm=batch_normalise
        ),
    )
    lines = verdict.message.split("\n")
    assert "gradient of the loss" in lines[0], verdict.message
    assert any("not the whole batch's" in line for line in lines[1:]), verdict.message
    assert verdict.diagnoses[0] == "score_loss" and "batch_normalised" in verdict.diagnoses, verdict


def test_saliency_sum_over_channels_and_no_epsilon_are_named_together(tmp_path, lab3_small):
    def student(m, images, class_index):
        features = keras.Model(m.inputs[0], m.layers[-1].input)
        x = tf.convert_to_tensor(images)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(logit(m, features(x), class_index))
        return no_eps_normalise(tf.reduce_sum(tf.abs(tape.gradient(total, x)), axis=-1)).numpy()

    verdict = judged(tmp_path, context("lab3_saliency", size=SMALL), lab3_small, student)
    assert verdict.diagnoses[:1] == ("sum_channels",) and "no_epsilon" in verdict.diagnoses, verdict
    assert "sum over colour channels" in verdict.message and "add an epsilon" in verdict.message.lower()


def test_failed_verdict_carries_a_small_png_and_a_passed_one_stays_small(tmp_path, lab1):
    import base64

    ctx = context("lab1_cam")
    ok = judged(tmp_path / "ok", ctx, lab1, student_cam)
    assert ok.passed and set(ok.to_dict()) == {"grade_id", "score", "max_score", "message"}
    bad = judged(tmp_path / "bad", ctx, lab1, cam_resized_by(2)).to_dict()
    png = base64.b64decode(bad["figure"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(bad["figure"]) <= 100_000
    assert bad["diagnoses"] == ["zoom_order_2"]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    eps=st.sampled_from([1e-12, 1e-8, 1e-6]),
    dtype=st.sampled_from([np.float32, np.float64]),
    one_at_a_time=st.booleans(),
)
def test_correct_cams_are_never_misdiagnosed(tmp_path, lab1_biased, eps, dtype, one_at_a_time):
    """Honest variations of a correct answer (epsilon, dtype, looping over images) pass with no diagnosis."""

    def student(m, images, class_index):
        norm = functools.partial(normalise, eps=eps)
        if one_at_a_time:
            maps = np.concatenate(
                [student_cam(m, images[i : i + 1], class_index, norm=norm) for i in range(len(images))]
            )
        else:
            maps = student_cam(m, images, class_index, norm=norm)
        return maps.astype(dtype)

    verdict = judged(tmp_path / f"{eps}-{dtype.__name__}-{one_at_a_time}", context("lab1_cam"), lab1_biased, student)
    assert verdict.passed and verdict.diagnoses == () and verdict.figure is None, verdict


def test_gradcam_loss_sign_and_no_epsilon_are_named_together(tmp_path, lab3_informative):
    """The Lab 4 mistake file's combined entry on a small model: the loss first, then the missing epsilon."""
    ctx = context("lab4_gradcam", spec_from="lab3", size=SMALL)
    verdict = judged(
        tmp_path,
        ctx,
        lab3_informative,
        lambda m, images, class_index, upsample: student_gradcam(
            m, images, class_index, upsample, score="loss", norm=no_eps_normalise
        ),
    )
    lines = verdict.message.split("\n")
    assert "gradient of the loss" in lines[0] and any("NaN for a flat map" in line for line in lines[1:]), lines
    assert verdict.diagnoses[0] == "score_loss" and "no_epsilon" in verdict.diagnoses and "nan" not in verdict.diagnoses

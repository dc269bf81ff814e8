"""Heatmap checks: `heatmaps.cam`, `heatmaps.saliency`, `heatmaps.gradcam`.

Contract with the notebooks. The hidden test cell records the student's function on the probes
and the full classifier:

    evidence.record_calls("lab1_cam", lambda images, class_index: compute_cam(cam_model, images, class_index),
                          model=model)
    evidence.record_calls("lab4_gradcam", lambda images, class_index, upsample: grad_cam(grad_model, images,
                          class_index, upsample=upsample), model=model, layer_name="block5_conv3")

Probe keys (every key is passed as a keyword argument):
    images       float32 (B, H, W, C): generated images of the notebook's dataset (course.yml
                 `models.<key>.dataset`), preprocessed as the model expects (`preprocessing`)
    class_index  int, one class for the whole batch
    upsample     bool, heatmaps.gradcam only (False: the map at the conv grid)

Probes, in this order (deterministic for the part's seed, see `plan`): the batch of six images of
two classes (three of each, interleaved) with the first class, the same batch with the second
class (Grad-CAM: the first class at the conv grid and upsampled, the second class upsampled),
the first three images one at a time (batch = per image; Grad-CAM at the conv grid), one
constant image (all zeros after preprocessing; Grad-CAM upsampled), and the first image with the
key cnnvis.evidence.ZERO_HEAD: record_calls runs that call with the recorded `model`'s last Dense
kernel zeroed, so its map is flat by construction on any trained model (a missing epsilon gives NaN;
the hidden test must record the model whose Dense layer the student's function uses).

The judge reloads the recorded model (safe mode), recomputes the reference maps on the probe
images with the layer named in course.yml (`cam_layer`; a recorded `layer_name` is not trusted),
regenerates the objects' boxes from the seed, and reports everything it finds in one round, most
serious first: errors raised, shape, NaN, range and maximum, batch versus per image, agreement with
the reference after re-normalising both (within `grading.tolerance`), dtype; where they disagree,
the pointing game and the known mistake that reproduces the student's maps (a wrong score or class,
a ReLU, channels; resizing conventions; 8-bit values). A failed verdict carries a side-by-side
figure and every finding a short diagnosis code (see `Problems`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from autograder.checks import Check, CheckContext, Evidence, Problems, register
from autograder.checks.recorded_models import RecordedModelError, load_recorded_model
from cnnvis.evidence import ZERO_HEAD

BATCH_PER_CLASS = 3  # six probe images: keeps Lab 4 (VGG16, ~0.2 s per image on CPU) cheap in the kernel
SINGLES = 3  # images also computed one at a time
DIAGNOSIS_TOLERANCE = 0.05  # a known mistake "explains" a map when it reproduces it this closely
ILL_CONDITIONED = 1e-4  # raw spread / raw scale below this: the normalised map is rounding noise
MAX_PROBLEMS = 5


# ----------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class Probe:
    role: str  # "batch", "single", "flat" (a constant image) or "zero_head" (flat maps by construction)
    class_index: int
    upsample: bool = True
    index: int | None = None  # the image of a "single" probe

    def describe(self, batch_size: int, with_upsample: bool) -> str:
        if self.role == "batch":
            text = f"the batch of {batch_size} images with class_index={self.class_index}"
        elif self.role == "single":
            text = f"image {self.index} alone (class_index={self.class_index})"
        elif self.role == "flat":
            text = f"a constant image (class_index={self.class_index})"
        else:
            text = "a probe whose maps are flat by construction (the model's last Dense kernel set to zero)"
        return text + (f", upsample={self.upsample}" if with_upsample else "")


@dataclass(frozen=True, eq=False)
class ProbeSet:
    images: np.ndarray  # preprocessed float32 (B, H, W, C)
    labels: np.ndarray
    boxes: np.ndarray  # (B, 4) y0, x0, y1, x1, end exclusive, in input pixels
    plan: tuple[Probe, ...]
    preprocessing: str = "scale01"

    def inputs(self, probe: Probe) -> np.ndarray:
        if probe.role == "batch":
            return self.images
        if probe.role == "single":
            return self.images[probe.index : probe.index + 1]
        if probe.role == "zero_head":
            return self.images[:1]
        return np.zeros_like(self.images[:1])

    def calls(self, with_upsample: bool) -> list[dict[str, Any]]:
        calls = []
        for probe in self.plan:
            call: dict[str, Any] = {"images": self.inputs(probe), "class_index": probe.class_index}
            if with_upsample:
                call["upsample"] = probe.upsample
            if probe.role == "zero_head":
                call[ZERO_HEAD] = True  # cnnvis.evidence runs this call with the model's class scores made constant
            calls.append(call)
        return calls


def plan(first: int, second: int, with_upsample: bool) -> tuple[Probe, ...]:
    singles = tuple(Probe("single", first, False if with_upsample else True, i) for i in range(SINGLES))
    if with_upsample:
        batches = (Probe("batch", first, False), Probe("batch", first, True), Probe("batch", second, True))
    else:
        batches = (Probe("batch", first), Probe("batch", second))
    return (*batches, *singles, Probe("flat", first, True), Probe("zero_head", first, True))


IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def vgg16_preprocess_np(images01: np.ndarray) -> np.ndarray:
    """cnnvis.models.vgg16_preprocess (keras' caffe mode: BGR, 0-255, ImageNet mean off) in numpy,
    so that writing Lab 4's probes does not import TensorFlow in the grading process (tested equal)."""
    images = np.asarray(images01, dtype=np.float32) * np.float32(255.0)
    return np.ascontiguousarray(images[..., ::-1] - IMAGENET_BGR_MEAN, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def probe_set(
    seed: int, dataset: str, input_shape: tuple[int, ...], preprocessing: str, with_upsample: bool
) -> ProbeSet:
    """Six generated images of two classes (interleaved), their boxes, and the call plan; deterministic."""
    from cnnvis import data

    size = int(input_shape[0])
    if dataset == "fashion_mnist":
        pool = data.generate_fashion_mnist(40, seed)
    else:
        pool = data.generate_cats_vs_dogs(12, size, seed)
    labels = np.asarray(pool.labels)
    first = int(labels[0])
    second = int(next(c for c in labels if c != first))
    picks = [np.flatnonzero(labels == c)[:BATCH_PER_CLASS] for c in (first, second)]
    order = np.stack(picks, axis=1).reshape(-1)  # a, b, a, b, a, b
    images = np.asarray(pool.images[order], dtype=np.float32)
    if preprocessing == "vgg16":
        images = vgg16_preprocess_np(images)
    if images.shape[1:] != tuple(input_shape):
        raise ValueError(f"generated probes have shape {images.shape[1:]}, the model expects {tuple(input_shape)}")
    return ProbeSet(
        images, labels[order], np.asarray(pool.boxes[order]), plan(first, second, with_upsample), preprocessing
    )


# ----------------------------------------------------------------------------- reference and known mistakes


def _reference(method: str, model, layer: str, **options):
    from autograder import reference

    if method == "cam":
        return reference.CAM(model, layer, **options)
    if method == "gradcam":
        return reference.GradCAM(model, layer, **options)
    return reference.Saliency(model, **options)


# How serious a finding is: the message lists the most serious first (a wrong method before a
# normalisation slip before a convention), so one round of feedback names the worst mistake first.
METHOD, NORMALISATION, CONVENTION = 0, 1, 2

LOGIT = "differentiate the class logit (the last Dense layer's output before its activation)"
# method -> (code, reference options, cause): each reproduces one classic mistake exactly.
MISTAKES: dict[str, tuple[tuple[str, dict[str, Any], str], ...]] = {
    "cam": (("relu_applied", {"relu": True}, "a ReLU was applied: CAM as defined in this course has none"),),
    "saliency": (
        ("sum_channels", {"reduce": "sum"}, "a sum over colour channels instead of the maximum: take max over axis -1"),
        ("signed_gradient", {"absolute": False}, "the signed gradient: take its absolute value before the maximum"),
        # For two classes the probability's and the loss's gradients are parallel: one message for both.
        (
            "score_probability",
            {"score": "probability"},
            f"the gradient of the softmax probability or the loss: {LOGIT}",
        ),
        ("score_loss", {"score": "loss"}, f"the gradient of the loss instead of the class score: {LOGIT}"),
    ),
    "gradcam": (
        ("relu_missing", {"relu": False}, "the ReLU is missing: apply relu to the weighted sum of feature maps"),
        (
            "score_loss",
            {"score": "loss"},
            "the gradient of the loss instead of the class score. The loss falls as the score rises, so its "
            f"gradient flips the channel weights and highlights evidence against the class: {LOGIT}",
        ),
        ("score_probability", {"score": "probability"}, f"the gradient of the softmax probability: {LOGIT}"),
    ),
}
SIGN_FLIPPED = "the map with its sign flipped (1 - the reference's): use the class's Dense weights as they are"
OTHER_CLASS = (
    "the map of class {other}, not of class_index={wanted}: use class_index to pick the class "
    "(for a single sigmoid unit class 0 scores -z: flip the sign of the weights)"
)
COURSE_RESIZE = "resize with tf.image.resize(maps[..., None], size, method='bilinear') as the course does"
# upsampling convention -> cause; "bilinear" is the course's (half-pixel centres), the others are usual slips.
UPSAMPLING = {
    "align_corners": "corner-aligned bilinear resizing (scipy.ndimage.zoom(order=1), or align_corners=True), "
    "which stretches the map so its corner pixels meet the image corners",
    "zoom_order_2": "scipy.ndimage.zoom(order=2): quadratic-spline, corner-aligned resizing",
    "zoom_order_3": "scipy.ndimage.zoom(order=3) (its default): cubic-spline, corner-aligned resizing",
    "zoom_order_0": "scipy.ndimage.zoom(order=0): nearest-neighbour, corner-aligned resizing",
    "nearest": "nearest-neighbour resizing (method='nearest', np.repeat or UpSampling2D): blocky maps",
    "bicubic": "bicubic resizing (method='bicubic')",
}
QUANTUM = 1.0 / 255.0


def upsample(grid: np.ndarray, size: tuple[int, int], how: str) -> np.ndarray | None:
    """(B, h, w) maps resized to SIZE with one convention (None when it cannot give that size)."""
    if how.startswith("zoom_order_"):
        from scipy import ndimage

        factors = (1.0, size[0] / grid.shape[1], size[1] / grid.shape[2])
        out = ndimage.zoom(np.asarray(grid, np.float64), factors, order=int(how[-1]))
        return out if out.shape[1:] == tuple(size) else None
    import tensorflow as tf

    maps = tf.constant(np.asarray(grid, np.float32)[..., None])
    if how == "align_corners":
        out = tf.compat.v1.image.resize_bilinear(maps, size, align_corners=True)
    else:
        out = tf.image.resize(maps, size, method=how)
    return out.numpy()[..., 0].astype(np.float64)


@dataclass
class ReferenceMaps:
    maps: np.ndarray
    spread: np.ndarray
    scale: np.ndarray

    def conditioned(self) -> np.ndarray:
        """Images whose normalised reference map means something (exactly flat maps count: they must be zeros)."""
        return ~((self.spread > 0) & (self.spread <= ILL_CONDITIONED * self.scale))


@dataclass(frozen=True)
class Finding:
    rank: int  # METHOD, NORMALISATION or CONVENTION
    code: str  # a short code for the class report, e.g. "zoom_order_2"
    text: str


@dataclass(frozen=True)
class Cause:
    codes: tuple[str, ...]  # ("score_loss",), ("zoom_order_2",), ("score_loss", "align_corners"), ...
    method: str  # cause of the method part ("" when the method matches the reference)
    upsampling: str  # how the map was resized ("" for the course's bilinear)
    diff: float


# ----------------------------------------------------------------------------- per-call properties


def normalized(maps: np.ndarray) -> np.ndarray:
    from autograder.reference import normalize_maps_np

    return normalize_maps_np(maps)


def _as_maps(value: Any) -> np.ndarray | None:
    try:
        array = np.asarray(value)
    except Exception:
        return None
    return array if array.dtype.kind in "biuf" else None


def _pointing(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each map (B, H, W): does its peak lie inside the box (y0, x0, y1, x1, end exclusive)?"""
    flat = maps.reshape(maps.shape[0], -1).argmax(axis=1)
    y, x = np.unravel_index(flat, maps.shape[1:])
    return (boxes[:, 0] <= y) & (y < boxes[:, 2]) & (boxes[:, 1] <= x) & (x < boxes[:, 3])


def quantised(maps: list[np.ndarray]) -> bool:
    """Are these (normalised) maps multiples of 1/255, as 8-bit images are, with enough levels to tell?"""
    values = np.concatenate([m.reshape(-1) for m in maps]) if maps else np.zeros(0)
    if np.unique(values).size < 8:
        return False
    return bool(np.abs(values * 255.0 - np.round(values * 255.0)).max() < 1e-3)


class HeatmapCheck(Check):
    method: ClassVar[str]
    takes_upsample: ClassVar[bool] = False
    label: ClassVar[str]

    def _probe_set(self, ctx: CheckContext) -> ProbeSet:
        spec = ctx.model_spec
        if spec is None:
            raise ValueError(f"{ctx.part.grade_id}: a heatmap check needs the notebook's `model:` in course.yml")
        return probe_set(ctx.seed, spec.dataset, tuple(spec.input_shape), spec.preprocessing, self.takes_upsample)

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        return self._probe_set(ctx).calls(self.takes_upsample)

    def judge(self, ctx: CheckContext, evidence: Evidence) -> Problems:
        spec = ctx.model_spec
        pset = self._probe_set(ctx)
        if len(evidence.calls) != len(pset.plan):
            return Problems(
                [
                    f"{len(evidence.calls)} results were recorded for {len(pset.plan)} probe inputs: "
                    "the hidden test must run your function once per probe."
                ],
                ["probe_count"],
            )
        try:
            model = load_recorded_model(evidence.values.get("model"), ctx)
        except RecordedModelError as exc:
            return Problems([f"The model recorded with your {self.label} could not be used: {exc}."], ["model"])
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        if shape != tuple(spec.input_shape):
            return Problems(
                [
                    f"The recorded model takes inputs of shape {shape}, "
                    f"not {tuple(spec.input_shape)} as course.yml says."
                ],
                ["model"],
            )
        try:
            reference = _reference(self.method, model, spec.cam_layer)
        except (KeyError, ValueError) as exc:
            return Problems([f"The reference {self.label} cannot run on the recorded model: {exc}."], ["model"])
        return Judgement(self, pset, evidence, spec.cam_layer, reference, ctx.course.grading.tolerance).run()


def _images_of(probe: Probe) -> str:
    """Which probe images a probe's maps come from: the constant image, or the batch (singles are its slices)."""
    return "flat" if probe.role == "flat" else "batch"


class Judgement:
    """One judge run: every applicable check on every usable result, findings sorted by how serious they are.

    Reference maps are computed once per (class, upsample). A result that raised, has the wrong
    shape or holds NaN cannot be compared there, but every other probe still is, so a property
    failure never hides a wrong method and one round of feedback names every mistake it can.
    """

    def __init__(self, check: HeatmapCheck, pset: ProbeSet, evidence: Evidence, layer: str, reference, tol: float):
        self.check = check
        self.pset = pset
        self.layer = layer
        self.reference = reference
        self.tol = tol
        self.calls = evidence.calls
        self.values = [_as_maps(call.get("value")) if call.get("ok") else None for call in evidence.calls]
        self._cache: dict[tuple, ReferenceMaps] = {}
        self._tables: dict[tuple[str, bool], dict[tuple[str, int], np.ndarray]] = {}
        self.findings: list[Finding] = []

    def say(self, rank: int, code: str, text: str) -> None:
        """Add a finding; the first of each code wins (plan order), so a message names each mistake once."""
        if all(f.code != code for f in self.findings):
            self.findings.append(Finding(rank, code, text))

    def where(self, probe: Probe) -> str:
        return probe.describe(len(self.pset.images), self.check.takes_upsample)

    def expected(self, probe: Probe) -> ReferenceMaps:
        """Reference maps for PROBE (singles are slices of the batch: the reference is per image by construction)."""
        if probe.role == "zero_head":  # flat by construction: a constant class score has zero gradients
            shape = (1, *self.grid_or_input(probe.upsample))
            return ReferenceMaps(np.zeros(shape, np.float32), np.zeros(1), np.zeros(1))
        key = (_images_of(probe), probe.class_index, probe.upsample)
        if key not in self._cache:
            raw = self.table(key[0])[("", probe.class_index)]
            self._cache[key] = ReferenceMaps(*self.reference.finish(raw, probe.upsample))
        ref = self._cache[key]
        if probe.role == "single":
            i = slice(probe.index, probe.index + 1)
            return ReferenceMaps(ref.maps[i], ref.spread[i], ref.scale[i])
        return ref

    def table(self, images: str, everything: bool = False) -> dict[tuple[str, int], np.ndarray]:
        """(code, class) -> raw maps of the probe IMAGES ("batch" or "flat") at the method's resolution.

        From one forward pass of the recorded model: the reference ("") for the classes the probes use,
        or with EVERYTHING (for a diagnosis) every known mistake of MISTAKES for every class as well.
        """
        if (images, True) in self._tables:
            return self._tables[(images, True)]
        if (images, everything) not in self._tables:
            ref = self.reference
            mistakes = MISTAKES[self.check.method] if everything else ()
            codes = ["", *(code for code, _options, _cause in mistakes)]
            variants = [ref.options, *(ref.variant(**options) for _code, options, _cause in mistakes)]
            used = {p.class_index for p in self.pset.plan}
            classes = list(range(ref.score.num_classes)) if everything else sorted(used)
            raw = ref.raw(self.pset.inputs(Probe(images, classes[0])), classes, variants)
            self._tables[(images, everything)] = {
                (code, c): raw[v, i] for v, code in enumerate(codes) for i, c in enumerate(classes)
            }
        return self._tables[(images, everything)]

    def grid_or_input(self, upsample: bool) -> tuple[int, int]:
        if upsample or self.check.method == "saliency":
            return tuple(self.pset.images.shape[1:3])
        return tuple(self.expected(Probe("batch", self.pset.plan[0].class_index, False)).maps.shape[1:])

    # -- the checks

    def run(self) -> Problems:
        usable = [self.properties(k) for k in range(len(self.pset.plan))]
        self.batch_equals_single(usable)
        worst = self.agreement(usable)
        ranked = sorted(self.findings, key=lambda f: f.rank)  # stable: plan order within a rank
        # Only a failed part gets the figure: rendering costs about as much as judging a correct answer.
        figure = self.figure(usable, worst) if ranked else None
        return Problems([f.text for f in ranked[:MAX_PROBLEMS]], [f.code for f in ranked], figure)

    def properties(self, k: int) -> bool:
        """Errors, shape, dtype, finite values, range and maximum of result K; True when it can be compared."""
        probe, value, call = self.pset.plan[k], self.values[k], self.calls[k]
        where = self.where(probe)
        if not call.get("ok"):
            self.say(
                METHOD,
                "raised",
                f"Your {self.check.label} function raised {call.get('error')}: {call.get('message')} (on {where}).",
            )
            return False
        if value is None:
            self.say(
                METHOD, "not_an_array", f"Your {self.check.label} function must return a numeric array (on {where})."
            )
            return False
        ref = self.expected(probe)
        want = ref.maps.shape
        if value.shape != want:
            hint = self.shape_hint(probe, value.shape, want)
            self.say(METHOD, "shape", f"Shape {value.shape} on {where}, expected {want}{hint}.")
            return False
        if value.dtype != np.float32 and value.dtype != np.float64:
            self.say(
                CONVENTION,
                f"dtype_{value.dtype}",
                f"Your maps have dtype {value.dtype}: got {value.dtype}, return float32 maps in [0, 1] "
                "(for example maps.astype(np.float32), before any rounding).",
            )
        finite = np.isfinite(value).all(axis=tuple(range(1, value.ndim)))
        if not finite.all():
            # A map that is NaN everywhere is 0 / 0: a flat map (the student's own, e.g. all zeros after a
            # ReLU, or the reference's) normalised without an epsilon.
            all_nan = np.isnan(value).all(axis=tuple(range(1, value.ndim)))
            if probe.role in ("flat", "zero_head") or (ref.spread[~finite] == 0).any() or all_nan.any():
                self.say(
                    NORMALISATION,
                    "no_epsilon",
                    f"NaN for a flat map (on {where}): the normalisation divides by max - min = 0. Add an epsilon, "
                    "(m - min) / max(max - min, 1e-8), so a flat map becomes zeros.",
                )
            else:
                self.say(
                    METHOD, "nan", f"NaN or infinite values on {where}: look for a division by zero or a log of zero."
                )
        if finite.any():
            self.range_problems(probe, value[finite].astype(np.float64))
        return bool(finite.any())

    def shape_hint(self, probe: Probe, got: tuple, want: tuple) -> str:
        if got == (*want, 1):
            return ": drop the channel axis"
        if self.check.takes_upsample and len(got) == 3 and got[0] == want[0]:
            if not probe.upsample and got[1:] == tuple(self.pset.images.shape[1:3]):
                return ": with upsample=False return the map at the conv layer's grid, not resized"
            if probe.upsample:
                return ": with upsample=True resize the map to the input size"
            return f": the map at the grid of layer {self.layer}"
        if len(got) == 3 and got[0] != want[0]:
            return ": return one map per image in the batch"
        return ""

    def range_problems(self, probe: Probe, maps: np.ndarray) -> None:
        where, tol = self.where(probe), self.tol
        low, high = maps.min(axis=(1, 2)), maps.max(axis=(1, 2))
        if high.max() > 1 + tol:
            self.say(
                NORMALISATION,
                "not_normalised",
                f"The maximum is {high.max():.4g}, not 1 (on {where}): normalise each map to [0, 1].",
            )
        if low.min() < -tol:
            cause = {
                "gradcam": "missing ReLU, or the map is not normalised",
                "saliency": "take the absolute value of the gradient, and normalise each map",
                "cam": "normalise each map to [0, 1]",
            }[self.check.method]
            self.say(NORMALISATION, "negative", f"Negative values (minimum {low.min():.4g}) on {where}: {cause}.")
        flat = high - low <= tol
        if (flat & (np.abs(high) > tol)).any():
            self.say(
                NORMALISATION,
                "flat_not_zero",
                f"A flat map should be all zeros (on {where}), as (m - min) / max(max - min, eps) gives.",
            )
        short = ~flat & (high < 1 - tol)
        if short.any() and probe.role == "batch" and high.max() >= 1 - tol:
            self.say(
                NORMALISATION,
                "batch_normalised",
                f"The maximum is {high[short].min():.4g}, not 1, for some images of {where}: normalise each map with "
                "its own minimum and maximum, not the whole batch's.",
            )
        elif short.any():
            resized = probe.upsample and self.check.method != "saliency"
            code, hint = (
                (
                    "normalised_before_upsampling",
                    "normalise after upsampling (normalising the small map and then resizing it loses the peak)",
                )
                if resized
                else ("max_not_one", "normalise each map so that its maximum is 1")
            )
            self.say(NORMALISATION, code, f"The maximum is {high[short].min():.4g}, not 1 (on {where}): {hint}.")

    def batch_equals_single(self, usable: list[bool]) -> None:
        plan = self.pset.plan
        for k, probe in enumerate(plan):
            if probe.role != "single" or not usable[k]:
                continue
            batch_at = next(
                j
                for j, p in enumerate(plan)
                if p.role == "batch" and (p.class_index, p.upsample) == (probe.class_index, probe.upsample)
            )
            if not usable[batch_at]:
                continue
            alone = normalized(self.values[k])
            in_batch = normalized(self.values[batch_at][probe.index : probe.index + 1])
            diff = float(np.nan_to_num(np.abs(alone - in_batch), nan=0.0).max())
            if diff > self.tol:
                self.say(
                    NORMALISATION,
                    "batch_differs",
                    f"Image {probe.index}'s map computed alone differs from its map in the batch (max abs difference "
                    f"{diff:.3g}): normalise each map with its own minimum and maximum, not the whole batch's, "
                    "and keep the images independent.",
                )
                return

    def keep(self, k: int) -> np.ndarray:
        """Images of result K compared with the reference: well-conditioned reference, finite student map."""
        value = self.values[k]
        return self.expected(self.pset.plan[k]).conditioned() & np.isfinite(value).all(axis=(1, 2))

    def differences(self, usable: list[bool]) -> dict[int, np.ndarray]:
        """Result index -> per-image max abs difference of the re-normalised maps from the reference."""
        out = {}
        for k, probe in enumerate(self.pset.plan):
            if not usable[k] or probe.role == "zero_head":
                continue
            keep = self.keep(k)
            gap = np.abs(normalized(self.values[k]) - self.expected(probe).maps).max(axis=(1, 2))
            out[k] = np.where(keep, gap, 0.0)
        return out

    def agreement(self, usable: list[bool]) -> tuple[int, int] | None:
        """Compare every usable result with the reference and name the cause; the (result, image) that differs most."""
        gaps = self.differences(usable)
        if not gaps:
            return None
        worst = max(((k, int(g.argmax())) for k, g in gaps.items()), key=lambda ki: gaps[ki[0]][ki[1]])
        comparable = [normalized(self.values[k])[self.keep(k)] for k in gaps]
        eight_bit = quantised(comparable)
        allowed = self.tol + (QUANTUM if eight_bit else 0.0)
        failing = [k for k, g in gaps.items() if g.max() > self.tol]
        if eight_bit and failing:
            biggest = max(float(gaps[k].max()) for k in failing)
            self.say(
                CONVENTION,
                "quantised_8bit",
                f"Your maps are multiples of 1/255 (8-bit, as after uint8 or saving to PNG), so they differ from the "
                f"reference by up to {biggest:.3g}, more than the tolerance {self.tol:g}: return the float32 maps "
                "without rounding them to 8 bits.",
            )
        wrong = [k for k in failing if gaps[k].max() > allowed]
        if not wrong:
            if self.check.method == "gradcam":
                mine, theirs, total = self.pointing_counts(usable)
                if total and mine < theirs - 1:
                    self.say(
                        METHOD,
                        "pointing",
                        f"Your maps point at the object less often than the reference's: {self.pointing_game(usable)}.",
                    )
            return worst
        first = resized_at = wrong[0]
        cause = self.diagnose(first)
        if cause and not cause.upsampling:  # the method explained at this probe: look for the resizing too
            resized = [k for k in wrong if self.pset.plan[k].upsample and self.check.method != "saliency"]
            if resized and resized[0] != first:
                extra = self.diagnose(resized[0], method=cause.codes[0])
                if extra:
                    cause = Cause(cause.codes + extra.codes[-1:], cause.method, extra.upsampling, cause.diff)
                    resized_at = resized[0]
        diff = float(gaps[first].max())
        if cause and cause.upsampling:
            self.say(
                CONVENTION,
                cause.codes[-1],
                f"Your maps differ from the reference where they are resized (on "
                f"{self.where(self.pset.plan[resized_at])}, max abs difference {float(gaps[resized_at].max()):.3g}, "
                f"tolerance {self.tol:g}): the resizing looks like {cause.upsampling}; {COURSE_RESIZE}.",
            )
        if cause and not cause.method:
            return worst
        text = (
            f"Your maps disagree with the reference on {self.where(self.pset.plan[first])} "
            f"(max abs difference {diff:.3g}, tolerance {self.tol:g})"
        )
        pointing = self.pointing_game(usable)
        if pointing:
            text += f"; {pointing}"
        if cause:
            self.say(METHOD, cause.codes[0], f"{text}: it looks like {cause.method}.")
        else:
            self.say(METHOD, "disagrees", text + ".")
        return worst

    def pointing_counts(self, usable: list[bool]) -> tuple[int, int, int]:
        """Over batch probes at input size, images of the probe's class: peaks inside the box (student, reference)."""
        mine = theirs = total = 0
        for k, probe in enumerate(self.pset.plan):
            value = self.values[k]
            if not usable[k] or probe.role != "batch" or value.shape[1:] != self.pset.images.shape[1:3]:
                continue
            own = self.pset.labels == probe.class_index
            boxes = self.pset.boxes[own]
            mine += int(_pointing(np.nan_to_num(value[own], nan=0.0), boxes).sum())
            theirs += int(_pointing(self.expected(probe).maps[own], boxes).sum())
            total += int(own.sum())
        return mine, theirs, total

    def pointing_game(self, usable: list[bool]) -> str:
        mine, theirs, total = self.pointing_counts(usable)
        if not total:
            return ""
        return f"your map's peak lies inside the object for {mine}/{total} images, the reference's for {theirs}/{total}"

    # -- diagnosis: recompute the usual variants on the recorded model, keep the one that matches

    def method_variants(self, probe: Probe) -> list[tuple[str, str, int]]:
        """(code, cause, class) of the reference, of each known mistake and of each other class."""
        c = probe.class_index
        out = [("", "", c)] + [(code, cause, c) for code, _options, cause in MISTAKES[self.check.method]]
        for other in range(self.reference.score.num_classes):
            if other != c:
                out.append(("other_class", OTHER_CLASS.format(other=other, wanted=c), other))
        return out

    def diagnose(self, k: int, method: str | None = None) -> Cause | None:
        """The known mistake (a method variant, a resizing convention, or both) that reproduces result K, if any.

        Upsampled maps are compared with each variant's map at the conv grid resized every usual way
        (resizing commutes with the min-max normalisation), so trying a convention costs no model call.
        METHOD restricts the search to one method variant's code, to find only how it was resized.
        """
        probe = self.pset.plan[k]
        keep = self.keep(k)
        student = normalized(self.values[k])
        resized = probe.upsample and self.check.method != "saliency"
        size = tuple(self.pset.images.shape[1:3])
        table = self.table(_images_of(probe), everything=True)
        rows = slice(probe.index, probe.index + 1) if probe.role == "single" else slice(None)
        best, best_diff = None, DIAGNOSIS_TOLERANCE
        for code, cause, c in self.method_variants(probe):
            if method is not None and code != method:
                continue
            raw = table[("" if code == "other_class" else code, c)][rows]
            if resized:
                grid = self.reference.finish(raw, False)[0]
                options = [("", "", normalized(upsample(grid, size, "bilinear")))]
                for how, text in UPSAMPLING.items():
                    maps = upsample(grid, size, how)
                    if maps is not None:
                        options.append((how, text, normalized(maps)))
            else:
                options = [("", "", self.reference.finish(raw, probe.upsample)[0])]
            candidates = [
                (tuple(x for x in (code, how) if x), cause, how_text, maps) for how, how_text, maps in options
            ]
            # For a single sigmoid unit the flipped map is the other class's: OTHER_CLASS names that.
            if code == "" and self.check.method == "cam" and self.reference.score.units > 1:
                candidates.append((("sign_flipped",), SIGN_FLIPPED, "", 1.0 - options[0][2]))
            for codes, method_text, up_text, maps in candidates:
                diff = float(np.abs(student[keep] - maps[keep]).max()) if keep.any() else 0.0
                if diff < best_diff:
                    best, best_diff = Cause(codes, method_text, up_text, diff), diff
        if best is None or not best.codes or (method is not None and not best.upsampling):
            return None  # nothing known explains it better than the reference (or than METHOD alone)
        return best

    # -- the figure

    def figure(self, usable: list[bool], worst: tuple[int, int] | None) -> str | None:
        """Probe image, student map, reference map and their difference where they disagree most (base64 PNG)."""
        if worst is None:
            return None
        from autograder.checks.heatmap_figure import side_by_side

        k, i = worst
        probe = self.pset.plan[k]
        student = normalized(self.values[k])[i]
        ref = self.expected(probe).maps[i]
        image = self.pset.inputs(probe)[i]
        gap = float(np.nan_to_num(np.abs(student - ref), nan=1.0).max())
        return side_by_side(
            display_image(image, self.pset.preprocessing),
            student,
            ref,
            f"{self.check.label}, {self.where(probe)}, image {i}: max abs difference {gap:.3g} "
            f"(tolerance {self.tol:g})",
        )


def display_image(image: np.ndarray, preprocessing: str) -> np.ndarray:
    """A preprocessed probe image back in [0, 1] RGB or grey, for showing it."""
    if preprocessing == "vgg16":
        image = (image + IMAGENET_BGR_MEAN)[..., ::-1] / 255.0
    image = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    return image[..., 0] if image.shape[-1] == 1 else image


@register
class CAMCheck(HeatmapCheck):
    name = "heatmaps.cam"
    method = "cam"
    label = "CAM"


@register
class SaliencyCheck(HeatmapCheck):
    name = "heatmaps.saliency"
    method = "saliency"
    label = "saliency"


@register
class GradCAMCheck(HeatmapCheck):
    name = "heatmaps.gradcam"
    method = "gradcam"
    takes_upsample = True
    label = "Grad-CAM"

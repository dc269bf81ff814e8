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
the first three images one at a time (batch = per image; Grad-CAM at the conv grid), and one
constant image (all zeros after preprocessing; Grad-CAM upsampled).

The judge reloads the recorded model (safe mode), recomputes the reference maps on the probe
images with the layer named in course.yml (`cam_layer`; a recorded `layer_name` is not trusted),
regenerates the objects' boxes from the seed, and reports: errors raised, shape, dtype, NaN, range
and maximum, batch versus per image, agreement with the reference after re-normalising both
(within `grading.tolerance`), and where they disagree the pointing game and, when a known mistake
reproduces the student's maps, that mistake.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from autograder.checks import Check, CheckContext, Evidence, register
from autograder.checks.recorded_models import RecordedModelError, load_recorded_model

BATCH_PER_CLASS = 3  # six probe images: keeps Lab 4 (VGG16, ~0.2 s per image on CPU) cheap in the kernel
SINGLES = 3  # images also computed one at a time
DIAGNOSIS_TOLERANCE = 0.05  # a known mistake "explains" a map when it reproduces it this closely
ILL_CONDITIONED = 1e-4  # raw spread / raw scale below this: the normalised map is rounding noise
MAX_PROBLEMS = 5


# ----------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class Probe:
    role: str  # "batch", "single" or "flat"
    class_index: int
    upsample: bool = True
    index: int | None = None  # the image of a "single" probe

    def describe(self, batch_size: int, with_upsample: bool) -> str:
        if self.role == "batch":
            text = f"the batch of {batch_size} images with class_index={self.class_index}"
        elif self.role == "single":
            text = f"image {self.index} alone (class_index={self.class_index})"
        else:
            text = f"a constant image (class_index={self.class_index})"
        return text + (f", upsample={self.upsample}" if with_upsample else "")


@dataclass(frozen=True, eq=False)
class ProbeSet:
    images: np.ndarray  # preprocessed float32 (B, H, W, C)
    labels: np.ndarray
    boxes: np.ndarray  # (B, 4) y0, x0, y1, x1, end exclusive, in input pixels
    plan: tuple[Probe, ...]

    def inputs(self, probe: Probe) -> np.ndarray:
        if probe.role == "batch":
            return self.images
        if probe.role == "single":
            return self.images[probe.index : probe.index + 1]
        return np.zeros_like(self.images[:1])

    def calls(self, with_upsample: bool) -> list[dict[str, Any]]:
        calls = []
        for probe in self.plan:
            call: dict[str, Any] = {"images": self.inputs(probe), "class_index": probe.class_index}
            if with_upsample:
                call["upsample"] = probe.upsample
            calls.append(call)
        return calls


def plan(first: int, second: int, with_upsample: bool) -> tuple[Probe, ...]:
    singles = tuple(Probe("single", first, False if with_upsample else True, i) for i in range(SINGLES))
    if with_upsample:
        batches = (Probe("batch", first, False), Probe("batch", first, True), Probe("batch", second, True))
    else:
        batches = (Probe("batch", first), Probe("batch", second))
    return (*batches, *singles, Probe("flat", first, True))


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
    return ProbeSet(images, labels[order], np.asarray(pool.boxes[order]), plan(first, second, with_upsample))


# ----------------------------------------------------------------------------- reference and known mistakes


def _reference(method: str, model, layer: str, **options):
    from autograder import reference

    if method == "cam":
        return reference.CAM(model, layer, **options)
    if method == "gradcam":
        return reference.GradCAM(model, layer, **options)
    return reference.Saliency(model, **options)


LOGIT = "differentiate the class logit (the last Dense layer's output before its activation)"
MISTAKES: dict[str, tuple[tuple[dict[str, Any], str], ...]] = {
    "cam": (({"relu": True}, "it looks like a ReLU was applied: CAM as defined in this course has none"),),
    "saliency": (
        ({"reduce": "sum"}, "it looks like a sum over colour channels instead of the maximum"),
        ({"absolute": False}, "it looks like the signed gradient: take its absolute value before the maximum"),
        # For two classes the probability's and the loss's gradients are parallel: one message for both.
        ({"score": "probability"}, f"it looks like the gradient of the softmax probability or the loss: {LOGIT}"),
        ({"score": "loss"}, f"it looks like the gradient of the loss instead of the class score: {LOGIT}"),
    ),
    "gradcam": (
        ({"relu": False}, "it looks like the ReLU is missing: apply relu to the weighted sum of feature maps"),
        (
            {"score": "loss"},
            "is the gradient taken of the loss instead of the class score? The loss falls as the score rises, "
            "so its gradient highlights evidence against the class",
        ),
        ({"score": "probability"}, f"it looks like the gradient of the softmax probability: {LOGIT}"),
    ),
}
CORNERS = "it looks like corner-aligned resizing (scipy zoom, align_corners=True): use tf.image.resize(..., 'bilinear')"
OTHER_CLASS = (
    "it looks like the map of class {other}, not of class_index={wanted}: use class_index to pick the class "
    "(for a single sigmoid unit class 0 scores -z: flip the sign of the weights)"
)


@dataclass
class ReferenceMaps:
    maps: np.ndarray
    spread: np.ndarray
    scale: np.ndarray

    def conditioned(self) -> np.ndarray:
        """Images whose normalised reference map means something (exactly flat maps count: they must be zeros)."""
        return ~((self.spread > 0) & (self.spread <= ILL_CONDITIONED * self.scale))


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

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        spec = ctx.model_spec
        pset = self._probe_set(ctx)
        problems = self._call_problems(pset, evidence)
        if problems:
            return problems
        try:
            model = load_recorded_model(evidence.values.get("model"), ctx)
        except RecordedModelError as exc:
            return [f"The model recorded with your {self.label} could not be used: {exc}."]
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        if shape != tuple(spec.input_shape):
            return [
                f"The recorded model takes inputs of shape {shape}, not {tuple(spec.input_shape)} as course.yml says."
            ]
        try:
            reference = _reference(self.method, model, spec.cam_layer)
        except (KeyError, ValueError) as exc:
            return [f"The reference {self.label} cannot run on the recorded model: {exc}."]
        return Judgement(self, pset, evidence, model, spec.cam_layer, reference, ctx.course.grading.tolerance).run()

    def _call_problems(self, pset: ProbeSet, evidence: Evidence) -> list[str]:
        if len(evidence.calls) != len(pset.plan):
            return [
                f"{len(evidence.calls)} results were recorded for {len(pset.plan)} probe inputs: "
                "the hidden test must run your function once per probe."
            ]
        for probe, call in zip(pset.plan, evidence.calls, strict=True):
            if not call.get("ok"):
                where = probe.describe(len(pset.images), self.takes_upsample)
                return [f"Your {self.label} function raised {call.get('error')}: {call.get('message')} (on {where})."]
        return []


class Judgement:
    """One judge run: reference maps computed once per (class, upsample), problems gathered in order."""

    def __init__(self, check: HeatmapCheck, pset: ProbeSet, evidence: Evidence, model, layer, reference, tol: float):
        self.check = check
        self.pset = pset
        self.model = model
        self.layer = layer
        self.reference = reference
        self.tol = tol
        self.values = [_as_maps(call.get("value")) for call in evidence.calls]
        self._cache: dict[tuple, ReferenceMaps] = {}
        self.problems: list[str] = []

    def say(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def where(self, probe: Probe) -> str:
        return probe.describe(len(self.pset.images), self.check.takes_upsample)

    def expected(self, probe: Probe) -> ReferenceMaps:
        """Reference maps for PROBE (singles are slices of the batch: the reference is per image by construction)."""
        key = ("flat" if probe.role == "flat" else "batch", probe.class_index, probe.upsample)
        if key not in self._cache:
            images = self.pset.inputs(Probe("flat", 0) if probe.role == "flat" else Probe("batch", 0))
            self._cache[key] = ReferenceMaps(
                *self.reference.with_conditioning(images, probe.class_index, probe.upsample)
            )
        ref = self._cache[key]
        if probe.role == "single":
            i = slice(probe.index, probe.index + 1)
            return ReferenceMaps(ref.maps[i], ref.spread[i], ref.scale[i])
        return ref

    # -- the checks, in the order a student should fix them

    def run(self) -> list[str]:
        usable = [self.properties(probe, value) for probe, value in zip(self.pset.plan, self.values, strict=True)]
        if all(usable):
            self.batch_equals_single()
            self.agreement()
        return self.problems[:MAX_PROBLEMS]

    def properties(self, probe: Probe, value: np.ndarray | None) -> bool:
        """Shape, dtype, finite, range and maximum of one result; False when it cannot be compared further."""
        where = self.where(probe)
        if value is None:
            self.say(f"Your {self.check.label} function must return a numeric array (on {where}).")
            return False
        ref = self.expected(probe)
        want = ref.maps.shape
        if value.shape != want:
            self.say(f"Shape {value.shape} on {where}, expected {want}{self.shape_hint(probe, value.shape, want)}.")
            return False
        if value.dtype.kind != "f":
            self.say(f"The maps have dtype {value.dtype} (on {where}): return float32 maps in [0, 1].")
        if not np.isfinite(value).all():
            if probe.role == "flat" or (ref.spread[~np.isfinite(value).all(axis=(1, 2))] == 0).any():
                self.say(
                    f"NaN for a flat map (on {where}): add an epsilon to the normalisation, "
                    "(m - min) / max(max - min, 1e-8), so a flat map becomes zeros."
                )
            else:
                self.say(f"NaN or infinite values on {where}: look for a division by zero or a log of zero.")
            return False
        self.range_problems(probe, value.astype(np.float64))
        return True

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
            self.say(f"The maximum is {high.max():.4g}, not 1 (on {where}): normalise each map to [0, 1].")
        if low.min() < -tol:
            cause = {
                "gradcam": "missing ReLU, or the map is not normalised",
                "saliency": "take the absolute value of the gradient, and normalise each map",
                "cam": "normalise each map to [0, 1]",
            }[self.check.method]
            self.say(f"Negative values (minimum {low.min():.4g}) on {where}: {cause}.")
        flat = high - low <= tol
        if (flat & (np.abs(high) > tol)).any():
            self.say(f"A flat map should be all zeros (on {where}), as (m - min) / max(max - min, eps) gives.")
        short = ~flat & (high < 1 - tol)
        if short.any() and probe.role == "batch" and high.max() >= 1 - tol:
            self.say(
                f"The maximum is {high[short].min():.4g}, not 1, for some images of {where}: normalise each map with "
                "its own minimum and maximum, not the whole batch's."
            )
        elif short.any():
            resized = probe.upsample and self.check.method != "saliency"
            hint = (
                "normalise after upsampling (normalising the small map and then resizing it loses the peak)"
                if resized
                else "normalise each map so that its maximum is 1"
            )
            self.say(f"The maximum is {high[short].min():.4g}, not 1 (on {where}): {hint}.")

    def batch_equals_single(self) -> None:
        plan = self.pset.plan
        for probe, value in zip(plan, self.values, strict=True):
            if probe.role != "single":
                continue
            batch_at = next(
                k
                for k, p in enumerate(plan)
                if p.role == "batch"
                and (p.class_index, p.upsample)
                == (
                    probe.class_index,
                    probe.upsample,
                )
            )
            alone, in_batch = normalized(value), normalized(self.values[batch_at][probe.index : probe.index + 1])
            diff = float(np.abs(alone - in_batch).max())
            if diff > self.tol:
                self.say(
                    f"Image {probe.index}'s map computed alone differs from its map in the batch (max abs difference "
                    f"{diff:.3g}): normalise each map with its own minimum and maximum, not the whole batch's, "
                    "and keep the images independent."
                )
                return

    def agreement(self) -> None:
        for probe, value in zip(self.pset.plan, self.values, strict=True):
            ref = self.expected(probe)
            keep = ref.conditioned()
            if not keep.any():
                continue
            diff = float(np.abs(normalized(value)[keep] - ref.maps[keep]).max())
            if diff <= self.tol:
                continue
            text = f"Your maps disagree with the reference on {self.where(probe)} (max abs difference {diff:.3g})"
            pointing = self.pointing_game()
            if pointing:
                text += f"; {pointing}"
            cause = self.diagnose(probe, normalized(value), keep)
            self.say(text + (f": {cause}." if cause else "."))
            return
        if self.check.method == "gradcam":
            mine, theirs, total = self.pointing_counts()
            if total and mine < theirs - 1:
                self.say(f"Your maps point at the object less often than the reference's: {self.pointing_game()}.")

    def pointing_counts(self) -> tuple[int, int, int]:
        """Over batch probes at input size, images of the probe's class: peaks inside the box (student, reference)."""
        mine = theirs = total = 0
        for probe, value in zip(self.pset.plan, self.values, strict=True):
            if probe.role != "batch" or value.shape[1:] != self.pset.images.shape[1:3]:
                continue
            own = self.pset.labels == probe.class_index
            boxes = self.pset.boxes[own]
            mine += int(_pointing(value[own], boxes).sum())
            theirs += int(_pointing(self.expected(probe).maps[own], boxes).sum())
            total += int(own.sum())
        return mine, theirs, total

    def pointing_game(self) -> str:
        mine, theirs, total = self.pointing_counts()
        if not total:
            return ""
        return f"your map's peak lies inside the object for {mine}/{total} images, the reference's for {theirs}/{total}"

    def diagnose(self, probe: Probe, student: np.ndarray, keep: np.ndarray) -> str:
        """The known mistake that reproduces the student's maps on PROBE, if any."""
        images = self.pset.inputs(probe)
        candidates: list[tuple[Any, str]] = [
            (
                functools.partial(
                    _reference(self.check.method, self.model, self.layer, **options), upsample=probe.upsample
                ),
                message,
            )
            for options, message in MISTAKES[self.check.method]
        ]
        others = [c for c in range(self.reference.score.num_classes) if c != probe.class_index]
        for other in others:
            candidates.append(
                (
                    lambda imgs, _c, other=other: self.reference(imgs, other, upsample=probe.upsample),
                    OTHER_CLASS.format(other=other, wanted=probe.class_index),
                )
            )
        if probe.upsample and self.check.method != "saliency":
            corner = _reference(self.check.method, self.model, self.layer)
            corner.corner_aligned_resize = True
            candidates.append((functools.partial(corner, upsample=True), CORNERS))
        best, best_diff = "", DIAGNOSIS_TOLERANCE
        for compute, message in candidates:
            maps = compute(images, probe.class_index)
            diff = float(np.abs(student[keep] - maps[keep]).max())
            if diff < best_diff:
                best, best_diff = message, diff
        return best


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

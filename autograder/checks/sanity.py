"""Lab 5's checks: `sanity.pointing_game`, `sanity.deletion`, `sanity.randomisation`.

The hidden test cells record the student's metric functions on inputs whose right answers are
known (autograder.sanity_strategies, deterministic for the part's seed) and the judge compares
them with the float64 references in autograder/reference/{pointing_game,deletion,randomisation}.py.
No model runs in the grading process: deletion curves are probed on linear softmax classifiers,
built in the kernel by cnnvis.explain.linear_classifier from the probe's weights, whose curves the
judge computes exactly; the randomisation test is judged on the weights the student's randomised
copies have, against the trained model's weights recorded beside them.

Contracts (hidden cells):
    evidence.record_calls("lab5_pointing", pointing_game)
    evidence.record_calls("lab5_deletion", {"perturb": perturb, "curve": <perturbation_curve on
        explain.linear_classifier(weights, bias, images.shape[1:])>, "auc": curve_auc})
    evidence.record_calls("lab5_randomisation", {"randomise": <{layer: weights} of randomised_copy(model,
        n_top, seed)>, "correlate": rank_correlation}, weights=<{layer: weights} of the trained model>)

When an answer is wrong the judge tries the usual mistakes on the same input and names the one
that reproduces it: ties read off the first argmax, boxes read end inclusive, pixels ranked
ascending, an off-by-one in the steps, the logit instead of the probability, the wrong area
rule, layers randomised bottom-up, Pearson instead of Spearman, ties not averaged, ranks pooled
over the batch (what comparing unnormalised maps does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from autograder import sanity_strategies as SS
from autograder.checks import Check, CheckContext, Evidence, register
from autograder.reference import deletion as D
from autograder.reference import pointing_game as P
from autograder.reference import randomisation as R
from autograder.strategies import draw_examples

MAX_PROBLEMS = 5
EXACT = 1e-6  # numpy metrics on float32 inputs agree with the float64 reference to rounding
PROBABILITY_TOLERANCE = 1e-4  # a float32 Keras softmax against the float64 closed form
RANDOMISATION_SEED = 7
SCALE_RANGE = (0.25, 4.0)  # a re-initialised kernel's std against Glorot uniform's


# ----------------------------------------------------------------------------- shared helpers


def _numeric(value: Any) -> np.ndarray | None:
    try:
        array = np.asarray(value)
    except Exception:
        return None
    return array if array.dtype.kind in "biuf" else None


def _pairs(evidence: Evidence, problems: list[str]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    if len(evidence.calls) != len(evidence.probes):
        problems.append(
            f"{len(evidence.calls)} results were recorded for {len(evidence.probes)} test inputs: "
            "the hidden test must run your function once per input."
        )
        return
    yield from zip(evidence.probes, evidence.calls, strict=True)


def _limit(problems: list[str]) -> list[str]:
    seen: list[str] = []
    for p in problems:
        if p not in seen:
            seen.append(p)
    return seen[:MAX_PROBLEMS]


def _raised(call: dict[str, Any], what: str) -> str | None:
    if call.get("ok"):
        return None
    return f"Your {what} raised {call.get('error')}: {call.get('message')}"


def _diagnose(got: np.ndarray, candidates: list[tuple[Callable[[], np.ndarray], str]], tol: float) -> str:
    """The message of the first candidate mistake that reproduces GOT within TOL, or ''."""
    for compute, message in candidates:
        try:
            expected = np.asarray(compute(), dtype=np.float64)
        except Exception:
            continue
        if expected.shape == got.shape and np.allclose(got, expected, rtol=0, atol=tol, equal_nan=False):
            return message
    return ""


def _shape(array: np.ndarray) -> str:
    return "x".join(str(d) for d in array.shape)


def _singles(kwargs: dict[str, Any], batched: tuple[str, ...]) -> list[dict[str, Any]]:
    """The first two images of a batched probe one at a time: batch results must equal per-image results."""
    out = []
    for i in range(min(2, len(kwargs[batched[0]]))):
        single = dict(kwargs)
        for key in batched:
            single[key] = kwargs[key][i : i + 1]
        out.append(single)
    return out


# ----------------------------------------------------------------------------- pointing game


def _fixed_pointing() -> list[tuple[np.ndarray, np.ndarray]]:
    """Edge cases in every probe set: ties after the peak outside the box, a flat map, the box's edges."""
    maps = np.zeros((5, 6, 6), np.float32)
    maps[0, 1, 1] = maps[0, 5, 5] = 1.0  # tie: first maximum inside, the second outside -> miss
    maps[1, 2, 3] = 1.0  # peak on the box's last row -> hit
    maps[2, 3, 3] = 1.0  # peak one row past the box (end exclusive) -> miss
    maps[3] = 0.25  # flat map with a box that is not the image -> miss
    maps[4] = 0.5  # flat map with the whole image as box -> hit
    boxes = np.array([[0, 0, 3, 3], [1, 1, 3, 5], [1, 1, 3, 5], [1, 1, 5, 5], [0, 0, 6, 6]], np.int64)
    return [(maps, boxes)]


@register
class PointingGameCheck(Check):
    """pointing_game(maps, boxes) -> (hits (B,) bool, chance (B,) float)."""

    name = "sanity.pointing_game"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        batches = _fixed_pointing() + draw_examples(SS.pointing_batch(), 16, ctx.seed)
        calls = [{"maps": m, "boxes": b} for m, b in batches]
        multi = next(c for c in calls[1:] if len(c["maps"]) > 1) if any(len(c["maps"]) > 1 for c in calls[1:]) else None
        return calls + (_singles(multi, ("maps", "boxes")) if multi else [])

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            maps, boxes = np.asarray(probe["maps"]), np.asarray(probe["boxes"])
            where = f"on {len(maps)} map(s) of {maps.shape[1]}x{maps.shape[2]}"
            problem = _raised(call, "pointing_game") or self._one(maps, boxes, call.get("value"), where)
            if problem:
                problems.append(problem)
        return _limit(problems)

    def _one(self, maps: np.ndarray, boxes: np.ndarray, value: Any, where: str) -> str | None:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return f"pointing_game must return two arrays (hits, chance), {where}."
        hits, chance = _numeric(value[0]), _numeric(value[1])
        want_hits, want_chance = P.pointing_game(maps, boxes)
        if hits is None or chance is None or hits.shape != want_hits.shape or chance.shape != want_chance.shape:
            return (
                f"pointing_game must return hits and chance of shape ({len(maps)},), one value per map, {where}; "
                f"got shapes {getattr(hits, 'shape', None)} and {getattr(chance, 'shape', None)}."
            )
        if not np.isin(hits, (0, 1)).all():
            return f"hits must be booleans (True when the map's maximum lies in its box), {where}."
        if not np.array_equal(hits.astype(bool), want_hits):
            wrong = int(np.flatnonzero(hits.astype(bool) != want_hits)[0])
            cause = _diagnose(
                hits.astype(np.float64),
                [
                    (lambda: P.first_argmax_hits(maps, boxes), TIES),
                    (lambda: P.inclusive_hits(maps, boxes), INCLUSIVE),
                    (lambda: P.first_argmax_hits(maps, boxes, inclusive=True), INCLUSIVE),
                ],
                0.5,
            )
            return f"Map {wrong} {where}: your hit is {bool(hits[wrong])}, expected {bool(want_hits[wrong])}" + (
                f": {cause}." if cause else "."
            )
        if not np.allclose(chance, want_chance, rtol=0, atol=EXACT):
            h, w = maps.shape[1:]
            y0, x0, y1, x1 = (boxes[:, k].astype(np.float64) for k in range(4))
            inclusive = (y1 - y0 + 1) * (x1 - x0 + 1) / (h * w)
            cause = CHANCE_INCLUSIVE if np.allclose(chance, inclusive, atol=EXACT) else CHANCE
            got, expected = np.round(chance, 4).tolist(), np.round(want_chance, 4).tolist()
            return f"The chance rate {where} is {got}, expected {expected}: {cause}."
        return None


TIES = (
    "it looks like only the first maximum (argmax) was tested; when several pixels tie for the maximum, "
    "the map hits only if all of them lie inside the box (a flat map commits to nothing)"
)
INCLUSIVE = "it looks like the box was read end inclusive: y1 and x1 are the first row and column outside it"
CHANCE = "the chance rate is the box's area (y1 - y0) * (x1 - x0) divided by the image's H * W"
CHANCE_INCLUSIVE = f"it looks like the box's area was counted end inclusive; {CHANCE}"


# ----------------------------------------------------------------------------- deletion and insertion


@register
class DeletionCheck(Check):
    """perturb(images, maps, steps, baseline, mode), perturbation_curve on a linear classifier, curve_auc(curves)."""

    name = "sanity.deletion"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        perturbs = draw_examples(SS.perturbation_inputs(), 12, ctx.seed)
        multi = next((p for p in perturbs if len(p["images"]) > 1), None)
        if multi is not None:
            perturbs += _singles(multi, ("images", "maps"))
        curves = draw_examples(SS.linear_curve_inputs(), 10, ctx.seed + 1)
        areas = draw_examples(SS.curves(), 8, ctx.seed + 2)
        return (
            [{"function": "perturb", **p} for p in perturbs]
            + [{"function": "curve", **c} for c in curves]
            + [{"function": "auc", "curves": a} for a in areas]
        )

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        for probe, call in _pairs(evidence, problems):
            kind = probe.get("function")
            judge = {"perturb": self._perturb, "curve": self._curve, "auc": self._auc}[kind]
            what = {"perturb": "perturb", "curve": "perturbation_curve", "auc": "curve_auc"}[kind]
            kwargs = {k: v for k, v in probe.items() if k != "function"}
            problem = _raised(call, what) or judge(kwargs, _numeric(call.get("value")))
            if problem:
                problems.append(problem)
        return _limit(problems)

    @staticmethod
    def _where(kw: dict[str, Any]) -> str:
        images = np.asarray(kw["images"])
        return f"{kw['mode']} of {len(images)} image(s) {_shape(images[0])} in steps={kw['steps']}"

    def _step_problem(self, got: np.ndarray | None, want: tuple[int, ...], what: str, where: str) -> str | None:
        if got is None:
            return f"Your {what} must return a numeric array ({where})."
        if got.shape == want:
            return None
        if got.ndim == len(want) and got.shape[1] in (want[1] - 1, want[1] + 1):
            return (
                f"Your {what} returned {got.shape[1]} steps, expected {want[1]} ({where}): off by one in the steps. "
                "A curve has K + 1 points: step 0 (nothing removed or inserted yet) to step K (every pixel)."
            )
        return f"Your {what} returned shape {got.shape}, expected {want} ({where})."

    def _mistakes(self, compute: Callable[..., np.ndarray], kw: dict[str, Any]) -> list[tuple[Callable, str]]:
        other = "insertion" if kw["mode"] == "deletion" else "deletion"
        return [
            (lambda: compute(ascending=True), ASCENDING),
            (lambda: compute(shift=1), OFF_BY_ONE),
            (lambda: compute(shift=-1), OFF_BY_ONE),
            (lambda: compute(mode=other), f"it looks like {other} instead of {kw['mode']}"),
            (lambda: compute(baseline=np.zeros_like(np.asarray(kw["baseline"]))), BASELINE),
        ]

    def _perturb(self, kw: dict[str, Any], got: np.ndarray | None) -> str | None:
        images = np.asarray(kw["images"])
        want = D.perturb(**kw)
        where = self._where(kw)
        problem = self._step_problem(got, want.shape, "perturb", where)
        if problem:
            return problem
        if np.allclose(got, want, rtol=0, atol=EXACT):
            return None
        cause = _diagnose(got, self._mistakes(lambda **m: D.perturb(**{**kw, **m}), kw), EXACT)
        step = int(
            np.flatnonzero(~np.isclose(got, want, atol=EXACT).reshape(len(images), want.shape[1], -1).all(axis=(0, 2)))[
                0
            ]
        )
        return f"Your perturbed images differ from the expected ones at step {step} ({where})" + (
            f": {cause}." if cause else "."
        )

    def _curve(self, kw: dict[str, Any], got: np.ndarray | None) -> str | None:
        args = {k: kw[k] for k in ("images", "maps", "class_index", "steps", "baseline", "mode")}
        weights, bias = kw["weights"], kw["bias"]

        def compute(**mistake):
            score = mistake.pop("score", "probability")
            a = {**args, **mistake}
            return D.linear_curves(weights, bias, **a, score=score)

        want = compute()
        where = f"the {self._where(kw)} of a linear softmax classifier, class_index={kw['class_index']}"
        problem = self._step_problem(got, want.shape, "perturbation_curve", where)
        if problem:
            return problem
        if np.allclose(got, want, rtol=0, atol=PROBABILITY_TOLERANCE):
            return None
        mistakes = [(lambda: compute(score="logit"), LOGIT), *self._mistakes(compute, kw)]
        cause = _diagnose(got, mistakes, 10 * PROBABILITY_TOLERANCE)
        diff = float(np.abs(got - want).max())
        return f"Your curve differs from the exact one by up to {diff:.3g} on {where}" + (
            f": {cause}." if cause else "."
        )

    def _auc(self, kw: dict[str, Any], got: np.ndarray | None) -> str | None:
        curves = np.asarray(kw["curves"], dtype=np.float64)
        want = D.area_under_curve(curves)
        where = f"{len(curves)} curve(s) of {curves.shape[1]} points"
        if got is None or got.shape != want.shape:
            shape = getattr(got, "shape", None)
            return f"curve_auc must return one area per curve, shape {want.shape}, got {shape} ({where})."
        if np.allclose(got, want, rtol=0, atol=EXACT):
            return None
        steps = curves.shape[1] - 1
        cause = _diagnose(
            got,
            [
                (lambda: curves.mean(axis=1), AREA_MEAN),
                (lambda: want * steps, AREA_DX),
                (lambda: curves[:, 1:].mean(axis=1), AREA_MEAN),
            ],
            EXACT,
        )
        return f"Your areas {np.round(got, 4).tolist()} differ from {np.round(want, 4).tolist()} ({where})" + (
            f": {cause}." if cause else "."
        )


ASCENDING = (
    "it looks like the pixels were ranked ascending (least important first): sort by the map in descending "
    "order, e.g. np.argsort(-maps, kind='stable')"
)
OFF_BY_ONE = (
    "it looks like an off-by-one in the steps: after step k exactly floor(k * N / K) pixels are changed, "
    "so step 0 is the untouched image (deletion) or the baseline (insertion)"
)
BASELINE = "it looks like the baseline argument was ignored (zeros used instead): fill with `baseline`"
LOGIT = (
    "it looks like the logit was used: the curves plot the class probability (the model's softmax output), "
    "which lies in [0, 1] and is comparable between images"
)
AREA_MEAN = (
    "it looks like the mean of the points: the area is the trapezoidal rule over x = k / K, "
    "(sum of the points - (first + last) / 2) / K"
)
AREA_DX = "it looks like the trapezoidal rule with a step of 1: the x axis is the fraction k / K in [0, 1]"


# ----------------------------------------------------------------------------- randomisation test


def _weighted_count(ctx: CheckContext) -> int:
    spec = ctx.model_spec
    if spec is None:
        raise ValueError(f"{ctx.part.grade_id}: the randomisation check needs the notebook's `model:` in course.yml")
    return sum(1 for layer in spec.layers if layer.params > 0)


def _glorot_std(shape: tuple[int, ...]) -> float:
    """The std of Keras' default kernel initialiser (Glorot uniform) for a Dense or Conv2D kernel of SHAPE."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
    return float(np.sqrt(2.0 / (fan_in + fan_out)))


@register
class RandomisationCheck(Check):
    """randomised_copy(model, n_top, seed) judged on its weights; rank_correlation(maps_a, maps_b) -> (B,)."""

    name = "sanity.randomisation"
    uses_tensorflow = False

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        steps = [
            {"function": "randomise", "n_top": n, "seed": RANDOMISATION_SEED} for n in range(_weighted_count(ctx) + 1)
        ]
        pairs = []
        for i, case in enumerate(SS.MAP_PAIR_CASES):
            pairs += draw_examples(SS.map_pairs(case), 2, ctx.seed + i)
        multi = next(p for p in pairs if len(p[0]) > 1) if any(len(p[0]) > 1 for p in pairs) else None
        calls = [{"function": "correlate", "maps_a": a, "maps_b": b} for a, b in pairs]
        if multi is not None:
            calls += [
                {"function": "correlate", "maps_a": multi[0][i : i + 1], "maps_b": multi[1][i : i + 1]}
                for i in range(2)
            ]
        return steps + calls

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        problems: list[str] = []
        trained = evidence.values.get("weights")
        for probe, call in _pairs(evidence, problems):
            if probe["function"] == "randomise":
                problem = _raised(call, "randomised_copy") or self._randomised(
                    trained, probe["n_top"], call.get("value")
                )
            else:
                problem = _raised(call, "rank_correlation") or self._correlation(probe, _numeric(call.get("value")))
            if problem:
                problems.append(problem)
        return _limit(problems)

    def _randomised(self, trained: Any, n_top: int, value: Any) -> str | None:
        if not isinstance(trained, dict) or not R.weighted_layers(trained):
            return "The hidden test did not record the trained model's weights: run the notebook from the top."
        if not isinstance(value, dict) or list(value) != list(trained):
            return (
                f"randomised_copy(model, {n_top}, seed) must return a copy with the same layers as the model "
                f"({list(trained)[:6]}...), got {list(value)[:6] if isinstance(value, dict) else type(value).__name__}."
            )
        changed, problems = [], []
        for name in R.weighted_layers(trained):
            old, new = trained[name], value[name]
            if len(new) != len(old) or any(np.shape(a) != np.shape(b) for a, b in zip(old, new, strict=False)):
                return f"Layer {name}'s weights have other shapes after randomised_copy(model, {n_top}, seed)."
            kernel_old, kernel_new = np.asarray(old[0], np.float64), np.asarray(new[0], np.float64)
            if np.array_equal(kernel_old, kernel_new) and all(
                np.array_equal(a, b) for a, b in zip(old, new, strict=True)
            ):
                continue
            changed.append(name)
            if np.mean(kernel_old == kernel_new) > 0.5:
                problems.append(f"layer {name} is only partly re-initialised")
            glorot = _glorot_std(kernel_new.shape)
            ratio = float(kernel_new.std() / glorot)
            if not SCALE_RANGE[0] <= ratio <= SCALE_RANGE[1]:
                problems.append(
                    f"layer {name}'s new kernel has std {kernel_new.std():.3g}, far from a fresh initialisation's "
                    f"{glorot:.3g} (Glorot uniform): re-initialise it, do not zero or scale it"
                )
        want = R.randomised_layers(trained, n_top)
        if changed != want:
            where = f"randomised_copy(model, n_top={n_top}, seed) changed {changed or 'no layer'}"
            where += f", expected {want or 'none'}"
            if n_top and changed == R.randomised_layers(trained, n_top, top_down=False):
                return f"{where}: {BOTTOM_UP}."
            return where + "."
        if problems:
            return f"randomised_copy(model, n_top={n_top}, seed): " + "; ".join(problems) + "."
        return None

    def _correlation(self, probe: dict[str, Any], got: np.ndarray | None) -> str | None:
        a, b = np.asarray(probe["maps_a"]), np.asarray(probe["maps_b"])
        want = R.spearman(a, b)
        where = f"{len(a)} pair(s) of {a.shape[1]}x{a.shape[2]} maps"
        if got is None or got.shape != want.shape:
            return (
                f"rank_correlation must return one correlation per pair of maps, shape {want.shape}, "
                f"got {getattr(got, 'shape', None)} ({where})."
            )
        if not np.isfinite(got).all():
            return (
                f"NaN or infinite correlations ({where}): a flat map has no ranking, report 0 "
                "(an epsilon in the denominator)."
            )
        if np.allclose(got, want, rtol=0, atol=1e-5):
            return None
        cause = _diagnose(
            got,
            [
                (lambda: R.pearson(a, b), PEARSON),
                (lambda: R.pooled_spearman(a, b), POOLED),
                (lambda: R.ordinal_spearman(a, b), ORDINAL),
            ],
            1e-5,
        )
        return f"Your correlations {np.round(got, 4).tolist()} differ from {np.round(want, 4).tolist()} ({where})" + (
            f": {cause}." if cause else "."
        )


BOTTOM_UP = (
    "the layers were randomised bottom-up (from the input); the cascading test re-initialises from the top "
    "(the output layer) down, one more layer at each step"
)
PEARSON = (
    "it looks like the Pearson correlation of the map values: Spearman's is the Pearson correlation of their "
    "ranks (scipy.stats.rankdata(..., axis=1)), so it ignores how the values are scaled"
)
POOLED = (
    "it looks like the ranks were taken over the whole batch at once: rank each map on its own, or the maps' "
    "different scales (unnormalised maps) leak into each other's ranks"
)
ORDINAL = (
    "it looks like ties were not given their average rank (argsort of argsort): maps with many equal values, "
    "such as Grad-CAM's zeros, need scipy.stats.rankdata's average ranks"
)

"""Lab 5's checks (autograder/checks/sanity.py) on the source notebook's own answers and on the usual mistakes.

The answers are the real answer cells of source/lab5, executed here; each probe goes through the
evidence codec (write_bundle/read_bundle) as it does in a graded kernel. A correct answer must pass,
and each mistake must fail with the message that names it. No kernel, no training: a few seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autograder import build, examples
from autograder.checks import CheckContext, Evidence, get_check
from autograder.course import load_course
from cnnvis import evidence as ev

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="module")
def course():
    return load_course(REPO)


def _answers() -> dict[str, str]:
    nb = build.read_notebook(REPO / "source" / "lab5" / "lab5_sanity_checks.ipynb")
    return {build.nbgrader_meta(c)["grade_id"]: c.source for c in nb.cells if build.nbgrader_meta(c).get("solution")}


def _namespace(edits: dict[str, tuple[str, str]] | None = None) -> dict:
    import keras
    from scipy.stats import rankdata

    from cnnvis import explain

    ns: dict = {"np": np, "keras": keras, "rankdata": rankdata, "explain": explain}
    for grade_id in ("lab5_pointing_fn", "lab5_deletion_fn", "lab5_randomisation_fn"):
        source = _answers()[grade_id]
        for find, replace in (edits or {}).get(grade_id, []):
            assert find in source, (grade_id, find)
            source = source.replace(find, replace)
        exec(compile(source, grade_id, "exec"), ns)
    return ns


def _context(course, grade_id: str) -> CheckContext:
    a = course.assignment("lab5")
    nb = a.notebooks[0]
    return CheckContext(course, a, nb, next(p for p in nb.parts if p.grade_id == grade_id))


def _judge(course, grade_id: str, fn, tmp_path: Path, **values) -> list[str]:
    """Run FN on the part's probes as record_calls does, through the evidence codec, and judge it."""
    ctx = _context(course, grade_id)
    check = get_check(next(p.check for p in ctx.notebook.parts if p.grade_id == grade_id))
    probes = check.probes(ctx)
    ev.write_bundle(tmp_path / "probes", probes, "calls")
    probes = ev.read_bundle(tmp_path / "probes", "calls")
    calls = []
    for call in probes:
        kwargs = dict(call)
        target = fn[kwargs.pop("function")] if isinstance(fn, dict) else fn
        try:
            calls.append({"ok": True, "value": target(**kwargs)})
        except Exception as exc:
            calls.append({"ok": False, "error": type(exc).__name__, "message": str(exc)})
    ev.write_bundle(tmp_path / "record", {"values": values, "calls": calls})
    record = ev.read_bundle(tmp_path / "record")
    return check.judge(ctx, Evidence(tmp_path, dict(record["values"]), list(record["calls"]), list(probes)))


def _deletion_fns(ns: dict) -> dict:
    from cnnvis import explain

    def curve(weights, bias, **kw):
        return ns["perturbation_curve"](explain.linear_classifier(weights, bias, kw["images"].shape[1:]), **kw)

    return {"perturb": ns["perturb"], "auc": ns["curve_auc"], "curve": curve}


@pytest.fixture(scope="module")
def lab1_model():
    import keras

    ns = {}
    nb = build.read_notebook(REPO / "source" / "lab5" / "lab5_sanity_checks.ipynb")
    source = next(c.source for c in nb.cells if "def seed_cnn" in c.source)
    exec(
        compile(source.split("\n\nfashion_train")[0], "seed_cnn", "exec"),
        {"keras": keras, "layers": keras.layers, **ns},
        ns,
    )
    keras.utils.set_random_seed(1)
    return ns["seed_cnn"]((28, 28, 1), 10)


def _randomisation_fns(ns: dict, model) -> tuple[dict, dict]:
    def randomise(n_top, seed):
        return {layer.name: layer.get_weights() for layer in ns["randomised_copy"](model, n_top, seed).layers}

    weights = {layer.name: layer.get_weights() for layer in model.layers}
    return {"randomise": randomise, "correlate": ns["rank_correlation"]}, weights


CELL_OF = {
    "lab5_pointing": "lab5_pointing_fn",
    "lab5_deletion": "lab5_deletion_fn",
    "lab5_randomisation": "lab5_randomisation_fn",
}
_JUDGED: dict[tuple, list[str]] = {}


def _judge_all(course, edits: dict[str, list[tuple[str, str]]], model, tmp_path: Path) -> dict[str, list[str]]:
    """Every part's problems for the answers with EDITS. A part depends only on its own answer cell, so a
    part whose cell is unedited is judged once per module (it is the same code as the solution's)."""
    ns = _namespace(edits)
    fns, weights = _randomisation_fns(ns, model)
    runs = {
        "lab5_pointing": lambda: _judge(course, "lab5_pointing", ns["pointing_game"], tmp_path / "p"),
        "lab5_deletion": lambda: _judge(course, "lab5_deletion", _deletion_fns(ns), tmp_path / "d"),
        "lab5_randomisation": lambda: _judge(course, "lab5_randomisation", fns, tmp_path / "r", weights=weights),
    }
    out = {}
    for grade_id, run in runs.items():
        key = (grade_id, tuple(edits.get(CELL_OF[grade_id], ())))
        if key not in _JUDGED:
            _JUDGED[key] = run()
        out[grade_id] = _JUDGED[key]
    return out


def test_the_notebooks_answers_pass(course, lab1_model, tmp_path: Path):
    assert _judge_all(course, {}, lab1_model, tmp_path) == {
        "lab5_pointing": [],
        "lab5_deletion": [],
        "lab5_randomisation": [],
    }


# What the judge must say for each mistake of examples/mistakes/lab5.yml.
NAMED = {
    "ties_first_argmax": "only the first maximum",
    "ascending_rank": "ascending",
    "steps_off_by_one": "off-by-one",
    "logit_not_probability": "the logit was used",
    "randomise_bottom_up": "bottom-up",
    "pearson_not_spearman": "Pearson correlation of the map values",
    "unnormalised_pooled_ranks": "unnormalised maps",
}


def test_every_mistake_in_the_examples_is_named(course):
    assert set(examples.load_mistakes(course, course.assignment("lab5")).mistakes) == set(NAMED)


@pytest.mark.parametrize("mistake_id", sorted(NAMED))
def test_each_example_mistake_loses_exactly_its_part(course, lab1_model, tmp_path: Path, mistake_id):
    mistake = examples.load_mistakes(course, course.assignment("lab5")).mistakes[mistake_id]
    edits: dict[str, list[tuple[str, str]]] = {}
    for edit in mistake.edits:
        edits.setdefault(edit.cell, []).append((edit.find, edit.replace))
    problems = _judge_all(course, edits, lab1_model, tmp_path)
    failed = {grade_id for grade_id, found in problems.items() if found}
    assert failed == set(mistake.loses), problems
    assert any(NAMED[mistake_id] in p for grade_id in mistake.loses for p in problems[grade_id]), problems


# Further mistakes the judge names (not in the demo: they would only lengthen the end-to-end run).
MORE_MISTAKES = [
    (
        "lab5_pointing",
        {"lab5_pointing_fn": [("(ys < y1)", "(ys <= y1)"), ("(xs < x1)", "(xs <= x1)")]},
        "end inclusive",
    ),
    (
        "lab5_deletion",
        {"lab5_deletion_fn": [("np.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), axis=1)", "curves.mean(axis=1)")]},
        "mean of the points",
    ),
    (
        "lab5_deletion",
        {
            "lab5_deletion_fn": [
                ("np.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), axis=1)", "np.trapezoid(curves, axis=1)")
            ]
        },
        "step of 1",
    ),
    (
        "lab5_deletion",
        {
            "lab5_deletion_fn": [
                ("base = np.broadcast_to(np.asarray(baseline", "base = np.broadcast_to(0 * np.asarray(baseline")
            ]
        },
        "baseline argument was ignored",
    ),
    (
        "lab5_randomisation",
        {
            "lab5_randomisation_fn": [
                (
                    "np.maximum(np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)), 1e-12)",
                    "np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))",
                )
            ]
        },
        "a flat map has no ranking",
    ),
    (
        "lab5_randomisation",
        {
            "lab5_randomisation_fn": [
                ("rng.uniform(-limit, limit, kernel.shape).astype(np.float32)", "np.zeros_like(kernel)")
            ]
        },
        "do not zero or scale it",
    ),
]


@pytest.mark.parametrize(("grade_id", "edits", "named"), MORE_MISTAKES, ids=[n for _g, _e, n in MORE_MISTAKES])
def test_more_mistakes_are_named(course, lab1_model, tmp_path: Path, grade_id, edits, named):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0 / 0 in the no-epsilon mistake
        problems = _judge_all(course, edits, lab1_model, tmp_path)
    failed = {g for g, found in problems.items() if found}
    assert failed == {grade_id}, problems
    assert any(named in p for p in problems[grade_id]), problems


def test_probes_are_deterministic(course):
    for grade_id in ("lab5_pointing", "lab5_deletion", "lab5_randomisation"):
        ctx = _context(course, grade_id)
        check = get_check(next(p.check for p in ctx.notebook.parts if p.grade_id == grade_id))
        first, second = check.probes(ctx), check.probes(ctx)
        assert len(first) == len(second) > 5
        for a, b in zip(first, second, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), (grade_id, key)


def test_probes_cover_the_edge_cases(course):
    from autograder.reference import pointing_game as P

    ctx = _context(course, "lab5_pointing")
    probes = get_check("sanity.pointing_game").probes(ctx)
    maps = [np.asarray(p["maps"]) for p in probes]
    boxes = [np.asarray(p["boxes"]) for p in probes]
    argmax_differs = sum(
        int((P.first_argmax_hits(m, b) != P.pointing_game(m, b)[0]).sum()) for m, b in zip(maps, boxes, strict=True)
    )
    flat = sum(int((m.max(axis=(1, 2)) == m.min(axis=(1, 2))).sum()) for m in maps)
    assert argmax_differs >= 2 and flat >= 2, (argmax_differs, flat)

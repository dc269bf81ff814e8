"""`course build` is deterministic; `course check` finds leaks and out-of-sync files; examples apply their edits.

All on a private copy of the course holding only the cheap `review` assignment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autograder import build, examples
from autograder.course import load_course
from autograder.course_check import run_checks

SOLUTION_MARKERS = (build.SOLUTION_BEGIN, build.SOLUTION_END)


def _snapshot(root: Path) -> dict[str, bytes]:
    files = {}
    for top in ("release", "solutions", "cnnvis/settings.json"):
        base = root / top
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        files.update({p.relative_to(root).as_posix(): p.read_bytes() for p in paths})
    return files


def test_build_is_incremental_and_deterministic(review_course: Path):
    course = load_course(review_course)
    (course.solutions_dir / "review" / "label_loss_review.ipynb").unlink()
    logs: list[str] = []
    build.build(course, ["review"], log=logs.append)
    first = _snapshot(review_course)
    assert any("label_loss_review.ipynb (executed in" in line for line in logs), logs

    logs.clear()  # same inputs: not executed again, same bytes
    build.build(course, ["review"], log=logs.append)
    assert any("label_loss_review.ipynb (inputs unchanged, not executed)" in line for line in logs), logs
    assert _snapshot(review_course) == first

    logs.clear()  # --force executes; on one machine the outputs are bit-identical
    build.build(course, ["review"], force=True, log=logs.append)
    assert any("label_loss_review.ipynb (executed in" in line for line in logs), logs
    assert _snapshot(review_course) == first
    nb = first["solutions/review/label_loss_review.ipynb"].decode()
    assert "BEGIN SOLUTION" not in nb and "HIDDEN TESTS" not in nb and str(review_course) not in nb
    assert '"image/png"' in nb, "the solution's figures should be executed into the notebook"
    parsed = json.loads(nb)
    assert not [out for cell in parsed["cells"] for out in cell.get("outputs", []) if out.get("name") == "stderr"], (
        "the review solution should write nothing to stderr"
    )
    assert "toolkit/pyproject.toml" in {p.removeprefix("release/") for p in first}
    assert b'"seed": ' + str(course.seed).encode() in first["cnnvis/settings.json"]


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if build.nbgrader_meta(c).get("grade_id") == grade_id)


def _sync_without_executing(course) -> None:
    """Bring the copy in sync with its source cheaply (solutions are compared by cell source only)."""
    build.write_release(course, ["review"], log=lambda _m: None)
    build.write_toolkit(course, log=lambda _m: None)
    source = build.read_notebook(course.source_dir / "review" / "label_loss_review.ipynb")
    solution = course.solutions_dir / "review" / "label_loss_review.ipynb"
    nb = build.solution_notebook(source)
    nb.metadata[build.BUILD_KEY] = {"inputs": build.solution_inputs(course, *_review(course))}
    solution.write_text(build.dumps_notebook(nb), encoding="utf-8")
    examples.write_examples(course, log=lambda _m: None)


def _review(course):
    assignment = course.assignment("review")
    return assignment, assignment.notebooks[0]


def test_solution_inputs_cover_the_notebooks_own_inputs_only(review_course: Path):
    """A solution is stale when its source, its course.yml section or the toolkit changed; not otherwise."""
    course = load_course(review_course)
    _sync_without_executing(course)
    digest = build.solution_inputs(course, *_review(course))
    assert not run_checks(course, ["review"], fast=True, log=lambda _m: None)

    course_yml = review_course / "course.yml"
    raw = yaml.safe_load(course_yml.read_text(encoding="utf-8"))
    next(a for a in raw["assignments"] if a["id"] == "lab1")["notebooks"][0]["parts"][0]["points"] += 1
    course_yml.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert build.solution_inputs(load_course(review_course), *_review(course)) == digest  # another assignment

    toolkit = review_course / "cnnvis" / "plots.py"
    toolkit.write_text(toolkit.read_text(encoding="utf-8") + "\n# a change\n", encoding="utf-8")
    assert build.solution_inputs(course, *_review(course)) != digest
    toolkit.write_text(toolkit.read_text(encoding="utf-8").removesuffix("\n# a change\n"), encoding="utf-8")
    assert build.solution_inputs(course, *_review(course)) == digest

    # A hidden-test edit leaves the solution's cells as they are, but the source is an input: stale.
    src = course.source_dir / "review" / "label_loss_review.ipynb"
    nb = build.read_notebook(src)
    graded = next(c for c in nb.cells if build.HIDDEN_END in c.source)
    graded.source = graded.source.replace(f"### {build.HIDDEN_END}", f"# one more hidden line\n### {build.HIDDEN_END}")
    src.write_text(build.dumps_notebook(nb), encoding="utf-8")
    findings = [str(f) for f in run_checks(course, ["review"], fast=True, log=lambda _m: None) if f.section == "sync"]
    sol = "solutions/review/label_loss_review.ipynb"
    assert findings == [
        f"{sol}: executed with other inputs (its source, course.yml section, toolkit or pinned "
        "packages changed since): run `course build`"
    ], findings


def test_check_names_planted_leaks_and_out_of_sync_cells(review_course: Path):
    course = load_course(review_course)
    _sync_without_executing(course)
    source = build.read_notebook(course.source_dir / "review" / "label_loss_review.ipynb")
    release_path = course.release_dir / "review" / "label_loss_review.ipynb"
    solution_path = course.solutions_dir / "review" / "label_loss_review.ipynb"
    release, solution = build.read_notebook(release_path), build.read_notebook(solution_path)

    # a line of the solution code into the released answer cell, a hidden test line into the solutions
    answer_id = next(
        build.nbgrader_meta(c)["grade_id"]
        for c in source.cells
        if build.nbgrader_meta(c).get("solution") and c.cell_type == "code"
    )
    secret = next(
        line.strip()
        for region in build.marked_regions(source.cells[_index(source, answer_id)].source, *SOLUTION_MARKERS)
        for line in region.split("\n")
        if len(line.strip()) > 20
    )
    hidden = next(
        line.strip()
        for c in source.cells
        for region in build.marked_regions(c.source, build.HIDDEN_BEGIN, build.HIDDEN_END)
        for line in region.split("\n")
        if len(line.strip()) > 20
    )
    r, t = _index(release, answer_id), _index(solution, "review_losses")
    release.cells[r].source += "\n" + secret
    solution.cells[t].source += "\n" + hidden
    release_path.write_text(build.dumps_notebook(release), encoding="utf-8")
    solution_path.write_text(build.dumps_notebook(solution), encoding="utf-8")

    findings = {(f.section, str(f)) for f in run_checks(course, ["review"], fast=True, log=lambda _m: None)}
    rel, sol = "release/review/label_loss_review.ipynb", "solutions/review/label_loss_review.ipynb"
    stale_example = "out of sync: run `python -m autograder.examples`"
    assert findings == {
        (
            "sync",
            f"{rel}: out of sync with source/ (cell {r} ({answer_id}) differs from the source): run `course build`",
        ),
        ("sync", f"{sol} cell {t} (review_losses): differs from the source"),
        ("leaks", f"{rel} cell {r} ({answer_id}): contains solution code: {secret!r}"),
        ("leaks", f"{sol} cell {t} (review_losses): contains hidden test code: {hidden!r}"),
        # the untouched example is the release as is, so it no longer matches the (tampered) release
        ("examples", f"examples/submissions/student_untouched/{rel.removeprefix('release/')}: {stale_example}"),
    }


def test_examples_are_deterministic_and_edits_must_apply(review_course: Path):
    course = load_course(review_course)
    examples.write_examples(course, log=lambda _m: None)
    written = {
        p.relative_to(review_course / "examples" / "submissions").as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((review_course / "examples" / "submissions").glob("*/review/*.ipynb"))
    }
    assert examples.example_submissions(course, log=lambda _m: None) == written
    assert set(written) == {f"{s}/review/label_loss_review.ipynb" for s in examples.STUDENTS}
    complete = written["student_complete/review/label_loss_review.ipynb"]
    assert "raise NotImplementedError" not in complete and "BEGIN SOLUTION" not in complete
    assert written["student_partial/review/label_loss_review.ipynb"] != complete
    release = (review_course / "release" / "review" / "label_loss_review.ipynb").read_text(encoding="utf-8")
    assert written["student_untouched/review/label_loss_review.ipynb"] == release

    path = review_course / "examples" / "mistakes" / "review.yml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["mistakes"][0]["edits"][0]["find"] = "text that is in no answer cell"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(examples.ExampleError) as info:
        examples.write_mistake_submissions(course, review_course / "mistakes")
    message = str(info.value)
    assert str(path) in message and repr(raw["mistakes"][0]["id"]) in message
    assert "text that is in no answer cell" in message


def test_mistake_messages_are_loaded_and_validated(review_course: Path):
    course = load_course(review_course)
    path = review_course / "examples" / "mistakes" / "review.yml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["mistakes"][0]["message"] = "per-image losses"
    raw["mistakes"][1]["message"] = ["inf", "nan"]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    spec = examples.load_mistakes(course, course.assignment("review"))
    first, second = (spec.mistakes[m["id"]] for m in raw["mistakes"][:2])
    assert first.messages == ("per-image losses",) and second.messages == ("inf", "nan")
    records = examples.mistake_submissions(course, ["review"])["records"]
    assert {r.mistake: r.messages for r in records}[second.id] == ("inf", "nan")
    raw["mistakes"][0]["message"] = [3]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(examples.ExampleError) as info:
        examples.load_mistakes(course, course.assignment("review"))
    assert str(path) in str(info.value) and ".message" in str(info.value)

"""End to end: the real `course grade` command, real sandboxed kernels, on a temporary copy of the course.

One batch grades every bundled example (complete, untouched, partly wrong) plus one submission per
mistake listed in examples/mistakes/*.yml, and the scores must be exactly what the examples
promise: full autograded marks, 0, and full marks minus precisely the points of the parts each
mistake `loses`. Grading the cheap review assignment again with --regrade gives identical scores.
This is the most expensive test of the suite: one batch, two workers.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import COURSE_BIN

from autograder import build, examples
from autograder.course import load_course
from autograder.course_check import secret_lines

TIMEOUT = 3600
# Assignments whose every mistake is judged on the executed answer cells by a fast test instead of in
# a kernel here (each lab5 notebook costs about a minute to grade; its parts depend only on their own
# answer cells): tests/test_sanity_checks.py. Their three example students are still graded here.
MISTAKES_JUDGED_ELSEWHERE = {"lab5": "tests/test_sanity_checks.py"}


def _grade(course_root: Path, submissions: Path, out: Path, *extra: str) -> dict[tuple[str, str], dict[str, str]]:
    run = subprocess.run(
        [str(COURSE_BIN), "grade", str(submissions), "--out", str(out), "--workers", "2", *extra],
        cwd=course_root,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert run.returncode == 0, f"course grade failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "student_complete" in run.stdout and "grades.csv" in run.stdout, run.stdout
    with (out / "grades.csv").open(encoding="utf-8") as fh:
        return {(row["student_id"], row["assignment"]): row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def graded(course_copy: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("e2e")
    submissions = work / "submissions"
    shutil.copytree(course_copy / "examples" / "submissions", submissions)
    course = load_course(course_copy)
    kernel_mistakes = [a.id for a in course.assignments if a.id not in MISTAKES_JUDGED_ELSEWHERE]
    mistakes = examples.write_mistake_submissions(course, submissions, kernel_mistakes)
    rows = _grade(course_copy, submissions, work / "out")
    return course, course_copy, submissions, work / "out", rows, mistakes


def _auto(row: dict[str, str]) -> tuple[float, float]:
    return float(row["auto_score"]), float(row["auto_max"])


def test_examples_score_what_they_promise(graded):
    course, root, submissions, out, rows, mistakes = graded
    assignments = sorted({p.parent.name for p in submissions.glob("student_complete/*/*.ipynb")})
    assert "review" in assignments
    expected: dict[tuple[str, str], float] = {}
    for aid in assignments:
        a = course.assignment(aid)
        points = {p.grade_id: p.points for nb in a.notebooks for p in nb.parts}
        expected[("student_complete", aid)] = a.auto_max
        expected[("student_untouched", aid)] = 0.0
        spec = examples.load_mistakes(course, a)
        if spec and spec.partial:
            lost = {g for m in spec.partial for g in spec.mistakes[m].loses}
            expected[("student_partial", aid)] = a.auto_max - sum(points[g] for g in lost)
        for m in (m for m in mistakes if m.assignment == aid):
            expected[(m.student_id, aid)] = a.auto_max - sum(points[g] for g in set(m.loses))
    assert any(m.assignment == "review" for m in mistakes)
    got = {key: _auto(rows[key])[0] for key in expected if key in rows}
    assert got == expected, {
        k: (rows[k]["status"], rows[k]["message"][:300]) for k in expected if got.get(k) != expected[k]
    }
    for key in expected:
        assert rows[key]["status"] == "graded", (key, rows[key]["message"])
        assert _auto(rows[key])[1] == course.assignment(key[1]).auto_max


def _verdicts(out: Path, student: str, assignment: str) -> dict[str, dict]:
    """grade_id -> verdict dict, from the result store of one graded submission."""
    stored = json.loads((out / "work" / "results" / student / f"{assignment}.json").read_text(encoding="utf-8"))
    found: dict[str, dict] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("grade_id"), str) and "message" in node and "score" in node:
                found[node["grade_id"]] = node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(stored)
    return found


def test_each_mistake_is_named_in_its_message(graded):
    """Every mistake with a `message:` gets that diagnosis, in one round, for each part it loses."""
    course, root, submissions, out, rows, mistakes = graded
    checked, wrong = 0, {}
    for m in (m for m in mistakes if m.messages):
        verdicts = _verdicts(out, m.student_id, m.assignment)
        for grade_id in m.loses:
            message = verdicts[grade_id]["message"]
            missing = [fragment for fragment in m.messages if fragment not in message]
            if missing:
                wrong[(m.mistake, grade_id)] = (missing, message[:600])
            checked += 1
    assert checked >= 10 and not wrong, wrong


def test_feedback_exists_and_hides_the_hidden_tests(graded):
    course, root, submissions, out, rows, _ = graded
    for (student, aid), _row in rows.items():
        for nb in course.assignment(aid).notebooks:
            page = out / "feedback" / student / aid / f"{nb.name}.html"
            assert page.is_file(), page
    for aid in {aid for (_s, aid) in rows}:
        for nb in course.assignment(aid).notebooks:
            _solution, hidden = secret_lines(build.read_notebook(root / "source" / aid / nb.filename))
            html = (out / "feedback" / "student_partial" / aid / f"{nb.name}.html").read_text(encoding="utf-8")
            leaked = [line for line in hidden if line in html]
            assert not leaked, f"hidden test code in {aid}/{nb.name} feedback: {leaked[:3]}"


def test_grading_again_gives_identical_scores(graded, tmp_path: Path):
    course, root, submissions, out, rows, _ = graded
    # a subset keeps this cheap: full marks, a partial score and zero, graded again into the same OUT
    subset = tmp_path / "again"
    for student in ("student_complete", "student_partial", "student_untouched"):
        shutil.copytree(submissions / student / "review", subset / student / "review")
    again = _grade(root, subset, out, "--assignment", "review", "--regrade")
    review = {key: row for key, row in rows.items() if key[1] == "review" and key[0] in {s for s, _a in again}}
    assert len(review) == 3 and set(again) == set(review)
    assert {k: (r["score"], r["auto_score"], r["status"]) for k, r in again.items()} == {
        k: (r["score"], r["auto_score"], r["status"]) for k, r in review.items()
    }

"""Issue 7 "Must hold": hostile and broken submissions graded in ONE batch next to honest ones.

Every honest submission gets exactly its expected score, every cheat earns no more than its
honest work, faults keep the credit earned before them, and nothing outside a submission's
working copy changes (the submissions, the course and a marker path are hashed before/after).
Real sandboxed kernels, real checks (labels.detect_format, labels.convert), real nbgrader gradebook.
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hostile.corpus import corpus
from hostile.minicourse import write_mini_course
from nbgrader.api import Gradebook

from autograder.course import load_course
from autograder.grading.batch import GradeRow, grade_class
from autograder.grading.gradebook import db_url

REPO = Path(__file__).resolve().parents[1]


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def graded():
    # our own temporary folder: pytest's basetemp rotation (other sessions) must not remove it mid-run
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        yield in_fresh_process(_grade_corpus, Path(tmp))


def in_fresh_process(fn, *args):
    """FN(*ARGS) in a new interpreter without TensorFlow, as `course grade` runs: its workers are forked."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _grade_corpus(base: Path):
    course = load_course(write_mini_course(base / "course"))
    subs, out, marker = base / "submissions", base / "out", base / "escaped-marker"
    cases = corpus(repo=str(REPO), out=str(out), submissions=str(subs), marker=str(marker))
    for case in cases:
        folder = subs / case.student_id
        folder.mkdir(parents=True)
        if case.content is not None:
            (folder / "mini").mkdir()
            (folder / "mini" / "mini.ipynb").write_bytes(case.content)
        else:
            (folder / "other-assignment").mkdir()
    before = {"submissions": tree_digest(subs), "course": tree_digest(base / "course")}
    report = grade_class(course, subs, out, workers=2, progress=False)
    after = {"submissions": tree_digest(subs), "course": tree_digest(base / "course")}
    return course, cases, report, before, after, marker


def test_every_case_has_one_row(graded):
    _, cases, report, *_ = graded
    assert sorted(r.student_id for r in report.rows) == sorted(c.student_id for c in cases)
    with open(report.csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(cases)
    assert list(rows[0]) == list(GradeRow.__dataclass_fields__)  # the columns test_grading_engine pins


def test_scores_and_statuses(graded):
    _, cases, report, *_ = graded
    rows = {r.student_id: r for r in report.rows}
    problems = []
    for case in cases:
        row = rows[case.student_id]
        if row.score > case.honest + 1e-9:
            problems.append(f"{case.student_id}: {row.score} > honest work {case.honest} ({row.message})")
        if case.exact and abs(row.score - case.honest) > 1e-9:
            problems.append(f"{case.student_id}: {row.score} != {case.honest} ({row.status}: {row.message})")
        if case.status and not row.status.startswith(case.status):
            problems.append(f"{case.student_id}: status {row.status!r}, expected {case.status!r}")
        assert row.max_score == 5.0 and row.auto_max == 4.0
    assert not problems, "\n".join(problems)


def test_nothing_outside_the_working_copies_changed(graded):
    course, _, report, before, after, marker = graded
    assert before == after
    assert not marker.exists()
    with Gradebook(db_url(report.course_root), course_id=course.id) as gb:
        for student in gb.students:
            for sub in student.submissions:
                for nb in sub.notebooks:
                    assert all(g.manual_score is None for g in nb.grades), student.id


def test_faults_are_explained_and_output_is_cut(graded):
    _, _, report, *_ = graded
    rows = {r.student_id: r for r in report.rows}
    assert "kernel died" in rows["os_exit"].message
    assert "longer than" in rows["infinite_loop"].message
    assert (
        "not valid JSON" in rows["corrupt_json"].status
        and "corrupt_json/mini/mini.ipynb" in rows["corrupt_json"].status
    )
    assert "nbformat 99" in rows["wrong_nbformat"].status
    died = (report.feedback_dir / "os_exit" / "mini" / "mini.html").read_text()
    assert "kernel died" in died
    flood = report.out / "work" / "submissions" / "print_flood" / "mini" / "mini" / "autograded.ipynb"
    assert flood.stat().st_size < 500_000
    assert "output cut" in flood.read_text()


def test_feedback_never_shows_hidden_tests(graded):
    _, cases, report, *_ = graded
    pages = list(report.feedback_dir.rglob("*.html"))
    assert len(pages) == len(cases)  # a missing or corrupt notebook gets a page saying so
    for page in pages:
        text = page.read_text()
        assert "HIDDEN TESTS" not in text, page
    honest = (report.feedback_dir / "honest_full" / "mini" / "mini.html").read_text()
    assert "record_calls" not in honest  # the hidden line of each test cell
    assert "All checks passed." in honest and "graded by a TA" in honest


def test_gradebook_and_autograded_notebooks_for_formgrader(graded):
    course, _, report, *_ = graded
    root = report.course_root
    assert (root / "autograded" / "honest_full" / "mini" / "mini.ipynb").is_file()
    assert (root / "submitted" / "honest_full" / "mini" / "mini.ipynb").is_file()
    with Gradebook(db_url(root), course_id=course.id) as gb:
        sub = gb.find_submission("mini", "honest_full")
        assert sub.score == 4.0 and sub.max_score == 5.0 and sub.needs_manual_grade
    assert os.stat(root / "gradebook.db").st_uid == os.geteuid()


def test_resume_skips_finished_and_regrades_only_what_was_lost(graded):
    """A run killed mid-way leaves whole results (or none) and temporary files; the next run finishes the job."""
    course, cases, report, *_ = graded
    results = report.out / "work" / "results"
    stamps = {p: p.stat().st_mtime_ns for p in results.rglob("*.json")}
    lost = results / "honest_half" / "mini.json"
    lost.unlink()
    (results / "honest_full" / ".mini.json.123.tmp").write_text('{"half": ')  # a write cut short by a kill
    shutil.rmtree(report.feedback_dir / "honest_half")
    subs = report.out.parent / "submissions"
    t0 = time.monotonic()
    again = grade_class(course, subs, report.out, workers=1, progress=False)
    assert time.monotonic() - t0 < 120
    assert [(r.student_id, r.score, r.status) for r in again.rows] == [
        (r.student_id, r.score, r.status) for r in report.rows
    ]
    for path, mtime in stamps.items():
        if path != lost:
            assert path.stat().st_mtime_ns == mtime, f"{path} was graded again"
    assert lost.is_file() and (report.feedback_dir / "honest_half" / "mini" / "mini.html").is_file()

"""A submission folder is read as data, and grader faults are retried a bounded number of times
(issue 11, parts 4 and 5), through a real `course grade` run (grade_class) on the mini course.

Submission folders as a zip or a hostile student can leave them: notebooks that are symbolic
links (one to the instructor's source notebook, which today earns full marks), hard links, FIFOs
and devices, folders on the way that are links, and next to an honest notebook a 2 GB sparse
file, a FIFO, a deep tree and too many files. A grader fault (the feedback folder cannot be
written) is retried on resume at most `grading.max_retries` times, then its row is final.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import pytest
from hostile.minicourse import student_notebook, write_mini_course

from autograder.course import load_course
from autograder.grading.batch import grade_class
from autograder.grading.store import load_result, result_path

HONEST = nbformat.writes(student_notebook()).encode()


def _in_fresh_process(fn, *args):
    """FN(*ARGS) in a new interpreter without TensorFlow, as `course grade` runs: its workers are forked."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _folder(subs: Path, student: str) -> Path:
    folder = subs / student / "mini"
    folder.mkdir(parents=True)
    return folder


def _build(base: Path) -> dict[str, str]:
    """The submissions; returns student -> the status expected."""
    course_root = write_mini_course(base / "course")
    subs = base / "submissions"
    expected = {}

    folder = _folder(subs, "honest_with_junk")
    (folder / "mini.ipynb").write_bytes(HONEST)
    (folder / "notes.txt").write_text("my notes")
    with open(folder / "sparse.bin", "wb") as f:
        f.truncate(2 * 2**30)  # 2 GB apparent, nothing on disk
    os.mkfifo(folder / "pipe")
    deep = folder
    for i in range(8):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "deep.txt").write_text("deep")
    (folder / "many").mkdir()
    for i in range(80):
        (folder / "many" / f"f{i:03d}.txt").write_text("x")
    expected["honest_with_junk"] = "graded"

    _folder(subs, "link_to_source")
    (subs / "link_to_source" / "mini" / "mini.ipynb").symlink_to(course_root / "source" / "mini" / "mini.ipynb")
    expected["link_to_source"] = "not a regular file"

    outside = base / "outside.ipynb"
    outside.write_bytes(HONEST)
    os.link(outside, _folder(subs, "hard_link") / "mini.ipynb")
    expected["hard_link"] = "not a regular file"

    os.mkfifo(_folder(subs, "fifo") / "mini.ipynb")  # opening it for reading would block forever
    expected["fifo"] = "not a regular file"

    if os.geteuid() == 0:
        os.mknod(_folder(subs, "device") / "mini.ipynb", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
        expected["device"] = "not a regular file"

    (subs / "linked_folder").mkdir()
    (subs / "linked_folder" / "mini").symlink_to(subs / "honest_with_junk" / "mini")
    expected["linked_folder"] = "not a regular file"

    (subs / "linked_student").symlink_to(subs / "honest_with_junk")
    expected["linked_student"] = "not a regular file"

    with open(_folder(subs, "sparse_notebook") / "mini.ipynb", "wb") as f:
        f.truncate(2 * 2**30)  # refused from its size, never read or hashed
    expected["sparse_notebook"] = "corrupt"

    (_folder(subs, "grader_fault") / "mini.ipynb").write_bytes(HONEST)
    expected["grader_fault"] = "grader error"
    return expected


def _grade(base: Path):
    course = load_course(base / "course")
    subs, out = base / "submissions", base / "out"
    out.mkdir()
    (out / "feedback").mkdir()
    (out / "feedback" / "grader_fault").write_text("a file where the grader needs a folder")  # the grader's fault
    runs = [grade_class(course, subs, out, workers=2, progress=False)]
    store = out / "work" / "results"
    first = load_result(result_path(out / "work", "grader_fault", "mini"))
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*.json")}
    runs.append(grade_class(course, subs, out, workers=1, progress=False))  # retried once (max_retries: 1)
    second = load_result(result_path(out / "work", "grader_fault", "mini"))
    regraded = sorted(p.parent.name for p, t in stamps.items() if p.stat().st_mtime_ns != t)
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*.json")}
    runs.append(grade_class(course, subs, out, workers=1, progress=False))  # final now: not graded again
    regraded_third = sorted(p.parent.name for p, t in stamps.items() if p.stat().st_mtime_ns != t)
    copy = out / "work" / "submissions" / "honest_with_junk" / "mini" / "mini" / "copy"
    copied = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    copied_bytes = sum(p.lstat().st_size for p in copy.rglob("*"))
    course_bytes = sum(p.lstat().st_size for p in (out / "course").rglob("*"))  # formgrader's copies
    return runs, first, second, regraded, regraded_third, copied, (copied_bytes, course_bytes)


@pytest.fixture(scope="module")
def graded():
    with tempfile.TemporaryDirectory(prefix="subfolder-") as tmp:
        base = Path(tmp)
        expected = _build(base)
        yield expected, _in_fresh_process(_grade, base)


def test_links_fifos_and_devices_are_refused_never_followed(graded):
    expected, (runs, *_rest) = graded
    rows = {r.student_id: r for r in runs[0].rows}
    assert sorted(rows) == sorted(expected)
    for student, status in expected.items():
        assert rows[student].status.startswith(status), (student, rows[student])
        if status == "not a regular file":
            assert rows[student].auto_score == 0, student
    assert "is a symbolic link" in rows["link_to_source"].message
    assert "hard link" in rows["hard_link"].message
    assert "FIFO" in rows["fifo"].message
    assert "the folder mini is a symbolic link" in rows["linked_folder"].message
    assert "larger than any notebook" in rows["sparse_notebook"].message


def test_an_honest_notebook_keeps_its_score_next_to_junk_and_junk_is_not_copied(graded):
    _, (runs, _first, _second, _regraded, _third, copied, (copied_bytes, course_bytes)) = graded
    row = next(r for r in runs[0].rows if r.student_id == "honest_with_junk")
    assert row.auto_score == 4.0 and row.status == "graded", row
    assert "sparse.bin (2,147,483,648 bytes, over the 1 MiB for extra files)" in row.message
    assert "pipe (a FIFO (named pipe), not a regular file)" in row.message
    assert "sparse.bin" not in copied and "pipe" not in copied
    assert "notes.txt" in copied and "mini.ipynb" in copied
    assert not any(name.endswith("deep.txt") for name in copied)
    assert sum(name.startswith("many/") for name in copied) < 50
    assert copied_bytes < 2 * 2**20
    assert course_bytes < 20 * 2**20  # the 2 GB sparse notebook was not copied for formgrader either


def test_a_grader_fault_is_retried_a_bounded_number_of_times(graded):
    _, (runs, first, second, regraded, regraded_third, *_rest) = graded
    assert first["status"] == "grader error" and first["final"] is False and first["attempts"] == 1
    assert regraded == ["grader_fault"]  # only the grader's fault is graded again on resume
    assert second["status"] == "grader error" and second["final"] is True and second["attempts"] == 2
    assert "not retried again" in second["message"]
    assert regraded_third == []
    assert [r.status for r in runs[2].rows] == [r.status for r in runs[0].rows]

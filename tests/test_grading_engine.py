"""The grading engine's pure steps: rebuild from source, validation, evidence copy, the result store."""

from __future__ import annotations

import copy
import json
import os
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from hostile.minicourse import CONVERT_SOLUTION, FORMAT_WRONG, source_notebook, student_notebook

from autograder.course import load_course
from autograder.grading.evidence_copy import EvidenceTooLarge, collect_evidence
from autograder.grading.rebuild import rebuild
from autograder.grading.store import finished, load_result, save_result
from autograder.grading.validate import read_submitted
from autograder.nbgrader_setup import CODE_STUB


def gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def by_gid(nb) -> dict:
    return {gid(c): c for c in nb.cells if gid(c)}


def test_rebuild_takes_answers_from_student_and_everything_else_from_source():
    source = source_notebook()
    student = student_notebook(FORMAT_WRONG)
    for cell in student.cells:
        if gid(cell) == "mini_detect_format":
            cell.source = "pass  # edited test"
            cell.metadata["nbgrader"]["points"] = 99
    nb, report = rebuild(source, student)
    cells = by_gid(nb)
    assert cells["mini_answer_format"].source == FORMAT_WRONG.strip()
    assert cells["mini_answer_convert"].source == CONVERT_SOLUTION.strip()
    assert cells["mini_detect_format"].source == by_gid(source)["mini_detect_format"].source
    assert cells["mini_detect_format"].metadata == by_gid(source)["mini_detect_format"].metadata
    assert [gid(c) for c in nb.cells] == [gid(c) for c in source.cells]
    assert report.answers_missing == [] and report.dropped_cells == 4  # intro, set-up, two tests
    nbformat.validate(nb)


def test_rebuild_restores_deleted_tests_and_stubs_missing_answers():
    source = source_notebook()
    student = student_notebook()
    student.cells = [c for c in student.cells if gid(c) not in ("mini_detect_format", "mini_answer_convert")]
    nb, report = rebuild(source, student)
    assert by_gid(nb)["mini_detect_format"].source == by_gid(source)["mini_detect_format"].source
    assert by_gid(nb)["mini_answer_convert"].source == CODE_STUB
    assert report.answers_missing == ["mini_answer_convert"]


def test_rebuild_keeps_extra_cells_after_their_answer_without_grading_metadata():
    source, student = source_notebook(), student_notebook()
    i = next(i for i, c in enumerate(student.cells) if gid(c) == "mini_answer_format")
    extra = nbformat.v4.new_code_cell("helper = 1")
    fake = nbformat.v4.new_code_cell("print('points!')")
    fake.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "points": 50}
    student.cells[i + 1 : i + 1] = [extra, fake]
    duplicate = copy.deepcopy(student.cells[i])
    duplicate.source = "def label_format(y):\n    return 'integer'"
    student.cells.append(duplicate)  # a second cell claiming the same answer: the first one counts
    nb, report = rebuild(source, student)
    j = next(i for i, c in enumerate(nb.cells) if gid(c) == "mini_answer_format")
    assert [c.source for c in nb.cells[j + 1 : j + 3]] == ["helper = 1", "print('points!')"]
    assert "nbgrader" not in nb.cells[j + 2].metadata
    assert by_gid(nb)["mini_answer_format"].source != duplicate.source
    assert sum(1 for c in nb.cells if gid(c)) == sum(1 for c in source.cells if gid(c))
    assert report.extra_cells == 3
    assert len({c.id for c in nb.cells}) == len(nb.cells)


def test_rebuild_matches_by_cell_id_when_metadata_is_gone():
    source, student = source_notebook(), student_notebook(FORMAT_WRONG)
    for cell in student.cells:
        cell.metadata.pop("nbgrader", None)
    nb, report = rebuild(source, student)
    assert by_gid(nb)["mini_answer_format"].source == FORMAT_WRONG.strip()
    assert report.answers_missing == []


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "is not valid JSON (line 1, column 2)"),
        (b"\xff\xfe", "is not UTF-8"),
        (b"[1, 2]", "not a notebook"),
        (json.dumps({"nbformat": 5, "cells": []}).encode(), "nbformat 5"),
        (
            json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code"}]}).encode(),
            "not a valid notebook",
        ),
    ],
)
def test_validation_names_the_file_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "nb.ipynb"
    path.write_bytes(content)
    before = path.stat()
    sub = read_submitted(path, "alice/mini/nb.ipynb")
    assert sub.notebook is None and reason in sub.problem and sub.problem.startswith("alice/mini/nb.ipynb")
    assert len(sub.sha256) == 64
    assert path.read_bytes() == content and path.stat().st_mtime_ns == before.st_mtime_ns


def test_evidence_copy_skips_links_and_caps_size(tmp_path):
    src = tmp_path / "evidence"
    (src / "part").mkdir(parents=True)
    (src / "part" / "record.json").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("solution")
    os.symlink(secret, src / "part" / "record.npz")
    os.symlink(tmp_path, src / "linkdir")
    os.mkfifo(src / "part" / "fifo")
    notes = collect_evidence(src, tmp_path / "copy", max_bytes=1000)
    copied = sorted(p.relative_to(tmp_path / "copy").as_posix() for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert copied == ["part/record.json"]
    assert len(notes) == 3
    (src / "part" / "big").write_bytes(b"x" * 2000)
    with pytest.raises(EvidenceTooLarge):
        collect_evidence(src, tmp_path / "copy2", max_bytes=1000)


def test_result_store_is_atomic_and_keyed(tmp_path):
    path = tmp_path / "results" / "alice" / "mini.json"
    save_result(path, {"key": "k1", "status": "graded"})
    assert finished(path, "k1")["status"] == "graded"
    assert finished(path, "k2") is None  # the submission or the source changed: grade again
    path.write_text('{"version": 1, "key": "k1", "sta')  # what a non-atomic writer could leave
    assert load_result(path) is None and finished(path, "k1") is None
    assert not list(path.parent.glob("*.tmp"))


def test_grade_row_api_is_what_the_cli_uses():
    from autograder.grading.batch import GradeReport, GradeRow, SandboxUnavailable, grade_class

    assert list(GradeRow.__dataclass_fields__) == [
        "student_id",
        "assignment",
        "score",
        "max_score",
        "auto_score",
        "auto_max",
        "status",
        "message",
    ]
    assert list(GradeReport.__dataclass_fields__) == ["rows", "out", "csv_path", "feedback_dir", "course_root"]
    assert issubclass(SandboxUnavailable, RuntimeError) and callable(grade_class)


def test_source_file_unchanged(tmp_path):
    """Reading a submission never opens it for writing (checked on a read-only file)."""
    path = tmp_path / "nb.ipynb"
    nbformat.write(student_notebook(), path)
    os.chmod(path, 0o444)
    sub = read_submitted(path, "x")
    assert sub.notebook is not None and sub.problem is None
    assert Path(path).stat().st_mode & 0o777 == 0o444


def test_workers_are_forked_only_from_a_single_threaded_process_without_tensorflow(monkeypatch):
    """fork is fast (workers inherit the loaded modules); TensorFlow's or any other threads rule it out."""
    from autograder.grading.backends import local as batch  # the local pool

    monkeypatch.setattr(batch, "warm_up", lambda course, assignments: None)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    course = batch._PoolConfig(load_course(REPO), None, None, Path("logs"))
    assert batch._context(course).get_start_method() == "fork"
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert batch._context(course).get_start_method() == "forkserver"
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    assert batch._context(course).get_start_method() == "forkserver"

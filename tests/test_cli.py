"""The `course` command's usage errors: exit status 2 and a message that says what to fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import COURSE_BIN, REPO

from autograder.cli import main as course_main


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        course_main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_console_script_lists_the_subcommands():
    run = subprocess.run([str(COURSE_BIN), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    for command in ("check", "build", "grade", "feedback", "report", "demo"):
        assert command in run.stdout


def test_a_subcommand_is_required(capsys):
    assert "required" in _usage_error([], capsys)


def test_unknown_subcommand(capsys):
    assert "invalid choice" in _usage_error(["publish"], capsys)


def test_grade_needs_submissions(capsys):
    assert "SUBMISSIONS" in _usage_error(["grade", "--course", str(REPO)], capsys)


def test_grade_missing_folder(tmp_path: Path, capsys):
    err = _usage_error(["grade", str(tmp_path / "nowhere"), "--course", str(REPO)], capsys)
    assert "nowhere: no such folder" in err and "<student>/<assignment>" in err


def test_grade_workers_must_be_positive(tmp_path: Path, capsys):
    assert "positive integer" in _usage_error(["grade", str(tmp_path), "--workers", "0"], capsys)


def test_unknown_assignment_names_course_yml(tmp_path: Path, capsys):
    err = _usage_error(["grade", str(tmp_path), "--assignment", "lab9", "--course", str(REPO)], capsys)
    assert "course.yml" in err and "'lab9'" in err and "review" in err


def test_build_unknown_assignment(capsys):
    err = _usage_error(["build", "--assignment", "nope", "--course", str(REPO)], capsys)
    assert "'nope'" in err


def test_no_course_yml_here(tmp_path: Path, capsys):
    err = _usage_error(["check", "--course", str(tmp_path)], capsys)
    assert "course.yml not found" in err


def test_grade_with_no_students_is_a_usage_error(tmp_path: Path, capsys):
    assert course_main(["grade", str(tmp_path), "--course", str(REPO)]) == 2
    assert "no <student>/ folders" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["report", "feedback"])
def test_report_and_feedback_need_graded_results(tmp_path: Path, capsys, command):
    assert course_main([command, str(tmp_path), "--course", str(REPO)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} has no graded results" in err and "course grade" in err

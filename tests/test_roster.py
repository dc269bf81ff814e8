"""The roster: a strict CSV, errors that name the file and line, unknown and missing students reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from autograder.cli import main as course_main
from autograder.roster import RosterError, Student, check_roster, load_roster

GOOD = "id,first_name,last_name,email\nada,Ada,Lovelace,ada@example.org\n\nbob,,,\n"


def write(tmp_path: Path, text: str, name: str = "roster.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_names_and_tolerates_blank_lines_and_a_bom(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_roster(path) == {
        "ada": Student("ada", "Ada", "Lovelace", "ada@example.org"),
        "bob": Student("bob", None, None, None),
    }


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", 1, "the header must be 'id,first_name,last_name,email'"),
        ("student,first,last,mail\nada,A,L,a@b.c\n", 1, "found 'student,first,last,mail'"),
        ("id,first_name,last_name,email\nada,Ada,Lovelace\n", 2, "expected 4 columns"),
        ("id,first_name,last_name,email\nada,A,L,a@b.c\nada,A,L,a@b.c\n", 3, "id 'ada' appears twice"),
        ("id,first_name,last_name,email\n,A,L,a@b.c\n", 2, "the id is empty"),
        ("id,first_name,last_name,email\nx/y,A,L,a@b.c\n", 2, "is not a folder name"),
        ("id,first_name,last_name,email\nada,A,L,not-an-address\n", 2, "email 'not-an-address'"),
        ('id,first_name,last_name,email\nada,"A\x01",L,\n', 2, "control characters"),
    ],
)
def test_malformed_rosters_name_file_line_and_problem(tmp_path, text, line, problem):
    path = write(tmp_path, text)
    with pytest.raises(RosterError) as info:
        load_roster(path)
    assert str(info.value).startswith(f"{path}, line {line}: ")
    assert problem in str(info.value)


def test_unreadable_rosters(tmp_path):
    with pytest.raises(RosterError, match="roster not found"):
        load_roster(tmp_path / "nope.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("id,first_name,last_name,email\nzoe,Zoë,X,\n".encode("latin-1"))
    with pytest.raises(RosterError, match=r"latin1\.csv: not UTF-8"):
        load_roster(bad)


def test_unknown_and_missing_are_reported_not_guessed(tmp_path):
    roster = load_roster(write(tmp_path, GOOD))
    check = check_roster(tmp_path / "roster.csv", roster, ["ada", "ad4", "zed"])
    assert (check.unknown, check.missing) == (["ad4", "zed"], ["bob"])
    assert any("ad4, zed" in line for line in check.lines()) and any("bob" in line for line in check.lines())


def test_course_grade_rejects_a_bad_roster_before_grading(tmp_path, capsys):
    (tmp_path / "subs" / "ada" / "review").mkdir(parents=True)
    roster = write(tmp_path, "id,first_name,last_name,email\nada,Ada\n")
    out = tmp_path / "out"
    status = course_main(
        ["grade", str(tmp_path / "subs"), "--roster", str(roster), "--out", str(out), "--course", str(REPO)]
    )
    assert status == 2
    assert f"{roster}, line 2: expected 4 columns" in capsys.readouterr().err
    assert not out.exists()  # nothing was graded

"""The class roster: who is enrolled, so formgrader and `nbgrader export` show names.

A roster is a UTF-8 CSV whose first line is exactly the header `id,first_name,last_name,email`
(a spreadsheet's byte-order mark is tolerated). `id` is the student's folder name under
SUBMISSIONS; the other columns may be empty. Nothing is guessed: a submission folder that is not
in the roster is reported as *unknown*, a roster id with no submission as *missing*, and names
are never derived from ids. Any malformed line is an error naming the file, the line and what is
wrong, before anything is graded.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from autograder.course import CourseError
from autograder.grading.store import write_atomic

HEADER = ("id", "first_name", "last_name", "email")
# A student id is a folder name under SUBMISSIONS: one path component, no control characters.
_ID = re.compile(r"[^/\\\x00-\x1f\x7f]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MAX_FIELD = 200


class RosterError(CourseError):
    """The roster file is unreadable or malformed (the message names the file and line)."""


@dataclass(frozen=True)
class Student:
    id: str
    first_name: str | None
    last_name: str | None
    email: str | None


def load_roster(path: Path) -> dict[str, Student]:
    """Student id -> Student, in file order; raises RosterError naming PATH and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RosterError(f"{path}: roster not found") from None
    except UnicodeDecodeError as exc:
        raise RosterError(f"{path}: not UTF-8 text (byte {exc.start}); save the roster as UTF-8 CSV") from None
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the roster ({exc.strerror})") from None
    rows = csv.reader(text.splitlines())
    try:
        header = next(rows, None)
    except csv.Error as exc:
        raise RosterError(f"{path}, line 1: {exc}") from None
    if header is None or tuple(h.strip() for h in header) != HEADER:
        found = ",".join(header) if header else "an empty file"
        raise RosterError(f"{path}, line 1: the header must be {','.join(HEADER)!r}, found {found!r}")
    students: dict[str, Student] = {}
    try:
        for row in rows:
            line = rows.line_num
            if not any(field.strip() for field in row):
                continue  # blank lines are allowed
            if len(row) != len(HEADER):
                raise RosterError(f"{path}, line {line}: expected {len(HEADER)} columns {HEADER}, found {len(row)}")
            sid, first, last, email = (field.strip() for field in row)
            if not sid:
                raise RosterError(f"{path}, line {line}: the id is empty")
            if not _ID.fullmatch(sid) or sid in (".", ".."):
                raise RosterError(f"{path}, line {line}: id {sid!r} is not a folder name (no '/', '\\' or controls)")
            for name, value in (("first_name", first), ("last_name", last), ("email", email)):
                if len(value) > MAX_FIELD or any(ord(c) < 32 or ord(c) == 127 for c in value):
                    raise RosterError(
                        f"{path}, line {line}: {name} of {sid!r} is longer than {MAX_FIELD} or has control characters"
                    )
            if email and not _EMAIL.fullmatch(email):
                raise RosterError(f"{path}, line {line}: email {email!r} of {sid!r} is not an address")
            if sid in students:
                raise RosterError(f"{path}, line {line}: id {sid!r} appears twice")
            students[sid] = Student(sid, first or None, last or None, email or None)
    except csv.Error as exc:
        raise RosterError(f"{path}, line {rows.line_num}: {exc}") from None
    return students


@dataclass(frozen=True)
class RosterCheck:
    """Who the roster and the submissions disagree about (both sorted)."""

    roster: str  # the roster file as given
    unknown: list[str]  # submitted, not in the roster
    missing: list[str]  # in the roster, nothing submitted

    def lines(self) -> list[str]:
        out = []
        if self.unknown:
            out.append(f"not in the roster {self.roster} ({len(self.unknown)}): {', '.join(self.unknown)}")
        if self.missing:
            out.append(f"in the roster, no submission ({len(self.missing)}): {', '.join(self.missing)}")
        return out


def check_roster(roster_path: Path, roster: dict[str, Student], submitted: list[str]) -> RosterCheck:
    present = set(submitted)
    return RosterCheck(
        roster=str(roster_path),
        unknown=sorted(present - roster.keys()),
        missing=sorted(roster.keys() - present),
    )


def check_path(out: Path) -> Path:
    """Where `course grade --roster` leaves its RosterCheck for the class report."""
    return Path(out) / "work" / "roster.json"


def save_check(out: Path, check: RosterCheck) -> None:
    write_atomic(check_path(out), json.dumps(asdict(check), indent=1).encode("utf-8"))


def load_check(out: Path) -> RosterCheck | None:
    try:
        doc = json.loads(check_path(out).read_text(encoding="utf-8"))
        return RosterCheck(str(doc["roster"]), [str(s) for s in doc["unknown"]], [str(s) for s in doc["missing"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None

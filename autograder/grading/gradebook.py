"""The nbgrader course root under OUT/course, written by the grading (parent) process only.

`prepare_course_root` lays out a real nbgrader course (config, source/, release/, gradebook.db
with the assignments' grade, solution and source cells) by running nbgrader's own
generate_assignment, so formgrader and `nbgrader export` work for TAs. `record` stores one
graded submission: submitted/ and autograded/ notebooks, and each autograded part's auto_score
from the judge's verdict. Manual scores a TA entered are never touched, so regrading keeps them.

Both notebooks are inert (sanitize.py): the autograded one is made so by the worker, and the
submitted one is cleaned here, because a Jupyter server started in the course root renders any
notebook under it to HTML at /nbconvert/ in the TA's origin, script and all.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from autograder.course import Assignment, Course
from autograder.grading.sanitize import clean_notebook
from autograder.grading.store import write_atomic
from autograder.nbgrader_setup import ensure_tools_on_path, write_course_root


def db_url(root: Path) -> str:
    return f"sqlite:///{root / 'gradebook.db'}"


def _source_digest(course: Course, aid: str) -> str:
    h = hashlib.sha256()
    for path in sorted((course.source_dir / aid).rglob("*.ipynb")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def prepare_course_root(course: Course, root: Path, assignment_ids: list[str]) -> Path:
    """Create or refresh ROOT for ASSIGNMENT_IDS; generate_assignment only when a source changed."""
    ensure_tools_on_path()  # nbgrader asks `alembic` for the gradebook's schema version, here and in record()
    stamps = root / ".sources"
    todo = [aid for aid in assignment_ids if _read(stamps / aid) != _source_digest(course, aid)]
    if not todo and (root / "gradebook.db").is_file():
        return root
    write_course_root(course, root, assignment_ids)
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    api = NbGraderAPI(config=config)
    api.log.setLevel(logging.ERROR)
    for aid in todo:
        outcome = api.generate_assignment(aid, force=True, create=True)
        if not outcome.get("success"):
            raise RuntimeError(
                f"nbgrader generate_assignment {aid} failed:\n{outcome.get('error') or outcome.get('log')}"
            )
        write_atomic(stamps / aid, _source_digest(course, aid).encode())
    return root


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _inert_copy(src: Path, dest: Path) -> None:
    """DEST: the student's notebook SRC (already validated by the worker) with every cell made inert."""
    nb = nbformat.read(src, as_version=4)
    write_atomic(dest, nbformat.writes(clean_notebook(nb)).encode("utf-8"), 0o640)  # as the feedback pages


def record(root: Path, course: Course, assignment: Assignment, result: dict[str, Any]) -> None:
    """Write RESULT (a graded submission, see pipeline.grade_submission) into the gradebook."""
    student, aid = result["student_id"], assignment.id
    for nb in result["notebooks"]:
        for kind, key in (("submitted", "submitted_path"), ("autograded", "autograded_path")):
            src = nb.get(key)
            if src and Path(src).is_file():
                dest = root / kind / student / aid / f"{nb['name']}.ipynb"
                dest.parent.mkdir(parents=True, exist_ok=True)
                if kind == "submitted":
                    _inert_copy(Path(src), dest)
                else:
                    shutil.copyfile(src, dest)
    with warnings.catch_warnings(), Gradebook(db_url(root), course_id=course.id) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes inside nbgrader's add_submission
        gb.update_or_create_student(student)
        gb.update_or_create_submission(aid, student)
        for nb_result in result["notebooks"]:
            spec = next(n for n in assignment.notebooks if n.name == nb_result["name"])
            verdicts = {v["grade_id"]: v for v in nb_result.get("verdicts", [])}
            for part in spec.parts:
                try:
                    grade = gb.find_grade(part.grade_id, spec.name, aid, student)
                except MissingEntry:
                    continue
                if part.manual:
                    grade.needs_manual_grade = grade.manual_score is None
                else:
                    v = verdicts.get(part.grade_id)
                    grade.auto_score = float(v["score"]) if v else 0.0
                    grade.needs_manual_grade = False
        gb.db.commit()


def scores(root: Path, course: Course, student: str, aid: str) -> tuple[float, float] | None:
    """(score, max_score) as the gradebook has them: manual scores override auto scores, plus extra credit."""
    try:
        with Gradebook(db_url(root), course_id=course.id) as gb:
            sub = gb.find_submission(aid, student)
            return float(sub.score), float(sub.max_score)
    except MissingEntry:
        return None


def record_roster(root: Path, course: Course, students: dict[str, Any]) -> None:
    """Names and emails from the roster (id -> roster.Student) on the gradebook's students.

    Students are created when missing, so formgrader and `nbgrader export` list enrolled students
    who submitted nothing (with a 0) instead of silently dropping them. Ids not in the roster keep
    whatever names they had: nothing is guessed from an id.
    """
    with warnings.catch_warnings(), Gradebook(db_url(root), course_id=course.id) as gb:
        warnings.simplefilter("ignore")
        for s in students.values():
            gb.update_or_create_student(s.id, first_name=s.first_name, last_name=s.last_name, email=s.email)


@dataclass(frozen=True)
class SubmissionGrades:
    """One submission as the gradebook has it, after TAs graded in formgrader."""

    score: float  # manual scores override auto scores, plus extra credit (nbgrader's total)
    max_score: float
    manual: dict[str, dict[str, dict]]  # notebook -> grade_id -> {"score", "comment"}: only parts a TA touched


def class_grades(root: Path, course: Course) -> dict[tuple[str, str], SubmissionGrades]:
    """(student, assignment) -> SubmissionGrades for every submission in the gradebook, in one session.

    A manual `score` is the TA's (None until graded, or when an autograded part was not overridden);
    `comment` is the TA's comment (None when empty). Parts with neither are left out, so an empty
    `manual` means no TA input yet.
    """
    if not (root / "gradebook.db").is_file():
        return {}
    out: dict[tuple[str, str], SubmissionGrades] = {}
    with Gradebook(db_url(root), course_id=course.id) as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                manual: dict[str, dict[str, dict]] = {}
                for nb in sub.notebooks:
                    entries: dict[str, dict] = {}
                    for grade in nb.grades:
                        if grade.manual_score is not None:
                            entries[grade.name] = {"score": float(grade.manual_score), "comment": None}
                    for comment in nb.comments:
                        text = comment.manual_comment
                        if text and text.strip():
                            entries.setdefault(comment.name, {"score": None, "comment": None})["comment"] = text
                    if entries:
                        manual[nb.name] = entries
                key = (sub.student.id, assignment.name)
                out[key] = SubmissionGrades(float(sub.score), float(sub.max_score), manual)
    return out

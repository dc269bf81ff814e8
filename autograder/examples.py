"""Example submissions built from release/ and source/, for the demo and the end-to-end tests.

    python -m autograder.examples [--course DIR]     # regenerate examples/submissions/

Per assignment (nbgrader layout <student>/<assignment>/<notebook>.ipynb):
- student_complete: the release notebook with every answer cell replaced by the source's answer
  (solution markers stripped; written questions get the model answer);
- student_untouched: the release notebook as is;
- student_partial: complete, plus the mistakes listed under `partial:` in examples/mistakes/<id>.yml.
`write_mistake_submissions` builds one submission per mistake (student `mistake-<assignment>-<id>`)
so tests can check that each loses exactly the points of its `loses` parts, and that the judge's
message for those parts contains each fragment of the mistake's optional `message` (a string or a list).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from autograder.build import (
    SOLUTION_BEGIN,
    SOLUTION_END,
    dumps_notebook,
    nbgrader_meta,
    read_notebook,
    strip_lines_with,
)
from autograder.course import Assignment, Course, load_course

STUDENTS = ("student_complete", "student_untouched", "student_partial")
MISTAKES_DIR = Path("examples") / "mistakes"
SUBMISSIONS_DIR = Path("examples") / "submissions"


class ExampleError(ValueError):
    """A mistakes file is malformed or an edit does not apply."""


@dataclass(frozen=True)
class Edit:
    cell: str
    find: str
    replace: str
    count: int = 0


@dataclass(frozen=True)
class Mistake:
    id: str
    description: str
    loses: tuple[str, ...]
    edits: tuple[Edit, ...]
    messages: tuple[str, ...] = ()  # fragments the judge's message for each lost part must contain


@dataclass(frozen=True)
class MistakeFile:
    path: Path
    notebook: str
    partial: tuple[str, ...]
    mistakes: dict[str, Mistake]


@dataclass(frozen=True)
class MistakeSubmission:
    student_id: str
    assignment: str
    mistake: str
    loses: tuple[str, ...]
    messages: tuple[str, ...] = ()


# --------------------------------------------------------------------------- mistakes files


def _require(cond: bool, path: Path, where: str, message: str) -> None:
    if not cond:
        raise ExampleError(f"{path}: {where}: {message}")


def load_mistakes(course: Course, assignment: Assignment) -> MistakeFile | None:
    """examples/mistakes/<assignment>.yml, validated against course.yml; None when there is none."""
    path = course.root / MISTAKES_DIR / f"{assignment.id}.yml"
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ExampleError(f"{path}: not valid YAML: {exc}") from None
    _require(isinstance(raw, dict), path, "(top level)", "expected a mapping")
    names = {nb.name: nb for nb in assignment.notebooks}
    notebook = raw.get("notebook")
    _require(notebook in names, path, "notebook", f"{notebook!r} is not a notebook of {assignment.id}: {sorted(names)}")
    autograded = {p.grade_id for p in names[notebook].parts if not p.manual}
    mistakes: dict[str, Mistake] = {}
    for i, m in enumerate(raw.get("mistakes") or []):
        where = f"mistakes[{i}]"
        _require(isinstance(m, dict) and isinstance(m.get("id"), str), path, where, "needs an `id`")
        where = f"mistake {m['id']!r}"
        _require(m["id"] not in mistakes, path, where, "duplicate id")
        loses = m.get("loses")
        _require(isinstance(loses, list) and bool(loses), path, f"{where}.loses", "expected a non-empty list")
        unknown = sorted(set(loses) - autograded)
        _require(not unknown, path, f"{where}.loses", f"{unknown} are not autograded parts of {notebook}")
        edits = []
        for j, e in enumerate(m.get("edits") or []):
            ewhere = f"{where}.edits[{j}]"
            _require(isinstance(e, dict), path, ewhere, "expected a mapping")
            for key in ("cell", "find", "replace"):
                _require(isinstance(e.get(key), str), path, f"{ewhere}.{key}", "expected a string")
            count = e.get("count", 0)
            _require(isinstance(count, int) and count >= 0, path, f"{ewhere}.count", "expected an integer >= 0")
            edits.append(Edit(e["cell"], e["find"], e["replace"], count))
        _require(bool(edits), path, f"{where}.edits", "expected at least one edit")
        messages = m.get("message", [])
        messages = [messages] if isinstance(messages, str) else messages
        _require(
            isinstance(messages, list) and all(isinstance(x, str) and x for x in messages),
            path,
            f"{where}.message",
            "expected a non-empty string or a list of them",
        )
        mistakes[m["id"]] = Mistake(m["id"], str(m.get("description", "")), tuple(loses), tuple(edits), tuple(messages))
    partial = tuple(raw.get("partial") or ())
    unknown = sorted(set(partial) - set(mistakes))
    _require(not unknown, path, "partial", f"{unknown} are not mistake ids: {sorted(mistakes)}")
    return MistakeFile(path, notebook, partial, mistakes)


# --------------------------------------------------------------------------- notebooks


def model_answers(source: nbformat.NotebookNode) -> dict[str, str]:
    """{grade_id: the source's answer with the solution markers stripped} for every answer cell."""
    return {
        nbgrader_meta(cell)["grade_id"]: strip_lines_with(cell.source, SOLUTION_BEGIN, SOLUTION_END)
        for cell in source.cells
        if nbgrader_meta(cell).get("solution")
    }


def complete_notebook(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if nbgrader_meta(cell).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def apply_mistake(nb: nbformat.NotebookNode, mistakes: MistakeFile, mistake_id: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    mistake = mistakes.mistakes[mistake_id]
    cells = {nbgrader_meta(c).get("grade_id"): c for c in nb.cells if nbgrader_meta(c).get("solution")}
    for edit in mistake.edits:
        where = f"{mistakes.path}: mistake {mistake_id!r}"
        if edit.cell not in cells:
            raise ExampleError(f"{where}: no answer cell {edit.cell!r} in {mistakes.notebook} (have {sorted(cells)})")
        cell = cells[edit.cell]
        found = cell.source.count(edit.find)
        if found == 0:
            raise ExampleError(f"{where}: the text {edit.find!r} is not in answer cell {edit.cell!r}")
        if edit.count > found:
            raise ExampleError(f"{where}: {edit.find!r} occurs {found} times in {edit.cell!r}, count is {edit.count}")
        cell.source = cell.source.replace(edit.find, edit.replace, edit.count or -1)
    return nb


@dataclass(frozen=True)
class _Sources:
    assignment: Assignment
    notebook: str
    release: nbformat.NotebookNode
    complete: nbformat.NotebookNode


def _notebooks(course: Course, assignment: Assignment):
    for notebook in assignment.notebooks:
        release_path = course.release_dir / assignment.id / notebook.filename
        source_path = course.source_dir / assignment.id / notebook.filename
        if not (release_path.is_file() and source_path.is_file()):
            continue
        release = read_notebook(release_path)
        yield _Sources(
            assignment, notebook.name, release, complete_notebook(release, model_answers(read_notebook(source_path)))
        )


def example_submissions(course: Course, log=print) -> dict[str, str]:
    """{path relative to examples/submissions: notebook text} for every assignment with a release."""
    files: dict[str, str] = {}
    for assignment in course.assignments:
        mistakes = load_mistakes(course, assignment)
        for src in _notebooks(course, assignment):
            base = f"{assignment.id}/{src.notebook}.ipynb"
            files[f"student_complete/{base}"] = dumps_notebook(src.complete)
            files[f"student_untouched/{base}"] = dumps_notebook(src.release)
            if mistakes is None or not mistakes.partial or mistakes.notebook != src.notebook:
                log(f"  no student_partial for {assignment.id}: no `partial:` in {MISTAKES_DIR}/{assignment.id}.yml")
                continue
            partial = src.complete
            for mistake_id in mistakes.partial:
                partial = apply_mistake(partial, mistakes, mistake_id)
            files[f"student_partial/{base}"] = dumps_notebook(partial)
    return files


def write_examples(course: Course, log=print) -> Path:
    """Regenerate examples/submissions/ (only the three example students' folders)."""
    dest = course.root / SUBMISSIONS_DIR
    files = example_submissions(course, log)
    for student in STUDENTS:
        if (dest / student).is_dir():
            shutil.rmtree(dest / student)
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    log(f"  {len(files)} example notebooks in {SUBMISSIONS_DIR}/")
    return dest


def mistake_submissions(course: Course, assignment_ids: list[str] | None = None) -> dict[str, Any]:
    """{relative path: notebook text} and their MistakeSubmission records, one per mistake.

    A mistake that is exactly the example's `student_partial` (partial: [that id]) is left out: the
    bundled example already is that submission, and grading it twice would only cost time.
    """
    files: dict[str, str] = {}
    records: list[MistakeSubmission] = []
    wanted = set(assignment_ids or [a.id for a in course.assignments])
    for assignment in course.assignments:
        mistakes = load_mistakes(course, assignment) if assignment.id in wanted else None
        if mistakes is None:
            continue
        for src in _notebooks(course, assignment):
            if src.notebook != mistakes.notebook:
                continue
            for mistake in mistakes.mistakes.values():
                nb = apply_mistake(src.complete, mistakes, mistake.id)  # validates the edits either way
                if list(mistakes.partial) == [mistake.id]:
                    continue
                student = f"mistake-{assignment.id}-{mistake.id}"
                files[f"{student}/{assignment.id}/{src.notebook}.ipynb"] = dumps_notebook(nb)
                records.append(MistakeSubmission(student, assignment.id, mistake.id, mistake.loses, mistake.messages))
    return {"files": files, "records": records}


def write_mistake_submissions(
    course: Course, dest: Path, assignment_ids: list[str] | None = None
) -> list[MistakeSubmission]:
    """Write one submission per mistake into DEST (nbgrader layout); return what each must lose."""
    built = mistake_submissions(course, assignment_ids)
    for rel, text in built["files"].items():
        path = Path(dest) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return built["records"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate examples/submissions/ from release/, source/ and mistakes.")
    ap.add_argument("--course", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    try:
        write_examples(load_course(args.course))
    except (ExampleError, ValueError) as exc:
        print(f"examples: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`course check`: is the course consistent, are the built folders in sync, did anything leak?

    course check [--fast] [--assignment ID ...]

Checks, in order, and reports every finding (not only the first):
1. course.yml loads and validates (autograder.course);
2. every source notebook: nbgrader metadata schema 3, unique grade ids, every course.yml part
   present as a grade cell with the same points and no grade cell missing from course.yml,
   balanced hidden-test markers only in grade cells, answer cells with solution markers;
3. unless --fast, every solution passes its own hidden tests (autograder.grading.trial: the
   notebook runs with the grader's probes and the judge scores it);
4. release/ equals what `course build` would generate now (byte for byte), solutions/ has the
   source's cells (sources compared, not outputs), cnnvis/settings.json and release/toolkit/ match;
5. no solution code and no hidden test text in release/, no hidden test text in solutions/;
6. examples/mistakes/<id>.yml valid with edits that apply, examples/submissions/ in sync.
Exit status 1 with a readable report when anything is found.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from autograder import build
from autograder.build import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END, marked_regions, nbgrader_meta
from autograder.course import Assignment, Course, CourseError, Notebook, load_course

_MIN_LEAK_LINE = 8  # shorter lines ("return x", "pass") prove nothing


@dataclass(frozen=True)
class Finding:
    section: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def cell_label(index: int, cell: dict[str, Any]) -> str:
    grade_id = nbgrader_meta(cell).get("grade_id")
    return f"cell {index} ({grade_id or cell.get('id') or cell.get('cell_type')})"


def _rel(course: Course, path: Path) -> str:
    try:
        return path.relative_to(course.root).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- 2. source notebooks


def _marker_problem(source: str, begin: str, end: str) -> str | None:
    depth = 0
    for line in source.split("\n"):
        if begin in line:
            if depth:
                return f"nested {begin!r}"
            depth = 1
        elif end in line:
            if not depth:
                return f"{end!r} without {begin!r}"
            depth = 0
    return f"{begin!r} without {end!r}" if depth else None


def check_source_notebook(course: Course, assignment: Assignment, notebook: Notebook, seen: dict[str, str]):
    """Findings about one source notebook's structure against course.yml."""
    path = course.source_dir / assignment.id / notebook.filename
    where = _rel(course, path)
    if not path.is_file():
        yield Finding("source", where, "missing (course.yml lists it)")
        return
    try:
        nb = build.read_notebook(path)
        nbformat.validate(nb)
    except Exception as exc:
        yield Finding("source", where, f"not a valid notebook: {str(exc).splitlines()[0]}")
        return
    grade_cells: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, cell in enumerate(nb.cells):
        meta, label = nbgrader_meta(cell), f"{where} {cell_label(i, cell)}"
        hidden = _marker_problem(cell.source, HIDDEN_BEGIN, HIDDEN_END)
        if hidden:
            yield Finding("source", label, f"hidden-test markers unbalanced: {hidden}")
        has_hidden = HIDDEN_BEGIN in cell.source
        has_solution = SOLUTION_BEGIN in cell.source or SOLUTION_END in cell.source
        if not meta:
            if has_hidden or has_solution:
                yield Finding("source", label, "has solution or hidden-test markers but no nbgrader metadata")
            continue
        if meta.get("schema_version") != 3:
            yield Finding("source", label, f"nbgrader schema_version is {meta.get('schema_version')!r}, expected 3")
        grade_id = meta.get("grade_id")
        if not grade_id:
            yield Finding("source", label, "nbgrader cell without a grade_id")
            continue
        if grade_id in seen:
            yield Finding("source", label, f"grade_id {grade_id!r} already used at {seen[grade_id]}")
        seen[grade_id] = label
        if meta.get("solution"):
            problem = _marker_problem(cell.source, SOLUTION_BEGIN, SOLUTION_END)
            if problem:
                yield Finding("source", label, f"solution markers unbalanced: {problem}")
            elif cell.cell_type == "code" and SOLUTION_BEGIN not in cell.source:
                yield Finding("source", label, "answer cell without '### BEGIN SOLUTION' / '### END SOLUTION'")
        elif has_solution:
            yield Finding("source", label, "solution markers in a cell that is not an answer cell (solution: false)")
        if has_hidden and not (meta.get("grade") and not meta.get("solution")):
            yield Finding("source", label, "hidden tests outside a graded test cell")
        if meta.get("grade"):
            grade_cells[grade_id] = (i, cell)
    yield from _check_parts(notebook, where, grade_cells)


def _check_parts(notebook: Notebook, where: str, grade_cells: dict[str, tuple[int, dict[str, Any]]]):
    parts = {p.grade_id: p for p in notebook.parts}
    for grade_id, part in parts.items():
        if grade_id not in grade_cells:
            yield Finding("source", where, f"course.yml part {grade_id!r} has no grade cell (grade: true) here")
            continue
        i, cell = grade_cells[grade_id]
        meta, label = nbgrader_meta(cell), f"{where} {cell_label(i, cell)}"
        points = meta.get("points")
        if not isinstance(points, (int, float)) or float(points) != part.points:
            yield Finding("source", label, f"points {points!r} but course.yml gives {part.points:g}")
        if part.manual and not meta.get("solution"):
            yield Finding("source", label, "course.yml marks it manual: it must be an answer cell (solution: true)")
        if not part.manual and (cell.cell_type != "code" or meta.get("solution")):
            yield Finding(
                "source", label, "autograded part: it must be a code test cell (grade: true, solution: false)"
            )
    for grade_id, (i, cell) in grade_cells.items():
        if grade_id not in parts:
            yield Finding("source", f"{where} {cell_label(i, cell)}", f"grade cell {grade_id!r} is not in course.yml")


# --------------------------------------------------------------------------- 3. solutions pass their tests


def check_solution_passes(course: Course, assignment: Assignment, notebook: Notebook):
    from autograder.grading.trial import run_trial

    path = course.source_dir / assignment.id / notebook.filename
    where = _rel(course, path)
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        try:
            nb, verdicts = run_trial(course, path, Path(tmp), timeout=course.grading.notebook_timeout)
        except Exception as exc:
            yield Finding("solutions pass", where, f"could not run: {type(exc).__name__}: {exc}")
            return
    errors = [
        f"{cell_label(i, cell)} raised {out['ename']}: {out['evalue']}"
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    for v in verdicts:
        if not v.passed:
            detail = f"; first error: {errors[0]}" if errors else ""
            yield Finding("solutions pass", where, f"{v.grade_id}: {v.score:g}/{v.max_score:g}: {v.message}{detail}")


# --------------------------------------------------------------------------- 4. sync


def _first_cell_difference(expected: bytes, actual: bytes) -> str:
    try:
        a, b = nbformat.reads(expected.decode(), as_version=4), nbformat.reads(actual.decode(), as_version=4)
    except Exception:
        return "not a readable notebook"
    for i, (ca, cb) in enumerate(zip(a.cells, b.cells, strict=False)):
        if ca.get("cell_type") != cb.get("cell_type") or ca.source != cb.source:
            return f"{cell_label(i, cb)} differs from the source"
        if ca.get("metadata") != cb.get("metadata") or ca.get("outputs") != cb.get("outputs"):
            return f"{cell_label(i, cb)} metadata or outputs differ"
    if len(a.cells) != len(b.cells):
        return f"{len(b.cells)} cells, expected {len(a.cells)}"
    return "notebook metadata or formatting differs"


def _compare_files(course: Course, section: str, folder: Path, expected: dict[str, bytes], exact_set: bool = True):
    for rel, data in expected.items():
        path = folder / rel
        where = _rel(course, path)
        if not path.is_file():
            yield Finding(section, where, "missing: run `course build`")
        elif path.read_bytes() != data:
            detail = _first_cell_difference(data, path.read_bytes()) if path.suffix == ".ipynb" else "content differs"
            yield Finding(section, where, f"out of sync with source/ ({detail}): run `course build`")
    if exact_set and folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.relative_to(folder).as_posix() not in expected:
                yield Finding(section, _rel(course, path), "not produced by `course build` (stale file?)")


def solution_difference(source: Path, solution: Path) -> str | None:
    """None when SOLUTION has SOURCE's cells (by type and source, outputs ignored); else where it differs."""
    expected = build.solution_notebook(build.read_notebook(source))
    actual = build.read_notebook(solution)
    for i, (ce, ca) in enumerate(zip(expected.cells, actual.cells, strict=False)):
        if ce.cell_type != ca.cell_type or ce.source != ca.source:
            return f" {cell_label(i, ca)}"
    if len(expected.cells) != len(actual.cells):
        return f" ({len(actual.cells)} cells, the source has {len(expected.cells)})"
    return None


def check_sync(course: Course, assignments: list[Assignment]):
    built = [a for a in assignments if (course.source_dir / a.id).is_dir()]
    if built:
        try:
            release = build.expected_release(course, [a.id for a in built])
        except build.BuildError as exc:
            yield Finding("sync", "release/", f"cannot regenerate: {exc}")
            release = {}
        for aid, files in release.items():
            yield from _compare_files(course, "sync", course.release_dir / aid, files)
    for a in built:
        for notebook in a.notebooks:
            src = course.source_dir / a.id / notebook.filename
            sol = course.solutions_dir / a.id / notebook.filename
            if not src.is_file():
                continue
            if not sol.is_file():
                yield Finding("sync", _rel(course, sol), "missing: run `course build`")
                continue
            difference = solution_difference(src, sol)
            if difference:
                yield Finding("sync", f"{_rel(course, sol)}{difference}", "differs from the source")
            elif build.recorded_inputs(sol) != build.solution_inputs(course, a, notebook):
                yield Finding(
                    "sync",
                    _rel(course, sol),
                    "executed with other inputs (its source, course.yml section, toolkit or pinned packages "
                    "changed since): run `course build`",
                )
    settings = build.settings_path(course)
    if not settings.is_file() or settings.read_text(encoding="utf-8") != build.settings_json(course):
        yield Finding("sync", _rel(course, settings), "out of sync with course.yml: run `course build`")
    yield from _compare_files(course, "sync", course.release_dir, build.expected_toolkit(course), exact_set=False)


# --------------------------------------------------------------------------- 5. leaks


def _lines(texts: Iterable[str]) -> set[str]:
    return {line.strip() for text in texts for line in text.split("\n") if line.strip()}


def secret_lines(source: nbformat.NotebookNode) -> tuple[set[str], set[str]]:
    """(solution lines, hidden-test lines) of SOURCE that appear nowhere in its public text."""
    solution, hidden, public = [], [], []
    for cell in source.cells:
        text = cell.source
        solution += marked_regions(text, SOLUTION_BEGIN, SOLUTION_END) if nbgrader_meta(cell).get("solution") else []
        hidden += marked_regions(text, HIDDEN_BEGIN, HIDDEN_END)
        public.append(_strip_regions(_strip_regions(text, SOLUTION_BEGIN, SOLUTION_END), HIDDEN_BEGIN, HIDDEN_END))
    visible = _lines(public)

    def secret(regions: list[str]) -> set[str]:
        return {line for line in _lines(regions) if len(line) >= _MIN_LEAK_LINE and line not in visible}

    return secret(solution), secret(hidden)


def _strip_regions(text: str, begin: str, end: str) -> str:
    kept, inside = [], False
    for line in text.split("\n"):
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def _cell_text(cell: dict[str, Any]) -> str:
    parts = [cell.get("source", "")]
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts += [v for k, v in out.get("data", {}).items() if k.startswith("text/") and isinstance(v, str)]
    return "\n".join(parts)


def find_leaks(where: str, nb: nbformat.NotebookNode, secrets: dict[str, set[str]]):
    """Findings for every cell of NB that contains a marker or a line of SECRETS ({kind: lines})."""
    for i, cell in enumerate(nb.cells):
        text = _cell_text(cell)
        markers = [m for m in (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END) if m in text]
        if markers:
            yield Finding("leaks", f"{where} {cell_label(i, cell)}", f"contains the marker {markers[0]!r}")
        present = _lines([text])
        for kind, lines in secrets.items():
            leaked = sorted(lines & present)
            if leaked:
                yield Finding("leaks", f"{where} {cell_label(i, cell)}", f"contains {kind}: {leaked[0]!r}")


def check_leaks(course: Course, assignments: list[Assignment]):
    for a in assignments:
        for notebook in a.notebooks:
            src = course.source_dir / a.id / notebook.filename
            if not src.is_file():
                continue
            solution, hidden = secret_lines(build.read_notebook(src))
            for folder, secrets in (
                (course.release_dir, {"solution code": solution, "hidden test code": hidden}),
                (course.solutions_dir, {"hidden test code": hidden}),
            ):
                path = folder / a.id / notebook.filename
                if path.is_file():
                    yield from find_leaks(_rel(course, path), build.read_notebook(path), secrets)


# --------------------------------------------------------------------------- 6. examples


def check_examples(course: Course, assignments: list[Assignment]):
    """Mistakes files valid and applicable, examples/submissions/ what `python -m autograder.examples` writes."""
    from autograder import examples

    wanted = {a.id for a in assignments}
    for a in assignments:
        if not (course.release_dir / a.id).is_dir():
            continue
        where = (examples.MISTAKES_DIR / f"{a.id}.yml").as_posix()
        try:
            spec = examples.load_mistakes(course, a)
            if spec is None or not spec.partial:
                yield Finding("examples", where, "missing or without `partial:`: the demo has no partly wrong student")
            examples.mistake_submissions(course, [a.id])
        except examples.ExampleError as exc:
            yield Finding("examples", where, str(exc).split(": ", 1)[-1])
    try:
        expected = examples.example_submissions(course, log=lambda _m: None)
    except examples.ExampleError:
        return  # already reported above
    folder = course.root / examples.SUBMISSIONS_DIR
    for rel, text in expected.items():
        path = folder / rel
        if rel.split("/")[1] in wanted and (not path.is_file() or path.read_text(encoding="utf-8") != text):
            yield Finding("examples", _rel(course, path), "out of sync: run `python -m autograder.examples`")


# --------------------------------------------------------------------------- entry point


def run_checks(course: Course, assignment_ids: list[str] | None = None, fast: bool = False, log=print) -> list[Finding]:
    assignments = [course.assignment(aid) for aid in assignment_ids] if assignment_ids else list(course.assignments)
    findings: list[Finding] = []
    seen: dict[str, str] = {}
    for a in assignments:
        for notebook in a.notebooks:
            findings += check_source_notebook(course, a, notebook, seen)
    if not fast:
        for a in assignments:
            for notebook in a.notebooks:
                if (course.source_dir / a.id / notebook.filename).is_file():
                    t0 = time.perf_counter()
                    findings += check_solution_passes(course, a, notebook)
                    log(f"  ran {a.id}/{notebook.filename} against its tests ({time.perf_counter() - t0:.1f} s)")
    findings += check_sync(course, assignments)
    findings += check_leaks(course, assignments)
    findings += check_examples(course, assignments)
    return findings


def report(findings: list[Finding]) -> str:
    if not findings:
        return "course check: all good"
    lines = [f"course check: {len(findings)} finding{'s' if len(findings) != 1 else ''}"]
    for section in dict.fromkeys(f.section for f in findings):
        lines.append(f"\n[{section}]")
        lines += [f"  - {f}" for f in findings if f.section == section]
    return "\n".join(lines)


def main(args) -> int:
    """`course check`, called by autograder.cli with parsed ARGS (course, fast, assignment)."""
    try:
        course = load_course(args.course)
    except CourseError as exc:
        print(report([Finding("course.yml", str(exc).split(": ", 1)[0], str(exc).split(": ", 1)[-1])]))
        return 1
    findings = run_checks(course, args.assignment, fast=args.fast)
    print(report(findings))
    return 1 if findings else 0


if __name__ == "__main__":
    from autograder.cli import main as cli_main

    sys.exit(cli_main(["check", *sys.argv[1:]]))

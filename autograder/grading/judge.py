"""The judge: decides each autograded part's score from evidence, outside the student's kernel.

Two steps bracket a notebook's execution:
- `write_probes(course, assignment, notebook, folder)` before: the inputs each hidden test will
  feed the student's functions, from each part's check;
- `judge_notebook(course, assignment, notebook, evidence_dir, probes_dir)` after: one Verdict
  per autograded part. Missing evidence (cell not reached, kernel died, visible test failed) is
  a 0 with a message saying so; a check that crashes on strange evidence is a 0 too, never a
  crash of the grader.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.checks import CheckContext, Evidence, get_check
from autograder.course import Assignment, Course, Notebook
from cnnvis.evidence import read_bundle, write_bundle


@dataclass(frozen=True)
class Verdict:
    grade_id: str
    score: float
    max_score: float
    message: str
    figure: str | None = None  # base64 PNG (heatmap parts: the student's map beside the reference)
    diagnoses: tuple[str, ...] = ()  # short codes of the mistakes recognised, for the class report

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready data; the optional keys appear only when set, to keep it small."""
        out: dict[str, Any] = {
            "grade_id": self.grade_id,
            "score": self.score,
            "max_score": self.max_score,
            "message": self.message,
        }
        if self.figure:
            out["figure"] = self.figure
        if self.diagnoses:
            out["diagnoses"] = list(self.diagnoses)
        return out


def _contexts(course: Course, assignment: Assignment, notebook: Notebook):
    for part in notebook.parts:
        if not part.manual:
            yield CheckContext(course, assignment, notebook, part)


def write_probes(course: Course, assignment: Assignment, notebook: Notebook, folder: Path) -> None:
    """Write FOLDER/<grade_id>/calls.{json,npz} for every autograded part of NOTEBOOK."""
    for ctx in _contexts(course, assignment, notebook):
        calls = get_check(ctx.part.check).probes(ctx)
        write_bundle(Path(folder) / ctx.part.grade_id, list(calls), name="calls")


NO_EVIDENCE = (
    "No result was recorded for this part: the graded cell was not reached, or an error "
    "(see the cells above it) stopped it before its hidden checks ran."
)


def cell_errors(nb: Any) -> dict[str, str]:
    """grade_id -> "Name: message" of the error each executed test cell ended with (no traceback).

    Only the exception's name and message are kept: a traceback could quote hidden test lines.
    """
    errors = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if grade_id and out.get("output_type") == "error":
                errors[grade_id] = f"{out.get('ename', 'Error')}: {str(out.get('evalue', ''))[:400]}"
    return errors


def explain_missing(verdicts: list[Verdict], errors: dict[str, str]) -> list[Verdict]:
    """Add the graded cell's own error to verdicts that found no evidence, so feedback says why."""
    out = []
    for v in verdicts:
        if v.message == NO_EVIDENCE and v.grade_id in errors:
            v = Verdict(v.grade_id, v.score, v.max_score, f"{NO_EVIDENCE} The cell stopped with {errors[v.grade_id]}")
        out.append(v)
    return out


def judge_part(ctx: CheckContext, evidence_dir: Path, probes_dir: Path, max_bytes: int) -> Verdict:
    part = ctx.part
    folder = Path(evidence_dir) / part.grade_id
    if not (folder / "record.json").is_file():
        return Verdict(part.grade_id, 0.0, part.points, NO_EVIDENCE)
    try:
        record = read_bundle(folder, "record", max_bytes=max_bytes)
        probes = read_bundle(Path(probes_dir) / part.grade_id, "calls")
        evidence = Evidence(
            folder=folder,
            values=dict(record.get("values") or {}),
            calls=list(record.get("calls") or []),
            probes=list(probes),
        )
    except Exception as exc:  # forged or truncated files are the student's problem, not the grader's
        return Verdict(part.grade_id, 0.0, part.points, f"The recorded result could not be read ({exc}).")
    try:
        problems = get_check(part.check).judge(ctx, evidence)
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return Verdict(
            part.grade_id,
            0.0,
            part.points,
            f"The check could not evaluate your result: {type(exc).__name__}: {exc} "
            f"(in {Path(last.filename).name}:{last.lineno}).",
        )
    extras = {
        "figure": getattr(problems, "figure", None),
        "diagnoses": tuple(getattr(problems, "diagnoses", ())),
    }
    if problems:
        return Verdict(part.grade_id, 0.0, part.points, "\n".join(f"- {p}" for p in problems), **extras)
    return Verdict(part.grade_id, part.points, part.points, "All checks passed.", **extras)


def judge_notebook(
    course: Course,
    assignment: Assignment,
    notebook: Notebook,
    evidence_dir: Path,
    probes_dir: Path,
) -> list[Verdict]:
    max_bytes = course.grading.max_evidence_mb * 1024 * 1024
    return [judge_part(ctx, evidence_dir, probes_dir, max_bytes) for ctx in _contexts(course, assignment, notebook)]

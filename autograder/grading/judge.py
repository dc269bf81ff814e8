"""The judge: decides each autograded part's score from evidence, outside the student's kernel.

Two steps bracket a notebook's execution:
- `write_probes(course, assignment, notebook, folder)` before: the inputs each hidden test will
  feed the student's functions, from each part's check;
- `judge_notebook(course, assignment, notebook, evidence_dir, probes_dir)` after: one Verdict
  per autograded part. Missing evidence (cell not reached, kernel died, visible test failed) is
  a 0 with a message saying so; a check that crashes on strange evidence is a 0 too, never a
  crash of the grader.

The evidence is untrusted input, so the judge runs in a child process of its own
(autograder/grading/judge_child.py) under `grading.judge` limits: an address-space limit and a
wall-clock timeout per part. A part whose judging passes a limit scores 0 with a sentence saying
why; the other parts of the notebook are judged in a fresh child.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autograder.checks import CheckContext, Evidence, get_check
from autograder.course import Assignment, Course, Notebook
from autograder.grading.evidence_read import cut, read_evidence
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


def cell_errors(nb: Any, max_chars: int) -> dict[str, str]:
    """grade_id -> "Name: message" of the error each executed test cell ended with (no traceback).

    Only the exception's name and message are kept (a traceback could quote hidden test lines),
    both written by the kernel, so both are cut to MAX_CHARS.
    """
    errors = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if grade_id and out.get("output_type") == "error":
                name = cut(str(out.get("ename", "Error")), min(max_chars, 200))
                errors[grade_id] = f"{name}: {cut(str(out.get('evalue', '')), max_chars)}"
    return errors


def stopped_in_cell(error: str) -> str:
    """Why a part has no evidence when its own graded cell raised ERROR ("Name: message")."""
    if error.startswith("AssertionError"):
        said = error.removeprefix("AssertionError").lstrip(": ").strip()
        quoted = f": {said}" if said else " (the assertion has no message: read the check's line in the cell)"
        return (
            f"A visible check in this part's graded cell failed{quoted}. The hidden checks run only after "
            "the visible ones pass, so nothing else was judged: fix what it says and run the cell again."
        )
    return (
        f"This part's graded cell stopped with {error} before its hidden checks ran (an error in a cell "
        "above it, such as a function that was never defined, can be the cause)."
    )


def explain_missing(verdicts: list[Verdict], errors: dict[str, str]) -> list[Verdict]:
    """Say "no result was recorded" only when the graded cell did not run; when the cell itself
    failed, say that instead and quote its error (name and message, never the traceback)."""
    out = []
    for v in verdicts:
        if v.message == NO_EVIDENCE and v.grade_id in errors:
            v = replace(v, message=stopped_in_cell(errors[v.grade_id]))
        out.append(v)
    return out


def memory_stop(memory_mb: int) -> str:
    return (
        f"The judge stopped: checking the recorded result needed more than {memory_mb:,} MiB of memory, "
        "the judge's limit; nothing of this part was scored."
    )


def judge_part(ctx: CheckContext, evidence_dir: Path, probes_dir: Path, max_bytes: int) -> Verdict:
    """One part's verdict; its message is bounded whatever the evidence holds."""
    verdict = _judge_part(ctx, evidence_dir, probes_dir, max_bytes)
    limit = 4 * ctx.course.grading.judge.max_string_chars  # several problems, each quoting cut strings
    return replace(verdict, message=cut(verdict.message, limit))  # the figure and diagnoses stay


def _judge_part(ctx: CheckContext, evidence_dir: Path, probes_dir: Path, max_bytes: int) -> Verdict:
    part = ctx.part
    limits = ctx.course.grading.judge
    folder = Path(evidence_dir) / part.grade_id
    if not (folder / "record.json").is_file():
        return Verdict(part.grade_id, 0.0, part.points, NO_EVIDENCE)
    try:
        record = read_evidence(folder, limits, max_bytes)
        probes = read_bundle(Path(probes_dir) / part.grade_id, "calls")  # written by the grader: trusted
        evidence = Evidence(
            folder=folder,
            values=dict(record.get("values") or {}),
            calls=list(record.get("calls") or []),
            probes=list(probes),
        )
    except MemoryError:
        return Verdict(part.grade_id, 0.0, part.points, memory_stop(limits.memory_mb))
    except Exception as exc:  # forged or truncated files are the student's problem, not the grader's
        return Verdict(part.grade_id, 0.0, part.points, f"The recorded result could not be read ({exc}).")
    try:
        problems = get_check(part.check).judge(ctx, evidence)
    except MemoryError:
        return Verdict(part.grade_id, 0.0, part.points, memory_stop(limits.memory_mb))
    except Exception as exc:
        if type(exc).__name__ == "ResourceExhaustedError":  # TensorFlow's out-of-memory
            return Verdict(part.grade_id, 0.0, part.points, memory_stop(limits.memory_mb))
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


def judge_parts(
    course: Course,
    assignment: Assignment,
    notebook: Notebook,
    grade_ids: list[str],
    evidence_dir: Path,
    probes_dir: Path,
) -> Iterator[Verdict]:
    """The verdicts of GRADE_IDS, in this process (the judge's child runs this)."""
    max_bytes = course.grading.max_evidence_mb * 1024 * 1024
    for ctx in _contexts(course, assignment, notebook):
        if ctx.part.grade_id in grade_ids:
            yield judge_part(ctx, evidence_dir, probes_dir, max_bytes)


def judge_notebook(
    course: Course,
    assignment: Assignment,
    notebook: Notebook,
    evidence_dir: Path,
    probes_dir: Path,
    stats: dict[str, Any] | None = None,
) -> list[Verdict]:
    """One Verdict per autograded part, judged in a bounded child process; STATS gets its peak memory."""
    from autograder.grading.judge_child import judge_bounded

    return judge_bounded(course, assignment, notebook, Path(evidence_dir), Path(probes_dir), stats)

"""`course grade`: grade a class of submissions in parallel sandboxed workers, resumably.

This process (the client) plans the jobs (student x assignment), skips what a previous run already
finished (same checksums) and hands the rest to a backend that runs them somewhere: the local
process pool (backends/local.py, the default) or a Dask cluster (backends/dask.py). While the
workers start, it writes the probes once and releases them; while they grade, it prepares the
nbgrader course root. Each job comes back as plain data (verdicts, feedback page, autograded
notebook); the client alone writes the feedback pages and autograded notebooks, stores results
(atomically), writes gradebook.db and, at the end, grades.csv (atomically, from the stored results).

OUT/
  grades.csv                          one row per student x assignment
  feedback/<student>/<assignment>/<notebook>.html
  course/                             nbgrader course root: gradebook.db, source/, release/, submitted/, autograded/
  work/results/<student>/<assignment>.json   the result store (resume)
  work/submissions/<student>/<assignment>/   autograded notebooks, kernel logs (local pool: working copies, evidence)
  work/probes/<assignment>/<notebook>/        the probes and settings, read-only to kernels
  work/kernel-cache/                          matplotlib's font list, read-only to kernels
  work/logs/worker-<slot>.log                 the local workers' stderr
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.course import COURSE_FILE, Assignment, Course
from autograder.grading import gradebook
from autograder.grading.backends.base import Backend, BackendUnavailable, error_result
from autograder.grading.feedback import PAGE_MODE
from autograder.grading.judge import write_probes
from autograder.grading.pipeline import Job
from autograder.grading.sandbox import SandboxUnavailable, require_sandbox
from autograder.grading.sanitize import safe_student_id, spreadsheet_safe
from autograder.grading.store import (
    INVALID_ID,
    finished,
    readable_by_kernels,
    result_path,
    save_result,
    write_atomic,
)
from autograder.grading.submission_copy import plain_file_problem
from autograder.grading.validate import MAX_NOTEBOOK_BYTES, sha256_file

__all__ = ["BackendUnavailable", "GradeRow", "GradeReport", "SandboxUnavailable", "grade_class"]

CSV_COLUMNS = ["student_id", "assignment", "score", "max_score", "auto_score", "auto_max", "status", "message"]


@dataclass(frozen=True)
class GradeRow:
    student_id: str
    assignment: str
    score: float
    max_score: float
    auto_score: float
    auto_max: float
    status: str
    message: str


@dataclass(frozen=True)
class GradeReport:
    rows: list[GradeRow]
    out: Path
    csv_path: Path
    feedback_dir: Path
    course_root: Path


# ----------------------------------------------------------------------------- planning


def _students(submissions: Path) -> tuple[list[str], list[str]]:
    """(student ids, folder names that are not safe ids): the second are never graded nor rendered."""
    names = sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [n for n in names if safe_student_id(n)], [n for n in names if not safe_student_id(n)]


def _invalid_row(name: str, a: Assignment) -> GradeRow:
    shown = ascii(name)[1:-1]  # control characters and non-ASCII escaped: safe for a terminal, a CSV, a page
    why = f"the folder name '{shown}' is not a student id (ASCII letters, digits, '_', '.', '-'; at most 64)"
    return GradeRow(shown, a.id, 0.0, float(a.max_score), 0.0, float(a.auto_max), INVALID_ID, why)


def _assignments(course: Course, submissions: Path, students: list[str], wanted: list[str] | None) -> list[Assignment]:
    if wanted:
        return [course.assignment(a) for a in wanted]
    present = {a.name for s in students for a in (submissions / s).iterdir() if a.is_dir()}
    return [a for a in course.assignments if a.id in present and (course.source_dir / a.id).is_dir()]


def _job_key(course: Course, assignment: Assignment, folder: Path) -> str:
    """Checksums of everything that decides this submission's grade: its notebooks, the sources, course.yml."""
    h = hashlib.sha256()
    h.update(sha256_file(course.root / COURSE_FILE).encode())
    for nb in assignment.notebooks:
        h.update(sha256_file(course.source_dir / assignment.id / nb.filename).encode())
        path = folder / nb.filename
        if plain_file_problem(folder, nb.filename, nb.filename):  # never hash through a link or open a FIFO
            h.update(b"not a regular file")
        elif not path.is_file():
            h.update(b"missing")
        elif path.stat().st_size > MAX_NOTEBOOK_BYTES:  # refused unread when graded: not read here either
            h.update(f"too large: {path.stat().st_size}".encode())
        else:
            h.update(sha256_file(path).encode())
    return h.hexdigest()


def _write_probes(course: Course, assignments: list[Assignment], probes_root: Path) -> None:
    """Probes and the grading settings per notebook, readable by the sandbox's unprivileged uids."""
    settings = json.dumps({"course": course.id, "seed": course.seed, "profiles": course.profiles}, sort_keys=True)
    for a in assignments:
        for nb in a.notebooks:
            folder = probes_root / a.id / nb.name
            write_probes(course, a, nb, folder)
            write_atomic(folder / "settings.json", settings.encode())
    readable_by_kernels(probes_root)


# ----------------------------------------------------------------------------- progress


class _Progress:
    """The progress bar; opened only once the local workers exist (tqdm's monitor thread would rule out fork)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.failures = total, enabled, 0
        self.bar: Any = None

    def open(self) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                desc="grading",
                unit="sub",
                file=sys.stderr,
                disable=not self.enabled,
                dynamic_ncols=True,
            )

    def done(self, result: dict[str, Any]) -> None:
        self.open()
        if result["status"] != "graded":
            self.failures += 1
        self.bar.set_postfix(failures=self.failures, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- the batch


def _count_attempt(result: dict[str, Any], earlier: int, max_retries: int) -> None:
    """A grader fault is graded again on resume, at most MAX_RETRIES times; then its row is final."""
    if result.get("final", True):
        return
    result["attempts"] = earlier + 1
    if result["attempts"] > max_retries:
        result["final"] = True
        result["message"] = (
            f"{result.get('message', '')} (graded {result['attempts']} times with the same files; "
            "not retried again: grade it again with --regrade once the fault is fixed)"
        ).strip()


def grade_class(
    course: Course,
    submissions: Path,
    out: Path,
    assignments: list[str] | None = None,
    workers: int | None = None,
    regrade: bool = False,
    allow_unsandboxed: bool = False,
    progress: bool = True,
    dask: str | None = None,
) -> GradeReport:
    """Grade every student x assignment under SUBMISSIONS into OUT (see the module docstring).

    DASK: None for the local process pool, else a scheduler address (tcp://host:8786) or
    `local[:N]` (a LocalCluster on 127.0.0.1); see backends/dask.py.
    """
    # With Dask, kernels run on the workers: each checks its own bubblewrap (or this decision).
    bwrap = None if dask else require_sandbox(allow_unsandboxed)
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions}: no such folder of submissions")
    work, feedback_dir, course_root = out / "work", out / "feedback", out / "course"
    students, invalid = _students(submissions)
    chosen = _assignments(course, submissions, students, assignments)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o755)
    probes_root = work / "probes"

    results: dict[tuple[str, str], dict[str, Any]] = {}
    attempts: dict[tuple[str, str], int] = {}  # earlier non-final gradings of the same files (resume)
    jobs: list[Job] = []
    for student in students:
        for a in chosen:
            folder = submissions / student / a.id
            job = Job(
                student_id=student,
                assignment_id=a.id,
                submission_dir=folder,
                work=work / "submissions" / student / a.id,
                probes=probes_root / a.id,
                key=_job_key(course, a, folder),
            )
            stored = None if regrade else finished(result_path(work, student, a.id), job.key)
            if stored is not None and stored.get("final", True):
                results[(student, a.id)] = stored
            else:
                attempts[(student, a.id)] = int(stored.get("attempts", 1)) if stored is not None else 0
                jobs.append(job)

    def setup_for_results() -> None:
        gradebook.prepare_course_root(course, course_root, [a.id for a in chosen])
        for stored in results.values():  # idempotent: heals a run killed between the store and the gradebook
            if stored["status"] != "missing":
                gradebook.record(course_root, course, course.assignment(stored["assignment"]), stored)

    def on_result(job: Job, result: dict[str, Any]) -> None:
        try:
            _keep_files(course, job, result, feedback_dir / job.student_id / job.assignment_id)
        except OSError as exc:  # the grader's own fault (a full disk, a path in the way): a row, not a crash
            result = error_result(course, job, f"grader error: could not write its files: {exc}")
        _count_attempt(result, attempts.get((job.student_id, job.assignment_id), 0), course.grading.max_retries)
        save_result(result_path(work, job.student_id, job.assignment_id), result)
        if result["status"] != "missing":
            gradebook.record(course_root, course, course.assignment(job.assignment_id), result)
        results[(job.student_id, job.assignment_id)] = result

    bar = _Progress(len(jobs), progress)
    try:
        if jobs:
            count = workers or course.grading.worker_count()
            backend = _backend(course, dask, bwrap, allow_unsandboxed, work, [a.id for a in chosen])
            try:
                backend.start(count, len(jobs))
                for job in jobs:
                    backend.submit(job)
                bar.open()
                _write_probes(course, chosen, probes_root)
                backend.release(probes_root)
                setup_for_results()
                for job, result in backend.results():
                    on_result(job, result)
                    bar.done(result)
            finally:
                backend.close()
        else:
            setup_for_results()
    finally:
        bar.close()

    rows = [_row(course_root, course, results[(s, a.id)]) for s in students for a in chosen if (s, a.id) in results]
    rows += [_invalid_row(name, a) for name in invalid for a in chosen]
    csv_path = out / "grades.csv"
    write_atomic(csv_path, _csv(rows).encode("utf-8"))
    return GradeReport(rows=rows, out=out, csv_path=csv_path, feedback_dir=feedback_dir, course_root=course_root)


def _backend(
    course: Course, dask: str | None, bwrap: str | None, allow_unsandboxed: bool, work: Path, assignments: list[str]
) -> Backend:
    if dask:
        from autograder.grading.backends.dask import DaskBackend  # imports distributed: only when asked for

        return DaskBackend(course, dask, allow_unsandboxed=allow_unsandboxed)
    from autograder.grading.backends.local import LocalBackend

    return LocalBackend(course, bwrap, cache=work / "kernel-cache", logs=work / "logs", assignments=assignments)


def _keep_files(course: Course, job: Job, result: dict[str, Any], feedback: Path) -> None:
    """Write what a worker returned as data (feedback page, autograded notebook, kernel log) under
    this client's OUT, and point the result's paths at them (the gradebook copies from there)."""
    specs = {nb.name: nb for nb in course.assignment(job.assignment_id).notebooks}
    for nb in result["notebooks"]:
        spec, nb_work = specs[nb["name"]], job.work / nb["name"]
        if "submitted_path" in nb:  # the worker read its own copy; the gradebook copies the original
            nb["submitted_path"] = str(job.submission_dir / spec.filename)
        page = nb.pop("feedback_html", None)
        if page is not None:
            path = feedback / f"{spec.name}.html"
            write_atomic(path, page.encode("utf-8"), PAGE_MODE)
            nb["feedback_path"] = str(path)
        autograded = nb.pop("autograded", None)
        if autograded is not None:
            path = nb_work / "autograded.ipynb"
            write_atomic(path, autograded.encode("utf-8"))
            nb["autograded_path"] = str(path)
        log = nb.pop("kernel_log", None)
        if log is not None:
            write_atomic(nb_work / "kernel.log", log.encode("utf-8", "replace"))


def _row(course_root: Path, course: Course, result: dict[str, Any]) -> GradeRow:
    a = course.assignment(result["assignment"])
    auto = float(result["auto_score"])
    score, max_score = auto, a.max_score
    if result["status"] != "missing":
        stored = gradebook.scores(course_root, course, result["student_id"], a.id)
        if stored is not None:
            score, max_score = stored
    return GradeRow(
        student_id=result["student_id"],
        assignment=a.id,
        score=round(score, 6),
        max_score=round(max_score, 6),
        auto_score=round(auto, 6),
        auto_max=float(a.auto_max),
        status=result["status"],
        message=" ".join(str(result.get("message", "")).split()),
    )


def _csv(rows: list[GradeRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        cells = [r.student_id, r.assignment, f"{r.score:g}", f"{r.max_score:g}", f"{r.auto_score:g}"]
        writer.writerow([spreadsheet_safe(c) for c in [*cells, f"{r.auto_max:g}", r.status, r.message]])
    return buf.getvalue()

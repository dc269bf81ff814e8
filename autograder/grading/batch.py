"""`course grade`: grade a class of submissions in parallel sandboxed workers, resumably.

The parent process plans the jobs (student x assignment), prepares the nbgrader course root and
the probes once, skips what a previous run already finished (same checksums), and hands the rest
to `workers` processes. Each worker grades with its own sandboxed kernel and its own unprivileged
uid, imports TensorFlow at most once (the judge of model parts needs it), and returns a plain
result. The parent alone stores results (atomically), writes gradebook.db and, at the end,
grades.csv (atomically, from the stored results).

OUT/
  grades.csv                          one row per student x assignment
  feedback/<student>/<assignment>/<notebook>.html
  course/                             nbgrader course root: gradebook.db, source/, release/, submitted/, autograded/
  work/results/<student>/<assignment>.json   the result store (resume)
  work/submissions/<student>/<assignment>/   working copies, kernel logs, evidence, autograded notebooks
  work/probes/<assignment>/<notebook>/        the probes and settings, read-only to kernels
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.course import COURSE_FILE, Assignment, Course
from autograder.grading import gradebook
from autograder.grading.judge import write_probes
from autograder.grading.pipeline import Job, WorkerConfig, grade_submission
from autograder.grading.sandbox import UID_BASE, SandboxUnavailable, require_sandbox
from autograder.grading.store import finished, result_path, save_result, write_atomic
from autograder.grading.validate import sha256_file

__all__ = ["GradeRow", "GradeReport", "SandboxUnavailable", "grade_class"]

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


def _students(submissions: Path) -> list[str]:
    return sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))


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
        h.update(sha256_file(path).encode() if path.is_file() else b"missing")
    return h.hexdigest()


def _write_probes(course: Course, assignments: list[Assignment], probes_root: Path) -> None:
    """Probes and the grading settings per notebook, readable by the sandbox's unprivileged uids."""
    settings = json.dumps({"course": course.id, "seed": course.seed, "profiles": course.profiles}, sort_keys=True)
    for a in assignments:
        for nb in a.notebooks:
            folder = probes_root / a.id / nb.name
            write_probes(course, a, nb, folder)
            write_atomic(folder / "settings.json", settings.encode())
    for root, _dirs, files in os.walk(probes_root):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


# ----------------------------------------------------------------------------- workers

_WORKER: WorkerConfig | None = None


def _init_worker(course: Course, bwrap: str | None, slots: Any) -> None:
    global _WORKER
    slot = slots.get()
    uid = UID_BASE + slot if (bwrap and os.geteuid() == 0) else None
    _WORKER = WorkerConfig(course=course, bwrap=bwrap, uid=uid)


def _run_job(job: Job) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return grade_submission(_WORKER, job)


def _pool(course: Course, bwrap: str | None, workers: int) -> ProcessPoolExecutor:
    ctx = mp.get_context("spawn")  # no inherited threads, sockets or TensorFlow state
    slots = ctx.Queue()
    for i in range(workers):
        slots.put(i)
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(course, bwrap, slots)
    )


class _Progress:
    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, desc="grading", unit="sub", file=sys.stderr, disable=not enabled, dynamic_ncols=True
        )
        self.failures = 0

    def done(self, result: dict[str, Any]) -> None:
        if result["status"] != "graded":
            self.failures += 1
        self.bar.set_postfix(failures=self.failures, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- the batch


def _run_jobs(course: Course, bwrap: str | None, jobs: list[Job], workers: int, on_result, progress: _Progress) -> None:
    """Grade JOBS; jobs whose worker process itself died are retried once, alone, then reported."""
    for _attempt in range(2):
        broken: list[Job] = []
        pool = _pool(course, bwrap, max(1, min(workers, len(jobs))))
        try:
            futures = {pool.submit(_run_job, job): job for job in jobs}
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures[fut]
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken.append(job)
                        continue
                    except Exception as exc:
                        result = _error_result(course, job, f"grader error: {type(exc).__name__}: {exc}")
                    on_result(job, result)
                    progress.done(result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken:
            return
        jobs, workers = broken, 1
    for job in jobs:
        result = _error_result(course, job, "grader error: the grading worker process died")
        on_result(job, result)
        progress.done(result)


def _error_result(course: Course, job: Job, why: str) -> dict[str, Any]:
    a = course.assignment(job.assignment_id)
    return {
        "student_id": job.student_id,
        "assignment": a.id,
        "key": job.key,
        "status": "grader error",
        "message": why,
        "final": False,
        "auto_score": 0.0,
        "auto_max": a.auto_max,
        "max_score": a.max_score,
        "notebooks": [],
    }


def grade_class(
    course: Course,
    submissions: Path,
    out: Path,
    assignments: list[str] | None = None,
    workers: int | None = None,
    regrade: bool = False,
    allow_unsandboxed: bool = False,
    progress: bool = True,
) -> GradeReport:
    """Grade every student x assignment under SUBMISSIONS into OUT (see the module docstring)."""
    bwrap = require_sandbox(allow_unsandboxed)
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions}: no such folder of submissions")
    work, feedback_dir, course_root = out / "work", out / "feedback", out / "course"
    students = _students(submissions)
    chosen = _assignments(course, submissions, students, assignments)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o755)
    gradebook.prepare_course_root(course, course_root, [a.id for a in chosen])
    probes_root = work / "probes"
    _write_probes(course, chosen, probes_root)

    results: dict[tuple[str, str], dict[str, Any]] = {}
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
                release=course_root / "release" / a.id,
                feedback=feedback_dir / student / a.id,
                key=_job_key(course, a, folder),
            )
            stored = None if regrade else finished(result_path(work, student, a.id), job.key)
            if stored is not None and stored.get("final", True):
                results[(student, a.id)] = stored
                gradebook.record(course_root, course, a, stored)  # idempotent: heals a run killed in between
            else:
                jobs.append(job)

    def on_result(job: Job, result: dict[str, Any]) -> None:
        save_result(result_path(work, job.student_id, job.assignment_id), result)
        if result["status"] != "missing":
            gradebook.record(course_root, course, course.assignment(job.assignment_id), result)
        results[(job.student_id, job.assignment_id)] = result

    bar = _Progress(len(jobs), progress)
    try:
        if jobs:
            _run_jobs(course, bwrap, jobs, workers or course.grading.worker_count(), on_result, bar)
    finally:
        bar.close()

    rows = [_row(course_root, course, results[(s, a.id)]) for s in students for a in chosen if (s, a.id) in results]
    csv_path = out / "grades.csv"
    write_atomic(csv_path, _csv(rows).encode("utf-8"))
    return GradeReport(rows=rows, out=out, csv_path=csv_path, feedback_dir=feedback_dir, course_root=course_root)


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
        writer.writerow(
            [
                r.student_id,
                r.assignment,
                f"{r.score:g}",
                f"{r.max_score:g}",
                f"{r.auto_score:g}",
                f"{r.auto_max:g}",
                r.status,
                r.message,
            ]
        )
    return buf.getvalue()

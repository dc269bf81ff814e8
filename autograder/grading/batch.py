"""`course grade`: grade a class of submissions in parallel sandboxed workers, resumably.

The parent process plans the jobs (student x assignment), skips what a previous run already
finished (same checksums) and starts `workers` processes for the rest. While they start, it writes
the probes and the kernels' font cache once and releases the workers; while they grade, it
prepares the nbgrader course root. Each worker grades with its own sandboxed kernel and its own
unprivileged uid, imports TensorFlow at most once (only the judge of model parts needs it), and
returns a plain result. The parent alone stores results (atomically), writes gradebook.db and, at
the end, grades.csv (atomically, from the stored results).

OUT/
  grades.csv                          one row per student x assignment
  feedback/<student>/<assignment>/<notebook>.html
  course/                             nbgrader course root: gradebook.db, source/, release/, submitted/, autograded/
  work/results/<student>/<assignment>.json   the result store (resume)
  work/submissions/<student>/<assignment>/   working copies, kernel logs, evidence, autograded notebooks
  work/probes/<assignment>/<notebook>/        the probes and settings, read-only to kernels
  work/kernel-cache/                          matplotlib's font list, read-only to kernels
  work/logs/worker-<slot>.log                 the workers' stderr
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.course import COURSE_FILE, Assignment, Course
from autograder.grading import gradebook
from autograder.grading.judge import write_probes
from autograder.grading.kernel_cache import build_kernel_cache
from autograder.grading.pipeline import Job, WorkerConfig, grade_submission, warm_up
from autograder.grading.sandbox import UID_BASE, SandboxUnavailable, require_sandbox
from autograder.grading.sanitize import safe_student_id, spreadsheet_safe
from autograder.grading.store import finished, readable_by_kernels, result_path, save_result, write_atomic
from autograder.grading.submission_copy import plain_file_problem
from autograder.grading.validate import MAX_NOTEBOOK_BYTES, sha256_file

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


INVALID_ID = "invalid student id"


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


# ----------------------------------------------------------------------------- workers

_WORKER: WorkerConfig | None = None
READY_TIMEOUT = 600  # seconds a worker waits for the parent's set-up (probes, caches) before giving up


@dataclass(frozen=True)
class _PoolConfig:
    course: Course
    bwrap: str | None
    cache: Path | None
    logs: Path  # each worker's stderr (TensorFlow's C++ start-up lines, crashes) goes to worker-<slot>.log here


def _log_stderr(path: Path) -> None:
    """Point this process's fd 2 at PATH: C-level output would otherwise cut through the progress bar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def _init_worker(cfg: _PoolConfig, slots: Any, ready: Any, abort: Any) -> None:
    """Import and build what every job needs, then wait until the parent has written the probes."""
    global _WORKER
    with slots.get_lock():  # each worker its own slot, hence its own uid
        slot = slots.value
        slots.value += 1
    _log_stderr(cfg.logs / f"worker-{slot}.log")
    uid = UID_BASE + slot if (cfg.bwrap and os.geteuid() == 0) else None
    warm_up()
    if not ready.wait(READY_TIMEOUT) or abort.is_set():
        raise RuntimeError("the grading set-up did not finish; nothing was graded")
    _WORKER = WorkerConfig(course=cfg.course, bwrap=cfg.bwrap, uid=uid, cache=cfg.cache)


def _run_job(job: Job) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return grade_submission(_WORKER, job)


def _context() -> mp.context.BaseContext:
    """fork when this process is single-threaded and has no TensorFlow (the `course grade` command):
    workers start at once with the modules and templates already loaded. Otherwise (a test run that
    imported TensorFlow, a second pool after threads started) a fork server, which forks each worker
    from a clean process that imported the grading modules once."""
    if "tensorflow" not in sys.modules and threading.active_count() == 1:
        warm_up()
        return mp.get_context("fork")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class _Pool:
    """Worker processes that start (import, warm up) at once and begin grading when `release()` is called.

    So the parent's set-up (probes, caches, the nbgrader course root) overlaps the workers' start.
    """

    def __init__(self, cfg: _PoolConfig, workers: int):
        ctx = _context()
        slots = ctx.Value("i", 0)  # not a Queue: its feeder thread would be running when workers fork
        self.ready, self.abort = ctx.Event(), ctx.Event()
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(cfg, slots, self.ready, self.abort),
        )

    def release(self) -> None:
        self.ready.set()

    def shutdown(self) -> None:
        if not self.ready.is_set():  # the set-up failed: workers give up instead of grading
            self.abort.set()
            self.ready.set()
        self.executor.shutdown(wait=True, cancel_futures=True)


class _Progress:
    """The progress bar; opened only once the workers exist (tqdm's monitor thread would rule out fork)."""

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


def _run_jobs(
    cfg: _PoolConfig,
    jobs: list[Job],
    workers: int,
    on_result: Callable[[Job, dict[str, Any]], None],
    progress: _Progress,
    setup_for_workers: Callable[[], None],
    setup_for_results: Callable[[], None],
) -> None:
    """Grade JOBS; jobs whose worker process itself died are retried once, alone, then reported.

    The pool starts first; SETUP_FOR_WORKERS (what kernels read) runs while the workers import, then
    they are released; SETUP_FOR_RESULTS (what on_result writes to) runs while they grade.
    """
    set_up = False
    for _attempt in range(2):
        broken: list[Job] = []
        pool = _Pool(cfg, max(1, min(workers, len(jobs))))
        try:
            futures = {pool.executor.submit(_run_job, job): job for job in jobs}
            progress.open()
            if not set_up:
                setup_for_workers()
            pool.release()
            if not set_up:
                setup_for_results()
                set_up = True
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
                        result = _error_result(cfg.course, job, f"grader error: {type(exc).__name__}: {exc}")
                    on_result(job, result)
                    progress.done(result)
        finally:
            pool.shutdown()
        if not broken:
            return
        jobs, workers = broken, 1
    for job in jobs:
        why = f"grader error: the grading worker process died (its log: {cfg.logs})"
        result = _error_result(cfg.course, job, why)
        on_result(job, result)
        progress.done(result)


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
    students, invalid = _students(submissions)
    chosen = _assignments(course, submissions, students, assignments)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o755)
    probes_root, cache = work / "probes", work / "kernel-cache"

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
                feedback=feedback_dir / student / a.id,
                key=_job_key(course, a, folder),
            )
            stored = None if regrade else finished(result_path(work, student, a.id), job.key)
            if stored is not None and stored.get("final", True):
                results[(student, a.id)] = stored
            else:
                attempts[(student, a.id)] = int(stored.get("attempts", 1)) if stored is not None else 0
                jobs.append(job)

    def setup_for_workers() -> None:
        fonts = threading.Thread(target=build_kernel_cache, args=(cache,))
        fonts.start()
        _write_probes(course, chosen, probes_root)
        fonts.join()

    def setup_for_results() -> None:
        gradebook.prepare_course_root(course, course_root, [a.id for a in chosen])
        for stored in results.values():  # idempotent: heals a run killed between the store and the gradebook
            if stored["status"] != "missing":
                gradebook.record(course_root, course, course.assignment(stored["assignment"]), stored)

    def on_result(job: Job, result: dict[str, Any]) -> None:
        _count_attempt(result, attempts.get((job.student_id, job.assignment_id), 0), course.grading.max_retries)
        save_result(result_path(work, job.student_id, job.assignment_id), result)
        if result["status"] != "missing":
            gradebook.record(course_root, course, course.assignment(job.assignment_id), result)
        results[(job.student_id, job.assignment_id)] = result

    bar = _Progress(len(jobs), progress)
    try:
        if jobs:
            cfg = _PoolConfig(course=course, bwrap=bwrap, cache=cache, logs=work / "logs")
            count = workers or course.grading.worker_count()
            _run_jobs(cfg, jobs, count, on_result, bar, setup_for_workers, setup_for_results)
        else:
            setup_for_results()
    finally:
        bar.close()

    rows = [_row(course_root, course, results[(s, a.id)]) for s in students for a in chosen if (s, a.id) in results]
    rows += [_invalid_row(name, a) for name in invalid for a in chosen]
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
        cells = [r.student_id, r.assignment, f"{r.score:g}", f"{r.max_score:g}", f"{r.auto_score:g}"]
        writer.writerow([spreadsheet_safe(c) for c in [*cells, f"{r.auto_max:g}", r.status, r.message]])
    return buf.getvalue()

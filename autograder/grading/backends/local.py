"""The embedded default: a pool of worker processes on this machine, forked warm.

Workers start (fork, import, warm up) at the first `submit` and wait until `release`: the
client's set-up (the probes, here the kernels' font cache, the nbgrader course root) overlaps their
start. Each worker grades with its own sandboxed kernel and an unprivileged uid that no other worker
on the machine holds (uid_slots.py), imports TensorFlow at most once (only the judge of model
parts needs it) and returns a plain result. Jobs whose worker process itself died are run again
once, alone, in a fresh pool, then reported.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.course import Course
from autograder.grading import uid_slots
from autograder.grading.backends.base import error_result
from autograder.grading.judge_child import start_fork_server
from autograder.grading.kernel_cache import build_kernel_cache
from autograder.grading.pipeline import Job, WorkerConfig, grade_submission, warm_up

_WORKER: WorkerConfig | None = None
READY_TIMEOUT = 600  # seconds a worker waits for the parent's set-up (probes, caches) before giving up


@dataclass(frozen=True)
class _PoolConfig:
    course: Course
    bwrap: str | None
    cache: Path | None
    logs: Path  # each worker's stderr (TensorFlow's C++ start-up lines, crashes) goes to worker-<slot>.log here
    assignments: list[str] | None = None  # the ones this batch grades: what the workers preload


def _log_stderr(path: Path) -> None:
    """Point this process's fd 2 at PATH: C-level output would otherwise cut through the progress bar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def _init_worker(cfg: _PoolConfig, slots: Any, ready: Any, abort: Any) -> None:
    """Import and build what every job needs, then wait until the parent has written the probes."""
    global _WORKER
    with slots.get_lock():  # each worker its own log
        slot = slots.value
        slots.value += 1
    _log_stderr(cfg.logs / f"worker-{slot}.log")
    # A uid no other worker on this machine holds, whichever batch started it; freed when this process ends.
    uid = uid_slots.claim()[0].uid if (cfg.bwrap and os.geteuid() == 0) else None
    warm_up(cfg.course, cfg.assignments)
    start_fork_server(cfg.course, cfg.assignments)
    if not ready.wait(READY_TIMEOUT) or abort.is_set():
        raise RuntimeError("the grading set-up did not finish; nothing was graded")
    _WORKER = WorkerConfig(course=cfg.course, bwrap=cfg.bwrap, uid=uid, cache=cfg.cache)


def _run_job(job: Job) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return grade_submission(_WORKER, job)


def _context(cfg: _PoolConfig) -> mp.context.BaseContext:
    """fork when this process is single-threaded and has no TensorFlow (the `course grade` command):
    workers start at once with the modules and templates already loaded. Otherwise (a test run that
    imported TensorFlow, a second pool after threads started) a fork server, which forks each worker
    from a clean process that imported the grading modules once."""
    if "tensorflow" not in sys.modules and threading.active_count() == 1:
        warm_up(cfg.course, cfg.assignments)
        return mp.get_context("fork")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class _Pool:
    """Worker processes that start (import, warm up) at once and begin grading when `release()` is called."""

    def __init__(self, cfg: _PoolConfig, workers: int):
        ctx = _context(cfg)
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


class LocalBackend:
    """The process pool; its kernels read the font cache built here while the workers start."""

    def __init__(
        self, course: Course, bwrap: str | None, cache: Path, logs: Path, assignments: list[str] | None = None
    ):
        self.cfg = _PoolConfig(course=course, bwrap=bwrap, cache=cache, logs=logs, assignments=assignments)
        self.pool: _Pool | None = None
        self.futures: dict[Future, Job] = {}
        self.fonts: threading.Thread | None = None

    def start(self, workers: int, jobs: int) -> None:
        self.pool = _Pool(self.cfg, max(1, min(workers, jobs)))

    def submit(self, job: Job) -> None:
        assert self.pool is not None
        self.futures[self.pool.executor.submit(_run_job, job)] = job
        if self.fonts is None:  # the first submit forked the workers: only now may threads start
            assert self.cfg.cache is not None
            self.fonts = threading.Thread(target=build_kernel_cache, args=(self.cfg.cache,))
            self.fonts.start()

    def release(self, probes_root: Path) -> None:
        assert self.pool is not None and self.fonts is not None
        self.fonts.join()
        self.pool.release()

    def results(self) -> Iterator[tuple[Job, dict[str, Any]]]:
        for attempt in range(2):
            broken: list[Job] = []
            waiting = set(self.futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = self.futures[fut]
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken.append(job)
                        continue
                    except Exception as exc:
                        result = error_result(self.cfg.course, job, f"grader error: {type(exc).__name__}: {exc}")
                    yield job, result
            if not broken:
                return
            self.close()
            if attempt == 0:  # once more, alone, in a fresh pool
                self.pool, self.futures = _Pool(self.cfg, 1), {}
                self.pool.release()
                for job in broken:
                    self.submit(job)
        why = f"grader error: the grading worker process died (its log: {self.cfg.logs})"
        for job in broken:
            yield job, error_result(self.cfg.course, job, why)

    def close(self) -> None:
        if self.fonts is not None and self.fonts.is_alive():
            self.fonts.join()
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

"""Grading on a Dask cluster: each submission (student x assignment) is one task.

The client connects to a running scheduler (`tcp://host:8786`, `tls://...`) or starts a
LocalCluster on 127.0.0.1 (`local[:N]`, dashboard on 127.0.0.1 too), registers the GradingWorker
plugin (dask_worker.py) and requires at least one admitted worker. No shared filesystem is
assumed: a task carries the submission's files (bounded, transfer.py) and depends on one small
task per assignment holding its probes; it returns the record with the feedback page and the
autograded notebook as data. Neither this process nor the scheduler runs student code.

Faults: a worker that dies mid-task has its tasks run again elsewhere by the scheduler (at most
`distributed.scheduler.allowed-failures` times; then KilledWorker); a task that raises is retried
`RETRIES` times; what still fails becomes a "grader error" row (graded again on the next run). Only
a window of tasks is in flight, so the scheduler never holds a whole class's notebooks.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, KilledWorker, LocalCluster, wait

from autograder.course import Course
from autograder.grading.backends.base import BackendUnavailable, error_result
from autograder.grading.backends.dask_worker import (
    SETTING_UP,
    GradingWorker,
    grade_remote,
    plugin_name,
    probes_data,
    worker_status,
)
from autograder.grading.pipeline import Job
from autograder.grading.transfer import FolderTooLarge, digest, pack_folder
from autograder.grading.version import course_version

RETRIES = 1  # a task that raised (not a dead worker: the scheduler handles those) runs once more
WAIT_FOR_WORKERS = 120  # seconds to wait for a first admitted worker, or with none left mid-batch
WATCH = 10  # seconds between checks on the workers while no result arrives
IN_FLIGHT_PER_THREAD = 2


class DaskUnavailable(BackendUnavailable):
    """No scheduler at the address, or no worker there may grade this course."""


def parse_target(target: str) -> tuple[str, int | None]:
    """("local", N or None) for `local[:N]`, else ("remote", address)."""
    if target == "local" or target.startswith("local:"):
        count = target.partition(":")[2]
        if count and (not count.isdigit() or int(count) < 1):
            raise ValueError(f"--dask {target}: expected local or local:N with N a positive integer")
        return "local", int(count) if count else None
    if "://" not in target and ":" not in target:
        raise ValueError(f"--dask {target}: expected a scheduler address such as tcp://host:8786, or local[:N]")
    return target, None


class DaskBackend:
    def __init__(self, course: Course, target: str, allow_unsandboxed: bool = False, log=None):
        self.course = course
        self.target, self.local_workers = parse_target(target)
        self.allow_unsandboxed = allow_unsandboxed
        self.version = course_version(course)
        self.name = plugin_name(self.version)
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.pending: collections.deque[Job] = collections.deque()
        self.ready: collections.deque[tuple[Job, dict[str, Any]]] = collections.deque()
        self.running: dict[Future, Job] = {}
        self.probes: dict[str, Future] = {}
        self.reported: set[str] = set()
        self.threads = 1
        self.registering: threading.Thread | None = None
        self.register_error: Exception | None = None
        self.log = log or (lambda text: print(f"course grade: {text}", file=sys.stderr))

    # ------------------------------------------------------------------ start
    def start(self, workers: int, jobs: int) -> None:
        dask.config.set({"distributed.worker.daemon": False})  # kernels and their helpers are child processes
        address = self.target
        if self.target == "local":
            self.cluster = LocalCluster(
                n_workers=self.local_workers or workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
            address = self.cluster.scheduler_address
        try:
            self.client = Client(address, set_as_default=False, timeout="30s")
        except OSError as exc:
            raise DaskUnavailable(f"no Dask scheduler answers at {address}: {exc}") from None
        try:
            self.client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
        except TimeoutError:
            raise DaskUnavailable(f"the Dask scheduler at {address} has no workers") from None
        # The workers set up (imports, caches) while this process writes the probes: see release().
        plugin = GradingWorker(self.version, str(self.course.root.resolve()), self.allow_unsandboxed)
        self.registering = threading.Thread(target=self._register, args=(plugin,), daemon=True)
        self.registering.start()

    def _register(self, plugin: GradingWorker) -> None:
        assert self.client is not None
        try:
            self.client.register_plugin(plugin, name=self.name)
        except Exception as exc:  # raised again by release(), in the grading thread
            self.register_error = exc

    def _admitted(self) -> int:
        """Threads of the admitted workers; reports each refused worker once."""
        assert self.client is not None
        statuses = self.client.run(worker_status, name=self.name, on_error="return")
        threads = self.client.nthreads()
        admitted = 0
        for address, why in statuses.items():
            if why is None:
                admitted += threads.get(address, 1)
            elif why != SETTING_UP and address not in self.reported:
                self.reported.add(address)
                self.log(f"Dask worker {address} refused: {why}")
        self.threads = max(1, admitted)
        return admitted

    # ------------------------------------------------------------------ jobs
    def submit(self, job: Job) -> None:
        self.pending.append(job)

    def release(self, probes_root: Path) -> None:
        assert self.client is not None and self.registering is not None
        self.registering.join()
        if self.register_error is not None:
            raise DaskUnavailable(f"the workers could not take the grading plugin: {self.register_error}")
        if not self._admitted():
            raise DaskUnavailable(
                f"no Dask worker at {self.client.scheduler.address} may grade this course (reasons above); "
                "nothing was graded"
            )
        for aid in sorted({job.assignment_id for job in self.pending}):
            packed = pack_folder(probes_root / aid)
            key = f"autograder-probes-{aid}-{digest(packed)[:16]}"
            self.probes[aid] = self.client.submit(
                probes_data, packed, key=key, pure=False, resources={self.name: 1}, retries=RETRIES
            )
        self._fill()

    def _fill(self) -> None:
        assert self.client is not None
        while self.pending and len(self.running) < IN_FLIGHT_PER_THREAD * self.threads:
            job = self.pending.popleft()
            try:
                files = pack_folder(job.submission_dir)
            except (FolderTooLarge, OSError) as exc:
                result = error_result(self.course, job, str(exc))
                self.ready.append((job, {**result, "status": "submission too large", "final": True}))
                continue
            payload = {
                "student_id": job.student_id,
                "assignment_id": job.assignment_id,
                "key": job.key,
                "files": files,
            }
            fut = self.client.submit(
                grade_remote,
                self.name,
                payload,
                self.probes[job.assignment_id],
                key=f"grade-{job.student_id}/{job.assignment_id}-{job.key[:12]}-{time.monotonic_ns()}",
                pure=False,
                retries=RETRIES,
                resources={self.name: 1},
            )
            self.running[fut] = job

    def results(self) -> Iterator[tuple[Job, dict[str, Any]]]:
        idle_since = None
        while self.running or self.pending or self.ready:
            while self.ready:
                yield self.ready.popleft()
            if not self.running:
                self._fill()
                continue
            assert self.client is not None
            try:
                with self.client.as_current():
                    done, _ = wait(list(self.running), timeout=WATCH, return_when="FIRST_COMPLETED")
            except TimeoutError:
                idle_since = self._watch(idle_since)
                continue
            idle_since = None
            for fut in done:
                job = self.running.pop(fut)
                yield job, self._outcome(fut, job)
            self._fill()

    def _outcome(self, fut: Future, job: Job) -> dict[str, Any]:
        try:
            if fut.status == "finished":
                return fut.result()
            if fut.status == "cancelled":
                return error_result(self.course, job, "grader error: the Dask task was cancelled")
            exc = fut.exception()
        finally:
            fut.release()
        if isinstance(exc, KilledWorker):
            why = f"grader error: every Dask worker that took this submission died ({exc})"
        else:
            why = f"grader error on a Dask worker: {type(exc).__name__}: {exc}"
        return error_result(self.course, job, why)

    def _watch(self, idle_since: float | None) -> float | None:
        """No result for a while: report newly refused workers; give up when no admitted worker is left."""
        if self._admitted():
            return None
        now = time.monotonic()
        idle_since = idle_since or now
        if now - idle_since < WAIT_FOR_WORKERS:
            return idle_since
        why = "grader error: no Dask worker that may grade this course is left"
        for fut, job in list(self.running.items()):
            fut.cancel()
            self.ready.append((job, error_result(self.course, job, why)))
        self.running.clear()
        while self.pending:
            job = self.pending.popleft()
            self.ready.append((job, error_result(self.course, job, why)))
        return None

    def close(self) -> None:
        if self.registering is not None:
            self.registering.join()
        if self.client is not None:
            for fut in list(self.running) + list(self.probes.values()):
                fut.cancel()
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

"""What a Dask worker runs: a plugin that admits it for grading, and the grading task.

`GradingWorker` is registered by the client and set up on every worker, also on those that join
later. It finds the worker's own course folder, refuses the worker (logs why, and never grants it
the task resource) unless its course version equals the client's and it has bubblewrap (or the
client allowed grading unsandboxed), then builds what every job needs: a scratch folder (and
removes those that dead workers left), the kernels' font cache, one unprivileged uid per thread
that no other process on the machine holds, warm grading modules. Only admitted workers
hold the resource that grading tasks require, so a refused worker never receives one.

`grade_remote` is one submission: the packed folder is recreated in a scratch folder of its own,
pipeline.grade_submission runs on it exactly as in the local pool, and the record goes back as
plain, bounded data; the scratch folder is removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from autograder.course import COURSE_FILE, CourseError, load_course
from autograder.grading import uid_slots
from autograder.grading.file_lock import try_lock
from autograder.grading.sandbox import find_bwrap
from autograder.grading.store import readable_by_kernels
from autograder.grading.version import course_version, differences

# The grading modules (nbformat, nbconvert, nbclient, the checks) are imported in _Grader, off the
# worker's event loop: unpickling this plugin must stay quick.

logger = logging.getLogger("autograder.dask")

COURSE_ENV = "AUTOGRADER_COURSE"  # the worker's course folder, when it was not started inside it
MAX_LOG_BYTES = 64 * 1024  # the kernel log's tail that travels back
RETURNED_NOTEBOOKS = 2  # a feedback page or an autograded notebook: at most this many notebooks' bytes
SETTING_UP = "its grading set-up is still running"
SCRATCH_PREFIX = "autograder-worker-"
ALIVE = ".alive"  # in each worker's scratch folder, flocked by that worker for as long as it lives
LOCKLESS_GRACE = 3600  # seconds a scratch folder without a lock file (an older grader's) is left alone


def plugin_name(version: dict[str, str]) -> str:
    return f"autograder-{version['all'][:16]}"


def find_course_root(hint: str) -> Path | None:
    """$AUTOGRADER_COURSE, else the worker's current folder, else the client's path if it exists here."""
    for candidate in (os.environ.get(COURSE_ENV), os.getcwd(), hint):
        if candidate and (Path(candidate) / COURSE_FILE).is_file():
            return Path(candidate).resolve()
    return None


def remove_abandoned_scratch(parent: Path, keep: Path | None = None) -> list[Path]:
    """Remove the scratch folders under PARENT of workers that died without cleaning up (SIGKILL, the
    OOM killer, a lost machine): those whose lock nobody holds. Only this uid's real folders are
    touched, never a link; one without a lock file (an older grader's) only after LOCKLESS_GRACE."""
    removed = []
    for folder in sorted(parent.glob(SCRATCH_PREFIX + "*")):
        try:
            info = folder.lstat()
        except FileNotFoundError:
            continue
        if folder == keep or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue
        try:
            fd = try_lock(folder / ALIVE, create=False)
            if fd is None:  # its worker is alive
                continue
        except FileNotFoundError:  # a folder of an older grader
            if time.time() - info.st_mtime < LOCKLESS_GRACE:
                continue
            fd = None
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if fd is not None:
            os.close(fd)
        removed.append(folder)
    return removed


class _Grader:
    """An admitted worker's grading state."""

    def __init__(self, root: Path, bwrap: str | None, threads: int):
        from autograder.grading.judge_child import start_fork_server
        from autograder.grading.kernel_cache import build_kernel_cache
        from autograder.grading.pipeline import warm_up

        self.course = load_course(root)
        self.bwrap = bwrap
        # Locked before it takes the name other workers scan for: none of them can take it for a dead one's.
        starting = Path(tempfile.mkdtemp(prefix=".autograder-starting-"))
        alive = try_lock(starting / ALIVE)
        if alive is None:  # nobody else knows this folder yet
            raise RuntimeError(f"{starting}: another process holds the lock of this new scratch folder")
        self.alive = alive
        self.scratch = starting.with_name(SCRATCH_PREFIX + starting.name.rsplit("-", 1)[1])
        os.rename(starting, self.scratch)
        os.chmod(self.scratch, 0o755)
        removed = remove_abandoned_scratch(self.scratch.parent, keep=self.scratch)
        if removed:
            logger.info("autograder: removed %d scratch folders of workers that died: %s", len(removed), removed)
        self.cache = build_kernel_cache(self.scratch / "kernel-cache")
        self.slots = uid_slots.claim(threads) if bwrap and os.geteuid() == 0 else []
        self.uids: queue.Queue[int | None] = queue.Queue()
        for slot in self.slots:
            self.uids.put(slot.uid)
        if not self.slots:
            for _ in range(threads):
                self.uids.put(None)
        self.probes_lock = threading.Lock()
        warm_up(self.course)
        start_fork_server(self.course)

    def probes(self, packed: dict) -> Path:
        """The assignment's probes, written once per worker (read-only to kernels)."""
        from autograder.grading.transfer import digest, unpack_folder

        folder = self.scratch / "probes" / digest(packed)
        with self.probes_lock:
            if not folder.is_dir():
                tmp = folder.with_name(folder.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                unpack_folder(packed, tmp)
                readable_by_kernels(tmp)
                tmp.rename(folder)
        return folder

    def grade(self, payload: dict[str, Any], probes: dict) -> dict[str, Any]:
        from autograder.grading.pipeline import Job, WorkerConfig, grade_submission
        from autograder.grading.transfer import unpack_folder

        uid = self.uids.get()
        scratch = Path(tempfile.mkdtemp(dir=self.scratch, prefix="job-"))
        try:
            os.chmod(scratch, 0o755)
            job = Job(
                student_id=payload["student_id"],
                assignment_id=payload["assignment_id"],
                submission_dir=unpack_folder(payload["files"], scratch / "submission"),
                work=scratch / "work",
                probes=self.probes(probes),
                key=payload["key"],
            )
            cfg = WorkerConfig(course=self.course, bwrap=self.bwrap, uid=uid, cache=self.cache)
            result = grade_submission(cfg, job)
            for nb in result["notebooks"]:
                _bound_returned(nb, job.work / nb["name"] / "kernel.log")
            return result
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self.uids.put(uid)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        os.close(self.alive)
        for slot in self.slots:
            slot.release()


def _bound_returned(nb: dict[str, Any], kernel_log: Path) -> None:
    """Drop this worker's paths, add the kernel log's tail, cut what would be too large to send."""
    from autograder.grading.validate import MAX_NOTEBOOK_BYTES

    limit = RETURNED_NOTEBOOKS * MAX_NOTEBOOK_BYTES
    nb.pop("autograded_path", None)
    try:
        with open(kernel_log, "rb") as f:
            f.seek(max(0, kernel_log.stat().st_size - MAX_LOG_BYTES))
            nb["kernel_log"] = f.read().decode("utf-8", "replace")
    except OSError:
        pass
    for key in ("feedback_html", "autograded"):
        text = nb.get(key)
        if text is not None and len(text) > limit:
            del nb[key]
            nb["message"] = (nb.get("message") or "") + f" (the {key} was larger than {limit} bytes)"


class GradingWorker(WorkerPlugin):
    """Admit a worker for grading, or refuse it with a reason (see the module docstring)."""

    def __init__(self, version: dict[str, str], course_hint: str, allow_unsandboxed: bool):
        self.version = version
        self.name = plugin_name(version)
        self.resource = self.name
        self.course_hint = course_hint
        self.allow_unsandboxed = allow_unsandboxed
        self.refusal: str | None = SETTING_UP
        self.grader: _Grader | None = None

    def _admit(self, threads: int) -> str | None:
        if threads != 1:  # the grading modules are written for one notebook per process, like the local pool
            return f"it has {threads} threads: start workers with --nthreads 1 (and --nworkers N for N at once)"
        root = find_course_root(self.course_hint)
        if root is None:
            return (
                f"no course folder: start the worker in the course folder (the one with {COURSE_FILE}) "
                f"or set {COURSE_ENV}=/path/to/course"
            )
        try:
            mine = course_version(load_course(root))
        except CourseError as exc:
            return f"its course at {root} does not load: {exc}"
        differ = differences(mine, self.version)
        if differ:
            return (
                f"its course version ({root}) differs from the client's in: {', '.join(differ)}. "
                "Install the same course, toolkit, grader and package versions on every worker."
            )
        bwrap = find_bwrap()
        if bwrap is None and not self.allow_unsandboxed:
            return (
                "bubblewrap (bwrap) is not installed on this worker, so student code would run unsandboxed; "
                "install it (Debian/Ubuntu: apt-get install bubblewrap) or pass --allow-unsandboxed to course grade"
            )
        self.grader = _Grader(root, bwrap, threads)
        return None

    async def setup(self, worker: Any) -> None:
        try:
            self.refusal = await asyncio.to_thread(self._admit, worker.state.nthreads)
        except Exception as exc:  # the worker stays up, refused, and says why
            self.refusal = f"its grading set-up failed: {type(exc).__name__}: {exc}"
        if self.refusal is None:
            await worker.set_resources(**{self.resource: worker.state.nthreads})
        else:
            logger.error("autograder: this worker will not grade: %s", self.refusal)

    def teardown(self, worker: Any) -> None:
        if self.grader is not None:
            self.grader.close()


def worker_status(dask_worker: Any, name: str) -> str | None:
    """None when this worker was admitted for NAME's course version, else why not (for client.run)."""
    plugin = dask_worker.plugins.get(name)
    return "the autograder plugin is not set up" if plugin is None else plugin.refusal


def probes_data(packed: dict) -> dict:
    """A task whose result is the probes: the scheduler recomputes it if the worker holding it dies."""
    return packed


def grade_remote(name: str, payload: dict[str, Any], probes: dict) -> dict[str, Any]:
    """Grade one packed submission on this worker (the Dask task)."""
    worker = get_worker()
    plugin = worker.plugins.get(name)
    if plugin is None or plugin.grader is None:
        why = plugin.refusal if plugin is not None else "the autograder plugin is not set up"
        raise RuntimeError(f"worker {worker.address} may not grade: {why}")
    result = plugin.grader.grade(payload, probes)
    result["worker"] = worker.address
    return result

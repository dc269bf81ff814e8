"""Run the judge of one notebook in a child process under `grading.judge` limits.

The evidence is written by an untrusted kernel, and judging it builds Keras models and runs them,
so a hostile record could otherwise take the grading worker's memory or time. The child sets
RLIMIT_AS to `judge.memory_mb` before it reads anything and reports each part as it goes:
("start", grade_id), then ("verdict", dict). The parent gives each part `judge.timeout` seconds.
When the child passes a limit (killed on time, or dead from memory), the part it was judging
scores 0 with a sentence saying why and the parts after it are judged in a fresh child, so one
hostile part costs at most its own limits and never the rest of the notebook or the class.

A child that dies before it is ready is the grader's fault and raises (a `grader error`).

The child comes from a fork server, never a plain fork: the worker may have loaded TensorFlow,
whose threads do not survive fork. The fork server is started once per worker process, with the
judge's modules and TensorFlow imported but never run (judge_preload.py), so a child starts in
milliseconds and does not pay TensorFlow's import for each notebook.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

from autograder.course import Assignment, Course, Notebook
from autograder.grading.judge import Verdict, judge_parts, memory_stop

_CONTEXT: Any = None
_PRELOAD = [__name__]
_PRELOAD_TENSORFLOW = "autograder.grading.judge_preload"  # TensorFlow and Keras, imported but never run
_OUT_OF_MEMORY = {-signal.SIGKILL, -signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS}


def _context(preload: list[str] | None = None) -> Any:
    """The fork server's context; the first call decides what it preloads (default: everything)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD + (preload if preload is not None else [_PRELOAD_TENSORFLOW]))
        _CONTEXT = ctx
    return _CONTEXT


def start_fork_server(course: Course, assignments: list[str] | None = None) -> None:
    """Start the judge's fork server now (it returns at once): its imports then overlap the first kernel.

    TensorFlow (and every check) is preloaded only when some check of COURSE (of ASSIGNMENTS, the
    ones this worker grades, if given) needs it; otherwise only their check families are, so the
    judge of a label-only course never imports TensorFlow.
    Call it in a grading worker, never in a process that forks workers afterwards: a fork server
    belongs to the process that started it."""
    from multiprocessing import forkserver

    from autograder.checks import check_families, course_uses_tensorflow

    tensorflow = course_uses_tensorflow(course, assignments)
    _context([_PRELOAD_TENSORFLOW] if tensorflow else check_families(course, assignments))
    forkserver.ensure_running()


def _status_mib(pid: int | str, field: str) -> float | None:
    """A memory figure of /proc/PID/status (VmHWM: peak resident, VmPeak: peak address space) in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _child(conn: Any, memory_mb: int, args: tuple[Any, ...]) -> None:
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    conn.send(("ready", None))
    course, assignment, notebook, grade_ids, evidence_dir, probes_dir = args
    for grade_id in grade_ids:
        conn.send(("start", grade_id))
        (verdict,) = judge_parts(course, assignment, notebook, [grade_id], evidence_dir, probes_dir)
        conn.send(("verdict", verdict))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(("done", (_status_mib("self", "VmHWM"), _status_mib("self", "VmPeak"), usage.ru_utime + usage.ru_stime)))
    conn.close()


def _stopped(reason: str, part_max: float, grade_id: str) -> Verdict:
    return Verdict(grade_id, 0.0, part_max, reason)


def judge_bounded(
    course: Course,
    assignment: Assignment,
    notebook: Notebook,
    evidence_dir: Path,
    probes_dir: Path,
    stats: dict[str, Any] | None = None,
) -> list[Verdict]:
    """The verdict of every autograded part of NOTEBOOK, judged in bounded children (see the module docstring)."""
    limits = course.grading.judge
    parts = [p for p in notebook.parts if not p.manual]
    points = {p.grade_id: p.points for p in parts}
    pending = [p.grade_id for p in parts]
    verdicts: dict[str, Verdict] = {}
    peak, peak_vm, cpu = 0.0, 0.0, 0.0
    part_seconds: dict[str, float] = {}
    ctx = _context()
    while pending:
        receiver, sender = ctx.Pipe(duplex=False)
        args = (course, assignment, notebook, list(pending), evidence_dir, probes_dir)
        proc = ctx.Process(target=_child, args=(sender, limits.memory_mb, args), daemon=True)
        proc.start()
        sender.close()
        current: str | None = None
        started = time.monotonic()
        ready, timed_out = False, False
        deadline = time.monotonic() + limits.timeout
        try:
            while True:
                if not receiver.poll(max(0.0, deadline - time.monotonic())):
                    timed_out = True
                    break
                try:
                    kind, data = receiver.recv()
                except (EOFError, OSError):
                    break  # the child died
                if kind == "ready":
                    ready = True
                elif kind == "start":
                    current, started = data, time.monotonic()
                    deadline = started + limits.timeout
                elif kind == "verdict":
                    verdicts[data.grade_id] = data
                    part_seconds[data.grade_id] = round(time.monotonic() - started, 3)
                    pending.remove(data.grade_id)
                    current = None
                elif kind == "done":
                    peak, peak_vm = max(peak, data[0] or 0.0), max(peak_vm, data[1] or 0.0)
                    cpu += data[2]
                    break
        finally:
            hwm = _status_mib(proc.pid, "VmHWM") if proc.pid else None  # read before the kill: it cannot report
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            receiver.close()
            if hwm is not None:
                peak = max(peak, hwm)
        if not ready:
            raise RuntimeError(f"the judge's child process did not start (exit code {proc.exitcode})")
        if current is None:
            if pending and proc.exitcode != 0:  # died between parts: judge the rest again, once each
                current = pending[0]
            else:
                continue
        if timed_out:
            why = (
                f"The judge stopped: checking the recorded result took longer than {limits.timeout} s, "
                "the judge's limit for one part; nothing of this part was scored."
            )
        elif proc.exitcode in _OUT_OF_MEMORY:  # C++ allocators abort, the kernel's OOM killer kills
            why = memory_stop(limits.memory_mb)
        else:
            why = (
                f"The judge stopped: checking the recorded result crashed it (exit code {proc.exitcode}); "
                "nothing of this part was scored."
            )
        verdicts[current] = _stopped(why, points[current], current)
        pending.remove(current)
    if stats is not None:
        stats["judge_peak_mib"] = round(peak, 1)  # resident
        stats["judge_peak_vm_mib"] = round(peak_vm, 1)  # address space, what judge.memory_mb limits
        stats["judge_cpu_seconds"] = round(cpu, 2)  # of children that finished (a killed one cannot report)
        stats["judge_part_seconds"] = part_seconds
    return [verdicts[p.grade_id] for p in parts]

"""`course grade --dask` on a real Dask cluster: a `dask scheduler` and `dask worker` processes on 127.0.0.1.

The cluster (module fixture) has two workers started in the course folder and a third started in a
copy whose course.yml differs: it must be refused and grade nothing. The first test grades a small
class of the mini course (tests/hostile/minicourse.py) through `--dask` and through the local pool
and compares grades.csv, the gradebook and every feedback page byte for byte; the second kills a
worker (SIGKILL to its process group: nanny, worker, kernel) while it grades, and checks every
student still ends graded exactly once. Real sandboxed kernels, real nbgrader gradebook.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from hostile.corpus import corpus
from hostile.minicourse import CONVERT_SOLUTION, FORMAT_SOLUTION, FORMAT_WRONG, student_notebook, write_mini_course
from nbgrader.api import Gradebook

from autograder.grading.backends.dask_worker import ALIVE, SCRATCH_PREFIX, remove_abandoned_scratch
from autograder.grading.gradebook import db_url

BIN = Path(sys.executable).parent
DASK_ENV = {"DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
LOOPBACK = ("127.0.0.1", "::1")
START_TIMEOUT = 180  # the machine is shared: a worker's imports can take a while


def _spawn(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **DASK_ENV},
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 (closed with the process)
        start_new_session=True,  # its own process group: killing it kills nanny, worker and kernels
    )


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


class Cluster:
    def __init__(self, base: Path):
        self.base = base
        self.course = write_mini_course(base / "course")
        self.stale = write_mini_course(base / "stale-course")
        yml = self.stale / "course.yml"
        yml.write_text(yml.read_text().replace("tolerance: 1.0e-3", "tolerance: 2.0e-3"))
        scheduler_file = base / "scheduler.json"
        self.procs: dict[str, subprocess.Popen] = {}
        self.procs["scheduler"] = _spawn(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0"]
            + ["--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
            base,
            base / "scheduler.log",
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for name, cwd in (("good-1", self.course), ("good-2", self.course), ("stale", self.stale)):
            self.procs[name] = _spawn(
                [str(BIN / "dask"), "worker", self.address, "--name", name, "--nthreads", "1", "--nworkers", "1"]
                + ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"],
                cwd,
                base / f"{name}.log",
            )
        from distributed import Client

        self.client = Client(self.address, set_as_default=False, timeout=START_TIMEOUT)
        self.client.wait_for_workers(3, timeout=START_TIMEOUT)

    def workers(self) -> dict[str, str]:
        """worker name -> address."""
        return {w["name"]: addr for addr, w in self.client.scheduler_info(n_workers=-1)["workers"].items()}

    def grade(self, subs: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
        argv = [str(BIN / "course"), "grade", str(subs), "--out", str(out), *extra]
        return subprocess.run(argv, cwd=self.course, capture_output=True, text=True, timeout=900)

    def close(self) -> None:
        self.client.close()
        for proc in self.procs.values():
            _kill(proc)


@pytest.fixture(scope="module")
def cluster():
    with tempfile.TemporaryDirectory(prefix="dask-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        c = Cluster(base)
        try:
            yield c
        finally:
            c.close()


def _class(folder: Path, notebooks: dict[str, bytes | None]) -> Path:
    for student, content in notebooks.items():
        (folder / student).mkdir(parents=True)
        if content is None:
            (folder / student / "other").mkdir()
        else:
            (folder / student / "mini").mkdir()
            (folder / student / "mini" / "mini.ipynb").write_bytes(content)
    return folder


def _rows(out: Path) -> list[dict]:
    with open(out / "grades.csv", newline="") as f:
        return list(csv.DictReader(f))


def _gradebook(out: Path) -> dict[str, tuple[float, float, float]]:
    with Gradebook(db_url(out / "course"), course_id="mini-course") as gb:
        return {s.student.id: (s.score, s.max_score, s.code_score) for a in gb.assignments for s in a.submissions}


def _stored(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "work" / "results").glob("*/mini.json")}


def _untimed(path: Path) -> list:
    cells = nbformat.reads(path.read_text(), 4).cells
    for cell in cells:
        cell.metadata.pop("execution", None)
    return cells


def test_dask_grades_like_the_local_pool(cluster):
    cases = {c.student_id: c for c in corpus(repo="/nonexistent", out="/nonexistent", submissions="", marker="")}
    chosen = ["honest_full", "honest_half", "honest_blank", "os_exit", "corrupt_json", "not_submitted"]
    subs = _class(cluster.base / "class", {sid: cases[sid].content for sid in chosen})
    (subs / "honest_full" / "mini" / "notes.txt").write_text("my notes\n")  # travels with the notebook
    os.symlink("/etc/hostname", subs / "honest_full" / "mini" / "link")  # travels as a link

    t0 = time.monotonic()
    local = cluster.grade(subs, cluster.base / "local", "--workers", "2")
    t_local = time.monotonic() - t0
    t0 = time.monotonic()
    dask = cluster.grade(subs, cluster.base / "dask", "--dask", cluster.address)
    t_dask = time.monotonic() - t0
    print(f"local pool {t_local:.1f} s, dask {t_dask:.1f} s")
    assert local.returncode == 0, local.stderr[-3000:]
    assert dask.returncode == 0, dask.stderr[-3000:]

    lo, da = cluster.base / "local", cluster.base / "dask"
    assert (lo / "grades.csv").read_bytes() == (da / "grades.csv").read_bytes()
    assert [r["student_id"] for r in _rows(da)] == sorted(chosen)
    assert {r["student_id"]: r["status"] for r in _rows(da)}["os_exit"] == "kernel died"
    assert _gradebook(lo) == _gradebook(da) and len(_gradebook(da)) == len(chosen) - 1  # no row for not_submitted
    pages = sorted(p.relative_to(lo / "feedback") for p in (lo / "feedback").rglob("*.html"))
    assert len(pages) == len(chosen)
    for page in pages:
        assert (lo / "feedback" / page).read_bytes() == (da / "feedback" / page).read_bytes(), page
    for kind in ("autograded", "submitted"):  # what formgrader shows, but for the kernels' timestamps
        nb = f"{kind}/honest_full/mini/mini.ipynb"
        assert _untimed(da / "course" / nb) == _untimed(lo / "course" / nb)

    # graded on the two admitted workers only; the stale one was refused and said why
    workers = cluster.workers()
    graders = {r["worker"] for r in _stored(da).values()}
    assert graders <= {workers["good-1"], workers["good-2"]}, graders
    assert f"Dask worker {workers['stale']} refused: its course version" in dask.stderr
    assert "differs from the client's in: course.yml." in dask.stderr
    assert "grading: 100%" in dask.stderr  # the progress bar, as in the local pool

    # everything listens on loopback only (dashboards included)
    for name, proc in cluster.procs.items():
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            for conn in p.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    assert conn.laddr.ip in LOOPBACK, (name, conn)


def test_a_worker_killed_mid_batch_loses_no_student(cluster):
    slow = CONVERT_SOLUTION + "\nimport time\ntime.sleep(2)  # a slower student: the kill lands mid-task\n"
    notebooks = {f"s{i}": student_notebook(FORMAT_WRONG if i % 2 else FORMAT_SOLUTION, slow) for i in range(6)}
    subs = _class(cluster.base / "class-kill", {s: nbformat.writes(nb).encode() for s, nb in notebooks.items()})
    out = cluster.base / "kill"
    workers = cluster.workers()
    victim, survivor = "good-1", "good-2"
    if victim not in workers:
        pytest.fail(f"worker {victim} is not up: {workers}")
    argv = [str(BIN / "course"), "grade", str(subs), "--out", str(out), "--dask", cluster.address]
    grading = subprocess.Popen(argv, cwd=cluster.course, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    in_flight: list[str] = []
    scratch: dict[str, Path] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and grading.poll() is None:
        done = list((out / "work" / "results").glob("*/mini.json")) if (out / "work").is_dir() else []
        processing = cluster.client.processing(workers=[workers[victim]]).get(workers[victim], [])
        in_flight = [k for k in processing if str(k).startswith("grade-")]
        if done and in_flight:
            scratch = {name: _scratch_of(cluster.procs[name]) for name in (victim, survivor)}  # both grading now
            _kill(cluster.procs[victim])
            break
        time.sleep(0.05)
    stdout, stderr = grading.communicate(timeout=900)
    assert in_flight, "the victim was never seen grading"
    assert grading.returncode == 0, stderr[-3000:]

    rows = _rows(out)
    assert sorted(r["student_id"] for r in rows) == sorted(notebooks)  # each exactly once
    expected = {f"s{i}": "2" if i % 2 else "4" for i in range(6)}
    assert {r["student_id"]: (r["status"], r["auto_score"]) for r in rows} == {
        s: ("graded", score) for s, score in expected.items()
    }
    assert sorted(_gradebook(out)) == sorted(notebooks)
    stored = _stored(out)
    lost = {key.split("-", 1)[1].split("/")[0] for key in in_flight}  # grade-<student>/<assignment>-...
    for student in lost:
        assert stored[student]["worker"] == workers[survivor], (student, stored[student].get("worker"))
    assert shutil.which("bwrap")  # these were sandboxed gradings, not the --allow-unsandboxed path

    # SIGKILL left the victim's scratch folder behind; the next worker to start removes it, not a live one's
    assert scratch[victim].is_dir() and scratch[survivor].is_dir()
    assert scratch[victim] in remove_abandoned_scratch(scratch[victim].parent)
    assert not scratch[victim].exists() and scratch[survivor].is_dir()


def _scratch_of(proc: subprocess.Popen) -> Path:
    """The scratch folder a `dask worker` process tree holds open (its worker's lock file)."""
    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        for f in p.open_files():
            if Path(f.path).name == ALIVE and Path(f.path).parent.name.startswith(SCRATCH_PREFIX):
                return Path(f.path).parent
    raise AssertionError(f"no worker scratch folder is held open by {proc.args}")


def test_only_the_scratch_of_dead_workers_is_removed(tmp_path):
    def scratch(name: str, lock: bool = True) -> Path:
        folder = tmp_path / f"{SCRATCH_PREFIX}{name}"
        (folder / "job-1").mkdir(parents=True)
        if lock:
            (folder / ALIVE).touch()
        return folder

    dead, alive, recent, legacy = scratch("dead"), scratch("alive"), scratch("new", lock=False), scratch("old", False)
    being_set_up = tmp_path / ".autograder-starting-x"  # a worker's folder before it is locked and renamed
    being_set_up.mkdir()
    held = os.open(alive / ALIVE, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # as its living worker holds it
    old = time.time() - 2 * 3600
    os.utime(legacy, (old, old))
    os.utime(being_set_up, (old, old))
    outside = tmp_path / "not-scratch"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    os.symlink(outside, tmp_path / f"{SCRATCH_PREFIX}link")
    try:
        removed = remove_abandoned_scratch(tmp_path)
    finally:
        os.close(held)
    assert sorted(removed) == sorted([dead, legacy])
    assert alive.is_dir() and recent.is_dir() and being_set_up.is_dir() and (outside / "keep.txt").is_file()
    assert (tmp_path / f"{SCRATCH_PREFIX}link").is_symlink()

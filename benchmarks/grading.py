"""Grading speed: plain serial `nbgrader autograde` vs `course grade --workers 2`, same 20 submissions, one run.

    python benchmarks/grading.py [--count 20] [--workers 2] [--assignment review]
    python benchmarks/grading.py --dask [--count 20] [--workers 2] [--tasks 500]

The submissions are generated from the bundled examples (examples/submissions/*/<assignment>/),
cycled to COUNT students. nbgrader runs the notebooks unsandboxed, one after another, in one
`nbgrader autograde` call (its hidden cells record nothing outside grading, so it does a little
less work per notebook); `grade_class` runs each in a sandboxed kernel, judges the evidence, writes
the gradebook and the feedback. Prints both wall times and the ratio.

With --dask: the local pool against a Dask LocalCluster with the same number of worker processes
(one thread each, on 127.0.0.1), in one run and on the same submissions: local, Dask on the fresh
cluster (its workers set up the grading plugin: checks, caches), Dask again on warm workers, local
again (the machine's drift). Dask's overhead per submission is the difference to the mean local
time. On a shared machine the load drifts between runs, so each run is also measured against its
own pipeline time (the seconds grade_submission took, summed over submissions, from the result
store): "beyond the pipeline" is wall x workers - pipeline seconds, per submission, which load
inflates in both backends alike. Then the scheduler's own cost per task: TASKS no-op tasks one
after another (a round trip each) and all at once (throughput).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_submissions(assignment: str, notebook: str, count: int, dest: Path) -> list[str]:
    examples = sorted((REPO / "examples" / "submissions").glob(f"*/{assignment}/{notebook}.ipynb"))
    if not examples:
        raise SystemExit(f"no example submissions for {assignment} under examples/submissions")
    students = []
    for i in range(count):
        sid = f"student{i:02d}"
        folder = dest / sid / assignment
        folder.mkdir(parents=True)
        shutil.copyfile(examples[i % len(examples)], folder / f"{notebook}.ipynb")
        students.append(sid)
    return students


def time_nbgrader(course, assignment: str, submissions: Path, root: Path) -> float:
    from autograder.nbgrader_setup import write_course_root

    write_course_root(course, root, [assignment])
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    nbgrader = [sys.executable, "-m", "nbgrader"]
    run = dict(cwd=root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([*nbgrader, "generate_assignment", assignment, "--force"], **run)
    shutil.copytree(submissions, root / "submitted")
    start = time.perf_counter()
    subprocess.run([*nbgrader, "autograde", assignment, "--force"], **run)
    return time.perf_counter() - start


def time_course_grade(course, assignment: str, submissions: Path, out: Path, workers: int) -> tuple[float, list]:
    from autograder.grading.batch import grade_class

    start = time.perf_counter()
    report = grade_class(course, submissions, out, assignments=[assignment], workers=workers, progress=False)
    return time.perf_counter() - start, report.rows


def _noop(x: int) -> int:
    return x


def scheduler_overhead(client, tasks: int) -> tuple[float, float]:
    """Seconds per no-op task: submitted one after another (round trip) and all at once (throughput)."""
    start = time.perf_counter()
    for i in range(tasks):
        client.submit(_noop, i, pure=False).result()
    serial = (time.perf_counter() - start) / tasks
    start = time.perf_counter()
    client.gather(client.map(_noop, range(tasks), pure=False))
    return serial, (time.perf_counter() - start) / tasks


def pipeline_seconds(out: Path) -> float:
    """grade_submission's own seconds, summed over the submissions stored under OUT."""
    import json

    return sum(json.loads(p.read_text()).get("seconds", 0.0) for p in (out / "work" / "results").rglob("*.json"))


def dask_main(args, course, notebook: str) -> int:
    import dask
    from distributed import Client, LocalCluster

    from autograder.grading.batch import grade_class

    dask.config.set({"distributed.worker.daemon": False})
    n = args.count
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        subs = base / "submissions"
        make_submissions(args.assignment, notebook, n, subs)
        t_local1, rows = time_course_grade(course, args.assignment, subs, base / "local1", args.workers)
        start = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        t_cluster = time.perf_counter() - start
        try:
            timed = {}
            for label, folder in (("dask, fresh workers:", "fresh"), ("dask, warm workers:", "warm")):
                start = time.perf_counter()
                report = grade_class(
                    course,
                    subs,
                    base / folder,
                    assignments=[args.assignment],
                    progress=False,
                    dask=cluster.scheduler_address,
                )
                timed[label] = time.perf_counter() - start
                assert [(r.student_id, r.score, r.status) for r in report.rows] == [
                    (r.student_id, r.score, r.status) for r in rows
                ], "Dask graded differently from the local pool"
            with Client(cluster, set_as_default=False) as client:
                serial, batch = scheduler_overhead(client, args.tasks)
        finally:
            cluster.close()
        t_local2, _ = time_course_grade(course, args.assignment, subs, base / "local2", args.workers)
        beyond = {}  # seconds per submission outside grade_submission, from each run's own figures
        for label, folder, t in (
            ("local pool, first run:", "local1", t_local1),
            ("dask, fresh workers:", "fresh", timed["dask, fresh workers:"]),
            ("dask, warm workers:", "warm", timed["dask, warm workers:"]),
            ("local pool, last run:", "local2", t_local2),
        ):
            inside = pipeline_seconds(base / folder)
            beyond[label] = ((t * args.workers - inside) / n, inside / n)
    local = (t_local1 + t_local2) / 2
    graded = sum(r.status == "graded" for r in rows)
    per_local = local / n
    print(f"{n} submissions of {args.assignment}, {args.workers} worker processes, {os.cpu_count()} cores")
    print(f"  local pool, first / last run:  {t_local1:6.1f} s / {t_local2:.1f} s  ({per_local:.2f} s each)")
    print(f"  LocalCluster start:            {t_cluster:6.1f} s  ({graded} of {n} graded)")
    for label, t in timed.items():
        over = t / n - per_local
        print(f"  {label:<29}{t:6.1f} s  ({t / n:.2f} s each: {over:+.3f} s = {100 * over / per_local:+.1f} %)")
    print(f"  scheduler per no-op task:      {1000 * serial:.2f} ms one by one, {1000 * batch:.2f} ms in a batch")
    print("  per submission, pipeline (grade_submission) vs beyond it (wall x workers - pipeline):")
    for label, (outside, inside) in beyond.items():
        print(f"    {label:<27}{inside:6.2f} s inside, {outside:6.2f} s beyond = {100 * outside / inside:5.1f} %")
    local_beyond = (beyond["local pool, first run:"][0] + beyond["local pool, last run:"][0]) / 2
    for label in ("dask, fresh workers:", "dask, warm workers:"):
        outside, inside = beyond[label]
        extra = outside - local_beyond
        print(f"  Dask's own overhead, {label:<22}{extra:+.3f} s per submission = {100 * extra / inside:+.1f} %")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--assignment", default="review")
    ap.add_argument("--dask", action="store_true", help="the local pool against a Dask LocalCluster")
    ap.add_argument("--tasks", type=int, default=500, help="no-op tasks for the scheduler's overhead (--dask)")
    args = ap.parse_args()
    from autograder.course import load_course

    course = load_course(REPO)
    notebook = course.assignment(args.assignment).notebooks[0].name
    if args.dask:
        return dask_main(args, course, notebook)
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        subs = base / "submissions"
        make_submissions(args.assignment, notebook, args.count, subs)
        t_nb = time_nbgrader(course, args.assignment, subs, base / "nbgrader")
        t_cg, rows = time_course_grade(course, args.assignment, subs, base / "out", args.workers)
    graded = sum(r.status == "graded" for r in rows)
    print(f"{args.count} submissions of {args.assignment} on {os.cpu_count()} cores")
    print(f"  nbgrader autograde (serial, unsandboxed):         {t_nb:7.1f} s  ({t_nb / args.count:.2f} s each)")
    print(
        f"  course grade --workers {args.workers} (sandboxed, judged): {t_cg:7.1f} s  "
        f"({t_cg / args.count:.2f} s each, {graded} graded)"
    )
    print(f"  speed-up: {t_nb / t_cg:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

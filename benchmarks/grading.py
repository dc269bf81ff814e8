"""Grading speed: plain serial `nbgrader autograde` vs `course grade --workers 2`, same 20 submissions, one run.

    python benchmarks/grading.py [--count 20] [--workers 2] [--assignment review]

The submissions are generated from the bundled examples (examples/submissions/*/<assignment>/),
cycled to COUNT students. nbgrader runs the notebooks unsandboxed, one after another, in one
`nbgrader autograde` call (its hidden cells record nothing outside grading, so it does a little
less work per notebook); `grade_class` runs each in a sandboxed kernel, judges the evidence, writes
the gradebook and the feedback. Prints both wall times and the ratio.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--assignment", default="review")
    args = ap.parse_args()
    from autograder.course import load_course

    course = load_course(REPO)
    notebook = course.assignment(args.assignment).notebooks[0].name
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

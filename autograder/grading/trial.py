"""Run one notebook with probes and judge it, without a sandbox: the author's quick loop.

    python -m autograder.grading.trial source/lab1/lab1_cam_fashion_mnist.ipynb

Only for trusted notebooks (the instructor's own source notebooks): student submissions are
graded by `course grade`, which runs them sandboxed. Prints each cell's errors and the verdicts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.course import Course, load_course
from autograder.grading.judge import Verdict, cell_errors, explain_missing, judge_notebook, write_probes
from cnnvis.evidence import EVIDENCE_ENV, PROBES_ENV

KERNEL_ARGS = ["--IPKernelApp.capture_fd_output=False"]


def find_notebook(course: Course, path: Path):
    name = path.stem
    for a in course.assignments:
        for nb in a.notebooks:
            if nb.name == name:
                return a, nb
    raise SystemExit(f"{path}: no notebook named {name!r} in course.yml")


def run_trial(
    course: Course, path: Path, workdir: Path, timeout: int = 600
) -> tuple[nbformat.NotebookNode, list[Verdict]]:
    assignment, notebook = find_notebook(course, path)
    probes, evidence = workdir / "probes", workdir / "evidence"
    write_probes(course, assignment, notebook, probes)
    evidence.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    env = {
        PROBES_ENV: str(probes),
        EVIDENCE_ENV: str(evidence),
        "CNNVIS_PROFILE": "grading",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "PYTHONHASHSEED": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            allow_errors=True,
            extra_arguments=KERNEL_ARGS,
            resources={"metadata": {"path": str(workdir)}},
        )
        with open(workdir / "kernel.log", "ab") as log:  # TensorFlow's C++ start-up lines, not the terminal
            try:
                client.execute(stdout=log, stderr=log)
            except CellExecutionError:
                pass
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    judged = judge_notebook(course, assignment, notebook, evidence, probes)
    return nb, explain_missing(judged, cell_errors(nb, course.grading.judge.max_string_chars))


def cell_seconds(nb: nbformat.NotebookNode) -> list[tuple[float, int]]:
    """(seconds, index) of each executed code cell, slowest first, from nbclient's timing metadata."""
    from datetime import datetime

    found = []
    for i, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            elapsed = datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z"))
            found.append((elapsed.total_seconds(), i))
    return sorted(found, reverse=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--course", type=Path, default=Path("."))
    ap.add_argument("--keep", type=Path, help="keep the working folder here")
    args = ap.parse_args(argv)
    course = load_course(args.course)
    work = args.keep or Path(tempfile.mkdtemp(prefix="trial-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    nb, verdicts = run_trial(course, args.notebook.resolve(), work)
    elapsed = time.perf_counter() - t0
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                print(f"cell {i}: {out['ename']}: {out['evalue']}")
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                print(f"cell {i}: stderr: {out['text'][:300]!r}")
    print("slowest cells: " + ", ".join(f"cell {i} {sec:.1f} s" for sec, i in cell_seconds(nb)[:6]))
    total = sum(v.score for v in verdicts)
    for v in verdicts:
        print(f"{v.grade_id:24s} {v.score:g}/{v.max_score:g}  {v.message}")
    print(f"total {total:g}/{sum(v.max_score for v in verdicts):g} in {elapsed:.1f} s (work folder {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

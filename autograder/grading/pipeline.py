"""Grade one submission (a student's folder for one assignment), in a worker process.

For each notebook of the assignment, small steps in order, each its own module:
validate (validate.py) → rebuild from source (rebuild.py) → prepare the working copy →
execute sandboxed (executor.py) → copy evidence out (evidence_copy.py) → judge (judge.py) →
feedback (feedback.py). The result is plain data sent back to the client (the grading process
that started the batch): verdicts, and per notebook the feedback page and the autograded notebook
as text (`feedback_html`, `autograded`); the client alone writes them, the result store and the
gradebook (batch.py). JOB.work is this worker's scratch (working copy, evidence, kernel log).
Nothing here raises for a bad submission: every fault is a status and a message.
"""

from __future__ import annotations

import functools
import html
import os
import re
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from autograder.course import Assignment, Course, Notebook
from autograder.grading.evidence_copy import EvidenceTooLarge, collect_evidence
from autograder.grading.evidence_read import cut
from autograder.grading.executor import execute_notebook
from autograder.grading.feedback import annotate_autograded, render_feedback, saved_images
from autograder.grading.judge import Verdict, cell_errors, explain_missing, judge_notebook
from autograder.grading.rebuild import rebuild
from autograder.grading.sandbox import Limits, SandboxPlan
from autograder.grading.sanitize import clean_notebook, with_csp
from autograder.grading.submission_copy import NOT_REGULAR, CopyReport, copy_submission, plain_file_problem
from autograder.grading.validate import read_submitted

RETRY_STATUSES = ("kernel failed to start", "grader error")  # the grader's fault: graded again on resume


@dataclass(frozen=True)
class Job:
    student_id: str
    assignment_id: str
    submission_dir: Path  # SUBMISSIONS/<student>/<assignment>
    work: Path  # OUT/work/submissions/<student>/<assignment>
    probes: Path  # OUT/work/probes/<assignment> (one folder per notebook inside)
    key: str


@dataclass(frozen=True)
class WorkerConfig:
    course: Course
    bwrap: str | None
    uid: int | None
    cache: Path | None = None  # kernel_cache folder shared by the batch


def warm_up(course: Course, assignments: list[str] | None = None) -> None:
    """Do once, before the first job, what it would otherwise pay for: the check families COURSE (or
    only its ASSIGNMENTS) uses, so a label-only course never imports scipy's statistics, and the
    feedback templates."""
    from autograder.checks import check_families

    _warm_up(tuple(check_families(course, assignments)))


@functools.cache  # forked workers inherit the parent's warm-up and skip it
def _warm_up(families: tuple[str, ...]) -> None:
    import importlib

    from autograder.grading.feedback import exporter

    for family in families:
        importlib.import_module(family)
    exporter().from_notebook_node(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("*x*"), nbformat.v4.new_code_cell("x = 1")])
    )


def _chown_tree(path: Path, uid: int) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, uid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


def _working_copy(job: Job, nb_work: Path, course: Course, assignment: Assignment) -> tuple[Path, CopyReport]:
    """A fresh copy of the student's folder: regular files only, within `grading.submission` limits."""
    copy = nb_work / "copy"
    if nb_work.exists():
        shutil.rmtree(nb_work)
    copy.mkdir(parents=True)
    report = copy_submission(
        job.submission_dir,
        copy,
        course.grading.submission,
        notebooks={nb.filename for nb in assignment.notebooks},
        skip={"evidence", ".tmp"},
    )
    (copy / "evidence").mkdir()
    (copy / ".tmp").mkdir()
    return copy, report


def _zero_verdicts(spec: Notebook, why: str) -> list[dict[str, Any]]:
    return [Verdict(p.grade_id, 0.0, p.points, why).to_dict() for p in spec.parts if not p.manual]


NEAR_MISS_COPY = re.compile(r"(\s*\(\d+\)|-copy\d*|\s+copy(\s*\d+)?)$")  # JupyterLab's "x (1)", "x-Copy1"
NEAR_MISS_SCAN = 500  # files looked at in a submission folder at most


def _loose(stem: str) -> str:
    return re.sub(r"[^a-z0-9]", "", NEAR_MISS_COPY.sub("", stem.lower()))


def near_miss_hint(folder: Path, filename: str) -> str:
    """A sentence naming notebooks in FOLDER (or its subfolders) that look like FILENAME saved under
    another name (a copy, another case, a subfolder), and what to rename; "" when there are none."""
    want = _loose(Path(filename).stem)
    found: list[str] = []
    seen = 0
    for root, dirs, files in os.walk(folder):  # os.walk does not follow symlinked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .ipynb_checkpoints is not a submission
        for name in sorted(files):
            seen += 1
            rel = os.path.relpath(os.path.join(root, name), folder)
            if name.lower().endswith(".ipynb") and rel != filename and _loose(Path(name).stem) == want:
                found.append("".join(ch for ch in rel if ch.isprintable())[:120])
        if seen > NEAR_MISS_SCAN or len(found) >= 3:
            break
    if not found:
        return ""
    names = ", ".join(f"'{n}'" for n in found[:3])
    return (
        f" Found {names}: if that is your work, rename it to '{filename}' (exactly, in the assignment "
        "folder itself) and submit again."
    )


def _plain_feedback(title: str, text: str) -> str:
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
    return with_csp(page + f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>")


def grade_notebook(cfg: WorkerConfig, job: Job, assignment: Assignment, spec: Notebook) -> dict[str, Any]:
    course = cfg.course
    shown = f"{job.student_id}/{job.assignment_id}/{spec.filename}"
    path = job.submission_dir / spec.filename
    out: dict[str, Any] = {"name": spec.name, "timings": {}}
    irregular = plain_file_problem(job.submission_dir, spec.filename, shown)
    if irregular:
        out.update(status=NOT_REGULAR, message=irregular, sha256=None, verdicts=_zero_verdicts(spec, irregular))
        why = f"Your notebook could not be graded: {irregular}"
        out["feedback_html"] = _plain_feedback(f"Feedback: {spec.name}", why)
        return out
    if not path.is_file():
        why = f"{shown} was not submitted." + near_miss_hint(job.submission_dir, spec.filename)
        out.update(status="missing", message=why, sha256=None, verdicts=_zero_verdicts(spec, why))
        out["feedback_html"] = _plain_feedback(f"Feedback: {spec.name}", why)
        return out
    submitted = read_submitted(path, shown)
    out.update(sha256=submitted.sha256)
    if submitted.notebook is None:
        why = f"corrupt: {submitted.problem}"
        out.update(status=why, message=str(submitted.problem), verdicts=_zero_verdicts(spec, str(submitted.problem)))
        out["feedback_html"] = _plain_feedback(
            f"Feedback: {spec.name}", f"Your notebook could not be graded: {submitted.problem}"
        )
        return out
    out["submitted_path"] = str(path)  # the gradebook copies it for formgrader: only a usable notebook

    t0 = time.monotonic()
    source = nbformat.read(course.source_dir / job.assignment_id / spec.filename, as_version=4)
    nb, report = rebuild(source, submitted.notebook)
    nb_work = job.work / spec.name
    copy, copied = _working_copy(job, nb_work, course, assignment)
    # IPC socket paths must fit in sun_path (107 bytes): a folder under OUT is often too deep.
    runtime = Path(tempfile.mkdtemp(prefix="cg-"))
    if cfg.uid is not None:
        _chown_tree(copy, cfg.uid)
    plan = SandboxPlan(
        workdir=copy,
        probes=job.probes / spec.name,
        runtime=runtime,
        limits=Limits.from_course(course),
        bwrap=cfg.bwrap,
        uid=cfg.uid,
        cache=cfg.cache,
    )
    out["timings"]["prepare"] = time.monotonic() - t0
    try:
        outcome = execute_notebook(nb, plan, nb_work / "kernel.log")
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    out["timings"]["execute"] = outcome.seconds
    out["cells_run"] = outcome.cells_run

    t0 = time.monotonic()
    evidence = nb_work / "evidence"
    max_bytes = course.grading.max_evidence_mb * 1024 * 1024
    try:
        collect_evidence(copy / "evidence", evidence, max_bytes)
        judged = judge_notebook(course, assignment, spec, evidence, plan.probes, stats=out["timings"])
        errors = cell_errors(nb, course.grading.judge.max_string_chars)
        verdicts = [v.to_dict() for v in explain_missing(judged, errors)]
        saved_images(spec, evidence, verdicts)
    except EvidenceTooLarge as exc:
        verdicts = _zero_verdicts(spec, f"The notebook left {exc}; nothing was judged.")
    out["timings"]["judge"] = time.monotonic() - t0

    status = "graded" if outcome.completed else outcome.status
    message = outcome.message
    if report.answers_missing:
        missing = ", ".join(report.answers_missing)
        message = (message + " " if message else "") + f"Answer cells not found (release stub used): {missing}."
    if copied.summary():
        message = (message + " " if message else "") + copied.summary()
    by_part = {v["grade_id"]: v for v in verdicts}
    inert = clean_notebook(nb)  # what formgrader and the feedback page render (sanitize.py)
    out["autograded"] = nbformat.writes(annotate_autograded(inert, spec, by_part))
    t0 = time.monotonic()
    out["feedback_html"] = render_feedback(inert, spec, by_part, status, message)
    out["timings"]["feedback"] = time.monotonic() - t0
    out.update(status=status, message=message, verdicts=verdicts)
    out["rebuild"] = {"found": report.answers_found, "missing": report.answers_missing, "extra": report.extra_cells}
    return out


def _combine(notebooks: list[dict[str, Any]]) -> tuple[str, str]:
    statuses = [nb["status"] for nb in notebooks]
    messages = "; ".join(f"{nb['name']}: {nb['message']}" for nb in notebooks if nb.get("message"))
    if all(s == "missing" for s in statuses):
        return "missing", messages
    for s in statuses:
        if s != "graded":
            return s, messages
    return "graded", messages


def grade_submission(cfg: WorkerConfig, job: Job) -> dict[str, Any]:
    """The result record for JOB; never raises for anything the submission did."""
    start = time.monotonic()
    assignment = cfg.course.assignment(job.assignment_id)
    notebooks = []
    for spec in assignment.notebooks:
        try:
            notebooks.append(grade_notebook(cfg, job, assignment, spec))
        except Exception as exc:  # a grader bug must not lose the rest of the class
            why = f"grader error: {type(exc).__name__}: {cut(str(exc), cfg.course.grading.judge.max_string_chars)}"
            notebooks.append(
                {
                    "name": spec.name,
                    "status": "grader error",
                    "message": why,
                    "verdicts": _zero_verdicts(spec, why),
                    "traceback": traceback.format_exc()[-4000:],
                }
            )
    status, message = _combine(notebooks)
    auto = sum(v["score"] for nb in notebooks for v in nb["verdicts"])
    return {
        "student_id": job.student_id,
        "assignment": job.assignment_id,
        "key": job.key,
        "status": status,
        "message": message,
        "final": status not in RETRY_STATUSES,
        "auto_score": auto,
        "auto_max": assignment.auto_max,
        "max_score": assignment.max_score,
        "notebooks": notebooks,
        "seconds": time.monotonic() - start,
    }

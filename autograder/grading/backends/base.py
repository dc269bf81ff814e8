"""The seam between planning a batch and running it: submit jobs, collect one result per job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autograder.course import Course

if TYPE_CHECKING:  # the grading modules are heavy to import; a Dask worker's plugin needs none of them
    from autograder.grading.pipeline import Job


class BackendUnavailable(RuntimeError):
    """The backend cannot grade at all (no scheduler, no admitted worker); nothing was graded."""


class Backend(Protocol):
    """Runs pipeline.grade_submission for each submitted job, somewhere, and returns its record.

    The calls come in this order: start (workers may still be starting when it returns) → submit
    (each job; it may wait in the backend) → release (the probes under PROBES_ROOT are written:
    workers may begin) → results (every submitted job exactly once, as they finish; a job that
    could not be run yields an error_result, never an exception) → close (always, also after an
    error).
    """

    def start(self, workers: int, jobs: int) -> None: ...

    def submit(self, job: Job) -> None: ...

    def release(self, probes_root: Path) -> None: ...

    def results(self) -> Iterator[tuple[Job, dict[str, Any]]]: ...

    def close(self) -> None: ...


def error_result(course: Course, job: Job, why: str) -> dict[str, Any]:
    """The record of a job the grader could not finish (retried on the next run: `final` is False)."""
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

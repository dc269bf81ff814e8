"""What the judge runs: one check per kind of graded part, named in course.yml (`check: family.name`).

A check has two halves that both run in the grading process, never in the student's kernel:
- `probes(ctx)` chooses the inputs the hidden test cell calls the student's functions on
  (deterministic for the course seed), written to the sandbox read-only;
- `judge(ctx, evidence)` reads what the hidden test recorded and returns the list of problems
  (empty means the part passes). Problems are sentences a student can act on.

Checks register themselves with @register; `get_check(name)` imports their family module lazily
so that, e.g., label checks never import TensorFlow.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from autograder.course import Assignment, Course, ModelSpec, Notebook, Part


@dataclass(frozen=True)
class CheckContext:
    course: Course
    assignment: Assignment
    notebook: Notebook
    part: Part

    @property
    def model_spec(self) -> ModelSpec | None:
        return self.course.model_for(self.notebook)

    @property
    def seed(self) -> int:
        """A seed per part, stable across runs, so probes differ between parts but never between runs."""
        return (self.course.seed * 1_000_003 + sum(map(ord, self.part.grade_id))) % (2**31)


@dataclass
class Evidence:
    """What a hidden test cell recorded for one part (see cnnvis.evidence)."""

    folder: Path
    values: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)


class Problems(list):
    """A check's problem sentences (a plain list of str) with the optional extras a verdict carries.

    `diagnoses`: short codes of the mistakes recognised (e.g. "zoom_order_2"), for the class report;
    `figure`: a base64 PNG the feedback shows (heatmap checks: student map beside the reference).
    """

    def __init__(self, items=(), diagnoses=(), figure: str | None = None):
        super().__init__(items)
        self.diagnoses: list[str] = list(diagnoses)
        self.figure = figure


class Check:
    name: ClassVar[str]
    # Whether judging loads a Keras model or runs TensorFlow: a worker whose course has no such check
    # does not preload TensorFlow into its judge's fork server (about 5 s of CPU per worker start).
    uses_tensorflow: ClassVar[bool] = True

    def probes(self, ctx: CheckContext) -> list[dict[str, Any]]:
        """Keyword-argument dicts for cnnvis.evidence.record_calls; [] when the part records only values."""
        return []

    def judge(self, ctx: CheckContext, evidence: Evidence) -> list[str]:
        """The problems found ([] passes); a `Problems` list may also carry diagnosis codes and a figure."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    _REGISTRY[cls.name] = cls
    return cls


def load_all() -> None:
    """Import every check family now (a grading worker does this once, before its first job)."""
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def _checks_of(course: Course, assignments: Iterable[str] | None) -> set[str]:
    wanted = None if assignments is None else set(assignments)
    return {
        part.check
        for a in course.assignments
        if wanted is None or a.id in wanted
        for nb in a.notebooks
        for part in nb.parts
        if not part.manual
    }


def course_uses_tensorflow(course: Course, assignments: Iterable[str] | None = None) -> bool:
    """True when an autograded part of COURSE (of ASSIGNMENTS only, if given) has a check that needs TensorFlow."""
    return any(get_check(name).uses_tensorflow for name in _checks_of(course, assignments))


def check_families(course: Course, assignments: Iterable[str] | None = None) -> list[str]:
    """The modules of the check families used by COURSE (ASSIGNMENTS only, if given): ["autograder.checks.labels"]."""
    return sorted({f"{__name__}.{name.split('.', 1)[0]}" for name in _checks_of(course, assignments)})


def get_check(name: str) -> Check:
    family = name.split(".", 1)[0]
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"autograder.checks.{family}")
        except ModuleNotFoundError:
            pass
    if name not in _REGISTRY:
        raise KeyError(f"no check named {name!r} (known: {sorted(_REGISTRY)})")
    return _REGISTRY[name]()

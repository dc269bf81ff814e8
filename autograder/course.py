"""course.yml → validated, typed objects.

Everything numeric about the course (points, model specifications, limits, data profiles) is read
from course.yml through this module. Validation errors name the file, the key path and what was
expected, so an instructor can fix a typo without reading a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COURSE_FILE = "course.yml"


class CourseError(ValueError):
    """course.yml is missing, unreadable or does not match the expected schema."""


@dataclass(frozen=True)
class LayerSpec:
    name: str
    cls: str
    output_shape: tuple[int | None, ...]
    params: int


@dataclass(frozen=True)
class ModelSpec:
    key: str
    title: str
    input_shape: tuple[int, ...]
    num_classes: int
    label_format: str
    loss: str
    units: int
    activation: str
    cam_layer: str
    layers: tuple[LayerSpec, ...]
    total: int
    trainable: int
    non_trainable: int
    frozen_through: str | None = None
    dataset: str = "cats_vs_dogs"
    preprocessing: str = "scale01"


@dataclass(frozen=True)
class LabelFormat:
    name: str
    task: str
    shape: str
    loss: str
    units: str | int
    activation: str


@dataclass(frozen=True)
class Part:
    grade_id: str
    points: float
    check: str | None = None
    manual: bool = False


@dataclass(frozen=True)
class Notebook:
    name: str
    parts: tuple[Part, ...]
    model: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.ipynb"

    @property
    def max_score(self) -> float:
        return sum(p.points for p in self.parts)

    @property
    def auto_max(self) -> float:
        return sum(p.points for p in self.parts if not p.manual)


@dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    notebooks: tuple[Notebook, ...]

    @property
    def max_score(self) -> float:
        return sum(nb.max_score for nb in self.notebooks)

    @property
    def auto_max(self) -> float:
        return sum(nb.auto_max for nb in self.notebooks)

    def part(self, grade_id: str) -> Part:
        for nb in self.notebooks:
            for p in nb.parts:
                if p.grade_id == grade_id:
                    return p
        raise KeyError(grade_id)


@dataclass(frozen=True)
class JudgeLimits:
    """What the judge of one notebook may spend on untrusted evidence (course.yml `grading.judge`)."""

    memory_mb: int  # address space of the judge's child process
    timeout: int  # wall-clock seconds for judging one part
    cost_factor: float  # a recorded model may cost this many times the seed model (params, FLOPs, activations)
    max_string_chars: int  # every string from the kernel is cut to this length when evidence is read
    max_record_mb: int  # the JSON document of one part's evidence (arrays live in the npz)
    max_compression_ratio: int  # declared / compressed size of an npz or .keras member


@dataclass(frozen=True)
class SubmissionLimits:
    """What is copied from a submission folder into the kernel's working copy (course.yml `grading.submission`)."""

    extra_mb: int  # apparent size of the extra files copied (a sparse file counts in full)
    max_files: int
    max_depth: int


@dataclass(frozen=True)
class GradingLimits:
    cell_timeout: int
    notebook_timeout: int
    memory_mb: int
    max_processes: int
    max_open_files: int
    max_output_bytes: int
    max_evidence_mb: int
    workers: int | str
    tolerance: float
    max_figures: int  # inline PNG figures kept per notebook
    max_figure_bytes: int  # their total size (base64) per notebook
    judge: JudgeLimits
    submission: SubmissionLimits
    max_retries: int

    def worker_count(self) -> int:
        if self.workers == "auto":
            return max(1, os.cpu_count() or 1)
        return int(self.workers)


@dataclass(frozen=True)
class Course:
    root: Path
    id: str
    title: str
    seed: int
    profiles: dict[str, dict[str, Any]]
    grading: GradingLimits
    label_formats: dict[str, LabelFormat]
    models: dict[str, ModelSpec]
    assignments: tuple[Assignment, ...]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def assignment(self, assignment_id: str) -> Assignment:
        for a in self.assignments:
            if a.id == assignment_id:
                return a
        known = ", ".join(a.id for a in self.assignments)
        raise CourseError(f"{self.root / COURSE_FILE}: no assignment {assignment_id!r} (known: {known})")

    def model_for(self, notebook: Notebook) -> ModelSpec | None:
        return self.models[notebook.model] if notebook.model else None

    @property
    def source_dir(self) -> Path:
        return self.root / "source"

    @property
    def release_dir(self) -> Path:
        return self.root / "release"

    @property
    def solutions_dir(self) -> Path:
        return self.root / "solutions"


# --------------------------------------------------------------------------- validation helpers


class _Reader:
    """Typed access to a nested mapping that reports errors as `file: a.b[2].c: message`."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, message: str) -> CourseError:
        return CourseError(f"{self.path}: {where}: {message}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def get(self, m: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        here = f"{where}.{key}" if where else key
        if key not in m:
            if default is ...:
                raise self.fail(here, "missing")
            return default
        value = m[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(here, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(here, f"expected {_kind_name(kind)}, got {type(value).__name__} {value!r}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return {"str": "a string", "int": "an integer", "float": "a number", "list": "a list", "dict": "a mapping"}.get(
        kind.__name__, kind.__name__
    )


def _positive(r: _Reader, m: dict[str, Any], key: str, where: str, minimum: int = 1, kind: Any = int) -> Any:
    value = r.get(m, key, where, kind)
    if value < minimum:
        raise r.fail(f"{where}.{key}", f"must be at least {minimum}, got {value!r}")
    return value


def _judge_limits(r: _Reader, m: dict[str, Any]) -> JudgeLimits:
    w = "grading.judge"
    unknown = set(m) - set(JudgeLimits.__dataclass_fields__)
    if unknown:
        raise r.fail(w, f"unknown keys {sorted(unknown)}")
    return JudgeLimits(
        memory_mb=_positive(r, m, "memory_mb", w, minimum=256),
        timeout=_positive(r, m, "timeout", w),
        cost_factor=float(_positive(r, m, "cost_factor", w, kind=(int, float))),
        max_string_chars=_positive(r, m, "max_string_chars", w, minimum=80),
        max_record_mb=_positive(r, m, "max_record_mb", w),
        max_compression_ratio=_positive(r, m, "max_compression_ratio", w, minimum=2),
    )


def _submission_limits(r: _Reader, m: dict[str, Any]) -> SubmissionLimits:
    w = "grading.submission"
    unknown = set(m) - set(SubmissionLimits.__dataclass_fields__)
    if unknown:
        raise r.fail(w, f"unknown keys {sorted(unknown)}")
    return SubmissionLimits(
        extra_mb=_positive(r, m, "extra_mb", w, minimum=0),
        max_files=_positive(r, m, "max_files", w, minimum=0),
        max_depth=_positive(r, m, "max_depth", w),
    )


def _layers(r: _Reader, raw: Any, where: str) -> tuple[LayerSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise r.fail(where, "expected a non-empty list of [name, class, output shape, params]")
    out = []
    for i, row in enumerate(raw):
        here = f"{where}[{i}]"
        if not (isinstance(row, list) and len(row) == 4):
            raise r.fail(here, f"expected [name, class, output shape, params], got {row!r}")
        name, cls, shape, params = row
        if not isinstance(shape, list) or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
            raise r.fail(here, f"output shape must be a list of positive integers or null, got {shape!r}")
        if not isinstance(params, int) or params < 0:
            raise r.fail(here, f"parameter count must be a non-negative integer, got {params!r}")
        out.append(LayerSpec(str(name), str(cls), tuple(shape), params))
    return tuple(out)


def _model(r: _Reader, key: str, raw: Any, formats: dict[str, LabelFormat]) -> ModelSpec:
    where = f"models.{key}"
    m = r.mapping(raw, where)
    last = r.mapping(r.get(m, "last_layer", where, dict), f"{where}.last_layer")
    spec = ModelSpec(
        key=key,
        title=r.get(m, "title", where, str, key),
        input_shape=tuple(r.get(m, "input_shape", where, list)),
        num_classes=r.get(m, "num_classes", where, int),
        label_format=r.get(m, "label_format", where, str),
        loss=r.get(m, "loss", where, str),
        units=r.get(last, "units", f"{where}.last_layer", int),
        activation=r.get(last, "activation", f"{where}.last_layer", str),
        cam_layer=r.get(m, "cam_layer", where, str),
        layers=_layers(r, m.get("layers"), f"{where}.layers"),
        total=r.get(m, "total", where, int),
        trainable=r.get(m, "trainable", where, int),
        non_trainable=r.get(m, "non_trainable", where, int),
        frozen_through=r.get(m, "frozen_through", where, str, None),
        dataset=r.get(m, "dataset", where, str),
        preprocessing=r.get(m, "preprocessing", where, str),
    )
    if spec.dataset not in {"fashion_mnist", "cats_vs_dogs"}:
        raise r.fail(f"{where}.dataset", f"expected fashion_mnist or cats_vs_dogs, got {spec.dataset!r}")
    if spec.preprocessing not in {"scale01", "vgg16"}:
        raise r.fail(f"{where}.preprocessing", f"expected scale01 or vgg16, got {spec.preprocessing!r}")
    if spec.label_format not in formats:
        raise r.fail(f"{where}.label_format", f"{spec.label_format!r} is not one of label_formats: {sorted(formats)}")
    fmt = formats[spec.label_format]
    if fmt.loss != spec.loss:
        raise r.fail(
            f"{where}.loss", f"{spec.loss!r} does not fit label format {spec.label_format!r} (needs {fmt.loss})"
        )
    if fmt.activation != spec.activation:
        raise r.fail(
            f"{where}.last_layer.activation",
            f"{spec.activation!r} does not fit label format {spec.label_format!r} (needs {fmt.activation})",
        )
    layer_sum = sum(layer.params for layer in spec.layers)
    if layer_sum != spec.total:
        raise r.fail(f"{where}.total", f"{spec.total} but the layers add up to {layer_sum}")
    if spec.trainable + spec.non_trainable != spec.total:
        raise r.fail(f"{where}.trainable", "trainable + non_trainable must equal total")
    if spec.layers[-1].output_shape[-1] != spec.units:
        raise r.fail(
            f"{where}.last_layer.units", f"{spec.units} but the last layer outputs {spec.layers[-1].output_shape}"
        )
    if spec.cam_layer not in {layer.name for layer in spec.layers}:
        raise r.fail(f"{where}.cam_layer", f"{spec.cam_layer!r} is not one of the model's layers")
    return spec


def _part(r: _Reader, raw: Any, where: str) -> Part:
    m = r.mapping(raw, where)
    unknown = set(m) - {"grade_id", "points", "check", "manual"}
    if unknown:
        raise r.fail(where, f"unknown keys {sorted(unknown)}")
    part = Part(
        grade_id=r.get(m, "grade_id", where, str),
        points=float(r.get(m, "points", where, (int, float))),
        check=r.get(m, "check", where, str, None),
        manual=bool(r.get(m, "manual", where, bool, False)),
    )
    if part.points <= 0:
        raise r.fail(f"{where}.points", "must be positive")
    if part.manual == (part.check is not None):
        raise r.fail(where, "a part needs exactly one of `check: <name>` (autograded) or `manual: true`")
    return part


def load_course(root: str | os.PathLike[str] = ".") -> Course:
    """Read and validate ROOT/course.yml."""
    root = Path(root).resolve()
    path = root / COURSE_FILE
    r = _Reader(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CourseError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CourseError(f"{path}: not valid YAML: {exc}") from None
    raw = r.mapping(raw, "(top level)")

    info = r.mapping(r.get(raw, "course", "", dict), "course")
    profiles = r.mapping(r.get(raw, "profiles", "", dict), "profiles")
    for name in ("full", "student", "grading"):
        r.mapping(r.get(profiles, name, "profiles", dict), f"profiles.{name}")

    g = r.mapping(r.get(raw, "grading", "", dict), "grading")
    workers = r.get(g, "workers", "grading", (int, str))
    if isinstance(workers, str) and workers != "auto":
        raise r.fail("grading.workers", f"expected a positive integer or 'auto', got {workers!r}")
    limits = GradingLimits(
        cell_timeout=r.get(g, "cell_timeout", "grading", int),
        notebook_timeout=r.get(g, "notebook_timeout", "grading", int),
        memory_mb=r.get(g, "memory_mb", "grading", int),
        max_processes=r.get(g, "max_processes", "grading", int),
        max_open_files=r.get(g, "max_open_files", "grading", int),
        max_output_bytes=r.get(g, "max_output_bytes", "grading", int),
        max_evidence_mb=r.get(g, "max_evidence_mb", "grading", int),
        workers=workers,
        tolerance=float(r.get(g, "tolerance", "grading", (int, float))),
        max_figures=r.get(g, "max_figures", "grading", int),
        max_figure_bytes=r.get(g, "max_figure_bytes", "grading", int),
        judge=_judge_limits(r, r.mapping(r.get(g, "judge", "grading", dict), "grading.judge")),
        submission=_submission_limits(r, r.mapping(r.get(g, "submission", "grading", dict), "grading.submission")),
        max_retries=_positive(r, g, "max_retries", "grading", minimum=0),
    )
    for key in ("max_figures", "max_figure_bytes"):
        if getattr(limits, key) < 0:
            raise r.fail(f"grading.{key}", f"expected an integer >= 0, got {getattr(limits, key)}")

    formats = {}
    for name, fm in r.mapping(r.get(raw, "label_formats", "", dict), "label_formats").items():
        where = f"label_formats.{name}"
        fm = r.mapping(fm, where)
        formats[name] = LabelFormat(
            name=name,
            task=r.get(fm, "task", where, str),
            shape=r.get(fm, "shape", where, str),
            loss=r.get(fm, "loss", where, str),
            units=r.get(fm, "units", where, (int, str)),
            activation=r.get(fm, "activation", where, str),
        )

    models = {
        key: _model(r, key, spec, formats) for key, spec in r.mapping(r.get(raw, "models", "", dict), "models").items()
    }

    assignments = []
    seen_ids: dict[str, str] = {}
    for i, a in enumerate(r.get(raw, "assignments", "", list)):
        where = f"assignments[{i}]"
        a = r.mapping(a, where)
        notebooks = []
        for j, nb in enumerate(r.get(a, "notebooks", where, list)):
            nwhere = f"{where}.notebooks[{j}]"
            nb = r.mapping(nb, nwhere)
            model = r.get(nb, "model", nwhere, str, None)
            if model is not None and model not in models:
                raise r.fail(f"{nwhere}.model", f"{model!r} is not one of models: {sorted(models)}")
            parts = tuple(_part(r, p, f"{nwhere}.parts[{k}]") for k, p in enumerate(r.get(nb, "parts", nwhere, list)))
            for k, p in enumerate(parts):
                if p.grade_id in seen_ids:
                    raise r.fail(
                        f"{nwhere}.parts[{k}].grade_id", f"{p.grade_id!r} already used at {seen_ids[p.grade_id]}"
                    )
                seen_ids[p.grade_id] = f"{nwhere}.parts[{k}]"
            notebooks.append(Notebook(name=r.get(nb, "name", nwhere, str), parts=parts, model=model))
        assignments.append(
            Assignment(id=r.get(a, "id", where, str), title=r.get(a, "title", where, str), notebooks=tuple(notebooks))
        )
    ids = [a.id for a in assignments]
    if len(set(ids)) != len(ids):
        raise r.fail("assignments", f"duplicate assignment ids in {ids}")

    return Course(
        root=root,
        id=r.get(info, "id", "course", str),
        title=r.get(info, "title", "course", str),
        seed=r.get(info, "seed", "course", int),
        profiles=profiles,
        grading=limits,
        label_formats=formats,
        models=models,
        assignments=tuple(assignments),
        raw=raw,
    )

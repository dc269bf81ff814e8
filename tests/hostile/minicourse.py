"""A two-part course, small enough to grade in a second per submission, with real checks.

Parts `mini_detect_format` and `mini_convert` use the review's label checks (labels.detect_format,
labels.convert); `mini_written` is a manual written answer. The source notebook follows
docs/authoring.md: locked set-up, answer cells with solution markers, graded test cells with a
visible part and a hidden part that only records evidence.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat

ASSIGNMENT = "mini"
NOTEBOOK = "mini"
POINTS = {"mini_detect_format": 2, "mini_convert": 2}
WRITTEN_POINTS = 1

COURSE_YML = """
course: {id: mini-course, title: "Mini course for grading tests", seed: 1234}
profiles:
  full: {data: auto}
  student: {data: generated}
  grading: {data: generated}
grading:
  cell_timeout: 5
  notebook_timeout: 40
  memory_mb: 1024
  max_processes: 64
  max_open_files: 256
  max_output_bytes: 20000
  max_evidence_mb: 16
  workers: 2
  tolerance: 1.0e-3
  max_figures: 3
  max_figure_bytes: 200000
  max_retries: 1
  judge:
    {memory_mb: 4096, timeout: 30, cost_factor: 8, max_string_chars: 2000, max_record_mb: 4,
     max_compression_ratio: 200}
  submission: {extra_mb: 1, max_files: 50, max_depth: 4}
label_formats:
  integer:
    {task: single-label, shape: "(batch_size,)", loss: sparse_categorical_crossentropy,
     units: num_classes, activation: softmax}
  one-hot:
    {task: single-label, shape: "(batch_size, num_classes)", loss: categorical_crossentropy,
     units: num_classes, activation: softmax}
  multi-hot:
    {task: multi-label, shape: "(batch_size, num_classes)", loss: binary_crossentropy,
     units: num_classes, activation: sigmoid}
models: {}
assignments:
  - id: mini
    title: "Mini: label formats"
    notebooks:
      - name: mini
        parts:
          - {grade_id: mini_detect_format, points: 2, check: labels.detect_format}
          - {grade_id: mini_convert, points: 2, check: labels.convert}
          - {grade_id: mini_written, points: 1, manual: true}
"""

FORMAT_SOLUTION = """
def label_format(y):
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ValueError(f"labels must be numbers, got {y.dtype}")
    if y.ndim == 1:
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)) or np.any(y < 0):
            raise ValueError("a 1-D label array holds whole non-negative class ids")
        return "integer"
    if y.ndim == 2:
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("a 2-D label array holds only 0 and 1")
        return "one-hot" if np.all(y.sum(axis=1) == 1) else "multi-hot"
    raise ValueError(f"labels are 1-D or 2-D, got {y.ndim}-D")
"""

CONVERT_SOLUTION = """
def to_one_hot(y, num_classes):
    return np.eye(num_classes)[np.asarray(y, dtype=int)]


def to_integer(y_one_hot):
    return np.argmax(np.asarray(y_one_hot), axis=1)


def to_multi_hot(label_sets, num_classes):
    out = np.zeros((len(label_sets), num_classes))
    for row, labels in enumerate(label_sets):
        out[row, list(labels)] = 1
    return out
"""

# A wrong but plausible answer: integer arrays are never recognised, so the part fails.
FORMAT_WRONG = FORMAT_SOLUTION.replace('return "integer"', 'return "one-hot"')

STUB = "raise NotImplementedError()"


def _meta(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _answer(grade_id: str, body: str) -> nbformat.NotebookNode:
    src = "### BEGIN SOLUTION\n" + body.strip() + "\n### END SOLUTION"
    cell = nbformat.v4.new_code_cell(src, metadata=_meta(grade_id, solution=True))
    cell["id"] = grade_id
    return cell


def _test(grade_id: str, visible: str, hidden: str) -> nbformat.NotebookNode:
    src = textwrap.dedent(visible).strip() + "\n### BEGIN HIDDEN TESTS\n" + textwrap.dedent(hidden).strip()
    src += "\n### END HIDDEN TESTS"
    cell = nbformat.v4.new_code_cell(src, metadata=_meta(grade_id, grade=True, locked=True, points=POINTS[grade_id]))
    cell["id"] = grade_id
    return cell


def source_notebook() -> nbformat.NotebookNode:
    intro = nbformat.v4.new_markdown_cell("# Mini review\nImplement the functions below.")
    intro["id"] = "intro"
    setup = nbformat.v4.new_code_cell("import numpy as np", metadata=_meta("mini_setup", locked=True))
    setup["id"] = "mini_setup"
    written = nbformat.v4.new_markdown_cell(
        "### BEGIN SOLUTION\nA one-hot row has exactly one 1; a multi-hot row may have several.\n### END SOLUTION",
        metadata=_meta("mini_written", grade=True, solution=True, points=WRITTEN_POINTS),
    )
    written["id"] = "mini_written"
    cells = [
        intro,
        setup,
        _answer("mini_answer_format", FORMAT_SOLUTION),
        _test(
            "mini_detect_format",
            'assert label_format(np.array([2, 0, 1])) == "integer"',
            'from cnnvis import evidence\nevidence.record_calls("mini_detect_format", label_format)',
        ),
        _answer("mini_answer_convert", CONVERT_SOLUTION),
        _test(
            "mini_convert",
            "assert to_one_hot(np.array([1]), 2).tolist() == [[0.0, 1.0]]",
            'from cnnvis import evidence\nevidence.record_calls("mini_convert", '
            '{"to_one_hot": to_one_hot, "to_integer": to_integer, "to_multi_hot": to_multi_hot})',
        ),
        written,
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


def write_mini_course(root: Path) -> Path:
    """ROOT/course.yml and ROOT/source/mini/mini.ipynb; returns ROOT."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "course.yml").write_text(COURSE_YML.lstrip(), encoding="utf-8")
    folder = root / "source" / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(source_notebook(), folder / f"{NOTEBOOK}.ipynb")
    return root


def student_notebook(format_code: str | None = FORMAT_SOLUTION, convert_code: str | None = CONVERT_SOLUTION):
    """What a student hands in: the source without hidden tests or solutions, with these answers typed in."""
    nb = source_notebook()
    answers = {"mini_answer_format": format_code, "mini_answer_convert": convert_code}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = (answers[gid] or STUB).strip()
        elif "BEGIN HIDDEN TESTS" in cell.source:
            cell.source = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", cell.source, flags=re.S).strip()
        elif gid == "mini_written":
            cell.source = "Exactly one 1 per row versus any number of ones."
    return nb

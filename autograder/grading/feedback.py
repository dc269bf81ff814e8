"""Feedback HTML for one graded notebook: the student's work, the judge's verdicts, no hidden tests.

Built from the executed notebook with nbconvert. Every graded test cell shows only its visible
part (nbgrader's ClearHiddenTests) and, as its output, the judge's message instead of whatever
the kernel printed there (a traceback from a hidden line would show hidden code). Each graded
part gets a score header; written answers say a TA grades them. Outputs elsewhere that quote a
hidden-test line (student code can observe the cells it runs with) are withheld.
"""

from __future__ import annotations

import copy
import functools
import html
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters import Highlight2HTML
from nbconvert.filters.strings import clean_html
from nbformat import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests
from nbgrader.utils import is_grade, is_solution

from autograder.course import Notebook
from autograder.grading.sanitize import clean_notebook, with_csp
from autograder.grading.store import write_atomic

MIN_SECRET_LINE = 12  # shorter hidden lines (")", "else:") are not secrets worth withholding


def _from_source(cell: NotebookNode) -> bool:
    """A test or set-up cell of the source: only those hold hidden tests. Student cells never carry
    nbgrader metadata other than an answer's (rebuild.py), so their text, marker words included, is
    never cut or taken for a hidden line."""
    return bool(cell.get("metadata", {}).get("nbgrader")) and not is_solution(cell)


def _hidden_lines(nb: NotebookNode) -> set[str]:
    lines: set[str] = set()
    for cell in filter(_from_source, nb.cells):
        inside = False
        for line in cell.source.split("\n"):
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) >= MIN_SECRET_LINE:
                lines.add(line.strip())
    return lines


def _output_text(out: NotebookNode) -> str:
    parts = [str(out.get("text", "")), str(out.get("evalue", "")), "\n".join(out.get("traceback", []))]
    parts += [str(v) for v in out.get("data", {}).values()]
    return "\n".join(parts)


def _header(text: str) -> NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def feedback_notebook(
    executed: NotebookNode, spec: Notebook, verdicts: dict[str, dict], status: str, message: str
) -> NotebookNode:
    nb = copy.deepcopy(executed)
    secrets = _hidden_lines(nb)
    clear = ClearHiddenTests(enforce_metadata=False)
    parts = {p.grade_id: p for p in spec.parts}
    auto = sum(v["score"] for v in verdicts.values())
    summary = [f"# Feedback: {spec.name}", f"**Autograded score: {auto:g} / {spec.auto_max:g}**"]
    if spec.max_score > spec.auto_max:
        summary.append(f"Written answers ({spec.max_score - spec.auto_max:g} points) are graded by a TA.")
    if message:
        summary.append(f"**{status}:** {html.escape(message)}")
    cells: list[NotebookNode] = [_header("\n\n".join(summary))]
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        graded = is_grade(cell) and gid in parts
        if cell.cell_type == "code" and _from_source(cell):
            clear._remove_hidden_test_region(cell)
        if graded and not is_solution(cell):
            v = verdicts.get(gid)
            text = v["message"] if v else "This part was not graded."
            score = f"{v['score']:g} / {v['max_score']:g}" if v else f"0 / {parts[gid].points:g}"
            cells.append(_header(f"### Part `{gid}`: {score}"))
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        elif graded:
            cells.append(_header(f"### Part `{gid}`: written answer, {parts[gid].points:g} points, graded by a TA"))
        elif cell.cell_type == "code" and secrets:
            for i, out in enumerate(cell.outputs):
                text = _output_text(out)
                if any(s in text for s in secrets):
                    cell.outputs[i] = nbformat.v4.new_output(
                        "stream", name="stderr", text="[output withheld: it quoted a hidden test]\n"
                    )
        cells.append(cell)
    nb.cells = cells
    return nb


@functools.lru_cache(maxsize=4096)
def _clean_html(text: str) -> str:
    return clean_html(text)


class _CachedHighlight:
    """Pygments highlighting of a cell's source, cached: most cells are the same in every submission."""

    def __init__(self) -> None:
        self.highlight = Highlight2HTML(pygments_lexer="ipython3")  # every course notebook is Python
        self.cached = functools.lru_cache(maxsize=4096)(self._highlight)

    def _highlight(self, source: str, language: str | None, magics: str | None) -> str:
        return self.highlight(source, language, {"magics_language": magics} if magics else None)

    def __call__(self, source: str, language: str | None = None, metadata: dict | None = None) -> str:
        return self.cached(source, language, (metadata or {}).get("magics_language"))


@functools.cache
def exporter() -> HTMLExporter:
    """One exporter per grading process: building it compiles the templates, and its filters' caches
    (bleach's HTML sanitising, pygments) then serve the cells every student shares."""
    return HTMLExporter(template_name="lab", filters={"clean_html": _clean_html, "highlight_code": _CachedHighlight()})


def write_feedback(
    executed: NotebookNode, spec: Notebook, verdicts: dict[str, dict], status: str, message: str, path: Path
) -> None:
    nb = clean_notebook(feedback_notebook(executed, spec, verdicts, status, message))  # sanitize.py: inert page
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": f"Feedback: {spec.name}"}})
    write_atomic(path, with_csp(body).encode("utf-8"))

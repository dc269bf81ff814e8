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
from autograder.grading.store import write_atomic

MIN_SECRET_LINE = 12  # shorter hidden lines (")", "else:") are not secrets worth withholding


def _hidden_lines(nb: NotebookNode) -> set[str]:
    lines: set[str] = set()
    for cell in nb.cells:
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


# ----------------------------------------------------------------------------- the TA's grades
# `manual` maps a grade_id to {"score": float | None, "comment": str | None}: what a TA entered in
# formgrader (gradebook.class_grades). A TA's comment is plain text: escaped, newlines kept, and
# set as one raw-HTML line so neither markdown nor math ever interprets it.


def ta_comment_cell(entry: dict | None) -> NotebookNode | None:
    comment = (entry or {}).get("comment")
    if not comment:
        return None
    text = html.escape(str(comment).strip()).replace("$", "&#36;")
    text = "<br>".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    style = "border-left:4px solid #1565c0;background:#e3f2fd;padding:.5em 1em"
    return _header(f'<div class="ta-comment" style="{style}"><strong>TA comment:</strong><br>{text}</div>')


def ta_score_text(points: float, auto: float | None, entry: dict | None) -> str | None:
    """The part's score as the TA set it ("1.5 / 2, graded by a TA"), or None when the TA set none."""
    score = (entry or {}).get("score")
    if score is None:
        return None
    if auto is None:
        return f"{score:g} / {points:g}, graded by a TA"
    return f"{score:g} / {points:g} (set by a TA; the autograder gave {auto:g})"


def ta_total_line(spec: Notebook, verdicts: dict[str, dict], manual: dict[str, dict]) -> str:
    """The notebook's total with the TA's scores, saying how many written points are still to grade."""
    total, pending = 0.0, 0.0
    for part in spec.parts:
        entry = manual.get(part.grade_id) or {}
        if entry.get("score") is not None:
            total += float(entry["score"])
        elif part.manual:
            pending += part.points
        else:
            total += float((verdicts.get(part.grade_id) or {}).get("score", 0.0))
    line = f"**Total: {total:g} / {spec.max_score:g}**"
    return line + (f" ({pending:g} written points not graded yet)" if pending else "")


def feedback_notebook(
    executed: NotebookNode,
    spec: Notebook,
    verdicts: dict[str, dict],
    status: str,
    message: str,
    manual: dict[str, dict] | None = None,
) -> NotebookNode:
    nb = copy.deepcopy(executed)
    secrets = _hidden_lines(nb)
    clear = ClearHiddenTests(enforce_metadata=False)
    parts = {p.grade_id: p for p in spec.parts}
    auto = sum(v["score"] for v in verdicts.values())
    summary = [f"# Feedback: {spec.name}", f"**Autograded score: {auto:g} / {spec.auto_max:g}**"]
    if manual is not None:
        summary.append(ta_total_line(spec, verdicts, manual))
    elif spec.max_score > spec.auto_max:
        summary.append(f"Written answers ({spec.max_score - spec.auto_max:g} points) are graded by a TA.")
    if message:
        summary.append(f"**{status}:** {html.escape(message)}")
    cells: list[NotebookNode] = [_header("\n\n".join(summary))]
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        graded = is_grade(cell) and gid in parts
        if cell.cell_type == "code":
            clear._remove_hidden_test_region(cell)
        if graded and not is_solution(cell):
            v = verdicts.get(gid)
            text = v["message"] if v else "This part was not graded."
            score = f"{v['score']:g} / {v['max_score']:g}" if v else f"0 / {parts[gid].points:g}"
            score = ta_score_text(parts[gid].points, v["score"] if v else 0.0, (manual or {}).get(gid)) or score
            cells.append(_header(f"### Part `{gid}`: {score}"))
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        elif graded:
            ta = ta_score_text(parts[gid].points, None, (manual or {}).get(gid))
            what = f"written answer, {ta}" if ta else f"written answer, {parts[gid].points:g} points, graded by a TA"
            cells.append(_header(f"### Part `{gid}`: {what}"))
        elif cell.cell_type == "code" and secrets:
            for i, out in enumerate(cell.outputs):
                text = _output_text(out)
                if any(s in text for s in secrets):
                    cell.outputs[i] = nbformat.v4.new_output(
                        "stream", name="stderr", text="[output withheld: it quoted a hidden test]\n"
                    )
        cells.append(cell)
        if graded and (comment := ta_comment_cell((manual or {}).get(gid))) is not None:
            cells.append(comment)
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
    executed: NotebookNode,
    spec: Notebook,
    verdicts: dict[str, dict],
    status: str,
    message: str,
    path: Path,
    manual: dict[str, dict] | None = None,
) -> None:
    nb = feedback_notebook(executed, spec, verdicts, status, message, manual)
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": f"Feedback: {spec.name}"}})
    write_atomic(path, body.encode("utf-8"))

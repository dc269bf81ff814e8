"""Rebuild the notebook to grade from the SOURCE notebook and the student's answers.

Everything that decides or frames a grade comes from the source, whatever the submission did to
its copy: set-up, test and hidden-test cells, locked cells, markdown, metadata. Only answer cells
(nbgrader solution cells, code or written) are taken from the student, matched by grade id and,
when the student's nbgrader metadata is gone, by nbformat cell id. The first match wins; a
missing answer gets the release stub. The student's own extra cells are kept, stripped of any
nbgrader metadata (they can never claim points), right after the answer cell they followed.
The stubs are the release's, made from the source with nbgrader's ClearSolutions, so grading
never depends on a built release/ being up to date.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import ClearSolutions
from nbgrader.utils import is_grade, is_locked, is_solution, is_task

from autograder.grading.sanitize import clean_attachments
from autograder.nbgrader_setup import CODE_STUB, TEXT_STUB


def _grade_id(cell: NotebookNode) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    gid = meta.get("grade_id") if isinstance(meta, dict) else None
    return gid if isinstance(gid, str) else None


def _marked(cell: NotebookNode) -> bool:
    try:
        return is_grade(cell) or is_solution(cell) or is_locked(cell) or is_task(cell)
    except Exception:  # malformed student metadata counts as unmarked
        return False


@dataclass
class RebuildReport:
    """What the rebuild took from where, for the feedback and the result record."""

    answers_found: list[str] = field(default_factory=list)
    answers_missing: list[str] = field(default_factory=list)
    extra_cells: int = 0
    dropped_cells: int = 0
    joined_cells: int = 0  # markdown cells a student split a written answer into, joined into it


def _answer_source(student_cell: NotebookNode) -> str:
    src = student_cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def release_stubs(source: NotebookNode) -> dict[str, str]:
    """grade_id -> the release's text of each answer cell (solution regions replaced by the stubs)."""
    clear = ClearSolutions(code_stub={"python": CODE_STUB}, text_stub=TEXT_STUB)
    released, _ = clear.preprocess(copy.deepcopy(source), {})
    return {gid: _answer_source(c) for c in released.cells if is_solution(c) and (gid := _grade_id(c))}


def rebuild(source: NotebookNode, student: NotebookNode) -> tuple[NotebookNode, RebuildReport]:
    """The notebook to execute: SOURCE's cells with STUDENT's answers (the release's stub where one is missing)."""
    report = RebuildReport()
    answer_ids = {_grade_id(c) for c in source.cells if is_solution(c)} - {None}
    answer_cell_ids = {c.get("id") for c in source.cells if is_solution(c)} - {None}
    source_ids = {_grade_id(c) for c in source.cells} - {None}
    fixed = [c for c in source.cells if not is_solution(c)]
    fixed_ids = {c.get("id") for c in fixed} - {None}
    fixed_texts = {_answer_source(c).strip() for c in fixed}
    stubs = release_stubs(source)

    # 1. walk the student's cells: first match per answer, extra cells grouped after the last answer seen
    answers: dict[str, NotebookNode] = {}
    extras: dict[str | None, list[NotebookNode]] = {}
    last_answer: str | None = None
    continuations: dict[str, list[NotebookNode]] = {}
    continuing = False
    by_cell_id = {c.get("id"): _grade_id(c) for c in source.cells if is_solution(c) and c.get("id")}
    for cell in student.cells:
        gid = _grade_id(cell)
        if gid not in answer_ids and cell.get("id") in answer_cell_ids and not _marked(cell):
            gid = by_cell_id.get(cell.get("id"))  # metadata stripped: fall back to the nbformat cell id
        if gid in answer_ids and gid not in answers:
            answers[gid] = cell
            last_answer = gid
            continuing = cell.get("cell_type") == "markdown"
            continue
        if (
            continuing
            and last_answer
            and gid is None
            and cell.get("cell_type") == "markdown"
            and not _marked(cell)
            and not _copy_of_source(cell, fixed_ids, fixed_texts)
        ):
            continuations.setdefault(last_answer, []).append(cell)  # the rest of a split written answer
            continue
        continuing = False
        if (gid in source_ids and gid not in answer_ids) or _copy_of_source(cell, fixed_ids, fixed_texts):
            report.dropped_cells += 1  # the student's copy of a source cell: the source's version is used
        else:
            extras.setdefault(last_answer, []).append(cell)

    # 2. emit the source's cells, substituting answers
    cells: list[NotebookNode] = []
    first_answer_done = False
    for src_cell in source.cells:
        gid = _grade_id(src_cell)
        if not is_solution(src_cell):
            cells.append(copy.deepcopy(src_cell))
            continue
        if not first_answer_done:
            cells.extend(_extra(c) for c in extras.get(None, []))  # cells the student put before any answer
            first_answer_done = True
        new = copy.deepcopy(src_cell)
        new.pop("attachments", None)
        if gid in answers:
            new.source = join_split_answer(answers[gid], continuations.get(gid, []))
            report.joined_cells += len(continuations.get(gid, []))
            _keep_images(answers[gid], new, continuations.get(gid, []))
            report.answers_found.append(gid)
        else:
            new.source = stubs.get(gid, CODE_STUB if new.cell_type == "code" else TEXT_STUB)
            report.answers_missing.append(gid)
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        cells.append(new)
        extra = extras.get(gid, [])
        report.extra_cells += len(extra)
        cells.extend(_extra(c) for c in extra)
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(source.metadata), cells=cells)
    nb.nbformat, nb.nbformat_minor = 4, max(5, source.get("nbformat_minor", 5))
    _unique_ids(nb)
    return nb, report


def join_split_answer(answer: NotebookNode, rest: list[NotebookNode]) -> str:
    """A written answer the student continued in the markdown cells right after it, as one text:
    the TA grades one answer (formgrader shows the answer cell only). The release stub is dropped
    when the student left it and wrote below."""
    texts = [_answer_source(answer), *(_answer_source(c) for c in rest)]
    if rest and texts[0].strip() in (TEXT_STUB.strip(), ""):
        texts = texts[1:]
    return "\n\n".join(t.strip("\n") for t in texts)


def _copy_of_source(cell: NotebookNode, fixed_ids: set[str], fixed_texts: set[str]) -> bool:
    """A student's copy of an instructions/test cell (same cell id, or same text): not the student's own work."""
    return cell.get("id") in fixed_ids or _answer_source(cell).strip() in fixed_texts


def _extra(cell: NotebookNode) -> NotebookNode:
    """A student's own cell as plain code or markdown without grading metadata or old outputs."""
    src = _answer_source(cell)
    if cell.get("cell_type") == "markdown":
        new = nbformat.v4.new_markdown_cell(src)
        _keep_images(cell, new)
        return new
    if cell.get("cell_type") == "code":
        return nbformat.v4.new_code_cell(src)
    return nbformat.v4.new_raw_cell(src)


def _keep_images(student_cell: NotebookNode, new: NotebookNode, rest: list[NotebookNode] = ()) -> None:
    """A written answer's pasted images (cell attachments), PNG/JPEG only, go with its text
    (those of the cells it was continued in too: their text is joined into it)."""
    if new.get("cell_type") != "markdown":
        return
    images: dict = {}
    for cell in (*rest[::-1], student_cell):  # the answer cell's own image wins a name clash
        images.update(clean_attachments(cell.get("attachments")) or {})
    if images:
        new["attachments"] = images


def _unique_ids(nb: NotebookNode) -> None:
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if not isinstance(cid, str) or cid in seen:
            cid = f"cell-{i}"
            while cid in seen:
                cid += "x"
            cell["id"] = cid
        seen.add(cid)

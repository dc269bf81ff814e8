"""Feedback HTML for one graded notebook: the student's work, the judge's verdicts, no hidden tests.

`render_feedback(executed, spec, verdicts, status, message, manual=None)` returns the page;
`write_feedback(..., path)` writes it. The page starts with a summary table (part, points, the
first line of the reason, a link to the part), then the notebook: every graded part gets a header
(autograded parts coloured by result, written parts marked "graded by a TA"), every graded test
cell shows only its visible part (nbgrader's ClearHiddenTests) and, as its output, the judge's
verdict (with the diagnosis figure and the saved images when a verdict carries them) instead of
whatever the kernel printed there: a traceback from a hidden line would show hidden code. Outputs
elsewhere that quote a hidden-test line are withheld; long text outputs are folded into a
<details> element and trimmed. LaTeX in markdown becomes MathML, so math renders offline and
without script (the page must work under a CSP that allows no script).

`annotate_autograded(nb, spec, verdicts)` puts the same verdict box under each graded test cell
of the autograded notebook, which formgrader renders: the TA sees each part's points and reason
beside its cell.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import html
import re
from pathlib import Path
from typing import Any

import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters import Highlight2HTML
from nbconvert.filters.strings import clean_html
from nbformat import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests
from nbgrader.utils import is_grade, is_solution

from autograder.course import Notebook, Part
from autograder.grading.sanitize import clean_notebook, with_csp
from autograder.grading.store import write_atomic

MIN_SECRET_LINE = 12  # shorter hidden lines (")", "else:") are not secrets worth withholding
PAGE_MODE = 0o640  # pages hold one student's grades: the grader and the course staff's group, nobody else
TEMPLATES = Path(__file__).with_name("templates")
FIGURE_MAX_BYTES = 200_000  # a verdict's diagnosis figure (agreed: ~100 KB); anything larger is not shown
FOLD_CODE_LINES = 8  # code the notebook gives (locked cells) longer than this is folded
LONG_LINES = 30  # text outputs longer than this are folded
KEEP_LINES = 200  # and trimmed to this many lines (head and tail) inside the fold
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- math


_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)
_MATH = re.compile(
    r"\$\$(?P<d1>.+?)\$\$"  # $$ display $$
    r"|\\\[(?P<d2>.+?)\\\]"  # \[ display \]
    r"|\\\((?P<i2>.+?)\\\)"  # \( inline \)
    r"|(?<![\\$\w])\$(?!\s)(?P<i1>[^$\n]+?)(?<![\s\\])\$(?![\w$])",  # $inline$, not $5 or a lone $
    re.DOTALL,
)


MATHML_TAGS = frozenset(
    "math semantics mrow mi mo mn ms mtext mspace msup msub msubsup munder mover munderover mfrac msqrt "
    "mroot mstyle mpadded mphantom menclose mtable mtr mtd mlabeledtr merror mfenced mmultiscripts "
    "mprescripts none".split()
)
MATHML_ATTRIBUTES = frozenset(
    "display mathvariant stretchy fence separator form lspace rspace accent accentunder movablelimits "
    "symmetric largeop minsize maxsize linethickness columnalign rowalign columnspacing rowspacing "
    "columnlines rowlines frame displaystyle scriptlevel width height depth notation open close "
    "separators".split()
)


def _clean_mathml(markup: str) -> str | None:
    """MARKUP (latex2mathml's output, which passes some LaTeX through raw: \\text{<b>}, \\href)
    rebuilt from MathML elements and presentation attributes only, every text escaped; None if unreadable."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(markup)
    except ET.ParseError:
        return None

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def build(el: ET.Element) -> str:
        name = local(el.tag)
        inner = html.escape(el.text or "", quote=False) + "".join(
            build(child) + html.escape(child.tail or "", quote=False) for child in el
        )
        if name not in MATHML_TAGS:
            return inner  # an unknown element keeps only its (escaped) text
        attrs = "".join(
            f' {local(k)}="{html.escape(v)}"'
            for k, v in el.attrib.items()
            if local(k) in MATHML_ATTRIBUTES and "url(" not in v.lower()
        )
        return f"<{name}{attrs}>{inner}</{name}>"

    if local(root.tag) != "math":
        return None
    return build(root).replace("<math", '<math xmlns="http://www.w3.org/1998/Math/MathML"', 1)


@functools.lru_cache(maxsize=4096)
def latex_to_mathml(latex: str, display: bool) -> str:
    """MathML for LATEX; the escaped source in <code> when latex2mathml cannot read it."""
    from latex2mathml.converter import convert

    try:
        cleaned = _clean_mathml(convert(latex.strip(), display="block" if display else "inline"))
    except Exception:  # a student's half-written formula must not break the page
        cleaned = None
    return cleaned if cleaned is not None else f"<code>{html.escape(latex)}</code>"


def math_to_mathml(markdown: str) -> str:
    """MARKDOWN with every $...$, $$...$$, \\(...\\) and \\[...\\] outside code replaced by MathML."""
    if "$" not in markdown and "\\(" not in markdown and "\\[" not in markdown:
        return markdown
    pieces = _CODE.split(markdown)
    for i in range(0, len(pieces), 2):  # even pieces are outside code
        pieces[i] = _MATH.sub(_math_match, pieces[i])
    return "".join(pieces)


def _math_match(m: re.Match[str]) -> str:
    display = m.group("d1") is not None or m.group("d2") is not None
    latex = next(g for g in (m.group("d1"), m.group("d2"), m.group("i1"), m.group("i2")) if g is not None)
    return latex_to_mathml(latex, display)


# ------------------------------------------------------------------------------------- verdict boxes


def _valid_png(data: Any, max_bytes: int = FIGURE_MAX_BYTES) -> str | None:
    """DATA (base64 of a PNG) re-encoded, or None when it is not a small PNG."""
    if not isinstance(data, str) or len(data) > max_bytes * 4 // 3 + 8:
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(PNG_MAGIC) or len(raw) > max_bytes:
        return None
    return base64.b64encode(raw).decode("ascii")


def _inline(text: str) -> str:
    """One line of a judge's message as HTML: escaped, `code` kept as code."""
    parts = html.escape(text, quote=False).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def message_html(message: str) -> str:
    """A judge's message ("- problem" lines are a list) as HTML; every character is escaped."""
    out: list[str] = []
    items: list[str] = []
    for line in message.splitlines():
        if line.startswith("- "):
            items.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line.strip():
            out.append(f"<div>{_inline(line)}</div>")
    if items:
        out.append("<ul>" + "".join(items) + "</ul>")
    return "".join(out)


def first_line(message: str) -> str:
    for line in message.splitlines():
        line = line.strip().removeprefix("- ")
        if line:
            return line if len(line) <= 160 else line[:157] + "..."
    return ""


def _score_text(v: dict[str, Any] | None, part: Part) -> str:
    if v is None:
        return f"0 / {part.points:g}"
    return f"{float(v['score']):g} / {float(v['max_score']):g}"


def _passed(v: dict[str, Any] | None) -> bool:
    return v is not None and float(v["score"]) >= float(v["max_score"])


def verdict_html(v: dict[str, Any] | None, part: Part) -> str:
    """The box a student (feedback) and a TA (formgrader) read under a graded test cell."""
    state = "fb-pass" if _passed(v) else "fb-fail"
    text = v["message"] if v else "This part was not graded."
    body = [f"<div><b>Autograder: {_score_text(v, part)} points</b></div>", message_html(str(text))]
    figure = _valid_png(v.get("figure")) if v else None
    if figure:
        body.append(
            '<img style="max-width:100%;display:block;margin-top:6px" '
            f'alt="your map, the reference map and their difference" src="data:image/png;base64,{figure}">'
        )
    listed = v.get("images") if v else None
    images = [b for b in map(_valid_png, listed[:MAX_THUMBS] if isinstance(listed, list) else []) if b]
    if images:
        thumbs = "".join(
            f'<img style="width:{THUMB_PX}px;margin:4px 4px 0 0" alt="saved image" src="data:image/png;base64,{b}">'
            for b in images
        )
        body.append(f'<div class="fb-thumbs"><div>The images your function saved:</div>{thumbs}</div>')
    # inline styles: formgrader shows this box too, without the feedback page's style sheet
    colours = ("#2da44e", "#eefbf1") if state == "fb-pass" else ("#cf222e", "#fff1f0")
    style = f"border:1px solid {colours[0]};border-left:6px solid {colours[0]};background:{colours[1]};"
    style += "padding:6px 12px;margin:4px 0;border-radius:4px;font-size:14px;color:#1f2328"
    return f'<div class="fb-verdict {state}" style="{style}">{"".join(body)}</div>'


def verdict_output(v: dict[str, Any] | None, part: Part) -> NotebookNode:
    """The verdict as a display output (HTML for pages, plain text for anything else)."""
    plain = f"Autograder: {_score_text(v, part)} points\n{v['message'] if v else 'This part was not graded.'}\n"
    return nbformat.v4.new_output("display_data", data={"text/html": verdict_html(v, part), "text/plain": plain})


def annotate_autograded(nb: NotebookNode, spec: Notebook, verdicts: dict[str, dict]) -> NotebookNode:
    """NB (the autograded notebook) with each graded test cell's verdict as its first output (in place).

    formgrader shows a test cell's outputs under it, so the TA reads the points and the reason there.
    The kernel's own outputs stay (the TA may see hidden tests); the verdict is a display output,
    never stderr (any stderr in a graded cell zeroes the score if nbgrader itself ever grades it).
    """
    parts = {p.grade_id: p for p in spec.parts}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid in parts and is_grade(cell) and not is_solution(cell):
            cell.outputs.insert(0, verdict_output(verdicts.get(gid), parts[gid]))  # read first, above a traceback
    return nb


# ------------------------------------------------------------------------------------ saved images

SAVED_IMAGES_CHECK = "files.saved_images"
THUMB_PX = 160  # longest side of a saved image as the feedback shows it
MAX_THUMBS = 8


def _thumbnail(path: Path) -> str | None:
    """PATH (an untrusted PNG, size-checked before decoding) re-drawn as a small PNG, base64."""
    import io

    from PIL import Image

    from autograder.checks.files import ImageProblem, read_png

    try:
        pixels = read_png(path)
    except (ImageProblem, OSError):
        return None
    img = Image.fromarray(pixels)
    img.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def saved_images(spec: Notebook, evidence_dir: Path, verdicts: list[dict[str, Any]]) -> None:
    """Give each saved-images part's verdict an "images" list: thumbnails of the PNGs the notebook saved
    (from the evidence copies), so the feedback and formgrader show them. Re-encoding the pixels means no
    byte the kernel wrote reaches a page."""
    checks = {p.grade_id: p.check for p in spec.parts}
    for v in verdicts:
        if checks.get(v["grade_id"]) != SAVED_IMAGES_CHECK:
            continue
        folder = Path(evidence_dir) / v["grade_id"]
        if not folder.is_dir() or folder.is_symlink():
            continue
        pngs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file() and not p.is_symlink())
        thumbs = [t for p in pngs[:MAX_THUMBS] if (t := _thumbnail(p))]
        if thumbs:
            v["images"] = thumbs


# ------------------------------------------------------------------------------------------ the page


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


def _html_cell(markup: str) -> NotebookNode:
    """A markdown cell holding our own (escaped) HTML: markdown passes block HTML through."""
    return nbformat.v4.new_markdown_cell(markup)


def _anchor(gid: str) -> str:
    return "part-" + re.sub(r"[^A-Za-z0-9_-]", "-", gid)


def written_part_header(part: Part, manual: dict[str, Any] | None) -> str:
    """The header of a written part (a TA grades it). MANUAL is the TA's {"score", "comment"}, if any."""
    ta = ta_score_text(part.points, None, manual)
    what = html.escape(ta) if ta else f"{part.points:g} points"
    return (
        f'<div class="fb-part fb-ta" id="{_anchor(part.grade_id)}">Part <code>{html.escape(part.grade_id)}</code>: '
        f'written answer, {what}<span class="fb-badge">graded by a TA</span></div>'
    )


def _auto_part_header(part: Part, v: dict[str, Any] | None, manual: dict[str, Any] | None = None) -> str:
    state = "fb-pass" if _passed(v) else "fb-fail"
    ta = ta_score_text(part.points, float(v["score"]) if v else 0.0, manual)
    score = html.escape(ta) if ta else f"{_score_text(v, part)} points"
    return (
        f'<div class="fb-part {state}" id="{_anchor(part.grade_id)}">Part <code>{html.escape(part.grade_id)}</code>: '
        f"{score}</div>"
    )


def summary_html(
    spec: Notebook, verdicts: dict[str, dict], status: str, message: str, manual: dict[str, dict] | None = None
) -> str:
    auto = sum(float(v["score"]) for v in verdicts.values())
    rows = []
    for part in spec.parts:
        link = f'<a href="#{_anchor(part.grade_id)}"><code>{html.escape(part.grade_id)}</code></a>'
        if part.manual:
            ta = ta_score_text(part.points, None, (manual or {}).get(part.grade_id))
            points = html.escape(ta) if ta else f"{part.points:g} points"
            rows.append(
                f'<tr class="fb-ta"><td>{link}</td><td class="fb-points">{points}</td>'
                "<td>Written answer: graded by a TA.</td></tr>"
            )
            continue
        v = verdicts.get(part.grade_id)
        reason = first_line(str(v["message"])) if v else "This part was not graded."
        rows.append(
            f'<tr class="{"fb-pass" if _passed(v) else "fb-fail"}"><td>{link}</td>'
            f'<td class="fb-points">{_score_text(v, part)}</td><td>{_inline(reason)}</td></tr>'
        )
    head = [f"<h1>Feedback: {html.escape(spec.name)}</h1>", f"<p><b>Autograded score: {auto:g} / {spec.auto_max:g}</b>"]
    if spec.max_score > spec.auto_max and manual is None:
        head.append(f" &middot; written answers ({spec.max_score - spec.auto_max:g} points) are graded by a TA")
    head.append("</p>")
    if manual is not None:
        head.append(ta_total_line(spec, verdicts, manual))
    if message:
        head.append(f"<p><b>{html.escape(status)}:</b> {html.escape(message)}</p>")
    table = (
        '<table class="fb-summary"><thead><tr><th>Part</th><th>Points</th><th>Why</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return "".join(head) + table


def _fold_long_output(out: NotebookNode) -> NotebookNode:
    """A long stream output folded into <details> (closed) and trimmed to its head and tail."""
    if out.get("output_type") != "stream":
        return out
    text = str(out.get("text", ""))
    lines = text.splitlines()
    if len(lines) <= LONG_LINES:
        return out
    shown = lines
    if len(lines) > KEEP_LINES:
        half = KEEP_LINES // 2
        shown = [*lines[:half], f"[... {len(lines) - KEEP_LINES} lines not shown ...]", *lines[-half:]]
    markup = (
        f'<details class="fb-long"><summary>Output: {len(lines)} lines (click to open)</summary>'
        f"<pre>{html.escape(chr(10).join(shown))}</pre></details>"
    )
    return nbformat.v4.new_output("display_data", data={"text/html": markup, "text/plain": text[:2000]})


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
    return _html_cell(f'<div class="ta-comment" style="{style}"><strong>TA comment:</strong><br>{text}</div>')


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
    line = f"<p><b>Total: {total:g} / {spec.max_score:g}</b>"
    return line + (f" ({pending:g} written points not graded yet)" if pending else "") + "</p>"


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
    ta = manual or {}
    cells: list[NotebookNode] = [_html_cell(summary_html(spec, verdicts, status, message, manual))]
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        graded = is_grade(cell) and gid in parts
        if cell.cell_type == "code" and _from_source(cell):
            clear._remove_hidden_test_region(cell)
        elif cell.cell_type == "markdown":
            cell.source = math_to_mathml(cell.source)
        if graded and not is_solution(cell):
            v = verdicts.get(gid)
            cells.append(_html_cell(_auto_part_header(parts[gid], v, ta.get(gid))))
            cell.outputs = [verdict_output(v, parts[gid])]
        elif graded:
            cells.append(_html_cell(written_part_header(parts[gid], ta.get(gid))))
        elif cell.cell_type == "code":
            lines = cell.source.count("\n") + 1
            if meta.get("locked") and lines > FOLD_CODE_LINES:
                cell.metadata["fb_fold"] = f"Code given with the notebook: {lines} lines (click to show)"
            for i, out in enumerate(cell.outputs):
                if secrets and any(s in _output_text(out) for s in secrets):
                    cell.outputs[i] = nbformat.v4.new_output(
                        "stream", name="stderr", text="[output withheld: it quoted a hidden test]\n"
                    )
                else:
                    cell.outputs[i] = _fold_long_output(out)
        cells.append(cell)
        if graded and (comment := ta_comment_cell(ta.get(gid))) is not None:
            cells.append(comment)
    known = {cell.get("id") for cell in nb.cells}
    for n, cell in enumerate(cells):  # the cells added here get random ids: fixed ones make pages identical
        if cell.get("id") not in known:
            cell["id"] = f"feedback-{n}"
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
    (bleach's HTML sanitising, pygments) then serve the cells every student shares. The `feedback`
    template is JupyterLab's without any script."""
    return HTMLExporter(
        template_name="feedback",
        extra_template_basedirs=[str(TEMPLATES)],
        filters={"clean_html": _clean_html, "highlight_code": _CachedHighlight()},
    )


def render_feedback(
    executed: NotebookNode,
    spec: Notebook,
    verdicts: dict[str, dict],
    status: str,
    message: str,
    manual: dict[str, dict] | None = None,
) -> str:
    """The feedback page (HTML) for one executed notebook. MANUAL: grade_id -> the TA's {"score", "comment"}.

    The student's notebook is made inert first (sanitize.py; idempotent, so an already clean autograded
    notebook passes unchanged); the cells added here are the grader's own markup, every student- or
    kernel-controlled string in them escaped. The page carries the CSP that forbids script."""
    nb = feedback_notebook(clean_notebook(executed), spec, verdicts, status, message, manual)
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": f"Feedback: {spec.name}"}})
    return with_csp(body)


def write_feedback(
    executed: NotebookNode,
    spec: Notebook,
    verdicts: dict[str, dict],
    status: str,
    message: str,
    path: Path,
    manual: dict[str, dict] | None = None,
) -> None:
    write_atomic(path, render_feedback(executed, spec, verdicts, status, message, manual).encode("utf-8"), PAGE_MODE)

"""Make everything a submission wrote inert before it reaches a page a person opens.

Pages built from a graded notebook (formgrader's submission view, the feedback HTML) are rendered
by nbconvert, which passes markdown's raw HTML, `text/html` and `application/javascript` outputs,
image metadata and several metadata fields into the page as they are. So the notebook is cleaned
where it is made, once, and every renderer downstream only ever sees:

- markdown a renderer turns into harmless HTML: cells whose markdown holds no raw HTML, no
  unsafe link and no image other than a valid PNG/JPEG attachment or data URL are kept as written
  (math and ordinary markdown stay markdown); any other cell is rendered here with nbconvert's own
  renderer, cleaned with an allow-list sanitiser (nh3, the Ammonia crate) and stored as one
  sanitised HTML block;
- outputs of the types stream, error, text/plain, image/png and image/jpeg (images only when the
  bytes are PNG/JPEG), everything else turned into text/plain, image metadata reduced to
  positive numbers for width and height;
- attachments that are PNG/JPEG data, metadata with known keys and types, cell ids of the nbformat
  alphabet.

Pages the grader writes also carry a Content-Security-Policy (`with_csp`) that allows no script
and no request: the second wall if anything is ever missed here.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
import re
from typing import Any

import nbformat
import nh3
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbformat import NotebookNode

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'

IMAGE_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
TAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
META_WORD = re.compile(r"[A-Za-z0-9 _.+#()/-]{0,64}")  # kernelspec / language_info values
ATTACHMENT_NAME = re.compile(r"[A-Za-z0-9_. ()-]{1,128}")
SAFE_LINK = re.compile(r"(?:https?://|mailto:|#)[^\s\x00-\x1f\x7f\"'<>`\\]*", re.IGNORECASE)
MAX_IMAGE_SIDE = 10_000  # px; a width/height beyond it is not a figure's size
SANITISED_CLASS = "cg-sanitised"
PLAIN_TAG = re.compile(r"</?(?:b|i|u|s|em|strong|sub|sup|code|kbd|del|span|br|p|small|mark)\s*/?>", re.IGNORECASE)
IMG_WITHOUT_SRC = re.compile(r'<img\b(?![^>]*\ssrc=")(?:[^>"]|"[^"]*")*>')  # in nh3's output: src was unsafe
# TeX macros with which MathJax (formgrader's page loads it) makes links, styles, ids, classes or loads
# code; the page's math renderer must never see them in student text.
ACTIVE_TEX = re.compile(
    r"\\(?=(?:href|url|style|class|cssId|attr|data|html|unicode|require|bbox|mmlToken|toggle|texttip|mathtip"
    r"|FormatString|fragment|enclose)(?![A-Za-z]))"
)

# What a cleaned markdown cell may contain, as HTML.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "q",
    "s", "samp", "small", "mark", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul", "var",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"align", "colspan", "rowspan"},
    "th": {"align", "colspan", "rowspan"},
    "ol": {"start"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
    "div": {"class"},
}

# mistune tokens whose nbconvert rendering escapes all text (checked for nbconvert 7.17 / mistune 3.4)
SAFE_TOKENS = {
    "paragraph", "text", "emphasis", "strong", "codespan", "linebreak", "softbreak", "blank_line",
    "heading", "list", "list_item", "task_list_item", "block_text", "block_quote", "thematic_break",
    "block_code", "strikethrough", "table", "table_head", "table_body", "table_row", "table_cell",
    "def_list", "def_list_head", "def_list_item", "inline_math", "block_math", "latex_environment",
    "link", "image",
}  # fmt: skip

NBGRADER_KEYS: dict[str, tuple[type, ...]] = {
    "grade": (bool,),
    "solution": (bool,),
    "locked": (bool,),
    "task": (bool,),
    "grade_id": (str,),
    "points": (int, float),
    "schema_version": (int,),
    "checksum": (str,),
    "cell_type": (str,),
}
BOOLEAN_CELL_KEYS = ("collapsed", "deletable", "editable")


# ----------------------------------------------------------------------------- pages


def with_csp(page: str) -> str:
    """PAGE with the grader's Content-Security-Policy as the first element of its head."""
    m = re.search(r"<head\b[^>]*>", page, re.IGNORECASE)
    if m:
        return page[: m.end()] + CSP_META + page[m.end() :]
    return CSP_META + page


def safe_student_id(name: str) -> bool:
    """A folder name that can be a student id: ASCII letters, digits, '_', '.', '-', at most 64."""
    return STUDENT_ID.fullmatch(name) is not None


def spreadsheet_safe(text: str) -> str:
    """TEXT for one CSV cell: no control characters, and no leading character a spreadsheet reads as a formula."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "|", "%") else text


# ----------------------------------------------------------------------------- images


def image_data(value: Any, mime: str) -> str | None:
    """VALUE as canonical base64 if it really is an image of type MIME (PNG or JPEG), else None."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "".join(value)
    if mime not in IMAGE_TYPES or not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(IMAGE_TYPES[mime]):
        return None
    return base64.b64encode(raw).decode("ascii")


def _data_url_image(url: str) -> bool:
    m = re.fullmatch(r"data:(image/png|image/jpeg);base64,([A-Za-z0-9+/=\s]+)", url, re.IGNORECASE)
    return bool(m) and image_data(m.group(2), m.group(1).lower()) is not None


def clean_attachments(attachments: Any) -> dict[str, dict[str, str]]:
    """Only PNG/JPEG attachments with valid data, under names a markdown reference can spell."""
    out: dict[str, dict[str, str]] = {}
    if not isinstance(attachments, dict):
        return out
    for name, bundle in attachments.items():
        if not (isinstance(name, str) and ATTACHMENT_NAME.fullmatch(name) and isinstance(bundle, dict)):
            continue
        kept = {mime: data for mime in IMAGE_TYPES if (data := image_data(bundle.get(mime), mime))}
        if kept:
            out[name] = kept
    return out


def _image_size(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) and 0 < value <= MAX_IMAGE_SIDE else None


# ----------------------------------------------------------------------------- markdown


def _image_url_ok(url: str, attachments: dict[str, dict[str, str]]) -> bool:
    if url.startswith("attachment:"):
        return url[len("attachment:") :] in attachments
    return _data_url_image(url)


def _tokens_safe(tokens: list[dict[str, Any]], attachments: dict[str, dict[str, str]]) -> bool:
    for tok in tokens:
        kind, attrs = tok.get("type"), tok.get("attrs") or {}
        if kind not in SAFE_TOKENS:
            return False
        if kind == "link" and not SAFE_LINK.fullmatch(str(attrs.get("url", ""))):
            return False
        if kind == "image" and not _image_url_ok(str(attrs.get("url", "")), attachments):
            return False
        if kind == "block_code" and str(attrs.get("info") or "").strip().lower().startswith("mermaid"):
            return False  # nbconvert emits mermaid blocks unescaped
        if not _tokens_safe(tok.get("children") or [], attachments):
            return False
    return True


class _InertRenderer(IPythonRenderer):
    """nbconvert's renderer, except: raw HTML that the sanitiser would change is shown as text (so a TA
    reads what was written, and an unclosed <style> or comment cannot swallow the rest of the answer),
    images other than valid attachments / data URLs become their alt text, unsafe links their text,
    and mermaid blocks plain code. nh3 then cleans the whole result."""

    def inline_html(self, html_: str) -> str:
        if PLAIN_TAG.fullmatch(html_) or sanitise_html(html_) == html_:
            return html_
        return html.escape(html_, quote=False)

    def block_html(self, html_: str) -> str:
        if sanitise_html(html_) == html_:
            return html_ + "\n"
        return "<pre>" + html.escape(html_.strip("\n"), quote=False) + "</pre>\n"

    def image(self, text: str, url: str, title: str | None = None) -> str:
        if _image_url_ok(url, self.attachments):
            return super().image(text, url, title)
        return html.escape(f"[image: {text}]" if text else "[image]")

    def link(self, text: str, url: str, title: str | None = None) -> str:
        return super().link(text, url, title) if SAFE_LINK.fullmatch(url) else text

    def block_mermaidjs(self, code: str) -> str:
        return f"<pre><code>{html.escape(code)}</code></pre>"


def _parser() -> MarkdownWithMath:
    return MarkdownWithMath(renderer=None)


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if tag == "img" and attr == "src":
        return value if _data_url_image(value) else None
    if tag == "a" and attr == "href":
        return value if SAFE_LINK.fullmatch(value) else None
    if tag == "img" and attr in ("width", "height"):
        return value if re.fullmatch(r"[0-9]{1,5}", value) else None
    if attr in ("colspan", "rowspan", "start"):
        return value if re.fullmatch(r"[0-9]{1,4}", value) else None
    if attr == "align":
        return value if value in ("left", "right", "center") else None
    if attr == "class":
        return value if re.fullmatch(r"[A-Za-z0-9_ -]{0,200}", value) else None
    return value


def sanitise_html(fragment: str) -> str:
    """FRAGMENT cleaned to the allow-list: no script, no event handler, no style, no URL but safe links
    and PNG/JPEG data images."""
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_attribute_filter,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def clean_markdown(source: str, attachments: dict[str, dict[str, str]]) -> str:
    """SOURCE itself when nbconvert renders it harmlessly, else its sanitised HTML as one raw block.

    The block is a single line (`&#10;` for line breaks), so every CommonMark renderer (mistune,
    markdown-it, marked) passes it through whole instead of reading markdown inside it.
    """
    if _is_sanitised_block(source):
        return source  # already cleaned here (the feedback page cleans the autograded notebook again)
    source = ACTIVE_TEX.sub("\u29f5", source)  # "\\href" -> "⧵href": readable, no longer a macro
    if _tokens_safe(_parser().parse(source)[0], attachments):
        return source
    rendered = MarkdownWithMath(renderer=_InertRenderer(escape=False, attachments=attachments)).render(source)
    return _one_block(IMG_WITHOUT_SRC.sub("[image]", sanitise_html(rendered)))


def _one_block(fragment: str) -> str:
    return f'<div class="{SANITISED_CLASS}">' + fragment.replace("\r", "").replace("\n", "&#10;") + "</div>"


def _is_sanitised_block(source: str) -> bool:
    """SOURCE is one of our blocks, and a fixpoint of the sanitiser (so nothing was added to it)."""
    prefix = f'<div class="{SANITISED_CLASS}">'
    if not (source.startswith(prefix) and source.endswith("</div>") and "\n" not in source):
        return False
    return _one_block(sanitise_html(source[len(prefix) : -len("</div>")])) == source


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


# ----------------------------------------------------------------------------- outputs


def clean_output(out: Any) -> NotebookNode:
    """One output reduced to what renders as text or as a PNG/JPEG image."""
    kind = out.get("output_type") if isinstance(out, dict) else None
    if kind == "stream":
        name = out.get("name") if out.get("name") in ("stdout", "stderr") else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=_text(out.get("text", "")))
    if kind == "error":
        tb = out.get("traceback")
        return nbformat.v4.new_output(
            "error",
            ename=_text(out.get("ename", "")),
            evalue=_text(out.get("evalue", "")),
            traceback=[_text(t) for t in tb] if isinstance(tb, list) else [],
        )
    if kind in ("display_data", "execute_result"):
        data = out.get("data") if isinstance(out.get("data"), dict) else {}
        meta = out.get("metadata") if isinstance(out.get("metadata"), dict) else {}
        clean: dict[str, str] = {}
        clean_meta: dict[str, dict[str, int | float]] = {}
        for mime in IMAGE_TYPES:
            if (b64 := image_data(data.get(mime), mime)) is not None:
                clean[mime] = b64
                sizes = meta.get(mime) if isinstance(meta.get(mime), dict) else {}
                kept = {k: v for k in ("width", "height") if (v := _image_size(sizes.get(k))) is not None}
                if kept:
                    clean_meta[mime] = kept
        if "text/plain" in data:
            clean["text/plain"] = _text(data["text/plain"])
        else:
            rest = [m for m in data if m not in clean]
            if rest and not clean:  # e.g. text/html, application/javascript, svg: shown as their text
                clean["text/plain"] = _text(data[rest[0]])
        if not clean:
            clean["text/plain"] = ""
        if kind == "execute_result":
            count = out.get("execution_count")
            count = count if isinstance(count, int) and not isinstance(count, bool) else None
            return nbformat.v4.new_output(kind, data=clean, metadata=clean_meta, execution_count=count)
        return nbformat.v4.new_output(kind, data=clean, metadata=clean_meta)
    return nbformat.v4.new_output("stream", name="stdout", text=f"[an output of type {str(kind)[:40]!r} was removed]\n")


# ----------------------------------------------------------------------------- metadata and cells


def _typed(value: Any, types: tuple[type, ...]) -> bool:
    """isinstance, with bool kept apart from int (True is not a number of points)."""
    return isinstance(value, bool) if bool in types else isinstance(value, types) and not isinstance(value, bool)


def _clean_cell_metadata(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict):
        return {}
    out: dict[str, Any] = {}
    nbg = meta.get("nbgrader")
    if isinstance(nbg, dict):
        kept = {k: nbg[k] for k, types in NBGRADER_KEYS.items() if k in nbg and _typed(nbg[k], types)}
        if isinstance(kept.get("grade_id"), str) and not TAG.fullmatch(kept["grade_id"]):
            kept.pop("grade_id")
        out["nbgrader"] = kept
    tags = meta.get("tags")
    if isinstance(tags, list):
        out["tags"] = [t for t in tags if isinstance(t, str) and TAG.fullmatch(t)]
    jupyter = meta.get("jupyter")
    if isinstance(jupyter, dict):
        out["jupyter"] = {
            k: jupyter[k] for k in ("source_hidden", "outputs_hidden") if isinstance(jupyter.get(k), bool)
        }
    for key in BOOLEAN_CELL_KEYS:
        if isinstance(meta.get(key), bool):
            out[key] = meta[key]
    if isinstance(meta.get("scrolled"), bool) or meta.get("scrolled") == "auto":
        out["scrolled"] = meta["scrolled"]
    return out


def _clean_notebook_metadata(meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(meta, dict):
        return out
    for key, fields in (
        ("kernelspec", ("name", "display_name", "language")),
        ("language_info", ("name", "version", "file_extension", "mimetype", "pygments_lexer", "nbconvert_exporter")),
    ):
        section = meta.get(key)
        if isinstance(section, dict):
            kept = {
                f: section[f] for f in fields if isinstance(section.get(f), str) and META_WORD.fullmatch(section[f])
            }
            if key == "kernelspec" and not {"name", "display_name"} <= set(kept):
                continue  # nbformat requires both
            out[key] = kept
    return out


def _source(cell: Any) -> str:
    return _text(cell.get("source", "")) if isinstance(cell, dict) else ""


def clean_cell(cell: Any) -> NotebookNode:
    """One cell, inert: see the module docstring."""
    kind = cell.get("cell_type") if isinstance(cell, dict) else None
    meta = _clean_cell_metadata(cell.get("metadata") if isinstance(cell, dict) else None)
    if kind == "code":
        outputs = cell.get("outputs")
        count = cell.get("execution_count")
        new = nbformat.v4.new_code_cell(
            _source(cell),
            metadata=meta,
            outputs=[clean_output(o) for o in outputs] if isinstance(outputs, list) else [],
            execution_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        )
    elif kind == "markdown":
        attachments = clean_attachments(cell.get("attachments"))
        new = nbformat.v4.new_markdown_cell(clean_markdown(_source(cell), attachments), metadata=meta)
        if attachments:
            new["attachments"] = attachments
    else:  # raw cells (nbconvert copies them into the page verbatim) and anything unknown: shown as text
        new = nbformat.v4.new_markdown_cell(_one_block(f"<pre>{html.escape(_source(cell))}</pre>"), metadata=meta)
    cid = cell.get("id") if isinstance(cell, dict) else None
    new["id"] = cid if isinstance(cid, str) and CELL_ID.fullmatch(cid) else ""
    return new


def clean_notebook(nb: NotebookNode) -> NotebookNode:
    """A new notebook with NB's cells made inert, metadata reduced to known keys and safe values."""
    cells = [clean_cell(c) for c in (nb.get("cells") or [])]
    seen: set[str] = set()
    for i, cell in enumerate(cells):
        cid = cell["id"]
        if not cid or cid in seen:
            cid = f"cell-{i}"
            while cid in seen:
                cid += "x"
            cell["id"] = cid
        seen.add(cid)
    clean = nbformat.v4.new_notebook(cells=cells, metadata=_clean_notebook_metadata(nb.get("metadata")))
    clean.nbformat, clean.nbformat_minor = 4, 5
    return clean

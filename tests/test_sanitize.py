"""sanitize.py: every class of payload a student can put in a notebook renders inert through nbconvert.

Each payload goes where a student controls it (a written answer's markdown, an output, an attachment,
metadata), the notebook is cleaned, rendered with nbconvert's `lab` and `classic` templates (the
feedback page and the base of formgrader's page), and the page's cells are walked with an HTML
parser: no element that runs or loads anything, no event handler, no style, no URL but safe links
and PNG/JPEG data images. The browser test (test_pages_browser.py) checks the same in Chromium.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
from pathlib import Path

import nbformat
import pytest
from bleach._vendor import html5lib  # the WHATWG parsing algorithm, as browsers parse
from nbconvert import HTMLExporter
from PIL import Image

from autograder.grading.sanitize import (
    CSP,
    clean_attachments,
    clean_markdown,
    clean_notebook,
    safe_student_id,
    spreadsheet_safe,
    with_csp,
)

REPO = Path(__file__).resolve().parents[1]
URL = "http://127.0.0.1:9/hit"


def png(size=(2, 2)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def jpeg() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode()


SVG = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>").decode()
HTML_B64 = base64.b64encode(b"<script>alert(1)</script>").decode()

MARKDOWN_PAYLOADS = {
    "script": "<script>alert(1)</script>",
    "script_upper": "<SCRIPT SRC=" + URL + "></SCRIPT>",
    "img_onerror": "<img src=x onerror=alert(1)>",
    "img_remote": f'<img src="{URL}">',
    "img_protocol_relative": '<img src="//127.0.0.1:9/hit">',
    "img_srcset": f'<img srcset="{URL} 1x">',
    "picture_source": f'<picture><source srcset="{URL}"><img src="x"></picture>',
    "svg_onload": "<svg onload=alert(1)>",
    "svg_script": "<svg><script>alert(1)</script></svg>",
    "svg_use": f'<svg><use href="{URL}#x"/></svg>',
    "svg_animate": "<svg><a><animate attributeName=href values=javascript:alert(1) /><text y=20>x</text></a></svg>",
    "mathml_mxss": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "mathml_href": '<math href="javascript:alert(1)">x</math>',
    "iframe_srcdoc": "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
    "iframe_src": f'<iframe src="{URL}"></iframe>',
    "object_data": f'<object data="{URL}"></object>',
    "embed": f'<embed src="{URL}">',
    "style_tag": f"<style>@import '{URL}'; body {{background: url({URL})}}</style>",
    "style_attr": f'<div style="background-image: url({URL})">x</div>',
    "style_expression": '<div style="width: expression(alert(1))">x</div>',
    "link_stylesheet": f'<link rel="stylesheet" href="{URL}">',
    "meta_refresh": f'<meta http-equiv="refresh" content="0; url={URL}">',
    "base_href": f'<base href="{URL}/">',
    "form_action": f'<form action="{URL}"><input type=submit></form>',
    "button_formaction": '<button formaction="javascript:alert(1)">x</button>',
    "input_image": f'<input type="image" src="{URL}">',
    "video_poster": f'<video poster="{URL}"></video>',
    "audio": f'<audio src="{URL}" autoplay></audio>',
    "body_background": f'<table background="{URL}"><tr><td>x</td></tr></table>',
    "details_ontoggle": "<details open ontoggle=alert(1)><summary>x</summary></details>",
    "noscript_mxss": '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "template": "<template><img src=x onerror=alert(1)></template>",
    "comment_trick": "<!--><img src=x onerror=alert(1)>-->",
    "cdata": "<![CDATA[<img src=x onerror=alert(1)>]]>",
    "js_link_md": "[click](javascript:alert(1))",
    "js_link_mixed_case": "[click](JaVaScRiPt:alert(1))",
    "js_link_entity": '<a href="&#106;avascript:alert(1)">x</a>',
    "js_link_tab": '<a href="java&#x09;script:alert(1)">x</a>',
    "js_link_leading_space": '<a href=" javascript:alert(1)">x</a>',
    "vbscript_link": "[x](vbscript:msgbox(1))",
    "data_html_link": f"[x](data:text/html;base64,{HTML_B64})",
    "autolink_js": "<javascript:alert(1)>",
    "reference_link_js": "[x][r]\n\n[r]: javascript:alert(1)",
    "md_image_remote": f"![pixel]({URL})",
    "md_image_reference": f"![pixel][p]\n\n[p]: {URL}",
    "md_image_svg_data": f"![x](data:image/svg+xml;base64,{SVG})",
    "md_image_spoofed_png": f"![x](data:image/png;base64,{HTML_B64})",
    "md_image_title_break": f'![x](data:image/png;base64,{png()} "a\\" onerror=\\"alert(1)")',
    "mermaid": "```mermaid\n<img src=x onerror=alert(1)>\n```",
    "html_block_with_markdown": "<div>\n\n[x](javascript:alert(1))\n\n</div>",
    "raw_html_lines": "<div\nonmouseover=alert(1)>x</div>",
    "markdown_it_html_block": "<details>\n<summary>x</summary>\n<img src=x onerror=alert(1)>\n</details>",
    "math_href": r"$\href{javascript:alert(1)}{x}$",
    "math_style": rf"$$\style{{background: url({URL})}}{{x}}$$",
    "math_html_inside": "$<img src=x onerror=alert(1)>$",
    "heading_html": "# <img src=x onerror=alert(1)>",
    "table_html": "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "missing_attachment": "![gone](attachment:nothere.png)",
    "entity_script": "&lt;script&gt;alert(1)&lt;/script&gt;",
}

OUTPUT_PAYLOADS = {
    "text_html": {"output_type": "display_data", "data": {"text/html": "<script>alert(1)</script>"}, "metadata": {}},
    "javascript": {
        "output_type": "display_data",
        "data": {"application/javascript": "alert(1)", "text/plain": "<IPython.core.display.Javascript>"},
        "metadata": {},
    },
    "markdown_output": {"output_type": "display_data", "data": {"text/markdown": f"![x]({URL})"}, "metadata": {}},
    "svg_output": {
        "output_type": "display_data",
        "data": {"image/svg+xml": "<svg onload=alert(1)></svg>"},
        "metadata": {},
    },
    "latex_output": {
        "output_type": "display_data",
        "data": {"text/latex": r"$\href{javascript:x}{y}$"},
        "metadata": {},
    },
    "widget": {
        "output_type": "display_data",
        "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2}},
        "metadata": {},
    },
    "png_width_injection": {
        "output_type": "display_data",
        "data": {"image/png": png()},
        "metadata": {"image/png": {"width": "1 onerror=alert(1)", "height": -5}, "width": "1 onload=alert(1)"},
    },
    "png_filenames": {
        "output_type": "display_data",
        "data": {"image/png": png()},
        "metadata": {"filenames": {"image/png": f"{URL}"}},
    },
    "png_spoofed": {"output_type": "display_data", "data": {"image/png": HTML_B64}, "metadata": {}},
    "jpeg_not_base64": {"output_type": "display_data", "data": {"image/jpeg": 'x" onerror="alert(1)'}, "metadata": {}},
    "execute_result_html": {
        "output_type": "execute_result",
        "execution_count": "1<script>",
        "data": {"text/html": f'<img src="{URL}">', "text/plain": "x"},
        "metadata": {},
    },
    "stream_name": {"output_type": "stream", "name": "<script>alert(1)</script>", "text": "<img src=x onerror=1>"},
    "error_html": {
        "output_type": "error",
        "ename": "<script>",
        "evalue": "<img src=x onerror=1>",
        "traceback": ["<b>"],
    },
    "unknown_type": {"output_type": "<script>", "data": {"text/html": "<script>alert(1)</script>"}},
}


FORBIDDEN = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "form", "base",
    "meta", "link", "style", "video", "audio", "source", "picture", "track", "button", "textarea", "select",
    "template", "noscript", "marquee", "portal", "use", "image", "input",
}  # fmt: skip
URL_ATTRS = {"src", "href", "action", "formaction", "srcdoc", "srcset", "poster", "background", "data", "xlink:href"}


def _element_problems(el) -> list[str]:
    tag = el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""
    found = [f"<{tag}>"] if tag in FORBIDDEN else []
    for name, value in el.attrib.items():
        name = name.rsplit("}", 1)[-1] if isinstance(name, str) else str(name)
        if name.startswith("on") or name == "style":
            found.append(f"{tag}[{name}]")
        if tag == "img" and name in ("width", "height") and not re.fullmatch(r"[0-9.]+", value):
            found.append(f"img[{name}={value!r}]")
        if name in URL_ATTRS:
            ok_img = tag == "img" and name == "src" and re.match(r"data:image/(png|jpeg);base64,", value)
            ok_link = tag == "a" and name == "href" and re.match(r"(https?://|mailto:|#)", value)
            if not (ok_img or ok_link):
                found.append(f"{tag}[{name}={value[:60]!r}]")
    return found


@functools.cache
def exporter(template: str) -> HTMLExporter:
    return HTMLExporter(template_name=template)


def problems_in(nb: nbformat.NotebookNode, templates: tuple[str, ...] = ("lab",)) -> list[str]:
    """What, in the pages nbconvert makes of NB, could run or load: parsed as a browser parses (html5lib,
    the WHATWG algorithm, so comment and foreign-content tricks count), cells only (the templates' own
    head is not student data)."""
    found = []
    for template in templates:
        page, _ = exporter(template).from_notebook_node(nb)
        container = "main" if template == "lab" else "div"
        tree = html5lib.parse(page[page.index("<body") :], namespaceHTMLElements=False)  # the head is the template's
        body = tree.find("body")
        cells = body.find(container) if template == "lab" else body
        for el in cells.iter():
            if el is cells:
                continue
            problems = _element_problems(el)
            if template == "classic" and el.tag == "script" and not el.get("src") and not _student_text(el):
                problems = []  # classic's own inline set-up scripts (MathJax config) sit in <body>
            found += [f"{template}: {p}" for p in problems]
        if "cg-payload-marker" in page:
            found.append(f"{template}: metadata reached the page")
    return found


def _student_text(el) -> bool:
    return "alert" in (el.text or "") or "cg-payload" in (el.text or "") or "127.0.0.1" in (el.text or "")


@pytest.fixture(scope="module")
def baseline():
    return problems_in(nbformat.v4.new_notebook())


def _raw_problems(nb: nbformat.NotebookNode) -> list[str] | str:
    try:
        return problems_in(nb)
    except Exception as exc:  # nbconvert refuses it (invalid notebook, missing attachment): also a fault
        return f"nbconvert failed: {exc}"


def _written(source: str, attachments=None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(source)
    if attachments is not None:
        cell["attachments"] = attachments
    return nbformat.v4.new_notebook(cells=[cell])


@pytest.mark.parametrize("name", sorted(MARKDOWN_PAYLOADS))
def test_markdown_payload_is_inert(name, baseline):
    nb = _written(MARKDOWN_PAYLOADS[name])
    raw = _raw_problems(nb)
    clean = clean_notebook(nb)
    assert problems_in(clean) == baseline, name
    assert clean_notebook(clean) == clean  # idempotent: cleaning the feedback notebook again changes nothing
    # the control: unsanitised, the payload does reach the page (these few are inert in nbconvert already,
    # or only reach formgrader's MathJax: the browser test shows those)
    if name not in (
        "entity_script",
        "math_href",
        "math_style",
        "math_html_inside",
        "md_image_title_break",
        "cdata",
        "md_image_spoofed_png",
    ):
        assert raw != baseline, f"{name}: the payload was not one"


def test_all_payloads_in_one_notebook_both_templates():
    """Every payload side by side, through the lab (feedback) and classic (formgrader's base) templates."""
    cells = [nbformat.v4.new_markdown_cell(src) for src in MARKDOWN_PAYLOADS.values()]
    code = nbformat.v4.new_code_cell("x")
    code["outputs"] = [nbformat.from_dict(o) for o in OUTPUT_PAYLOADS.values()]
    nb = nbformat.from_dict({"cells": [*cells, code], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    empty = problems_in(nbformat.v4.new_notebook(), ("lab", "classic"))
    assert problems_in(clean_notebook(nb), ("lab", "classic")) == empty


@pytest.mark.parametrize("name", sorted(OUTPUT_PAYLOADS))
def test_output_payload_is_inert(name, baseline):
    cell = nbformat.v4.new_code_cell("display(x)")
    cell["outputs"] = [nbformat.from_dict(OUTPUT_PAYLOADS[name])]
    clean = clean_notebook(nbformat.from_dict({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert problems_in(clean) == baseline
    nbformat.validate(clean)
    (out,) = clean.cells[0].outputs
    assert set(out.get("data", {})) <= {"text/plain", "image/png", "image/jpeg"}


def test_outputs_become_text_and_real_images_stay():
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.from_dict(OUTPUT_PAYLOADS["text_html"]),
        nbformat.v4.new_output("display_data", data={"image/png": png(), "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={"image/jpeg": jpeg()}, metadata={"image/jpeg": {"width": 300}}),
        nbformat.from_dict(OUTPUT_PAYLOADS["png_width_injection"]),
    ]
    html_out, figure, photo, injected = clean_notebook(nbformat.v4.new_notebook(cells=[cell])).cells[0].outputs
    assert html_out.data == {"text/plain": "<script>alert(1)</script>"}  # shown as its text
    assert set(figure.data) == {"image/png", "text/plain"}
    assert photo.metadata == {"image/jpeg": {"width": 300}}
    assert "image/png" in injected.data and injected.metadata == {}


def test_attachments_only_real_png_and_jpeg():
    good, photo = png(), jpeg()
    kept = clean_attachments(
        {
            "paste.png": {"image/png": good},
            "photo.jpg": {"image/jpeg": photo},
            "vector.svg": {"image/svg+xml": SVG},
            "spoof.png": {"image/png": HTML_B64},
            "page.html": {"text/html": "<script>alert(1)</script>"},
            'quote".png': {"image/png": good},
            "both.png": {"image/png": good, "image/svg+xml": SVG},
        }
    )
    assert kept == {
        "paste.png": {"image/png": good},
        "photo.jpg": {"image/jpeg": photo},
        "both.png": {"image/png": good},
    }


def test_pasted_image_is_kept_and_rendered(baseline):
    good = png((3, 3))
    nb = _written("My saliency map:\n\n![image.png](attachment:image.png)", {"image.png": {"image/png": good}})
    clean = clean_notebook(nb)
    assert clean.cells[0].source == nb.cells[0].source  # ordinary markdown stays markdown
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(clean)
    assert f'src="data:image/png;base64,{good}"' in body
    assert problems_in(clean) == baseline


def test_missing_and_spoofed_attachments_do_not_crash_nbconvert():
    nb = _written("![a](attachment:gone.png) ![b](attachment:fake.png)", {"fake.png": {"image/png": HTML_B64}})
    clean = clean_notebook(nb)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(clean)  # raised InvalidNotebook before
    assert "[image: a]" in body and "[image: b]" in body and "attachments" not in clean.cells[0]


def test_notebook_and_cell_metadata_cannot_inject():
    mark = "cg-payload-marker"
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_raw_cell("<script>alert(1)</script>")],
        metadata={
            "title": f"</title><script>{mark}</script>",
            "widgets": {"application/vnd.jupyter.widget-state+json": {"state": f"</script><script>{mark}"}},
            "kernelspec": {"name": "python3", "display_name": f"<img src=x onerror={mark}>", "language": "python"},
            "language_info": {"name": "python", "pygments_lexer": f'ipython3"><script>{mark}'},
        },
    )
    nb.cells[0]["id"] = f'x"><script>{mark}</script>'
    nb.cells[0].metadata = {
        "tags": [f'a" onmouseover="{mark}', "fine-tag"],
        "nbgrader": {"grade_id": f'x"><script>{mark}', "points": "1<script>", "grade": True},
        "jupyter": {"source_hidden": f"{mark}"},
        "transient": {"remove_source": True},
    }
    nb.cells[1].metadata = {"raw_mimetype": "text/html", "format": "text/html"}
    clean = clean_notebook(nb)
    nbformat.validate(clean)
    assert problems_in(clean, ("lab", "classic")) == problems_in(nbformat.v4.new_notebook(), ("lab", "classic"))
    assert clean.cells[0].metadata == {"tags": ["fine-tag"], "nbgrader": {"grade": True}, "jupyter": {}}
    assert mark not in json.dumps(clean.metadata) and re.fullmatch(r"[A-Za-z0-9_-]+", clean.cells[0].id)
    assert clean.cells[1].cell_type == "markdown" and "&lt;script&gt;" in clean.cells[1].source


def test_honest_course_notebooks_are_unchanged():
    """The real sources: every cell's text, type, id and nbgrader metadata survive cleaning as they are."""
    for path in sorted((REPO / "source").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        clean = clean_notebook(nb)
        assert len(clean.cells) == len(nb.cells)
        for a, b in zip(nb.cells, clean.cells, strict=True):
            assert (a.cell_type, a.source, a.get("id")) == (b.cell_type, b.source, b.get("id")), path.name
            assert a.metadata.get("nbgrader") == b.metadata.get("nbgrader"), path.name
        assert clean.metadata["kernelspec"] == nb.metadata["kernelspec"]


def test_ordinary_markdown_and_math_stay_readable():
    text = "## Why\nThe map is **sharper**: $\\alpha_k = \\frac{1}{Z}\\sum_{i,j} a_{ij}$ and `x<y`.\n\n- one\n- two"
    assert clean_markdown(text, {}) == text
    mixed = clean_markdown("**bold** <span onclick=alert(1)>and</span> $x^2$", {})
    assert "<strong>bold</strong>" in mixed and "$x^2$" in mixed
    assert "&lt;span onclick=alert(1)&gt;" in mixed  # shown as the text the student wrote, not as markup
    assert clean_markdown("H<sub>2</sub>O is <b>wet</b><br>", {}).count("<sub>2</sub>") == 1  # harmless tags kept


def test_csp_is_the_first_thing_in_head():
    page = with_csp("<!DOCTYPE html><html><HEAD lang=en><title>x</title></head><body></body></html>")
    assert page.index("Content-Security-Policy") < page.index("<title>")
    assert CSP in page and with_csp("<p>x</p>").startswith("<meta http-equiv")


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("student_complete", True),
        ("a.b-c_9", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("..", False),
        (".", False),
        ("-rf", False),
        ("<script>alert(1)</script>", False),
        ("=HYPERLINK(1)", False),
        ("tab\there", False),
        ("ünï", False),
        ("a b", False),
        ("a\n", False),
    ],
)
def test_student_ids(name, ok):
    assert safe_student_id(name) is ok


def test_spreadsheet_safe_cells():
    assert spreadsheet_safe("=1+1") == "'=1+1"
    assert spreadsheet_safe("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert spreadsheet_safe("@SUM(1)") == "'@SUM(1)"
    assert spreadsheet_safe("a\x1b[31mred\r\n") == "a\\x1b[31mred\\x0d\\x0a"
    assert spreadsheet_safe("11") == "11" and spreadsheet_safe("graded") == "graded"


def test_rebuild_keeps_a_pasted_image_with_the_written_answer():
    from hostile.minicourse import source_notebook, student_notebook

    from autograder.grading.rebuild import rebuild

    student, good = student_notebook(), png()
    written = next(c for c in student.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "mini_written")
    written.source += "\n\n![image.png](attachment:image.png) ![v](attachment:v.svg)"
    written["attachments"] = {"image.png": {"image/png": good}, "v.svg": {"image/svg+xml": SVG}}
    added = nbformat.v4.new_markdown_cell("![b](attachment:b.png)")
    added["attachments"] = {"b.png": {"image/png": good}}
    student.cells.append(added)
    nb, _ = rebuild(source_notebook(), student)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "mini_written")
    # the markdown cell right after the answer continues it (rebuild.join_split_answer): its image comes along
    assert answer.attachments == {"image.png": {"image/png": good}, "b.png": {"image/png": good}}
    assert "attachment:b.png" in answer.source
    body, _ = exporter("lab").from_notebook_node(clean_notebook(nb))  # the svg reference: text, no crash
    assert body.count(f"data:image/png;base64,{good}") == 2 and "[image: v]" in body


def test_marker_words_in_student_text_are_the_students_text():
    """No 'grader error' from an unterminated marker in an answer; student lines are neither cut nor
    taken for hidden lines; the source's real hidden tests still are."""
    from hostile.minicourse import source_notebook, student_notebook

    from autograder.course import load_course
    from autograder.grading.feedback import feedback_notebook
    from autograder.grading.rebuild import rebuild

    student = student_notebook()
    for cell in student.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "mini_answer_format":
            cell.source = "# ### BEGIN HIDDEN TESTS (unterminated, in my notes)\n" + cell.source
        if gid == "mini_answer_convert":
            cell.source += "\n### END HIDDEN TESTS\nprint('a line of my own, long enough')"
    nb, _ = rebuild(source_notebook(), student)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "mini_answer_convert":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="a line of my own, long enough\n")]
    with_markers = "\n".join(c.source for c in nb.cells)
    assert "BEGIN HIDDEN TESTS (unterminated" in with_markers
    import tempfile

    from hostile.minicourse import write_mini_course

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_course(write_mini_course(Path(tmp))).assignment("mini").notebooks[0]
    shown = feedback_notebook(clean_notebook(nb), spec, {}, "graded", "")
    text = "\n".join(c.source for c in shown.cells)
    outputs = json.dumps([c.get("outputs", []) for c in shown.cells])
    assert "# ### BEGIN HIDDEN TESTS (unterminated, in my notes)" in text  # not cut
    assert "a line of my own, long enough" in outputs and "withheld" not in outputs
    assert "record_calls" not in text  # the source's hidden tests are still removed

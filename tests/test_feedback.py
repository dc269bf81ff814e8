"""The feedback page and the autograded notebook's verdicts: what a student and a TA read.

Fast tests render the review notebook (its source, as if executed) with chosen verdicts; one real
sandboxed kernel draws 500 figures to show the figure budget holds all the way to the page.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import nbformat
import pytest

from autograder.course import load_course
from autograder.grading.executor import execute_notebook
from autograder.grading.feedback import (
    PAGE_MODE,
    annotate_autograded,
    math_to_mathml,
    render_feedback,
    saved_images,
    write_feedback,
)
from autograder.grading.judge import NO_EVIDENCE
from autograder.grading.pipeline import near_miss_hint
from autograder.grading.rebuild import rebuild
from autograder.grading.sandbox import Limits, SandboxPlan, find_bwrap

REPO = Path(__file__).resolve().parents[1]
COURSE = load_course(REPO)
SPEC = COURSE.assignment("review").notebooks[0]
SOURCE = nbformat.read(REPO / "source" / "review" / SPEC.filename, as_version=4)
# the graded test cells only: rendering the whole notebook costs seconds on a loaded machine
SMALL = nbformat.v4.new_notebook(
    cells=[c for c in SOURCE.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")],
    metadata=SOURCE.metadata,
)


def png(width: int = 40, height: int = 20, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def verdicts(**overrides: dict) -> dict[str, dict]:
    out = {}
    for p in SPEC.parts:
        if not p.manual:
            out[p.grade_id] = {
                "grade_id": p.grade_id,
                "score": p.points,
                "max_score": p.points,
                "message": "All checks passed.",
            }
    for gid, v in overrides.items():
        out[gid] = {**out[gid], **v}
    return out


def summary_rows(page: str) -> list[str]:
    table = page[page.index('<table class="fb-summary">') : page.index("</table>")]
    return re.findall(r"<tr class=\"(fb-\w+)\"><td><a href=\"#([\w-]+)\">", table)


def test_summary_table_comes_first_and_links_every_part():
    v = verdicts(review_losses={"score": 0.0, "message": "- sparse loss: expected 0.357, got [0.36 0.2]\n- more"})
    page = render_feedback(SOURCE, SPEC, v, "graded", "")
    assert page.index('<table class="fb-summary">') < page.index("Review: label format")  # before the notebook
    rows = summary_rows(page)
    assert [gid for _, gid in rows] == [f"part-{p.grade_id}" for p in SPEC.parts]
    assert dict((g, c) for c, g in rows)["part-review_losses"] == "fb-fail"
    assert dict((g, c) for c, g in rows)["part-review_written"] == "fb-ta"
    for _, anchor in rows:  # every link lands on a part header
        assert page.count(f'id="{anchor}"') == 1
    assert "sparse loss: expected 0.357, got [0.36 0.2]" in page  # the first line of the reason
    assert "Autograded score: 8 / 11" in page
    assert "graded by a TA" in page


def test_no_script_and_math_is_mathml():
    page = render_feedback(SOURCE, SPEC, verdicts(), "graded", "")
    assert "<script" not in page.lower() and "mathjax" not in page.lower()
    assert page.count("<math") >= 3  # the review's loss formulas
    assert "\\log" not in page.split("<body")[1].replace("<annotation", "")  # no raw LaTeX left in the text


def test_math_conversion_leaves_code_and_prices_alone():
    text = "Loss $L = -\\log p$ costs $5 and `$x$` stays, $$\\frac{a}{b}$$ too"
    out = math_to_mathml(text)
    assert out.count("<math") == 2 and 'display="block"' in out
    assert "costs $5 and `$x$` stays" in out
    assert math_to_mathml("broken $\\frac{a$ formula").count("<") >= 0  # never raises


def test_a_students_latex_cannot_smuggle_markup():
    out = math_to_mathml(
        "$\\text{<script>alert(1)</script>}$ $\\href{javascript:alert(1)}{x}$ $\\style{background:url(x)}{y}$ $a<b$"
    )
    assert out.count("<math") == 4
    assert "<script" not in out and "javascript" not in out and "url(" not in out and "style=" not in out
    assert "<mo>&lt;</mo>" in out


def test_diagnosis_figure_is_shown_and_forged_figures_are_not():
    good = base64.b64encode(png()).decode()
    v = verdicts(review_losses={"score": 0.0, "message": "- maps disagree", "figure": good})
    page = render_feedback(SMALL, SPEC, v, "graded", "")
    assert f"data:image/png;base64,{good}" in page
    for forged in ("<script>alert(1)</script>", base64.b64encode(b"GIF89a....").decode(), "x" * 500_000):
        v = verdicts(review_losses={"score": 0.0, "message": "- no", "figure": forged})
        page = render_feedback(SMALL, SPEC, v, "graded", "")
        assert "<script>alert" not in page and "base64,GIF" not in page and "x" * 1000 not in page


def test_messages_are_escaped():
    v = verdicts(review_losses={"score": 0.0, "message": "- got <img src=x onerror=alert(1)> `<b>`"})
    page = render_feedback(SMALL, SPEC, v, "graded", "")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_pages_are_readable_by_the_group_only(tmp_path):
    path = tmp_path / "fb.html"
    write_feedback(SMALL, SPEC, verdicts(), "graded", "", path)
    assert stat.S_IMODE(path.stat().st_mode) == PAGE_MODE == 0o640


def test_verdicts_go_under_the_graded_cells_of_the_autograded_notebook():
    v = verdicts(review_pairing={"score": 0.0, "message": NO_EVIDENCE})
    nb = annotate_autograded(nbformat.from_dict(SOURCE), SPEC, v)
    shown = {
        c.metadata["nbgrader"]["grade_id"]: o
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "display_data" and "Autograder:" in o["data"]["text/plain"]
    }
    assert set(shown) == {p.grade_id for p in SPEC.parts if not p.manual}
    assert "Autograder: 0 / 2 points" in shown["review_pairing"]["data"]["text/html"]
    assert not any(o.get("name") == "stderr" for c in nb.cells for o in c.get("outputs", []))


def test_long_outputs_are_folded_and_trimmed():
    nb = nbformat.from_dict(SMALL)
    cell = nbformat.v4.new_code_cell("print(history)")
    nb.cells.append(cell)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="".join(f"line {i}\n" for i in range(5000)))]
    page = render_feedback(nb, SPEC, verdicts(), "graded", "")
    assert "<details" in page and "Output: 5000 lines" in page
    assert "line 50\n" in page and "line 2500\n" not in page and "line 4999" in page


def test_saved_images_become_thumbnails(tmp_path):
    spec = COURSE.assignment("assignment").notebooks[0]
    folder = tmp_path / "asg_saved_images"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(png(300, 300, (i * 80, 100, 50)))
    (folder / "fake.png").write_bytes(b"not a png")
    v = [{"grade_id": "asg_saved_images", "score": 2.0, "max_score": 2.0, "message": "All checks passed."}]
    saved_images(spec, tmp_path, v)
    assert len(v[0]["images"]) == 3
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(v[0]["images"][0]))).size == (160, 160)


@pytest.mark.parametrize(
    "names",
    [
        ["label_loss_review (1).ipynb"],
        ["label_loss_review-Copy1.ipynb"],
        ["Label_Loss_Review.ipynb"],
        ["work/label_loss_review.ipynb"],
    ],
)
def test_near_miss_names_say_what_to_rename(tmp_path, names):
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "label_loss_review-checkpoint.ipynb").write_text("{}")
    hint = near_miss_hint(tmp_path, "label_loss_review.ipynb")
    assert f"'{names[0]}'" in hint and "rename it to 'label_loss_review.ipynb'" in hint
    assert "checkpoint" not in hint
    assert near_miss_hint(tmp_path, "saliency_assignment.ipynb") == ""


def test_a_written_answer_split_in_cells_reaches_the_ta_as_one():
    student = nbformat.from_dict(SOURCE)
    i = next(
        i for i, c in enumerate(student.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "review_written"
    )
    student.cells[i].source = "First half: sigmoid with two units."
    student.cells.insert(i + 1, nbformat.v4.new_markdown_cell("Second half: the loss is binary."))
    student.cells.insert(i + 2, nbformat.v4.new_markdown_cell("Third: $p = \\sigma(z)$."))
    nb, report = rebuild(SOURCE, student)
    written = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "review_written")
    assert (
        written.source
        == "First half: sigmoid with two units.\n\nSecond half: the loss is binary.\n\nThird: $p = \\sigma(z)$."
    )
    assert report.joined_cells == 2 and report.extra_cells == 0
    assert not any("Second half" in c.source for c in nb.cells if c is not written)
    page = render_feedback(nb, SPEC, verdicts(), "graded", "")
    assert page.index("First half") < page.index("Second half") < page.index("Third")


@pytest.mark.slow
def test_five_hundred_figures_stay_within_the_budget(kernel_uid):
    """A real sandboxed kernel draws 500 figures: the notebook keeps the budget's count, later ones are
    one stdout line per cell, nothing reaches stderr, and the page grows by no more than the budget."""
    max_figures, max_bytes = 5, 60_000
    limits = Limits(
        cell_timeout=120,
        notebook_timeout=200,
        memory_bytes=2048 * 2**20,
        processes=64,
        open_files=256,
        output_bytes=2_000_000,
        file_bytes=8 * 2**20,
        tmp_bytes=64 * 2**20,
        figures=max_figures,
        figure_bytes=max_bytes,
    )
    with tempfile.TemporaryDirectory(prefix="figures-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        work, probes, runtime = base / "copy", base / "probes", base / "runtime"
        for d in (work, probes, runtime):
            d.mkdir()
        uid = kernel_uid
        if uid is not None:
            shutil.chown(work, uid, uid)
        plan = SandboxPlan(work, probes, runtime, limits, bwrap=find_bwrap(), uid=uid)
        nb = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("import matplotlib.pyplot as plt"),
                nbformat.v4.new_code_cell(
                    "def tiny(i):  # a figure that is cheap to draw: 500 real plots would take minutes on 2 cores\n"
                    "    fig = plt.figure(figsize=(0.3, 0.3), dpi=20, facecolor=(i / 500, 0.3, 0.6))\n"
                    "    fig.add_axes((0, 0, 1, 1)).set_axis_off()\n"
                    "for i in range(498):\n"
                    "    tiny(i)\n"
                    "    plt.show()"
                ),
                nbformat.v4.new_code_cell("tiny(498)"),  # no plt.show(): the inline backend shows it at the end
                nbformat.v4.new_code_cell("tiny(499)"),
            ]
        )
        outcome = execute_notebook(nb, plan, base / "kernel.log")
    assert outcome.completed, outcome.message
    images = [o for c in nb.cells for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == max_figures
    notes = [o["text"] for c in nb.cells for o in c.outputs if o.get("output_type") == "stream"]
    assert notes == [
        f"[493 figures not kept: the grader keeps the first {max_figures} figures of a notebook, at most 60 kB]\n",
        f"[1 figure not kept: the grader keeps the first {max_figures} figures of a notebook, at most 60 kB]\n",
        f"[1 figure not kept: the grader keeps the first {max_figures} figures of a notebook, at most 60 kB]\n",
    ]
    assert not any(o.get("name") == "stderr" or o.get("output_type") == "error" for c in nb.cells for o in c.outputs)
    empty = render_feedback(nbformat.v4.new_notebook(cells=list(nb.cells[:1])), SPEC, verdicts(), "graded", "")
    page = render_feedback(nb, SPEC, verdicts(), "graded", "")
    assert page.count("data:image/png;base64,") - empty.count("data:image/png;base64,") == max_figures
    assert len(page) - len(empty) <= max_bytes + 5_000  # the figures' bytes, plus a few lines of markup

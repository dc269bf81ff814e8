"""The TA's scores and comments on the feedback page: shown, totalled, and rendered as text."""

from __future__ import annotations

from hostile.minicourse import student_notebook, write_mini_course

from autograder.course import load_course
from autograder.grading.feedback import exporter, feedback_notebook

COMMENT = "<script>alert(1)</script>\nSee $x$ and **this**\n\nSecond paragraph <b>x</b> & [link](http://example.org)"


def page(tmp_path, manual):
    course = load_course(write_mini_course(tmp_path / "course"))
    spec = course.assignment("mini").notebooks[0]
    verdicts = {
        "mini_detect_format": {"grade_id": "mini_detect_format", "score": 2.0, "max_score": 2.0, "message": "ok"},
        "mini_convert": {"grade_id": "mini_convert", "score": 0.0, "max_score": 2.0, "message": "- wrong dtype."},
    }
    nb = feedback_notebook(student_notebook(), spec, verdicts, "graded", "", manual)
    body, _ = exporter().from_notebook_node(nb)
    return body


def test_ta_score_comment_and_total(tmp_path):
    body = page(
        tmp_path,
        {
            "mini_written": {"score": 0.5, "comment": COMMENT},
            "mini_convert": {"score": None, "comment": "Close: check the dtype."},
        },
    )
    assert "0.5 / 1, graded by a TA" in body
    assert "Total: 2.5 / 5" in body and "not graded yet" not in body
    assert "Close: check the dtype." in body  # a comment on an autograded part reaches the student too
    # the comment is text: no markup, no math, no markdown, and its blank line does not end the escaping
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "See $x$ and **this**" in body  # literally: the cell's source has no "$" for a math renderer
    assert "Second paragraph &lt;b&gt;x&lt;/b&gt; &amp; [link](http://example.org)" in body
    assert 'href="http://example.org"' not in body


def test_pending_written_parts_and_the_autograde_time_page(tmp_path):
    pending = page(tmp_path / "a", {})
    assert "Total: 2 / 5" in pending and "(1 written points not graded yet)" in pending
    untouched = page(tmp_path / "b", None)  # what the autograder writes before any TA has looked
    assert "Total:" not in untouched and "graded by a TA" in untouched and "TA comment" not in untouched

"""The judge's wording when a graded cell recorded nothing (the cell's own error is passed on, the traceback is not),
and what its fork server preloads."""

from __future__ import annotations

import nbformat

from autograder.grading.judge import NO_EVIDENCE, Verdict, cell_errors, explain_missing


def _executed_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    failed = nbformat.v4.new_code_cell("assert False, 'expected (None, 28, 28, 16)'")
    failed.metadata["nbgrader"] = {"grade": True, "grade_id": "lab1_model", "points": 2}
    failed.outputs = [
        nbformat.v4.new_output(
            "error",
            ename="AssertionError",
            evalue="expected (None, 28, 28, 16)",
            traceback=["evidence.record('lab1_model', secret_hidden_line)"],
        )
    ]
    passed = nbformat.v4.new_code_cell("pass")
    passed.metadata["nbgrader"] = {"grade": True, "grade_id": "lab1_cam", "points": 4}
    nb.cells = [failed, passed]
    return nb


def test_cell_errors_keep_name_and_message_only():
    errors = cell_errors(_executed_notebook(), 2000)
    assert errors == {"lab1_model": "AssertionError: expected (None, 28, 28, 16)"}


def test_explain_missing_adds_the_cells_error_to_missing_evidence_only():
    verdicts = [
        Verdict("lab1_model", 0.0, 2.0, NO_EVIDENCE),
        Verdict("lab1_cam", 0.0, 4.0, NO_EVIDENCE),
        Verdict("lab1_labels", 0.0, 2.0, "- labels have the wrong shape"),
    ]
    out = explain_missing(verdicts, {**cell_errors(_executed_notebook(), 2000), "lab1_labels": "ValueError: x"})
    # the failure is in the graded cell itself: say so and quote the assertion, not "not reached"
    assert "No result was recorded" not in out[0].message
    assert "A visible check in this part's graded cell failed: expected (None, 28, 28, 16)." in out[0].message
    assert "secret_hidden_line" not in out[0].message
    assert out[1].message == NO_EVIDENCE
    assert out[2].message == "- labels have the wrong shape"
    assert [v.score for v in out] == [0.0, 0.0, 0.0]


def test_an_error_other_than_an_assertion_is_named_with_its_message():
    out = explain_missing(
        [Verdict("lab1_cam", 0.0, 4.0, NO_EVIDENCE)], {"lab1_cam": "NameError: name 'cam' is not defined"}
    )
    assert "stopped with NameError: name 'cam' is not defined before its hidden checks ran" in out[0].message
    bare = explain_missing([Verdict("lab1_cam", 0.0, 4.0, NO_EVIDENCE)], {"lab1_cam": "AssertionError: "})
    assert "the assertion has no message" in bare[0].message


def test_tensorflow_is_preloaded_only_for_courses_whose_checks_need_it(tmp_path):
    """The judge's fork server imports TensorFlow (seconds of CPU per worker) only when a check will use it."""
    from conftest import REPO
    from hostile.minicourse import write_mini_course

    from autograder.checks import check_families, course_uses_tensorflow
    from autograder.course import load_course

    mini = load_course(write_mini_course(tmp_path / "mini"))
    assert check_families(mini) == ["autograder.checks.labels"]
    assert not course_uses_tensorflow(mini)
    real = load_course(REPO)
    assert course_uses_tensorflow(real)
    assert "autograder.checks.heatmaps" in check_families(real)
    assert not course_uses_tensorflow(real, ["review"])  # `course grade --assignment review`
    assert check_families(real, ["review"]) == ["autograder.checks.labels"]

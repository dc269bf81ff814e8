"""course.yml validation: every error names the file, the key and what was expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from autograder.cli import main as course_main
from autograder.course import CourseError, load_course


def _course_with(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load((REPO / "course.yml").read_text(encoding="utf-8"))
    change(raw)
    (tmp_path / "course.yml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return tmp_path


def _error(root: Path) -> str:
    with pytest.raises(CourseError) as info:
        load_course(root)
    message = str(info.value)
    assert str(root.resolve() / "course.yml") in message, message
    return message


def test_the_real_course_loads():
    course = load_course(REPO)
    assert [a.id for a in course.assignments][0] == "review"
    assert course.models["lab4"].total == 14_715_714
    assert all(a.auto_max > 0 for a in course.assignments)
    lab5 = course.assignment("lab5").notebooks[0]
    assert course.model_for(lab5) is course.models["lab1"]  # the randomisation check counts its weighted layers
    assert {p.check for p in lab5.parts} == {
        "sanity.pointing_game",
        "sanity.deletion",
        "sanity.randomisation",
        None,
    }


def test_malformed_yaml_names_the_file(tmp_path: Path):
    (tmp_path / "course.yml").write_text("course:\n  id: [unclosed\n", encoding="utf-8")
    assert "not valid YAML" in _error(tmp_path)


def test_missing_key_is_named(tmp_path: Path):
    message = _error(_course_with(tmp_path, lambda raw: raw["course"].pop("seed")))
    assert "course.seed: missing" in message


def test_wrong_type_names_key_and_expectation(tmp_path: Path):
    message = _error(_course_with(tmp_path, lambda raw: raw["grading"].update(cell_timeout="ten")))
    assert "grading.cell_timeout" in message and "expected an integer" in message and "'ten'" in message


def test_model_total_not_matching_its_layers(tmp_path: Path):
    message = _error(_course_with(tmp_path, lambda raw: raw["models"]["lab1"].update(total=12345)))
    assert "models.lab1.total" in message and "98442" in message


def test_non_positive_points(tmp_path: Path):
    def change(raw):
        raw["assignments"][0]["notebooks"][0]["parts"][0]["points"] = 0

    message = _error(_course_with(tmp_path, change))
    assert "assignments[0].notebooks[0].parts[0].points" in message and "positive" in message


def test_unknown_model(tmp_path: Path):
    def change(raw):
        raw["assignments"][1]["notebooks"][0]["model"] = "lab9"

    message = _error(_course_with(tmp_path, change))
    assert "assignments[1].notebooks[0].model" in message and "'lab9'" in message and "lab1" in message


def test_course_check_reports_a_broken_course_yml(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _course_with(tmp_path, lambda raw: raw["models"]["lab2"]["last_layer"].update(activation="softmax"))
    assert course_main(["check", "--fast", "--course", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "course.yml" in out and "models.lab2.last_layer.activation" in out and "sigmoid" in out


def test_points_in_a_notebook_must_equal_course_yml(review_course: Path, capsys: pytest.CaptureFixture[str]):
    text = (review_course / "course.yml").read_text(encoding="utf-8")
    changed = text.replace("{grade_id: review_losses, points: 3,", "{grade_id: review_losses, points: 4,")
    assert changed != text
    (review_course / "course.yml").write_text(changed, encoding="utf-8")
    shutil.rmtree(review_course / "release")  # the sync part is tested in test_build.py
    from autograder.course_check import check_source_notebook

    course = load_course(review_course)
    assignment = course.assignment("review")
    findings = list(check_source_notebook(course, assignment, assignment.notebooks[0], {}))
    assert [str(f) for f in findings] == [
        "source/review/label_loss_review.ipynb cell "
        + str(_cell_index(review_course, "review_losses"))
        + " (review_losses): points 3 but course.yml gives 4"
    ]


def _cell_index(root: Path, grade_id: str) -> int:
    from autograder.build import nbgrader_meta, read_notebook

    nb = read_notebook(root / "source" / "review" / "label_loss_review.ipynb")
    return next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade_id") == grade_id)


def test_readme_starts_with_the_two_commands_and_lists_the_course():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("```bash\nmake demo\nmake test\n```\n")
    course = load_course(REPO)
    for a in course.assignments:
        auto, written = a.auto_max, a.max_score - a.auto_max
        row = f"| `{a.id}` | {a.title} | `{a.notebooks[0].name}` | {auto:g} + {written:g} |"
        assert row in readme, f"README's course table is out of date with course.yml: {row}"


def test_judge_and_submission_limits_are_validated_by_key(tmp_path: Path):
    message = _error(_course_with(tmp_path, lambda raw: raw["grading"]["judge"].update(memory_mb="lots")))
    assert "grading.judge.memory_mb" in message and "expected an integer" in message
    message = _error(_course_with(tmp_path, lambda raw: raw["grading"]["judge"].update(timeout=0)))
    assert "grading.judge.timeout: must be at least 1" in message
    message = _error(_course_with(tmp_path, lambda raw: raw["grading"]["submission"].update(extra_gb=1)))
    assert "grading.submission: unknown keys ['extra_gb']" in message
    message = _error(_course_with(tmp_path, lambda raw: raw["grading"].pop("max_retries")))
    assert "grading.max_retries: missing" in message

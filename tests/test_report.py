"""The class report and the roster, through the real `course grade --roster` on the mini course.

Five students graded by the real command (sandboxed kernels, real checks, real gradebook): one
right, one whose label_format fails its visible test, two who make the same to_integer mistake
(one of them has markup in the folder name and is not in the roster), one who submitted another
assignment only; the roster lists a student who submitted nothing. The report page is opened in
headless Chromium: no console errors (a CSP violation would be one), every plot loaded.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from browser import CHROMEDRIVER, CHROMIUM, headless_chromium
from conftest import COURSE_BIN
from hostile.minicourse import CONVERT_SOLUTION, FORMAT_WRONG, student_notebook, write_mini_course

from autograder.course import load_course
from autograder.grading.store import STAGES, save_result, stored_results
from autograder.report import collect, diagnoses, first_sentence, render, report_path

HOSTILE_ID = "<img src=x onerror=alert(1)>&eve"
CONVERT_WRONG = CONVERT_SOLUTION.replace("np.argmax", "np.argmin")
ROSTER = (
    "id,first_name,last_name,email\nada,Ada,Lovelace,ada@example.org\n"
    "bob,Bob,<i>Stone</i>,\ncy,Cy,Young,\ngus,Gus,G,\ndan,Dan,D,\n"
)


@pytest.fixture(scope="module")
def graded():
    with tempfile.TemporaryDirectory(prefix="report-") as tmp:
        base = Path(tmp)
        course_root = write_mini_course(base / "course")
        subs, out = base / "submissions", base / "out"
        answers = {
            "ada": {},
            "bob": {"format_code": FORMAT_WRONG},
            "cy": {"convert_code": CONVERT_WRONG},
            HOSTILE_ID: {"convert_code": CONVERT_WRONG},
        }
        for student, kwargs in answers.items():
            (subs / student / "mini").mkdir(parents=True)
            nbformat.write(student_notebook(**kwargs), subs / student / "mini" / "mini.ipynb")
        (subs / "gus" / "other-assignment").mkdir(parents=True)
        (base / "roster.csv").write_text(ROSTER, encoding="utf-8")
        argv = [str(COURSE_BIN), "grade", str(subs), "--out", str(out), "--course", str(course_root)]
        run = subprocess.run(
            [*argv, "--roster", str(base / "roster.csv")], capture_output=True, text=True, timeout=600, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr
        yield course_root, out, run.stdout


def test_grade_reports_unknown_and_missing_students(graded):
    _, out, stdout = graded
    assert f"roster: not in the roster {out.parent / 'roster.csv'} (1): {HOSTILE_ID}" in stdout
    assert "roster: in the roster, no submission (1): dan" in stdout
    assert f"report:    {report_path(out)}" in stdout


def test_nbgrader_export_shows_the_roster_names(graded):
    _, out, _ = graded
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    target = out / "export.csv"
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", f"--to={target}"],
        cwd=out / "course",
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    rows = {r["student_id"]: r for r in csv.DictReader(target.open())}
    assert (rows["ada"]["first_name"], rows["ada"]["last_name"], rows["ada"]["email"]) == (
        "Ada",
        "Lovelace",
        "ada@example.org",
    )
    assert rows["dan"]["score"] == "0.0"  # enrolled, nothing submitted: listed, not dropped
    assert HOSTILE_ID not in rows  # an unsafe folder name is a grades.csv row, never a gradebook student


def test_report_counts_statuses_scores_and_common_mistakes(graded):
    _, out, _ = graded
    page = report_path(out).read_text()
    # the folder named like HTML is an "invalid student id" row of grades.csv: nothing of it is graded
    assert "4 students, 4 submissions, 1 assignments." in page
    assert "4 submissions; graded: 3, missing: 1" in page
    rows = [r.split("</tr>")[0] for r in page.split("<tr>")[1:]]
    # part, graded by, points, full marks, scored (the missing notebook is not), mean, waiting for a TA
    assert "<td>mini_detect_format</td><td>auto</td>" + cells(2, 2, 3, "1.33", 0) in rows
    assert "<td>mini_convert</td><td>auto</td>" + cells(2, 2, 3, "1.33", 0) in rows
    assert "<td>mini_written</td><td>written (TA)</td>" + cells(1, 0, 0, "", 3) in rows
    # the class's mistakes, by their diagnosis (numbers masked, so the same slip groups across students)
    per_part = ("<td>auto</td>", "<td>written (TA)</td>")
    mistakes = [r for r in rows if r.startswith("<td>mini_") and not any(k in r for k in per_part)]
    assert mistakes == [
        "<td>mini_convert</td><td>to_integer(a one-hot array of shape (#, #) (dtype float64)): row # is #, expected #."
        "</td>" + cells(1),
        "<td>mini_detect_format</td><td>A visible check in this part&#x27;s graded cell failed (the assertion has "
        "no message: read the check&#x27;s line in the cell).</td>" + cells(1),
    ]


def cells(*values) -> str:
    return "".join(f"<td class=n>{v}</td>" for v in values)


def test_student_strings_are_escaped(graded):
    _, out, _ = graded
    page = report_path(out).read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;eve" in page and HOSTILE_ID not in page
    assert "Bob &lt;i&gt;Stone&lt;/i&gt;" in page and "<i>" not in page
    assert "<script" not in page.lower()


def test_report_names_the_folders_it_did_not_grade(graded):
    _, out, _ = graded
    page = report_path(out).read_text()
    assert "Not graded, because the folder name is not a student id" in page
    assert "<code>&lt;img src=x onerror=alert(1)&gt;&amp;eve</code>. Rename the folder" in page


def test_grading_time_is_the_sum_of_the_stages_not_of_the_judges_statistics(graded):
    course_root, out, _ = graded
    timings = [nb["timings"] for r in stored_results(out / "work") for nb in r["notebooks"] if nb.get("timings")]
    assert len(timings) == 3 and all("judge_peak_mib" in t for t in timings)  # MiB beside the seconds
    expected = sorted(sum(t[stage] for stage in STAGES) for t in timings)
    assert sorted(collect(load_course(course_root), out).seconds["mini/mini"]) == pytest.approx(expected)


def test_an_unreadable_result_is_counted_nowhere_and_said(graded, tmp_path):
    course_root, out, _ = graded
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    bad = {"student_id": "zed", "assignment": "mini", "status": "graded", "auto_score": 1, "notebooks": ["x"]}
    save_result(copy / "work" / "results" / "zed" / "mini.json", bad)  # this grader's format, a wrong shape
    page = render(load_course(course_root), collect(load_course(course_root), copy))
    assert "1 stored results could not be read and are left out." in page
    assert "4 students, 4 submissions, 1 assignments." in page and "zed" not in page


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromium-driver")
def test_report_in_headless_chromium(graded, tmp_path):
    from selenium.webdriver.common.by import By

    _, out, _ = graded
    driver = headless_chromium(tmp_path / "chromium", {"goog:loggingPrefs": {"browser": "ALL"}})
    try:
        driver.get(report_path(out).as_uri())
        images = driver.find_elements(By.TAG_NAME, "img")
        loaded = [driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images]
        assert len(images) == 4 and all(w and w > 300 for w in loaded), loaded  # statuses, times, scores, mistakes
        alts = [i.get_attribute("alt") for i in images]
        assert alts == [
            "submission status per assignment",
            "grading time per notebook",
            "mini: points per part and totals",
            "mini: most common mistakes",
        ]
        assert HOSTILE_ID in driver.find_element(By.TAG_NAME, "body").text  # shown as text, not as markup
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        driver.save_screenshot(str(out / "report.png"))
    finally:
        driver.quit()


def test_diagnosis_keys():
    assert (
        first_sentence("- max abs difference 0.224 on probe 3. Look at the zoom.") == "max abs difference # on probe #."
    )
    assert first_sentence("lab1_cam returned shape (4, 28)") == "lab1_cam returned shape (#, #)"
    assert diagnoses({"message": "- a 1.5 b.\n- other", "diagnoses": ["zoom_order_2", "zoom_order_2"]}) == [
        "zoom_order_2"
    ]
    assert diagnoses({"message": "- wrong sign at 0.3. More.\n- other"}) == ["wrong sign at #."]
    assert diagnoses({"message": "", "diagnoses": "not a list"}) == ["(no message)"]
    no_result = "No result was recorded for this part: ... ran. The cell stopped with "
    assert diagnoses({"message": no_result + "AssertionError: conv2d: output shape (None, 26, 26, 16), expected"}) == [
        "the cell stopped with AssertionError: conv2d: output shape (None, #, #, #), expected"
    ]
    assert diagnoses({"message": no_result + "NotImplementedError: "}) == [
        "not answered: the cell stopped with NotImplementedError"
    ]

"""A TA grades a written answer in nbgrader's formgrader, in a real headless Chromium.

`course grade` leaves OUT/course as an nbgrader course root. This starts the real Jupyter server
there, opens the graded submission in Chromium (Selenium, Debian's chromium-driver, nothing
downloaded), types a score and a comment for the written part and checks that they reached
gradebook.db, that the autograded parts show the judge's scores, that `course feedback` puts the
score, the comment and the new total on the student's feedback page (opened in Chromium too), and
that grading the class again keeps the TA's score and the page.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMEDRIVER, CHROMIUM, headless_chromium
from nbgrader.api import Gradebook

from autograder.cli import after_grading
from autograder.cli import main as course_main
from autograder.course import load_course
from autograder.grading import gradebook
from autograder.grading.batch import grade_class
from autograder.grading.store import load_result, result_path

REPO = Path(__file__).resolve().parents[1]

STUDENT, ASSIGNMENT = "student_complete", "review"
PARTIAL = "student_partial"  # loses review_losses (examples/mistakes/review.yml: no_batch_mean)

if not (CHROMIUM and CHROMEDRIVER):
    INSTALL = "apt-get install chromium chromium-driver"
    if os.environ.get("CI"):  # .ci/run installs them: a missing browser there is a failure, not a skip
        raise RuntimeError(f"chromium and chromium-driver are required in CI ({INSTALL})")
    pytest.skip(f"needs chromium and chromium-driver ({INSTALL})", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = load_course(REPO)
    base = tmp_path_factory.mktemp("formgrader")
    subs = base / "submissions"
    for student in (STUDENT, PARTIAL):
        shutil.copytree(REPO / "examples" / "submissions" / student / ASSIGNMENT, subs / student / ASSIGNMENT)
    report = grade_class(course, subs, base / "out", progress=False)
    assert {r.student_id: (r.auto_score, r.score, r.max_score) for r in report.rows} == {
        STUDENT: (11, 11, 13),
        PARTIAL: (8, 8, 13),
    }
    return course, subs, report


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(graded):
    _, _, report = graded
    port, token = free_port(), secrets.token_hex(16)
    log = open(report.out / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={report.course_root}",
        ],
        cwd=report.course_root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # a few seconds when idle; minutes on a loaded 2-core machine
    while not _answers(f"{url}/api/status?token={token}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"jupyter lab did not start: {(report.out / 'jupyter.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield url, token
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chromium")
    yield driver
    driver.quit()


def written_grade(course_root: Path, course, notebook: str):
    with Gradebook(gradebook.db_url(course_root), course_id=course.id) as gb:
        grade = gb.find_grade("review_written", notebook, ASSIGNMENT, STUDENT)
        return grade.manual_score, grade.needs_manual_grade


def written_comment(course_root: Path, course, notebook: str):
    with Gradebook(gradebook.db_url(course_root), course_id=course.id) as gb:
        return gb.find_comment("review_written", notebook, ASSIGNMENT, STUDENT).manual_comment


COMMENT = "Good reasoning <b>but</b> name the loss.\nSee the table above."


def open_submission(browser, url: str, token: str, submission_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{url}/login")  # the login form sets the session cookie that formgrader's API calls need
    browser.find_element(By.ID, "password_input").send_keys(token, Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda d: "/login" not in d.current_url)
    browser.get(f"{url}/formgrader/submissions/{submission_id}/")
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script(
            "return typeof formgrader !== 'undefined' && formgrader.grades.loaded && formgrader.comments.loaded"
        )
    )


def test_formgrader_shows_each_parts_verdict_beside_its_cell_and_the_students_figures(graded, server, browser):
    """The TA reads why a part lost its points under that part's cell, and sees the student's own plots."""
    from selenium.webdriver.common.by import By

    course, _, report = graded
    url, token = server
    spec = course.assignment(ASSIGNMENT).notebooks[0]
    result = load_result(result_path(report.out / "work", PARTIAL, ASSIGNMENT))
    verdicts = {v["grade_id"]: v for v in result["notebooks"][0]["verdicts"]}
    assert verdicts["review_losses"]["score"] == 0
    with Gradebook(gradebook.db_url(report.course_root), course_id=course.id) as gb:
        submission_id = gb.find_submission_notebook(spec.name, ASSIGNMENT, PARTIAL).id
    open_submission(browser, url, token, submission_id)

    for part in spec.parts:
        if part.manual:
            continue
        # the verdict box is the output of the cell whose score box has the part's id
        box = browser.find_element(
            By.XPATH,
            f"//input[@id='{part.grade_id}']/ancestor::div[contains(concat(' ', @class, ' '), ' code_cell ')][1]"
            "//div[contains(concat(' ', @class, ' '), ' fb-verdict ')]",
        )
        v = verdicts[part.grade_id]
        assert box.is_displayed()
        assert f"Autograder: {v['score']:g} / {v['max_score']:g} points" in box.text
        first = v["message"].splitlines()[0].removeprefix("- ").replace("`", "")
        assert first[:60] in box.text, (part.grade_id, box.text)
    figures = browser.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']")
    assert len(figures) >= 2  # the review's two plots, drawn by the student's kernel
    assert all(f.size["width"] > 100 and f.size["height"] > 50 for f in figures)
    lost = browser.find_element(By.ID, "review_losses")
    browser.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -120)", lost)
    browser.save_screenshot(str(report.out / "formgrader-partial.png"))  # kept with the test's output to look at


def test_ta_scores_the_written_answer_in_formgrader(graded, server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    course, subs, report = graded
    url, token = server
    notebook = course.assignment(ASSIGNMENT).notebooks[0].name
    assert written_grade(report.course_root, course, notebook) == (None, True)  # waiting for a TA
    with Gradebook(gradebook.db_url(report.course_root), course_id=course.id) as gb:
        submission_id = gb.find_submission_notebook(notebook, ASSIGNMENT, STUDENT).id

    open_submission(browser, url, token, submission_id)
    # the autograded parts carry the judge's scores
    auto = {gid: browser.find_element(By.ID, gid) for gid in ("review_losses", "review_pairing")}
    assert {gid: float(el.get_attribute("placeholder") or el.get_attribute("value")) for gid, el in auto.items()} == {
        "review_losses": 3.0,
        "review_pairing": 2.0,
    }
    score = browser.find_element(By.ID, "review_written")
    score.clear()
    score.send_keys("1.5", Keys.TAB)  # formgrader saves on change

    deadline = time.monotonic() + 30
    while (saved := written_grade(report.course_root, course, notebook)) != (1.5, False):
        assert time.monotonic() < deadline, f"formgrader did not save the score: {saved}"
        time.sleep(0.3)

    comment = browser.find_element(By.ID, "review_written-comment")
    comment.send_keys(COMMENT)
    comment.send_keys(Keys.TAB)
    while (saved := written_comment(report.course_root, course, notebook)) != COMMENT:
        assert time.monotonic() < deadline + 30, f"formgrader did not save the comment: {saved!r}"
        time.sleep(0.3)

    # the student's page: written at autograde time, it knows nothing of the TA until `course feedback`
    page = report.feedback_dir / STUDENT / ASSIGNMENT / f"{notebook}.html"
    assert "graded by a TA" in page.read_text() and "name the loss" not in page.read_text()
    assert course_main(["feedback", str(report.out), "--course", str(REPO)]) == 0
    browser.get(page.as_uri())
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Part review_written: written answer, 1.5 / 2, graded by a TA" in text
    assert "Total: 12.5 / 13" in text
    assert "TA comment:\nGood reasoning <b>but</b> name the loss.\nSee the table above." in text  # text, not markup
    assert not browser.find_elements(By.CSS_SELECTOR, ".ta-comment b")

    again = grade_class(course, subs, report.out, progress=False)  # resume: nothing regraded, the TA's score kept
    assert {r.student_id: (r.auto_score, r.score, r.max_score) for r in again.rows}[STUDENT] == (11, 12.5, 13)
    assert "12.5" in again.csv_path.read_text()
    page.unlink()  # the end of `course grade` rewrites the pages that have TA grades
    after_grading(course, again, subs)
    assert "1.5 / 2, graded by a TA" in page.read_text() and "name the loss" in page.read_text()

"""`course feedback OUT`: the TA's scores and comments reach the students' feedback pages.

The feedback page is first written at autograde time, before any TA has looked. After TAs grade
the written parts in formgrader, this re-renders each student's page from what is already stored
(the autograded notebook and the judge's verdicts in the result store) plus the TA's scores and
comments from OUT/course/gradebook.db. No notebook runs again, so it takes seconds, and the
autograded parts keep exactly the verdicts they were given.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from autograder.course import Course, Notebook
from autograder.grading import gradebook
from autograder.grading.feedback import write_feedback
from autograder.grading.store import stored_results


@dataclass(frozen=True)
class Refreshed:
    pages: int  # feedback pages written again
    with_ta_input: int  # of which show a TA's score or comment
    skipped: list[str]  # student/assignment/notebook whose autograded notebook is gone


def _autograded(out: Path, student: str, aid: str, nb: dict[str, Any]) -> Path | None:
    """The stored autograded notebook: where the result says, else the result store's own layout."""
    candidates = [
        Path(nb["autograded_path"]) if nb.get("autograded_path") else None,
        out / "work" / "submissions" / student / aid / nb["name"] / "autograded.ipynb",
    ]
    return next((p for p in candidates if p is not None and p.is_file()), None)


def feedback_page(out: Path, student: str, aid: str, notebook: str) -> Path:
    return out / "feedback" / student / aid / f"{notebook}.html"


def refresh_feedback(course: Course, out: Path, only_with_ta_input: bool = False) -> Refreshed:
    """Rewrite the feedback pages under OUT with the gradebook's TA entries.

    With ONLY_WITH_TA_INPUT (the end of `course grade`), pages with no TA score or comment are
    left as the autograder wrote them: they would come out the same.
    """
    out = Path(out).resolve()
    course_root = out / "course"
    pages = with_input = 0
    skipped: list[str] = []
    known = {a.id for a in course.assignments}
    grades = gradebook.class_grades(course_root, course)
    for result in stored_results(out / "work"):
        student, aid = result["student_id"], result["assignment"]
        if aid not in known or (student, aid) not in grades:
            continue
        assignment = course.assignment(aid)
        entries = grades[(student, aid)].manual
        specs: dict[str, Notebook] = {nb.name: nb for nb in assignment.notebooks}
        for nb in result["notebooks"]:
            spec = specs.get(nb.get("name"))
            manual = entries.get(nb.get("name"), {})
            if spec is None or (only_with_ta_input and not manual):
                continue
            source = _autograded(out, student, aid, nb)
            if source is None:
                if nb.get("status") not in ("missing", None) and not str(nb.get("status")).startswith("corrupt"):
                    skipped.append(f"{student}/{aid}/{spec.name}")
                continue
            executed = nbformat.read(source, as_version=4)
            verdicts = {v["grade_id"]: v for v in nb.get("verdicts", [])}
            write_feedback(
                executed,
                spec,
                verdicts,
                nb.get("status", "graded"),
                nb.get("message", ""),
                feedback_page(out, student, aid, spec.name),
                manual=manual,
            )
            pages += 1
            with_input += bool(manual)
    return Refreshed(pages=pages, with_ta_input=with_input, skipped=skipped)


def main(args) -> int:
    """`course feedback OUT`."""
    from autograder.course import load_course

    out = Path(args.out)
    if not (out / "work" / "results").is_dir():
        print(
            f"course feedback: {out} has no graded results (run `course grade ... --out {out}` first)", file=sys.stderr
        )
        return 2
    done = refresh_feedback(load_course(args.course), out)
    print(f"feedback: {done.pages} pages rewritten, {done.with_ta_input} with a TA's score or comment")
    for what in done.skipped:
        print(f"  {what}: its autograded notebook is gone; grade it again to rebuild its page", file=sys.stderr)
    print(f"pages:    {out / 'feedback'}/<student>/<assignment>/<notebook>.html")
    return 0

"""`course demo`: grade the bundled example submissions and print the table.

Cheap by design: it brings cnnvis/settings.json, release/ (nbgrader, seconds) and
examples/submissions/ up to date only where they are out of sync with course.yml and source/,
never executes solutions (that is `course build`), then grades examples/submissions into
./demo-output with `course grade`'s engine. The examples are the course's own notebooks, so
when bubblewrap is missing the demo grades them without a sandbox and says so.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from autograder import build, examples
from autograder.course import Course, load_course
from autograder.course_check import solution_difference


def refresh_release(course: Course, log=print) -> list[str]:
    """Regenerate the release of every assignment whose release/ differs from what source/ gives now."""
    if build.write_text(build.settings_path(course), build.settings_json(course)):
        log(f"  updated {build.TOOLKIT_PACKAGE}/settings.json from course.yml")
    toolkit = build.expected_toolkit(course)
    if any(
        not (course.release_dir / rel).is_file() or (course.release_dir / rel).read_bytes() != data
        for rel, data in toolkit.items()
    ):
        build.write_toolkit(course, log)
    todo = build.buildable(course)
    if not todo:
        return []
    expected = build.expected_release(course, [a.id for a in todo])
    stale = []
    for aid, files in expected.items():
        folder = course.release_dir / aid
        if any(not (folder / rel).is_file() or (folder / rel).read_bytes() != data for rel, data in files.items()):
            stale.append(aid)
    if stale:
        build.write_release(course, stale, log)
    for a in todo:
        for nb in a.notebooks:
            solution = course.solutions_dir / a.id / nb.filename
            if not solution.is_file() or solution_difference(course.source_dir / a.id / nb.filename, solution):
                log(f"  note: solutions/{a.id}/{nb.filename} is missing or stale: `course build --assignment {a.id}`")
    return stale


def refresh_examples(course: Course, log=print) -> bool:
    dest = course.root / examples.SUBMISSIONS_DIR
    wanted = examples.example_submissions(course, log=lambda _msg: None)
    current = {
        p.relative_to(dest).as_posix(): p.read_text(encoding="utf-8")
        for student in examples.STUDENTS
        for p in sorted((dest / student).rglob("*.ipynb"))
    }
    if current == wanted:
        return False
    examples.write_examples(course, log)
    return True


def main(args) -> int:
    """`course demo`, called by autograder.cli with parsed ARGS (course, out)."""
    from autograder.cli import after_grading, print_report
    from autograder.grading.batch import SandboxUnavailable, grade_class

    course = load_course(args.course)
    t0 = time.perf_counter()
    print("1/2 bringing release/ and examples/submissions/ up to date with source/")
    stale = refresh_release(course)
    changed = refresh_examples(course)
    print(
        f"    {'rebuilt ' + ', '.join(stale) if stale else 'release/ in sync'}; "
        f"{'examples regenerated' if changed else 'examples in sync'} ({time.perf_counter() - t0:.1f} s)"
    )
    submissions = course.root / examples.SUBMISSIONS_DIR
    if not any(submissions.glob("*/*/*.ipynb")):
        print("course demo: no example submissions (no assignment has a release yet)", file=sys.stderr)
        return 1
    print(f"2/2 grading {submissions} into {Path(args.out)}")
    try:
        report = grade_class(course, submissions, Path(args.out))
    except SandboxUnavailable:
        print(
            "    bubblewrap (bwrap) is not installed: grading the bundled examples without a sandbox.\n"
            "    Install it (apt-get install bubblewrap) before grading real submissions."
        )
        report = grade_class(course, submissions, Path(args.out), allow_unsandboxed=True)
    print()
    print_report(report)
    after_grading(course, report, submissions)
    print(f"\ndemo done in {time.perf_counter() - t0:.1f} s")
    return 0

"""The `course` command: one argparse front end whose subcommands hand off to their modules.

    course check [--fast] [--assignment ID ...]
    course build [--assignment ID ...] [--skip-solutions] [--force]
    course grade SUBMISSIONS [--assignment ID ...] [--out DIR] [--workers N] [--dask ADDRESS] [--regrade]
                 [--allow-unsandboxed] [--roster CSV]
    course feedback [OUT]
    course report [OUT]
    course demo

Modules are imported only for the subcommand that runs, so `course --help` and usage errors
answer instantly (no TensorFlow, no nbgrader import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from autograder.course import CourseError

# subcommand → (module, function(args) -> exit status)
_HANDLERS = {
    "check": ("autograder.course_check", "main"),
    "build": ("autograder.build", "main"),
    "grade": ("autograder.cli", "grade_main"),
    "demo": ("autograder.demo", "main"),
    "feedback": ("autograder.ta_feedback", "main"),
    "report": ("autograder.report", "main"),
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--course", type=Path, default=Path("."), metavar="DIR", help="course folder with course.yml (default: .)"
    )
    ap = argparse.ArgumentParser(
        prog="course",
        description="Build, check and grade the autograded CNN visualisation course (course.yml → nbgrader).",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="{check,build,grade,feedback,report,demo}")

    check = sub.add_parser(
        "check", parents=[common], help="validate course.yml, source notebooks, release/solutions sync, leaks"
    )
    check.add_argument("--fast", action="store_true", help="skip executing the solutions against their own tests")
    check.add_argument("--assignment", action="append", metavar="ID", help="check only this assignment (repeatable)")

    build = sub.add_parser("build", parents=[common], help="regenerate release/, solutions/ and cnnvis/settings.json")
    build.add_argument("--assignment", action="append", metavar="ID", help="build only this assignment (repeatable)")
    build.add_argument("--skip-solutions", action="store_true", help="do not execute solutions (release/ only)")
    build.add_argument(
        "--force", action="store_true", help="execute every solution, even those whose inputs are unchanged"
    )

    grade = sub.add_parser("grade", parents=[common], help="autograde SUBMISSIONS/<student>/<assignment>/<nb>.ipynb")
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS")
    grade.add_argument("--assignment", action="append", metavar="ID", help="grade only this assignment (repeatable)")
    grade.add_argument(
        "--out", type=Path, default=Path("grading-output"), metavar="DIR", help="default: ./grading-output"
    )
    grade.add_argument("--workers", type=_positive_int, metavar="N", help="parallel notebooks (default: course.yml)")
    grade.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="grade on a Dask cluster: a scheduler address (tcp://host:8786, tls://...) or local[:N] "
        "(a LocalCluster of N workers on 127.0.0.1)",
    )
    grade.add_argument("--regrade", action="store_true", help="grade again even if already graded")
    grade.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="run kernels without bubblewrap if it is unavailable (trusted submissions only)",
    )
    grade.add_argument(
        "--roster",
        type=Path,
        metavar="CSV",
        help="the class list, header id,first_name,last_name,email: names for formgrader and nbgrader export",
    )

    for name, what in (
        ("feedback", "rewrite the feedback pages with the TAs' scores and comments from formgrader"),
        ("report", "write OUT/report/index.html: score distributions, common mistakes, statuses, times"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=what)
        cmd.add_argument(
            "out", type=Path, nargs="?", default=Path("grading-output"), metavar="OUT", help="default: ./grading-output"
        )

    demo = sub.add_parser("demo", parents=[common], help="grade the bundled example submissions into ./demo-output")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), metavar="DIR", help="default: ./demo-output")
    return ap


def grade_table(rows) -> str:
    """A fixed-width table of GradeRows: student, assignment, auto score / auto max, total, status."""
    header = ("student", "assignment", "auto", "total", "status")
    lines = [
        (r.student_id, r.assignment, f"{r.auto_score:g} / {r.auto_max:g}", f"{r.score:g} / {r.max_score:g}", r.status)
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*header), rule, *(fmt.format(*line) for line in lines)])


def print_report(report) -> None:
    print(grade_table(report.rows))
    problems = [r for r in report.rows if r.status != "graded" and r.message]
    for r in problems:
        print(f"  {r.student_id}/{r.assignment}: {r.status}: {r.message[:300]}")
    print(f"\ngrades:    {report.csv_path}")
    print(f"feedback:  {report.feedback_dir}/<student>/<assignment>/<notebook>.html")
    print(f"formgrader (manual grades): cd {report.course_root} && jupyter lab")


def after_grading(course, report, submissions: Path, roster_path: Path | None = None, roster=None) -> None:
    """What follows every `course grade`: roster names into the gradebook, TA grades onto the
    feedback pages, the class report."""
    from autograder.grading import gradebook
    from autograder.report import write_report
    from autograder.roster import check_roster, save_check
    from autograder.ta_feedback import refresh_feedback

    if roster is not None:
        gradebook.record_roster(report.course_root, course, roster)
        submitted = sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
        check = check_roster(roster_path, roster, submitted)
        save_check(report.out, check)
        for line in check.lines():
            print(f"roster: {line}")
    refreshed = refresh_feedback(course, report.out, only_with_ta_input=True)
    if refreshed.with_ta_input:
        print(f"feedback with TA grades: {refreshed.with_ta_input} pages")
    print(f"report:    {write_report(course, report.out)}")


def grade_main(args) -> int:
    """`course grade`: grade_class on SUBMISSIONS; a bad submission is a row, only usage errors fail."""
    if not any(p.is_dir() for p in args.submissions.iterdir()):
        print(f"course grade: {args.submissions} has no <student>/ folders", file=sys.stderr)
        return 2
    from autograder.course import load_course
    from autograder.roster import load_roster

    course = load_course(args.course)
    roster = load_roster(args.roster) if args.roster else None  # a bad roster fails before any grading
    from autograder.grading.batch import BackendUnavailable, SandboxUnavailable, grade_class  # nbgrader: when needed

    try:
        report = grade_class(
            course,
            args.submissions,
            args.out,
            assignments=args.assignment,
            workers=args.workers,
            regrade=args.regrade,
            allow_unsandboxed=args.allow_unsandboxed,
            dask=args.dask,
        )
    except (SandboxUnavailable, BackendUnavailable) as exc:
        print(f"course grade: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    after_grading(course, report, args.submissions, args.roster, roster)
    return 0


def _skip_unused_slow_imports() -> None:
    """jsonschema (imported by nbformat) imports rfc3987_syntax when it is installed (jupyter-events pulls
    it in), and that builds a Lark grammar at import: about 1.7 s of every `course` command and of every
    worker forked from it, for the "iri" format that no schema read here uses. Marked absent, it makes
    jsonschema skip that format, as it does when the package is not installed."""
    sys.modules.setdefault("rfc3987_syntax", None)


def main(argv: list[str] | None = None) -> int:
    _skip_unused_slow_imports()
    ap = parser()
    args = ap.parse_args(argv)
    if not (args.course / "course.yml").is_file():
        ap.error(f"{args.course / 'course.yml'} not found: run `course` in the course folder or pass --course DIR")
    if getattr(args, "assignment", None):
        from autograder.course import load_course

        try:
            course = load_course(args.course)
            for aid in args.assignment:
                course.assignment(aid)
        except CourseError as exc:
            ap.error(str(exc))
    if getattr(args, "dask", None):
        from autograder.grading.backends.dask import parse_target

        try:
            parse_target(args.dask)
        except ValueError as exc:
            ap.error(str(exc))
    if args.command == "grade" and not args.submissions.is_dir():
        ap.error(f"{args.submissions}: no such folder (expected SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb)")
    module, function = _HANDLERS[args.command]
    handler = getattr(importlib.import_module(module), function)
    try:
        return int(handler(args) or 0)
    except CourseError as exc:
        print(f"course {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

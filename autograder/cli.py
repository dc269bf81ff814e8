"""The `course` command: one argparse front end whose subcommands hand off to their modules.

    course check [--fast] [--assignment ID ...]
    course build [--assignment ID ...] [--skip-solutions]
    course grade SUBMISSIONS [--assignment ID ...] [--out DIR] [--workers N] [--regrade] [--allow-unsandboxed]
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

# subcommand → module whose main(args) -> int runs it
_HANDLERS = {
    "check": "autograder.course_check",
    "build": "autograder.build",
    "grade": "autograder.grade_command",
    "demo": "autograder.demo",
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
    sub = ap.add_subparsers(dest="command", required=True, metavar="{check,build,grade,demo}")

    check = sub.add_parser(
        "check", parents=[common], help="validate course.yml, source notebooks, release/solutions sync, leaks"
    )
    check.add_argument("--fast", action="store_true", help="skip executing the solutions against their own tests")
    check.add_argument("--assignment", action="append", metavar="ID", help="check only this assignment (repeatable)")

    build = sub.add_parser("build", parents=[common], help="regenerate release/, solutions/ and cnnvis/settings.json")
    build.add_argument("--assignment", action="append", metavar="ID", help="build only this assignment (repeatable)")
    build.add_argument("--skip-solutions", action="store_true", help="do not execute solutions (release/ only)")

    grade = sub.add_parser("grade", parents=[common], help="autograde SUBMISSIONS/<student>/<assignment>/<nb>.ipynb")
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS")
    grade.add_argument("--assignment", action="append", metavar="ID", help="grade only this assignment (repeatable)")
    grade.add_argument(
        "--out", type=Path, default=Path("grading-output"), metavar="DIR", help="default: ./grading-output"
    )
    grade.add_argument("--workers", type=_positive_int, metavar="N", help="parallel notebooks (default: course.yml)")
    grade.add_argument("--regrade", action="store_true", help="grade again even if already graded")
    grade.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="run kernels without bubblewrap if it is unavailable (trusted submissions only)",
    )

    demo = sub.add_parser("demo", parents=[common], help="grade the bundled example submissions into ./demo-output")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), metavar="DIR", help="default: ./demo-output")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not (args.course / "course.yml").is_file():
        ap.error(f"{args.course / 'course.yml'} not found: run `course` in the course folder or pass --course DIR")
    module = importlib.import_module(_HANDLERS[args.command])
    try:
        return int(module.main(args) or 0)
    except CourseError as exc:
        print(f"course {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""nbgrader's configuration, derived from course.yml rather than kept by hand.

`write_course_root` lays out a working nbgrader course folder (config, gradebook location,
source/) wherever the build or the grader needs one; nothing in the repository is an nbgrader
course folder itself, so nbgrader never writes into tracked files.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

from autograder.course import Course

# C-level output (TensorFlow's absl logging) goes to the kernel log instead of the cell's stderr,
# which nbgrader would otherwise score as a failure (see NOTES.md).
KERNEL_EXTRA_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]
# What replaces a solution in release/, and a missing answer when grading. Its message is what a student
# sees when running a cell before answering it: say what to do.
CODE_STUB = 'raise NotImplementedError("your answer: replace this line with your code")'
TEXT_STUB = "YOUR ANSWER HERE"


def ensure_tools_on_path() -> None:
    """Put this interpreter's bin/ on PATH: nbgrader shells out to `alembic` (gradebook migrations),
    which is only found there when the venv is not activated (e.g. `.venv/bin/course`)."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bindir, path]) if path else bindir
    _alembic_head_in_process()


def _alembic_head_in_process() -> None:
    """Answer nbgrader's `alembic heads` subprocess (a new interpreter per fresh gradebook, seconds
    each) in-process with alembic's own API; same value, asked once per process."""
    import nbgrader.api as nbapi

    original = getattr(nbapi, "get_alembic_version", None)
    if original is None or getattr(original, "in_process", False):
        return

    @functools.cache
    def get_alembic_version() -> str:
        try:
            from alembic.config import Config
            from alembic.script import ScriptDirectory

            with nbapi._temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:
                return ScriptDirectory.from_config(Config(ini)).get_current_head()
        except Exception:  # an nbgrader/alembic change: fall back to nbgrader's own way
            return original()

    get_alembic_version.in_process = True  # type: ignore[attr-defined]
    nbapi.get_alembic_version = get_alembic_version


def nbgrader_config(course: Course) -> str:
    """The text of nbgrader_config.py for COURSE."""
    return "\n".join(
        [
            "# Generated from course.yml by autograder.nbgrader_setup; do not edit.",
            "c = get_config()  # noqa: F821",
            f"c.CourseDirectory.course_id = {course.id!r}",
            "c.CourseDirectory.root = __import__('os').path.dirname(__import__('os').path.abspath(__file__))",
            f"c.Execute.timeout = {course.grading.cell_timeout}",
            f"c.Execute.extra_arguments = {KERNEL_EXTRA_ARGUMENTS!r}",
            "c.Execute.allow_errors = True",
            f"c.ClearSolutions.code_stub = {{'python': {CODE_STUB!r}}}",
            f"c.ClearSolutions.text_stub = {TEXT_STUB!r}",
            f"c.LimitOutput.max_lines = {max(100, course.grading.max_output_bytes // 200)}",
            "c.Exchange.root = __import__('os').path.join(c.CourseDirectory.root, 'exchange')",
            "",
        ]
    )


def write_course_root(course: Course, root: Path, assignments: list[str] | None = None) -> Path:
    """Create ROOT with nbgrader_config.py and a copy of source/ for ASSIGNMENTS (default: all)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(nbgrader_config(course), encoding="utf-8")
    (root / "exchange").mkdir(exist_ok=True)
    ids = assignments or [a.id for a in course.assignments]
    for aid in ids:
        src = course.source_dir / aid
        if src.is_dir():
            dest = root / "source" / aid
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return root

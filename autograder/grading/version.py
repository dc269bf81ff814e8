"""The course version a Dask worker must share with the client before it grades anything.

Scores depend on course.yml, the source notebooks (the rebuild restores their locked and test
cells), the grader's code, the students' toolkit and the versions of the packages kernels and the
judge run on. Each is hashed on its own so a refusal can say which one differs. Computed once per
process and course folder.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
from pathlib import Path

from autograder.course import COURSE_FILE, Course
from autograder.grading.sandbox import toolkit_dir

# The distributions whose versions can change a score or a feedback page.
PACKAGES = (
    "tensorflow",
    "keras",
    "numpy",
    "scipy",
    "nbgrader",
    "nbclient",
    "nbconvert",
    "nbformat",
    "ipykernel",
    "hypothesis",
    "matplotlib",
    "pillow",
)
GRADER_DIR = Path(__file__).resolve().parents[1]  # the autograder package


def _tree(root: Path, pattern: str) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _packages() -> str:
    lines = [f"python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            lines.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{name} missing")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@functools.cache
def _version_at(root: Path) -> dict[str, str]:
    parts = {
        "course.yml": hashlib.sha256((root / COURSE_FILE).read_bytes()).hexdigest(),
        "source notebooks": _tree(root / "source", "*.ipynb"),  # = Course.source_dir
        "grader code": _tree(GRADER_DIR, "*"),
        "toolkit": _tree(toolkit_dir(), "*"),
        "package versions": _packages(),
    }
    parts["all"] = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()
    return parts


def course_version(course: Course) -> dict[str, str]:
    """{part: sha256} for the parts above, and "all" for their combination."""
    return dict(_version_at(course.root.resolve()))


def differences(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """The parts (course.yml, grader code, ...) whose digests differ."""
    return [part for part in theirs if part != "all" and mine.get(part) != theirs[part]]

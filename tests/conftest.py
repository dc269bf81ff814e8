"""Shared fixtures: temporary copies of the course, so tests never write into the repository."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograder.grading import uid_slots

REPO = Path(__file__).resolve().parents[1]
COURSE_BIN = Path(sys.executable).with_name("course")
_FILES = ("course.yml", "pyproject.toml")
_PER_ASSIGNMENT = ("source", "release", "solutions")
_IGNORE = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def copy_course(dest: Path, assignments: list[str] | None = None) -> Path:
    """Copy the course (course.yml, toolkit, source/release/solutions, examples) to DEST.

    With ASSIGNMENTS, only those assignments' folders, example submissions and mistakes files are
    copied (course.yml stays whole, so the copy is the real course minus other assignments' files).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "cnnvis", dest / "cnnvis", ignore=_IGNORE)

    def wanted(name: str) -> bool:
        return assignments is None or name in assignments

    for top in _PER_ASSIGNMENT:
        src = REPO / top
        if not src.is_dir():
            continue
        for child in sorted(src.iterdir()):
            if child.is_dir() and (wanted(child.name) or (top == "release" and child.name == "toolkit")):
                shutil.copytree(child, dest / top / child.name, ignore=_IGNORE)
            elif child.is_file():
                (dest / top).mkdir(parents=True, exist_ok=True)
                shutil.copy2(child, dest / top / child.name)
    mistakes = REPO / "examples" / "mistakes"
    for path in sorted(mistakes.glob("*.yml")) if mistakes.is_dir() else []:
        if wanted(path.stem):
            (dest / "examples" / "mistakes").mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / "examples" / "mistakes" / path.name)
    for path in sorted((REPO / "examples" / "submissions").glob("*/*/*.ipynb")):
        if wanted(path.parent.name):
            target = dest / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return dest


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole copy of the course, shared by the session: read it, do not change it."""
    return copy_course(tmp_path_factory.mktemp("course") / "course")


@pytest.fixture(scope="module")
def kernel_uid() -> Iterator[int | None]:
    """The uid a test's own sandboxed kernel drops to (as root): one no grading worker on this machine holds."""
    if os.geteuid() != 0:
        yield None
        return
    slot = uid_slots.claim()[0]
    yield slot.uid
    slot.release()


@pytest.fixture
def review_course(tmp_path: Path) -> Path:
    """A private copy with only the cheap `review` assignment's files, free to modify."""
    return copy_course(tmp_path / "course", ["review"])


# Longest first: with `make test`'s two pytest-xdist workers (whole files each), the end-to-end batch
# starts at once on one worker while the other runs the rest, instead of ending the run alone.
SLOWEST_FILES = ("test_e2e_examples.py", "test_pages_browser.py", "test_dask.py", "test_hostile.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: the order inside each file is kept

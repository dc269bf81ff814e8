"""A submission folder read as data: only regular files, never followed, within a budget.

A folder of submissions often comes from a zip, and a zip can carry symbolic links (a notebook
that links to the instructor's source notebook would be graded as the student's work), hard
links, FIFOs (opening one blocks), sockets and devices, sparse files of terabytes and trees of
millions of files. Here every entry is looked at with lstat only:
- `plain_file_problem` says why a handed-in notebook is not a regular file of its own
  (status `not a regular file`): a link, a hard link (st_nlink > 1: the other name may be
  anywhere), a FIFO, a socket, a device, or a folder on the way that is a link;
- `copy_submission` copies the other files into the kernel's working copy: regular files only,
  opened with O_NOFOLLOW | O_NONBLOCK and checked again on the open descriptor, within
  `grading.submission` limits on bytes (the apparent size, so a sparse file counts in full),
  files and depth. What is left out is listed for the feedback, never an error.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import SubmissionLimits
from autograder.grading.evidence_read import cut
from autograder.grading.validate import MAX_NOTEBOOK_BYTES

NOT_REGULAR = "not a regular file"
MAX_NOTES = 5


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def plain_file_problem(folder: Path, name: str, shown: str) -> str | None:
    """Why FOLDER/NAME (shown to people as SHOWN) is not a regular file of its own; None when it is, or is absent."""
    for ancestor in (folder.parent, folder):
        try:
            st = os.lstat(ancestor)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            kind = _kind(st.st_mode)
            return f"{shown}: the folder {ancestor.name} is {kind}, not a folder of its own; nothing in it is read"
    try:
        st = os.lstat(folder / name)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return f"{shown} is {_kind(st.st_mode)}, not the notebook itself; hand in the notebook file"
    if st.st_nlink > 1:
        return f"{shown} is a hard link ({st.st_nlink} names for one file), not a file of its own; hand in a copy"
    return None


def open_regular(path: Path) -> tuple[int, os.stat_result]:
    """An fd for PATH if it is a regular file with one name; OSError otherwise. Never blocks, never follows."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        raise OSError(f"{path.name} is {NOT_REGULAR}")
    return fd, st


@dataclass
class CopyReport:
    copied: int = 0
    bytes: int = 0
    left_out: list[str] = field(default_factory=list)

    def note(self, rel: str, why: str) -> None:
        self.left_out.append(f"{cut(rel, 80)} ({why})")

    def summary(self) -> str:
        """A sentence for the feedback, or '' when everything was copied."""
        if not self.left_out:
            return ""
        shown = "; ".join(self.left_out[:MAX_NOTES])
        more = f"; and {len(self.left_out) - MAX_NOTES} more" if len(self.left_out) > MAX_NOTES else ""
        return f"Files of the submission not given to the notebook: {shown}{more}."


def _copy_file(src: Path, dest: Path, size: int) -> None:
    fd, _st = open_regular(src)
    with os.fdopen(fd, "rb") as f, open(dest, "wb") as g:
        remaining = size
        while remaining > 0:
            block = f.read(min(1 << 20, remaining))
            if not block:
                break
            g.write(block)
            remaining -= len(block)


def copy_submission(src: Path, dest: Path, limits: SubmissionLimits, notebooks: set[str], skip: set[str]) -> CopyReport:
    """Copy SRC's regular files into DEST (see the module docstring).

    NOTEBOOKS (names at the top level) are copied outside the byte budget; SKIP names at the top
    level are left out silently (folders the grader makes itself).
    """
    report = CopyReport()
    budget = limits.extra_mb * 2**20
    stack: list[tuple[Path, Path, int]] = [(src, dest, 0)]
    while stack:
        folder, out, depth = stack.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            report.note(str(folder.relative_to(src)) or ".", f"unreadable: {exc.strerror}")
            continue
        for name in names:
            path = folder / name
            rel = str(path.relative_to(src))
            if depth == 0 and name in skip:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if depth + 1 >= limits.max_depth:
                    report.note(rel + "/", f"deeper than {limits.max_depth} folders")
                    continue
                if report.copied >= limits.max_files:
                    report.note(rel + "/", f"more than {limits.max_files} files and folders")
                    continue
                report.copied += 1  # folders count as entries: a tree of empty folders is bounded too
                (out / name).mkdir()
                stack.append((path, out / name, depth + 1))
                continue
            if not stat.S_ISREG(st.st_mode):
                report.note(rel, f"{_kind(st.st_mode)}, {NOT_REGULAR}")
                continue
            if st.st_nlink > 1:
                report.note(rel, f"a hard link, {NOT_REGULAR}")
                continue
            is_notebook = depth == 0 and name in notebooks and st.st_size <= MAX_NOTEBOOK_BYTES
            if not is_notebook:
                if report.copied >= limits.max_files:
                    report.note(rel, f"more than {limits.max_files} files and folders")
                    continue
                if report.bytes + st.st_size > budget:
                    report.note(rel, f"{st.st_size:,} bytes, over the {limits.extra_mb} MiB for extra files")
                    continue
            try:
                _copy_file(path, out / name, st.st_size)
            except OSError:
                report.note(rel, NOT_REGULAR)
                continue
            if not is_notebook:
                report.copied += 1
                report.bytes += st.st_size
    return report

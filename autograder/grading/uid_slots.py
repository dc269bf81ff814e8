"""The unprivileged uid each grading worker's kernels run as: one per worker on the whole machine.

RLIMIT_NPROC (the kernel's `max_processes`, threads included) counts every process of a uid, and
a process may signal or trace the others of its uid. So two batches graded at once on one machine
(two `course grade` runs, or a Dask worker beside a local batch) must never share a uid. Each
worker holds its uid through an exclusive flock on a lock file of its own: the lock dies with the
process however it ends, so a crashed batch frees its uids without any clean-up.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder.grading.file_lock import try_lock
from autograder.grading.sandbox import UID_BASE

SLOTS = 1000  # uids UID_BASE .. UID_BASE + SLOTS - 1


@dataclass(frozen=True)
class UidSlot:
    uid: int
    fd: int  # the locked file: closing it (or this process ending) frees the uid

    def release(self) -> None:
        os.close(self.fd)


def lock_folder() -> Path:
    return Path(tempfile.gettempdir()) / "autograder-uid-slots"


def _checked_folder() -> Path:
    """The lock folder, made if missing; refused if someone else could put files (or links) in it."""
    folder = lock_folder()
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise RuntimeError(
            f"{folder}: the grading uid lock folder must be a folder owned by uid {os.geteuid()} that nobody else "
            "can write to; remove it and grade again"
        )
    return folder


def claim(count: int = 1) -> list[UidSlot]:
    """COUNT uids that no other process on this machine holds, each kept until released or exit."""
    folder = _checked_folder()
    claimed: list[UidSlot] = []
    for slot in range(SLOTS):
        fd = try_lock(folder / f"{slot}.lock")
        if fd is None:
            continue
        claimed.append(UidSlot(UID_BASE + slot, fd))
        if len(claimed) == count:
            return claimed
    for held in claimed:
        held.release()
    raise RuntimeError(f"no free grading uid among the {SLOTS} from {UID_BASE} on this machine ({folder})")

"""An exclusive flock on a lock file: held until its descriptor is closed or the process ends, however it ends."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_lock(path: Path, create: bool = True) -> int | None:
    """The descriptor of PATH, exclusively locked, or None when another process holds it. A link is
    never followed (OSError); without CREATE a missing file is FileNotFoundError."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd

"""Copy the evidence a kernel left out of its working copy before the judge reads it.

The working copy was writable by student code, so its evidence folder may hold symlinks (to the
solutions, to /etc), FIFOs, device nodes or far too much data. Only regular files are copied,
never following links, up to a byte budget; the judge then reads a folder the kernel cannot touch.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class EvidenceTooLarge(ValueError):
    pass


def collect_evidence(src: Path, dest: Path, max_bytes: int, max_files: int = 10_000) -> list[str]:
    """Copy regular files under SRC to DEST; returns notes about what was skipped."""
    notes: list[str] = []
    dest.mkdir(parents=True, exist_ok=True)
    if not src.is_dir() or src.is_symlink():
        return notes
    total, count = 0, 0
    for root, dirs, files in os.walk(src, followlinks=False):
        rel = Path(root).relative_to(src)
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root) / name
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                notes.append(f"{rel / name}: not a regular file, ignored")
                continue
            count += 1
            total += st.st_size
            if total > max_bytes or count > max_files:
                raise EvidenceTooLarge(f"more than {max_bytes} bytes or {max_files} files of evidence")
            out = dest / rel / name
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f, open(out, "wb") as g:
                remaining = st.st_size
                while remaining > 0:
                    block = f.read(min(1 << 20, remaining))
                    if not block:
                        break
                    g.write(block)
                    remaining -= len(block)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return notes

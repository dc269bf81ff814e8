"""A folder as plain, bounded data and back: how a submission and the probes travel to a Dask worker.

The client reads the folder without following links (a link travels as its target string, as the
local pool's working copy keeps it a link); files that are neither regular files nor links
(fifos, sockets, devices) are left out, as reading one could block. The worker recreates the
folder in its own scratch space. The bounds derive from the submission-reading limit.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from autograder.grading.validate import MAX_NOTEBOOK_BYTES

MAX_FOLDER_BYTES = 4 * MAX_NOTEBOOK_BYTES  # a submission folder: its notebooks and what they saved
MAX_FOLDER_ENTRIES = 2000


class FolderTooLarge(ValueError):
    """The folder holds more than a submission may send to a worker."""


def pack_folder(folder: Path, max_bytes: int = MAX_FOLDER_BYTES, max_entries: int = MAX_FOLDER_ENTRIES) -> dict:
    """{"files": {relpath: bytes}, "links": {relpath: target}, "dirs": [relpath]} of FOLDER."""
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    dirs: list[str] = []
    total = 0
    for root, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(root)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if len(files) + len(links) + len(dirs) >= max_entries:
                raise FolderTooLarge(f"{folder} holds more than {max_entries} files and folders")
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                links[rel] = os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                dirs.append(rel)
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > max_bytes:
                    raise FolderTooLarge(f"{folder} holds more than {max_bytes // (1024 * 1024)} MB")
                files[rel] = _read_regular(path)
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    return {"files": files, "links": links, "dirs": dirs}


def _read_regular(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def digest(packed: dict) -> str:
    h = hashlib.sha256()
    for kind in ("files", "links"):
        for rel, value in sorted(packed[kind].items()):
            h.update(f"{kind}\0{rel}\0".encode() + (value if isinstance(value, bytes) else value.encode()) + b"\0")
    for rel in sorted(packed["dirs"]):
        h.update(f"dir\0{rel}\0".encode())
    return h.hexdigest()


def _inside(dest: Path, rel: str) -> Path:
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ValueError(f"refusing the path {rel!r} outside the folder")
    return dest.joinpath(*parts)


def unpack_folder(packed: dict[str, Any], dest: Path) -> Path:
    """Recreate a pack_folder result at DEST (which must not exist); returns DEST."""
    dest.mkdir(parents=True)
    for rel in sorted(packed["dirs"]):
        _inside(dest, rel).mkdir(parents=True, exist_ok=True)
    for rel, data in packed["files"].items():
        path = _inside(dest, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for rel, target in packed["links"].items():
        path = _inside(dest, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
    return dest

"""Read a submitted notebook without trusting it: checksum, JSON, nbformat schema, readable reasons.

The submitted file is only ever read (never opened for writing); everything downstream works on
copies. A file that is not a usable notebook yields a reason such as
"corrupt: alice/review/label_loss_review.ipynb is not valid JSON (line 3, column 1)".
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Submitted:
    path: Path
    sha256: str
    notebook: NotebookNode | None
    problem: str | None  # None when the notebook is usable


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_submitted(path: Path, shown_as: str) -> Submitted:
    """Load PATH (named SHOWN_AS in messages); a problem string instead of an exception."""
    try:  # never follows a link, never blocks on a FIFO (pipeline refuses those first, with their own status)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return Submitted(path, "", None, f"{shown_as} is not a regular file")
            if st.st_size > MAX_NOTEBOOK_BYTES:
                return Submitted(path, "", None, f"{shown_as} is {st.st_size} bytes, larger than any notebook")
            raw = f.read(MAX_NOTEBOOK_BYTES + 1)
    except OSError as exc:
        return Submitted(path, "", None, f"{shown_as} cannot be read ({exc.strerror or exc})")
    digest = hashlib.sha256(raw).hexdigest()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Submitted(path, digest, None, f"{shown_as} is not UTF-8 text")
    except json.JSONDecodeError as exc:
        return Submitted(path, digest, None, f"{shown_as} is not valid JSON (line {exc.lineno}, column {exc.colno})")
    if not isinstance(doc, dict) or "cells" not in doc and "worksheets" not in doc:
        return Submitted(path, digest, None, f"{shown_as} is JSON but not a notebook (no cells)")
    version = doc.get("nbformat")
    if version not in (3, 4):
        return Submitted(path, digest, None, f"{shown_as} has nbformat {version!r}; version 4 is expected")
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # ValidationError, conversion errors: all mean the same to the instructor
        reason = str(getattr(exc, "message", exc)).splitlines()[0][:200]
        return Submitted(path, digest, None, f"{shown_as} is not a valid notebook ({reason})")
    return Submitted(path, digest, nb, None)

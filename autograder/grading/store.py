"""The result store: one JSON per submission (student x assignment), written atomically.

A result is written to a temporary file in the same folder, flushed and renamed over the final
name, so a killed run leaves either the old result or the new one, never half of one. A run
resumes by skipping submissions whose stored result has the same key (checksums of the submitted
files and of the source notebooks).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RESULT_VERSION = 1


INVALID_ID = "invalid student id"  # the status of a grades.csv row for a folder name that is not an id
# A notebook's timings: the wall seconds of these stages, beside the judge's own statistics (peak MiB, CPU).
STAGES = ("prepare", "execute", "judge", "feedback")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """PATH holds DATA, all or nothing. MODE: 0600 (mkstemp's) for the grader's own records; pages
    people open ask for more (feedback.PAGE_MODE)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def readable_by_kernels(root: Path) -> None:
    """Folders 0755 and files 0644 under ROOT: grader-written inputs the sandbox's unprivileged uids read."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def result_path(work: Path, student_id: str, assignment_id: str) -> Path:
    return work / "results" / student_id / f"{assignment_id}.json"


def save_result(path: Path, result: dict[str, Any]) -> None:
    write_atomic(path, json.dumps({"version": RESULT_VERSION, **result}, indent=1, sort_keys=True).encode())


def load_result(path: Path) -> dict[str, Any] | None:
    """The stored result, or None when there is none or it is unreadable (then it is graded again)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == RESULT_VERSION else None


def finished(path: Path, key: str) -> dict[str, Any] | None:
    """The stored result for KEY if this submission was already graded with the same files and sources."""
    doc = load_result(path)
    return doc if doc is not None and doc.get("key") == key else None


def stored_results(work: Path) -> list[dict[str, Any]]:
    """Every readable stored result under WORK/results, sorted by student then assignment."""
    out = []
    for path in sorted(Path(work).glob("results/*/*.json")):
        doc = load_result(path)
        if doc is not None and {"student_id", "assignment", "status", "notebooks"} <= doc.keys():
            out.append(doc)
    return out

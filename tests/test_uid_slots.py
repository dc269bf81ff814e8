"""Grading uids are claimed machine-wide: two batches at once never share one, and a dead worker frees its own."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import pytest

from autograder.grading import uid_slots
from autograder.grading.sandbox import UID_BASE


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(uid_slots, "lock_folder", lambda: tmp_path / "slots")
    return tmp_path / "slots"


def test_claims_are_distinct_and_freed_on_release(folder):
    first = uid_slots.claim(2)
    second = uid_slots.claim(1)
    uids = [s.uid for s in first + second]
    assert len(set(uids)) == 3 and all(UID_BASE <= u < UID_BASE + uid_slots.SLOTS for u in uids)
    first[0].release()
    assert uid_slots.claim(1)[0].uid == first[0].uid  # the lowest free uid again
    assert (folder.stat().st_mode & 0o777) == 0o700


def test_another_process_gets_other_uids_and_a_dead_ones_return(folder):
    held = uid_slots.claim(1)[0]
    script = (
        "import sys; from autograder.grading import uid_slots; from pathlib import Path\n"
        f"uid_slots.lock_folder = lambda: Path({str(folder)!r})\n"
        "print(uid_slots.claim(1)[0].uid)\n"
    )
    other = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert other != held.uid
    again = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert again == other  # the first child ended: its lock, hence its uid, went with it


def test_a_folder_others_can_write_is_refused(folder):
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    with pytest.raises(RuntimeError, match="nobody else"):
        uid_slots.claim()


def test_a_planted_link_is_not_followed(folder, tmp_path):
    folder.mkdir(mode=0o700)
    target = tmp_path / "target"
    os.symlink(target, folder / "0.lock")
    with pytest.raises(OSError):
        uid_slots.claim()
    assert not target.exists()


def test_all_taken_is_a_clear_error(folder, monkeypatch):
    monkeypatch.setattr(uid_slots, "SLOTS", 2)
    held = uid_slots.claim(2)
    with pytest.raises(RuntimeError, match="no free grading uid among the 2"):
        uid_slots.claim()
    assert len(os.listdir(folder)) == 2 and held


def _grade_reporting_uids(base: Path) -> dict[str, int]:
    """Grade three mini-course submissions whose kernels print their uid; student -> that uid."""
    from hostile.minicourse import student_notebook, write_mini_course

    from autograder.course import load_course
    from autograder.grading.batch import grade_class

    course = load_course(write_mini_course(base / "course"))
    for student in ("ann", "bo", "cy"):
        nb = student_notebook()
        nb.cells.append(nbformat.v4.new_code_cell("import os\nprint('kernel uid', os.getuid())"))
        (base / "subs" / student / "mini").mkdir(parents=True)
        nbformat.write(nb, base / "subs" / student / "mini" / "mini.ipynb")
    report = grade_class(course, base / "subs", base / "out", workers=2, progress=False)
    assert [r.status for r in report.rows] == ["graded"] * 3, [(r.student_id, r.message) for r in report.rows]
    uids = {}
    for student in ("ann", "bo", "cy"):
        graded = base / "out" / "work" / "submissions" / student / "mini" / "mini" / "autograded.ipynb"
        cells = nbformat.read(graded, as_version=4).cells
        text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
        uids[student] = int(re.search(r"kernel uid (\d+)", text).group(1))
    return uids


@pytest.mark.skipif(os.geteuid() != 0, reason="kernels switch to a grading uid only when the grader runs as root")
def test_a_batch_never_uses_a_uid_another_process_holds(tmp_path):
    held = uid_slots.claim(1)[0]  # as another batch's worker would
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:  # as `course grade` runs
            uids = pool.submit(_grade_reporting_uids, tmp_path).result()
    finally:
        held.release()
    assert held.uid not in uids.values(), (held.uid, uids)
    assert all(UID_BASE <= uid < UID_BASE + uid_slots.SLOTS for uid in uids.values()), uids

"""One submission per attack or fault, each with the most it may earn (its honest work).

`corpus(paths)` returns Case objects: a student id, the file to hand in (a notebook or raw
bytes), the score its honest work deserves (`honest`), whether that score must be met exactly
(`exact`, for submissions whose honest parts must keep their credit), and the status expected in
grades.csv (prefix). PATHS names the real folders an attacker would aim at (the course repo, the
output folder, other students' submissions) so the attacks are not blind guesses.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import nbformat

from .minicourse import CONVERT_SOLUTION, FORMAT_SOLUTION, FORMAT_WRONG, student_notebook

FULL = 4.0
CONVERT_WRONG = CONVERT_SOLUTION.replace("np.argmax(np.asarray(y_one_hot), axis=1)", "np.argmin(y_one_hot, axis=1)")


@dataclass(frozen=True)
class Case:
    student_id: str
    content: bytes | None  # None: nothing handed in for the assignment
    honest: float
    exact: bool = False
    status: str = "graded"


def _nb(nb: nbformat.NotebookNode) -> bytes:
    return nbformat.writes(nb).encode("utf-8")


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _with_extra(nb: nbformat.NotebookNode, after: str, code: str) -> nbformat.NotebookNode:
    """Insert a student's own code cell right after the cell with grade id AFTER."""
    nb = copy.deepcopy(nb)
    i = next(i for i, c in enumerate(nb.cells) if _gid(c) == after)
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(code))
    return nb


def corpus(repo: str, out: str, submissions: str, marker: str) -> list[Case]:
    """MARKER is a host path no submission may create."""
    honest = student_notebook()
    wrong = student_notebook(FORMAT_WRONG, CONVERT_WRONG)  # earns 0 on its own
    half = student_notebook(FORMAT_SOLUTION, CONVERT_WRONG)  # earns 2 on its own
    cases = [
        Case("honest_full", _nb(honest), FULL, exact=True),
        Case("honest_half", _nb(student_notebook(FORMAT_WRONG)), 2.0, exact=True),
        Case("honest_blank", _nb(student_notebook(None, None)), 0.0, exact=True),
    ]

    # --- reading and writing what must be invisible
    snoop = f"""
import os, glob, sqlite3
found = []
for pattern in ["{repo}/course.yml", "{repo}/source/*/*", "{repo}/autograder/checks/*.py", "{repo}/solutions/*/*",
                "{out}/course/gradebook.db", "{submissions}/*/*/*.ipynb", "/root/*", "/work/main/source/*/*"]:
    found += glob.glob(pattern)
print("visible:", found)
for target in ["{out}/course/gradebook.db", "{submissions}/honest_full/mini/mini.ipynb", "{marker}", "/probes/x"]:
    try:
        with open(target, "w") as f:
            f.write("pwned")
    except OSError as exc:
        print("refused", target, type(exc).__name__)
try:
    db = sqlite3.connect("{out}/course/gradebook.db")
    db.execute("update grade set manual_score = 100")
    db.commit()
except Exception as exc:
    print("gradebook refused", type(exc).__name__)
"""
    cases.append(Case("snoop_and_write", _nb(_with_extra(wrong, "mini_answer_format", snoop)), 0.0))

    # --- replacing what tests use inside the kernel: none of it decides a grade
    patch_helpers = """
import builtins, sys, numpy as np, numpy.testing, hypothesis
np.testing.assert_allclose = lambda *a, **k: None
np.testing.assert_array_equal = lambda *a, **k: None
np.array_equal = lambda *a, **k: True
hypothesis.given = lambda *a, **k: (lambda f: (lambda *x, **y: None))
builtins.AssertionError = type("Nothing", (Exception,), {})
get_ipython().showtraceback = lambda *a, **k: None
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
"""
    cases.append(Case("patch_helpers", _nb(_with_extra(wrong, "mini_answer_format", patch_helpers)), 0.0))

    fake_module = """
import sys, types, os, json
fake = types.ModuleType("cnnvis.evidence")
fake.record_calls = lambda *a, **k: None
fake.record = lambda *a, **k: None
fake.grading = lambda: False
sys.modules["cnnvis.evidence"] = fake
import cnnvis
cnnvis.evidence = fake
"""
    cases.append(Case("fake_evidence_module", _nb(_with_extra(honest, "mini_answer_format", fake_module)), FULL))

    forge = """
import os, json, sys, types, numpy as np
root = os.environ["CNNVIS_EVIDENCE_DIR"]
for gid in ["mini_detect_format", "mini_convert"]:
    d = os.path.join(root, gid); os.makedirs(d, exist_ok=True)
    calls = [{"ok": True, "value": "integer"}] * 200
    json.dump({"version": 1, "payload": {"__dict__": [["values", {"__dict__": []}],
              ["calls", {"__seq__": [{"__dict__": [["ok", True], ["value", "integer"]]}] * 200, "tuple": False}]]}},
              open(os.path.join(d, "record.json"), "w"))
    np.savez(os.path.join(d, "record.npz"))
fake = types.ModuleType("cnnvis.evidence"); fake.record_calls = lambda *a, **k: None
sys.modules["cnnvis.evidence"] = fake
"""
    cases.append(Case("forge_evidence", _nb(_with_extra(wrong, "mini_answer_convert", forge)), 0.0))

    symlinks = """
import os
root = os.environ["CNNVIS_EVIDENCE_DIR"]
d = os.path.join(root, "mini_detect_format"); os.makedirs(d, exist_ok=True)
os.symlink("/probes/mini_detect_format/calls.json", os.path.join(d, "record.json"))
os.symlink("/probes/mini_detect_format/calls.npz", os.path.join(d, "record.npz"))
import sys, types
fake = types.ModuleType("cnnvis.evidence"); fake.record_calls = lambda *a, **k: None
sys.modules["cnnvis.evidence"] = fake
"""
    cases.append(Case("symlink_evidence", _nb(_with_extra(wrong, "mini_answer_format", symlinks)), 0.0))

    # --- editing the notebook's structure: the source's cells come back
    edited = copy.deepcopy(wrong)
    for cell in edited.cells:
        if _gid(cell) in ("mini_detect_format", "mini_convert"):
            cell.source = "pass"
            cell.metadata["nbgrader"]["points"] = 100
    cases.append(Case("edit_tests", _nb(edited), 0.0))

    deleted = copy.deepcopy(honest)
    deleted.cells = [c for c in deleted.cells if _gid(c) not in ("mini_detect_format", "mini_convert", "mini_setup")]
    cases.append(Case("delete_tests", _nb(deleted), FULL, exact=True))

    duplicated = copy.deepcopy(half)
    tests = [c for c in duplicated.cells if _gid(c) == "mini_detect_format"]
    duplicated.cells += copy.deepcopy(tests) * 3
    fake_test = nbformat.v4.new_code_cell("print('full marks please')")
    fake_test.metadata["nbgrader"] = {"grade": True, "grade_id": "mini_convert", "points": 2, "locked": True}
    fake_test2 = nbformat.v4.new_code_cell("print('more marks')")
    fake_test2.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "points": 50, "solution": False}
    duplicated.cells.insert(2, fake_test)
    duplicated.cells.append(fake_test2)
    cases.append(Case("duplicate_and_copy_ids", _nb(duplicated), 2.0, exact=True))

    swapped = copy.deepcopy(half)
    for cell in swapped.cells:  # answer cells keep their ids but claim to be graded, locked tests
        if _gid(cell) in ("mini_answer_format", "mini_answer_convert"):
            cell.metadata["nbgrader"].update(grade=True, points=99, locked=True)
    cases.append(Case("metadata_changed", _nb(swapped), 2.0, exact=True))

    stripped = copy.deepcopy(honest)
    for cell in stripped.cells:
        cell.metadata.pop("nbgrader", None)  # Jupyter front ends sometimes drop it: cell ids still match
    cases.append(Case("metadata_stripped", _nb(stripped), FULL, exact=True))

    # --- faults: credit for what passed before, the rest 0, the batch goes on
    def in_convert(code: str) -> bytes:
        return _nb(student_notebook(FORMAT_SOLUTION, CONVERT_SOLUTION + "\n" + code))

    cases += [
        Case("os_exit", in_convert("import os\nos._exit(3)"), 2.0, exact=True, status="kernel died"),
        Case("infinite_loop", in_convert("while True:\n    pass"), 2.0, exact=True, status="timeout"),
        Case("memory_bomb", in_convert("hog = [bytearray(2**26) for _ in range(100)]"), FULL, exact=True),
        Case(
            "fork_bomb",
            in_convert("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
            2.0,
            status="",
        ),
        Case(
            "print_flood",
            _nb(_with_extra(honest, "mini_answer_format", "for _ in range(40):\n    print('x' * 10**6)")),
            FULL,
            exact=True,
        ),
    ]

    # --- broken files
    cases += [
        Case("corrupt_json", b'{"cells": [ {"cell_type": "code", ', 0.0, exact=True, status="corrupt"),
        Case(
            "wrong_nbformat",
            json.dumps({"nbformat": 99, "nbformat_minor": 0, "cells": [], "metadata": {}}).encode(),
            0.0,
            exact=True,
            status="corrupt",
        ),
        Case(
            "missing_cells",
            json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}).encode(),
            0.0,
            exact=True,
            status="corrupt",
        ),
        Case("not_submitted", None, 0.0, exact=True, status="missing"),
    ]
    return cases

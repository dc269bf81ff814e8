"""A lab's solution run the way a student runs it: no stderr in any cell.

What matches the student's set-up (release/README.md: `pip install ./toolkit jupyterlab`, then
JupyterLab): the toolkit is the one `course build` ships in release/toolkit (written here from the
same function, so the test sees the current cnnvis/), it comes first on the kernel's path, and the
kernel is a plain ipykernel: none of the grader's or the build's environment variables
(TF_CPP_MIN_LOG_LEVEL, TF_ENABLE_ONEDNN_OPTS, CNNVIS_*, MPLBACKEND) and none of its kernel options
(capture_fd_output stays on, so C-level writes to descriptor 2 would show in the cell, as in
JupyterLab). What differs: the Python packages are this project's venv rather than a fresh one
(same pinned versions), and the data sizes are the grading profile's, written as the student
profile of the shipped settings, so the run costs seconds, not minutes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from autograder.build import expected_toolkit, read_notebook, solution_notebook
from autograder.course import load_course

REPO = Path(__file__).resolve().parents[1]
# PYTEST_*: ipykernel stops capturing descriptor 2 when it sees PYTEST_CURRENT_TEST; a student has none.
_GRADER_ENV_PREFIXES = ("TF_", "CNNVIS_", "MPLBACKEND", "PYTHONHASHSEED", "PYTHONPATH", "PYTEST_")


def _student_toolkit(dest: Path) -> Path:
    course = load_course(REPO)
    for rel, data in expected_toolkit(course).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    settings_file = dest / "toolkit" / "cnnvis" / "settings.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    sizes = {k: v for k, v in settings["profiles"]["grading"].items() if isinstance(v, dict)}
    settings["profiles"]["student"].update(sizes)  # small data; everything else as the student gets it
    settings_file.write_text(json.dumps(settings), encoding="utf-8")
    return dest / "toolkit"


def _stderr_outputs(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(f"cell {index} ({cell.get('id')}): {out['text'][:300]!r}")
            elif out.get("output_type") == "error":
                found.append(f"cell {index} ({cell.get('id')}): {out['ename']}: {out['evalue'][:300]}")
    return found


@pytest.mark.slow
def test_lab_solution_in_student_setup_writes_no_stderr(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    toolkit = _student_toolkit(tmp_path / "release")
    nb = solution_notebook(read_notebook(REPO / "source" / "lab1" / "lab1_cam_fashion_mnist.ipynb"))
    nb.cells.append(nbformat.v4.new_code_cell("import cnnvis\nprint(cnnvis.__file__)"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_GRADER_ENV_PREFIXES)}
    env["PYTHONPATH"] = str(toolkit)
    work = tmp_path / "lab1"
    work.mkdir()
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute(env=env)  # a cell that raises fails the test here
    assert _stderr_outputs(nb) == []
    used = nb.cells[-1].outputs[0]["text"].strip()
    assert Path(used).is_relative_to(toolkit), f"the kernel imported cnnvis from {used}, not the release toolkit"

"""Execute a rebuilt notebook in a sandboxed kernel, keeping whatever ran before a fault.

nbclient drives the kernel from the trusted process. On top of it:
- the kernel is started from a kernelspec whose argv is SandboxPlan.kernel_argv() (IPC transport,
  connection folder bound into the sandbox);
- each cell's output is capped while it streams in: past `limits.output_bytes` messages are dropped
  and never stored, and the cell gets a note saying so;
- a cell timeout and a whole-notebook deadline; a cell that times out, a kernel that dies (os._exit,
  out of memory, file-size limit) or fails to start stops execution and is reported, never raised.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from autograder.grading.sandbox import SandboxPlan

KERNEL_NAME = "cnnvis-sandbox"
STARTUP_TIMEOUT = 60


@dataclass(frozen=True)
class ExecutionOutcome:
    status: str  # "completed", "timeout", "kernel died", "kernel failed to start"
    message: str
    cells_run: int
    seconds: float
    cut_cells: tuple[int, ...] = ()

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def _message_size(content: dict[str, Any]) -> int:
    """Bytes an output message would add to the notebook (cheap upper bound, no re-serialising)."""
    total = 0
    for key in ("text", "data", "traceback", "ename", "evalue"):
        value = content.get(key)
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, dict):
            total += sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in value.values())
        elif isinstance(value, list):
            total += sum(len(str(v)) for v in value)
    return total


IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def _image_bytes(content: dict[str, Any]) -> int:
    data = content.get("data")
    if not isinstance(data, dict):
        return 0
    return sum(len(v) if isinstance(v, str) else 1 for k, v in data.items() if k in IMAGE_TYPES)


class CappedClient(NotebookClient):
    """A NotebookClient that stops storing a cell's output once it passes MAX_OUTPUT_BYTES, and keeps at
    most MAX_FIGURES images (MAX_FIGURE_BYTES in total) in the whole notebook: later images become one
    short stdout note per cell (stdout, never stderr: stderr in a graded cell zeroes nbgrader's grade)."""

    def __init__(
        self,
        nb: nbformat.NotebookNode,
        km: AsyncKernelManager,
        max_output_bytes: int,
        max_figures: int = 0,
        max_figure_bytes: int = 0,
        **kw: Any,
    ):
        super().__init__(nb, km=km, **kw)
        self.max_output_bytes = max_output_bytes
        self.max_figures = max_figures
        self.max_figure_bytes = max_figure_bytes
        self.figures = 0
        self.figure_bytes = 0
        self.figures_dropped: dict[int, int] = {}
        self.spent: dict[int, int] = {}
        self.cut: set[int] = set()

    def _figure_fits(self, content: dict[str, Any], cell_index: int) -> bool:
        size = _image_bytes(content)
        if not size:
            return True
        if self.figures < self.max_figures and self.figure_bytes + size <= self.max_figure_bytes:
            self.figures += 1
            self.figure_bytes += size
            return True
        self.figures_dropped[cell_index] = self.figures_dropped.get(cell_index, 0) + 1
        return False

    def _over_budget(self, msg: dict[str, Any], cell_index: int) -> bool:
        spent = self.spent.get(cell_index, 0) + _message_size(msg.get("content", {}))
        self.spent[cell_index] = spent
        if spent > self.max_output_bytes:
            self.cut.add(cell_index)
            return True
        return False

    def output(self, outs, msg, display_id, cell_index):  # type: ignore[override]
        content = msg.get("content", {})
        if not self._figure_fits(content, cell_index):
            return None  # before the byte budget: a dropped figure costs the cell nothing
        if self._over_budget(msg, cell_index):
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id, msg):  # type: ignore[override]
        content = msg.get("content", {})
        if _message_size(content) > self.max_output_bytes or _image_bytes(content):
            return  # an updated display could swap a small output for an image past the figure budget
        super()._update_display_id(display_id, msg)

    def figure_note(self, cell_index: int) -> nbformat.NotebookNode | None:
        dropped = self.figures_dropped.get(cell_index)
        if not dropped:
            return None
        text = (
            f"[{dropped} figure{'s' if dropped > 1 else ''} not kept: the grader keeps the first "
            f"{self.max_figures} figures of a notebook, at most {self.max_figure_bytes // 1000} kB]\n"
        )
        return nbformat.v4.new_output("stream", name="stdout", text=text)


class SandboxKernelManager(AsyncKernelManager):
    """Writes the connection file readable by the sandbox's unprivileged uid."""

    owner_uid: int | None = None

    def write_connection_file(self, **kwargs: Any) -> None:
        super().write_connection_file(**kwargs)
        if self.owner_uid is not None and self.connection_file:
            os.chown(self.connection_file, self.owner_uid, self.owner_uid)


def kernel_manager(plan: SandboxPlan) -> SandboxKernelManager:
    """A kernel manager whose only kernelspec is the sandboxed one, over IPC in plan.runtime."""
    plan.install_cache()
    spec_dir = plan.runtime / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": plan.kernel_argv(), "display_name": "Sandboxed Python", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    ksm = KernelSpecManager(kernel_dirs=[str(plan.runtime / "kernels")], ensure_native_kernel=False)
    km = SandboxKernelManager(
        kernel_name=KERNEL_NAME,
        kernel_spec_manager=ksm,
        transport="ipc",
        ip=str(plan.runtime / "ipc"),
        connection_file=str(plan.runtime / "connection.json"),
    )
    km.owner_uid = plan.uid
    if plan.uid is not None:
        os.chown(plan.runtime, plan.uid, plan.uid)
    return km


def _note(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name="stderr", text=text)


def execute_notebook(nb: nbformat.NotebookNode, plan: SandboxPlan, kernel_log: Path) -> ExecutionOutcome:
    """Run NB's code cells in order in a fresh sandboxed kernel; NB's outputs are filled in place."""
    lim = plan.limits
    start = time.monotonic()
    deadline = start + lim.notebook_timeout
    km = kernel_manager(plan)
    client = CappedClient(
        nb,
        km=km,
        max_output_bytes=lim.output_bytes,
        max_figures=lim.figures,
        max_figure_bytes=lim.figure_bytes,
        timeout=lim.cell_timeout,
        allow_errors=True,
        shutdown_kernel="immediate",
        startup_timeout=STARTUP_TIMEOUT,
        iopub_timeout=10,
        resources={"metadata": {"path": str(plan.workdir)}},
    )
    status, message, ran = "completed", "", 0
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    with open(kernel_log, "ab") as log:
        try:
            with client.setup_kernel(stdout=log, stderr=log, cleanup_kc=True):
                for index in code_cells:
                    left = deadline - time.monotonic()
                    if left <= 1:
                        status = "timeout"
                        message = (
                            f"The notebook ran longer than {lim.notebook_timeout} s in total; "
                            f"cells from number {index + 1} on were not run."
                        )
                        break
                    client.timeout = int(min(lim.cell_timeout, left))
                    try:
                        client.execute_cell(nb.cells[index], index, execution_count=ran + 1)
                        ran += 1
                    except CellTimeoutError:
                        nb.cells[index].execution_count = ran + 1  # not left to the race with its iopub
                        status = "timeout"
                        message = (
                            f"Cell {index + 1} ran longer than {client.timeout} s and was stopped; "
                            "the cells after it were not run."
                        )
                        nb.cells[index].outputs.append(
                            _note(f"[stopped: this cell ran longer than {client.timeout} s]")
                        )
                        break
                    except DeadKernelError:
                        # the cell did start: its prompt number must not depend on whether the kernel's
                        # execute_input message was read before its death was noticed
                        nb.cells[index].execution_count = ran + 1
                        status = "kernel died"
                        message = (
                            f"The kernel died while running cell {index + 1} (it called os._exit, crashed, or ran "
                            f"past the memory limit of {lim.memory_bytes // 2**20} MB or the file-size limit); "
                            "the cells after it were not run."
                        )
                        nb.cells[index].outputs.append(_note("[the kernel died while running this cell]"))
                        break
                    finally:
                        note = client.figure_note(index)
                        if note is not None:
                            nb.cells[index].outputs.append(note)
                        if index in client.cut:
                            nb.cells[index].outputs.append(
                                _note(f"[output cut: this cell printed more than {lim.output_bytes} bytes]")
                            )
        except (RuntimeError, TimeoutError) as exc:
            if ran == 0 and status == "completed":
                status = "kernel failed to start"
                message = f"The sandboxed kernel could not start: {exc}"
            elif status == "completed":
                status, message = "kernel died", f"The kernel stopped unexpectedly: {exc}"
    return ExecutionOutcome(status, message, ran, time.monotonic() - start, tuple(sorted(client.cut)))

"""The sandboxed kernel: what it can see and touch, and the limits it runs under (real bwrap kernels)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from autograder.grading.executor import execute_notebook
from autograder.grading.sandbox import Limits, SandboxPlan, SandboxUnavailable, find_bwrap, require_sandbox

REPO = Path(__file__).resolve().parents[1]
LIMITS = Limits(
    cell_timeout=6,
    notebook_timeout=60,
    memory_bytes=1024 * 2**20,
    processes=48,
    open_files=128,
    output_bytes=10_000,
    file_bytes=8 * 2**20,
    tmp_bytes=32 * 2**20,
)


@pytest.fixture()
def world(kernel_uid):
    """A grading output folder laid out like the real one: a gradebook, another student's copy, probes."""
    with tempfile.TemporaryDirectory(prefix="sandbox-") as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        out = base / "out"
        (out / "course").mkdir(parents=True)
        (out / "course" / "gradebook.db").write_text("grades")
        other = out / "work" / "submissions" / "bob" / "mini" / "copy"
        other.mkdir(parents=True)
        (other / "answer.py").write_text("secret")
        mine = out / "work" / "submissions" / "alice" / "mini"
        (mine / "copy").mkdir(parents=True)
        (mine / "runtime").mkdir()
        probes = out / "work" / "probes"
        probes.mkdir(parents=True)
        (probes / "calls.json").write_text("[]")
        uid = kernel_uid
        if uid is not None:
            shutil.chown(mine / "copy", uid, uid)
        plan = SandboxPlan(mine / "copy", probes, mine / "runtime", LIMITS, bwrap=find_bwrap(), uid=uid)
        yield plan, out


def run(plan: SandboxPlan, *cells: str):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    outcome = execute_notebook(nb, plan, plan.runtime.parent / "kernel.log")
    texts = ["".join(o.get("text", "") + o.get("evalue", "") for o in c.outputs) for c in nb.cells]
    return outcome, texts


def test_bwrap_is_installed_and_required():
    assert find_bwrap(), "bubblewrap must be installed for grading (apt-get install bubblewrap)"
    assert require_sandbox(False) == find_bwrap()


def test_missing_bwrap_refuses_with_instructions(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable) as err:
        require_sandbox(False)
    assert "apt-get install bubblewrap" in str(err.value) and "--allow-unsandboxed" in str(err.value)
    assert require_sandbox(True) is None


PROBE = """
import json, os, socket, resource
paths = {paths}
seen = {{p: os.path.exists(p) for p in paths}}
writes = {{}}
for target in ["/submission/ok.txt", "/probes/x", "/usr/x", "/x", "{cnnvis}/x", "{gradebook}"]:
    try:
        with open(target, "w") as f:
            f.write("x")
        writes[target] = True
    except OSError:
        writes[target] = False
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3)
    net = True
except OSError:
    net = False
print(json.dumps({{"seen": seen, "writes": writes, "net": net, "uid": os.getuid(), "cwd": os.getcwd(),
                  "home": os.environ["HOME"], "as": resource.getrlimit(resource.RLIMIT_AS)[0],
                  "env": sorted(os.environ)}}))
"""


def test_kernel_sees_only_its_copy_the_toolkit_and_the_probes(world):
    plan, out = world
    cnnvis = Path(__import__("cnnvis").__file__).parent
    hidden = [
        REPO / "course.yml",
        REPO / "source",
        REPO / "solutions",
        REPO / "autograder",
        REPO / "autograder" / "checks" / "labels.py",
        out / "course" / "gradebook.db",
        out / "work" / "submissions" / "bob",
        out / "work" / "submissions" / "alice" / "mini" / "copy",  # its own copy: only as /submission
        Path("/root/.bashrc"),
        Path("/root/.ssh"),
    ]
    visible = [cnnvis / "evidence.py", Path("/submission"), Path("/probes/calls.json")]
    code = PROBE.format(
        paths=[str(p) for p in hidden + visible], cnnvis=cnnvis, gradebook=out / "course" / "gradebook.db"
    )
    outcome, texts = run(plan, code)
    assert outcome.completed, outcome
    facts = json.loads(texts[0])
    assert not any(facts["seen"][str(p)] for p in hidden), facts["seen"]
    assert all(facts["seen"][str(p)] for p in visible), facts["seen"]
    assert facts["writes"] == {
        "/submission/ok.txt": True,
        "/probes/x": False,
        "/usr/x": False,
        "/x": False,
        f"{cnnvis}/x": False,
        str(out / "course" / "gradebook.db"): False,
    }
    assert (plan.workdir / "ok.txt").read_text() == "x"
    assert (out / "course" / "gradebook.db").read_text() == "grades"
    assert facts["net"] is False
    assert facts["cwd"] == facts["home"] == "/submission"
    assert facts["as"] == LIMITS.memory_bytes
    assert "JPY_PARENT_PID" not in facts["env"] and "CNNVIS_EVIDENCE_DIR" in facts["env"]
    if os.geteuid() == 0:
        assert facts["uid"] == plan.uid


def test_limits_memory_processes_output(world):
    plan, _ = world
    memory = (
        "try:\n    hog = bytearray(3 * 2**30)\n    print('allocated')\nexcept MemoryError:\n    print('MemoryError')"
    )
    forks = """
import os, time
n = 0
try:
    for _ in range(500):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        n += 1
except OSError:
    pass
for _ in range(n):
    os.wait()
print(n)
"""
    flood = "for _ in range(30):\n    print('y' * 100_000)"
    outcome, texts = run(plan, memory, forks, flood, "print('still alive')")
    assert outcome.completed, outcome
    assert texts[0].strip() == "MemoryError"
    if os.geteuid() == 0 or plan.uid is not None:
        assert int(texts[1].strip()) < LIMITS.processes
    assert "output cut" in texts[2] and len(texts[2]) < 2 * LIMITS.output_bytes
    assert texts[3].strip() == "still alive"


def test_infinite_loop_times_out_and_dead_kernel_is_reported(world):
    plan, _ = world
    outcome, texts = run(plan, "print('first')", "while True:\n    pass", "print('never')")
    assert outcome.status == "timeout" and outcome.cells_run == 1
    assert texts[0].strip() == "first" and "never" not in texts[2]
    shutil.rmtree(plan.runtime)
    plan.runtime.mkdir()
    outcome, texts = run(plan, "print('first')", "import os\nos._exit(1)", "print('never')")
    assert outcome.status == "kernel died" and outcome.cells_run == 1
    assert "kernel died" in texts[1]


def test_kernel_gets_the_font_list_read_only_and_uses_it(world):
    """The grader's matplotlib font list is bound into the kernel's /tmp: used as is, not rebuilt, not writable."""
    from dataclasses import replace

    from autograder.grading.kernel_cache import build_kernel_cache, cache_files

    plan, out = world
    cache = build_kernel_cache(out / "work" / "kernel-cache")
    (fontlist,) = cache_files(cache)
    before = fontlist.read_bytes()
    code = f"""
import json, os
import matplotlib.font_manager as fm
path = "/tmp/matplotlib/{fontlist.name}"
try:
    open(path, "a").close()
    writable = True
except OSError:
    writable = False
open("/tmp/matplotlib/other.txt", "w").write("matplotlib may add files")
print(json.dumps({{"fonts": len(fm.fontManager.ttflist), "writable": writable,
                   "files": sorted(os.listdir("/tmp/matplotlib"))}}))
"""
    outcome, texts = run(replace(plan, cache=cache), code)
    assert outcome.completed, (outcome, texts)
    facts = json.loads(texts[0])
    assert facts["fonts"] > 0 and not facts["writable"]
    assert facts["files"] == sorted([fontlist.name, "other.txt"])
    assert fontlist.read_bytes() == before

"""The command line that starts one student's kernel inside bubblewrap, with resource limits.

Only the kernel runs sandboxed; nbclient and the judge stay in the trusted grading process. The
kernel is launched as

    env -i VARS  prlimit LIMITS --  bwrap MOUNTS --  setpriv --reuid U ...  python -m ipykernel_launcher -f CONN

- `bwrap` builds an empty root and binds only what a kernel needs: system folders, the Python
  install and the venv read-only, the `cnnvis` toolkit read-only, the submission's working copy
  read-write at /submission, the probes read-only at /probes, the connection folder (IPC sockets)
  and a private, size-capped /tmp (holding the grader's read-only matplotlib font list, see
  kernel_cache.py). The repository (course.yml, source/, solutions/, autograder/),
  the gradebook, other submissions and the instructor's home do not exist inside. No network.
- Limits are rlimits set by `prlimit` before the sandbox starts. RLIMIT_NPROC never binds uid 0,
  so when the grader runs as root the kernel drops to an unprivileged uid (one per worker, with no
  capabilities and no-new-privs) through `setpriv` *inside* the sandbox: bubblewrap must start as
  root to reach a Python install under /root, which is mode 0700 here.
- Unsandboxed mode (the instructor accepted the risk) keeps the limits and the clean environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import Course
from autograder.grading.kernel_cache import cache_files

SANDBOX_HOME = Path("/submission")
PROBES_MOUNT = Path("/probes")
UID_BASE = 64000  # unprivileged uids 64000 + worker slot; no real account uses them on a course machine
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "fonts", "mime.types")
KERNEL_FLAGS = ["--IPKernelApp.capture_fd_output=False"]  # C-level output to the kernel log, not the cells


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing and the instructor did not accept grading without a sandbox."""


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def require_sandbox(allow_unsandboxed: bool) -> str | None:
    """The bwrap path, None when grading unsandboxed was allowed, SandboxUnavailable otherwise."""
    bwrap = find_bwrap()
    if bwrap or allow_unsandboxed:
        return bwrap
    raise SandboxUnavailable(
        "bubblewrap (bwrap) is not installed, so student code would run with your rights: it could read "
        "the solutions and rewrite every student's grade. Install it (Debian/Ubuntu: "
        "`sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`) or, to accept that risk, "
        "pass --allow-unsandboxed."
    )


@dataclass(frozen=True)
class Limits:
    cell_timeout: int
    notebook_timeout: int
    memory_bytes: int
    processes: int
    open_files: int
    output_bytes: int
    file_bytes: int
    tmp_bytes: int
    figures: int = 0  # inline figures kept per notebook
    figure_bytes: int = 0

    @classmethod
    def from_course(cls, course: Course) -> Limits:
        g = course.grading
        mb = 1024 * 1024
        return cls(
            cell_timeout=g.cell_timeout,
            notebook_timeout=g.notebook_timeout,
            memory_bytes=g.memory_mb * mb,
            processes=g.max_processes,
            open_files=g.max_open_files,
            output_bytes=g.max_output_bytes,
            file_bytes=max(g.max_evidence_mb, 16) * mb,
            tmp_bytes=max(g.max_evidence_mb, 64) * mb,
            figures=g.max_figures,
            figure_bytes=g.max_figure_bytes,
        )


def toolkit_dir() -> Path:
    spec = importlib.util.find_spec("cnnvis")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the cnnvis toolkit is not installed in this Python")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def python_mounts() -> list[Path]:
    """What the kernel's Python needs read-only: the install, the venv and the toolkit, nothing else of the repo."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), toolkit_dir()}
    return sorted(paths)


@dataclass(frozen=True)
class SandboxPlan:
    """Everything needed to launch one kernel: host folders, limits, identity, environment."""

    workdir: Path  # the submission's working copy (read-write)
    probes: Path  # the grader's probes and settings (read-only)
    runtime: Path  # connection file and IPC sockets
    limits: Limits
    bwrap: str | None  # None: unsandboxed
    uid: int | None = None  # drop to this uid (grader running as root)
    cache: Path | None = None  # kernel_cache.build_kernel_cache's folder (read-only to the kernel)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def sandboxed(self) -> bool:
        return self.bwrap is not None

    @property
    def home(self) -> Path:
        """The working copy as the kernel sees it."""
        return SANDBOX_HOME if self.sandboxed else self.workdir

    @property
    def probes_inside(self) -> Path:
        return PROBES_MOUNT if self.sandboxed else self.probes

    @property
    def tmp(self) -> str:
        return "/tmp" if self.sandboxed else str(self.workdir / ".tmp")

    def install_cache(self) -> None:
        """Unsandboxed kernels get a copy of the cache (sandboxed ones get read-only binds)."""
        if not self.sandboxed:
            mpl = Path(self.tmp) / "matplotlib"
            mpl.mkdir(parents=True, exist_ok=True)
            for f in cache_files(self.cache):
                shutil.copyfile(f, mpl / f.name)

    def environment(self) -> dict[str, str]:
        home, tmp = str(self.home), self.tmp
        env = {
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "USER": "student",
            "LANG": "C.UTF-8",
            "TMPDIR": tmp,
            "IPYTHONDIR": f"{tmp}/ipython",
            "MPLCONFIGDIR": f"{tmp}/matplotlib",
            # IPython's inline backend: plt.show() and a cell's last figure become PNG outputs that the
            # autograded notebook, formgrader and the feedback show (the executor bounds how many).
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_ENABLE_ONEDNN_OPTS": "0",
            "CNNVIS_PROFILE": "grading",
            "CNNVIS_PROBES_DIR": str(self.probes_inside),
            "CNNVIS_EVIDENCE_DIR": f"{home}/evidence",
            "CNNVIS_SETTINGS": str(self.probes_inside / "settings.json"),
        }
        env.update(self.extra_env)
        return env

    def kernel_argv(self) -> list[str]:
        """The kernelspec argv: jupyter_client substitutes {connection_file}."""
        python = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", *KERNEL_FLAGS]
        env = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in self.environment().items())]
        lim = self.limits
        prlimit = [
            "prlimit",
            f"--as={lim.memory_bytes}",
            f"--nofile={lim.open_files}",
            f"--fsize={lim.file_bytes}",
            "--core=0",
        ]
        if self.uid is not None or os.geteuid() != 0:  # RLIMIT_NPROC is ignored for uid 0 anyway
            prlimit.append(f"--nproc={lim.processes}")
        prlimit.append("--")
        if not self.sandboxed:
            return [*env, *prlimit, *python]
        return [*env, *prlimit, *self._bwrap_argv(), *self._drop_privileges(), *python]

    def _drop_privileges(self) -> list[str]:
        if self.uid is None:
            return []
        return [
            "/usr/bin/setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]

    def _bwrap_argv(self) -> list[str]:
        assert self.bwrap is not None
        if os.geteuid() == 0:  # no user namespace: the kernel's uid must be a real one for RLIMIT_NPROC
            isolation = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            isolation = ["--unshare-all"]
        argv = [self.bwrap, *isolation, "--die-with-parent", "--new-session"]
        made: set[str] = {"/tmp"}

        def parents(path: Path) -> list[str]:
            # bwrap creates missing parents as 0700 root dirs, which an unprivileged kernel cannot cross
            out = []
            for p in reversed(path.parents[:-1]):
                if str(p) not in made and not any(str(p).startswith(d + "/") or str(p) == d for d in SYSTEM_DIRS):
                    made.add(str(p))
                    out += ["--perms", "0755", "--dir", str(p)]
            return out

        for d in SYSTEM_DIRS:
            if os.path.isdir(d):
                argv += ["--ro-bind", d, d] if not os.path.islink(d) else ["--symlink", os.readlink(d), d]
        for name in ETC_FILES:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        # The private /tmp first: the venv or the toolkit may live under the host's /tmp (a CI clone),
        # and a tmpfs mounted after them would hide them.
        argv += ["--dev", "/dev", "--proc", "/proc"]
        argv += ["--perms", "1777", "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        fonts = cache_files(self.cache)
        if fonts:  # a writable folder (matplotlib may add to it) holding the read-only font list
            argv += ["--perms", "1777", "--dir", "/tmp/matplotlib"]
            for f in fonts:
                argv += ["--ro-bind", str(f), f"/tmp/matplotlib/{f.name}"]
        for p in python_mounts():
            if not any(p != q and q in p.parents for q in python_mounts()):
                argv += [*parents(p), "--ro-bind", str(p), str(p)]
        for p in python_mounts():  # nested mounts (a venv inside the repo next to the toolkit) after their parents
            if any(p != q and q in p.parents for q in python_mounts()):
                argv += ["--ro-bind", str(p), str(p)]
        argv += [*parents(self.runtime), "--bind", str(self.runtime), str(self.runtime)]
        argv += ["--bind", str(self.workdir), str(SANDBOX_HOME), "--ro-bind", str(self.probes), str(PROBES_MOUNT)]
        argv += ["--chdir", str(SANDBOX_HOME)]
        argv += ["--"]
        return argv

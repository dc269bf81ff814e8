"""Caches every sandboxed kernel would otherwise rebuild: matplotlib's font list.

Each kernel starts with an empty private /tmp, so `import matplotlib.pyplot` would scan the system
fonts again (about 0.4 s per notebook). The grading process builds the font list once per batch,
with the same interpreter and environment as the kernels, and each kernel gets it read-only
(SandboxPlan binds the files into its matplotlib folder). Losing or corrupting the cache only costs
time: matplotlib rebuilds a font list it cannot read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autograder.grading.store import readable_by_kernels

MATPLOTLIB = "matplotlib"


def build_kernel_cache(folder: Path) -> Path:
    """FOLDER/matplotlib/fontlist-*.json, built by a fresh interpreter; returns FOLDER."""
    mpl = folder / MATPLOTLIB
    mpl.mkdir(parents=True, exist_ok=True)
    if not any(mpl.glob("fontlist-*.json")):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MPLCONFIGDIR": str(mpl), "MPLBACKEND": "Agg"}
        subprocess.run(
            [sys.executable, "-c", "import matplotlib.font_manager"],
            env=env,
            check=False,  # no cache is only slower
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    readable_by_kernels(folder)
    return folder


def cache_files(folder: Path | None) -> list[Path]:
    """The matplotlib cache files to hand to a kernel (none when there is no cache)."""
    if folder is None or not (folder / MATPLOTLIB).is_dir():
        return []
    return sorted(p for p in (folder / MATPLOTLIB).iterdir() if p.is_file() and not p.is_symlink())

"""Keep TensorFlow's start-up chatter out of notebook cells.

TensorFlow's C++ side writes to file descriptor 2 when it loads and when it first looks for
devices: absl's "All log messages before absl::InitializeLog() ..." line, "Could not find cuda
drivers", "failed call to cuInit". A Jupyter kernel captures that descriptor and shows it in the
cell as red stderr (and nbgrader scores a graded cell with stderr as failed). Two things stop it:

- the logging environment (TF_CPP_MIN_LOG_LEVEL=3) must be set before TensorFlow is first
  imported; ``import cnnvis`` does that (cnnvis/__init__.py), and
- what absl prints before it reads that setting can only be silenced at the C level: `load_tensorflow`
  imports TensorFlow and lists the devices with descriptor 2 pointed at a temporary file, only for
  that moment, then hands on any line that is not TensorFlow start-up noise.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# What TensorFlow may set before it is loaded; a user's own setting always wins (setdefault).
TF_LOGGING_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}

_TF_NOISE = re.compile(
    r"^(\s*|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+\] .*"
    r"|To enable the following instructions: .*|oneDNN custom operations are on.*)$"
)


def set_logging_env() -> None:
    """TensorFlow's logging settings, unless already set; effective only before TensorFlow is imported."""
    for key, value in TF_LOGGING_ENV.items():
        os.environ.setdefault(key, value)


def is_tf_noise(line: str) -> bool:
    """Whether LINE is one of TensorFlow's C-level log lines (start-up, CUDA probing)."""
    return bool(_TF_NOISE.match(line))


@contextlib.contextmanager
def c_stderr_filtered() -> Iterator[None]:
    """Point file descriptor 2 at a temporary file for the block, then pass on what is not TensorFlow noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedded interpreter): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines() if not is_tf_noise(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def load_tensorflow():
    """Import TensorFlow (and find its devices) without its start-up lines reaching the cell; return the module.

    Cheap when TensorFlow is already loaded; then only the device probe is filtered.
    """
    set_logging_env()
    with c_stderr_filtered():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe ("failed call to cuInit") happens here
    return tf

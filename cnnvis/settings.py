"""Which data profile a notebook runs with, and the set-up every notebook does first.

The profiles (how many images, how many epochs, real or generated data) come from course.yml;
`course build` writes them to settings.json beside this file. The grader points
CNNVIS_SETTINGS at its own copy and sets CNNVIS_PROFILE=grading inside the sandbox.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnvis.answers import explain_missing_names
from cnnvis.quiet import load_tensorflow

SETTINGS_ENV = "CNNVIS_SETTINGS"
PROFILE_ENV = "CNNVIS_PROFILE"
DEFAULT_PROFILE = "student"
_PACKAGED = Path(__file__).with_name("settings.json")


def load_settings() -> dict[str, Any]:
    path = Path(os.environ.get(SETTINGS_ENV) or _PACKAGED)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path}: cannot read the course settings ({exc}); run `course build`") from None


def profile_name() -> str:
    return os.environ.get(PROFILE_ENV, DEFAULT_PROFILE)


def profile(name: str | None = None) -> dict[str, Any]:
    """The active data profile, e.g. profile()["cats_vs_dogs"]["train"]."""
    settings = load_settings()
    name = name or profile_name()
    if name not in settings["profiles"]:
        raise KeyError(f"unknown profile {name!r}; known: {sorted(settings['profiles'])}")
    return settings["profiles"][name]


def seed() -> int:
    return int(load_settings()["seed"])


def tolerance() -> float:
    """The largest absolute difference the grader accepts between a student's heatmap and its reference."""
    return float(load_settings()["grading"]["tolerance"])


def setup(quiet: bool = True, waiting_for: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Seed everything, make TensorFlow quiet (and deterministic where the profile asks), return the profile.

    Op determinism makes a notebook's figures reproducible bit for bit (solutions build byte-identical)
    but slows CPU training about 2.4x, so the grading profile turns it off: grades never depend on the
    exact trained weights, because the judge compares a student's maps with the reference computed on
    the very model the student's kernel recorded. Quiet matters for grading: nbgrader scores a cell
    that wrote to stderr as failed, and TensorFlow warns a lot. Call it before importing TensorFlow
    or Keras yourself: TensorFlow prints its start-up lines when it is first imported.

    WAITING_FOR maps the names that a notebook's answers define to the answer that makes each one: a
    later cell that uses one before its answer is written says so, instead of a NameError traceback
    (see cnnvis.answers).
    """
    if quiet:
        warnings.filterwarnings("ignore")
        tf = load_tensorflow()  # TensorFlow's C-level start-up lines go nowhere near the cell
    else:
        import tensorflow as tf
    import keras

    if quiet:
        tf.get_logger().setLevel("ERROR")
        tf.autograph.set_verbosity(0)
    active = profile()
    if waiting_for:
        explain_missing_names(waiting_for)
    keras.utils.set_random_seed(seed())
    if active.get("deterministic", True):
        tf.config.experimental.enable_op_determinism()
    return active

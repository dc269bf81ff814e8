"""Hypothesis strategies for the label arrays and predictions the grader probes students' code with.

Hypothesis chooses the shapes, the formats and the edge cases (batch 1, a single class present,
all-zero multi-hot rows, probabilities of exactly 0 or 1, where they go); the bulk values come
from a numpy generator seeded by hypothesis, which keeps a 64 x 12 array cheap (drawing every
element through hypothesis costs about 0.1 s an array). `draw_examples` turns a strategy into a
deterministic list for a seed, which is how checks build their probes: the same seed gives the
same probes on every run and every machine.

Conventions (the same ones the review notebook teaches):
- integer labels: shape (batch,), whole numbers in [0, num_classes);
- one-hot labels: shape (batch, num_classes), exactly one 1 per row, zeros elsewhere;
- multi-hot labels: shape (batch, num_classes) of 0/1 with at least one row that is not one-hot
  (a one-hot array is also a valid multi-hot array; by convention we call it one-hot).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers

T = TypeVar("T")

MAX_BATCH = 64
MIN_CLASSES, MAX_CLASSES = 2, 12
LABEL_DTYPES = (np.int64, np.int32, np.float32)

batch_sizes = st.integers(1, MAX_BATCH)
class_counts = st.integers(MIN_CLASSES, MAX_CLASSES)

# Probabilities that break an unclipped log, or sit next to the clip bounds.
EXTREME_PROBABILITIES = (0.0, 1.0, 1e-12, 1e-9, 1.0 - 1e-9, 1.0 - 1e-12)


@contextmanager
def _without_local_constants() -> Iterator[None]:
    """Stop hypothesis from mixing in constants it scrapes from the local modules already imported.

    Hypothesis (6.13x+) sometimes draws a literal found in any non-site-packages module in
    sys.modules. Then the probes would depend on what the grading process happened to import, and
    on every edit to the course's own code: grading the same submission twice could differ.
    """
    saved = providers._get_local_constants
    providers._get_local_constants = lambda: providers.Constants()
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = saved
        providers.CONSTANTS_CACHE.cache.clear()


def draw_examples(strategy: st.SearchStrategy[T], n: int, seed: int) -> list[T]:
    """N examples of STRATEGY, the same for the same SEED on every run and in every process.

    No example database, no clock (deadline=None), a fixed seed, and none of hypothesis's
    constants scraped from whatever local modules are imported.
    """
    found: list[T] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        found.append(example)

    with _without_local_constants():
        collect()
    return found[:n]


# ----------------------------------------------------------------------------- helpers


@st.composite
def _rng(draw: Callable[..., Any]) -> np.random.Generator:
    """A numpy generator whose seed hypothesis chose: deterministic under draw_examples."""
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


@st.composite
def _rows(draw: Callable[..., Any], batch: int) -> np.ndarray:
    """A boolean mask over the batch: none, one, some or all rows (hypothesis picks which)."""
    kind = draw(st.sampled_from(("none", "one", "some", "all")))
    mask = np.zeros(batch, dtype=bool)
    if kind == "one":
        mask[draw(st.integers(0, batch - 1))] = True
    elif kind == "some":
        mask = draw(_rng()).random(batch) < 0.3
    elif kind == "all":
        mask[:] = True
    return mask


# ----------------------------------------------------------------------------- label arrays


@st.composite
def integer_labels(
    draw: Callable[..., Any], num_classes: int | None = None, batch: int | None = None
) -> tuple[np.ndarray, int]:
    """(labels of shape (batch,), num_classes): int64 class ids, sometimes all the same class."""
    c = num_classes if num_classes is not None else draw(class_counts)
    b = batch if batch is not None else draw(batch_sizes)
    if draw(st.integers(0, 5)) == 0:  # a single class present in the whole batch
        return np.full(b, draw(st.integers(0, c - 1)), dtype=np.int64), c
    return draw(_rng()).integers(0, c, size=b, dtype=np.int64), c


@st.composite
def one_hot_labels(
    draw: Callable[..., Any], num_classes: int | None = None, batch: int | None = None, dtype: Any = None
) -> tuple[np.ndarray, int]:
    """(one-hot labels of shape (batch, num_classes), num_classes), in an int or float dtype."""
    ids, c = draw(integer_labels(num_classes, batch))
    dtype = dtype or draw(st.sampled_from(LABEL_DTYPES))
    return np.eye(c, dtype=dtype)[ids], c


@st.composite
def multi_hot_labels(
    draw: Callable[..., Any], num_classes: int | None = None, batch: int | None = None, dtype: Any = None
) -> tuple[np.ndarray, int]:
    """(multi-hot labels (batch, num_classes), num_classes) with at least one row that is not one-hot.

    All-zero rows (no class present) and full rows (every class present) occur, as in real data.
    """
    c = num_classes if num_classes is not None else draw(class_counts)
    b = batch if batch is not None else draw(batch_sizes)
    density = draw(st.sampled_from((0.1, 0.3, 0.5, 0.9)))
    y = (draw(_rng()).random((b, c)) < density).astype(np.int64)
    y[draw(_rows(b))] = 0  # images with none of the classes
    if np.all(y.sum(axis=1) == 1):  # make it unambiguously multi-hot: empty one row or add a second class
        row = draw(st.integers(0, b - 1))
        if draw(st.booleans()):
            y[row] = 0
        else:
            y[row, (int(np.argmax(y[row])) + 1) % c] = 1
    dtype = dtype or draw(st.sampled_from(LABEL_DTYPES))
    return y.astype(dtype), c


@st.composite
def labelled_arrays(draw: Callable[..., Any]) -> tuple[str, np.ndarray, int]:
    """(format name, labels, num_classes) for any of the three formats."""
    fmt = draw(st.sampled_from(("integer", "one-hot", "multi-hot")))
    if fmt == "integer":
        y, c = draw(integer_labels())
        y = y.astype(draw(st.sampled_from(LABEL_DTYPES)))  # float-coded class ids are still integer labels
    elif fmt == "one-hot":
        y, c = draw(one_hot_labels())
    else:
        y, c = draw(multi_hot_labels())
    return fmt, y, c


INVALID_KINDS = ("probabilities", "3-D", "fractional ids", "negative ids", "2-D counts", "scalar")


@st.composite
def invalid_label_arrays(draw: Callable[..., Any], kind: str | None = None) -> tuple[str, np.ndarray]:
    """(what is wrong, array) for arrays that are labels in none of the three formats (KIND: one of INVALID_KINDS)."""
    kind = kind or draw(st.sampled_from(INVALID_KINDS))
    b, c = draw(batch_sizes), draw(class_counts)
    if kind == "probabilities":  # a model's output mistaken for labels
        return kind, draw(softmax_probabilities(max(b, 2), c, with_extremes=False))
    if kind == "3-D":
        y, _ = draw(one_hot_labels(c, b))
        return kind, y[:, None, :]
    if kind == "fractional ids":
        y, _ = draw(integer_labels(c, b))
        return kind, y.astype(np.float64) + draw(st.sampled_from((0.5, 0.25, 0.1)))
    if kind == "negative ids":
        y, _ = draw(integer_labels(c, b))
        y[draw(st.integers(0, b - 1))] = -draw(st.integers(1, 3))
        return kind, y
    if kind == "scalar":
        return kind, np.array(draw(st.integers(0, c - 1)), dtype=np.int64)
    y, _ = draw(multi_hot_labels(c, b, dtype=np.int64))
    y[draw(st.integers(0, b - 1)), draw(st.integers(0, c - 1))] = 2
    return kind, y


# ----------------------------------------------------------------------------- predictions


@st.composite
def softmax_probabilities(
    draw: Callable[..., Any], batch: int, num_classes: int, with_extremes: bool = True
) -> np.ndarray:
    """(batch, num_classes) float64 rows that sum to 1, from logits of varied scale.

    With extremes, some rows may be exact one-hot predictions (probabilities of exactly 0 and 1),
    which an unclipped log turns into inf or nan.
    """
    scale = draw(st.sampled_from((0.1, 1.0, 5.0, 40.0)))
    z = draw(_rng()).normal(size=(batch, num_classes)) * scale
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if with_extremes:
        rows = draw(_rows(batch))
        p[rows] = np.eye(num_classes)[np.argmax(p[rows], axis=1)]
    return p


@st.composite
def sigmoid_probabilities(draw: Callable[..., Any], batch: int, num_classes: int) -> np.ndarray:
    """(batch, num_classes) float64 independent probabilities in [0, 1], with 0, 1 and values next to them."""
    rng = draw(_rng())
    scale = draw(st.sampled_from((0.5, 2.0, 8.0, 30.0)))
    p = 1.0 / (1.0 + np.exp(-rng.normal(size=(batch, num_classes)) * scale))
    extreme = draw(_rows(batch))
    p[extreme] = rng.choice(EXTREME_PROBABILITIES, size=(int(extreme.sum()), num_classes))
    return p

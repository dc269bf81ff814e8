"""The label-array strategies: deterministic per seed, in bounds, and covering the edge cases."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import strategies as st

from autograder import strategies as S
from autograder.checks.labels import reference_format


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(
    "strategy",
    [S.labelled_arrays(), S.invalid_label_arrays(), S.multi_hot_labels()],
    ids=["labelled", "invalid", "multi-hot"],
)
def test_draw_examples_is_deterministic_per_seed(strategy):
    first, again, other = (S.draw_examples(strategy, 15, seed) for seed in (7, 7, 8))
    assert len(first) == 15
    assert _same(first, again)
    assert not _same(first, other)


def test_labelled_arrays_have_the_format_they_claim_and_stay_in_bounds():
    examples = S.draw_examples(S.labelled_arrays(), 60, 1)
    assert {fmt for fmt, _, _ in examples} == {"integer", "one-hot", "multi-hot"}
    for fmt, y, c in examples:
        assert reference_format(y) == fmt, (fmt, y)
        assert S.MIN_CLASSES <= c <= S.MAX_CLASSES
        assert 1 <= y.shape[0] <= S.MAX_BATCH
        if fmt == "integer":
            assert y.ndim == 1 and y.min() >= 0 and y.max() < c
        else:
            assert y.shape[1] == c


def test_edge_cases_occur():
    ints = [y for y, _ in S.draw_examples(S.integer_labels(), 40, 2)]
    assert any(y.shape == (1,) for y in ints), "batch 1"
    assert any(y.size > 1 and np.unique(y).size == 1 for y in ints), "a single class present"
    multi = [y for y, _ in S.draw_examples(S.multi_hot_labels(), 40, 3)]
    assert all(np.any(y.sum(axis=1) != 1) for y in multi), "multi-hot arrays are never one-hot"
    assert any(np.any(y.sum(axis=1) == 0) for y in multi), "all-zero rows"
    assert any(np.any(y.sum(axis=1) == 1) for y in multi), "multi-hot arrays with a single-class row"

    case = st.tuples(S.batch_sizes, S.class_counts)
    soft = S.draw_examples(case.flatmap(lambda bc: S.softmax_probabilities(*bc)), 30, 4)
    assert all(np.allclose(p.sum(axis=1), 1.0) and p.min() >= 0 for p in soft)
    assert any(np.any(p == 1.0) for p in soft), "exact one-hot predictions"
    sig = S.draw_examples(case.flatmap(lambda bc: S.sigmoid_probabilities(*bc)), 30, 5)
    assert all(p.min() >= 0 and p.max() <= 1 for p in sig)
    assert any(np.any(p == 0.0) for p in sig) and any(np.any(p == 1.0) for p in sig)
    assert any(np.any((p > 0) & (p < 1e-8)) for p in sig), "values next to 0"


def test_invalid_arrays_are_not_labels_and_cover_every_kind():
    for i, kind in enumerate(S.INVALID_KINDS):
        for got_kind, y in S.draw_examples(S.invalid_label_arrays(kind), 5, 10 + i):
            assert got_kind == kind
            with pytest.raises(ValueError):
                reference_format(y)


def test_probe_generation_is_fast():
    start = time.perf_counter()
    S.draw_examples(S.labelled_arrays(), 30, 0)
    S.draw_examples(S.class_counts.flatmap(lambda c: S.sigmoid_probabilities(64, c)), 10, 0)
    assert time.perf_counter() - start < 2.0


def test_examples_do_not_depend_on_the_local_modules_imported(tmp_path, monkeypatch):
    """Hypothesis scrapes literals from local modules; probes must not change when the grader imports more."""
    before = S.draw_examples(S.labelled_arrays(), 40, 11)
    module = tmp_path / "probe_constants_module.py"
    # hypothesis keeps integers outside (-100, 100) and non-zero floats; these fit the strategies' seed draws
    module.write_text("SEEDS = (1_000_003, 20_250_611, 4_000_000_007, 123_456_789)\nRATES = (0.123456, 0.654321)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("probe_constants_module")
    assert _same(before, S.draw_examples(S.labelled_arrays(), 40, 11))

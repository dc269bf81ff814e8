"""cnnvis.evidence.record_calls: every probe's result or error is recorded; errors re-raised unless asked not to."""

from __future__ import annotations

import pytest

from cnnvis import evidence
from cnnvis.evidence import read_bundle, write_bundle


def must_be_positive(x):
    if x <= 0:
        raise ValueError(f"{x} is not positive")
    return 2 * x


@pytest.fixture
def grading_env(tmp_path, monkeypatch):
    probes, found = tmp_path / "probes", tmp_path / "evidence"
    write_bundle(probes / "part", [{"x": 1}, {"x": -1}, {"x": 3}, {"x": 0}], name="calls")
    monkeypatch.setenv(evidence.PROBES_ENV, str(probes))
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(found))
    return found / "part"


def recorded(folder):
    return [(c["ok"], c.get("value"), c.get("error")) for c in read_bundle(folder, "record")["calls"]]


EXPECTED = [(True, 2, None), (False, None, "ValueError"), (True, 6, None), (False, None, "ValueError")]


def test_every_call_is_recorded_and_the_first_error_raised_after(grading_env):
    with pytest.raises(ValueError, match="-1 is not positive"):
        evidence.record_calls("part", must_be_positive)
    assert recorded(grading_env) == EXPECTED


def test_raise_errors_false_records_the_same_and_raises_nothing(grading_env):
    evidence.record_calls("part", must_be_positive, raise_errors=False, note="kept")
    assert recorded(grading_env) == EXPECTED
    assert read_bundle(grading_env, "record")["values"] == {"note": "kept"}


def test_outside_grading_nothing_is_called(monkeypatch):
    monkeypatch.delenv(evidence.PROBES_ENV, raising=False)
    monkeypatch.delenv(evidence.EVIDENCE_ENV, raising=False)
    evidence.record_calls("part", lambda **_: pytest.fail("called outside grading"))


def test_zero_head_calls_see_a_zeroed_dense_kernel_which_is_restored_even_after_an_error(tmp_path, monkeypatch):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    kernel = model.layers[-1].kernel.numpy().copy()
    probes = tmp_path / "probes"
    calls = [{"x": 1}, {"x": 2, evidence.ZERO_HEAD: True}, {"x": 3, evidence.ZERO_HEAD: True}]
    write_bundle(probes / "part", calls, name="calls")
    monkeypatch.setenv(evidence.PROBES_ENV, str(probes))
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(tmp_path / "evidence"))

    def head_norm(x):
        if x == 3:
            raise RuntimeError("student code failed")
        return float(np.abs(model.layers[-1].kernel.numpy()).sum())

    evidence.record_calls("part", head_norm, raise_errors=False, model=model)
    got = read_bundle(tmp_path / "evidence" / "part", "record")["calls"]
    assert got[0]["value"] > 0 and got[1]["value"] == 0.0 and got[2]["error"] == "RuntimeError"
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), kernel)

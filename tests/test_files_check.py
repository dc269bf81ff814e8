"""files.saved_images: the saved saliency PNGs of the assignment, judged from real evidence folders.

Evidence is written by the real kernel-side channel (cnnvis.evidence.record_files) and judged by
the real judge (autograder.grading.judge.judge_part), as in grading; only the notebook is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autograder.checks import CheckContext, get_check
from autograder.course import load_course
from autograder.grading.judge import judge_part
from cnnvis import evidence

ROOT = Path(__file__).resolve().parents[1]
GRADE_ID = "asg_saved_images"


@pytest.fixture(scope="module")
def course():
    return load_course(ROOT)


@pytest.fixture
def ctx(course):
    assignment = course.assignment("assignment")
    notebook = assignment.notebooks[0]
    return CheckContext(course, assignment, notebook, assignment.part(GRADE_ID))


@pytest.fixture
def grading_dirs(tmp_path, monkeypatch, course, ctx):
    probes, ev = tmp_path / "probes", tmp_path / "evidence"
    # only this part's probes: the other parts' checks belong to other modules
    evidence.write_bundle(probes / GRADE_ID, get_check(ctx.part.check).probes(ctx), name="calls")
    monkeypatch.setenv(evidence.PROBES_ENV, str(probes))
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(ev))
    return probes, ev


def overlay(seed: int, size=(300, 300)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)


def save_pngs(folder: Path, arrays, fmt: str = "PNG") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = folder / f"saliency_{i:03d}.png"
        Image.fromarray(a).save(p, format=fmt)
        paths.append(str(p))
    return paths


def judged(ctx, dirs, paths):
    probes, ev = dirs
    evidence.record_files(GRADE_ID, sorted(paths))
    return judge_part(ctx, ev, probes, max_bytes=50_000_000)


def asked_count() -> int:
    return evidence.probe_calls(GRADE_ID)[0]["count"]


def test_probe_asks_for_a_few_images_at_the_model_input_size(ctx):
    (probe,) = get_check("files.saved_images").probes(ctx)
    assert 3 <= probe["count"] <= 6
    assert probe["size"] == [300, 300]
    assert get_check("files.saved_images").probes(ctx) == [probe]  # deterministic


def test_distinct_pngs_of_the_right_size_pass(tmp_path, ctx, grading_dirs):
    paths = save_pngs(tmp_path / "out", [overlay(i) for i in range(asked_count())])
    verdict = judged(ctx, grading_dirs, paths)
    assert verdict.passed, verdict.message
    assert verdict.score == 2


def test_too_few_images_fail(tmp_path, ctx, grading_dirs):
    paths = save_pngs(tmp_path / "out", [overlay(i) for i in range(asked_count() - 1)])
    verdict = judged(ctx, grading_dirs, paths)
    assert verdict.score == 0
    assert "returned" in verdict.message


def test_wrong_size_fails_and_says_the_expected_size(tmp_path, ctx, grading_dirs):
    arrays = [overlay(i) for i in range(asked_count())]
    arrays[1] = overlay(99, size=(480, 360))  # a matplotlib figure with margins, say
    verdict = judged(ctx, grading_dirs, save_pngs(tmp_path / "out", arrays))
    assert verdict.score == 0
    assert "480x360" in verdict.message and "expected 300x300" in verdict.message


def test_identical_images_fail(tmp_path, ctx, grading_dirs):
    arrays = [overlay(0)] * asked_count()
    verdict = judged(ctx, grading_dirs, save_pngs(tmp_path / "out", arrays))
    assert verdict.score == 0
    assert "same pixels" in verdict.message


def test_the_same_path_returned_twice_fails(tmp_path, ctx, grading_dirs):
    paths = save_pngs(tmp_path / "out", [overlay(i) for i in range(asked_count())])
    paths[-1] = paths[0]
    verdict = judged(ctx, grading_dirs, paths)
    assert verdict.score == 0
    assert "same pixels" in verdict.message


def test_blank_images_fail(tmp_path, ctx, grading_dirs):
    arrays = [overlay(i) for i in range(asked_count())]
    arrays[0] = np.zeros((300, 300, 3), np.uint8)
    verdict = judged(ctx, grading_dirs, save_pngs(tmp_path / "out", arrays))
    assert verdict.score == 0
    assert "blank" in verdict.message


def test_a_jpeg_named_png_fails(tmp_path, ctx, grading_dirs):
    paths = save_pngs(tmp_path / "out", [overlay(i) for i in range(asked_count())], fmt="JPEG")
    verdict = judged(ctx, grading_dirs, paths)
    assert verdict.score == 0
    assert "JPEG file, not a PNG" in verdict.message


def test_missing_and_corrupt_files_fail(tmp_path, ctx, grading_dirs):
    paths = save_pngs(tmp_path / "out", [overlay(i) for i in range(asked_count())])
    Path(paths[0]).write_bytes(Path(paths[0]).read_bytes()[:100])  # truncated
    paths[1] = str(tmp_path / "out" / "never_written.png")
    verdict = judged(ctx, grading_dirs, paths)
    assert verdict.score == 0
    assert "does not exist" in verdict.message
    assert "cannot be decoded" in verdict.message


def test_decompression_bomb_is_refused_before_decoding(tmp_path, ctx, grading_dirs):
    paths = save_pngs(tmp_path / "out", [overlay(i) for i in range(asked_count())])
    Image.new("1", (6000, 4000)).save(paths[0], format="PNG")  # 24 Mpixel, a few kB on disk
    verdict = judged(ctx, grading_dirs, paths)
    assert verdict.score == 0
    assert "6000x4000 pixels" in verdict.message


def test_forged_record_cannot_point_outside_the_evidence_folder(tmp_path, ctx, grading_dirs):
    probes, ev = grading_dirs
    paths = save_pngs(tmp_path / "out", [overlay(i) for i in range(asked_count())])
    evidence.record_files(GRADE_ID, paths)
    outside = save_pngs(tmp_path / "elsewhere", [overlay(50)])[0]
    record = ev / GRADE_ID / "record.json"
    doc = json.loads(record.read_text())
    first = doc["payload"]["__dict__"][0][1]["__dict__"][0][1]["__seq__"][0]["__dict__"]
    for pair in first:
        if pair[0] == "copy":
            pair[1] = str(Path("..") / ".." / Path(outside).relative_to(tmp_path))
    record.write_text(json.dumps(doc))
    verdict = judge_part(ctx, ev, probes, max_bytes=50_000_000)
    assert verdict.score == 0
    assert "was not recorded" in verdict.message


def test_nothing_recorded_is_a_zero_with_a_reason(ctx, grading_dirs):
    probes, ev = grading_dirs
    verdict = judge_part(ctx, ev, probes, max_bytes=50_000_000)
    assert verdict.score == 0
    assert "No result was recorded" in verdict.message

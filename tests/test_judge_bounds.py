"""The judge reads hostile evidence within its limits (issue 11, parts 2 and 3).

Each attack class is built here as the files a hostile kernel would leave, and judged by the
real judge (judge_notebook: a bounded child process, real Keras loading). Every hostile part
scores 0 with a sentence saying why, quickly and in little memory, and the other parts are
judged as usual.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import yaml
from conftest import REPO
from hostile.minicourse import FORMAT_SOLUTION

from autograder.course import Course, load_course
from autograder.grading.judge import NO_EVIDENCE, cell_errors, judge_notebook, write_probes
from cnnvis import evidence
from cnnvis.evidence import read_bundle, write_bundle

COURSE = load_course(REPO)
MARGIN_MIB = 64  # a hostile judge may peak at most this much above the honest one


def _notebook(course: Course, name: str):
    for a in course.assignments:
        for nb in a.notebooks:
            if nb.name == name:
                return a, nb
    raise KeyError(name)


def judge(course: Course, notebook: str, folder: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(verdicts by grade id, stats, seconds) for the evidence under FOLDER/evidence."""
    assignment, nb = _notebook(course, notebook)
    probes = folder / "probes"
    if not probes.exists():
        write_probes(course, assignment, nb, probes)
    stats: dict[str, Any] = {}
    t0 = time.monotonic()
    verdicts = judge_notebook(course, assignment, nb, folder / "evidence", probes, stats=stats)
    return {v.grade_id: v for v in verdicts}, stats, time.monotonic() - t0


_PROBES: dict[str, Path] = {}


def _review_probes(course: Course, folder: Path) -> None:
    """The review's probes in FOLDER/probes, written once per test session (hypothesis takes seconds)."""
    if "review" not in _PROBES:
        assignment, nb = _notebook(course, "label_loss_review")
        cache = Path(tempfile.mkdtemp(prefix="review-probes-"))
        write_probes(course, assignment, nb, cache)
        _PROBES["review"] = cache
    shutil.copytree(_PROBES["review"], folder / "probes")


def honest_review(folder: Path, course: Course = COURSE) -> None:
    """What an honest label_format leaves for review_detect_format (the mini course's solution)."""
    _review_probes(course, folder)  # the same seed in every course used here, hence the same probes
    scope: dict[str, Any] = {"np": np}
    exec(FORMAT_SOLUTION, scope)
    calls = []
    for call in read_bundle(folder / "probes" / "review_detect_format", "calls"):
        try:
            calls.append({"ok": True, "value": scope["label_format"](**call)})
        except ValueError as exc:
            calls.append({"ok": False, "error": "ValueError", "message": str(exc)})
    write_bundle(folder / "evidence" / "review_detect_format", {"values": {}, "calls": calls})


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()  # magic string included


def forged_record(folder: Path, members: dict[str, bytes], compress: bool = False, payload: Any = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(folder / "record.npz", "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    doc = {"version": 1, "payload": payload or {"values": {"y": {"__array__": "a0"}}, "calls": []}}
    (folder / "record.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("honest")
    honest_review(folder)
    verdicts, stats, seconds = judge(COURSE, "label_loss_review", folder)
    assert verdicts["review_detect_format"].passed, verdicts["review_detect_format"].message
    return stats["judge_peak_mib"], seconds


def _hostile_review(tmp_path: Path, honest, build) -> str:
    """Judge the review with review_detect_format's evidence replaced by BUILD(folder); its message."""
    honest_review(tmp_path)
    target = tmp_path / "evidence" / "review_detect_format"
    for p in target.iterdir():
        p.unlink()
    build(target)
    verdicts, stats, seconds = judge(COURSE, "label_loss_review", tmp_path)
    v = verdicts["review_detect_format"]
    assert v.score == 0 and v.max_score == 2
    assert verdicts["review_convert"].message == NO_EVIDENCE  # the other parts are judged as usual
    assert stats["judge_peak_mib"] < honest[0] + MARGIN_MIB, (stats, honest)
    assert seconds < honest[1] + 10
    assert len(v.message) < 4 * COURSE.grading.judge.max_string_chars + 100
    return v.message


def test_npz_declaring_8_gib_is_refused_before_decompressing(tmp_path, honest):
    header = npy_header((2**31,))  # 8 GiB of float32, 1 KiB of it present
    message = _hostile_review(tmp_path, honest, lambda f: forged_record(f, {"a0.npy": header + bytes(1024)}))
    assert "declares shape (2147483648,) of float32 (8,192.0 MiB)" in message, message


def test_zip_bomb_member_is_refused_by_its_compression_ratio(tmp_path, honest):
    data = npy_header((16 * 2**20,)) + bytes(64 * 2**20)  # 64 MiB of zeros deflate to about 64 KiB
    message = _hostile_review(tmp_path, honest, lambda f: forged_record(f, {"a0.npy": data}, compress=True))
    assert "a ratio over 200" in message and "refused unread" in message, message


def test_npy_header_disagreeing_with_the_zip_directory_is_refused(tmp_path, honest):
    message = _hostile_review(
        tmp_path, honest, lambda f: forged_record(f, {"a0.npy": npy_header((10_000,), "<f8") + bytes(80)})
    )
    assert "declares 80,000 bytes but holds 80" in message, message


def test_object_arrays_are_never_unpickled(tmp_path, honest):
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    message = _hostile_review(tmp_path, honest, lambda f: forged_record(f, {"a0.npy": buf.getvalue()}))
    assert "holds Python objects" in message, message


def test_a_150_mb_record_is_refused_unread(tmp_path, honest):
    def build(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"version": 1, "payload": {"values": {"s": "x" * 150_000_000}, "calls": []}}
        (folder / "record.json").write_text(json.dumps(doc))
        np.savez(folder / "record.npz")

    message = _hostile_review(tmp_path, honest, build)
    assert "more than the 8 MiB allowed" in message, message


def test_long_strings_and_keys_from_the_kernel_are_cut_once(tmp_path, honest):
    long = "<b>" + "y" * 500_000  # within the 8 MiB record, far past the 2,000 characters kept

    def build(folder: Path) -> None:
        calls = [{"ok": False, "error": long, "message": long, long: long} for _ in range(3)]
        write_bundle(folder, {"values": {long: long}, "calls": calls})

    message = _hostile_review(tmp_path, honest, build)
    assert "[cut: 500,003 characters]" in message, message


def test_cell_errors_quoted_from_the_kernel_are_cut():
    import nbformat

    cell = nbformat.v4.new_code_cell("x")
    cell.metadata["nbgrader"] = {"grade_id": "p", "grade": True, "points": 1}
    cell.outputs = [nbformat.v4.new_output("error", ename="E" * 10_000, evalue="v" * 10_000_000, traceback=[])]
    nb = nbformat.v4.new_notebook(cells=[cell])
    (message,) = cell_errors(nb, 2000).values()
    assert len(message) < 2400 and message.endswith("[cut: 10,000,000 characters]")


# ----------------------------------------------------------------------------- recorded models


def keras_archive(path: Path, config: dict[str, Any]) -> None:
    """A .keras file as a hostile kernel can write it: any config.json, no weights."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "2026-01-01"}))
        z.writestr("config.json", json.dumps(config))


def _layer(cls: str, build: list | None = None, **config: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"module": "keras.layers", "class_name": cls, "config": config, "registered_name": None}
    if build is not None:
        entry["build_config"] = {"input_shape": build}
    return entry


def _sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": list(layers)}}


def judge_model(tmp_path: Path, grade_id: str, notebook: str, write) -> tuple[Any, dict[str, Any], float]:
    """Judge NOTEBOOK with GRADE_ID's evidence a model reference to the file WRITE(path) makes."""
    folder = tmp_path / "evidence" / grade_id
    folder.mkdir(parents=True)
    write(folder / "model0.keras")
    write_bundle(folder, {"values": {"model": None}, "calls": []})
    doc = json.loads((folder / "record.json").read_text())
    doc["payload"] = {"values": {"model": {"__model__": "model0.keras", "loss": "categorical_crossentropy"}}}
    (folder / "record.json").write_text(json.dumps(doc))
    verdicts, stats, seconds = judge(COURSE, notebook, tmp_path)
    return verdicts[grade_id], stats, seconds


def test_config_declaring_a_huge_dense_is_refused_before_it_is_built(tmp_path):
    config = _sequential(
        _layer("InputLayer", batch_shape=[None, 28, 28, 1], name="in"),
        _layer("Flatten", name="flatten"),
        _layer("Dense", build=[None, 784], units=10_000_000, name="dense"),  # 7.8e9 parameters, 31 GB
    )
    write = lambda p: keras_archive(p, config)  # noqa: E731
    v, stats, seconds = judge_model(tmp_path, "lab1_model", "lab1_cam_fashion_mnist", write)
    assert v.score == 0
    assert "7,850,000,000 parameters" in v.message and "the judge does not build it" in v.message, v.message
    assert stats["judge_peak_mib"] < 1024 and seconds < 30


def test_config_whose_build_shape_lies_is_refused(tmp_path):
    config = _sequential(
        _layer("InputLayer", batch_shape=[None, 28, 28, 1], name="in"),
        _layer("GlobalAveragePooling2D", name="gap"),
        _layer("Dense", build=[None, 50_000_000], units=10, name="dense"),  # Keras would allocate from this
    )
    v, *_ = judge_model(tmp_path, "lab1_model", "lab1_cam_fashion_mnist", lambda p: keras_archive(p, config))
    assert v.score == 0 and "declares input shape [None, 50000000]" in v.message, v.message


def _few_weights_huge_forward() -> keras.Model:
    """70k weights (fewer than the seed's 97,698) but 18x its multiply-adds at 300x300."""
    layers: list[Any] = [keras.Input((300, 300, 3)), keras.layers.Conv2D(16, 3, padding="same")]
    layers += [keras.layers.Conv2D(16, 3, padding="same") for _ in range(30)]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")]
    return keras.Sequential(layers)


def test_model_with_few_weights_and_a_huge_forward_pass_is_refused(tmp_path):
    model = _few_weights_huge_forward()
    assert model.count_params() < COURSE.models["lab3"].total
    v, stats, seconds = judge_model(tmp_path, "lab3_model", "lab3_saliency", model.save)
    assert v.score == 0 and "operations per image (FLOPs)" in v.message, v.message
    assert seconds < 30


def test_layers_outside_the_courses_classes_are_refused(tmp_path):
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.UpSampling2D(64), keras.layers.GlobalAveragePooling2D()]
    )
    v, *_ = judge_model(tmp_path, "lab1_model", "lab1_cam_fashion_mnist", model.save)
    assert v.score == 0 and "is a UpSampling2D; the judge loads models made of" in v.message, v.message


def test_a_model_reference_cannot_leave_the_evidence_folder(tmp_path):
    folder = tmp_path / "evidence" / "lab1_model"
    folder.mkdir(parents=True)
    doc = {"version": 1, "payload": {"values": {"model": {"__model__": "../../../course.yml"}}, "calls": []}}
    (folder / "record.json").write_text(json.dumps(doc))
    np.savez(folder / "record.npz")
    verdicts, *_ = judge(COURSE, "lab1_cam_fashion_mnist", tmp_path)
    assert "a recorded model must be a file in the part's own evidence folder" in verdicts["lab1_model"].message


# ----------------------------------------------------------------------------- the child's limits


def course_with_judge(tmp_path: Path, **changes: Any) -> Course:
    raw = yaml.safe_load((REPO / "course.yml").read_text(encoding="utf-8"))
    raw["grading"]["judge"].update(changes.pop("judge", {}))
    raw["grading"].update(changes)
    root = tmp_path / "course"
    root.mkdir()
    (root / "course.yml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_course(root)


def test_a_part_over_the_time_limit_scores_0_and_the_rest_is_judged(tmp_path, monkeypatch):
    # A model this course admits (its cost limit raised) whose forward pass takes the judge many
    # seconds: the saliency part's reference maps are computed on it, past the 1 s limit.
    course = course_with_judge(tmp_path, judge={"timeout": 1, "cost_factor": 1000})
    monkeypatch.setenv(evidence.PROBES_ENV, str(tmp_path / "probes"))
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(tmp_path / "evidence"))
    assignment, nb = _notebook(course, "lab3_saliency")
    write_probes(course, assignment, nb, tmp_path / "probes")
    model = _few_weights_huge_forward()
    evidence.record_calls(
        "lab3_saliency", lambda images, class_index: np.zeros(np.shape(images)[:3], np.float32), model=model
    )
    verdicts, stats, seconds = judge(course, "lab3_saliency", tmp_path)
    assert verdicts["lab3_saliency"].score == 0
    assert "took longer than 1 s, the judge's limit for one part" in verdicts["lab3_saliency"].message
    assert all(v.message == NO_EVIDENCE for gid, v in verdicts.items() if gid != "lab3_saliency")
    assert seconds < 15


def test_a_part_over_the_memory_limit_scores_0_and_the_rest_is_judged(tmp_path):
    course = course_with_judge(tmp_path, max_evidence_mb=1024, judge={"memory_mb": 400})
    honest_review(tmp_path, course)
    big = tmp_path / "evidence" / "review_convert"
    big.mkdir(parents=True)
    np.save(big / "a0.npy", np.ones(60_000_000))  # 480 MB, within the evidence budget, not the judge's memory
    with zipfile.ZipFile(big / "record.npz", "w") as z:
        z.write(big / "a0.npy", "a0.npy")
    (big / "a0.npy").unlink()
    (big / "record.json").write_text(json.dumps({"version": 1, "payload": {"values": {"y": {"__array__": "a0"}}}}))
    verdicts, stats, _ = judge(course, "label_loss_review", tmp_path)
    assert verdicts["review_convert"].score == 0
    assert "needed more than 400 MiB of memory" in verdicts["review_convert"].message
    assert verdicts["review_detect_format"].passed
    assert stats["judge_peak_mib"] < 400


def test_weights_declaring_more_than_the_config_needs_are_refused(tmp_path):
    import h5py

    def write(path: Path) -> None:
        keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(path)
        weights = io.BytesIO()
        with h5py.File(weights, "w") as h5:  # 4 GB declared, a few KiB on disk (chunked, compressed, never written)
            h5.create_dataset("layers/dense/vars/0", shape=(10**9,), dtype="f4", chunks=(2**20,), compression="gzip")
        with zipfile.ZipFile(path) as z:
            kept = {n: z.read(n) for n in z.namelist() if n != "model.weights.h5"}
        with zipfile.ZipFile(path, "w") as z:
            for name, data in kept.items():
                z.writestr(name, data)
            z.writestr("model.weights.h5", weights.getvalue())

    v, stats, seconds = judge_model(tmp_path, "lab1_model", "lab1_cam_fashion_mnist", write)
    assert v.score == 0
    assert "the model's weights declare 4,000,000,000 bytes for 7,850 parameters" in v.message, v.message
    assert stats["judge_peak_mib"] < 1024

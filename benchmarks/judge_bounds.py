"""The bounded judge on honest and hostile evidence: peak memory and time of the judge's child.

    python benchmarks/judge_bounds.py [--notebook source/lab1/lab1_cam_fashion_mnist.ipynb] [--keep DIR]

Runs the notebook's source (the honest submission) once with the grader's probes
(autograder.grading.trial; reused from --keep DIR when it already holds the evidence), then
judges, in the same bounded child the grader uses (judge_notebook), the honest evidence and four
hostile copies, each with one part's evidence replaced as a hostile kernel could write it:

- npz_8gib:      the heatmap part's record.npz declares an 8 GiB array (1 KiB present);
- huge_dense:    the model part's .keras config declares Flatten -> Dense(1,000,000) (no weights);
- huge_forward:  the heatmap part's model has fewer weights than the seed's but 30 stacked convs;
- string_150mb:  the model part's record.json holds a 150 MB string.

Prints one row each: total score, the child's peak resident memory (VmHWM) and address space
(VmPeak), its CPU time (on a shared machine wall time is mostly other people's load), wall time,
the hostile part's own wall time next to the same part judged honestly, and whether it stays
within the stated margin of the honest run: peak resident memory at most honest + 10 %, CPU time
at most honest x 1.1 + 2 s.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autograder.course import load_course  # noqa: E402
from autograder.grading.judge import judge_notebook  # noqa: E402
from autograder.grading.trial import find_notebook, run_trial  # noqa: E402

MEMORY_MARGIN = 0.10
TIME_FACTOR, TIME_SLACK = 1.1, 2.0


def _part(notebook, prefix: str) -> str:
    return next(p.grade_id for p in notebook.parts if p.check and p.check.startswith(prefix))


def npz_8gib(folder: Path, spec) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (2**31,)})
    with zipfile.ZipFile(folder / "record.npz", "w") as z:
        z.writestr("a0.npy", buf.getvalue() + bytes(1024))


def huge_dense(folder: Path, spec) -> None:
    flat = int(np.prod(spec.input_shape))
    layers = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, *spec.input_shape], "name": "in"}},
        {"class_name": "Flatten", "config": {"name": "flatten"}},
        {
            "class_name": "Dense",
            "config": {"units": 1_000_000, "name": "d"},
            "build_config": {"input_shape": [None, flat]},
        },  # noqa: E501
    ]
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": layers}}
    for path in folder.glob("*.keras"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
            z.writestr("config.json", json.dumps(config))


def huge_forward(folder: Path, spec) -> None:
    import keras

    layers: list[Any] = [keras.Input(tuple(spec.input_shape)), keras.layers.Conv2D(16, 3, padding="same")]
    layers += [keras.layers.Conv2D(16, 3, padding="same") for _ in range(30)]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(spec.units, activation=spec.activation)]
    model = keras.Sequential(layers)
    for path in folder.glob("*.keras"):
        path.unlink()
        model.save(path)


def string_150mb(folder: Path, spec) -> None:
    doc = json.loads((folder / "record.json").read_text())
    doc["payload"] = {"values": {"note": "x" * 150_000_000}, "calls": []}
    (folder / "record.json").write_text(json.dumps(doc))


CASES = {"npz_8gib": ("heatmaps.", npz_8gib), "huge_dense": ("models.", huge_dense)}
CASES |= {"huge_forward": ("heatmaps.", huge_forward), "string_150mb": ("models.", string_150mb)}


def measure(course, assignment, notebook, evidence: Path, probes: Path) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    t0 = time.monotonic()
    verdicts = judge_notebook(course, assignment, notebook, evidence, probes, stats=stats)
    return {"verdicts": verdicts, "seconds": time.monotonic() - t0, **stats}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebook", type=Path, default=REPO / "source/lab1/lab1_cam_fashion_mnist.ipynb")
    ap.add_argument("--keep", type=Path, help="the trial's work folder (reused when it holds evidence)")
    args = ap.parse_args()
    course = load_course(REPO)
    assignment, notebook = find_notebook(course, args.notebook)
    spec = course.model_for(notebook)
    work = args.keep or Path(tempfile.mkdtemp(prefix="judge-bounds-"))
    if not (work / "evidence").is_dir():
        print(f"running {args.notebook.name} with probes (the honest submission) in {work} ...", flush=True)
        work.mkdir(parents=True, exist_ok=True)
        run_trial(course, args.notebook.resolve(), work)
    probes = work / "probes"
    rows = [("honest", measure(course, assignment, notebook, work / "evidence", probes), "")]
    scratch = Path(tempfile.mkdtemp(prefix="judge-bounds-hostile-"))
    try:
        for name, (prefix, build) in CASES.items():
            evidence = scratch / name
            shutil.copytree(work / "evidence", evidence)
            grade_id = _part(notebook, prefix)
            build(evidence / grade_id, spec)
            result = measure(course, assignment, notebook, evidence, probes)
            message = next(v.message for v in result["verdicts"] if v.grade_id == grade_id)
            result["part"] = grade_id
            rows.append((name, result, f"{grade_id}: {message[:110]}"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    honest = rows[0][1]
    print(f"\n{notebook.name}: judge limits {course.grading.judge}\n")
    print("| case | score | peak RSS MiB | peak VM MiB | CPU s | wall s | hostile part s (honest) | within margin |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for name, r, _ in rows:
        score = sum(v.score for v in r["verdicts"])
        within = (
            r["judge_peak_mib"] <= honest["judge_peak_mib"] * (1 + MEMORY_MARGIN)
            and r["judge_cpu_seconds"] <= honest["judge_cpu_seconds"] * TIME_FACTOR + TIME_SLACK
        )
        ok &= within or name == "honest"
        part = r.get("part")
        own = f"{r['judge_part_seconds'][part]:.2f} ({honest['judge_part_seconds'][part]:.2f})" if part else "-"
        print(
            f"| {name} | {score:g}/{notebook.auto_max:g} | {r['judge_peak_mib']:,.0f} | {r['judge_peak_vm_mib']:,.0f} "
            f"| {r['judge_cpu_seconds']:.1f} | {r['seconds']:.1f} | {own} | {'yes' if within else 'NO'} |"
        )
    print()
    for name, _, message in rows[1:]:
        print(f"{name}: {message}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

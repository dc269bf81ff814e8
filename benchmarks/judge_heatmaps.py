"""How long the heatmap judge takes on Lab 4's Grad-CAM: a correct answer and two diagnosed mistakes.

    python benchmarks/judge_heatmaps.py [--rounds 2] [--keep DIR]

Records the `lab4_gradcam` evidence of three "students" on a seed VGG16 (random weights; the judge
recomputes everything on the recorded model, so training would change nothing here), through the
real cnnvis.evidence.record_calls and the grader's probes: the reference itself (passes), the
gradient of the loss instead of the logit, and Grad-CAM without its ReLU (both diagnosed by name).
Then judges each part ROUNDS times in this process with the course's check (judge_parts, as the
judge's child does: a fresh model load and reference per judgement). Prints the seconds of each
judgement, its score and the start of its message.

To compare two checkouts side by side in one run, alternate them with PYTHONPATH:

    PYTHONPATH=/path/to/other/checkout python benchmarks/judge_heatmaps.py --keep /tmp/l4
    python benchmarks/judge_heatmaps.py --keep /tmp/l4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test_reference.seed_vgg16

STUDENTS = {"correct": {}, "loss_gradient": {"score": "loss"}, "no_relu": {"relu": False}}
PART = "lab4_gradcam"


def record(course, folder: Path) -> None:
    """FOLDER/<student>/{probes,evidence}: the grader's probes and each student's recorded Grad-CAM."""
    from test_reference import seed_vgg16

    from autograder.grading.judge import write_probes
    from autograder.reference import GradCAM
    from cnnvis import evidence

    assignment = course.assignment("lab4")
    model = seed_vgg16()
    model.compile(loss="sparse_categorical_crossentropy")
    for student, options in STUDENTS.items():
        base = folder / student
        if (base / "evidence" / PART / "record.json").is_file():
            continue
        write_probes(course, assignment, assignment.notebooks[0], base / "probes")
        (base / "evidence").mkdir(parents=True, exist_ok=True)
        os.environ.update(
            CNNVIS_PROBES_DIR=str(base / "probes"), CNNVIS_EVIDENCE_DIR=str(base / "evidence"), CNNVIS_PROFILE="grading"
        )
        method = GradCAM(model, "block5_conv3", **options)
        evidence.record_calls(
            PART, lambda images, class_index, upsample, m=method: m(images, class_index, upsample), model=model
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="record the evidence here once and reuse it")
    args = ap.parse_args()
    from autograder.course import load_course
    from autograder.grading.judge import judge_parts

    course = load_course(REPO)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="judge-heatmaps-"))
    record(course, folder)
    assignment = course.assignment("lab4")
    print(f"judging {PART} with {REPO / 'autograder'}")
    for round_ in range(1, args.rounds + 1):
        for student in STUDENTS:
            base = folder / student
            start = time.perf_counter()
            notebook = assignment.notebooks[0]
            (verdict,) = judge_parts(course, assignment, notebook, [PART], base / "evidence", base / "probes")
            seconds = time.perf_counter() - start
            score, message = f"{verdict.score:g}/{verdict.max_score:g}", verdict.message.replace("\n", " ")
            print(f"round {round_}  {student:14s} {seconds:6.1f} s  {score}  {message[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

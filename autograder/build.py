"""source/ → release/ (nbgrader generate_assignment) and solutions/ (executed, no hidden tests).

    course build [--assignment ID ...] [--skip-solutions] [--force]

Everything written here is deterministic: notebooks are serialised with sorted keys, fixed cell
ids, no execution timings, no absolute paths and no object addresses, so building twice gives
byte-identical files and `git status` stays clean. nbgrader only ever runs in a temporary course
folder made by autograder.nbgrader_setup, never in the repository.

Solutions are built incrementally. Executing a notebook trains models, and training on another
CPU gives slightly different weights (and so different figures), so each solution records a
digest of everything that decides its outputs (`solution_inputs`: its source notebook, its
course.yml section, the toolkit and the pinned packages) in its metadata. A notebook whose digest
is unchanged is not executed again (only re-serialised), so a fresh clone builds clean on any
machine; `force=True` (`course build --force`) executes everything.

The same functions produce the expected files for `course check` (sync checks), which is why
`expected_release`, `solution_notebook` and `expected_toolkit` return content rather than write it.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import nbformat

from autograder.course import Assignment, Course, Notebook, load_course
from autograder.nbgrader_setup import KERNEL_EXTRA_ARGUMENTS, ensure_tools_on_path, write_course_root

SOLUTION_BEGIN, SOLUTION_END = "BEGIN SOLUTION", "END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
TOOLKIT_PACKAGE = "cnnvis"
# Import name → distribution name, for the toolkit's pyproject (versions come from ours).
_DISTRIBUTIONS = {
    "tensorflow": "tensorflow",
    "keras": "keras",
    "numpy": "numpy",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
    "scipy": "scipy",
    "yaml": "pyyaml",
}
# Notebook-level metadata worth keeping; the rest (versions of the machine that built it,
# widget state, toolbar settings) would make builds differ between machines.
_NOTEBOOK_METADATA = ("kernelspec", "nbgrader", "course_build")
BUILD_KEY = "course_build"  # solutions' notebook metadata: {"inputs": digest of what decided the outputs}
# Bump when the way solutions are executed changes what they contain (not for serialisation-only changes).
EXECUTION_FORMAT = 1
_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# What ipykernel reports, less the interpreter's version (which differs between machines): JupyterLab
# marks a notebook modified when the kernel's language_info differs from the saved one.
_LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}
# TensorFlow/absl log lines: the only stderr a solution may produce (and it is dropped).
_TF_NOISE = re.compile(
    r"^(\s*|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+\] .*"
    r"|To enable the following instructions: .*|oneDNN custom operations are on.*)$"
)
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]{6,}\b")

Log = Callable[[str], None]


class BuildError(RuntimeError):
    """A notebook could not be released or its solution could not be executed."""


# --------------------------------------------------------------------------- notebook I/O


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read PATH as nbformat 4.5, giving cells without an id a stable one (grade id or position).

    nbformat would otherwise invent random ids when it upgrades an older notebook, and the build
    would differ on every run.
    """
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    seen: set[str] = set()
    for i, cell in enumerate(raw.get("cells", [])):
        cid = cell.get("id")
        if not cid or cid in seen:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            cid = grade_id if grade_id and grade_id not in seen else f"cell-{i:03d}"
            cell["id"] = cid
        seen.add(cid)
    raw["nbformat"], raw["nbformat_minor"] = 4, max(5, raw.get("nbformat_minor", 0))
    return nbformat.reads(json.dumps(raw), as_version=4)


def dumps_notebook(nb: nbformat.NotebookNode, workdirs: Iterable[Path] = ()) -> str:
    """Serialise NB deterministically (see module docstring)."""
    nb = copy.deepcopy(nb)
    metadata = {k: nb.metadata[k] for k in _NOTEBOOK_METADATA if k in nb.metadata}
    metadata.setdefault("kernelspec", dict(_KERNELSPEC))
    metadata["language_info"] = dict(_LANGUAGE_INFO)
    nb.metadata = nbformat.from_dict(metadata)
    replacements = sorted({str(Path(w).resolve()) for w in workdirs} | {str(w) for w in workdirs}, key=len)[::-1]
    for cell in nb.cells:
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = _coalesce_streams(cell.outputs)
        for out in cell.get("outputs", []):
            out.get("metadata", {}).pop("execution", None)
            _scrub_output(out, replacements)
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def _coalesce_streams(outputs: list[Any]) -> list[Any]:
    """Merge consecutive stdout (or stderr) chunks: how a print is split into messages depends on timing."""
    merged: list[Any] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            out.get("output_type") == "stream"
            and last is not None
            and last.get("output_type") == "stream"
            and last.get("name") == out.get("name")
        ):
            last["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def _scrub(text: str, replacements: list[str]) -> str:
    for path in replacements:
        text = text.replace(path, ".")
    return _ADDRESS.sub("at 0x…", text)


def _scrub_output(out: dict[str, Any], replacements: list[str]) -> None:
    if "text" in out:
        out["text"] = _scrub(out["text"], replacements)
    for mime, value in out.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            out["data"][mime] = _scrub(value, replacements)
    if out.get("output_type") == "error":
        out["traceback"] = [_scrub(line, replacements) for line in out.get("traceback", [])]


def write_text(path: Path, text: str) -> bool:
    """Write TEXT to PATH only if it changed; True when it did (keeps mtimes of unchanged files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


# --------------------------------------------------------------------------- markers


def strip_lines_with(source: str, *markers: str) -> str:
    """SOURCE without the lines that contain any of MARKERS (the markers themselves, not the region)."""
    return "\n".join(line for line in source.split("\n") if not any(m in line for m in markers))


def marked_regions(source: str, begin: str, end: str) -> list[str]:
    """The text between each BEGIN/END marker pair in SOURCE (markers excluded)."""
    regions, current = [], None
    for line in source.split("\n"):
        if begin in line:
            current = []
        elif end in line and current is not None:
            regions.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return regions


def nbgrader_meta(cell: dict[str, Any]) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


# --------------------------------------------------------------------------- solutions


def solution_notebook(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The source with hidden tests removed (nbgrader's ClearHiddenTests) and solution markers dropped."""
    from nbgrader.preprocessors import ClearHiddenTests

    nb = copy.deepcopy(source)
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    for cell in nb.cells:
        if nbgrader_meta(cell).get("solution"):
            cell.source = strip_lines_with(cell.source, SOLUTION_BEGIN, SOLUTION_END)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def is_tf_noise(text: str) -> bool:
    return all(_TF_NOISE.match(line) for line in text.splitlines())


def drop_tf_noise(nb: nbformat.NotebookNode) -> list[str]:
    """Remove stderr outputs that are only TensorFlow log lines; return the other stderr texts."""
    remaining = []
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                if is_tf_noise(out.get("text", "")):
                    continue
                remaining.append(f"cell {cell.get('id')}: {out['text'][:200]!r}")
            kept.append(out)
        if cell.cell_type == "code":
            cell.outputs = kept
    return remaining


def execution_env(course: Course, profile: str = "student") -> dict[str, str]:
    env = dict(os.environ)
    for key in ("CNNVIS_EVIDENCE_DIR", "CNNVIS_PROBES_DIR"):
        env.pop(key, None)
    # the course's own toolkit (course.root/cnnvis) before any installed copy: solutions are built with it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(course.root), env.get("PYTHONPATH")) if p)
    env.update(
        CNNVIS_PROFILE=profile,
        CNNVIS_SETTINGS=str(settings_path(course)),
        TF_CPP_MIN_LOG_LEVEL="3",
        TF_ENABLE_ONEDNN_OPTS="0",
        PYTHONHASHSEED="0",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    return env


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def solution_inputs(course: Course, assignment: Assignment, notebook: Notebook) -> str:
    """Digest of everything that decides NOTEBOOK's executed solution.

    Its source notebook; its course.yml section (the assignment, the model specifications it uses,
    the course seed, the profiles and label formats); the toolkit as released (code and
    settings.json); the pinned package versions. Not the rest of course.yml: another assignment's
    points must not re-execute this one.
    """
    raw = course.raw
    section = {
        "course": raw.get("course"),
        "profiles": raw.get("profiles"),
        "label_formats": raw.get("label_formats"),
        "assignment": next((a for a in raw.get("assignments", []) if a.get("id") == assignment.id), None),
        "models": {m: raw.get("models", {}).get(m) for m in sorted({nb.model for nb in assignment.notebooks} - {None})},
    }
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(_canonical([label, len(data)]) + data)

    feed("format", str(EXECUTION_FORMAT).encode())
    feed("source", (course.source_dir / assignment.id / notebook.filename).read_bytes())
    feed("course.yml", _canonical(section))
    for rel, data in sorted(expected_toolkit(course).items()):
        if rel.startswith("toolkit/"):  # release/README.md lists every assignment: not an input
            feed(rel, data)
    pins = tomllib.loads((course.root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    feed("dependencies", _canonical(sorted(pins)))
    return "sha256:" + digest.hexdigest()


def recorded_inputs(solution: Path) -> str | None:
    """The input digest SOLUTION was executed with, or None (missing, unreadable, or built before digests)."""
    try:
        meta = json.loads(solution.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return None
    value = meta.get(BUILD_KEY, {}).get("inputs") if isinstance(meta.get(BUILD_KEY), dict) else None
    return value if isinstance(value, str) else None


def execute_solution(course: Course, assignment: Assignment, nb: nbformat.NotebookNode, log: Log) -> str:
    """Execute NB in a temporary copy of its source folder; return its deterministic serialisation."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    with tempfile.TemporaryDirectory(prefix="course-solution-") as tmp:
        work = Path(tmp) / assignment.id
        shutil.copytree(course.source_dir / assignment.id, work, ignore=shutil.ignore_patterns("*.ipynb", ".*"))
        client = NotebookClient(
            nb,
            timeout=course.grading.notebook_timeout,
            kernel_name="python3",
            allow_errors=False,
            extra_arguments=KERNEL_EXTRA_ARGUMENTS,
            resources={"metadata": {"path": str(work)}},
        )
        kernel_log = Path(tmp) / "kernel.log"
        # capture_fd_output=False sends TensorFlow's C-level logging to the kernel's own stderr: keep it in a file.
        with kernel_log.open("wb") as log_file:
            try:
                client.execute(env=execution_env(course), stderr=log_file)
            except CellExecutionError as exc:
                tail = kernel_log.read_text(encoding="utf-8", errors="replace")[-2000:]
                message = f"solution of {assignment.id} failed to execute:\n{exc}\nkernel log:\n{tail}"
                raise BuildError(message) from None
        for leftover in drop_tf_noise(nb):
            log(f"  warning: stderr in the solution ({leftover}); keep graded cells quiet")
        return dumps_notebook(nb, workdirs=[work, Path(tmp)])


def build_solutions(course: Course, assignment: Assignment, log: Log, force: bool = False) -> list[Path]:
    """Execute each notebook's solution whose inputs changed (all with FORCE); re-serialise the others."""
    written = []
    for notebook in assignment.notebooks:
        src = course.source_dir / assignment.id / notebook.filename
        dest = course.solutions_dir / assignment.id / notebook.filename
        shown = f"solutions/{assignment.id}/{notebook.filename}"
        inputs = solution_inputs(course, assignment, notebook)
        if not force and dest.is_file() and recorded_inputs(dest) == inputs:
            # Same inputs: keep its outputs, apply only today's serialisation.
            changed = write_text(dest, dumps_notebook(read_notebook(dest)))
            log(f"  {shown} (inputs unchanged, not executed{', re-serialised' if changed else ''})")
            written.append(dest)
            continue
        t0 = time.perf_counter()
        nb = solution_notebook(read_notebook(src))
        nb.metadata[BUILD_KEY] = {"inputs": inputs}
        changed = write_text(dest, execute_solution(course, assignment, nb, log))
        log(f"  {shown} (executed in {time.perf_counter() - t0:.1f} s{'' if changed else ', same bytes'})")
        written.append(dest)
    return written


# --------------------------------------------------------------------------- release


def _nbgrader_api(root: Path):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    ensure_tools_on_path()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    api = NbGraderAPI(config=config)
    api.log.setLevel(logging.ERROR)
    return api


def expected_release(course: Course, assignment_ids: list[str]) -> dict[str, dict[str, bytes]]:
    """{assignment id: {relative path: bytes}} of the release nbgrader generates from source/."""
    result: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        root = write_course_root(course, Path(tmp) / "course", assignment_ids)
        for aid in assignment_ids:  # cell ids must be stable before nbgrader sees them
            for path in sorted((root / "source" / aid).glob("*.ipynb")):
                path.write_text(nbformat.writes(read_notebook(path)), encoding="utf-8")
        api = _nbgrader_api(root)
        for aid in assignment_ids:
            outcome = api.generate_assignment(aid, force=True, create=True)
            if not outcome.get("success"):
                raise BuildError(
                    f"nbgrader generate_assignment {aid} failed:\n{outcome.get('error') or outcome.get('log')}"
                )
            files: dict[str, bytes] = {}
            out_dir = root / "release" / aid
            for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
                rel = path.relative_to(out_dir).as_posix()
                if path.suffix == ".ipynb":
                    files[rel] = dumps_notebook(read_notebook(path), workdirs=[root]).encode("utf-8")
                else:
                    files[rel] = path.read_bytes()
            result[aid] = files
    return result


def write_release(course: Course, assignment_ids: list[str], log: Log) -> None:
    for aid, files in expected_release(course, assignment_ids).items():
        dest = course.release_dir / aid
        for stale in (p for p in dest.rglob("*") if p.is_file()) if dest.is_dir() else []:
            if stale.relative_to(dest).as_posix() not in files:
                stale.unlink()
        for rel, data in files.items():
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not (path.is_file() and path.read_bytes() == data):
                path.write_bytes(data)
            log(f"  release/{aid}/{rel}")


# --------------------------------------------------------------------------- settings and toolkit


def settings_path(course: Course) -> Path:
    return course.root / TOOLKIT_PACKAGE / "settings.json"


def settings_json(course: Course) -> str:
    """cnnvis/settings.json: what the student toolkit needs from course.yml."""
    # the heatmap tolerance too, so that notebooks state the number the grader uses rather than a copy
    grading = {"tolerance": course.grading.tolerance}
    payload = {"course": course.id, "seed": course.seed, "profiles": course.profiles, "grading": grading}
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def _toolkit_requirements(course: Course, package: Path) -> list[str]:
    imported: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    wanted = {_DISTRIBUTIONS[name] for name in imported if name in _DISTRIBUTIONS} | {"ipykernel"}
    pins = tomllib.loads((course.root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    by_name = {re.split(r"[<>=!~\[ ]", pin, maxsplit=1)[0].lower(): pin for pin in pins}
    return [by_name.get(name, name) for name in sorted(wanted)]


def _toolkit_pyproject(course: Course, requirements: list[str]) -> str:
    deps = "".join(f'  "{r}",\n' for r in requirements)
    return (
        "# Generated by `course build` from course.yml; do not edit.\n"
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{TOOLKIT_PACKAGE}"\nversion = "1.0.0"\n'
        f"description = {json.dumps('Student toolkit for ' + course.title)}\n"
        f'requires-python = ">=3.11"\ndependencies = [\n{deps}]\n\n'
        f'[tool.setuptools.packages.find]\ninclude = ["{TOOLKIT_PACKAGE}*"]\n\n'
        f'[tool.setuptools.package-data]\n{TOOLKIT_PACKAGE} = ["settings.json"]\n'
    )


def release_readme(course: Course) -> str:
    rows = "".join(
        f"| `{a.id}/` | {a.title} | {', '.join(nb.filename for nb in a.notebooks)} | {a.max_score:g} |\n"
        for a in course.assignments
    )
    return f"""# {course.title}

Your notebooks for the course `{course.id}`. One folder per assignment:

| folder | assignment | notebooks | points |
|---|---|---|---|
{rows}
## Set up (once)
```bash
python3 -m venv .venv && . .venv/bin/activate
pip install ./toolkit jupyterlab
jupyter lab
```
`toolkit/` is the course's `{TOOLKIT_PACKAGE}` package: data (real datasets when you are online,
generated images of the same shapes otherwise), plotting helpers and the course settings.

## Working on a notebook
- Replace every `raise NotImplementedError(...)` line with your code and every `YOUR ANSWER HERE` with
  your written answer. Keep the function names and signatures.
- Run the test cells: they check the basics. The grader runs more checks on inputs of its own,
  so a passing visible test is a good sign, not a guarantee.
- Do not delete or copy cells; graded cells are restored from the original when grading.
- Notebooks read their data sizes from the `student` profile (small and fast on a laptop CPU):
  `export CNNVIS_PROFILE=full` before `jupyter lab` uses the real data and more epochs.
- Keep cells quiet: train with `verbose=0`; do not print timings.

Submit the notebooks with the same file names in the same folders.
"""


def expected_toolkit(course: Course) -> dict[str, bytes]:
    """{path relative to release/: bytes} of the student toolkit and release README."""
    package = course.root / TOOLKIT_PACKAGE
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".json", ".typed"}:
            rel = path.relative_to(course.root).as_posix()
            files[f"toolkit/{rel}"] = path.read_bytes()
    files[f"toolkit/{TOOLKIT_PACKAGE}/settings.json"] = settings_json(course).encode("utf-8")
    files["toolkit/pyproject.toml"] = _toolkit_pyproject(course, _toolkit_requirements(course, package)).encode()
    files["README.md"] = release_readme(course).encode("utf-8")
    return files


def write_toolkit(course: Course, log: Log) -> None:
    files = expected_toolkit(course)
    toolkit = course.release_dir / "toolkit"
    if toolkit.is_dir():
        shutil.rmtree(toolkit)
    for rel, data in files.items():
        path = course.release_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    log(f"  release/toolkit/ ({len(files) - 1} files) and release/README.md")


# --------------------------------------------------------------------------- entry point


def buildable(course: Course, assignment_ids: list[str] | None = None) -> list[Assignment]:
    """The assignments to build: those asked for (all by default) that have a source folder."""
    wanted = [course.assignment(aid) for aid in assignment_ids] if assignment_ids else list(course.assignments)
    return [a for a in wanted if (course.source_dir / a.id).is_dir()]


def build(
    course: Course,
    assignment_ids: list[str] | None = None,
    *,
    solutions: bool = True,
    force: bool = False,
    log: Log = print,
) -> list[Assignment]:
    """Write cnnvis/settings.json, release/ (toolkit included) and, unless SOLUTIONS is False, solutions/."""
    if write_text(settings_path(course), settings_json(course)):
        log(f"  {TOOLKIT_PACKAGE}/settings.json updated from course.yml")
    todo = buildable(course, assignment_ids)
    missing = [a.id for a in (course.assignments if not assignment_ids else map(course.assignment, assignment_ids))]
    for aid in sorted(set(missing) - {a.id for a in todo}):
        log(f"  skipped {aid}: no source/{aid}/ yet")
    write_toolkit(course, log)
    if todo:
        write_release(course, [a.id for a in todo], log)
    if solutions:
        for assignment in todo:
            build_solutions(course, assignment, log, force=force)
    return todo


def main(args) -> int:
    """`course build`, called by autograder.cli with parsed ARGS (course, assignment, skip_solutions)."""
    course = load_course(args.course)
    t0 = time.perf_counter()
    try:
        built = build(course, args.assignment, solutions=not args.skip_solutions, force=args.force)
    except BuildError as exc:
        print(f"course build: {exc}", file=sys.stderr)
        return 1
    print(f"built {', '.join(a.id for a in built) or 'nothing'} in {time.perf_counter() - t0:.1f} s")
    return 0

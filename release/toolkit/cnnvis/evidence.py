"""The narrow channel between a graded notebook and the judge.

Hidden test cells do not decide grades. While a notebook is graded, they call the student's
functions on inputs the grader chose (the *probes*) and record what came back (the *evidence*).
The judge, running outside the student's kernel with the reference implementations, reads the
evidence and decides each part's score. Nothing in this module decides a pass, so nothing a
student replaces in the kernel can fake one: the only evidence that passes is a correct answer.

Layout, both directories set by the grader through environment variables:

    $CNNVIS_PROBES_DIR/<grade_id>/calls.json + arrays.npz     read-only, written by the grader
    $CNNVIS_EVIDENCE_DIR/<grade_id>/record.json + arrays.npz  + models/files, written here

Values are encoded as JSON with arrays (numpy or tensors) stored in the npz and referenced as
{"__array__": key}; Keras models are saved as .keras files and referenced as {"__model__": file}.
Nothing is ever pickled.

Outside grading (a student running the source or solution notebook) every function here is a
no-op, so hidden cells never get in the way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

PROBES_ENV = "CNNVIS_PROBES_DIR"
ZERO_HEAD = "__zero_head__"  # a probe key: run this call with the recorded model's last Dense kernel zeroed
EVIDENCE_ENV = "CNNVIS_EVIDENCE_DIR"
FORMAT_VERSION = 1


def grading() -> bool:
    """True while the grader runs this kernel."""
    return bool(os.environ.get(EVIDENCE_ENV))


# ----------------------------------------------------------------------------- codec


class _Encoder:
    def __init__(self, folder: Path | None = None):
        self.arrays: dict[str, np.ndarray] = {}
        self.folder = folder

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            f = float(value)
            return f if np.isfinite(f) else {"__float__": repr(f)}
        if isinstance(value, Mapping):
            return {"__dict__": [[str(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            return {"__seq__": [self.encode(v) for v in value], "tuple": isinstance(value, tuple)}
        if _is_keras_model(value):
            return self._model(value)
        if isinstance(value, Path):
            return str(value)
        array = _to_numpy(value)
        if array is None:
            return {"__repr__": f"{type(value).__name__}: {str(value)[:200]}"}
        key = f"a{len(self.arrays)}"
        self.arrays[key] = array
        return {"__array__": key}

    def _model(self, model: Any) -> dict[str, Any]:
        if self.folder is None:
            raise ValueError("models can only be recorded as evidence")
        name = f"model{sum(1 for _ in self.folder.glob('model*.keras'))}.keras"
        model.save(self.folder / name)
        return {"__model__": name, "loss": _loss_name(model)}


def _is_keras_model(value: Any) -> bool:
    return any(
        c.__name__ in {"Model", "Sequential", "Functional"} and "keras" in c.__module__ for c in type(value).__mro__
    )


def _loss_name(model: Any) -> str | None:
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None)
    return str(name) if name else type(loss).__name__


def _to_numpy(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        array = value
    elif hasattr(value, "numpy") and callable(value.numpy):  # tf.Tensor, tf.Variable
        try:
            array = np.asarray(value.numpy())
        except Exception:
            return None
    else:
        try:
            array = np.asarray(value)
        except Exception:
            return None
    if array.dtype == object:
        return None
    return array


def decode(obj: Any, arrays: Mapping[str, np.ndarray], folder: Path | None = None) -> Any:
    """Inverse of the encoder. Models come back as {"model_path": Path, "loss": str} references."""
    if isinstance(obj, list):
        return [decode(v, arrays, folder) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__dict__" in obj:
        return {k: decode(v, arrays, folder) for k, v in obj["__dict__"]}
    if "__seq__" in obj:
        items = [decode(v, arrays, folder) for v in obj["__seq__"]]
        return tuple(items) if obj.get("tuple") else items
    if "__model__" in obj:
        path = (folder / obj["__model__"]) if folder else Path(obj["__model__"])
        return {"model_path": path, "loss": obj.get("loss")}
    if "__repr__" in obj:
        return {"unencodable": obj["__repr__"]}
    return {k: decode(v, arrays, folder) for k, v in obj.items()}


def write_bundle(folder: Path, payload: Any, name: str = "record") -> None:
    """Write PAYLOAD as FOLDER/NAME.json (+ NAME.npz). Used for evidence and, by the grader, probes."""
    folder.mkdir(parents=True, exist_ok=True)
    enc = _Encoder(folder)
    doc = {"version": FORMAT_VERSION, "payload": enc.encode(payload)}
    np.savez(folder / f"{name}.npz", **enc.arrays)
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(folder / f"{name}.json")


def read_bundle(folder: Path, name: str = "record", max_bytes: int | None = None) -> Any:
    """Read what write_bundle wrote. Never unpickles; refuses oversized files when asked."""
    folder = Path(folder)
    paths = [folder / f"{name}.json", folder / f"{name}.npz"]
    if max_bytes is not None:
        size = sum(p.stat().st_size for p in paths if p.exists())
        if size > max_bytes:
            raise ValueError(f"{folder}: {size} bytes of evidence, more than the {max_bytes} allowed")
    doc = json.loads(paths[0].read_text(encoding="utf-8"))
    with np.load(paths[1], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return decode(doc["payload"], arrays, folder)


# ----------------------------------------------------------------------------- kernel side


def _evidence_folder(grade_id: str) -> Path:
    folder = Path(os.environ[EVIDENCE_ENV]) / grade_id
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def probe_calls(grade_id: str) -> list[dict[str, Any]]:
    """The inputs the grader chose for GRADE_ID: a list of keyword-argument dicts."""
    folder = Path(os.environ[PROBES_ENV]) / grade_id
    return list(read_bundle(folder, "calls"))


def record(grade_id: str, **values: Any) -> None:
    """Record named values (arrays, numbers, strings, Keras models, lists of those) for the judge."""
    if not grading():
        return
    write_bundle(_evidence_folder(grade_id), {"values": values, "calls": []})


def _last_dense(model: Any) -> Any:
    """The last Dense layer in execution order, looking inside nested sub-models; None without one."""
    for layer in reversed(getattr(model, "layers", [])):
        if any(c.__name__ == "Dense" for c in type(layer).__mro__):
            return layer
        if hasattr(layer, "layers"):
            found = _last_dense(layer)
            if found is not None:
                return found
    return None


@contextlib.contextmanager
def zeroed_head(model: Any) -> Iterator[None]:
    """MODEL's last Dense kernel set to zeros for the duration, restored afterwards whatever happens.

    Every class score is then a constant, so every CAM, saliency and Grad-CAM map of any image is
    flat by construction: the probe that shows a normalisation without an epsilon (0 / 0 = NaN).
    """
    dense = _last_dense(model)
    if dense is None:
        yield
        return
    saved = np.array(dense.kernel.numpy())
    dense.kernel.assign(np.zeros_like(saved))
    try:
        yield
    finally:
        dense.kernel.assign(saved)


def record_calls(
    grade_id: str,
    fn: Callable[..., Any] | Mapping[str, Callable[..., Any]],
    raise_errors: bool = True,
    **values: Any,
) -> None:
    """Call FN on every probe for GRADE_ID and record each result (or the error it raised).

    FN is one function called as fn(**call), or a mapping of names to functions; then each probe
    call names its function under the key "function". VALUES are recorded alongside (for example
    the model the heatmaps were computed on). A call with the key ZERO_HEAD runs with the recorded
    `model`'s last Dense kernel zeroed (see zeroed_head), restored before the model is saved.
    If any call raised, the first error is raised again after recording so the notebook shows it,
    unless RAISE_ERRORS is False: for functions that must raise on some probes (the judge reads
    every recorded error either way).
    """
    if not grading():
        return
    folder = _evidence_folder(grade_id)
    results: list[dict[str, Any]] = []
    first_error: BaseException | None = None
    for call in probe_calls(grade_id):
        kwargs = dict(call)
        target = fn
        if isinstance(fn, Mapping):
            target = fn[kwargs.pop("function")]
        head = zeroed_head(values.get("model")) if kwargs.pop(ZERO_HEAD, False) else contextlib.nullcontext()
        try:
            with head:
                out = target(**kwargs)
            results.append({"ok": True, "value": out})
        except Exception as exc:  # the student's error is evidence, not a crash
            results.append({"ok": False, "error": type(exc).__name__, "message": str(exc)[:500]})
            first_error = first_error or exc
    write_bundle(folder, {"values": values, "calls": results})
    if first_error is not None and raise_errors:
        raise first_error


def record_files(grade_id: str, paths: list[str | os.PathLike[str]], max_bytes: int = 20_000_000) -> None:
    """Copy files the notebook wrote (e.g. saved saliency images) into the evidence."""
    if not grading():
        return
    folder = _evidence_folder(grade_id)
    copied, total = [], 0
    for i, p in enumerate(paths):
        p = Path(p)
        entry: dict[str, Any] = {"path": str(p), "exists": p.is_file()}
        if p.is_file():
            size = p.stat().st_size
            total += size
            if total <= max_bytes:
                dest = f"file{i}{p.suffix.lower()}"
                shutil.copyfile(p, folder / dest)
                entry["copy"] = dest
            entry["size"] = size
        copied.append(entry)
    write_bundle(folder, {"values": {"files": copied}, "calls": []})

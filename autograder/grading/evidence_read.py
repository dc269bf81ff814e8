"""Read one part's evidence (record.json + record.npz) as untrusted input, within stated bounds.

This is the evidence boundary: everything the kernel wrote passes here once before a check sees
it. Sizes are checked before anything is parsed, decompressed or allocated:
- the JSON document is refused past `grading.judge.max_record_mb`;
- every npz member's shape and dtype are read from its `.npy` header (numpy.lib.format) and its
  sizes from the zip directory, without decompressing the data; a member whose declared size
  exceeds the evidence budget, disagrees with the zip directory, or is compressed past
  `max_compression_ratio` (a zip bomb) is refused, and object dtypes (pickles) are never loaded;
- every string in the document (values, dict keys, error messages, names) is cut to
  `max_string_chars`, so no page, result file or grades.csv grows with what the kernel wrote;
- a recorded model must name a plain file inside the part's folder (no path out of it).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from autograder.course import JudgeLimits
from cnnvis.evidence import decode

MAX_MEMBERS = 10_000
SMALL_MEMBER = 1 << 20  # below this a high compression ratio is harmless (and np.savez does not compress)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class EvidenceRefused(ValueError):
    """The evidence declares more than the judge will read, or is malformed; the message is for the student."""


def cut(text: str, limit: int) -> str:
    """TEXT, cut to LIMIT characters with a note saying how long it was."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [cut: {len(text):,} characters]"


def cut_strings(value: Any, limit: int) -> Any:
    """VALUE (decoded JSON) with every string, dict keys included, cut to LIMIT characters."""
    stack: list[Any] = [value]
    if isinstance(value, str):
        return cut(value, limit)
    while stack:  # iterative: a deeply nested document must not exhaust the C stack here
        node = stack.pop()
        if isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str):
                    node[i] = cut(v, limit)
                elif isinstance(v, (list, dict)):
                    stack.append(v)
        elif isinstance(node, dict):
            for k in list(node):
                v = node[k]
                if isinstance(k, str) and len(k) > limit:
                    del node[k]
                    k = cut(k, limit)
                    node[k] = v
                if isinstance(v, str):
                    node[k] = cut(v, limit)
                elif isinstance(v, (list, dict)):
                    stack.append(v)
    return value


def check_zip(path: Path, max_bytes: int, max_ratio: int, what: str) -> list[zipfile.ZipInfo]:
    """The members of the zip archive PATH if their declared sizes fit MAX_BYTES; EvidenceRefused otherwise."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise EvidenceRefused(f"{what} is not a readable zip archive ({type(exc).__name__})") from None
    if len(members) > MAX_MEMBERS:
        raise EvidenceRefused(f"{what} holds {len(members):,} files, more than {MAX_MEMBERS:,}")
    total = 0
    for info in members:
        total += info.file_size
        if total > max_bytes:
            raise EvidenceRefused(
                f"{what} declares {_mib(total)} once decompressed, more than the {_mib(max_bytes)} of evidence allowed"
            )
        if info.file_size > SMALL_MEMBER and info.file_size > max_ratio * max(info.compress_size, 1):
            raise EvidenceRefused(
                f"{what}: {cut(info.filename, 80)} declares {_mib(info.file_size)} from "
                f"{info.compress_size:,} compressed bytes (a ratio over {max_ratio}); refused unread"
            )
    return members


def check_npz(path: Path, max_bytes: int, max_ratio: int) -> None:
    """Every member of the npz at PATH is a plain array whose header agrees with the zip directory and the budget."""
    members = check_zip(path, max_bytes, max_ratio, "the recorded arrays")
    declared_total = 0
    with zipfile.ZipFile(path) as archive:
        for info in members:
            name = cut(info.filename, 80)
            with archive.open(info) as f:  # reads (decompresses) only the header's bytes
                try:
                    version = npy_format.read_magic(f)
                    if version == (1, 0):
                        shape, _fortran, dtype = npy_format.read_array_header_1_0(f)
                    else:
                        shape, _fortran, dtype = npy_format.read_array_header_2_0(f)
                except ValueError as exc:
                    raise EvidenceRefused(f"array {name} has no valid .npy header ({cut(str(exc), 200)})") from None
                header = f.tell()
            if dtype.hasobject:
                raise EvidenceRefused(f"array {name} holds Python objects; only numeric arrays are read")
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            declared_total += declared
            if declared_total > max_bytes:
                raise EvidenceRefused(
                    f"array {name} declares shape {tuple(shape)} of {dtype} ({_mib(declared)}): more than the "
                    f"{_mib(max_bytes)} of evidence allowed"
                )
            if declared + header > info.file_size:
                raise EvidenceRefused(
                    f"array {name} declares {declared:,} bytes but holds {info.file_size - header:,}: "
                    "truncated or forged"
                )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _check_model_refs(doc: Any) -> None:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            name = node.get("__model__")
            if name is not None and not (isinstance(name, str) and _PLAIN_NAME.fullmatch(name) and ".." not in name):
                raise EvidenceRefused("a recorded model must be a file in the part's own evidence folder")
            stack.extend(node.values())


def read_evidence(folder: Path, limits: JudgeLimits, max_bytes: int, name: str = "record") -> Any:
    """The payload FOLDER/NAME.json (+ NAME.npz) holds, decoded, within LIMITS and the evidence budget MAX_BYTES."""
    folder = Path(folder)
    doc_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
    size = doc_path.stat().st_size
    if size > limits.max_record_mb * 2**20:
        raise EvidenceRefused(f"the recorded result is {_mib(size)}, more than the {limits.max_record_mb} MiB allowed")
    try:
        doc = json.loads(doc_path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise EvidenceRefused(f"{doc_path.name} is not valid JSON ({type(exc).__name__})") from None
    doc = cut_strings(doc, limits.max_string_chars)
    if not isinstance(doc, dict) or "payload" not in doc:
        raise EvidenceRefused(f"{doc_path.name} is not an evidence record")
    _check_model_refs(doc["payload"])
    arrays: dict[str, np.ndarray] = {}
    if npz_path.exists():
        check_npz(npz_path, max_bytes, limits.max_compression_ratio)
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    try:
        return decode(doc["payload"], arrays, folder)
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise EvidenceRefused(f"{doc_path.name} does not decode ({type(exc).__name__}: {cut(str(exc), 200)})") from None

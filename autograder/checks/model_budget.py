"""What a recorded `.keras` model would cost, read from its config before Keras builds it.

Keras builds every layer from `config.json` before it reads a weight, so the config alone decides
how much memory loading takes and how long a forward pass runs. This module walks that config
without building anything: it propagates the declared input shape through each layer (channels
last) with the layer's own formulas and adds up parameters, multiply-adds and activation sizes.
A model is refused, with a sentence, when:
- its archive declares more than the evidence budget, or compresses past the stated ratio;
- a layer's class is not one the course's models are built from (plus a few cheap shape-keeping
  layers), or it takes several inputs;
- a layer's `build_config` declares an input shape other than what reaches it (Keras allocates
  weights from the declared one);
- its parameters, FLOPs or activations at the probe shape exceed `grading.judge.cost_factor`
  times those of the seed model in course.yml.
The numbers are estimates for refusing what is out of proportion, not the summary check: an
honest model with a wrong layer or two stays well inside the factor and gets the summary's hint.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.course import JudgeLimits, ModelSpec
from autograder.grading.evidence_read import EvidenceRefused, check_zip, cut

# Layers that keep the shape, or only reshape it, at a cost proportional to their input.
CHEAP_LAYERS = {"Dropout", "Activation", "ReLU", "Softmax", "Rescaling", "BatchNormalization", "Flatten"}
MODEL_CLASSES = {"Sequential", "Functional", "Model"}
KNOWN_LAYERS = {
    "InputLayer",
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dense",
} | CHEAP_LAYERS
MAX_NESTING = 8
WEIGHTS_OVERHEAD = 4 * 2**20  # the HDF5 file's own structure around the float32 weights


class ModelRefused(ValueError):
    """The recorded model's config declares something the judge will not build; the message is for the student."""


@dataclass
class Cost:
    params: int = 0
    flops: int = 0  # per sample, multiply and add counted separately
    activations: int = 0  # per sample, elements of every layer's output
    layers: int = 0


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v >= 1 for v in value)):
        raise ModelRefused(f"{what} must be one or two positive integers, got {cut(repr(value), 60)}")
    return value[0], value[1]


def _spatial(size: int, window: int, stride: int, padding: str, what: str) -> int:
    if padding == "same":
        out = math.ceil(size / stride)
    elif padding == "valid":
        out = (size - window) // stride + 1
    else:
        raise ModelRefused(f"{what}: padding {cut(repr(padding), 40)} is not 'same' or 'valid'")
    if out < 1:
        raise ModelRefused(f"{what}: a {window}-wide window does not fit an input {size} wide")
    return out


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def _layer(cls: str, cfg: dict[str, Any], shape: tuple[int, ...], name: str, cost: Cost) -> tuple[int, ...]:
    """The output shape (without batch) of one layer on SHAPE; adds its cost to COST."""
    if cfg.get("data_format", "channels_last") not in ("channels_last", None):
        raise ModelRefused(f"layer {name}: only data_format='channels_last' is read")
    if cls in ("Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        if len(shape) != 3:
            raise ModelRefused(f"layer {name} ({cls}) needs an input (height, width, channels), got {shape}")
    h, w, c = shape if len(shape) == 3 else (0, 0, shape[-1] if shape else 0)
    if cls == "Conv2D":
        filters, groups = cfg.get("filters"), cfg.get("groups", 1)
        if not (isinstance(filters, int) and filters >= 1 and isinstance(groups, int) and groups >= 1):
            raise ModelRefused(f"layer {name}: filters and groups must be positive integers")
        if c % groups or filters % groups:
            raise ModelRefused(f"layer {name}: groups={groups} does not divide the channels")
        kh, kw = _pair(cfg.get("kernel_size"), f"layer {name}: kernel_size")
        sh, sw = _pair(cfg.get("strides", 1), f"layer {name}: strides")
        dh, dw = _pair(cfg.get("dilation_rate", 1), f"layer {name}: dilation_rate")
        padding = cfg.get("padding", "valid")
        oh = _spatial(h, dh * (kh - 1) + 1, sh, padding, f"layer {name}")
        ow = _spatial(w, dw * (kw - 1) + 1, sw, padding, f"layer {name}")
        weights = kh * kw * (c // groups) * filters
        cost.params += weights + (filters if cfg.get("use_bias", True) else 0)
        cost.flops += 2 * oh * ow * weights
        return (oh, ow, filters)
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        ph, pw = _pair(cfg.get("pool_size", 2), f"layer {name}: pool_size")
        sh, sw = _pair(cfg.get("strides") or [ph, pw], f"layer {name}: strides")
        padding = cfg.get("padding", "valid")
        out = (_spatial(h, ph, sh, padding, f"layer {name}"), _spatial(w, pw, sw, padding, f"layer {name}"), c)
        cost.flops += _elements(out) * ph * pw
        return out
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        cost.flops += h * w * c
        return (1, 1, c) if cfg.get("keepdims") else (c,)
    if cls == "Dense":
        units = cfg.get("units")
        if not (isinstance(units, int) and units >= 1) or not shape:
            raise ModelRefused(f"layer {name}: Dense needs a positive number of units and an input")
        cost.params += c * units + (units if cfg.get("use_bias", True) else 0)
        cost.flops += 2 * _elements(shape[:-1]) * c * units
        return (*shape[:-1], units)
    if cls == "Flatten":
        return (_elements(shape),)
    if cls == "BatchNormalization":
        cost.params += 4 * c
    cost.flops += _elements(shape)
    return shape


def _shape(value: Any, what: str) -> tuple[int | None, ...]:
    if not (isinstance(value, list) and 1 <= len(value) <= 6):
        raise ModelRefused(f"{what} is not a shape")
    if not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 1) for d in value):
        raise ModelRefused(f"{what} is not a shape of positive integers")
    return tuple(value)


def _declared_input(entry: dict[str, Any]) -> tuple[int | None, ...] | None:
    """The input shape (with batch) a model config declares, if any."""
    cfg = entry.get("config") or {}
    for layer in cfg.get("layers") or []:
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer":
            lc = layer.get("config") or {}
            shape = lc.get("batch_shape") or lc.get("batch_input_shape")
            return _shape(shape, "the model's input shape") if shape is not None else None
    build = (entry.get("build_config") or {}).get("input_shape") or cfg.get("build_input_shape")
    return _shape(build, "the model's input shape") if build is not None else None


def _check_build(layer: dict[str, Any], shape: tuple[int, ...], name: str) -> None:
    declared = (layer.get("build_config") or {}).get("input_shape")
    if declared is None:
        return
    if not isinstance(declared, list) or tuple(declared[1:]) != tuple(shape):
        raise ModelRefused(
            f"layer {name}: its config declares input shape {cut(repr(declared), 80)}, but its input is "
            f"{(None, *shape)}; the model file was not written by Keras from a built model"
        )


def model_cost(entry: Any, shape: tuple[int, ...], cost: Cost, depth: int = 0) -> tuple[int, ...]:
    """Output shape of the model config ENTRY on inputs of SHAPE (no batch); adds to COST."""
    if depth > MAX_NESTING:
        raise ModelRefused(f"models are nested more than {MAX_NESTING} deep")
    if not isinstance(entry, dict):
        raise ModelRefused("the model config is not a mapping")
    cls, cfg = entry.get("class_name"), entry.get("config")
    if cls not in MODEL_CLASSES or not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        raise ModelRefused(f"the recorded object is not a Keras Sequential or functional model ({cut(str(cls), 40)})")
    layers = cfg["layers"]
    if cls == "Sequential":
        for layer in layers:
            shape = _apply(layer, shape, cost, depth)
        return shape
    outputs: dict[str, tuple[int, ...]] = {}
    last = shape
    for layer in layers:
        if not isinstance(layer, dict):
            raise ModelRefused("a layer of the model config is not a mapping")
        name = str(layer.get("name") or (layer.get("config") or {}).get("name"))
        if layer.get("class_name") == "InputLayer":
            if outputs.get("__input__") is not None:
                raise ModelRefused("the model has several inputs; the course's models have one")
            outputs[name] = outputs["__input__"] = shape
            continue
        nodes = layer.get("inbound_nodes")
        one_node = isinstance(nodes, list) and len(nodes) == 1 and isinstance(nodes[0], dict)
        args = nodes[0].get("args") if one_node else None
        tensors = [a for a in args if isinstance(a, dict)] if isinstance(args, list) else []
        history = (tensors[0].get("config") or {}).get("keras_history") if len(tensors) == 1 else None
        if not (isinstance(history, list) and history and str(history[0]) in outputs) or len(args or []) != 1:
            raise ModelRefused(
                f"layer {cut(name, 60)} takes several inputs or is used several times; the course's models are chains"
            )
        last = outputs[name] = _apply(layer, outputs[str(history[0])], cost, depth)
    return last


def _apply(layer: Any, shape: tuple[int, ...], cost: Cost, depth: int) -> tuple[int, ...]:
    if not isinstance(layer, dict):
        raise ModelRefused("a layer of the model config is not a mapping")
    cls = layer.get("class_name")
    cfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    name = cut(str(layer.get("name") or cfg.get("name") or cls), 60)
    module = str(layer.get("module") or "keras")
    if not module.startswith("keras") or layer.get("registered_name") not in (None, cls):
        raise ModelRefused(f"layer {name} is not a built-in Keras layer")
    cost.layers += 1
    if cls in MODEL_CLASSES:
        out = model_cost(layer, shape, cost, depth + 1)
    elif cls == "InputLayer":
        return shape
    elif cls in KNOWN_LAYERS:
        _check_build(layer, shape, name)
        out = _layer(str(cls), cfg, shape, name, cost)
    else:
        known = ", ".join(sorted(KNOWN_LAYERS - {"InputLayer"}))
        raise ModelRefused(f"layer {name} is a {cut(str(cls), 40)}; the judge loads models made of {known}")
    cost.activations += _elements(out)
    return out


def spec_cost(spec: ModelSpec) -> Cost:
    """The seed model's cost from its summary in course.yml (same formulas, from output shapes and params)."""
    cost = Cost()
    previous = _elements(tuple(spec.input_shape))
    for row in spec.layers:
        if row.cls == "InputLayer":
            continue
        out = _elements(tuple(d for d in row.output_shape if d is not None))
        spatial = out // row.output_shape[-1] if row.output_shape[-1] else 1
        cost.params += row.params
        cost.flops += 2 * row.params * spatial if row.params else previous
        cost.activations += out
        cost.layers += 1
        previous = out
    return cost


def check_recorded_model(path: Path, spec: ModelSpec, limits: JudgeLimits, max_bytes: int) -> Cost:
    """The estimated cost of the .keras file at PATH, or ModelRefused saying what is out of proportion."""
    try:
        members = {m.filename: m for m in check_zip(path, max_bytes, limits.max_compression_ratio, "the model file")}
    except EvidenceRefused as exc:
        raise ModelRefused(str(exc)) from None
    info = members.get("config.json")
    if info is None:
        raise ModelRefused("the model file has no config.json")
    if info.file_size > limits.max_record_mb * 2**20:
        raise ModelRefused(f"the model's config.json declares {info.file_size:,} bytes")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read(info))
    except (ValueError, RecursionError, zipfile.BadZipFile, OSError) as exc:
        raise ModelRefused(f"the model's config.json is not readable JSON ({type(exc).__name__})") from None
    declared = _declared_input(config) if isinstance(config, dict) else None
    probe = tuple(spec.input_shape)
    if declared is None or any(d is None for d in declared[1:]) or len(declared) != len(probe) + 1:
        shape = probe
    else:
        shape = tuple(int(d) for d in declared[1:])  # type: ignore[arg-type]
    cost = Cost()
    try:
        model_cost(config, shape, cost)
    except RecursionError:
        raise ModelRefused("the model config is nested too deeply") from None
    seed, factor = spec_cost(spec), limits.cost_factor
    for what, got, allowed in (
        ("parameters", cost.params, seed.params),
        ("operations per image (FLOPs)", cost.flops, seed.flops),
        ("activation values per image", cost.activations, seed.activations),
        ("layers", cost.layers, seed.layers),
    ):
        if got > factor * allowed:
            raise ModelRefused(
                f"the recorded model declares {got:,} {what} at input shape {shape}, more than {factor:g} times "
                f"the {allowed:,} of the course's {spec.key} model; the judge does not build it"
            )
    weights = members.get("model.weights.h5")
    if weights is not None:
        allowed = 8 * cost.params + WEIGHTS_OVERHEAD  # float64 at most, and the file's own structure
        if weights.file_size > allowed:
            raise ModelRefused(
                f"the model's weights file is {weights.file_size:,} bytes for {cost.params:,} parameters"
            )
        declared = _declared_weight_bytes(path, weights)
        if declared > allowed:  # HDF5 compresses datasets inside the file: their declared shapes count
            raise ModelRefused(f"the model's weights declare {declared:,} bytes for {cost.params:,} parameters")
    return cost


def _declared_weight_bytes(path: Path, info: zipfile.ZipInfo) -> int:
    """Bytes the datasets of the weights file declare (shape x item size), read from their headers only."""
    import h5py

    total = 0

    def visit(_name: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += int(math.prod(obj.shape or (1,))) * obj.dtype.itemsize

    try:
        with zipfile.ZipFile(path) as archive, archive.open(info) as raw:
            data = io.BytesIO(raw.read())  # within the budget checked above
        with h5py.File(data, "r") as h5:
            h5.visititems(visit)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelRefused(f"the model's weights file is not readable HDF5 ({type(exc).__name__})") from None
    return total

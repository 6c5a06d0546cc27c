"""Factorization Machines model artifact (docs/formats.md §2), numpy only.

``model.tar.gz`` -> ``model_algo-1`` (stored ZIP) -> ``meta.json`` + ``symbol.json`` + ``params``
(MXNet NDArray list). Two parameter layouts exist (§2.4):

* A: ``arg:v`` (N, k), ``arg:w1_weight`` (N, 1), ``arg:w0_weight`` (1,)
* B: ``arg:v`` (k, N), ``arg:Linear_Plus_Bias_weight`` (1, N), ``arg:Linear_Plus_Bias_bias`` (1,)

The reader picks the axes by ``feature_dim`` from ``meta.json``; the writer emits layout A
(or B on request).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import mxnet_params
from .artifact import ArtifactError, Member, model_tar_gz, read_model_tar_gz, read_zip, stored_zip

__all__ = ["FMModel", "FMModelError", "dmlc_json", "fm_model_bytes", "read_fm_model", "write_fm_model"]

MEMBER = "model_algo-1"
_LAYOUTS = {
    "A": ("v", "w1_weight", "w0_weight"),
    "B": ("v", "Linear_Plus_Bias_weight", "Linear_Plus_Bias_bias"),
}


class FMModelError(ArtifactError):
    """An FM artifact that cannot be read; the message names the member or field."""


@dataclass(eq=False)
class FMModel:
    """FM parameters: score(x) = w0 + x.w + 1/2 sum_f ((x.V[:, f])^2 - (x^2).(V[:, f]^2))."""

    w0: float
    w: np.ndarray  # (N,) float32 linear weights
    V: np.ndarray  # (N, k) float32 factors; row i belongs to one-hot column i
    feature_dim: int
    hyperparameters: dict[str, str] = field(default_factory=dict)  # meta.json training_parameters
    epoch_number: int | None = None

    def __post_init__(self) -> None:
        self.w0 = float(self.w0)
        self.w = np.asarray(self.w, np.float32).reshape(-1)
        self.V = np.asarray(self.V, np.float32)
        self.feature_dim = int(self.feature_dim)
        if self.V.ndim != 2 or self.V.shape[0] != self.feature_dim or self.w.shape != (self.feature_dim,):
            raise ValueError(
                f"FMModel: V must be (feature_dim, k) and w (feature_dim,), got V {self.V.shape}, "
                f"w {self.w.shape}, feature_dim {self.feature_dim}"
            )

    @property
    def num_factors(self) -> int:
        return int(self.V.shape[1])


# --------------------------------------------------------------------------------------------
# reading


def _pick(params: dict[str, Any], name: str, what: str) -> np.ndarray:
    for key in (f"arg:{name}", name):
        if key in params and params[key] is not None:
            return np.asarray(params[key])
    raise FMModelError(f"{what}: missing parameter arg:{name} (has {sorted(params)})")


def _layout(params: dict[str, Any], what: str) -> str:
    names = {k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k for k in params}
    for layout, (_, linear, bias) in _LAYOUTS.items():
        if {"v", linear, bias} <= names:
            return layout
    raise FMModelError(
        f"{what}: no FM parameters (need arg:v with arg:w1_weight/arg:w0_weight or "
        f"arg:Linear_Plus_Bias_weight/_bias), found {sorted(params)}"
    )


def _from_members(files: dict[str, bytes], what: str) -> FMModel:
    for name in ("meta.json", "params"):
        if name not in files:
            raise FMModelError(f"{what}: member {name} missing (has {sorted(files)})")
    try:
        meta = json.loads(files["meta.json"])
    except (ValueError, UnicodeDecodeError) as e:
        raise FMModelError(f"{what}/meta.json: not valid JSON ({e})") from None
    hyper = meta.get("training_parameters") if isinstance(meta, dict) else None
    if not isinstance(hyper, dict):
        raise FMModelError(f"{what}/meta.json: field training_parameters missing or not an object")
    try:
        n = int(str(hyper["feature_dim"]))
    except (KeyError, ValueError):
        raise FMModelError(
            f"{what}/meta.json: field training_parameters.feature_dim missing or not an integer"
        ) from None
    try:
        params = mxnet_params.load(files["params"])
    except mxnet_params.ParamsFormatError as e:
        raise FMModelError(f"{what}/params: {e}") from None
    layout = _layout(params, f"{what}/params")
    v_name, w_name, b_name = _LAYOUTS[layout]
    V = _pick(params, v_name, f"{what}/params")
    w = _pick(params, w_name, f"{what}/params")
    b = _pick(params, b_name, f"{what}/params")
    if V.ndim != 2 or n not in V.shape:
        raise FMModelError(f"{what}/params: arg:v has shape {V.shape}, no axis equals feature_dim {n}")
    if V.shape[0] != n or (V.shape[1] == n and layout == "B"):
        V = V.T
    if w.size != n or (w.ndim == 2 and n not in w.shape):
        raise FMModelError(f"{what}/params: arg:{w_name} has shape {w.shape}, expected {n} weights")
    if b.size != 1:
        raise FMModelError(f"{what}/params: arg:{b_name} has shape {b.shape}, expected one bias")
    epoch = meta.get("epoch_number")
    return FMModel(
        w0=float(b.reshape(-1)[0]),
        w=w.reshape(-1),
        V=np.ascontiguousarray(V),
        feature_dim=n,
        hyperparameters={str(k): str(v) for k, v in hyper.items()},
        epoch_number=epoch if isinstance(epoch, int) else None,
    )


def read_fm_model(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> FMModel:
    """Read ``model.tar.gz`` (any number of hosts: ``model_algo-1`` is used) or a bare ``model_algo-1``."""
    raw = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else Path(source).read_bytes()
    if raw[:4] == b"PK\x03\x04":
        return _from_members(read_zip(raw, MEMBER), MEMBER)
    try:
        members = read_model_tar_gz(raw)
    except FMModelError:
        raise
    except ArtifactError as e:
        raise FMModelError(str(e)) from None
    by_name = {os.path.basename(m.name.rstrip("/")): m for m in members}
    if MEMBER not in by_name:
        raise FMModelError(f"model.tar.gz: member {MEMBER} missing (has {sorted(m.name for m in members)})")
    try:
        files = read_zip(by_name[MEMBER].data, f"model.tar.gz/{MEMBER}")
    except ArtifactError as e:
        raise FMModelError(str(e)) from None
    return _from_members(files, f"model.tar.gz/{MEMBER}")


# --------------------------------------------------------------------------------------------
# writing


def dmlc_json(value: Any, depth: int = 0) -> str:
    """JSON the way MXNet's dmlc JSONWriter prints a symbol (objects/arrays multi-line when large)."""
    if isinstance(value, dict):
        items = [f"{json.dumps(k)}: {dmlc_json(v, depth + 1)}" for k, v in value.items()]
        multi = len(items) > 1
    elif isinstance(value, list):
        items = [dmlc_json(v, depth + 1) for v in value]
        multi = len(items) > 10 or any(isinstance(v, dict) for v in value)
    else:
        return json.dumps(value)
    open_, close = ("{", "}") if isinstance(value, dict) else ("[", "]")
    if not items:
        return open_ + close
    if not multi:
        return open_ + ", ".join(items) + close
    pad = "\n" + "  " * (depth + 1)
    return open_ + pad + (", " + pad).join(items) + "\n" + "  " * depth + close


def symbol_json(
    feature_dim: int, num_factors: int, predictor_type: str = "regressor", layout: str = "A"
) -> str:
    """An MXNet symbol graph computing the FM score with the parameter names of ``layout``."""
    nodes: list[dict[str, Any]] = []

    def node(op: str, name: str, inputs: list[int] = (), attrs: dict[str, str] | None = None) -> int:  # type: ignore[assignment]
        entry: dict[str, Any] = {"op": op, "name": name}
        if attrs:
            entry["attrs"] = attrs
        entry["inputs"] = [[i, 0, 0] for i in inputs]
        nodes.append(entry)
        return len(nodes) - 1

    n, k = feature_dim, num_factors
    data = node("null", "data", attrs={"__storage_type__": "2"})
    if layout == "A":
        w1 = node("null", "w1_weight", attrs={"__shape__": f"({n}, 1)"})
        linear = node("dot", "dot0", [data, w1])
        w0 = node("null", "w0_weight", attrs={"__shape__": "(1,)"})
        bias = node("broadcast_add", "broadcast_plus0", [linear, w0])
        v = node("null", "v", attrs={"__shape__": f"({n}, {k})"})
        dot_v: dict[str, str] = {}
    else:
        weight = node("null", "Linear_Plus_Bias_weight", attrs={"__shape__": f"(1, {n})"})
        b = node("null", "Linear_Plus_Bias_bias", attrs={"__shape__": "(1,)"})
        bias = node("FullyConnected", "Linear_Plus_Bias", [data, weight, b], {"num_hidden": "1"})
        v = node("null", "v", attrs={"__shape__": f"({k}, {n})"})
        dot_v = {"transpose_b": "True"}
    xv = node("dot", "dot1", [data, v], dot_v)
    xv2 = node("square", "square0", [xv])
    x2 = node("square", "square1", [data])
    v2 = node("square", "square2", [v])
    x2v2 = node("dot", "dot2", [x2, v2], dot_v)
    diff = node("elemwise_sub", "_minus0", [xv2, x2v2])
    total = node("sum", "sum0", [diff], {"axis": "1", "keepdims": "True"})
    half = node("_mul_scalar", "_mulscalar0", [total], {"scalar": "0.5"})
    score = node("elemwise_add", "_plus0", [bias, half])
    label = node("null", "out_label")
    op = "LogisticRegressionOutput" if predictor_type == "binary_classifier" else "LinearRegressionOutput"
    out = node(op, "out", [score, label])
    graph = {
        "nodes": nodes,
        "arg_nodes": [i for i, nd in enumerate(nodes) if nd["op"] == "null"],
        "node_row_ptr": list(range(len(nodes) + 1)),
        "heads": [[out, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10100]},
    }
    return dmlc_json(graph)


def _params(model: FMModel, layout: str) -> dict[str, np.ndarray]:
    w0 = np.array([model.w0], np.float32)
    if layout == "A":
        return {"arg:v": model.V, "arg:w1_weight": model.w.reshape(-1, 1), "arg:w0_weight": w0}
    if layout == "B":
        return {
            "arg:v": np.ascontiguousarray(model.V.T),
            "arg:Linear_Plus_Bias_weight": model.w.reshape(1, -1),
            "arg:Linear_Plus_Bias_bias": w0,
        }
    raise ValueError(f"unknown FM parameter layout {layout!r} (expected 'A' or 'B')")


def fm_model_bytes(model: FMModel, *, mtime: int | None = None, layout: str = "A") -> bytes:
    """``model.tar.gz`` bytes of ``model`` in SageMaker's layout.

    ``layout`` "A" (default) is the blog's ``arg:v`` (N, k) / ``arg:w1_weight`` / ``arg:w0_weight``;
    "B" the transposed ``Linear_Plus_Bias`` variant (for testing readers). ``mtime`` (default: now)
    sets the tar member time and the ZIP timestamps (UTC), so equal inputs give equal bytes.
    """
    params = mxnet_params.dump(_params(model, layout))
    stamp = int(time.time()) if mtime is None else int(mtime)
    hyper = {str(k): str(v) for k, v in model.hyperparameters.items()}
    for key, value in (("feature_dim", model.feature_dim), ("num_factors", model.num_factors)):
        if key in hyper and hyper[key] != str(value):
            raise ValueError(f"hyperparameter {key}={hyper[key]!r} disagrees with the arrays ({value})")
        hyper[key] = str(value)
    epoch = model.epoch_number if model.epoch_number is not None else int(hyper.get("epochs", "1") or 1)
    meta = json.dumps({"training_parameters": hyper, "version": 1, "epoch_number": epoch})
    predictor = hyper.get("predictor_type", "regressor")
    symbol = symbol_json(model.feature_dim, model.num_factors, predictor, layout)
    zipped = stored_zip(
        [("meta.json", meta.encode()), ("symbol.json", symbol.encode()), ("params", params)],
        time.gmtime(stamp)[:6],
    )
    return model_tar_gz([Member(MEMBER, zipped, stamp)])


def write_fm_model(
    model: FMModel, target: str | os.PathLike[str] | BinaryIO, *, mtime: int | None = None, layout: str = "A"
) -> bytes:
    """Write ``model.tar.gz`` to a path or binary file object; returns the bytes written."""
    data = fm_model_bytes(model, mtime=mtime, layout=layout)
    if hasattr(target, "write"):
        target.write(data)
    else:
        path = Path(target)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return data

"""SageMaker's hyperparameter names, defaults and checks for FM and k-NN (FORMATS §2.1, §3.1).

Hyperparameters arrive as strings (CreateTrainingJob). Parsing returns the typed configs of
``fm.py`` / ``knn.py`` or raises ``ClientError`` with a message naming the hyperparameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from . import fm, knn


class ClientError(ValueError):
    """A user error; the job fails with ``FailureReason = "ClientError: <message>"``."""


# Underscore keys the built-in containers accept in their default configuration (logged by real
# jobs); accepted and ignored here so requests that copy them still run.
_CONTAINER_KEYS = {
    "_kvstore",
    "_num_gpus",
    "_num_kv_servers",
    "_log_level",
    "_tuning_objective_metric",
    "_enable_profiler",
}


def _int(name: str, raw: str, minimum: int = 1) -> int:
    try:
        value = float(raw)
    except ValueError:
        raise ClientError(f"hyperparameter {name}={raw!r} is not an integer") from None
    if not value.is_integer():
        raise ClientError(f"hyperparameter {name}={raw!r} is not an integer")
    if value < minimum:
        raise ClientError(f"hyperparameter {name}={raw!r} must be >= {minimum}")
    return int(value)


def _float(name: str, raw: str, non_negative: bool = False) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ClientError(f"hyperparameter {name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ClientError(f"hyperparameter {name}={raw!r} is not a finite number")
    if non_negative and value < 0:
        raise ClientError(f"hyperparameter {name}={raw!r} must be >= 0")
    return value


def _nonneg(name: str, raw: str) -> float:
    return _float(name, raw, non_negative=True)


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in allowed:
            raise ClientError(f"hyperparameter {name}={raw!r} must be one of {', '.join(allowed)}")
        return raw

    return parse


def _int_or_auto(name: str, raw: str) -> int | None:
    return None if raw == "auto" else _int(name, raw)


_FM_REQUIRED = ("feature_dim", "num_factors", "predictor_type")
_FM: dict[str, Callable[[str, str], Any]] = {
    "feature_dim": _int,
    "num_factors": _int,
    "predictor_type": _choice(fm.BINARY, fm.REGRESSOR),
    "epochs": _int,
    "mini_batch_size": _int,
    "clip_gradient": _float,
    "eps": _float,
    "rescale_grad": _float,
}
for _group in ("bias", "linear", "factors"):
    _FM[f"{_group}_lr"] = _nonneg
    _FM[f"{_group}_wd"] = _nonneg
    _FM[f"{_group}_init_method"] = _choice(*fm.INIT_METHODS)
    _FM[f"{_group}_init_scale"] = _nonneg
    _FM[f"{_group}_init_sigma"] = _nonneg
    _FM[f"{_group}_init_value"] = _float

_KNN_REQUIRED = ("feature_dim", "k", "predictor_type", "sample_size")
_KNN: dict[str, Callable[[str, str], Any]] = {
    "feature_dim": _int,
    "k": _int,
    "predictor_type": _choice(knn.CLASSIFIER, knn.REGRESSOR),
    "sample_size": _int,
    "dimension_reduction_type": _choice("sign", "fjlt"),
    "dimension_reduction_target": _int,
    "index_type": _choice(*knn.INDEX_TYPES),
    "index_metric": _choice(*knn.METRICS),
    "faiss_index_ivf_nlists": _int_or_auto,
    "faiss_index_pq_m": _int,
    # Not in AWS's hyperparameter table: the container's configuration key (decision 0019); the
    # lists probed per query by an IVF index, stored in the model.
    "_faiss_index_nprobe": _int,
    "mini_batch_size": _int,
    "epochs": _int,
}


def _parse(hyperparameters: Mapping[str, Any], schema: dict, required: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(k for k in hyperparameters if k not in schema and k not in _CONTAINER_KEYS)
    if unknown:
        raise ClientError(
            "Additional hyperparameters are not allowed ("
            + ", ".join(repr(k) for k in unknown)
            + (" was" if len(unknown) == 1 else " were")
            + " unexpected)"
        )
    missing = [k for k in required if k not in hyperparameters]
    if missing:
        raise ClientError(f"missing required hyperparameter(s): {', '.join(missing)}")
    out = {}
    for key, raw in hyperparameters.items():
        if key in schema:
            if not isinstance(raw, str):
                raise ClientError(f"hyperparameter {key} must be a string, got {type(raw).__name__}")
            out[key] = schema[key](key, raw.strip())
    return out


def parse_fm(hyperparameters: Mapping[str, Any]) -> fm.FMConfig:
    """FM config from CreateTrainingJob's HyperParameters (strings), SageMaker's names and defaults."""
    hp = _parse(hyperparameters, _FM, _FM_REQUIRED)
    inits = {}
    defaults = {"bias": 0.01, "linear": 0.01, "factors": 0.001}
    for group, sigma in defaults.items():
        method = hp.get(f"{group}_init_method", "normal")
        scale, value = hp.get(f"{group}_init_scale"), hp.get(f"{group}_init_value")
        if method == "uniform" and scale is None:
            raise ClientError(
                f"hyperparameter {group}_init_scale is required when {group}_init_method=uniform"
            )
        if method == "constant" and value is None:
            raise ClientError(
                f"hyperparameter {group}_init_value is required when {group}_init_method=constant"
            )
        inits[f"{group}_init"] = fm.InitSpec(
            method=method, sigma=hp.get(f"{group}_init_sigma", sigma), scale=scale, value=value
        )
    fields: dict[str, Any] = {k: v for k, v in hp.items() if "_init_" not in k}
    fields.update(inits)
    return fm.FMConfig(**fields)


def parse_knn(hyperparameters: Mapping[str, Any]) -> knn.KNNConfig:
    """k-NN config from CreateTrainingJob's HyperParameters (strings), SageMaker's names and defaults."""
    hp = _parse(hyperparameters, _KNN, _KNN_REQUIRED)
    if "dimension_reduction_type" in hp or "dimension_reduction_target" in hp:
        raise ClientError("dimension_reduction_type/_target are not supported by the local k-NN")
    if hp.get("index_type") == "faiss.IVFPQ" and hp.get("index_metric") in (knn.INNER_PRODUCT, knn.COSINE):
        raise ClientError(
            "index_metric INNER_PRODUCT and COSINE are not supported with index_type faiss.IVFPQ"
        )
    if hp.get("index_type") == "faiss.IVFPQ" and "faiss_index_pq_m" not in hp:
        raise ClientError("hyperparameter faiss_index_pq_m is required when index_type=faiss.IVFPQ")
    if hp.get("index_type") == "faiss.IVFPQ" and hp["feature_dim"] % hp["faiss_index_pq_m"]:
        raise ClientError(
            f"hyperparameter faiss_index_pq_m={hp['faiss_index_pq_m']} "
            f"must divide feature_dim={hp['feature_dim']}"
        )
    hp.pop("mini_batch_size", None)
    hp.pop("epochs", None)
    if "_faiss_index_nprobe" in hp:
        hp["faiss_index_nprobe"] = hp.pop("_faiss_index_nprobe")
    return knn.KNNConfig(**hp)

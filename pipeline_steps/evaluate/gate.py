"""The gate: absolute floors, lift over the popularity baseline, ratio to the published run."""

from __future__ import annotations

import math

from pipeline_steps.evaluate.config import EvaluateConfig


class GateFailedError(RuntimeError):
    """The model is below a configured floor: the execution fails and nothing is published."""


def check(
    config: EvaluateConfig,
    model: dict[str, float],
    baseline: dict[str, float],
    published: dict[str, float] | None,
    published_run_id: str | None,
) -> list[dict]:
    """One entry per configured check: {"check", "metric", "value", "threshold", "passed"}."""
    checks = []
    for name, floor in config.floors().items():
        checks.append(_entry(f"min_{name}", name, model[name], floor))
    m = config.gate_metric
    if config.min_lift_vs_baseline is not None:
        threshold = config.min_lift_vs_baseline * baseline[m]
        checks.append(_entry("min_lift_vs_baseline", m, model[m], threshold, against=baseline[m]))
    if config.min_ratio_vs_published is not None:
        if published is None or published.get(m) is None:
            # First publish (or a published run without this metric): nothing to compare with.
            checks.append(
                {
                    "check": "min_ratio_vs_published",
                    "metric": m,
                    "passed": True,
                    "skipped": f"no metrics of a published run ({published_run_id or 'none'})",
                }
            )
        else:
            threshold = config.min_ratio_vs_published * float(published[m])
            entry = _entry("min_ratio_vs_published", m, model[m], threshold, against=float(published[m]))
            entry["published_run_id"] = published_run_id
            checks.append(entry)
    return checks


def cold_checks(config: EvaluateConfig, protocols: dict) -> list[dict]:
    """The cold protocols' lift floors (`min_cold_users_lift`, `min_cold_items_lift`) on `gate_metric`."""
    checks = []
    m = config.gate_metric
    for name, ratio in (
        ("cold_users", config.min_cold_users_lift),
        ("cold_items", config.min_cold_items_lift),
    ):
        if ratio is None:
            continue
        check = f"min_{name}_lift"
        result = protocols.get(name)
        if not result:
            checks.append(
                {"check": check, "metric": m, "passed": True, "skipped": f"no {name} protocol in this run"}
            )
            continue
        value, base = (_number(result.get(k, {}).get(m)) for k in ("metrics", "baseline"))
        checks.append(_entry(check, m, value, ratio * base, against=base))
    return checks


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan  # None: no user scored


def _entry(check: str, metric: str, value: float, threshold: float, against: float | None = None) -> dict:
    # NaN (no user with held-out items) never passes a floor.
    entry = {
        "check": check,
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "passed": not math.isnan(value) and value >= threshold,
    }
    if against is not None:
        entry["reference"] = against
    return entry


def failure_message(run_id: str, x: int, checks: list[dict]) -> str:
    failed = [
        f"{c['check']}: {c['metric']}@{x} = {_fmt(c['value'])} < {_fmt(c['threshold'])}"
        for c in checks
        if not c["passed"]
    ]
    return f"run {run_id} failed the gate ({'; '.join(failed)}); nothing is published"


def _fmt(v: float) -> str:
    return "undefined (no held-out users)" if math.isnan(v) else f"{v:.4f}"

"""The report's figures as pure functions over arrays and dicts (no I/O, no plotting).

Each function takes what a run left behind (best-first item lists, held-out items, train
interactions, run records, execution history events) and returns plain JSON-able values that
`render.py` draws and `build.py` stores beside the page (`runs/<id>/report/report.json`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

QUALITY = ("precision", "ndcg")


def per_user_quality(
    recommended: Sequence[np.ndarray], relevant: Sequence[np.ndarray], *, x: int
) -> dict[str, np.ndarray]:
    """precision@x and NDCG@x of every user (NaN for a user without held-out items).

    Same definitions as the evaluate step (binary relevance, log2 discounts, ideal = min(|held-out|, x)
    hits at the top), kept per user so the report can group users.
    """
    n = len(recommended)
    discount = 1.0 / np.log2(np.arange(2, x + 2))
    ideal = np.cumsum(discount)
    out = {name: np.full(n, np.nan) for name in QUALITY}
    for u in range(n):
        rel = np.asarray(relevant[u])
        if rel.size == 0:
            continue
        rec = np.asarray(recommended[u])[:x]
        hit = np.isin(rec, rel)
        out["precision"][u] = hit.sum() / x
        out["ndcg"][u] = float(discount[: rec.size][hit].sum()) / float(ideal[min(rel.size, x) - 1])
    return out


def activity_groups(
    activity: np.ndarray, values: Mapping[str, np.ndarray], *, bins: int
) -> list[dict[str, Any]]:
    """Users with defined values, ordered by activity (train interactions), cut into `bins` groups
    of (nearly) equal size; each group's activity range and mean of every value."""
    defined = np.ones(activity.size, dtype=bool)
    for v in values.values():
        defined &= np.isfinite(v)
    users = np.flatnonzero(defined)
    order = users[np.argsort(activity[users], kind="stable")]
    groups = [g for g in np.array_split(order, min(bins, order.size)) if g.size] if order.size else []
    return [
        {
            "group": i + 1,
            "users": int(g.size),
            "min_activity": int(activity[g].min()),
            "max_activity": int(activity[g].max()),
            **{name: float(v[g].mean()) for name, v in values.items()},
        }
        for i, g in enumerate(groups)
    ]


def recommendation_counts(recommended: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """How many users get each item in their list."""
    if not recommended:
        return np.zeros(n_items, dtype=np.int64)
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in recommended])
    return np.bincount(flat, minlength=n_items).astype(np.int64)


def coverage(rec_counts: np.ndarray, consumed: np.ndarray, *, points: int = 101) -> dict[str, Any]:
    """Share of the catalogue recommended, and the long-tail curve.

    Items are ranked by consumption (train interactions, most consumed first); along that rank the
    curve gives the cumulative share of consumption and of recommendations. A model that only
    repeats the head rises faster than the consumption curve.
    """
    n = rec_counts.size
    order = np.lexsort((np.arange(n), -consumed))
    cum_consumed = np.cumsum(consumed[order]) / max(int(consumed.sum()), 1)
    cum_rec = np.cumsum(rec_counts[order]) / max(int(rec_counts.sum()), 1)
    pick = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int))
    head = max(1, math.ceil(n / 10)) - 1  # the 10% most consumed items
    return {
        "n_items": int(n),
        "items_recommended": int((rec_counts > 0).sum()),
        "share_recommended": float((rec_counts > 0).sum() / n) if n else 0.0,
        "head_share": {"recommended": float(cum_rec[head]), "consumed": float(cum_consumed[head])},
        "curve": {
            "item_share": ((pick + 1) / n).tolist(),
            "consumed": cum_consumed[pick].tolist(),
            "recommended": cum_rec[pick].tolist(),
        },
    }


def score_summary(scores: np.ndarray, *, bins: int = 30) -> dict[str, Any]:
    """Histogram and quantiles of the k-NN scores of every recommended item."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return {"count": 0, "histogram": {"counts": [], "edges": []}, "quantiles": {}}
    counts, edges = np.histogram(scores, bins=bins)
    qs = np.quantile(scores, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "count": int(scores.size),
        "mean": float(scores.mean()),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "quantiles": dict(zip(("min", "p25", "median", "p75", "max"), map(float, qs), strict=True)),
    }


def drift(
    current: Mapping[str, Sequence[str]], previous: Mapping[str, Sequence[str]], *, x: int, sample: int = 20
) -> dict[str, Any]:
    """How this run's lists differ from the previous run's, by original user and item ids.

    overlap@x of a user = |current top x ∩ previous top x| / x; a list "changed" when the ordered
    top x differs; items entering / leaving = items recommended to someone now and not before /
    before and not now.
    """
    both = sorted(set(current) & set(previous))
    overlaps = np.array([len(set(current[u][:x]) & set(previous[u][:x])) for u in both], dtype=np.int64)
    changed = sum(list(current[u][:x]) != list(previous[u][:x]) for u in both)
    now = {i for items in current.values() for i in items[:x]}
    before = {i for items in previous.values() for i in items[:x]}
    entering, leaving = sorted(now - before), sorted(before - now)
    mean_overlap = float(overlaps.mean() / x) if overlaps.size else None
    return {
        "users_compared": len(both),
        "new_users": len(set(current) - set(previous)),
        "gone_users": len(set(previous) - set(current)),
        "overlap_counts": np.bincount(np.minimum(overlaps, x), minlength=x + 1).tolist(),
        "mean_overlap_at_x": mean_overlap,
        "drift_at_x": None if mean_overlap is None else 1.0 - mean_overlap,
        "share_users_changed": changed / len(both) if both else None,
        "items_entering": len(entering),
        "items_leaving": len(leaving),
        "entering_sample": entering[:sample],
        "leaving_sample": leaving[:sample],
    }


def quality_history(runs: Sequence[Mapping[str, Any]], *, limit: int, up_to: str) -> list[dict[str, Any]]:
    """The last `limit` complete runs up to and including run `up_to` (run records, oldest first).

    Runs are ordered by `started_at` (when their data was prepared, as the pointer flip orders
    them), then by id; `up_to` itself is kept even when its record is not complete yet.
    """
    rows = [
        {
            "run_id": str(r.get("sk", "")),
            "started_at": str(r.get("started_at", "")),
            "published_at": str(r.get("published_at", "")),
            "users_written": r.get("users_written"),
            "metrics": {k: float(v) for k, v in (r.get("metrics") or {}).items()},
        }
        for r in runs
        if r.get("status") == "complete" or r.get("sk") == up_to
    ]
    rows.sort(key=lambda r: (r["started_at"], r["run_id"]))
    ids = [r["run_id"] for r in rows]
    if up_to in ids:
        rows = rows[: ids.index(up_to) + 1]
    return rows[-limit:]


def previous_run(history: Sequence[Mapping[str, Any]], run_id: str) -> dict[str, Any] | None:
    """The complete run just before `run_id` in the history (None for the first run)."""
    ids = [r["run_id"] for r in history]
    at = ids.index(run_id) if run_id in ids else len(ids)
    return dict(history[at - 1]) if at > 0 else None


def ratio(current: Mapping[str, Any], previous: Mapping[str, Any] | None, metric: str) -> float | None:
    """current[metric] / previous[metric]; None when either is missing or the previous one is 0."""
    if previous is None:
        return None
    now, before = current.get(metric), previous.get(metric)
    if not isinstance(now, int | float) or not isinstance(before, int | float) or not before:
        return None
    return float(now) / float(before)


def stage_seconds(events: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state of an execution (GetExecutionHistory events; repeats summed).

    A state is timed from its `...StateEntered` to its `...StateExited` event; states still running
    (the report itself) are left out.
    """
    entered: dict[str, datetime] = {}
    seconds: dict[str, float] = {}
    for event in events:
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entered[name] = event["timestamp"]
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            if name in entered:
                spent = (event["timestamp"] - entered.pop(name)).total_seconds()
                seconds[name] = round(seconds.get(name, 0.0) + spent, 3)
    return seconds


def training_curve(fm_output: Mapping[str, Any] | None, final: Mapping[str, float]) -> dict[str, Any]:
    """The FM's loss per epoch when the job recorded it (the local trainer's metrics.json beside the
    model), and the job's final metrics (DescribeTrainingJob FinalMetricDataList)."""
    history = list((fm_output or {}).get("epoch_history") or [])
    return {
        "loss_name": (fm_output or {}).get("loss_name", ""),
        "epochs": [int(h["epoch"]) for h in history],
        "train_loss": [float(h["train_loss"]) for h in history],
        "final": {k: float(v) for k, v in sorted(final.items())},
    }


def metric_data(doc: Mapping[str, Any], *, ratio_metric: str) -> list[dict[str, Any]]:
    """CloudWatch MetricData of the report: quality vs the previous run and drift (no dimensions)."""
    values = {
        f"{ratio_metric}_ratio_vs_previous": doc.get("ratio_vs_previous"),
        "drift_at_x": (doc.get("drift") or {}).get("drift_at_x"),
        "share_users_changed": (doc.get("drift") or {}).get("share_users_changed"),
    }
    return [
        {"MetricName": name, "Value": float(value), "Unit": "None"}
        for name, value in values.items()
        if isinstance(value, int | float) and math.isfinite(value)
    ]

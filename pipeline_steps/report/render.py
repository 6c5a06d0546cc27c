"""The report document -> one self-contained HTML page (matplotlib, Agg backend, PNGs inline).

Every figure is a PNG embedded as a base64 `data:` URI, written without the PNG's "Software" text
chunk; the page has no script, no stylesheet link and no URL at all, so it opens offline, from S3
or from a mail attachment alike. Figures are drawn on `matplotlib.figure.Figure` with the Agg
canvas directly (no pyplot: no global state, no GUI backend).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# matplotlib writes its font cache under MPLCONFIGDIR; in a Lambda only the temporary directory is writable.
os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "matplotlib"))

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SECTIONS: tuple[tuple[str, str], ...] = (
    ("metrics", "Metrics vs most popular and the previous run"),
    ("cold", "Cold start: held-out users and items"),
    ("history", "Quality history"),
    ("activity", "Quality by user activity"),
    ("coverage", "Catalogue coverage and long tail"),
    ("scores", "Score distribution"),
    ("training", "FM training curve"),
    ("drift", "Drift vs the previous run"),
    ("stages", "Stage times and counts"),
)
SHOWN = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
STYLE = """
body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}section{margin-bottom:2em}.note{color:#666}
img{max-width:100%}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    return esc(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_png(draw: Callable[[Figure], None], *, size: tuple[float, float] = (7.0, 3.2)) -> str:
    """An <img> holding the figure `draw` fills, as an inline base64 PNG."""
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _metrics(doc: Mapping[str, Any]) -> str:
    ev = doc.get("evaluation") or {}
    model, base = ev.get("model") or {}, ev.get("baseline") or {}
    history = doc.get("history") or []
    prev_id = doc.get("previous_run_id") or ""
    prev: dict[str, Any] = next((r["metrics"] for r in history if r["run_id"] == prev_id), {})
    published = ev.get("published") or {}
    if not prev_id and published.get("metrics"):  # no run record: the run published when evaluated
        prev_id, prev = str(published.get("run_id") or ""), dict(published["metrics"])
    names = [n for n in SHOWN if n in model]
    rows = [[n, model.get(n), base.get(n), prev.get(n)] for n in names]
    out = table(["metric @" + str(doc.get("x")), "this run", "most popular", f"previous run {prev_id}"], rows)
    gate = (ev.get("gate") or {}).get("passed")
    out += note(f"{ev.get('n_eval_users')} users with held-out items; gate passed: {gate}")

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        width = 0.27
        series = [("this run", model), ("most popular", base)] + ([("previous run", prev)] if prev else [])
        for k, (label, values) in enumerate(series):
            ax.bar(
                [i + k * width for i in range(len(names))],
                [values.get(n) or 0.0 for n in names],
                width,
                label=label,
            )
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(names))], names)
        ax.legend()

    return out + (figure_png(draw) if names else "")


def _cold(doc: Mapping[str, Any]) -> str:
    """The cold protocols of evaluate (decision 0018): each with its own model and baseline metrics."""
    ev = doc.get("evaluation") or {}
    users, items = ev.get("cold_users"), ev.get("cold_items")
    if not users and not items:
        return note("cold protocols not run (topx:prepare.cold_protocols off, or no metadata)")
    out = ""
    x = str(doc.get("x"))
    if users:
        model, base = users.get("metrics") or {}, users.get("baseline") or {}
        rows = [[n, model.get(n), base.get(n)] for n in SHOWN if n in model]
        out += table(["cold users: metric @" + x, "features (this run)", "most popular"], rows)
        out += note(
            f"{users.get('n_eval_users')} of {users.get('held_out_users')} held-out users scored, each "
            f"ranking {users.get('candidates')} items from their features"
        )
    if items:
        model, base, rand = items.get("metrics") or {}, items.get("baseline") or {}, items.get("random") or {}
        rows = [[n, model.get(n), base.get(n), rand.get(n)] for n in SHOWN if n in model]
        out += table(
            ["cold items: metric @" + x, "features (this run)", "category popularity", "random"], rows
        )
        out += note(
            f"{items.get('n_eval_users')} users ranking the {items.get('held_out_items')} held-out items"
        )
    return out


def _history(doc: Mapping[str, Any]) -> str:
    history = doc.get("history") or []
    if not history:
        return note("no run records (quality history) available")
    names = [n for n in ("precision", "ndcg", "coverage") if any(n in r["metrics"] for r in history)]
    rows = [[r["run_id"], r["published_at"], *(r["metrics"].get(n) for n in names)] for r in history]
    out = table(["run", "published", *names], rows)
    ratio = doc.get("ratio_vs_previous")
    out += note(f"{doc.get('ratio_metric')} vs the previous run: {fmt(ratio)} (ratio)")

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for n in names:
            ax.plot(
                range(len(history)), [r["metrics"].get(n, math.nan) for r in history], marker="o", label=n
            )
        labels = [r["run_id"] if len(r["run_id"]) <= 28 else "…" + r["run_id"][-27:] for r in history]
        ax.set_xticks(range(len(history)), labels, rotation=20, ha="right", fontsize=7)
        ax.legend()

    return out + figure_png(draw)


def _activity(doc: Mapping[str, Any]) -> str:
    groups = doc.get("activity") or []
    if not groups:
        return note("no users with held-out items")
    rows = [
        [g["group"], f"{g['min_activity']}–{g['max_activity']}", g["users"], g["precision"], g["ndcg"]]
        for g in groups
    ]
    out = table(["group (by train interactions)", "interactions", "users", "precision", "ndcg"], rows)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        xs = [g["group"] for g in groups]
        ax.plot(xs, [g["precision"] for g in groups], marker="o", label="precision")
        ax.plot(xs, [g["ndcg"] for g in groups], marker="s", label="ndcg")
        ax.set_xlabel("user activity group (1 = fewest train interactions)")
        ax.legend()

    return out + figure_png(draw)


def _coverage(doc: Mapping[str, Any]) -> str:
    cov = doc.get("coverage") or {}
    head = cov.get("head_share") or {}
    out = table(
        ["items recommended", "catalogue", "share", "head 10%: share of recs", "of consumption"],
        [[cov.get("items_recommended"), cov.get("n_items"), cov.get("share_recommended"),
          head.get("recommended"), head.get("consumed")]],
    )  # fmt: skip
    curve = cov.get("curve") or {}

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot(curve["item_share"], curve["consumed"], label="consumed (train interactions)")
        ax.plot(curve["item_share"], curve["recommended"], label="recommended")
        ax.set_xlabel("share of items, most consumed first")
        ax.set_ylabel("cumulative share")
        ax.legend()

    return out + (figure_png(draw) if curve.get("item_share") else "")


def _scores(doc: Mapping[str, Any]) -> str:
    s = doc.get("scores") or {}
    if not s.get("count"):
        return note("no scores")
    q = s.get("quantiles") or {}
    out = table(["scores", "mean", *q], [[s["count"], s.get("mean"), *q.values()]])
    hist = s["histogram"]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        edges = hist["edges"]
        ax.stairs(hist["counts"], edges, fill=True)
        ax.set_xlabel(f"k-NN score ({doc.get('index_metric')}) of the top {doc.get('x')}")

    return out + figure_png(draw)


def _training(doc: Mapping[str, Any]) -> str:
    t = doc.get("training") or {}
    out = ""
    if t.get("final"):
        out += table(["FM final metric", "value"], list(t["final"].items()))
    if not t.get("epochs"):
        return out + note(
            "per-epoch values were not recorded with the model: SageMaker's DescribeTrainingJob gives the "
            "final metrics only; the per-epoch lines are in the job's CloudWatch logs "
            "(/aws/sagemaker/TrainingJobs)"
        )

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot(t["epochs"], t["train_loss"], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(t.get("loss_name") or "train loss")

    return out + figure_png(draw)


def _drift(doc: Mapping[str, Any]) -> str:
    d = doc.get("drift")
    if not d:
        return note("no earlier run to compare with (or its files are gone)")
    rows = [
        ["previous run", doc.get("previous_run_id")],
        ["users compared", d["users_compared"]],
        ["new / gone users", f"{d['new_users']} / {d['gone_users']}"],
        ["mean overlap@x", d["mean_overlap_at_x"]],
        ["share of users whose list changed", d["share_users_changed"]],
        ["items entering / leaving the recommendations", f"{d['items_entering']} / {d['items_leaving']}"],
    ]
    out = table(["drift", "value"], rows)
    out += note("entering: " + ", ".join(map(str, d["entering_sample"])) or "none")
    out += note("leaving: " + ", ".join(map(str, d["leaving_sample"])) or "none")
    counts = d["overlap_counts"]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.bar(range(len(counts)), counts)
        ax.set_xlabel(f"items in common with the previous run's top {doc.get('x')}")
        ax.set_ylabel("users")

    return out + figure_png(draw)


def _stages(doc: Mapping[str, Any]) -> str:
    stages = doc.get("stage_seconds") or {}
    counts = dict(doc.get("counts") or {})
    bad = counts.pop("bad_rows_by_reason", {}) or {}
    out = table(["count", "value"], list(counts.items()))
    if bad:
        out += table(["bad rows by reason", "rows"], list(bad.items()))
    if not stages:
        return out + note("no execution history available: stage times not shown")
    out += table(["state", "seconds"], list(stages.items()))

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        names = list(stages)
        ax.barh(names[::-1], [stages[n] for n in names][::-1])
        ax.set_xlabel("seconds")

    return out + figure_png(draw, size=(7.0, 0.3 * len(stages) + 1.0))


RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metrics": _metrics,
    "cold": _cold,
    "history": _history,
    "activity": _activity,
    "coverage": _coverage,
    "scores": _scores,
    "training": _training,
    "drift": _drift,
    "stages": _stages,
}


def render_html(doc: Mapping[str, Any]) -> str:
    run = esc(doc.get("run_id"))
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>Run {run}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Run {run}: top-{esc(doc.get('x'))} recommendations</h1>",
    ]
    for section, title in SECTIONS:
        parts.append(f'<section id="{section}"><h2>{esc(title)}</h2>{RENDERERS[section](doc)}</section>')
    notes = doc.get("notes") or []
    if notes:
        parts.append(
            '<section id="notes"><h2>Notes</h2><ul>'
            + "".join(f"<li>{esc(n)}</li>" for n in notes)
            + "</ul></section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)

"""What a local run shows and writes: sample recommendations and related items, metrics vs baseline,
the related items' genre share (MovieLens), report.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipeline_steps.common.items import decode_items
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.table import RELATED_PK_PREFIX, related_key
from pipeline_steps.local.runner import RunOutcome

Log = Callable[[str], None]
SHOWN = ("precision", "recall", "ndcg", "map", "coverage")


def sample_users(outcome: RunOutcome, aws: Any, dep: Any, n: int) -> list[str]:
    """The first n users of the run's id map (original ids)."""
    if not outcome.manifest:
        return []
    key = outcome.manifest.get("files", {}).get("users", RunLayout(outcome.run_id).prepared_file("users"))
    users = json.loads(aws.client("s3").get_object(Bucket=dep.bucket, Key=key)["Body"].read())
    return [str(u) for u in users[:n]]


def print_recommendations(
    recs: list[dict[str, Any]], titles: dict[str, str], log: Log, *, x: int | None = None
) -> None:
    """`x`: the run's x (the pointer's); a stored list may hold more (read_extra), shown: the first x."""
    for rec in recs:
        source = "popularity fallback" if rec.get("fallback") else f"run {rec['run_id']}"
        shown = rec["items"][:x] if x else rec["items"]
        log(f"\ntop-{len(shown)} for user {rec['user_id']} ({source}, via pipeline_steps.query):")
        for rank, item in enumerate(shown, 1):
            title = titles.get(str(item["item_id"]), "")
            mark = "  [cold]" if item.get("cold") else ""
            log(f"  {rank:2d}. {item['item_id']:>8}  {float(item['score']):8.4f}  {title}{mark}")


def run_items(outcome: RunOutcome, aws: Any, dep: Any) -> list[str]:
    """The run's item id map (original ids, index order)."""
    if not outcome.manifest:
        return []
    key = outcome.manifest.get("files", {}).get("items", RunLayout(outcome.run_id).prepared_file("items"))
    return [
        str(i) for i in json.loads(aws.client("s3").get_object(Bucket=dep.bucket, Key=key)["Body"].read())
    ]


def read_related(aws: Any, dep: Any, run_id: str, item_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """`i#<item_id>, <run_id>` items of the run -> decoded lists.

    BatchGetItem takes at most 100 keys a call and may hand some back as `UnprocessedKeys`, to be
    asked again (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
    """
    client = aws.client("dynamodb")
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(item_ids), 100):
        keys: list[dict[str, Any]] = [related_key(i, run_id) for i in item_ids[start : start + 100]]
        request: dict[str, Any] = {dep.table: {"Keys": keys}}
        while request:
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(dep.table, []):
                found[item["pk"]["S"][len(RELATED_PK_PREFIX) :]] = decode_items(item["items"]["S"])
            request = response.get("UnprocessedKeys") or {}
    return found


def print_related(
    related: dict[str, list[dict[str, Any]]], shown: list[str], titles: dict[str, str], log: Log
) -> None:
    for item_id in shown:
        entries = related.get(item_id, [])
        name = titles.get(item_id, "")
        log(f"\nrelated to item {item_id} {name} ({len(entries)}, from i#{item_id}):")
        for rank, entry in enumerate(entries, 1):
            title = titles.get(str(entry["item_id"]), "")
            log(f"  {rank:2d}. {entry['item_id']:>8}  {float(entry['score']):8.4f}  {title}")


def related_quality(
    related: dict[str, list[dict[str, Any]]], genres: dict[str, frozenset[str]]
) -> dict[str, Any]:
    """Genre share of the published related lists vs random pairs (MovieLens genres)."""
    from pipeline_steps.datasets.movielens import genre_share

    lists = {item: [str(e["item_id"]) for e in entries] for item, entries in related.items()}
    return genre_share(lists, genres)


def show_related(
    outcome: RunOutcome,
    aws: Any,
    dep: Any,
    *,
    titles: dict[str, str],
    genres: dict[str, frozenset[str]],
    wanted: tuple[str, ...],
    log: Log,
) -> dict[str, Any]:
    """Print a few items' related lists (and the genre share when genres are known); report part."""
    items = run_items(outcome, aws, dep)
    related = read_related(aws, dep, outcome.run_id, items)
    if not related:
        return {}
    shown = [i for i in wanted if i in related] or items[:2]
    print_related(related, shown, titles, log)
    doc: dict[str, Any] = {
        "items_with_related": len(related),
        "sample": {i: related[i] for i in shown},
    }
    if genres:
        quality = related_quality(related, genres)
        log(
            f"\nrelated items sharing a genre with their item: {quality['related_share']:.4f} "
            f"({quality['related_pairs']} pairs) vs random item pairs {quality['random_share']:.4f}"
        )
        doc["genre_share"] = quality
    return doc


def print_metrics(outcome: RunOutcome, log: Log) -> None:
    doc = outcome.metrics
    if not doc:
        log("no evaluation metrics found")
        return
    model, base, x = doc.get("model", {}), doc.get("baseline", {}), doc.get("x", "x")
    log(f"\nevaluation on {doc.get('n_eval_users')} users with held-out items (@{x}):")
    log(f"  {'metric':<12}{'FM + k-NN':>12}{'most popular':>14}")
    for name in SHOWN:
        if name in model:
            log(f"  {name:<12}{model[name]:>12.4f}{base.get(name, float('nan')):>14.4f}")
    for name, value in sorted(outcome.fm_metrics.items()):
        log(f"  FM {name}: {value:.4f}")
    print_cold_metrics(doc, log)


def print_cold_metrics(doc: dict[str, Any], log: Log) -> None:
    """The cold protocols (decision 0018): held-out users vs most popular, held-out items vs category
    popularity and random."""
    x = doc.get("x", "x")
    users, items = doc.get("cold_users"), doc.get("cold_items")
    if users:
        model, base = users.get("metrics") or {}, users.get("baseline") or {}
        log(
            f"\ncold users: {users.get('n_eval_users')} held-out users, each ranking "
            f"{users.get('candidates')} items from their features (@{x}):"
        )
        log(f"  {'metric':<12}{'features':>12}{'most popular':>14}")
        for name in SHOWN:
            if model.get(name) is not None:
                log(f"  {name:<12}{model[name]:>12.4f}{_value(base, name):>14.4f}")
    if items:
        model, base, rand = (items.get(k) or {} for k in ("metrics", "baseline", "random"))
        log(
            f"\ncold items: {items.get('n_eval_users')} users ranking the {items.get('held_out_items')} "
            f"held-out items (@{x}):"
        )
        log(f"  {'metric':<12}{'features':>12}{'category pop.':>15}{'random':>10}")
        for name in SHOWN:
            if model.get(name) is not None:
                log(f"  {name:<12}{model[name]:>12.4f}{_value(base, name):>15.4f}{_value(rand, name):>10.4f}")


def _value(values: dict[str, Any], name: str) -> float:
    value = values.get(name)
    return float("nan") if value is None else float(value)


def show_cold(
    outcome: RunOutcome, aws: Any, dep: Any, *, titles: dict[str, str], log: Log, x: int | None
) -> dict[str, Any]:
    """A cold user's list and a cold item's related items through the read path (`pipeline_steps.query`);
    empty when the run has no cold ids."""
    from pipeline_steps.query import get_recommendations, get_related

    manifest = outcome.manifest or {}
    features = manifest.get("features") or {}
    n_cold = {side: int((features.get(side) or {}).get("cold", 0)) for side in ("user", "item")}
    if not any(n_cold.values()):
        return {}
    client = aws.client("dynamodb")
    out: dict[str, Any] = {}
    if n_cold["user"]:
        key = manifest["files"]["users"]
        users = json.loads(aws.client("s3").get_object(Bucket=dep.bucket, Key=key)["Body"].read())
        user = str(users[len(users) - n_cold["user"]])
        rec = get_recommendations(user, table_name=dep.table, dynamodb=client, cache_ttl=0)
        log(f"\na cold user (no interaction in training; list from their features: cold={rec.get('cold')}):")
        print_recommendations([rec], titles, log, x=x)
        out["user"] = rec
    if n_cold["item"]:
        items = run_items(outcome, aws, dep)
        item = items[len(items) - n_cold["item"]]
        try:
            related = get_related(item, table_name=dep.table, dynamodb=client, cache_ttl=0)
        except LookupError:
            related = None
        if related is not None:
            log(
                f"\na cold item {item} {titles.get(item, '')} (no interaction in training; cold="
                f"{related.get('cold')}): its related items from its features"
            )
            print_related({item: related["items"]}, [item], titles, log)
            out["item"] = related
    return out


def _metrics(values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items()}


def build_report(
    *,
    outcome: RunOutcome,
    dataset: str,
    deploy_seconds: float,
    total_seconds: float,
    recommendations: list[dict[str, Any]],
    failure: dict[str, Any] | None,
    skipped: list[tuple[str, str, str]],
    synth: dict[str, Any] | None = None,
    related: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from pipeline_steps.local.adapter import MOTO_VERSION

    doc = outcome.metrics or {}
    manifest = outcome.manifest or {}
    metrics = _metrics(doc.get("model"))
    if metrics:
        metrics["x"] = doc.get("x")
        fm = outcome.fm_metrics
        metrics["fm_test"] = {k: v for k, v in fm.items() if k.startswith("test:")}
        metrics["fm_train"] = {k: v for k, v in fm.items() if k.startswith("train:")}
    report = {
        "run_id": outcome.run_id,
        "status": outcome.result.status,
        "error": outcome.result.error,
        "dataset": dataset,
        "counts": {
            "n_users": manifest.get("n_users"),
            "n_items": manifest.get("n_items"),
            "n_eval_users": doc.get("n_eval_users"),
            **manifest.get("counts", {}),
        },
        "metrics": metrics,
        "baseline": {**_metrics(doc.get("baseline")), "name": "most popular (unseen items)"} if doc else {},
        "gate": doc.get("gate"),
        "pointer": outcome.pointer,
        "recommendations_sample": recommendations,
        "related": related or {},
        "stage_seconds": outcome.result.stage_seconds,
        "report_html": "report.html" if outcome.report_html else None,  # beside report.json
        "pipeline_seconds": outcome.result.total_seconds,
        "deploy_seconds": round(deploy_seconds, 3),  # synthesis (or cached assembly) + create stacks
        "synth": synth or {},
        "total_seconds": round(total_seconds, 3),
        "embedded_aws": {"moto": MOTO_VERSION, "not_emulated": [list(s) for s in skipped]},
    }
    for protocol in ("cold_users", "cold_items"):  # the cold protocols (decision 0018), when run
        if doc.get(protocol):
            report[protocol] = {k: v for k, v in doc[protocol].items() if k != "ci95"}
    if outcome.result.failures:
        report["failures"] = outcome.result.failures
    if failure is not None:
        report["failure_injection"] = failure
    return report

"""`python -m pipeline_steps.local demo|run`: the whole pipeline offline, in the embedded AWS."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline_steps.local import report as reporting
from pipeline_steps.local.deploy import cdk_context, deploy
from pipeline_steps.local.explore import serve, show_api, start_api
from pipeline_steps.local.runner import (
    RunOutcome,
    execute,
    flush_progress,
    new_run_id,
    notifications,
    put_objects,
    query_users,
    read_pointer,
    upload_inputs,
)
from pipeline_steps.local.server import LocalAws

TEST_PREFIX = "input-test/"
# `run --user-features/--item-features`: the metadata files go here (prepare's side features, decision
# 0018); the columns to use: -c topx:prepare.user_feature_columns=... / item_feature_columns=...
FEATURE_PREFIXES = {"user": "metadata/users/", "item": "metadata/items/"}
# `topx:api` for the demo (cdk.json leaves the API off): the responses carry the movies' titles and
# genres from an item metadata object built from the MovieLens item file at run time.
DEMO_METADATA_KEY = "catalog/ml-100k-items.csv"
DEMO_API = {"auth": "iam", "item_metadata_key": DEMO_METADATA_KEY, "item_fields": ["title", "genres"]}
# The demo's side features (`demo --features`, `make demo-features`; decision 0018): ML-100k's item
# genres and release year, the users' age, gender and occupation, with the cold protocols on (a
# tenth of the users and of the items held out and ranked from their features).
# `-c topx:prepare.cold_protocols=false` turns the protocols off. Plain `make demo` has no features:
# on ML-100k they add nothing to warm P@10 (protocols off, 8 epochs: 0.2506 at the demo's weight,
# 0.241 at weight 1, 0.2512 without them; decision 0018), and it trains on every user and item.
# Each metadata field sums to 0.25, not 1 (`topx:prepare.feature_weight`; decision 0018, "Field
# weight"): over five hold-outs, warm P@10 0.240 instead of 0.227 and cold users 1.02x most-popular
# instead of 0.97x, cold items 1.9x category popularity instead of 2.0x. `-c` overrides it.
DEMO_FEATURE_WEIGHT = 0.25
DEMO_FEATURE_COLUMNS = {
    "user": "age:numeric:5,gender:categorical,occupation:categorical",
    "item": "genres:multi:space,year:numeric:5",
}
INJECTED = {"factorization-machines": {"epochs": "0"}}  # SageMaker's FM rejects epochs < 1: ClientError
# Related items shown after a run (when the run has them): Toy Story, Star Wars, The Godfather in
# MovieLens; other data sets show their first two items.
SHOWN_ITEMS = ("1", "50", "127")


def _log(message: str) -> None:
    print(message, flush=True)


def _job_log(message: str) -> None:
    flush_progress()  # the state that started this job prints first
    _log(f"      {message}")


def _context_overrides(args: argparse.Namespace, *, has_test: bool) -> dict[str, Any]:
    # The template is deployed as configured (schedule included: moto records the rule, never fires it).
    overrides: dict[str, Any] = {}
    if has_test:
        overrides["topx:prepare.test_prefix"] = TEST_PREFIX
    if getattr(args, "x", None):
        overrides["topx:x"] = args.x
    columns = getattr(args, "columns", None)
    if columns:
        names = ("user_col", "item_col", "rating_col", "timestamp_col")
        parts = columns.split(",")
        if len(parts) < 2 or len(parts) > 4:
            raise SystemExit(
                "--columns takes USER,ITEM[,RATING[,TIMESTAMP]] (header names or 0-based positions)"
            )
        for name, value in zip(names, parts, strict=False):
            overrides[f"topx:prepare.{name}"] = int(value) if value.strip().isdigit() else value.strip()
    for item in getattr(args, "context", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"-c expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    for side, prefix in FEATURE_PREFIXES.items():
        if getattr(args, f"{side}_features", None):
            overrides[f"topx:prepare.{side}_features"] = prefix
            if not overrides.get(f"topx:prepare.{side}_feature_columns"):
                raise SystemExit(
                    f"--{side}-features needs the columns to use: -c topx:prepare.{side}_feature_columns="
                    "NAME:KIND[:ARG],... (e.g. genres:multi:space,year:numeric:5,occupation:categorical)"
                )
    return overrides


def _feature_uploads(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(bucket key, file) of the `--user-features` / `--item-features` files."""
    out = []
    for side, prefix in FEATURE_PREFIXES.items():
        for given in getattr(args, f"{side}_features", None) or []:
            path = Path(given)
            if not path.is_file():
                raise SystemExit(f"--{side}-features: no such file: {path}")
            out.append((prefix + path.name, path))
    return out


def _subset_users(base: Path, test: Path, n_users: int, workdir: Path) -> tuple[Path, Path]:
    """The first n users of ``base`` (file order), with their rows of both files, for quick runs."""
    keep: set[str] = set()
    for line in base.read_text(encoding="utf-8").splitlines():
        if len(keep) >= n_users:
            break
        keep.add(line.split("\t", 1)[0])
    out = []
    for path in (base, test):
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.split("\t", 1)[0] in keep]
        target = workdir / path.name
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(target)
    return out[0], out[1]


def run_local(
    *,
    ratings: list[Path],
    test: list[Path],
    overrides: dict[str, Any],
    out: Path,
    dataset: str,
    titles: dict[str, str] | None = None,
    genres: dict[str, frozenset[str]] | None = None,
    uploads: list[tuple[str, Path]] | None = None,
    inject_failure: str | None = None,
    show_users: int = 3,
    started: float | None = None,
    assembly: Path | None = None,
    enforce_iam: bool = True,
    retry_wait_scale: float = 1.0,
    rerun_epochs: int | None = None,
    keep_serving: bool = False,
) -> dict[str, Any]:
    """Deploy, run, show and report; returns the report (also written to ``out/report.json``).

    ``started`` (a ``time.monotonic()`` value) is when the command began: total_seconds counts the
    dataset preparation too. ``assembly``: deploy this cloud assembly (``cdk synth``'s output) as it
    is instead of synthesizing the app. ``enforce_iam``: authorise every call with the caller's IAM
    policies (docs/local-mode.md). ``retry_wait_scale``: multiply the state machine's Retry waits.
    ``rerun_epochs``: then a second run on the same data whose FM trains that many epochs, so its
    report has a previous run (history, ratio, drift); ``report.html`` is then the second run's.
    ``keep_serving``: then keep the embedded AWS and the local read API up until interrupted."""
    t0 = time.monotonic() if started is None else started
    region = (
        _assembly_region(assembly) if assembly else cdk_context(overrides).get("topx:region", "us-east-1")
    )
    aws = LocalAws(
        region=region, job_log=_job_log, enforce_iam=enforce_iam, retry_time_scale=retry_wait_scale
    )
    with aws:
        iam_mode = "enforced" if enforce_iam else "NOT enforced"
        _log(f"embedded AWS (moto server) at {aws.endpoint}; IAM {iam_mode}")
        t = time.monotonic()
        dep = deploy(aws, context=overrides, log=_log, assembly=assembly)
        deploy_seconds = time.monotonic() - t
        stacks = ", ".join(dep.stacks)
        _log(f"deployed {stacks} in {deploy_seconds:.1f}s; state machine {dep.state_machine_arn}")
        if dep.skipped:
            _log(
                "  not emulated locally (moto cannot create them; no part in a run): "
                + ", ".join(sorted({rtype for _, _, rtype in dep.skipped}))
            )
        upload_inputs(aws, dep, ratings, test, log=_log)
        put_objects(aws, dep, uploads or [], log=_log)
        outcome = execute(aws, dep, run_id=new_run_id(), log=_log)
        first_ok = outcome.result.status == "SUCCEEDED"
        if not first_ok:
            reasons = "; ".join(f"{f['state']}: {f['error']}: {f['reason']}" for f in outcome.result.failures)
            _log(f"run {outcome.run_id} failed ({outcome.result.error}): {reasons}")
        users = reporting.sample_users(outcome, aws, dep, show_users) if first_ok else []
        recommendations = query_users(dep, aws, users) if users else []
        related: dict[str, Any] = {}
        if first_ok:
            x = (outcome.pointer or {}).get("x")
            reporting.print_recommendations(recommendations, titles or {}, _log, x=x)
            related = reporting.show_related(
                outcome, aws, dep, titles=titles or {}, genres=genres or {}, wanted=SHOWN_ITEMS, log=_log
            )
            reporting.print_metrics(outcome, _log)
            cold = reporting.show_cold(outcome, aws, dep, titles=titles or {}, log=_log, x=x)
            if cold:
                related["cold"] = cold
        rerun, latest = None, outcome
        if rerun_epochs and first_ok:
            rerun, latest = _rerun(aws, dep, rerun_epochs)
        api = start_api(aws, dep, _log) if first_ok else None
        api_call = show_api(api, aws, users[0], _log) if api is not None and users else None
        failure = None
        if inject_failure:
            failure = _failure_run(aws, dep, users, inject_failure)
        total = time.monotonic() - t0
        doc = reporting.build_report(
            outcome=outcome,
            dataset=dataset,
            deploy_seconds=deploy_seconds,
            total_seconds=total,
            recommendations=recommendations,
            failure=failure,
            skipped=dep.skipped,
            synth=dep.synth,
            related=related,
        )
        if rerun is not None:
            doc["rerun"] = rerun
        if api_call is not None:
            doc["read_api"] = api_call
        _write_outputs(out, doc, outcome, latest, first_ok, total)
        if keep_serving:
            serve(aws, dep, api, users[0] if users else "1", _log)
        if api is not None:
            api.stop()
    return doc


def _write_outputs(
    out: Path, doc: dict[str, Any], outcome: RunOutcome, latest: RunOutcome, first_ok: bool, total: float
) -> None:
    """metrics.json, report.json and the run report page(s) (report.html: the latest run's)."""
    out.mkdir(parents=True, exist_ok=True)
    if outcome.metrics:
        (out / "metrics.json").write_text(json.dumps(outcome.metrics, indent=2) + "\n", encoding="utf-8")
    if latest is not outcome and outcome.report_html:
        (out / f"report-{outcome.run_id}.html").write_bytes(outcome.report_html)
    if latest.report_html:
        page = out / "report.html"
        page.write_bytes(latest.report_html)
        size = page.stat().st_size
        _log(f"run report of {latest.run_id} (the Report state's page, {size:,} bytes): {page}")
    elif first_ok:
        _log("no run report: the Report state did not write one (see its notification above)")
    (out / "report.json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    _log(f"report: {out / 'report.json'} (total {total:.1f}s)")


def _assembly_region(assembly: Path) -> str:
    """The region the assembly's stacks are for (their ``environment``), e.g. ``aws://ACCOUNT/us-east-1``."""
    manifest = json.loads((assembly / "manifest.json").read_text(encoding="utf-8"))
    for artifact in manifest.get("artifacts", {}).values():
        environment = artifact.get("environment", "")
        if artifact.get("type") == "aws:cloudformation:stack" and environment.count("/") == 3:
            region = environment.rsplit("/", 1)[-1]
            if region != "unknown-region":
                return region
    return "us-east-1"


def _rerun(aws: LocalAws, dep: Any, epochs: int) -> tuple[dict[str, Any], RunOutcome]:
    """A second run on the same data, its FM trained `epochs` epochs (one-shot override, as the
    failure injection): its report compares it with the first run (history, ratio, drift)."""
    from pipeline_steps.common.layout import RunLayout
    from pipeline_steps.local import adapter

    _log(f"\nsecond run on the same data, FM with epochs={epochs} (one-shot override)")
    adapter.inject_hyperparameters("factorization-machines", {"epochs": str(epochs)})
    outcome = execute(aws, dep, run_id=new_run_id("rerun"), log=_log)
    s3 = aws.client("s3")
    try:
        data = json.loads(
            s3.get_object(Bucket=dep.bucket, Key=RunLayout(outcome.run_id).report_data)["Body"].read()
        )
    except s3.exceptions.NoSuchKey:
        data = {}
    drift = data.get("drift") or {}
    summary = {
        "run_id": outcome.run_id,
        "status": outcome.result.status,
        "metrics": (outcome.metrics or {}).get("model"),
        "previous_run_id": data.get("previous_run_id"),
        "ratio_vs_previous": data.get("ratio_vs_previous"),
        "drift": drift,
    }
    if drift.get("mean_overlap_at_x") is not None:
        ratio = summary["ratio_vs_previous"]
        _log(
            f"  vs {summary['previous_run_id']}: {data.get('ratio_metric')} ratio "
            f"{'n/a' if ratio is None else f'{ratio:.4f}'}, mean overlap@x {drift['mean_overlap_at_x']:.4f}, "
            f"lists changed {drift['share_users_changed']:.4f}, items entering {drift['items_entering']}, "
            f"leaving {drift['items_leaving']}"
        )
    return summary, outcome


def _failure_run(aws: LocalAws, dep: Any, users: list[str], algorithm: str) -> dict[str, Any]:
    from pipeline_steps.local import adapter

    repo = {"fm": "factorization-machines"}[algorithm]
    overrides = INJECTED[repo]
    before = read_pointer(aws, dep)
    _log(f"\nfailure injection: the next {repo} training job runs with {overrides}")
    adapter.inject_hyperparameters(repo, overrides)
    outcome = execute(aws, dep, run_id=new_run_id("fail"), log=_log)
    after = read_pointer(aws, dep)
    messages = notifications(dep, aws)
    _log(f"  execution ended {outcome.result.status} via {' > '.join(outcome.result.path[-3:])}")
    for m in messages:
        _log(
            f"  SNS notification on {m['topic'].rsplit(':', 1)[-1]}: {m['subject']}\n    {m['message'][:400]}"
        )
    same = (before or {}).get("run_id") == (after or {}).get("run_id")
    _log(
        f"  current pointer before: {(before or {}).get('run_id')}  after: {(after or {}).get('run_id')}"
        f"  ({'unchanged' if same else 'CHANGED'})"
    )
    still = query_users(dep, aws, users[:1]) if users and after else []
    for rec in still:
        _log(
            f"  user {rec['user_id']} still served from run {rec['run_id']}: "
            f"{[i['item_id'] for i in rec['items'][:5]]}..."
        )
    return {
        "run_id": outcome.run_id,
        "status": outcome.result.status,
        "path": outcome.result.path,
        "failures": outcome.result.failures,
        "notifications": messages,
        "pointer_before": before,
        "pointer_after": after,
        "pointer_unchanged": same,
        "query_after": still,
        "stage_seconds": outcome.result.stage_seconds,
    }


def _demo(args: argparse.Namespace) -> int:
    from pipeline_steps.datasets.movielens import CITATION, load

    started = time.monotonic()
    _log(CITATION)
    ds = load()
    ratings, test = [ds.ua_base], [ds.ua_test]
    dataset = "MovieLens 100k (ua.base / ua.test)"
    with tempfile.TemporaryDirectory(prefix="demo-subset-") as tmp:
        if args.users:
            base, held = _subset_users(ds.ua_base, ds.ua_test, args.users, Path(tmp))
            ratings, test = [base], [held]
            dataset += f", first {args.users} users"
        overrides = _context_overrides(args, has_test=True)
        options = _run_options(args)
        if getattr(args, "features", False):
            options["uploads"] = [*options["uploads"], *_demo_features(ds, overrides)]
        if not any(key.split(".")[0] == "topx:api" for key in overrides):
            overrides["topx:api"] = DEMO_API  # the demo shows the read API too
            metadata = write_item_metadata(ds.titles, ds.genres, Path(tmp) / "items.csv")
            options["uploads"] = [*options["uploads"], (DEMO_METADATA_KEY, metadata)]
        doc = run_local(
            ratings=ratings,
            test=test,
            overrides=overrides,
            out=Path(args.out),
            dataset=dataset,
            titles=ds.titles,
            genres=ds.genres,
            inject_failure=args.inject_failure,
            started=started,
            **options,
        )
    return 0 if _succeeded(doc, args.inject_failure) else 1


def _demo_features(ds: Any, overrides: dict[str, Any]) -> list[tuple[str, Path]]:
    """The demo's metadata uploads and prepare overrides (unless the context sets the features)."""
    uploads = []
    for side, columns in DEMO_FEATURE_COLUMNS.items():
        path = getattr(ds, f"{side}_features", None)
        if path is None or f"topx:prepare.{side}_features" in overrides:
            continue
        overrides[f"topx:prepare.{side}_features"] = FEATURE_PREFIXES[side]
        overrides.setdefault(f"topx:prepare.{side}_feature_columns", columns)
        uploads.append((FEATURE_PREFIXES[side] + Path(path).name, Path(path)))
    if uploads:
        overrides.setdefault("topx:prepare.cold_protocols", True)
        overrides.setdefault("topx:prepare.feature_weight", DEMO_FEATURE_WEIGHT)
    return uploads


def write_item_metadata(titles: dict[str, str], genres: dict[str, frozenset[str]], path: Path) -> Path:
    """The read API's item metadata object (item_id,title,genres; genres joined with '|')."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "title", "genres"])
        for item, title in titles.items():
            writer.writerow([item, title, "|".join(sorted(genres.get(item, ())))])
    return path


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    assembly = Path(args.assembly) if args.assembly else None
    if assembly is not None:
        if not (assembly / "manifest.json").is_file():
            raise SystemExit(
                f"--assembly {assembly}: no manifest.json (expected a cloud assembly, e.g. cdk.out)"
            )
        options = ("x", "columns", "context", "user_features", "item_features")
        given = [name for name in options if getattr(args, name, None)]
        if given:
            raise SystemExit(
                f"--assembly runs the assembly as synthesized; --{given[0].replace('_', '-')} would change "
                "the app: synthesize again with it (cdk synth -c ...) instead"
            )
    if args.retry_wait_scale <= 0:
        raise SystemExit("--retry-wait-scale must be > 0")
    if args.rerun_epochs is not None and args.rerun_epochs < 1:
        raise SystemExit("--rerun-epochs must be >= 1")
    return {
        "assembly": assembly,
        "enforce_iam": not args.no_enforce_iam,
        "retry_wait_scale": args.retry_wait_scale,
        "rerun_epochs": args.rerun_epochs,
        "keep_serving": bool(getattr(args, "serve", False)),
        "uploads": _uploads(args.put or []) + _feature_uploads(args),
    }


def _uploads(items: list[str]) -> list[tuple[str, Path]]:
    uploads = []
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key or not Path(path).is_file():
            raise SystemExit(f"--put expects KEY=PATH of an existing file, got {item!r}")
        uploads.append((key, Path(path)))
    return uploads


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ratings = [Path(p) for p in args.ratings]
    test = [Path(p) for p in args.test or []]
    for path in [*ratings, *test]:
        if not path.is_file():
            raise SystemExit(f"no such file: {path}")
    doc = run_local(
        ratings=ratings,
        test=test,
        overrides=_context_overrides(args, has_test=bool(test)),
        out=Path(args.out),
        dataset=", ".join(str(p) for p in ratings),
        inject_failure=args.inject_failure,
        started=started,
        **_run_options(args),
    )
    return 0 if _succeeded(doc, args.inject_failure) else 1


def _succeeded(doc: dict[str, Any], inject: str | None) -> bool:
    ok = doc.get("status") == "SUCCEEDED" and doc.get("rerun", {}).get("status", "SUCCEEDED") == "SUCCEEDED"
    if inject:
        ok = (
            ok
            and doc["failure_injection"]["status"] == "FAILED"
            and doc["failure_injection"]["pointer_unchanged"]
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_steps.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--x", type=int, help="recommendations per user (topx:x)")
    common.add_argument("--inject-failure", choices=["fm"], help="then run again with a failing FM job")
    common.add_argument("-c", "--context", action="append", metavar="KEY=VALUE", help="CDK context override")
    common.add_argument(
        "--assembly",
        metavar="DIR",
        help="run this cloud assembly (e.g. cdk synth's cdk.out, with your edits) instead of synthesizing",
    )
    common.add_argument(
        "--put",
        action="append",
        metavar="KEY=PATH",
        help="put a local file at this bucket key before the run (e.g. a filter object named in "
        "topx:publish.filter_*)",
    )
    common.add_argument(
        "--no-enforce-iam",
        action="store_true",
        help="do not authorise calls with the callers' IAM policies (debugging only)",
    )
    common.add_argument(
        "--retry-wait-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply the state machine's Retry waits by F (e.g. 0.01 to rehearse failure paths quickly)",
    )
    common.add_argument(
        "--rerun-epochs",
        type=int,
        metavar="N",
        help="then run again on the same data with the FM trained N epochs: the second run's report "
        "shows the quality history, the ratio to the first run and the drift of the users' lists",
    )
    demo = sub.add_parser("demo", parents=[common], help="MovieLens 100k, ua.base/ua.test")
    demo.add_argument("--users", type=int, help="only the first N users (quick run)")
    demo.add_argument(
        "--features",
        action="store_true",
        help="with ML-100k's item genres and year and the users' age, gender and occupation, and the "
        "cold-start protocols (decision 0018; make demo-features)",
    )
    demo.add_argument("--out", default="demo-output")
    demo.add_argument("--serve", action="store_true", help="then keep the embedded AWS and the API up")
    demo.set_defaults(func=_demo)
    serving = sub.add_parser("serve", parents=[common], help="demo, then keep everything up until Ctrl-C")
    serving.add_argument("--users", type=int, help="only the first N users (quick run)")
    serving.add_argument("--out", default="demo-output")
    serving.set_defaults(func=_demo, serve=True)
    run = sub.add_parser("run", parents=[common], help="any interaction file(s)")
    run.add_argument("--ratings", nargs="+", required=True, help="interaction file(s) -> input prefix")
    run.add_argument("--test", nargs="*", help="explicit test file(s) -> test prefix")
    run.add_argument("--columns", help="USER,ITEM[,RATING[,TIMESTAMP]]: header names or 0-based positions")
    run.add_argument("--out", required=True)
    for side in FEATURE_PREFIXES:
        run.add_argument(
            f"--{side}-features",
            nargs="+",
            metavar="FILE",
            help=f"{side} metadata file(s) (CSV/TSV with a header holding the {side} id) for prepare's side "
            f"features; the columns: -c topx:prepare.{side}_feature_columns=SPEC",
        )
    run.add_argument(
        "--serve", action="store_true", help="then keep the embedded AWS (and the API, if on) up"
    )
    run.set_defaults(func=_run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

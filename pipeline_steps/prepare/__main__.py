"""CLI: `python -m pipeline_steps.prepare --input PATH --out DIR` (local paths or s3:// URIs)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import PrepareConflictError, prepare, step_output
from pipeline_steps.prepare.layout import PrepareInputError
from pipeline_steps.prepare.storage import LocalStorage, S3Storage, Storage


def _location(text: str) -> tuple[Storage, str, str]:
    """(storage, key prefix, bucket name) for a local path or an s3://bucket/prefix URI."""
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        return S3Storage(bucket), prefix, bucket
    path = Path(text).resolve()
    if path.is_dir():
        return LocalStorage(path), "", str(path)
    return LocalStorage(path.parent), path.name, str(path.parent)


def _metadata_location(text: str) -> tuple[Storage, str]:
    """Like `_location`, but a directory is a non-empty prefix in its parent (empty = no metadata)."""
    path = Path(text).resolve()
    if not text.startswith("s3://") and path.is_dir():
        return LocalStorage(path.parent), path.name + "/"
    storage, prefix, _ = _location(text)
    return storage, prefix


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _sink(args: argparse.Namespace) -> tuple[Storage, str, str]:
    """The output store, the root prefix in it and the bucket (or directory) named in the manifest."""
    if args.out.startswith("s3://"):
        bucket, _, root = args.out[5:].partition("/")
        sink: Storage = S3Storage(bucket)
        root = root.rstrip("/") + "/" if root else ""
    else:
        for option, given in (
            ("--input", args.input),
            ("--test", args.test),
            ("--user-features", args.user_features),
            ("--item-features", args.item_features),
        ):
            inp = Path(given).resolve() if given and not given.startswith("s3://") else None
            if inp is not None and inp.is_dir() and Path(args.out).resolve().is_relative_to(inp):
                raise ConfigError(
                    f"--out must not be inside the {option} directory (outputs would be read as input)"
                )
        Path(args.out).mkdir(parents=True, exist_ok=True)
        sink, root, bucket = LocalStorage(args.out), "", str(Path(args.out).resolve())
    return sink, root, bucket


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline_steps.prepare",
        description="Validate, map, split, label and encode interaction files for the FM -> k-NN "
        "pipeline. Writes <out>/runs/<run-id>/prepared/ (train/ and test/ RecordIO shards, users.json, "
        "items.json, seen.npz, holdout.npz, popularity.npy, report.json, manifest.json) and prints the "
        "step's JSON result.",
    )
    ap.add_argument("--input", required=True, help="interaction file, directory, or s3://bucket/prefix")
    ap.add_argument("--test", help="explicit test file/directory/s3 prefix (implies split=explicit)")
    for side in ("user", "item"):
        ap.add_argument(
            f"--{side}-features",
            metavar="PATH",
            help=f"{side} metadata file/directory/s3 prefix (CSV/TSV with a header holding the {side} id); "
            f"the columns to use: --set {side}_feature_columns=SPEC (e.g. genres:multi:pipe,year:numeric:5)",
        )
    ap.add_argument("--out", required=True, help="output root: a directory or s3://bucket[/prefix]")
    ap.add_argument("--run-id", default="local", help="run id (default: local)")
    ap.add_argument("--config", help="PrepareConfig as JSON, or @file.json")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (VALUE parsed as JSON when possible), e.g. --set label_mode=binary",
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="only print the result")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    try:
        raw = {}
        if args.config:
            text = Path(args.config[1:]).read_text() if args.config.startswith("@") else args.config
            raw = json.loads(text)
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
            raw[key.strip()] = _value(value)
        source, input_prefix, _ = _location(args.input)
        raw["input_prefix"] = input_prefix
        test_source = None
        if args.test:
            test_source, raw["test_prefix"], _ = _location(args.test)
        feature_sources: dict[str, Storage] = {}
        for side, given in (("user", args.user_features), ("item", args.item_features)):
            if given:
                feature_sources[side], raw[f"{side}_features"] = _metadata_location(given)
        config = PrepareConfig.from_dict(raw)
        sink, root, bucket = _sink(args)
        layout = RunLayout(args.run_id, root=root)
        run = prepare
        if config.engine == "spark":  # the same statements on Spark (local[*] unless spark-submit set one)
            from pipeline_steps.prepare.spark_engine import spark_prepare

            run = spark_prepare
        manifest = run(
            config,
            source=source,
            sink=sink,
            test_source=test_source,
            run_id=args.run_id,
            out_prefix=layout.prepared,
            bucket=bucket,
            feature_sources=feature_sources,
        )
    except (ConfigError, PrepareInputError, PrepareConflictError, json.JSONDecodeError) as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(step_output(manifest, sink, layout.manifest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""CDK entry point: build the typed config once, then compose the stacks (cdk-nag checks every synth)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from infra.config import AppConfig
from infra.nag import add_checks
from infra.pipeline_stack import PipelineStack
from infra.profiles import check_context_keys, with_profile
from infra.storage_stack import StorageStack

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def default_context() -> dict[str, Any]:
    """cdk.json's context: the CLI passes it in, `python app.py` and tests read it here."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


def build_app(context: dict[str, Any] | None = None, *, outdir: str | None = None) -> cdk.App:
    """The app with both stacks; `context` entries override cdk.json's and the CLI's (as `-c` does).

    `topx:profile` names a checked-in file of `topx:` keys (profiles/, infra/profiles.py) layered
    between cdk.json and the `-c` keys.
    """
    defaults = default_context()
    app = cdk.App(context=defaults, post_cli_context=context or {}, outdir=outdir)
    resolved = with_profile(app.node.get_all_context(), defaults, root=CDK_JSON.parent)
    config = AppConfig.from_context(resolved, account=os.environ.get("CDK_DEFAULT_ACCOUNT"))
    check_context_keys(app.node.get_all_context(), defaults)  # after: retired keys have their own message
    add_project_stacks(app, config)
    add_checks(app)
    return app


def add_project_stacks(
    app: cdk.App, config: AppConfig, *, disposable_storage: bool = False
) -> tuple[StorageStack, PipelineStack]:
    """`<project>-storage` and `<project>-pipeline`; `disposable_storage` only for throwaway test stacks."""
    env = cdk.Environment(account=config.account, region=config.region)
    storage = StorageStack(
        app, f"{config.project}-storage", config=config, disposable=disposable_storage, env=env
    )
    pipeline = PipelineStack(
        app, f"{config.project}-pipeline", config=config, exports=storage.exports, env=env
    )
    pipeline.add_stack_dependency(storage, "imports the bucket, table and key by export name")
    return storage, pipeline


if __name__ == "__main__":
    # The CLI sets CDK_OUTDIR; a plain `python app.py` writes next to this file like `cdk synth` does.
    build_app(outdir=os.environ.get("CDK_OUTDIR") or str(CDK_JSON.parent / "cdk.out")).synth()

#!/usr/bin/env python3
"""CDK entry point: build the typed config once, then compose the stacks."""

from __future__ import annotations

import aws_cdk as cdk

from infra.config import AppConfig
from infra.storage_stack import StorageStack


def build_app(context: dict | None = None) -> cdk.App:
    app = cdk.App(context=context or {})
    config = AppConfig.from_context(app.node.try_get_context)
    StorageStack(app, f"{config.project}-storage", config=config)
    return app


if __name__ == "__main__":
    build_app().synth()

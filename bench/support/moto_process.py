"""A moto server in its own process for the benchmarks that need one (publish, steps_memory).

The server gets its own core: in the benchmark's process it would share the GIL with the code
being measured, and the figures would include moto's CPU time.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


def use_bench_credentials() -> None:
    """Fake credentials for the local server only (never an AWS account), no endpoint or profile."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(serve: Callable[[int, Connection], None]) -> tuple[str, Connection, BaseProcess]:
    """Spawn `serve(port, conn)` (it sends "ready" once the server listens); -> (endpoint, conn, process)."""
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    server = ctx.Process(target=serve, args=(port, child_conn), daemon=True)
    server.start()
    if not conn.poll(60) or conn.recv() != "ready":
        raise RuntimeError("the moto server did not start within 60 s")
    return f"http://127.0.0.1:{port}", conn, server


def serve(port: int, conn: Connection) -> None:
    """The plain server for `start`: S3, DynamoDB and the rest of moto, until "stop" is received."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    from pipeline_steps.local import moto_fixes

    moto_fixes.install()  # the local runner's server: TransactWriteItems without the table copy
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    conn.send("ready")
    conn.recv()
    server.stop()


def clients(endpoint: str) -> tuple[Any, Any]:
    """(s3, dynamodb) boto3 clients for the server at `endpoint` (16 pooled connections, standard retries)."""
    import boto3
    from botocore.config import Config

    cfg = Config(max_pool_connections=16, retries={"mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint), boto3.client(
        "dynamodb", endpoint_url=endpoint, config=cfg
    )

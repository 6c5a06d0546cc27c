"""After a local run: the read API on loopback (a signed request shown as `curl`), and `serve`, which
keeps the embedded AWS and the API up, printing how to query, call the API and roll back."""

from __future__ import annotations

import json
import shlex
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from pipeline_steps.local import access
from pipeline_steps.local.api_server import LocalApi, api_id_for, call, function_invoker, sign
from pipeline_steps.local.deploy import Deployment

Log = Callable[[str], None]


def start_api(aws: Any, dep: Deployment, log: Log) -> LocalApi | None:
    """The local API when the deployment has the read API's function (`topx:api` on), else None."""
    fn = dep.step_function("query")
    if fn is None:
        return None
    if not access.enforcing():
        log("read API: not served locally without IAM enforcement (it verifies SigV4 against IAM keys)")
        return None
    invoke = function_invoker(fn["name"], account=aws.account_id, region=aws.region)
    api = LocalApi(invoke, region=aws.region, account=aws.account_id, api_id=api_id_for(fn["name"]))
    return api.start()


def curl(url: str, headers: dict[str, str]) -> str:
    parts = ["curl", "-s", url] + [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    return " ".join(shlex.quote(p) for p in parts)


def show_api(api: LocalApi, aws: Any, user: str, log: Log, *, x: int = 3) -> dict[str, Any]:
    """One signed call of the local API (printed as curl with its response) and one unsigned."""
    operator = access.operator()
    url = f"{api.url}/users/{urllib.parse.quote(user, safe='')}/recommendations?x={x}"
    headers = sign("GET", url, operator, aws.region)
    log(f"\nread API (API Gateway HTTP API, AWS_IAM auth) on loopback: {api.url}")
    log("  a SigV4-signed request (botocore SigV4Auth, service execute-api), as curl:")
    log(f"  {curl(url, headers)}")
    status, got, body = call(url, operator, aws.region)
    log(f"  -> {status}  ETag: {got.get('ETag')}  Cache-Control: {got.get('Cache-Control')}")
    log(f"     {json.dumps(body, ensure_ascii=False)}")
    unsigned, _, refusal = call(url, None, aws.region)
    log(f"  the same request unsigned -> {unsigned} {json.dumps(refusal)}")
    return {"url": api.url, "status": status, "body": body, "unsigned_status": unsigned}


def serve(aws: Any, dep: Deployment, api: LocalApi | None, user: str, log: Log) -> None:
    """Print how to explore, then block until interrupted (Ctrl-C)."""
    operator = access.operator()
    env = (
        f"AWS_ENDPOINT_URL={aws.endpoint} AWS_DEFAULT_REGION={aws.region} "
        f"AWS_ACCESS_KEY_ID={operator.access_key_id} AWS_SECRET_ACCESS_KEY={operator.secret_access_key}"
    )
    log("\nserving until interrupted (Ctrl-C). In another shell:")
    log(f"  embedded AWS: {aws.endpoint} (IAM enforced; the operator's keys below)")
    python = ".venv/bin/python -m pipeline_steps"
    log(f"  query:    {env} {python}.query {shlex.quote(user)} --table {dep.table} --x 5")
    log(f"  status:   {env} {python}.publish --table {dep.table} status")
    log(f"  rollback: {env} {python}.publish --table {dep.table} rollback [--to RUN]")
    if api is not None:
        log(f"  read API: {api.url}/users/<id>/recommendations?x=&exclude=  and  /items/<id>/related")
        log("    sign with the same keys, service execute-api, region " + aws.region + "; in Python:")
        log(
            "    from pipeline_steps.local.api_server import call\n"
            "    from pipeline_steps.local.access import Credentials\n"
            f"    call('{api.url}/users/{urllib.parse.quote(user, safe='')}/recommendations', "
            f"Credentials('{operator.access_key_id}', '{operator.secret_access_key}'), '{aws.region}')"
        )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log("stopped")

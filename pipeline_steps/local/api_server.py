"""The read API offline: a loopback HTTP server in front of the deployed query Lambda, as API Gateway.

What it does per request, in API Gateway's order for an HTTP API route with AWS_IAM authorisation:

1. **Route**: `GET /users/{id}/recommendations`, `GET /items/{id}/related`; anything else is
   `404 {"message":"Not Found"}` (HTTP API's answer for no matching route).
2. **SigV4** (AWS General Reference, "Signature Version 4 signing process"; API Gateway developer
   guide, "Control access to HTTP APIs with IAM authorization"): the `Authorization` header's
   credential scope must be `<date>/<region>/execute-api/aws4_request`, `X-Amz-Date` within 5
   minutes of now, the access key known (an IAM user's key or an assumed-role session of the
   embedded AWS, with its `X-Amz-Security-Token`), and the signature equal to the one recomputed
   here with botocore's `SigV4Auth` over the signed headers. A missing or invalid signature is a
   403 with API Gateway's messages.
3. **IAM**: the caller's identity policies must allow `execute-api:Invoke` on
   `arn:aws:execute-api:<region>:<account>:<api-id>/$default/GET/<path>` (evaluated by
   `pipeline_steps.local.iam`, as every other call of the embedded AWS); a denial is a 403 naming
   the caller and the resource.
4. **Invoke**: the function runs with a payload format 2.0 event, as its execution role (the
   adapter's in-process Lambda), and its proxy response is returned as it is.

Not emulated: stage throttling (429s), JWT authorisers, custom domains; the access log is kept in
memory (`access_log`) in the stage's JSON format instead of CloudWatch Logs.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from pipeline_steps.local import access, iam
from pipeline_steps.query import metadata

SERVICE = "execute-api"
STAGE = "$default"
ROUTES = {"users": "recommendations", "items": "related"}  # /<first>/{id}/<last>
MAX_SKEW_S = 300  # SigV4: a request older or newer than 5 minutes is refused ("Signature expired")
QUERY_HANDLER = "pipeline_steps.query.handler.handler"
Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class Denied(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Caller:
    access_key_id: str
    arn: str
    policies: list[Any]


def secret_of(access_key_id: str, token: str | None) -> str | None:
    """The secret key of an IAM user's access key or of an assumed-role session (moto's backends)."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    account = access.account()
    for session in sts_backends[account]["aws"].assumed_roles:
        if session.access_key_id == access_key_id and session.session_token == token:
            return str(session.secret_access_key)
    for user in iam_backends[account]["aws"].users.values():
        for key in user.access_keys:
            if key.access_key_id == access_key_id and token is None:
                return str(key.secret_access_key)
    return None


def _scope(authorization: str) -> tuple[str, list[str], list[str], str]:
    """(access key, [date, region, service, terminator], signed headers, signature) of the header."""
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise Denied("Missing Authentication Token")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    credential = fields.get("Credential", "").split("/")
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    if len(credential) != 5 or not signed or not fields.get("Signature"):
        raise Denied("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters")
    return credential[0], credential[1:], signed, fields["Signature"]


def verify_sigv4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    region: str,
    now: float | None = None,
) -> Caller:
    """Check a SigV4-signed request for `execute-api` in `region`; raises Denied with AWS's message."""
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower.get("authorization")
    if not authorization:
        raise Denied("Missing Authentication Token")
    key_id, (date, scope_region, service, terminator), signed, signature = _scope(authorization)
    if (scope_region, service, terminator) != (region, SERVICE, "aws4_request"):
        raise Denied(
            f"Credential should be scoped to a valid region and service ({region}/{SERVICE}), "
            f"not {scope_region}/{service}"
        )
    amz_date = lower.get("x-amz-date", "")
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise Denied("Authorization requires a valid X-Amz-Date header") from None
    if amz_date[:8] != date:
        raise Denied("Credential date does not match X-Amz-Date")
    if abs((time.time() if now is None else now) - stamp) > MAX_SKEW_S:
        raise Denied("Signature expired: the request time is more than 5 minutes from the server time")
    if "host" not in signed or any(h not in lower for h in signed):
        raise Denied("SignedHeaders must include host and name only headers present in the request")
    token = lower.get("x-amz-security-token")
    secret = secret_of(key_id, token)
    if secret is None:
        raise Denied("The security token included in the request is invalid.")
    request = AWSRequest(method=method, url=url, data=body, headers={h: lower[h] for h in signed})
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(BotoCredentials(key_id, secret, token), SERVICE, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise Denied(
            "The request signature we calculated does not match the signature you provided. Check your "
            "AWS Secret Access Key and signing method."
        )
    principal = access.principal_of(key_id, token)
    return Caller(key_id, principal.arn, principal.policies)


def sign(
    method: str,
    url: str,
    credentials: access.Credentials,
    region: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of a SigV4-signed request for `execute-api` (what `awscurl` or an SDK sends)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    boto = BotoCredentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    SigV4Auth(boto, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def call(
    url: str,
    credentials: access.Credentials | None,
    region: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], Any]:
    """GET `url`, signed with `credentials` (None: unsigned) -> (status, headers, JSON body or None)."""
    sent = sign("GET", url, credentials, region, headers) if credentials else dict(headers or {})
    request = urllib.request.Request(url, headers=sent, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, got, raw = response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        status, got, raw = exc.code, dict(exc.headers.items()), exc.read()
    return status, got, json.loads(raw) if raw else None


def _route(path: str) -> tuple[str, str] | None:
    """(route key, decoded id) of a path of one of the two routes, else None."""
    parts = path.split("/")
    if len(parts) == 4 and parts[0] == "" and ROUTES.get(parts[1]) == parts[3] and parts[2]:
        return f"GET /{parts[1]}/{{id}}/{parts[3]}", urllib.parse.unquote(parts[2])
    return None


class LocalApi:
    """The HTTP API on 127.0.0.1:<free port>; `url`, `access_log`; a context manager."""

    def __init__(
        self,
        invoke: Invoke,
        *,
        region: str,
        account: str,
        api_id: str = "localapi01",
        enforce_iam: bool = True,
    ) -> None:
        self.invoke, self.region, self.account, self.api_id = invoke, region, account, api_id
        self.enforce_iam = enforce_iam
        self.access_log: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def route_arn(self, method: str, path: str) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}/{STAGE}/{method}{path}"

    def start(self) -> LocalApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                api._serve(self)

            def do_POST(self) -> None:
                api._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        started = time.perf_counter()
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        split = urllib.parse.urlsplit(request.path)
        headers = {k: v for k, v in request.headers.items()}
        caller = ""
        out_headers: dict[str, str] = {}
        route = _route(split.path) if request.command == "GET" else None
        if route is None:
            status, payload = 404, json.dumps({"message": "Not Found"})
        else:
            try:
                url = f"http://{headers.get('Host', '')}{request.path}"
                who = verify_sigv4(request.command, url, headers, body, region=self.region)
                caller = who.arn
                self._authorize(who, request.command, split.path)
                status, out_headers, payload = self._invoke(request.command, split, route, headers)
            except Denied as exc:
                status, payload = 403, json.dumps({"message": exc.message})
        data = payload.encode("utf-8")
        request_id = str(uuid.uuid4())
        # Logged before the answer is sent, so a client that got it finds its entry.
        self.access_log.append(
            {
                "requestId": request_id,
                "routeKey": route[0] if route else "-",
                "path": split.path,
                "status": status,
                "responseLatency": round((time.perf_counter() - started) * 1000, 3),
                "caller": caller,
            }
        )
        request.send_response(status)
        out_headers = {"Content-Type": "application/json", **out_headers, "apigw-requestid": request_id}
        for name, value in out_headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _authorize(self, caller: Caller, method: str, path: str) -> None:
        if not self.enforce_iam:
            return
        needed = iam.Authorization("execute-api:Invoke", self.route_arn(method, path))
        decision = iam.evaluate(caller.policies, needed)
        if decision is not iam.Decision.ALLOW:
            raise Denied(iam.denial_message(caller.arn, needed, decision))

    def _invoke(
        self, method: str, split: urllib.parse.SplitResult, route: tuple[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], str]:
        query: dict[str, str] = {}
        for name, value in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            # Payload 2.0: repeated parameters are joined with commas.
            query[name] = f"{query[name]},{value}" if name in query else value
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route[0],
            "rawPath": split.path,
            "rawQueryString": split.query,
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {
                "apiId": self.api_id,
                "stage": STAGE,
                "http": {"method": method, "path": split.path, "sourceIp": "127.0.0.1"},
            },
            "pathParameters": {"id": route[1]},
        }
        if query:
            event["queryStringParameters"] = query
        response = self.invoke(event)
        if "statusCode" not in response:  # a function error: API Gateway answers 500
            return 500, {}, json.dumps({"message": "Internal Server Error"})
        return (
            int(response["statusCode"]),
            dict(response.get("headers") or {}),
            str(response.get("body") or ""),
        )


def function_invoker(function_name: str, *, account: str, region: str) -> Invoke:
    """Invoke a function of the embedded AWS in-process, as its execution role (the adapter's Lambda)."""
    from moto.awslambda.models import lambda_backends

    from pipeline_steps.local import adapter

    function = lambda_backends[account][region].get_function(function_name)

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        payload, errored = adapter.call_handler(function, event)
        result: dict[str, Any] = {} if errored else json.loads(payload)
        return result

    return invoke


def create_query_function(
    aws: Any,
    table: str,
    *,
    name: str = "read-api",
    pointer_ttl: float = 30.0,
    item_metadata: tuple[str, str, Sequence[str]] | None = None,
) -> str:
    """The read API's function and role as infra/api.py declares them (handler, environment, GetItem on
    the table only; with `item_metadata` = (bucket, key, fields), GetObject on that object only),
    created directly in the embedded AWS without a synth: for the load test and the tests. Returns
    the function name."""
    iam_client, lam = aws.client("iam"), aws.client("lambda")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam_client.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    table_arn = f"arn:aws:dynamodb:{aws.region}:{aws.account_id}:table/{table}"
    statements = [{"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table_arn}]
    environment = {"TABLE_NAME": table, "POINTER_TTL_SECONDS": str(pointer_ttl)}
    if item_metadata is not None:
        bucket, key, fields = item_metadata
        statements.append(
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{key}"}
        )
        environment |= {
            "ITEM_METADATA_BUCKET": bucket,
            "ITEM_METADATA_KEY": key,
            "ITEM_FIELDS": json.dumps(list(fields)),
            "ITEM_METADATA_MAX_BYTES": str(metadata.DEFAULT_MAX_MB * 1024 * 1024),
            "ITEM_METADATA_CHECK_SECONDS": str(metadata.DEFAULT_CHECK_SECONDS),
        }
    policy = {"Version": "2012-10-17", "Statement": statements}
    iam_client.put_role_policy(
        RoleName=role["RoleName"], PolicyName="read", PolicyDocument=json.dumps(policy)
    )
    source = Path(__file__).resolve().parents[1] / "query" / "handler.py"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("pipeline_steps/query/handler.py", source.read_text(encoding="utf-8"))
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Arn"],
        Handler=QUERY_HANDLER,
        Code={"ZipFile": buffer.getvalue()},
        Environment={"Variables": environment},
        Timeout=10,
        MemorySize=512,
    )
    return name


def api_id_for(function_name: str) -> str:
    """A stable 10-character id in API Gateway's style for the local API of this function."""
    return hashlib.sha256(function_name.encode("utf-8")).hexdigest()[:10]

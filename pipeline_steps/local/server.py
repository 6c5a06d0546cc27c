"""The embedded AWS: moto in server mode on a loopback port, with Step Functions execution on.

moto keeps its state in module-level backends, so one server per process is all there is: the
first ``LocalAws.start()`` starts it and every later one only resets the state. Keeping the port
also keeps valid any boto3 client a handler module cached during an earlier run.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any

from pipeline_steps.local import access, adapter, moto_fixes

ACCOUNT_ID = "123456789012"  # moto's default account
DEFAULT_REGION = "us-east-1"

_server: Any = None  # the process-wide ThreadedMotoServer
_port: int | None = None


def _post(url: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body or {}).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


class LocalAws:
    """Start/stop the embedded AWS and point boto3 (this process, handlers, jobs) at it."""

    def __init__(
        self,
        *,
        region: str = DEFAULT_REGION,
        job_log: adapter.LogFn = print,
        algorithms: object = None,
        enforce_iam: bool = True,
        retry_time_scale: float = 1.0,
    ) -> None:
        self.region = region
        self._algorithms = algorithms
        self.enforce_iam = enforce_iam
        self._retry_time_scale = retry_time_scale
        self._operator: access.Credentials | None = None
        self.account_id = ACCOUNT_ID
        self._job_log = job_log
        self._saved_env: dict[str, str | None] = {}
        self._saved_levels: dict[str, int] = {}
        self.endpoint = ""

    def start(self) -> LocalAws:
        global _server, _port
        from moto.server import ThreadedMotoServer

        # One line per HTTP request and moto's own Step Functions traces would drown the progress.
        self._saved_levels = {name: logging.getLogger(name).level for name in ("werkzeug", "moto")}
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("moto").setLevel(logging.CRITICAL)

        if _server is None:
            moto_fixes.install()  # TransactWriteItems without moto's whole-table copy
            # Port 0: the OS picks a free loopback port, no race with other processes.
            _server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            _server.start()
            _port = _server.get_host_and_port()[1]
        self.endpoint = f"http://127.0.0.1:{_port}"
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "MOTO_PORT": str(_port),  # moto's own Step Functions clients call http://localhost:$MOTO_PORT
        }
        self._saved_env = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE"]}
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(env)
        adapter.install(
            job_log=self._job_log,
            s3_factory=lambda: self.client("s3"),
            algorithms=self._algorithms,
            retry_time_scale=self._retry_time_scale,
        )
        self.reset()
        return self

    def reset(self) -> None:
        """Forget every resource, then switch Step Functions execution on (server-mode config API)."""
        adapter.wait_for_jobs()
        adapter.clear_injections()
        _post(f"{self.endpoint}/moto-api/reset")
        _post(f"{self.endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        if self.enforce_iam:
            # Every call from here on is authorised; this process acts as a local operator user.
            self._operator = access.enable(self.account_id, self.region)
            os.environ.update(self._operator.environment())
            os.environ.pop("AWS_SESSION_TOKEN", None)
        else:
            access.disable()
            self._operator = None

    def stop(self) -> None:
        """Wait for local jobs, forget the state, and leave moto and the process as they were
        (patches removed, execution off, environment and log levels restored): moto's state is
        process-wide, and later ``mock_aws`` code in the same process must not see ours.
        The server thread stays (see the module docstring)."""
        adapter.wait_for_jobs()
        access.disable()
        _post(f"{self.endpoint}/moto-api/reset")
        _post(f"{self.endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": False}})
        adapter.uninstall()
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        import boto3

        # boto3-stubs types client() by one overload per literal service name and has none for a
        # plain str; this helper is generic on purpose (the caller names the service).
        return boto3.client(service, **self._boto_kwargs())  # type: ignore[call-overload]

    def _boto_kwargs(self) -> dict[str, str]:
        credentials = (
            self._operator.boto_kwargs()
            if self._operator
            else {
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
            }
        )
        return {"endpoint_url": self.endpoint, "region_name": self.region, **credentials}

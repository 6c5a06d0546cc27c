"""IAM in the embedded AWS: every call runs as the identity that makes it on AWS, and is authorised.

Who is who (as on AWS):
- the operator (deploy, upload inputs, read results): a local IAM user with an allow-all policy;
- each Lambda invocation: its function's execution role (Lambda's own credentials variables);
- Step Functions service tasks (SageMaker, SNS, Lambda invoke, S3 listings): the state machine's role;
- SageMaker jobs: the training job's ``RoleArn``, a transform the model's ``ExecutionRoleArn``.

Roles are assumed in moto's STS backend directly (the AWS service assumes them, not a caller), after
checking that the role's trust policy names that service principal, as the service would. Every
request to the embedded AWS is then authorised by ``iam.evaluate`` against the caller's identity
policies, with the action, resource and condition keys of ``iam_requests``. A denial is the
service's own ``AccessDenied`` error with AWS's message, which names the role and the action.

What is not evaluated here (resource policies, KMS key policies, SCPs) is listed in
docs/local-mode.md with the template test that covers it instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import InvalidClientTokenIdError, JsonRESTError, _RESTError
from moto.iam.models import iam_backends
from moto.s3.exceptions import S3ClientError
from moto.stepfunctions.parser.models import stepfunctions_parser_backends
from moto.sts.models import sts_backends

from pipeline_steps.local import iam
from pipeline_steps.local.iam_requests import Call, authorizations

ADMIN_USER = "local-operator"
_ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
# Protocols whose errors are JSON documents (the rest are XML).
_JSON_SERVICES = {"dynamodb", "sagemaker", "lambda", "states", "events", "logs", "kms", "ecr"}


class AccessDenied(ClientError):
    """Raised locally (not over HTTP) for a permission a service checks on its own, e.g. an image pull."""

    def __init__(self, message: str, operation: str) -> None:
        super().__init__({"Error": {"Code": "AccessDenied", "Message": message}}, operation)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def boto_kwargs(self) -> dict[str, str]:
        kwargs = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}
        if self.session_token:
            kwargs["aws_session_token"] = self.session_token
        return kwargs

    def client(self, service: str, *, region: str | None = None, config: Any = None) -> Any:
        """A boto3 client on the embedded AWS (``AWS_ENDPOINT_URL``) with these credentials."""
        # boto3-stubs types client() by one overload per literal service name and has none for a
        # plain str; this helper is generic on purpose (the caller names the service).
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=os.environ["AWS_ENDPOINT_URL"],
            region_name=region or os.environ["AWS_DEFAULT_REGION"],
            config=config,
            **self.boto_kwargs(),
        )

    def environment(self) -> dict[str, str]:
        """What Lambda puts in a function's environment (AWS_SESSION_TOKEN only for roles)."""
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


@dataclass
class _Enforcement:
    active: bool = False
    account: str = ""
    region: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)
    sessions: dict[str, Credentials] | None = None
    acting: threading.local = field(default_factory=threading.local)
    original: Any = None


_STATE = _Enforcement()


def enable(account: str, region: str) -> Credentials:
    """Switch enforcement on (idempotent); returns the operator's credentials."""
    _STATE.account, _STATE.region = account, region
    if _STATE.original is None:
        _STATE.original = ActionAuthenticatorMixin._authenticate_and_authorize_action
        ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize  # type: ignore[method-assign]
    _STATE.active = True
    return reset_identities()


def disable() -> None:
    _STATE.active = False
    if _STATE.original is not None:
        ActionAuthenticatorMixin._authenticate_and_authorize_action = _STATE.original  # type: ignore[method-assign]
        _STATE.original = None
    _STATE.sessions = None


def enforcing() -> bool:
    return _STATE.active


def account() -> str:
    return _STATE.account


def reset_identities() -> Credentials:
    """After a moto reset: forget assumed sessions and (re)create the operator user."""
    backend = iam_backends[_STATE.account]["aws"]
    with _STATE.lock:
        _STATE.sessions = {}
        with contextlib.suppress(Exception):
            backend.get_user(ADMIN_USER)
            return _STATE.sessions.setdefault(ADMIN_USER, _operator_key(backend, create=False))
        backend.create_user(region_name=_STATE.region, user_name=ADMIN_USER, path="/")
        backend.put_user_policy(ADMIN_USER, "allow-all", json.dumps(_ALLOW_ALL))
        return _STATE.sessions.setdefault(ADMIN_USER, _operator_key(backend, create=True))


def _operator_key(backend: Any, *, create: bool) -> Credentials:
    user = backend.get_user(ADMIN_USER)
    key = backend.create_access_key(ADMIN_USER) if create or not user.access_keys else user.access_keys[0]
    return Credentials(key.access_key_id, key.secret_access_key)


def operator() -> Credentials:
    with _STATE.lock:
        found = (_STATE.sessions or {}).get(ADMIN_USER)
    return found or reset_identities()


# ---------------------------------------------------------------------------------------------
# roles assumed by services


def trusted_services(role_arn: str) -> set[str]:
    role = iam_backends[_STATE.account]["aws"].get_role_by_arn(role_arn)
    document = json.loads(role.assume_role_policy_document)
    services: set[str] = set()
    for statement in iam.statements(document):
        if statement.get("Effect") != "Allow" or "sts:AssumeRole" not in iam.as_list(statement.get("Action")):
            continue
        services.update(iam.as_list((statement.get("Principal") or {}).get("Service")))
    return services


def role_credentials(role_arn: str, service: str) -> Credentials:
    """Credentials of ``role_arn`` as ``service`` (e.g. ``lambda.amazonaws.com``) would assume it.

    Refused, as the service would refuse, when the role's trust policy does not name the service.
    Regional service principals (``states.<region>.amazonaws.com``) count as the service too.
    """
    with _STATE.lock:
        sessions = _STATE.sessions if _STATE.sessions is not None else {}
        _STATE.sessions = sessions
        key = f"{role_arn}|{service}"
        if key in sessions:
            return sessions[key]
        short = service.split(".", 1)[0]
        trusted = trusted_services(role_arn)
        if not any(
            s == service or (s.startswith(short + ".") and s.endswith(".amazonaws.com")) for s in trusted
        ):
            raise AccessDenied(
                f"{service} is not authorized to perform: sts:AssumeRole on resource: {role_arn} "
                f"(its trust policy allows {sorted(trusted) or 'no service'})",
                "AssumeRole",
            )
        no_session_policy: Any = None  # moto annotates these optional parameters as str
        session = sts_backends[_STATE.account]["aws"].assume_role(
            region_name=_STATE.region,
            role_session_name=short,
            role_arn=role_arn,
            policy=no_session_policy,
            duration=43200,
            external_id=no_session_policy,
        )
        found = Credentials(session.access_key_id, session.secret_access_key, session.session_token)
        sessions[key] = found
        return found


# ---------------------------------------------------------------------------------------------
# identities of incoming requests


@dataclass(frozen=True)
class Principal:
    arn: str
    policies: list[Any]


def _credential_scope(headers: Any) -> tuple[str, str, str]:
    """(access key id, region, service) from a SigV4 Authorization header."""
    auth = headers.get("Authorization") or ""
    scope = auth.partition("Credential=")[2].partition(",")[0].split("/")
    if len(scope) < 4:
        raise InvalidClientTokenIdError()
    return scope[0], scope[2], scope[3]


def principal_of(access_key_id: str, token: str | None) -> Principal:
    backend = iam_backends[_STATE.account]["aws"]
    for session in sts_backends[_STATE.account]["aws"].assumed_roles:
        if session.access_key_id == access_key_id and session.session_token == token:
            role_name = session.role_arn.split("/")[-1]
            policies: list[Any] = [
                backend.get_role_policy(role_name, n)[1] for n in backend.list_role_policies(role_name)
            ]
            attached, _ = backend.list_attached_role_policies(role_name)
            policies += [_default_version(p) for p in attached]
            arn = f"arn:aws:sts::{_STATE.account}:assumed-role/{role_name}/{session.session_name}"
            return Principal(arn, policies)
    for user in backend.users.values():
        if any(k.access_key_id == access_key_id for k in user.access_keys):
            docs = [
                backend.get_user_policy(user.name, n)["policy_document"]
                for n in backend.list_user_policies(user.name)
            ]
            return Principal(user.arn, docs)
    raise InvalidClientTokenIdError()


def _default_version(policy: Any) -> Any:
    return next(v.document for v in policy.versions if v.is_default)


def _params(response: Any, service: str) -> dict[str, Any]:
    if service == "lambda":
        match = getattr(response, "uri_match", None) or {}
        params: dict[str, Any] = dict(match if isinstance(match, dict) else match.groupdict())
        params.update({k: v[0] for k, v in response.querystring.items()})
        return params
    if service == "s3":
        return {k: v[0] for k, v in response.querystring.items()}
    parsed = getattr(response, "params", None)  # moto's protocol-aware parsing, where the service has it
    if isinstance(parsed, dict) and parsed:
        return parsed
    body = response.body
    if isinstance(body, dict):
        return body
    if service in _JSON_SERVICES and body:
        try:
            return json.loads(body)
        except (TypeError, ValueError):
            return {}
    return {k: v[0] for k, v in response.querystring.items()}


def _s3_target(response: Any, resource: str) -> tuple[Any, str]:
    """moto's bucket (None if unknown) and the key of an S3 resource ARN (`arn:...:::bucket/key`)."""
    bucket_name, _, key = resource.split(":::", 1)[-1].partition("/")
    return getattr(response.backend, "buckets", {}).get(bucket_name), key


def _object_exists(response: Any, resource: str) -> bool:
    bucket, key = _s3_target(response, resource)
    return bool(bucket is not None and key in bucket.keys)


def _kms_key(response: Any, operation: str, resource: str) -> str | None:
    """The SSE-KMS key an S3 write will use (header, else the bucket default) or a read meets."""
    bucket, key = _s3_target(response, resource)
    if bucket is None or not key:
        return None
    if operation == "GetObject":
        stored = bucket.keys.get(key)
        return stored.kms_key_id if stored is not None and stored.encryption == "aws:kms" else None
    if operation != "PutObject":
        return None
    headers = {k.lower(): v for k, v in response.headers.items()}
    if headers.get("x-amz-server-side-encryption") == "aws:kms":
        return headers.get("x-amz-server-side-encryption-aws-kms-key-id")
    default = (bucket.encryption or {}).get("Rule", {}).get("ApplyServerSideEncryptionByDefault", {})
    return default.get("KMSMasterKeyID") if default.get("SSEAlgorithm") == "aws:kms" else None


def _authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    """The replacement of moto's check (``ActionAuthenticatorMixin._authenticate_and_authorize_action``)."""
    if not _STATE.active:
        return _STATE.original(self, iam_request_cls, resource)
    access_key_id, region, service = _credential_scope(self.headers)
    principal = principal_of(access_key_id, self.headers.get("X-Amz-Security-Token"))
    operation = self.data.get("Action") if service == "s3" else self._get_action()
    call = Call(
        service=service,
        operation=str(operation),
        params=_params(self, service),
        region=region,
        account=_STATE.account,
        resource=resource,
        headers=dict(self.headers),
        object_exists=service != "s3" or operation != "GetObject" or _object_exists(self, resource),
        kms_key=_kms_key(self, str(operation), resource) if service == "s3" else None,
    )
    for request in authorizations(call):
        decision = iam.evaluate(principal.policies, request)
        if decision is not iam.Decision.ALLOW:
            _raise_denied(service, iam.denial_message(principal.arn, request, decision))


class _S3AccessDenied(S3ClientError):
    """S3's AccessDenied (HTTP 403 from the S3 model's error shape) with AWS's message."""

    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message)


class _QueryAccessDenied(_RESTError):
    code = 403


def _raise_denied(service: str, message: str) -> None:
    if service == "s3":
        raise _S3AccessDenied(message)
    if service in _JSON_SERVICES:
        raise JsonRESTError("AccessDeniedException", message)
    raise _QueryAccessDenied("AuthorizationError" if service == "sns" else "AccessDenied", message)


def check(role_arn: str, service: str, request: iam.Authorization) -> None:
    """A permission a service checks itself with the role (e.g. SageMaker pulling the image)."""
    if not _STATE.active:
        return
    credentials = role_credentials(role_arn, service)
    principal = principal_of(credentials.access_key_id, credentials.session_token)
    decision = iam.evaluate(principal.policies, request)
    if decision is not iam.Decision.ALLOW:
        raise AccessDenied(iam.denial_message(principal.arn, request, decision), request.action)


# ---------------------------------------------------------------------------------------------
# the identity of Step Functions' own calls


@contextlib.contextmanager
def acting_as(credentials: Credentials | None) -> Iterator[None]:
    previous = getattr(_STATE.acting, "credentials", None)
    _STATE.acting.credentials = credentials
    try:
        yield
    finally:
        _STATE.acting.credentials = previous


def acting_credentials() -> Credentials | None:
    return getattr(_STATE.acting, "credentials", None)


def state_machine_role(state_machine_arn: str) -> str:
    """The role of a state machine (a Map run's ARN ``...:stateMachine:<name>/<map>`` names its parent)."""
    _, _, _, region, account, _, rest = (state_machine_arn.split(":", 6) + [""] * 7)[:7]
    backend = stepfunctions_parser_backends[account][region]
    for arn in (state_machine_arn, state_machine_arn.split("/", 1)[0]):
        with contextlib.suppress(Exception):
            return backend.describe_state_machine(arn).roleArn
    raise KeyError(f"no state machine {state_machine_arn} ({rest})")


def step_functions_credentials(env: Any) -> Credentials | None:
    """Credentials of the state machine running ``env`` (None when not enforcing)."""
    if not _STATE.active:
        return None
    state_machine = env.states.context_object.context_object_data["StateMachine"]["Id"]
    return role_credentials(state_machine_role(state_machine), "states.amazonaws.com")

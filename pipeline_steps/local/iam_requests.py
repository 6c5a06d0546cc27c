"""What IAM checks for each API call the pipeline makes: actions, resource ARNs, condition keys.

The table follows the Service Authorization Reference ("Actions, resources, and condition keys for
<service>") for the calls this project's roles make; one API call may need several permissions:

- SageMaker ``Create*`` with ``Tags`` also needs ``sagemaker:AddTags`` on the new resource (SageMaker
  "Grant permission to tag resources on creation"; the cause of aws/aws-cdk#26012 and #32294), and a
  ``RoleArn``/``ExecutionRoleArn`` needs ``iam:PassRole`` on that role with
  ``iam:PassedToService = sagemaker.amazonaws.com`` (IAM "Grant a user permissions to pass a role").
  SageMaker ARNs carry the lower-cased name.
- DynamoDB ``TransactWriteItems`` is authorised item by item as ``PutItem``/``UpdateItem``/
  ``DeleteItem``/``ConditionCheckItem`` on each item's table ("Using IAM with DynamoDB
  transactions"); ``BatchWriteItem``/``BatchGetItem`` are their own actions, on every table named.
- S3 with SSE-KMS (a request header or the bucket's default encryption): writing needs
  ``kms:GenerateDataKey`` and reading ``kms:Decrypt`` on the key, bucket keys included (S3 user guide,
  "Using server-side encryption with AWS KMS keys", permissions).
- S3 ``HeadBucket`` is ``s3:ListBucket``; ``ListObjects(V2)`` is ``s3:ListBucket`` with ``s3:prefix``;
  a copy also reads its source; ``GetObject`` of a missing key needs ``s3:ListBucket`` to get 404
  instead of 403 (S3 API reference, GetObject "Permissions").
- CloudWatch ``PutMetricData`` has no resource (``*``) and the ``cloudwatch:namespace`` key.

Anything not listed is checked as ``<service>:<Operation>`` on ``*``: a role without a ``*`` grant
for it is denied, so a call this table forgot fails loudly instead of passing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pipeline_steps.local.iam import Authorization

# Credential-scope service name -> IAM action prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch"}
SAGEMAKER = "sagemaker.amazonaws.com"
MANAGED_TAG = {"Key": "MANAGED_BY_AWS", "Value": "STARTED_BY_STEP_FUNCTIONS"}


@dataclass(frozen=True)
class Call:
    """One request to the embedded AWS, as far as authorization needs it."""

    service: str  # credential scope: s3, dynamodb, sagemaker, sns, lambda, states, events, monitoring...
    operation: str  # API operation (or moto's S3 action name)
    params: Mapping[str, Any]
    region: str
    account: str
    partition: str = "aws"
    resource: str = "*"  # what moto computed (S3: bucket or object ARN)
    headers: Mapping[str, str] = field(default_factory=dict)
    object_exists: bool = True  # S3 GetObject: does the key exist?
    kms_key: str | None = None  # S3: the KMS key of the object written or read (SSE-KMS)


def authorizations(call: Call) -> list[Authorization]:
    handler = _HANDLERS.get(call.service)
    found = handler(call) if handler else None
    if found is not None:
        return found
    prefix = IAM_PREFIX.get(call.service, call.service)
    return [Authorization(f"{prefix}:{call.operation}", "*")]


def _arn(call: Call, service: str, rest: str, *, region: bool = True) -> str:
    where = call.region if region else ""
    return f"arn:{call.partition}:{service}:{where}:{call.account}:{rest}"


# --------------------------------------------------------------------------------------------- S3

_S3_AS_LIST = {"ListObjects", "ListObjectsV2", "HeadBucket", "ListBucket"}


def _s3(call: Call) -> list[Authorization]:
    bucket = call.resource.split(":::", 1)[-1].split("/", 1)[0]
    bucket_arn = f"arn:{call.partition}:s3:::{bucket}"
    if call.operation in _S3_AS_LIST:
        prefix = call.params.get("prefix", "")
        return [Authorization("s3:ListBucket", bucket_arn, {"s3:prefix": prefix} if prefix else {})]
    found = [Authorization(f"s3:{call.operation}", call.resource)]
    source = call.headers.get("x-amz-copy-source") or call.headers.get("X-Amz-Copy-Source")
    if source:
        path = unquote(source.split("?", 1)[0]).lstrip("/")
        found.append(Authorization("s3:GetObject", f"arn:{call.partition}:s3:::{path}"))
    if call.kms_key and call.operation in ("PutObject", "GetObject"):
        key = call.kms_key if call.kms_key.startswith("arn:") else _arn(call, "kms", f"key/{call.kms_key}")
        action = "kms:GenerateDataKey" if call.operation == "PutObject" else "kms:Decrypt"
        found.append(Authorization(action, key))
    if call.operation == "GetObject" and not call.object_exists:
        key = call.resource.split(":::", 1)[-1].split("/", 1)[-1]
        found.append(Authorization("s3:ListBucket", bucket_arn, {"s3:prefix": key}))
    return found


# --------------------------------------------------------------------------------------------- DynamoDB


def _table(call: Call, name: str) -> str:
    return name if name.startswith("arn:") else _arn(call, "dynamodb", f"table/{name}")


_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _dynamodb(call: Call) -> list[Authorization] | None:
    p, op = call.params, call.operation
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [Authorization(f"dynamodb:{op}", _table(call, t)) for t in p.get("RequestItems", {})]
    if op == "TransactWriteItems":
        found = []
        for item in p.get("TransactItems", []):
            for kind, body in item.items():
                found.append(Authorization(f"dynamodb:{_TRANSACT[kind]}", _table(call, body["TableName"])))
        return found
    if op == "TransactGetItems":
        return [
            Authorization("dynamodb:GetItem", _table(call, i["Get"]["TableName"])) for i in p["TransactItems"]
        ]
    if "TableName" in p:
        return [Authorization(f"dynamodb:{op}", _table(call, p["TableName"]))]
    return None


# --------------------------------------------------------------------------------------------- SageMaker

_SAGEMAKER_RESOURCE = {
    "TrainingJob": ("training-job", "TrainingJobName"),
    "TransformJob": ("transform-job", "TransformJobName"),
    "ProcessingJob": ("processing-job", "ProcessingJobName"),  # the Spark prepare (decision 0016)
    "Model": ("model", "ModelName"),
}


def _sagemaker(call: Call) -> list[Authorization] | None:
    p, op = call.params, call.operation
    if op in ("AddTags", "ListTags", "DeleteTags"):
        return [Authorization(f"sagemaker:{op}", p.get("ResourceArn", "*"))]
    for noun, (kind, name_field) in _SAGEMAKER_RESOURCE.items():
        if op.endswith(noun) and name_field in p:
            arn = _arn(call, "sagemaker", f"{kind}/{str(p[name_field]).lower()}")
            context: dict[str, Any] = {}
            if "EnableNetworkIsolation" in p:
                context["sagemaker:NetworkIsolation"] = str(bool(p["EnableNetworkIsolation"])).lower()
            found = [Authorization(f"sagemaker:{op}", arn, context)]
            if op.startswith("Create") and p.get("Tags"):
                found.append(Authorization("sagemaker:AddTags", arn))
            for role_field in ("RoleArn", "ExecutionRoleArn"):
                if op.startswith("Create") and p.get(role_field):
                    found.append(
                        Authorization("iam:PassRole", p[role_field], {"iam:PassedToService": SAGEMAKER})
                    )
            return found
    return None


# --------------------------------------------------------------------------------------------- others


def _lambda(call: Call) -> list[Authorization] | None:
    if call.operation not in ("Invoke", "InvokeAsync"):
        return None
    name = unquote(str(call.params.get("FunctionName", "")))
    qualifier = call.params.get("Qualifier")
    if not name.startswith("arn:"):
        name = _arn(call, "lambda", f"function:{name}")
    if qualifier and name.count(":") == 6:
        name = f"{name}:{qualifier}"
    return [Authorization("lambda:InvokeFunction", name)]


def _sns(call: Call) -> list[Authorization] | None:
    arn = call.params.get("TopicArn") or call.params.get("TargetArn")
    return [Authorization(f"sns:{call.operation}", arn)] if arn else None


_STATES_ARN = ("stateMachineArn", "executionArn", "mapRunArn", "activityArn")


def _states(call: Call) -> list[Authorization] | None:
    arn = next((call.params[k] for k in _STATES_ARN if call.params.get(k)), None)
    return [Authorization(f"states:{call.operation}", arn)] if arn else None


def _events(call: Call) -> list[Authorization] | None:
    name = call.params.get("Name") or call.params.get("Rule")
    if not name:
        return None
    bus = call.params.get("EventBusName")
    rest = f"rule/{bus}/{name}" if bus and bus != "default" else f"rule/{name}"
    return [Authorization(f"events:{call.operation}", _arn(call, "events", rest))]


def _cloudwatch(call: Call) -> list[Authorization] | None:
    if call.operation != "PutMetricData":
        return None
    return [
        Authorization("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": call.params["Namespace"]})
    ]


_HANDLERS = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sagemaker": _sagemaker,
    "lambda": _lambda,
    "sns": _sns,
    "states": _states,
    "events": _events,
    "monitoring": _cloudwatch,
}

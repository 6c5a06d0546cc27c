"""`cdk deploy`, rehearsed in the embedded AWS: synthesize, upload file assets, create each stack.

The synthesized templates are created as they are, except for the documented local edits of
``localize_template``: the bootstrap-version parameter and rule go (there is no bootstrap stack),
a ``TableV2`` (``AWS::DynamoDB::GlobalTable``) becomes the single-region ``AWS::DynamoDB::Table``
it is locally, and resource types moto 5.2.5's CloudFormation cannot create (and that play no
part in a run: alarms, dashboards, Scheduler, X-Ray, bucket/topic policies, custom resources run
by Node.js providers...) are left out and listed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_NOTE = "not emulated locally"
_STACK_TYPE = "aws:cloudformation:stack"
_ASSET_TYPE = "cdk:asset-manifest"


class DeployError(RuntimeError):
    """A stack could not be created in the embedded AWS; the message names stack and resource."""


@dataclass(frozen=True)
class StackArtifact:
    name: str
    template_path: Path
    assets_path: Path | None
    depends_on: tuple[str, ...]


@dataclass
class Deployment:
    """What the runner needs from the created stacks (names come from the resources themselves)."""

    stacks: list[str]
    state_machine_arn: str
    bucket: str
    table: str
    functions: dict[str, dict[str, Any]]  # function name -> {"handler", "environment"}
    topics: list[str]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (stack, logical id, type)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    synth: dict[str, Any] = field(default_factory=dict)  # seconds, cached, assembly directory

    def step_function(self, step: str) -> dict[str, Any] | None:
        """The deployed function whose handler is ``pipeline_steps.<step>.handler...``."""
        for name, fn in self.functions.items():
            if str(fn["handler"]).startswith(f"pipeline_steps.{step}.handler"):
                return {"name": name, **fn}
        return None

    def step_config(self, step: str) -> dict[str, Any]:
        fn = self.step_function(step)
        return json.loads(fn["environment"].get("STEP_CONFIG", "{}")) if fn else {}


# ---------------------------------------------------------------------------------------------
# synthesis


def cdk_context(overrides: dict[str, Any] | None = None, cdk_json: Path = REPO_ROOT / "cdk.json") -> dict:
    """cdk.json's context merged with overrides: what the CDK CLI passes to the app."""
    context = dict(json.loads(cdk_json.read_text(encoding="utf-8")).get("context", {}))
    context.update(overrides or {})
    return context


def synth(outdir: Path, *, context: dict[str, Any] | None = None, app: Path = REPO_ROOT / "app.py") -> Path:
    """Run the CDK app like the CDK CLI does (CDK_OUTDIR + CDK_CONTEXT_JSON); returns the assembly."""
    outdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        CDK_OUTDIR=str(outdir),
        CDK_CONTEXT_JSON=json.dumps(cdk_context(context)),
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    )
    for key in ("AWS_ENDPOINT_URL", "MOTO_PORT"):  # synthesis never talks to AWS
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, str(app)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise DeployError(f"synthesis of {app} failed:\n{proc.stderr[-4000:]}")
    return outdir


def _source_fingerprint(context: dict[str, Any], app: Path) -> str:
    """Everything a synthesis depends on: context, app, infra, the runtime code in the assets."""
    import importlib.metadata

    digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode())
    digest.update(f"{sys.version}|{importlib.metadata.version('aws-cdk-lib')}".encode())
    roots = [app, REPO_ROOT / "cdk.json", REPO_ROOT / "infra", REPO_ROOT / "pipeline_steps"]
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(file.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    # `topx:profile` names a file of context keys the app reads (infra/profiles.py): its bytes count
    profile = context.get("topx:profile")
    if isinstance(profile, str) and profile:
        path = Path(profile) if Path(profile).is_absolute() else REPO_ROOT / profile
        digest.update(b"profile\0" + (path.read_bytes() if path.is_file() else b"missing"))
    return digest.hexdigest()[:20]


def synth_cached(
    *,
    context: dict[str, Any] | None = None,
    app: Path = REPO_ROOT / "app.py",
    log: Any = print,
    keep: int = 2,
) -> tuple[Path, bool]:
    """``synth`` into a cache keyed by the source fingerprint: an unchanged tree is not re-synthesized.

    Synthesis (jsii, Lambda bundling, cdk-nag) takes most of a local deploy; the cloud assembly is a
    pure function of the sources and the context, so an identical tree reuses the last one.
    """
    from pipeline_steps.datasets.movielens import cache_dir

    root = cache_dir() / "cdk-assembly"
    key = _source_fingerprint(cdk_context(context), app)
    target = root / key
    if (target / "manifest.json").exists() and (target / ".complete").exists():
        log(f"  cloud assembly unchanged since the last synthesis: reusing {target}")
        os.utime(target)  # recently used: not evicted under a concurrent run
        return target, True
    staging = root / f".{key}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        synth(staging, context=context, app=app)
        (staging / ".complete").write_text(key)
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)  # an incomplete leftover
            # Another process may have finished the same key meanwhile: then keep its copy.
            with contextlib.suppress(OSError):
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # Evict older assemblies, but never one touched recently: another run may be deploying it.
    recent = time.time() - 900
    old = sorted(
        (p for p in root.iterdir() if p.is_dir() and p != target and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
    )
    for stale in old[: max(0, len(old) - (keep - 1))]:
        if stale.stat().st_mtime < recent:
            shutil.rmtree(stale, ignore_errors=True)
    return target, False


def read_assembly(outdir: Path) -> list[StackArtifact]:
    """The stacks of a cloud assembly, dependencies first."""
    manifest = json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))
    artifacts = manifest.get("artifacts", {})
    stacks: dict[str, StackArtifact] = {}
    for art_id, art in artifacts.items():
        if art.get("type") != _STACK_TYPE:
            continue
        deps = tuple(art.get("dependencies", []))
        assets = next(
            (
                outdir / artifacts[d]["properties"]["file"]
                for d in deps
                if d in artifacts and artifacts[d].get("type") == _ASSET_TYPE
            ),
            None,
        )
        props = art.get("properties", {})
        name = props.get("stackName", art_id)
        stacks[art_id] = StackArtifact(name, outdir / props["templateFile"], assets, deps)
    ordered: list[str] = []

    def visit(art_id: str) -> None:
        if art_id in ordered or art_id not in stacks:
            return
        for dep in stacks[art_id].depends_on:
            visit(dep)
        ordered.append(art_id)

    for art_id in stacks:
        visit(art_id)
    return [stacks[a] for a in ordered]


# ---------------------------------------------------------------------------------------------
# assets


_ZIPPED: dict[str, bytes] = {}  # asset directory name (CDK names it by its content hash) -> zip


def _zip_directory(path: Path) -> bytes:
    """The zip of a directory asset; CDK names asset directories ``asset.<content hash>``, so a
    second deploy of the same asset (another copy of the assembly) reuses the first zip."""
    if path.name.startswith("asset.") and path.name in _ZIPPED:
        return _ZIPPED[path.name]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for file in sorted(path.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(path).as_posix())
    if path.name.startswith("asset."):
        _ZIPPED.clear()  # one bundle at a time: it is tens of MB
        _ZIPPED[path.name] = buf.getvalue()
    return buf.getvalue()


def publish_assets(assets_path: Path, s3: Any, *, account_id: str, region: str) -> list[str]:
    """Upload the file assets where the template expects them (creating the bootstrap bucket)."""
    manifest = json.loads(assets_path.read_text(encoding="utf-8"))
    if manifest.get("dockerImages"):
        raise DeployError(f"{assets_path.name}: Docker image assets cannot be published without Docker")
    uploaded = []
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for asset_id, asset in manifest.get("files", {}).items():
        source = assets_path.parent / asset["source"]["path"]
        body = _zip_directory(source) if asset["source"].get("packaging") == "zip" else source.read_bytes()
        for dest in asset["destinations"].values():
            bucket = (
                dest["bucketName"].replace("${AWS::AccountId}", account_id).replace("${AWS::Region}", region)
            )
            bucket = bucket.replace("${AWS::Partition}", "aws")
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)
                existing.add(bucket)
            s3.put_object(Bucket=bucket, Key=dest["objectKey"], Body=body)
            uploaded.append(f"s3://{bucket}/{dest['objectKey']} ({asset_id[:12]}, {len(body)} bytes)")
    return uploaded


# ---------------------------------------------------------------------------------------------
# template edits


def supported_types() -> set[str]:
    """Resource types moto's CloudFormation can create (read from moto itself)."""
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    return set(get_model_map()) | set(NULL_MODELS)


def _global_table_to_table(props: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "TableName",
        "AttributeDefinitions",
        "KeySchema",
        "BillingMode",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "StreamSpecification",
        "TimeToLiveSpecification",
    )
    out = {k: props[k] for k in keep if k in props}
    replica = (props.get("Replicas") or [{}])[0]
    for k in ("PointInTimeRecoverySpecification", "Tags", "DeletionProtectionEnabled"):
        if k in replica:
            out[k] = replica[k]
    return out


def _references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        if "Ref" in node and isinstance(node["Ref"], str):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            att = node["Fn::GetAtt"]
            found.add(att[0] if isinstance(att, list) else str(att).split(".")[0])
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for value in node:
            _references(value, found)


def _replace_references(node: Any, removed: set[str]) -> Any:
    if isinstance(node, dict):
        ref = node.get("Ref") if len(node) == 1 else None
        att = node.get("Fn::GetAtt") if len(node) == 1 else None
        target = ref if isinstance(ref, str) else (att[0] if isinstance(att, list) else None)
        if target in removed:
            return f"{LOCAL_NOTE}:{target}"
        return {k: _replace_references(v, removed) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_references(v, removed) for v in node]
    return node


def localize_template(template: dict[str, Any], supported: set[str]) -> tuple[dict[str, Any], list[tuple]]:
    """The documented local edits; returns the new template and the skipped (logical id, type)."""
    tpl = copy.deepcopy(template)
    tpl.get("Parameters", {}).pop("BootstrapVersion", None)
    tpl.get("Rules", {}).pop("CheckBootstrapVersion", None)
    for section in ("Parameters", "Rules"):
        if section in tpl and not tpl[section]:
            del tpl[section]
    resources = tpl.get("Resources", {})
    skipped = []
    for logical_id, res in list(resources.items()):
        rtype = res.get("Type", "")
        if rtype == "AWS::DynamoDB::GlobalTable":
            res["Type"] = "AWS::DynamoDB::Table"
            res["Properties"] = _global_table_to_table(res.get("Properties", {}))
        elif (
            rtype.startswith("Custom::")
            or rtype == "AWS::CloudFormation::CustomResource"
            or rtype not in supported
        ):
            skipped.append((logical_id, rtype))
            del resources[logical_id]
    removed = {lid for lid, _ in skipped}
    if removed:
        for res in resources.values():
            deps = res.get("DependsOn")
            if isinstance(deps, str) and deps in removed:
                del res["DependsOn"]
            elif isinstance(deps, list):
                res["DependsOn"] = [d for d in deps if d not in removed]
        tpl["Resources"] = _replace_references(resources, removed)
        outputs = tpl.get("Outputs", {})
        for key in list(outputs):
            refs: set[str] = set()
            _references(outputs[key], refs)
            if refs & removed:
                del outputs[key]
    return tpl, skipped


# ---------------------------------------------------------------------------------------------
# create the stacks, then find what the runner needs


def _create_stack(cfn: Any, name: str, template: dict[str, Any]) -> None:
    try:
        cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    except Exception as exc:
        raise DeployError(f"stack {name}: create_stack failed: {exc}") from exc
    status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    if status != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
        failed = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
            for e in events
            if "FAILED" in e.get("ResourceStatus", "")
        ]
        raise DeployError(f"stack {name}: {status}; " + "; ".join(failed[:5]))


def deploy(
    aws: Any,
    *,
    context: dict[str, Any] | None = None,
    app: Path = REPO_ROOT / "app.py",
    outdir: Path | None = None,
    log: Any = print,
    assembly: Path | None = None,
) -> Deployment:
    """Synthesize ``app`` and create its stacks in the embedded AWS ``aws`` (a ``LocalAws``).

    With ``assembly``, nothing is synthesized: that existing cloud assembly is deployed as it is."""
    from pipeline_steps.local import adapter

    started = time.monotonic()
    cached = False
    if assembly is not None:
        outdir = assembly
        log(f"  deploying the cloud assembly {assembly} as it is (no synthesis)")
    elif outdir is None:
        outdir, cached = synth_cached(context=context, app=app, log=log)
    else:
        synth(outdir, context=context, app=app)
    synth_info = {"seconds": round(time.monotonic() - started, 3), "cached": cached, "assembly": str(outdir)}
    if not cached and assembly is None:
        log(f"  synthesized {app.name} in {synth_info['seconds']:.1f}s")
    stacks = read_assembly(outdir)
    s3, cfn = aws.client("s3"), aws.client("cloudformation")
    supported = supported_types()
    skipped: list[tuple[str, str, str]] = []
    for stack in stacks:
        if stack.assets_path is not None:
            publish_assets(stack.assets_path, s3, account_id=aws.account_id, region=aws.region)
        template = json.loads(stack.template_path.read_text(encoding="utf-8"))
        local, dropped = localize_template(template, supported)
        skipped += [(stack.name, lid, rtype) for lid, rtype in dropped]
        _create_stack(cfn, stack.name, local)
        log(f"  created stack {stack.name} ({len(local.get('Resources', {}))} resources)")
    arns = adapter.mirror_state_machines(aws.account_id, aws.region)
    deployment = _describe(aws, [s.name for s in stacks], arns, skipped)
    deployment.synth = synth_info
    return deployment


def _describe(aws: Any, stack_names: list[str], sm_arns: list[str], skipped: list) -> Deployment:
    cfn, lam = aws.client("cloudformation"), aws.client("lambda")
    resources: dict[str, list[str]] = {}
    outputs: dict[str, dict[str, str]] = {}
    for name in stack_names:
        for res in cfn.describe_stack_resources(StackName=name)["StackResources"]:
            if "PhysicalResourceId" in res:  # moto gives none for some types (AWS::Lambda::Permission)
                resources.setdefault(res["ResourceType"], []).append(res["PhysicalResourceId"])
        desc = cfn.describe_stacks(StackName=name)["Stacks"][0]
        outputs[name] = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    functions = {}
    for fn_name in resources.get("AWS::Lambda::Function", []):
        conf = lam.get_function_configuration(FunctionName=fn_name)
        functions[conf["FunctionName"]] = {
            "handler": conf.get("Handler", ""),
            "environment": conf.get("Environment", {}).get("Variables", {}),
        }
    envs = [f["environment"] for f in functions.values()]
    bucket = next((e["BUCKET_NAME"] for e in envs if "BUCKET_NAME" in e), None)
    table = next((e["TABLE_NAME"] for e in envs if "TABLE_NAME" in e), None)
    buckets, tables = resources.get("AWS::S3::Bucket", []), resources.get("AWS::DynamoDB::Table", [])
    bucket = bucket or (buckets[0] if len(buckets) == 1 else None)
    table = table or (tables[0] if len(tables) == 1 else None)
    sm_physical = resources.get("AWS::StepFunctions::StateMachine", [])
    sm_arn = next((a for a in sm_arns if a in sm_physical or a.rsplit(":", 1)[-1] in sm_physical), None)
    if sm_arn is None and len(sm_arns) == 1:
        sm_arn = sm_arns[0]
    missing = [n for n, v in (("state machine", sm_arn), ("data bucket", bucket), ("table", table)) if not v]
    if missing or sm_arn is None or bucket is None or table is None:
        raise DeployError(f"deployed stacks {stack_names} lack: {', '.join(missing)}")
    return Deployment(
        stacks=stack_names,
        state_machine_arn=sm_arn,
        bucket=bucket,
        table=table,
        functions=functions,
        topics=resources.get("AWS::SNS::Topic", []),
        skipped=skipped,
        outputs=outputs,
    )

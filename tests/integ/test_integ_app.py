"""The real-AWS integration test's app, synthesized offline (no AWS, no MovieLens download).

`make integ` deploys this app to an account; here it is only synthesized, so the app cannot rot: the
test fails when it stops synthesizing, when its stacks or assertions drift from the checked-in
snapshot (`integ/snapshot/`, refreshed by `make integ-snapshot`), or when the
wiring the assertions rely on breaks. The project stacks are not snapshotted (tests/infra covers
them); only the integ-specific settings are checked.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline_steps.formats.recordio import read_dense
from pipeline_steps.guard.core import run_id_for
from pipeline_steps.local_algorithms import knn as local_knn
from pipeline_steps.local_algorithms import knn_lines
from pipeline_steps.local_algorithms.hyperparameters import parse_knn

ROOT = Path(__file__).resolve().parents[2]
INTEG_FILE = ROOT / "integ" / "integ_pipeline.py"


def _load_integ() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("integ_pipeline", INTEG_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


integ = _load_integ()
P = integ.PROJECT


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("integ")
    app = integ.build_integ_app(outdir=str(tmp / "out"), data=integ.placeholder_dir(tmp), cache=tmp)
    app.synth()
    return tmp / "out"


def template(assembly: Path, stack: str) -> dict[str, Any]:
    return json.loads((assembly / f"{P}-{stack}.template.json").read_text())


def of_type(tpl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == kind}


def calls(tpl: dict[str, Any], api: str) -> list[dict[str, Any]]:
    return [
        v["Properties"]
        for v in tpl["Resources"].values()
        if v["Type"].startswith("Custom::DeployAssert@SdkCall") and v["Properties"]["api"] == api
    ]


def rendered(value: Any) -> str:
    """A (possibly Fn::Join'ed) template value as one string, intrinsics as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        sep, parts = value["Fn::Join"]
        return sep.join(rendered(p) for p in parts)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def test_snapshot_is_current(assembly: Path) -> None:
    expected = {p.name: json.loads(p.read_text()) for p in sorted(integ.SNAPSHOT_DIR.glob("*.json"))}
    actual = json.loads(json.dumps(integ.snapshot_of(assembly)))
    assert sorted(actual) == sorted(expected), "snapshot files differ; run `make integ-snapshot`"
    for name in expected:
        assert actual[name] == expected[name], (
            f"{name} drifted from integ/snapshot/; if the change is intended, "
            "run `make integ-snapshot` and review the diff"
        )


def test_manifest_runs_both_project_stacks_and_the_assertions(assembly: Path) -> None:
    manifest = json.loads((assembly / "manifest.json").read_text())
    stacks = {k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"}
    assert stacks == {f"{P}-storage", f"{P}-pipeline", f"{P}-fixtures", f"{P}-assertions"}
    (case,) = json.loads((assembly / "integ.json").read_text())["testCases"].values()
    assert case["stacks"] == [f"{P}-storage", f"{P}-pipeline", f"{P}-fixtures"]
    assert case["assertionStack"] == f"{P}-assertions"
    assert case["stackUpdateWorkflow"] is False
    for stack in stacks:  # every stack in the region the test runs in, none bound to an account
        env = manifest["artifacts"][stack]["environment"]
        assert env == "aws://unknown-account/us-east-1", (stack, env)


def test_storage_is_disposable_and_the_pipeline_small(assembly: Path) -> None:
    storage = template(assembly, "storage")
    for kind in ("AWS::S3::Bucket", "AWS::DynamoDB::Table"):
        for name, res in of_type(storage, kind).items():
            assert res["DeletionPolicy"] == "Delete", name
    assert len(of_type(storage, "Custom::S3AutoDeleteObjects")) == 2  # both buckets emptied on delete
    pipeline = template(assembly, "pipeline")
    assert not of_type(pipeline, "AWS::Events::Rule"), "the schedule must be off"
    (machine,) = of_type(pipeline, "AWS::StepFunctions::StateMachine").values()
    definition = rendered(machine["Properties"]["DefinitionString"])
    types_used = set(re.findall(r'"InstanceType":"([^"]+)"', definition))
    assert types_used == {integ.INSTANCE_TYPE}  # FM (with and without a test channel), k-NN, transform
    assert '"epochs":"2"' in definition
    # the probe's transform asks for the same output as the pipeline's
    for fragment in (f'"Accept":"{integ.PROBE_ACCEPT}"', '"AssembleWith":"Line"', '"SplitType":"RecordIO"'):
        assert fragment in definition, fragment


def test_user_deployments_keep_their_data() -> None:
    """The disposable switch is the integ app's only: app.py still deploys RETAIN storage."""
    import aws_cdk as cdk

    from app import add_project_stacks, default_context
    from infra.config import AppConfig

    app = cdk.App(context=default_context())
    storage, _ = add_project_stacks(app, AppConfig.from_context(app.node.get_all_context()))
    tpl = cdk.assertions.Template.from_stack(storage).to_json()
    policies = {r["Type"]: r.get("DeletionPolicy") for r in tpl["Resources"].values()}
    assert policies["AWS::S3::Bucket"] == "Retain" and policies["AWS::DynamoDB::Table"] == "Retain"
    assert "Custom::S3AutoDeleteObjects" not in policies


def test_pipeline_assertions_target_the_deployed_run(assembly: Path) -> None:
    assertions = template(assembly, "assertions")
    pipeline = template(assembly, "pipeline")
    fixtures = template(assembly, "fixtures")
    (pipeline_machine,) = of_type(pipeline, "AWS::StepFunctions::StateMachine")
    (probe_machine,) = of_type(fixtures, "AWS::StepFunctions::StateMachine")
    starts = {rendered(c["parameters"]["stateMachineArn"]): c for c in calls(assertions, "startExecution")}
    assert len(starts) == 2
    (pipeline_start,) = [k for k in starts if pipeline_machine in k]
    (probe_start,) = [k for k in starts if probe_machine in k]
    assert pipeline_start != probe_start
    described = [
        json.loads(c["expected"])["$ObjectLike"]["status"] for c in calls(assertions, "describeExecution")
    ]
    # per execution: one call polls until the execution has ended, one expects SUCCEEDED
    assert sorted(map(str, described)) == sorted(map(str, [{"$StringLike": integ.ENDED}, "SUCCEEDED"] * 2))
    items = calls(assertions, "getItem")
    assert len(items) == 2
    pointer = next(c for c in items if isinstance(c["parameters"]["Key"], str))
    assert json.loads(pointer["parameters"]["Key"]) == {"pk": {"S": "pointer"}, "sk": {"S": "current"}}
    user = next(c for c in items if c is not pointer)  # its key holds the run id: a token
    assert f'"pk":{{"S":"u#{integ.USER_ID}"}}' in rendered(user["parameters"]["Key"])
    pipeline_start_id = next(
        k for k, v in assertions["Resources"].items() if v.get("Properties") is starts[pipeline_start]
    )
    run_id = json.dumps(
        {
            "Fn::Select": [
                7,
                {"Fn::Split": [":", {"Fn::GetAtt": [pipeline_start_id, "apiCallResponse.executionArn"]}]},
            ]
        },
        separators=(",", ":"),
    )
    for call in items:
        assert f'"Fn::ImportValue":"{P}-table-name"' in rendered(call["parameters"]["TableName"])
        # The run the items must name: the execution the pipeline assertion started.
        assert run_id in rendered(call["expected"])
    assert run_id in rendered(user["parameters"]["Key"])
    outputs = assertions["Outputs"]
    assert {"PipelineExecutionArn", "ProbeExecutionArn"} <= set(outputs)


def test_an_unnamed_execution_keeps_its_name_as_run_id() -> None:
    """The assertions expect items under the execution's own name: startExecution without a name
    gets a UUID, which the guard must keep unchanged as the run id."""
    name = str(uuid.uuid4())
    assert run_id_for(name) == name


def test_fixtures_upload_the_interactions_and_the_probe(assembly: Path) -> None:
    fixtures = template(assembly, "fixtures")
    deployments = of_type(fixtures, "Custom::CDKBucketDeployment")
    prefixes = sorted(d["Properties"]["DestinationBucketKeyPrefix"] for d in deployments.values())
    assert prefixes == [integ.INPUT_PREFIX, integ.PROBE_PREFIX]
    interactions = next(
        d for d in deployments.values() if d["Properties"]["DestinationBucketKeyPrefix"] == integ.INPUT_PREFIX
    )
    bucket = rendered(interactions["Properties"]["DestinationBucketName"])
    assert bucket == json.dumps({"Fn::ImportValue": f"{P}-bucket-name"}, separators=(",", ":"))
    (machine,) = of_type(fixtures, "AWS::StepFunctions::StateMachine").values()
    definition = rendered(machine["Properties"]["DefinitionString"])
    for fragment in (
        '"TrainingImage":"382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1"',
        '"index_metric":"INNER_PRODUCT"',
        '"Accept":"application/jsonlines; verbose=true"',
        '"AssembleWith":"Line"',
        '"SplitType":"RecordIO"',
        '"ContentType":"application/x-recordio-protobuf"',
        '"S3OutputPath.$":"States.Format(\'s3://',
        '"S3Uri.$":"$.locations.train"',
        '"S3OutputPath.$":"$.locations.model"',
        '"train":"s3://',
        '"model":"s3://',
    ):
        assert fragment in definition, fragment


def test_probe_files_decode_to_the_probe_vectors(tmp_path: Path) -> None:
    probe = integ.probe_dir(tmp_path)
    items, labels = read_dense((probe / integ.PROBE_TRAIN_KEY).read_bytes())
    assert items.tolist() == integ.PROBE_ITEMS and labels.reshape(-1).tolist() == integ.PROBE_LABELS
    query, none = read_dense((probe / integ.PROBE_QUERY_KEY).read_bytes())
    assert query.tolist() == integ.PROBE_QUERY and none is None


class _FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_paginator(self, name: str) -> Any:
        objects = self.objects

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict]:
                return [{"Contents": [{"Key": k} for k in objects if k.startswith(Prefix)]}]

        return Paginator()

    def get_object(self, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(self.objects[Key])}


def local_knn_out() -> str:
    """The probe's `.out` as the project's local k-NN (faiss, the probe's settings) and `.out` writer
    produce it: the project's assumptions about the real one."""
    model = local_knn.build(
        np.array(integ.PROBE_ITEMS, np.float32),
        np.array(integ.PROBE_LABELS, np.float32),
        parse_knn(integ.PROBE_HYPERPARAMETERS),
    )
    distances, labels = local_knn.search(model, np.array(integ.PROBE_QUERY, np.float32))
    return knn_lines.format_results(labels, distances, local_knn.predict(model, labels))


def read_probe_output(objects: dict[str, str], prefix: str = "probe/out/some-execution/") -> dict[str, Any]:
    """The probe reader Lambda's report on `{name: text}` objects under `prefix` (needs a region set)."""
    reader: dict[str, Any] = {}
    exec(compile(integ.PROBE_READER, "probe_reader", "exec"), reader)
    reader["s3"] = _FakeS3({prefix + name: text.encode() for name, text in objects.items()})
    return reader["handler"]({"bucket": "b", "prefix": prefix}, None)


def test_expected_probe_result_is_what_the_local_knn_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's constants are the project's assumptions: the local k-NN's `.out`, read by the
    probe's Lambda, gives exactly the expected report."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    text = local_knn_out()
    report = read_probe_output({"query.rec.out": text})
    assert report["object_names"] == integ.EXPECTED_OUTPUT_OBJECTS
    assert report["errors"] == [] and report["blank_lines"] == 0
    assert report["ends_with_newline"] == {"query.rec.out": True}
    (record,) = report["records"]
    assert record["keys"] == integ.EXPECTED_LINE_KEYS
    assert record["labels"] == integ.EXPECTED_LABELS
    assert record["distances"] == integ.EXPECTED_DISTANCES
    assert report["raw"] == {"query.rec.out": text}


def test_integ_runner_feature_flags_are_dropped_other_context_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = ROOT / "node_modules" / "@aws-cdk" / "integ-runner" / "lib" / "recommended-feature-flags.json"
    if not flags.is_file():
        pytest.skip("npm tools not installed")
    recommended = json.loads(flags.read_text())
    given = {**recommended, "@aws-cdk/core:bootstrapQualifier": "abc", "topx:x": 5, "aws:cdk:x": True}
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps(given))
    assert integ._runner_context() == {
        "@aws-cdk/core:bootstrapQualifier": "abc",
        "topx:x": 5,
        "aws:cdk:x": True,
    }


def test_run_reads_assertion_results_from_the_assertion_stack_outputs(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("integ_run", ROOT / "integ" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    outputs = tmp_path / "outputs.json"
    assert run.assertion_results(outputs) == ({}, {})  # nothing deployed: no results (run.py fails)
    outputs.write_text(
        json.dumps(
            {
                f"{P}-storage": {"BucketName": "b"},
                f"{P}-assertions": {
                    "AssertionResultsAwsApiCallDynamoDBgetItemabc": json.dumps({"status": "success"}),
                    "AssertionResultsAwsApiCallStepFunctionsdescribeExecutiondef": json.dumps(
                        {"status": "fail", "message": "Expected SUCCEEDED but received FAILED"}
                    ),
                    "ProbeExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:m:e",
                },
            }
        )
    )
    results, other = run.assertion_results(outputs)
    assert {k: v["status"] for k, v in results.items()} == {
        "AssertionResultsAwsApiCallDynamoDBgetItemabc": "success",
        "AssertionResultsAwsApiCallStepFunctionsdescribeExecutiondef": "fail",
    }
    assert other == {"ProbeExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:m:e"}
    assert run.PROJECT == integ.PROJECT
    assert run.ASSERTIONS_STACK.endswith("-assertions")


# Runs integ-tests-alpha's own assertion Lambda code (from the installed package) on made-up API
# responses: the expectations in the assertions stack must accept a good run and reject bad ones.
_MATCHER_JS = """
const { AssertionHandler } = require(process.argv[2]);
const pairs = JSON.parse(require('fs').readFileSync(process.argv[3]));
Promise.all(pairs.map(([expected, actual]) => {
  const h = new AssertionHandler({ RequestType: 'Create', ResponseURL: 'x', ResourceProperties: {} },
                                 { getRemainingTimeInMillis: () => 600000 });
  clearTimeout(h.timeout);
  return h.processEvent({ expected, actual }).then(r => JSON.parse(r.assertion).status);
})).then(s => { console.log(JSON.stringify(s)); process.exit(0); });
"""


def _matcher(tmp: Path) -> Path:
    import shutil
    import subprocess
    import tarfile

    import aws_cdk.integ_tests_alpha as alpha

    if shutil.which("node") is None:
        pytest.skip("node not installed")
    (tgz,) = Path(alpha.__file__).parent.glob("_jsii/*.tgz")
    member = "package/lib/assertions/providers/lambda-handler.bundle/index.js"
    with tarfile.open(tgz) as tar:
        source = tar.extractfile(member).read().decode()
    bundle = tmp / "bundle.js"
    bundle.write_text(source + "\nmodule.exports.AssertionHandler = AssertionHandler;\n")
    (tmp / "check.js").write_text(_MATCHER_JS)
    assert subprocess.run(["node", "--version"], capture_output=True, check=False).returncode == 0
    return bundle


def _judge(tmp: Path, pairs: list[tuple[str, Any]]) -> list[str]:
    import subprocess

    bundle = _matcher(tmp)
    (tmp / "pairs.json").write_text(json.dumps(pairs))
    proc = subprocess.run(
        ["node", str(tmp / "check.js"), str(bundle), str(tmp / "pairs.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _with_run_id(value: Any, run_id: str) -> str:
    """An `expected` value with the run-id token (Fn::Select of the execution ARN) replaced."""
    if isinstance(value, str):
        return value
    sep, parts = value["Fn::Join"]
    return sep.join(p if isinstance(p, str) else run_id for p in parts)


def _probe_report(labels_text: str | None = None, name: str = "query.rec.out") -> dict[str, Any]:
    text = local_knn_out()
    if labels_text:
        text = text.replace('"labels":[3.0,1.0,2.0]', labels_text)
    return read_probe_output({name: text})


def test_assertions_accept_a_good_run_and_reject_bad_ones(
    assembly: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assertions = template(assembly, "assertions")
    running = {"status": "RUNNING"}
    failed = {"status": "FAILED", "error": "States.TaskFailed", "cause": "FM job failed"}
    good = {"status": "SUCCEEDED", "output": json.dumps(_probe_report())}
    wrong_order = {"status": "SUCCEEDED", "output": json.dumps(_probe_report('"labels":[2.0,1.0,3.0]'))}
    wrong_name = {"status": "SUCCEEDED", "output": json.dumps(_probe_report(name="query.out"))}
    run = "0f6e7f1c-1b7a-4a59-9a7e-2f1d3b4c5d6e"
    pointer = {"Item": {"pk": {"S": "pointer"}, "sk": {"S": "current"}, "run_id": {"S": run}}}
    stale = {"Item": {"pk": {"S": "pointer"}, "sk": {"S": "current"}, "run_id": {"S": "older-run"}}}
    user = {"Item": {"pk": {"S": "u#1"}, "sk": {"S": run}, "items": {"S": "[]"}, "expires_at": {"N": "1"}}}
    cases: list[tuple[str, str, Any, str]] = []  # (what, expected, actual, wanted verdict)
    for props in calls(assertions, "describeExecution"):
        expected = props["expected"]
        status = json.loads(expected)["$ObjectLike"]
        if isinstance(status["status"], dict):  # the waiter: done once the execution has ended
            cases += [("wait", expected, running, "fail"), ("wait", expected, failed, "success")]
            cases += [("wait", expected, good, "success")]
        elif "output" in status:  # the probe's report
            cases += [("probe", expected, good, "success"), ("probe", expected, failed, "fail")]
            cases += [("probe", expected, wrong_order, "fail"), ("probe", expected, wrong_name, "fail")]
        else:  # the pipeline run
            cases += [
                ("run", expected, {"status": "SUCCEEDED"}, "success"),
                ("run", expected, failed, "fail"),
            ]
    for props in calls(assertions, "getItem"):
        expected = _with_run_id(props["expected"], run)
        if '"pointer"' in expected:
            cases += [("pointer", expected, pointer, "success"), ("pointer", expected, stale, "fail")]
        else:
            cases += [("user", expected, user, "success"), ("user", expected, {}, "fail")]
    assert sorted({c[0] for c in cases}) == ["pointer", "probe", "run", "user", "wait"]
    verdicts = _judge(tmp_path, [(expected, actual) for _, expected, actual, _ in cases])
    wrong = [
        (what, actual, got)
        for (what, _, actual, want), got in zip(cases, verdicts, strict=True)
        if got != want
    ]
    assert not wrong

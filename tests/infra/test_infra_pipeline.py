"""Pipeline stack: the state machine's integrations and failure paths, schedule, IAM scoping, Lambdas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from infra import images
from tests.infra.conftest import Synth, all_states, render_asl, resources

SYNC = {
    "arn:aws:states:::sagemaker:createTrainingJob.sync",
    "arn:aws:states:::sagemaker:createTransformJob.sync",
}
HANDLERS = {
    "pipeline_steps.guard.handler.handler",
    "pipeline_steps.prepare.handler.handler",
    "pipeline_steps.repackage.handler.handler",
    "pipeline_steps.evaluate.handler.handler",
    "pipeline_steps.publish.handler.handler",
    "pipeline_steps.report.handler.handler",
    "pipeline_steps.publish.handler.part_handler",  # the Distributed Map branch of PublishFanOut
    "pipeline_steps.publish.handler.finalize_handler",
}

# The `.sync` tasks and the state that stops their job when their TimeoutSeconds fires.
STOP_STATES = {
    "TrainFM": "StopTrainFM",
    "TrainFMWithoutTest": "StopTrainFMWithoutTest",
    "TrainKNN": "StopTrainKNN",
    "Transform": "StopTransform",
}


@pytest.fixture(scope="module")
def pipeline(default_synth: Synth) -> Template:
    return Template.from_stack(default_synth.app.node.find_child("fm-knn-topx-pipeline"))


@pytest.fixture(scope="module")
def asl(pipeline: Template) -> dict:
    return render_asl(pipeline.to_json())


def test_definition_runs_the_steps_in_order_with_the_three_sync_jobs(asl: dict) -> None:
    states = asl["States"]
    order, name = [], asl["StartAt"]
    while name in states and states[name]["Type"] != "Succeed":
        order.append(name)
        state = states[name]
        name = state.get("Next") or state.get("Default")
    assert order == [
        "Guard", "AnotherRunActive", "Prepare", "HasTestSet", "TrainFM", "Repackage", "TrainKNN",
        "CreateModel", "Transform", "Evaluate", "PublishFanOut", "Publish", "Report",
    ]  # fmt: skip
    assert name == "Published"
    resources_used = {s.get("Resource") for s in states.values()}
    assert resources_used >= SYNC | {"arn:aws:states:::sagemaker:createModel", "arn:aws:states:::sns:publish"}
    trainings = [
        s for s in states.values() if s.get("Resource") == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    ]
    assert len(trainings) == 3  # FM with and without a test channel, k-NN
    assert states["AnotherRunActive"]["Choices"][0] == {
        "Variable": "$.run.skip",
        "BooleanEquals": True,
        "Next": "SkippedAnotherRunActive",
    }
    assert states["SkippedAnotherRunActive"]["Type"] == "Succeed"
    assert states["HasTestSet"]["Choices"] == [
        {"Variable": "$.prepare.test_s3_uri", "StringEquals": "", "Next": "TrainFMWithoutTest"}
    ]
    assert states["TrainFMWithoutTest"]["Next"] == "Repackage"


def test_every_task_catches_into_notify_then_fail_with_error_and_cause(asl: dict) -> None:
    states = asl["States"]
    tasks = {
        n: s
        for n, s in states.items()
        if s["Type"] in ("Task", "Map")
        and n not in ("NotifyFailure", "Report", "NotifyReportFailure")  # after publish: no Fail
        and n not in STOP_STATES.values()
    }
    assert len(tasks) == 12  # PublishParts and PublishFinalize: the fan-out branch
    for name, state in tasks.items():
        timeout = [
            {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": STOP_STATES.get(name)}
        ]
        assert state["Catch"] == (timeout if name in STOP_STATES else []) + [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}
        ], name
    notify = states["NotifyFailure"]
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    assert notify["Next"] == "RunFailed"
    assert notify["Catch"][0]["Next"] == "RunFailed"
    assert notify["Parameters"]["Message"]["error.$"] == "$.error.Error"
    assert states["RunFailed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


def test_retries_only_transient_errors_with_backoff(asl: dict) -> None:
    allowed = {
        "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException", "SageMaker.AmazonSageMakerException", "SNS.ThrottledException",
        "SNS.InternalErrorException", "SNS.KMSThrottlingException",
    }  # fmt: skip
    for name, state in all_states(asl).items():
        for retry in state.get("Retry", []):
            assert set(retry["ErrorEquals"]) <= allowed, name
            assert retry["BackoffRate"] >= 2 and retry["MaxAttempts"] <= 6, name


def test_sagemaker_requests(asl: dict) -> None:
    states = asl["States"]
    fm = states["TrainFM"]["Parameters"]
    assert fm["TrainingJobName.$"] == "$.run.fm_job_name"
    assert fm["AlgorithmSpecification"]["TrainingImage"] == images.image_uri("fm", "us-east-1")
    assert fm["HyperParameters"]["feature_dim.$"] == "$.prepare.feature_dim"
    assert all(isinstance(v, str) for k, v in fm["HyperParameters"].items())
    # docs/decisions/0004: the FM defaults that reach precision@10 >= 0.24 on ML-100k
    assert {k: fm["HyperParameters"][k] for k in ("num_factors", "epochs", "factors_lr", "linear_lr")} == {
        "num_factors": "64",
        "epochs": "8",
        "factors_lr": "0.001",
        "linear_lr": "0.01",
    }
    assert [c["ChannelName"] for c in fm["InputDataConfig"]] == ["train", "test"]
    assert [c["ChannelName"] for c in states["TrainFMWithoutTest"]["Parameters"]["InputDataConfig"]] == [
        "train"
    ]
    knn = states["TrainKNN"]["Parameters"]
    assert knn["AlgorithmSpecification"]["TrainingImage"] == images.image_uri("knn", "us-east-1")
    assert {
        k: knn["HyperParameters"][k] for k in ("k.$", "sample_size.$", "feature_dim.$", "index_metric")
    } == {
        "k.$": "$.repackage.k",
        "sample_size.$": "$.repackage.sample_size",
        "feature_dim.$": "$.repackage.feature_dim",
        "index_metric": "INNER_PRODUCT",
    }
    model = states["CreateModel"]["Parameters"]
    assert model["PrimaryContainer"]["ModelDataUrl.$"] == "$.knn.model_s3_uri"
    transform = states["Transform"]["Parameters"]
    assert transform["TransformOutput"]["Accept"] == "application/jsonlines; verbose=true"
    assert transform["TransformInput"]["SplitType"] == "RecordIO"
    assert (
        transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.repackage.queries_s3_uri"
    )
    assert states["Transform"]["ResultSelector"]["output_s3_uri.$"] == "$.TransformOutput.S3OutputPath"
    assert "EnableManagedSpotTraining" not in fm


def test_state_machine_logs_all_traces_and_times_out(pipeline: Template, asl: dict) -> None:
    pipeline.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
            "TracingConfiguration": {"Enabled": True},
        },
    )
    assert asl["TimeoutSeconds"] == 12 * 3600


def test_schedule_targets_the_state_machine(pipeline: Template) -> None:
    template = pipeline.to_json()
    (machine_id,) = resources(template, "AWS::StepFunctions::StateMachine")
    (rule,) = resources(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(7 days)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": machine_id}
    assert json.loads(target["Input"]) == {}


def test_no_managed_policies_at_all(pipeline: Template, default_synth: Synth) -> None:
    for stack in ("pipeline", "storage"):
        text = json.dumps(default_synth.template(stack))
        assert "FullAccess" not in text
        assert "ManagedPolicyArns" not in text


def _statements(template: dict, role_fragment: str) -> list[dict]:
    roles = {k for k in resources(template, "AWS::IAM::Role") if role_fragment in k}
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if any(r.get("Ref") in roles for r in policy["Properties"]["Roles"]):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    assert found, role_fragment
    return found


def test_state_machine_reads_only_the_publish_batches_objects(pipeline: Template) -> None:
    """The publish Map's ItemReader needs s3:GetObject on the batches object (least privilege: that
    key pattern, not the bucket's `/*` that CDK's S3JsonItemReader(bucket=...) would grant)."""
    template = pipeline.to_json()
    reads = [
        r
        for s in _statements(template, "StateMachineRole")
        if "s3:GetObject" in _list(s["Action"])
        for r in _list(s["Resource"])
    ]
    assert [json.dumps(r).split("/", 1)[1].rstrip('"]}') for r in reads] == [
        "runs/*/knn/queries/publish-batches.json"
    ]
    listing = [s for s in _statements(template, "StateMachineRole") if "s3:ListBucket" in _list(s["Action"])]
    assert listing == []  # the S3 listing reader (one child per part) is gone


def test_state_machine_passes_only_the_sagemaker_role_only_to_sagemaker(pipeline: Template) -> None:
    template = pipeline.to_json()
    passes = [s for s in _statements(template, "StateMachineRole") if s["Action"] == "iam:PassRole"]
    (sagemaker_role,) = [k for k in resources(template, "AWS::IAM::Role") if k.startswith("SageMaker")]
    assert passes == [
        {
            "Action": "iam:PassRole",
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [sagemaker_role, "Arn"]},
        }
    ]


def test_sagemaker_role_reads_channels_writes_outputs_pulls_two_images(pipeline: Template) -> None:
    statements = {s["Sid"]: s for s in _statements(pipeline.to_json(), "SageMaker")}
    keys = lambda s: sorted(json.dumps(r).split("/", 1)[1].rstrip('"]}') for r in s["Resource"])  # noqa: E731
    assert keys(statements["ReadChannelsAndModels"]) == sorted(
        ["runs/*/prepared/train/*", "runs/*/prepared/test/*", "runs/*/knn/train/*", "runs/*/knn/queries/*",
         "runs/*/knn/model/*"]
    )  # fmt: skip
    assert keys(statements["WriteJobOutputs"]) == sorted(
        ["runs/*/fm/*", "runs/*/knn/model/*", "runs/*/transform/*"]
    )
    assert statements["PullAlgorithmImages"]["Resource"] == [
        images.repository_arn("fm", "us-east-1"),
        images.repository_arn("knn", "us-east-1"),
    ]
    wildcard_actions = [s for s in statements.values() if any("*" in a for a in _list(s["Action"]))]
    assert wildcard_actions == []
    assert statements["EcrLogin"] == {
        "Action": "ecr:GetAuthorizationToken",
        "Effect": "Allow",
        "Resource": "*",
        "Sid": "EcrLogin",
    }


def _list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_lambdas_wired_by_handler_path_with_validated_step_config(
    pipeline: Template, default_synth: Synth
) -> None:
    functions = resources(pipeline.to_json(), "AWS::Lambda::Function")
    by_handler = {f["Properties"]["Handler"]: f["Properties"] for f in functions.values()}
    assert set(by_handler) == HANDLERS
    for handler, props in by_handler.items():
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["x86_64"]
        env = props["Environment"]["Variables"]
        assert env["BUCKET_NAME"] == {"Fn::ImportValue": "fm-knn-topx-bucket-name"}
        step = handler.split(".")[1]
        assert ("TABLE_NAME" in env) == (step in ("evaluate", "publish", "report")), handler
        # the guard names SageMaker resources after the project (pipeline_steps/guard/core.py)
        assert env.get("PROJECT_NAME") == ("fm-knn-topx" if step == "guard" else None), handler
        # Lambda caps the whole environment at 4 KB (names + values; the imports are ~60 chars each)
        assert sum(len(k) + len(v if isinstance(v, str) else "x" * 64) for k, v in env.items()) < 4096
        if step != "guard":
            config = json.loads(env["STEP_CONFIG"])
            if step != "prepare":
                assert config["x"] == 10
    prepare = json.loads(
        by_handler["pipeline_steps.prepare.handler.handler"]["Environment"]["Variables"]["STEP_CONFIG"]
    )
    assert prepare["label_mode"] == "implicit" and prepare["input_prefix"] == "input/"
    codes = {json.dumps(f["Properties"]["Code"]) for f in functions.values()}
    assert len(codes) == 1  # one shared code asset


def test_each_lambda_only_gets_its_prefixes_and_table_actions(pipeline: Template) -> None:
    template = pipeline.to_json()

    def object_actions(fragment: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for s in _statements(template, fragment):
            for action in _list(s["Action"]):
                if action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
                    found.setdefault(action, set()).update(
                        json.dumps(r).split("/", 1)[1].rstrip('"]}') for r in _list(s["Resource"])
                    )
        return found

    assert object_actions("PrepareRole") == {
        "s3:GetObject": {"input/*", "runs/*/prepared/*"},
        "s3:PutObject": {"runs/*/prepared/*"},
        "s3:DeleteObject": {"runs/*/prepared/*"},
    }
    assert "s3:DeleteObject" not in object_actions("RepackageRole") | object_actions("PublishRole")
    assert object_actions("RepackageRole")["s3:PutObject"] == {"runs/*/knn/train/*", "runs/*/knn/queries/*"}
    assert object_actions("EvaluateRole")["s3:PutObject"] == {"runs/*/evaluation/*"}
    assert "s3:PutObject" not in object_actions("PublishRole")

    def table_actions(fragment: str) -> set[str]:
        return {
            a
            for s in _statements(template, fragment)
            for a in _list(s["Action"])
            if a.startswith("dynamodb:")
        }

    assert table_actions("EvaluateRole") == {"dynamodb:GetItem"}
    # What the publish Lambda's boto3 calls need (Query/ConditionCheckItem are the operator CLI's).
    assert table_actions("PublishRole") == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
    }
    # repackage only writes the k-NN inputs; it reads the prepared run and the FM model.
    assert object_actions("RepackageRole")["s3:GetObject"] == {"runs/*/prepared/*", "runs/*/fm/*"}
    assert "dynamodb:TransactWriteItems" not in table_actions("PublishRole")
    assert table_actions("PrepareRole") == table_actions("RepackageRole") == set()
    guard = [a for s in _statements(template, "GuardRole") for a in _list(s["Action"])]
    assert "states:ListExecutions" in guard and not any(a.startswith(("s3:", "dynamodb:")) for a in guard)


def test_publish_chooses_the_distributed_map_above_the_user_count_at_run_time(asl: dict) -> None:
    """Both branches are in every template; repackage's integer `n_users` picks one (decision 0015):
    NumericGreaterThan needs a number (https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html)."""
    states = asl["States"]
    assert states["Evaluate"]["Next"] == "PublishFanOut"
    choice = states["PublishFanOut"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.repackage.n_users", "NumericGreaterThan": 200000, "Next": "PublishParts"}
    ]
    assert choice["Default"] == "Publish"
    assert states["PublishParts"]["Next"] == "PublishFinalize"
    assert states["PublishFinalize"]["Next"] == states["Publish"]["Next"] == "Report"


def test_the_replaced_fan_out_flag_is_an_error_naming_its_successor() -> None:
    from infra.config import AppConfig
    from infra.context import ConfigError

    context = {**json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]}
    context["topx:distributed_map_publish"] = True
    with pytest.raises(ConfigError, match=r"replaced by 'topx:publish.fan_out_above_users'"):
        AppConfig.from_context(context)


def test_options_spot_fan_out_no_schedule_email(options_synth: Synth) -> None:
    template = options_synth.template("pipeline")
    asl = render_asl(template)
    fm = asl["States"]["TrainFM"]["Parameters"]
    assert fm["EnableManagedSpotTraining"] is True
    assert fm["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert fm["HyperParameters"]["epochs"] == "7"  # dotted -c override
    fan_out = asl["States"]["PublishParts"]
    assert fan_out["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    # one child per range of parts from repackage's batches object (decision 0015)
    reader = fan_out["ItemReader"]
    assert reader["Resource"].endswith(":states:::s3:getObject")
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"]["Key.$"] == "$.repackage.publish_batches_key"
    assert fan_out["ItemSelector"]["first_part.$"] == "$$.Map.Item.Value.first_part"
    assert fan_out["ItemSelector"]["last_part.$"] == "$$.Map.Item.Value.last_part"
    assert "part.$" not in fan_out["ItemSelector"]
    assert fan_out["Next"] == "PublishFinalize"
    assert asl["States"]["PublishFanOut"]["Choices"][0]["NumericGreaterThan"] == 0  # -c override
    assert resources(template, "AWS::Events::Rule") == {}
    (subscription,) = resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    handlers = {f["Properties"]["Handler"] for f in resources(template, "AWS::Lambda::Function").values()}
    assert handlers >= {
        "pipeline_steps.publish.handler.part_handler",
        "pipeline_steps.publish.handler.finalize_handler",
    }


def test_filter_objects_are_granted_exactly_to_repackage_and_publish(
    options_synth: Synth, pipeline: Template
) -> None:
    def exact_reads(template: dict, fragment: str) -> set[str]:
        return {
            json.dumps(r).split("/", 1)[1].rstrip('"]}')
            for s in _statements(template, fragment)
            if "s3:GetObject" in _list(s["Action"])
            for r in _list(s["Resource"])
            if not json.dumps(r).rstrip('"]}').endswith("*")
        }

    template = options_synth.template("pipeline")
    filters = {"filters/unavailable.txt", "filters/bought.csv"}
    assert exact_reads(template, "RepackageRole") == exact_reads(template, "PublishRole") == filters
    assert exact_reads(template, "PublishPartRole") == exact_reads(template, "PublishFinalizeRole") == filters
    for role in ("PrepareRole", "EvaluateRole", "GuardRole"):
        assert exact_reads(template, role) == set(), role
    assert exact_reads(pipeline.to_json(), "PublishRole") == set()  # no filters configured: no grant


def test_state_machine_sagemaker_actions_are_named_and_scoped_to_jobs_and_models(pipeline: Template) -> None:
    sagemaker = [
        s
        for s in _statements(pipeline.to_json(), "StateMachineRole")
        if any(a.startswith("sagemaker:") for a in _list(s["Action"]))
    ]
    actions = {a for s in sagemaker for a in _list(s["Action"])}
    assert actions == {
        "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
        "sagemaker:CreateModel", "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob",
        "sagemaker:StopTransformJob", "sagemaker:ListTags", "sagemaker:AddTags",
    }  # fmt: skip
    for statement in sagemaker:
        for resource in _list(statement["Resource"]):
            tail = json.dumps(resource).rsplit(":", 1)[1]
            assert tail.split("/")[0] in ("training-job", "transform-job", "model"), resource
    events = [
        s
        for s in _statements(pipeline.to_json(), "StateMachineRole")
        if "events:PutRule" in _list(s["Action"])
    ]
    (rules,) = [s["Resource"] for s in events]
    assert [json.dumps(r).rsplit("/", 1)[1].rstrip('"]}') for r in rules] == [
        "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
        "StepFunctionsGetEventsForSageMakerTransformJobsRule",
    ]


SAGEMAKER_NETWORKED = ("TrainFM", "TrainFMWithoutTest", "TrainKNN", "CreateModel")


def _actions(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in _list(s["Action"])}


def test_default_jobs_and_model_are_network_isolated_without_vpc_or_customer_key(
    pipeline: Template, asl: dict
) -> None:
    states = asl["States"]
    for name in SAGEMAKER_NETWORKED:
        params = states[name]["Parameters"]
        assert params["EnableNetworkIsolation"] is True, name
        assert "VpcConfig" not in params and "EnableInterContainerTrafficEncryption" not in params, name
    for name in ("TrainFM", "TrainKNN"):
        assert "KmsKeyId" not in states[name]["Parameters"]["OutputDataConfig"]
        assert "VolumeKmsKeyId" not in states[name]["Parameters"]["ResourceConfig"]
    assert "KmsKeyId" not in states["Transform"]["Parameters"]["TransformOutput"]
    template = pipeline.to_json()
    everyone = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert not any(a.startswith("ec2:") or a == "kms:CreateGrant" for a in _actions(everyone))
    prepare = [
        f for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "pipeline_steps.prepare.handler.handler"
    ]  # fmt: skip
    assert json.loads(prepare[0]["Properties"]["Environment"]["Variables"]["STEP_CONFIG"])["min_shards"] == 1


def test_options_encrypt_between_instances_volumes_and_outputs_and_join_the_vpc(options_synth: Synth) -> None:
    template = options_synth.template("pipeline")
    states = render_asl(template)["States"]
    key = "imported-fm-knn-topx-key-arn"  # the storage stack's key, by export name
    vpc = {"SecurityGroupIds": ["sg-0c7d8e9f"], "Subnets": ["subnet-0a1b2c3d", "subnet-0e4f5a6b"]}
    for name in SAGEMAKER_NETWORKED:
        assert states[name]["Parameters"]["VpcConfig"] == vpc, name
        assert states[name]["Parameters"]["EnableNetworkIsolation"] is True, name
    for name in ("TrainFM", "TrainFMWithoutTest"):  # fm.instance_count = 2
        assert states[name]["Parameters"]["EnableInterContainerTrafficEncryption"] is True
        assert (
            states[name]["Parameters"]["InputDataConfig"][0]["DataSource"]["S3DataSource"][
                "S3DataDistributionType"
            ]
            == "ShardedByS3Key"
        )
    assert "EnableInterContainerTrafficEncryption" not in states["TrainKNN"]["Parameters"]
    for name in ("TrainFM", "TrainFMWithoutTest", "TrainKNN"):
        assert states[name]["Parameters"]["OutputDataConfig"]["KmsKeyId"] == key
        assert states[name]["Parameters"]["ResourceConfig"]["VolumeKmsKeyId"] == key
    transform = states["Transform"]["Parameters"]
    assert (
        transform["TransformOutput"]["KmsKeyId"] == transform["TransformResources"]["VolumeKmsKeyId"] == key
    )

    sagemaker = _statements(template, "SageMaker")
    (grant,) = [s for s in sagemaker if "kms:CreateGrant" in _list(s["Action"])]
    assert grant["Resource"] == {"Fn::ImportValue": "fm-knn-topx-key-arn"}
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    by_sid = {s.get("Sid"): s for s in sagemaker}
    tails = lambda s: sorted(json.dumps(r).rsplit(":", 1)[1].rstrip('"]}') for r in _list(s["Resource"]))  # noqa: E731
    assert tails(by_sid["CreateJobInterfaces"]) == sorted(
        [
            "subnet/subnet-0a1b2c3d",
            "subnet/subnet-0e4f5a6b",
            "security-group/sg-0c7d8e9f",
            "network-interface/*",
        ]
    )
    assert _list(by_sid["ManageJobInterfaces"]["Action"]) == [
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission",
    ]
    assert tails(by_sid["ManageJobInterfaces"]) == ["network-interface/*"]
    assert by_sid["DescribeNetwork"]["Resource"] == "*"
    assert all(a.startswith("ec2:Describe") for a in _list(by_sid["DescribeNetwork"]["Action"]))
    # the caller (state machine role) needs neither: SageMaker uses the execution role for both
    machine = _actions(_statements(template, "StateMachineRole"))
    assert "kms:CreateGrant" not in machine and not any(a.startswith("ec2:") for a in machine)
    prepare = [
        f for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "pipeline_steps.prepare.handler.handler"
    ]  # fmt: skip
    assert json.loads(prepare[0]["Properties"]["Environment"]["Variables"]["STEP_CONFIG"])["min_shards"] == 2


def test_sync_jobs_may_be_tagged_by_step_functions_but_models_not(pipeline: Template) -> None:
    """`.sync` tags each job MANAGED_BY_AWS; without AddTags the create is denied (aws/aws-cdk#26012)."""
    tagging = [
        s
        for s in _statements(pipeline.to_json(), "StateMachineRole")
        if "sagemaker:AddTags" in _list(s["Action"])
    ]
    tails = sorted(
        json.dumps(r).rsplit(":", 1)[1].rstrip('"]}') for s in tagging for r in _list(s["Resource"])
    )
    assert tails == ["training-job/*", "transform-job/*"]


def test_topic_policy_denies_plain_http_and_lets_this_accounts_alarms_publish(pipeline: Template) -> None:
    """A topic policy replaces SNS's default one: without the allow, alarm actions are denied."""
    template = pipeline.to_json()
    (topic_id,) = resources(template, "AWS::SNS::Topic")
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert [s["Condition"] for s in deny] == [{"Bool": {"aws:SecureTransport": "false"}}]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Resource"] == {"Ref": topic_id}
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    (source_arn,) = allow["Condition"]["ArnLike"].values()
    assert list(allow["Condition"]["ArnLike"]) == ["aws:SourceArn"]
    assert source_arn == {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":cloudwatch:", {"Ref": "AWS::Region"}, ":",
             {"Ref": "AWS::AccountId"}, ":alarm:*"],
        ]
    }  # fmt: skip


def test_timed_out_sync_tasks_stop_their_job_then_notify_the_timeout(asl: dict) -> None:
    """A States.Timeout of a `.sync` task does not stop the SageMaker job: the Catch does it."""
    states = asl["States"]
    assert states["Transform"]["TimeoutSeconds"] == 3600  # topx:transform.max_runtime_seconds
    assert (
        states["TrainFM"]["TimeoutSeconds"] == states["TrainFMWithoutTest"]["TimeoutSeconds"] == 7200 + 3600
    )
    assert states["TrainKNN"]["TimeoutSeconds"] == 3600 + 3600
    jobs = {
        "TrainFM": ("stopTrainingJob", {"TrainingJobName.$": "$.run.fm_job_name"}),
        "TrainFMWithoutTest": ("stopTrainingJob", {"TrainingJobName.$": "$.run.fm_job_name"}),
        "TrainKNN": ("stopTrainingJob", {"TrainingJobName.$": "$.run.knn_job_name"}),
        "Transform": ("stopTransformJob", {"TransformJobName.$": "$.run.transform_job_name"}),
    }
    for task, (api, parameters) in jobs.items():
        stop = states[STOP_STATES[task]]
        assert stop == {
            "Type": "Task",
            "Resource": f"arn:aws:states:::aws-sdk:sagemaker:{api}",
            "Parameters": parameters,
            "ResultPath": None,  # $.error (States.Timeout) reaches the notification
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.stop_error", "Next": "NotifyFailure"}],
            "Next": "NotifyFailure",
        }, task

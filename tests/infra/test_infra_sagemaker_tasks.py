"""SageMaker request bodies from the typed config, without a synth."""

from __future__ import annotations

from infra import sagemaker_tasks as sm
from tests.infra.test_infra_config import build


def test_fm_on_several_instances_shards_train_only_and_uses_spot() -> None:
    config = build(**{"fm.instance_count": 3, "spot.enabled": True, "spot.max_wait_seconds": 9000})
    request = sm.training_request(config, "fm", region="eu-west-1", role_arn="arn:role", with_test=True)
    distribution = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3DataDistributionType"]
        for c in request["InputDataConfig"]
    }
    assert distribution == {"train": "ShardedByS3Key", "test": "FullyReplicated"}
    assert request["ResourceConfig"]["InstanceCount"] == 3
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 9000}
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith("438346466558.dkr.ecr.eu-west-1.")
    assert sm.training_timeout(config, "fm") == 9000 + 3600


def test_knn_takes_its_sizes_from_repackage_and_defaults_to_on_demand() -> None:
    config = build()
    request = sm.training_request(config, "knn", region="us-east-1", role_arn="arn:role")
    assert "EnableManagedSpotTraining" not in request
    assert request["HyperParameters"] == {
        "index_metric": "INNER_PRODUCT",
        "index_type": "faiss.Flat",
        "predictor_type": "classifier",
        "feature_dim.$": "$.repackage.feature_dim",
        "k.$": "$.repackage.k",
        "sample_size.$": "$.repackage.sample_size",
    }
    assert request["OutputDataConfig"] == {"S3OutputPath.$": "$.run.knn_output_s3_uri"}
    assert sm.training_timeout(config, "knn") == 3600 + 3600


def test_transform_reads_queries_and_writes_verbose_json_lines() -> None:
    request = sm.transform_request(build(**{"transform.instance_count": 2, "transform.max_payload_mb": 20}))
    assert request["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}
    assert request["MaxPayloadInMB"] == 20 and request["MaxConcurrentTransforms"] == 4
    assert request["BatchStrategy"] == "MultiRecord" and request["TransformInput"]["SplitType"] == "RecordIO"
    assert request["TransformOutput"]["AssembleWith"] == "Line"
    model = sm.model_request(build(), region="us-east-1", role_arn="arn:role")
    assert model["PrimaryContainer"]["Image"].endswith("/knn:1") and model["ExecutionRoleArn"] == "arn:role"


def test_network_isolation_by_default_on_both_trainings_and_the_model_and_off_by_config() -> None:
    config = build()
    requests = [
        sm.training_request(config, "fm", region="us-east-1", role_arn="arn:role", with_test=True),
        sm.training_request(config, "knn", region="us-east-1", role_arn="arn:role"),
        sm.model_request(config, region="us-east-1", role_arn="arn:role"),
    ]
    assert [r.get("EnableNetworkIsolation") for r in requests] == [True, True, True]
    # one instance each: nothing to encrypt between instances, no VPC, no customer key
    for request in requests:
        assert "EnableInterContainerTrafficEncryption" not in request and "VpcConfig" not in request
    assert "KmsKeyId" not in requests[0]["OutputDataConfig"]
    assert "VolumeKmsKeyId" not in requests[0]["ResourceConfig"]
    off = build(**{"sagemaker_security.network_isolation": False})
    assert "EnableNetworkIsolation" not in sm.training_request(off, "fm", region="us-east-1", role_arn="r")
    assert "EnableNetworkIsolation" not in sm.model_request(off, region="us-east-1", role_arn="r")


def test_inter_container_encryption_only_with_several_instances() -> None:
    config = build(**{"fm.instance_count": 2})
    fm = sm.training_request(config, "fm", region="us-east-1", role_arn="arn:role")
    knn = sm.training_request(config, "knn", region="us-east-1", role_arn="arn:role")
    assert fm["EnableInterContainerTrafficEncryption"] is True
    assert "EnableInterContainerTrafficEncryption" not in knn


def test_customer_key_on_outputs_and_volumes_of_every_job() -> None:
    config = build(kms=True)
    for algorithm in ("fm", "knn"):
        request = sm.training_request(config, algorithm, region="us-east-1", role_arn="r", key_arn="arn:key")
        assert request["OutputDataConfig"]["KmsKeyId"] == "arn:key"
        assert request["ResourceConfig"]["VolumeKmsKeyId"] == "arn:key"
    transform = sm.transform_request(config, key_arn="arn:key")
    assert transform["TransformOutput"]["KmsKeyId"] == "arn:key"
    assert transform["TransformResources"]["VolumeKmsKeyId"] == "arn:key"
    assert "KmsKeyId" not in sm.transform_request(config)["TransformOutput"]


def test_vpc_on_both_trainings_and_the_model() -> None:
    config = build(vpc={"subnet_ids": ["subnet-0a", "subnet-0b"], "security_group_ids": ["sg-0c"]})
    expected = {"SecurityGroupIds": ["sg-0c"], "Subnets": ["subnet-0a", "subnet-0b"]}
    assert sm.training_request(config, "fm", region="us-east-1", role_arn="r")["VpcConfig"] == expected
    assert sm.training_request(config, "knn", region="us-east-1", role_arn="r")["VpcConfig"] == expected
    assert sm.model_request(config, region="us-east-1", role_arn="r")["VpcConfig"] == expected
    assert "VpcConfig" not in sm.transform_request(config)  # a transform runs with its model's VPC


def test_the_fm_job_trains_with_the_recipe_epochs_and_rate() -> None:
    request = sm.training_request(build(recipe="minimal"), "fm", region="us-east-1", role_arn="arn:role")
    hyper = request["HyperParameters"]
    assert (hyper["epochs"], hyper["factors_lr"]) == ("3", "0.004")
    assert hyper["feature_dim.$"] == "$.prepare.feature_dim"


def _processing(**overrides: object) -> dict:
    key = overrides.pop("key", None)
    config = build(**{"prepare.engine": "spark", **overrides})
    return sm.processing_request(
        config,
        region="eu-west-1",
        role_arn="arn:spark-role",
        bucket_name="data-bucket",
        script_uri="s3://assets/abc.py",
        script_name="abc.py",
        package_uri="s3://assets/def.zip",
        step_config='{"engine": "spark"}',
        key_arn=key,  # type: ignore[arg-type]
    )


def test_spark_prepare_runs_the_job_script_in_the_spark_container_on_the_run_inputs() -> None:
    request = _processing(
        **{"prepare.test_prefix": "input-test/", "prepare.spark_instance_type": "ml.r5.2xlarge"}
    )
    app = request["AppSpecification"]
    assert (
        app["ImageUri"]
        == "571004829621.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312"
    )
    assert app["ContainerEntrypoint"] == ["smspark-submit", "/opt/ml/processing/input/code/abc.py"]
    assert app["ContainerArguments.$"] == "States.Array('--run-id', $.run.run_id)"
    inputs = {
        i["InputName"]: (i["S3Input"]["S3Uri"], i["S3Input"]["LocalPath"])
        for i in request["ProcessingInputs"]
    }
    assert inputs == {
        "code": ("s3://assets/abc.py", "/opt/ml/processing/input/code"),
        "package": ("s3://assets/def.zip", "/opt/ml/processing/input/package"),
        "data": ("s3://data-bucket/input/", "/opt/ml/processing/input/data"),
        "test": ("s3://data-bucket/input-test/", "/opt/ml/processing/input/test"),
    }
    assert request["Environment"] == {"BUCKET_NAME": "data-bucket", "STEP_CONFIG": '{"engine": "spark"}'}
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.r5.2xlarge"
    assert "ProcessingOutputConfig" not in request and "NetworkConfig" not in request
    assert request["ProcessingJobName.$"] == "States.Format('{}p', $.run.fm_job_name)"


def test_spark_prepare_encrypts_volumes_and_traffic_and_joins_the_vpc() -> None:
    request = _processing(
        key="arn:key",
        **{
            "prepare.spark_instance_count": 3,
            "vpc.subnet_ids": ["subnet-1"],
            "vpc.security_group_ids": ["sg-1"],
        },
    )
    cluster = request["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceCount"] == 3 and cluster["VolumeKmsKeyId"] == "arn:key"
    assert request["NetworkConfig"] == {
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]},
    }


def test_state_machine_may_run_and_stop_processing_jobs_only_with_the_spark_engine() -> None:
    default, jobs = sm.state_machine_statements("arn:sagemaker-role")
    assert not any("processing" in str(s.to_json()).lower() for s in default)
    statements, jobs = sm.state_machine_statements("arn:sagemaker-role", "arn:spark-role")
    text = [s.to_json() for s in statements]
    create = next(s for s in text if "sagemaker:CreateProcessingJob" in s["Action"])
    assert "sagemaker:StopProcessingJob" in create["Action"] and "sagemaker:AddTags" in create["Action"]
    assert any(s.get("Resource") == "arn:spark-role" for s in text)
    assert jobs[-1].endswith(":processing-job/*")

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
    model = sm.model_request(region="us-east-1", role_arn="arn:role")
    assert model["PrimaryContainer"]["Image"].endswith("/knn:1") and model["ExecutionRoleArn"] == "arn:role"

"""Our static image table equals the SageMaker SDK's (2.257.7, test-only oracle) for every region we list."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from infra import images

# The installed SDK's data files, located without importing the (slow, noisy) package.
SDK_CONFIG = Path(importlib.util.find_spec("sagemaker").origin).parent / "image_uri_config"


def test_registries_match_the_sdk_for_both_algorithms() -> None:
    for algorithm, repository in images.ALGORITHMS.items():
        spec = json.loads((SDK_CONFIG / f"{repository}.json").read_text())["versions"][images.TAG]
        assert spec["repository"] == repository
        sdk = {r: a for r, a in spec["registries"].items() if not r.startswith("us-iso")}
        assert sdk == images.REGISTRIES, algorithm


def test_uris_and_repository_arns() -> None:
    assert (
        images.image_uri("fm", "us-east-1")
        == "382416733822.dkr.ecr.us-east-1.amazonaws.com/factorization-machines:1"
    )
    assert images.image_uri("knn", "eu-west-1") == "438346466558.dkr.ecr.eu-west-1.amazonaws.com/knn:1"
    assert images.image_uri("knn", "cn-north-1").endswith(".dkr.ecr.cn-north-1.amazonaws.com.cn/knn:1")
    assert images.repository_arn("fm", "us-gov-west-1").startswith("arn:aws-us-gov:ecr:us-gov-west-1:")


def test_spark_processing_registries_match_the_sdk() -> None:
    spec = json.loads((SDK_CONFIG / "spark.json").read_text())["processing"]["versions"]["3.5"]
    assert spec["repository"] == images.SPARK_REPOSITORY and "py312" in spec["py_versions"]
    assert {r: spec["registries"][r] for r in images.REGISTRIES} == images.SPARK_REGISTRIES
    assert (
        images.spark_image_uri("us-east-1")
        == "173754725891.dkr.ecr.us-east-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312"
    )
    assert images.spark_repository_arn("cn-north-1").startswith("arn:aws-cn:ecr:cn-north-1:671472414489:")

"""The prepare step as a SageMaker Processing job in AWS's Spark container (decision 0016).

Run by the container's `smspark-submit` with this file as the application (the state machine's
`createProcessingJob.sync` task, `infra/sagemaker_tasks.py: processing_request`):

    smspark-submit /opt/ml/processing/input/code/<this file> --run-id <run id>

Environment as the prepare Lambda's: `BUCKET_NAME`, `STEP_CONFIG`. Inputs (ProcessingInputs):
the `input_prefix` objects under `INPUT_DIR`, the `test_prefix` objects under `TEST_DIR`, and this
package as a zip under `PACKAGE_DIR` (put on `sys.path` below, and shipped to the executors with
`SparkContext.addPyFile`: with implicit labels the executors run `spark_shards`' Python, numpy's
negative sampling and our RecordIO encoder, in their partitions; decision 0016).

The objects are listed in S3 (their ETags are the input fingerprint, as in the Lambda) and read
from the local copies SageMaker downloaded. The outputs are written straight to S3 by the driver
(the training shards too: the executors hand them over one at a time) with the manifest last (as
in the Lambda), so the prepare Lambda that follows this task finds a completed
run and returns its result without recomputing; a run that already has a manifest is left alone.
"""

from __future__ import annotations

import glob
import sys

if __name__ == "__main__":  # as the job's application file: the package comes from its zip
    sys.path[:0] = sorted(glob.glob("/opt/ml/processing/input/package/*.zip"))  # = SPARK_PACKAGE_DIR

import argparse
import builtins
import logging
import os
from typing import BinaryIO

from pipeline_steps.common.config import step_config_json
from pipeline_steps.common.errors import InputError
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.prepare.config import SPARK_DATA_DIR as INPUT_DIR
from pipeline_steps.prepare.config import SPARK_PACKAGE_DIR, PrepareConfig
from pipeline_steps.prepare.config import SPARK_TEST_DIR as TEST_DIR
from pipeline_steps.prepare.storage import ObjectInfo, S3Storage

log = logging.getLogger(__name__)


class MirroredStorage:
    """Lists in S3, reads the local copies: key `<prefix><rest>` is `<directory>/<rest>`."""

    def __init__(self, s3: S3Storage, mirrors: dict[str, str]) -> None:
        self.s3 = s3
        self.mirrors = sorted(mirrors.items(), key=lambda m: -len(m[0]))  # longest prefix first

    def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        return self.s3.list(prefix)

    def local_path(self, key: str) -> str:
        for prefix, directory in self.mirrors:
            if prefix and key.startswith(prefix):
                return os.path.join(directory, key[len(prefix) :])
        raise KeyError(f"{key}: not under a downloaded prefix ({[p for p, _ in self.mirrors]})")

    def open(self, key: str) -> BinaryIO:
        return open(self.local_path(key), "rb")

    def read_bytes(self, key: str) -> bytes | None:
        return self.s3.read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        raise PermissionError(f"{key}: the input store is read-only")

    def delete(self, keys: builtins.list[str]) -> None:
        raise PermissionError("the input store is read-only")

    def uri(self, key: str) -> str:
        return self.s3.uri(key)


def package_zips() -> builtins.list[str]:
    """The package zip(s) the job put on `sys.path` (none when the package is imported otherwise)."""
    return [p for p in sys.path if os.path.dirname(p) == SPARK_PACKAGE_DIR and p.endswith(".zip")]


def main(
    argv: builtins.list[str] | None = None,
    *,
    s3_client: object = None,
    master: str | None = None,
    environ: dict[str, str] | None = None,
    py_files: builtins.list[str] | None = None,
) -> int:
    """The job; `s3_client`, `master` (None: spark-submit's) and `environ` for the local runner;
    `py_files`: shipped to the executors (default: the package zip(s) put on `sys.path` above)."""
    from pipeline_steps.prepare.spark_engine import run_spark_prepare

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(prog="spark_job.py")
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--input-dir", default=INPUT_DIR)
    ap.add_argument("--test-dir", default=TEST_DIR)
    args = ap.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    bucket = env.get("BUCKET_NAME", "")
    if not bucket:
        raise InputError("environment variable BUCKET_NAME is not set")
    config = PrepareConfig.from_dict(step_config_json(env), where="STEP_CONFIG")
    s3 = S3Storage(bucket, s3_client)
    layout = RunLayout(args.run_id)
    if s3.read_bytes(layout.manifest) is not None:
        log.info("run %s already has a manifest: left as it is (the prepare Lambda checks it)", args.run_id)
        return 0
    source = MirroredStorage(s3, {config.input_prefix: args.input_dir, config.test_prefix: args.test_dir})
    manifest, timings = run_spark_prepare(
        config,
        source=source,
        sink=s3,
        run_id=args.run_id,
        out_prefix=layout.prepared,
        bucket=bucket,
        # side-feature metadata (decision 0018) is read from S3 itself: it is not a ProcessingInput
        feature_sources={"user": s3, "item": s3},
        master=master,
        py_files=package_zips() if py_files is None else py_files,
    )
    rows = manifest["counts"]["train_rows"]
    log.info("spark prepare %s: %d train rows; timings %s", args.run_id, rows, timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Batch-transform request sizing: how many users one query part (= one request) may hold.

Used by repackage at run time (the run's k and feature_dim) and by infra/config.py at synth time
(the k cap and num_factors + 1), so both apply the same arithmetic. docs/decisions/0008 has the
numbers and the evidence.

Why the part size is the only lever: with ``SplitType=RecordIO`` and ``BatchStrategy=MultiRecord``
SageMaker fills each request with as many whole records of ONE input object as fit in
``MaxPayloadInMB`` (API reference, CreateTransformJob ``BatchStrategy`` / ``MaxPayloadInMB``:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html), and a
payload limit is a whole number of MB (0 means chunked encoding, which built-in algorithms do not
support), so a request holds at least ~3,600 of our ~290-byte query records. A verbose k-NN answer is
~70x its query, so the way to bound a response is to give each object few enough queries that the
whole object is one request whose answer fits the container's response limit.

Response limit: the model servers behind SageMaker containers (MMS / TorchServe) refuse responses
over ``max_response_size``, default 6,553,500 bytes: aws/sagemaker-python-sdk#1096 (a batch
transform failing with "Message size exceed limit: 6572143"), #1882 (asking to raise the response
size of batch-transform requests; answered with TorchServe's ``TS_MAX_RESPONSE_SIZE``, which no
documentation says the built-in k-NN image reads), pytorch/serve#430 (the default, 6553500 bytes).
Whether the built-in k-NN image enforces the same limit is not documented; we assume it does and
keep a margin below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# --- the container's response limit and our budget under it --------------------------------------
CONTAINER_RESPONSE_LIMIT = 6_553_500  # MMS/TorchServe default max_response_size (bytes)
DEFAULT_RESPONSE_BUDGET = 5 * 2**20  # 5 MiB: ~20% margin under the limit
MAX_RESPONSE_BUDGET = CONTAINER_RESPONSE_LIMIT  # a budget above the limit is refused

# --- MaxPayloadInMB -----------------------------------------------------------------------------
# The API says "MB" without defining it. A part is sized to fit the SMALLER reading (10**6 bytes
# per MB), so it is one request either way; the local emulator packs mini-batches up to the LARGER
# one (2**20), so it never forms smaller responses than AWS could.
PART_BYTES_PER_MB = 10**6
BATCH_BYTES_PER_MB = 2**20
MAX_PAYLOAD_MB = 100  # CreateTransformJob: MaxPayloadInMB <= 100 and
MAX_PAYLOAD_TIMES_CONCURRENCY_MB = 100  # MaxConcurrentTransforms * MaxPayloadInMB <= 100

# --- one verbose JSON line: {"distances":[d,...],"labels":[l,...],"predicted_label":p}\n -----------
# A float32 value printed as the shortest repr of its double (SageMaker's 17-digit style, docs/formats.md
# §4) is at most 23 characters: sign, 17 significant digits, '.', and either "e-45".."e+38" (4) or,
# in positional notation (1e-4 <= |x| < 1e16), at most "0.000" before the digits:
# "-1.2345678901234567e-05" and "-0.00012345678901234567" are both 23 characters.
MAX_NUMBER_CHARS = 23
# Labels are item ordinals 1..n_items <= 2**24, printed as floats: at most "16777216.0".
MAX_LABEL_CHARS = len("16777216.0")
LINE_FIXED_CHARS = len('{"distances":[') + len('],"labels":[') + len('],"predicted_label":') + len("}\n")


def response_bytes_per_query(k: int) -> int:
    """Worst-case bytes of one verbose JSON line with k neighbours (newline included).

    k distances and k labels with k - 1 commas each, the fixed text, and predicted_label (a label
    for a classifier, a mean of labels for a regressor: any number, so MAX_NUMBER_CHARS).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return (
        LINE_FIXED_CHARS
        + k * MAX_NUMBER_CHARS
        + k * MAX_LABEL_CHARS
        + 2 * (k - 1)  # commas
        + MAX_NUMBER_CHARS  # predicted_label
    )


@lru_cache(maxsize=64)
def request_bytes_per_query(feature_dim: int) -> int:
    """Bytes of one dense float32 query record (no label) in RecordIO-protobuf, framing included.

    Dense float32 values are a packed field of fixed 4-byte values, so every record of one
    feature_dim has the same size: encode one and measure it.
    """
    from pipeline_steps.formats.recordio import encode_dense

    if feature_dim < 1:
        raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
    return len(encode_dense(np.zeros((1, feature_dim), np.float32)))


@dataclass(frozen=True)
class PartSize:
    """Users per query part and which bound chose it (for logs, the manifest and errors)."""

    users: int
    by_response: int  # floor(response budget / worst-case line)
    by_payload: int  # floor(payload bytes / query record)
    cap: int  # users_per_shard
    response_bytes_per_query: int
    request_bytes_per_query: int

    @property
    def limited_by(self) -> str:
        if self.users == self.by_response:
            return "response_budget_bytes"
        if self.users == self.by_payload:
            return "max_payload_mb"
        return "users_per_shard"

    def as_dict(self) -> dict:
        return {
            "users_per_part": self.users,
            "limited_by": self.limited_by,
            "by_response": self.by_response,
            "by_payload": self.by_payload,
            "users_per_shard": self.cap,
            "response_bytes_per_query": self.response_bytes_per_query,
            "request_bytes_per_query": self.request_bytes_per_query,
        }


def users_per_part(
    *, k: int, feature_dim: int, max_payload_mb: int, response_budget_bytes: int, users_per_shard: int
) -> PartSize:
    """R = min(floor(budget / response line), floor(payload / query record), users_per_shard).

    R may be 0 (not even one user fits): callers turn that into an error naming their key.
    """
    response = response_bytes_per_query(k)
    request = request_bytes_per_query(feature_dim)
    by_response = response_budget_bytes // response
    by_payload = max_payload_mb * PART_BYTES_PER_MB // request
    users = max(0, min(by_response, by_payload, users_per_shard))
    return PartSize(
        users=users,
        by_response=by_response,
        by_payload=by_payload,
        cap=users_per_shard,
        response_bytes_per_query=response,
        request_bytes_per_query=request,
    )


def part_key_width(n_parts: int) -> int:
    """Digits of the zero-padded part number: 5, or more when a run has over 100,000 parts.

    Every part of a run gets the same width, so the order S3 lists the keys in ("sorted in an
    ascending order of the respective key names", ListObjectsV2 API reference) is the numeric order.
    """
    return max(5, len(str(max(0, n_parts - 1))))

"""The manifest: prepare writes `Manifest.to_json()`, readers get `Manifest.from_json()` back."""

from __future__ import annotations

import pytest

from pipeline_steps.common.errors import InputError
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.manifest import Manifest

RUN = RunLayout("r1")
DOC = {
    "version": 1,
    "run_id": "r1",
    "bucket": "b",
    "n_users": 2,
    "n_items": 3,
    "feature_dim": 5,
    "label_mode": "implicit",
    "label_stats": {"positives": 4, "negatives": 16, "mean": 0.2},
    "counts": {"rows_read": 4, "train_rows": 20},
    "train_shards": [RUN.train + "part-00000.rec"],
    "test_shards": [],
    "files": RUN.prepared_files(),
    "input": {"objects": [{"key": "input/a.csv", "size": 1, "etag_or_sha256": "x"}], "sha256": "y"},
    "config": {"seed": 42},
}


def test_round_trip_keeps_the_document_and_its_key_order() -> None:
    manifest = Manifest.from_json(DOC, key=RUN.manifest)
    assert manifest.to_json() == DOC
    assert list(manifest.to_json()) == list(DOC)  # the bytes prepare writes do not change
    assert manifest.key == RUN.manifest
    assert manifest.file_key("seen") == "runs/r1/prepared/seen.npz"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_users": 0}, "field 'n_users' must be a positive integer, got 0"),
        ({"feature_dim": 6}, "feature_dim 6 != n_users 2 \\+ n_items 3"),
        ({"files": None}, "field 'files' must be an object"),
    ],
)
def test_from_json_names_the_manifest_and_the_field(change: dict, message: str) -> None:
    with pytest.raises(InputError, match=f"^{RUN.manifest}: {message}"):
        Manifest.from_json({**DOC, **change}, key=RUN.manifest)


def test_a_missing_file_is_named() -> None:
    manifest = Manifest.from_json({**DOC, "files": {}}, key=RUN.manifest)
    with pytest.raises(InputError, match=r"files\.users is missing"):
        manifest.file_key("users")

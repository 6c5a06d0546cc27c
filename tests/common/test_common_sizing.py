"""Transform request sizing (pipeline_steps/common/sizing.py): the bounds and the part size."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_steps.common import sizing
from pipeline_steps.formats.recordio import encode_dense
from pipeline_steps.local_algorithms.knn_lines import format_results, render_float

WORST = np.float32(-3.2008762e-37)  # its double's repr has 17 digits and an exponent: 23 characters


def test_a_float32_never_takes_more_than_23_characters():
    assert render_float(WORST, "json") == "-3.2008762202575766e-37"
    assert len(render_float(np.float32(-0.00012345678), "json")) <= sizing.MAX_NUMBER_CHARS
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = values[np.isfinite(values)]
    extremes = np.array([np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45, 1e-4, 9.999999e15])
    for v in np.concatenate([values, extremes.astype(np.float32), -extremes.astype(np.float32)]):
        assert len(render_float(v, "json")) <= sizing.MAX_NUMBER_CHARS, v
    assert render_float(2**24, "json") == "16777216.0"


@pytest.mark.parametrize("k", [1, 2, 737, 1000])
def test_the_line_bound_is_reached_by_the_worst_line_and_holds_for_real_ones(k):
    worst = format_results(np.full((1, k), 2.0**24), np.full((1, k), WORST), np.array([WORST]), style="json")
    assert len(worst) == sizing.response_bytes_per_query(k)  # tight: the bound is this line
    assert sizing.response_bytes_per_query(k) == 35 * k + 69
    rng = np.random.default_rng(k)
    labels = rng.integers(1, 2**24 + 1, size=(50, k)).astype(np.float32)
    distances = rng.normal(scale=3.0, size=(50, k))
    for style in ("json", "short"):
        text = format_results(labels, distances, predictor_type="regressor", style=style)
        assert max(len(line) + 1 for line in text.splitlines()) <= sizing.response_bytes_per_query(k)
    with pytest.raises(ValueError, match="k must be >= 1"):
        sizing.response_bytes_per_query(0)


@pytest.mark.parametrize("dim", [1, 4, 65, 101, 1000])
def test_request_bytes_are_what_the_writer_produces(dim):
    rng = np.random.default_rng(dim)
    body = encode_dense(rng.normal(size=(7, dim)).astype(np.float32))
    assert sizing.request_bytes_per_query(dim) * 7 == len(body)


def test_users_per_part_takes_the_smallest_bound():
    default = {"max_payload_mb": 6, "response_budget_bytes": sizing.DEFAULT_RESPONSE_BUDGET}
    ml100k = sizing.users_per_part(k=737, feature_dim=65, users_per_shard=100_000, **default)
    assert sizing.request_bytes_per_query(65) == 288
    assert (ml100k.users, ml100k.by_response, ml100k.by_payload) == (202, 202, 20_833)
    assert ml100k.limited_by == "response_budget_bytes" and ml100k.response_bytes_per_query == 25_864
    cap = sizing.users_per_part(k=1000, feature_dim=65, users_per_shard=100_000, **default)
    assert (cap.users, cap.response_bytes_per_query) == (149, 35_069)
    small_k = sizing.users_per_part(k=10, feature_dim=65, users_per_shard=1000, **default)
    assert (small_k.users, small_k.limited_by) == (1000, "users_per_shard")
    wide = sizing.users_per_part(k=10, feature_dim=100_000, users_per_shard=10**6, **default)
    assert wide.limited_by == "max_payload_mb" and wide.users == 6 * 10**6 // 400_028 == 14
    none = sizing.users_per_part(
        k=1000, feature_dim=65, users_per_shard=10, max_payload_mb=6, response_budget_bytes=35_068
    )
    assert none.users == 0 and none.as_dict()["response_bytes_per_query"] == 35_069


def test_part_keys_sort_numerically_past_99999_parts():
    assert [sizing.part_key_width(n) for n in (0, 1, 100_000, 100_001, 10**6 + 1)] == [5, 5, 5, 6, 7]
    n = 100_001
    width = sizing.part_key_width(n)
    keys = [f"users-{i:0{width}d}.rec.out" for i in (0, 9_999, 10_000, 99_999, 100_000)]
    assert sorted(keys) == keys  # S3 lists in UTF-8 binary order = part order
    assert sorted(["users-99999.rec.out", "users-100000.rec.out"]) != [
        "users-99999.rec.out",
        "users-100000.rec.out",
    ]  # what a fixed 5-digit pad would do

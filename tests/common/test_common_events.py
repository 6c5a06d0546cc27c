"""Step payloads: parsed once at the handler, errors name the field, results keep the contract's keys."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline_steps.common import events
from pipeline_steps.common.errors import InputError

RUN = {
    "run_id": "r1",
    "manifest_key": "m",
    "queries_manifest_key": "q",
    "transform_output_s3_uri": "s3://b/t/",
}


def test_parse_keeps_the_fields_and_ignores_extra_keys() -> None:
    ev = events.PublishPartsEvent.parse({**RUN, "first_part": 2, "last_part": 4, "n_lists": 9})
    assert (ev.run_id, ev.first_part, ev.last_part) == ("r1", 2, 4)
    assert events.RunResultsEvent.parse(ev) is ev  # already parsed: passed through


@pytest.mark.parametrize(
    ("cls", "event", "message"),
    [
        (events.RepackageEvent, {"run_id": "r1", "manifest_key": "m"}, r"lacks \['model_s3_uri'\]"),
        (events.PrepareEvent, {"run_id": ""}, r"prepare event lacks \['run_id'\]"),
        (
            events.PublishPartsEvent,
            {**RUN, "first_part": "0", "last_part": 1},
            "field 'first_part' must be an integer, got '0'",
        ),
        (
            events.PublishPartsEvent,
            {**RUN, "first_part": 0, "last_part": True},
            "'last_part' must be an integer",
        ),
        (events.PublishPartsEvent, {**RUN, "part": 0}, r"lacks \['first_part', 'last_part'\]"),
        (events.RunResultsEvent, {**RUN, "run_id": 7}, "field 'run_id' must be a string, got 7"),
        (events.GuardEvent, [], "expected a JSON object, got list"),
    ],
)
def test_parse_errors_name_the_field(cls: type, event: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        cls.parse(event)


def test_result_keys_are_the_contract() -> None:
    # docs/contracts.md "Step functions payloads"; docs/state-machine.md reads them by these names.
    def keys(cls: type) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    assert keys(events.GuardResult) == [
        "skip",
        "blocking_execution_arn",
        "run_id",
        "fm_job_name",
        "knn_job_name",
        "model_name",
        "transform_job_name",
        "fm_output_s3_uri",
        "knn_output_s3_uri",
        "transform_output_s3_uri",
        "transform_output_prefix",
    ]
    assert keys(events.PrepareResult) == [
        "run_id",
        "manifest_key",
        "train_s3_uri",
        "test_s3_uri",
        "feature_dim",
        "n_users",
        "n_items",
        "train_rows",
        "test_rows",
    ]
    assert keys(events.RepackageResult) == [
        "knn_train_s3_uri",
        "queries_s3_uri",
        "feature_dim",
        "k",
        "sample_size",
        "queries_manifest_key",
        "n_users",
        "n_parts",
        "publish_batches_key",
    ]
    assert keys(events.EvaluateResult) == ["metrics_key", "passed", "model", "baseline"]
    assert keys(events.PublishResult) == ["run_id", "users_written", "pointer"]
    assert events.PublishResult(run_id="r", users_written=3, pointer="r").to_json() == {
        "run_id": "r",
        "users_written": 3,
        "pointer": "r",
    }

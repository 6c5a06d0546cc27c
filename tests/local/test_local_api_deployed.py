"""The read API as synthesized (`topx:api` on), deployed in the embedded AWS with IAM enforced: the
template's role for the function is enough for what the handler calls, and the run shows a signed call."""

from __future__ import annotations

import json

import pytest

from tests.local.test_local_end_to_end import _write_interactions, run_small


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-e2e")
    ratings, held, _ = _write_interactions(tmp)
    out = tmp / "out"
    code = run_small(ratings, held, out, "-c", 'topx:api={"auth": "iam", "pointer_ttl_seconds": 5}')
    return code, json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_the_deployed_function_answers_a_signed_request_with_its_template_role(report):
    code, doc = report
    assert code == 0 and doc["status"] == "SUCCEEDED"
    api = doc["read_api"]
    assert api["status"] == 200 and api["unsigned_status"] == 403
    body = api["body"]
    assert body["run_id"] == doc["run_id"] and body["fallback"] is False
    assert body["x"] == 3 and len(body["items"]) == 3

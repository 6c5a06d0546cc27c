"""The read API as synthesized (`topx:api` on, with item metadata), deployed in the embedded AWS with
IAM enforced: the template's role for the function is enough for what the handler calls (GetItem,
GetObject on the metadata key), and the run shows a signed call whose items carry their titles."""

from __future__ import annotations

import csv
import json

import pytest

from tests.local.test_local_end_to_end import _write_interactions, run_small


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-e2e")
    ratings, held, items = _write_interactions(tmp)
    metadata = tmp / "items.csv"
    with metadata.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "title", "price"])
        writer.writerows([item, f"Title of {item}", "1"] for item in sorted(items))
    api = {
        "auth": "iam",
        "pointer_ttl_seconds": 5,
        "item_metadata_key": "catalog/items.csv",
        "item_fields": ["title"],
    }
    out = tmp / "out"
    code = run_small(
        ratings, held, out, "-c", f"topx:api={json.dumps(api)}", "--put", f"catalog/items.csv={metadata}"
    )
    return code, json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_the_deployed_function_answers_a_signed_request_with_its_template_role(report):
    code, doc = report
    assert code == 0 and doc["status"] == "SUCCEEDED"
    api = doc["read_api"]
    assert api["status"] == 200 and api["unsigned_status"] == 403
    body = api["body"]
    assert body["run_id"] == doc["run_id"] and body["fallback"] is False
    assert body["x"] == 3 and len(body["items"]) == 3
    assert all(i["title"] == f"Title of {i['item_id']}" and "price" not in i for i in body["items"])

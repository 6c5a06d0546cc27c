"""The local read API: SigV4 verified like API Gateway, execute-api:Invoke authorised, the query
Lambda invoked as its role (embedded AWS, IAM enforced)."""

from __future__ import annotations

import json
import time

import pytest

from pipeline_steps.local import access
from pipeline_steps.local.api_server import (
    Denied,
    LocalApi,
    call,
    create_query_function,
    function_invoker,
    sign,
    verify_sigv4,
)
from pipeline_steps.local.server import LocalAws
from pipeline_steps.query import clear_pointer_cache
from tests.conftest import TABLE, create_table
from tests.published_run import write_run

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture(scope="module")
def served():
    with LocalAws() as aws:
        dynamodb = aws.client("dynamodb")
        create_table(dynamodb)
        clear_pointer_cache()
        write_run(dynamodb, "r1", {"u 1": [("a", 2.0), ("b", 1.0)]})
        name = create_query_function(aws, TABLE, pointer_ttl=0)
        invoke = function_invoker(name, account=aws.account_id, region=aws.region)
        with LocalApi(invoke, region=aws.region, account=aws.account_id) as api:
            yield aws, api
        clear_pointer_cache()


def role(aws: LocalAws, name: str, *statements: dict) -> access.Credentials:
    iam = aws.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(document))
    return access.role_credentials(arn, "lambda.amazonaws.com")


def test_a_signed_request_is_answered_by_the_function(served):
    aws, api = served
    status, headers, body = call(f"{api.url}/users/u%201/recommendations?x=1", access.operator(), aws.region)
    assert status == 200, body
    assert body["items"] == [{"item_id": "a", "score": 2.0}] and body["run_id"] == "r1"
    assert headers["Cache-Control"] == "private, max-age=0" and headers["ETag"].startswith('"r1:')
    assert api.access_log[-1]["status"] == 200 and api.access_log[-1]["caller"].endswith(
        "user/local-operator"
    )


def test_missing_and_invalid_signatures_are_403(served):
    aws, api = served
    status, _, body = call(f"{api.url}/users/u/recommendations", None, aws.region)
    assert (status, body) == (403, {"message": "Missing Authentication Token"})
    url = f"{api.url}/users/u/recommendations"
    headers = sign("GET", url, access.operator(), aws.region)
    tampered = dict(headers, Authorization=headers["Authorization"][:-4] + "0000")
    status, _, body = call(url, None, aws.region, tampered)
    assert status == 403 and "signature we calculated does not match" in body["message"]
    # a signature for one path does not authorise another
    status, _, body = call(f"{api.url}/users/v/recommendations", None, aws.region, headers)
    assert status == 403 and "does not match" in body["message"]
    wrong = access.Credentials(access.operator().access_key_id, "not-the-secret")
    status, _, body = call(url, wrong, aws.region)
    assert status == 403 and "does not match" in body["message"]
    unknown = access.Credentials("AKIAUNKNOWN000000000", "secret")
    status, _, body = call(url, unknown, aws.region)
    assert status == 403 and "security token included in the request is invalid" in body["message"]
    status, _, body = call(url, access.operator(), "eu-west-1")
    assert status == 403 and "scoped to a valid region" in body["message"]


def test_an_old_signature_is_expired():
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20200101/us-east-1/execute-api/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=00",
        "X-Amz-Date": "20200101T000000Z",
        "Host": "h",
    }
    with pytest.raises(Denied, match="Signature expired"):
        verify_sigv4(
            "GET", "http://h/users/u/recommendations", headers, b"", region="us-east-1", now=time.time()
        )


def test_the_caller_needs_execute_api_invoke_on_the_route(served):
    aws, api = served
    url = f"{api.url}/users/u%201/recommendations"
    nobody = role(aws, "api-nobody", {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"})
    status, _, body = call(url, nobody, aws.region)
    assert status == 403
    assert "is not authorized to perform: execute-api:Invoke on resource: " in body["message"]
    assert api.route_arn("GET", "/users/u%201/recommendations") in body["message"]
    users_only = role(
        aws,
        "api-users",
        {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": api.route_arn("GET", "/users/*")},
    )
    assert call(url, users_only, aws.region)[0] == 200
    assert call(f"{api.url}/items/a/related", users_only, aws.region)[0] == 403


def test_routes_and_errors_pass_through(served):
    aws, api = served
    operator = access.operator()
    assert call(f"{api.url}/nowhere", operator, aws.region)[:3:2] == (404, {"message": "Not Found"})
    status, _, body = call(f"{api.url}/users/u/recommendations?x=abc", operator, aws.region)
    assert status == 400 and "x: expected a positive integer" in body["error"]["message"]
    status, _, body = call(f"{api.url}/items/zz/related", operator, aws.region)
    assert status == 404 and body["error"]["code"] == "NotFound"
    status, _, body = call(f"{api.url}/users/stranger/recommendations", operator, aws.region)
    assert status == 200 and body["fallback"] is True


def test_the_function_runs_as_its_role(served):
    """Without dynamodb:GetItem on its role, the function is denied by the embedded AWS (a 500)."""
    aws, api = served
    aws.client("iam").delete_role_policy(RoleName="read-api-role", PolicyName="read")
    try:
        status, _, body = call(f"{api.url}/users/u/recommendations", access.operator(), aws.region)
        assert (status, body["error"]["code"]) == (500, "InternalError")
    finally:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "dynamodb:GetItem",
                    "Resource": f"arn:aws:dynamodb:{aws.region}:{aws.account_id}:table/{TABLE}",
                }
            ],
        }
        aws.client("iam").put_role_policy(
            RoleName="read-api-role", PolicyName="read", PolicyDocument=json.dumps(policy)
        )
    assert call(f"{api.url}/users/u/recommendations", access.operator(), aws.region)[0] == 200


def test_responses_during_a_pointer_flip_are_each_from_one_run(served):
    """Small-scale, untimed version of bench/api.py's flip phase: every answer is wholly one run's."""
    from concurrent.futures import ThreadPoolExecutor

    aws, api = served
    items = {"r1": {"a", "b"}, "r2": {"c", "d"}}
    url = f"{api.url}/users/u%201/recommendations"
    operator = access.operator()

    def client(_: int) -> list[dict]:
        return [call(url, operator, aws.region)[2] for _ in range(15)]

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, n) for n in range(4)]
        time.sleep(0.2)
        write_run(aws.client("dynamodb"), "r2", {"u 1": [("c", 3.0), ("d", 2.0)]})
        bodies = [body for f in futures for body in f.result()]
    bodies.append(call(url, operator, aws.region)[2])
    assert all({i["item_id"] for i in body["items"]} == items[body["run_id"]] for body in bodies)
    assert bodies[-1]["run_id"] == "r2"  # the flip is visible (pointer TTL 0 here)


def test_the_serve_path_starts_the_api_answers_a_signed_request_and_prints_how_to_explore(
    served, monkeypatch
):
    from pipeline_steps.local import explore
    from pipeline_steps.local.deploy import Deployment

    aws, _ = served
    dep = Deployment(
        stacks=["s"],
        state_machine_arn="arn:sm",
        bucket="b",
        table=TABLE,
        functions={"read-api": {"handler": "pipeline_steps.query.handler.handler", "environment": {}}},
        topics=[],
    )
    lines: list[str] = []
    api = explore.start_api(aws, dep, lines.append)
    assert api is not None
    try:
        shown = explore.show_api(api, aws, "u 1", lines.append, x=1)
        assert shown["status"] == 200 and shown["unsigned_status"] == 403
        assert shown["body"]["user_id"] == "u 1"
        text = "\n".join(lines)
        assert "curl -s " in text and "Authorization: AWS4-HMAC-SHA256 Credential=" in text
        assert "/users/u%201/recommendations?x=1" in text

        def interrupted(_: float) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(explore.time, "sleep", interrupted)
        explore.serve(aws, dep, api, "u 1", lines.append)
    finally:
        api.stop()
    text = "\n".join(lines)
    assert f"pipeline_steps.query 'u 1' --table {TABLE}" in text
    assert f"pipeline_steps.publish --table {TABLE} rollback" in text
    assert f"{api.url}/users/<id>/recommendations" in text and lines[-1] == "stopped"
    no_api = Deployment(stacks=[], state_machine_arn="", bucket="b", table=TABLE, functions={}, topics=[])
    assert explore.start_api(aws, no_api, lines.append) is None


def test_item_metadata_fields_in_a_signed_call_with_the_functions_role(served):
    """The function reads the metadata object as its role: GetObject on exactly that key is enough,
    and without it the API answers 503 naming the object (never a 500)."""
    aws, _ = served
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="api-meta")
    s3.put_object(
        Bucket="api-meta", Key="catalog/items.csv", Body=b"item_id,title,stock\na,Alpha,3\nc,Gamma,1\n"
    )
    s3.put_object(Bucket="api-meta", Key="catalog/other.csv", Body=b"item_id,title\na,Other\n")
    metadata = ("api-meta", "catalog/items.csv", ["title"])
    name = create_query_function(aws, TABLE, name="read-api-meta", pointer_ttl=0, item_metadata=metadata)
    invoke = function_invoker(name, account=aws.account_id, region=aws.region)
    with LocalApi(invoke, region=aws.region, account=aws.account_id) as api:
        status, _, body = call(f"{api.url}/users/u%201/recommendations", access.operator(), aws.region)
    assert status == 200, body
    titles = {"a": "Alpha", "c": "Gamma"}  # run r1 ("a", "b") or, after the flip test, r2 ("c", "d")
    assert [i.get("title") for i in body["items"]] == [titles.get(i["item_id"]) for i in body["items"]]
    assert set(body["items"][0]) == {"item_id", "score", "title"}  # not "stock": only the configured field
    # The role may read that key only: pointed at another key of the bucket, the read is denied.
    other = ("api-meta", "catalog/other.csv", ["title"])
    name = create_query_function(aws, TABLE, name="read-api-other", pointer_ttl=0, item_metadata=other)
    table_arn = f"arn:aws:dynamodb:{aws.region}:{aws.account_id}:table/{TABLE}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table_arn},
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::api-meta/catalog/items.csv",
            },
        ],
    }
    aws.client("iam").put_role_policy(
        RoleName="read-api-other-role", PolicyName="read", PolicyDocument=json.dumps(policy)
    )
    invoke = function_invoker(name, account=aws.account_id, region=aws.region)
    with LocalApi(invoke, region=aws.region, account=aws.account_id) as api:
        status, _, body = call(f"{api.url}/users/u%201/recommendations", access.operator(), aws.region)
    assert status == 503, body
    assert body["error"]["code"] == "ItemMetadataUnavailable"
    assert "s3://api-meta/catalog/other.csv: cannot be read (AccessDenied" in body["error"]["message"]


def test_the_demo_deploys_the_api_with_titles_and_genres_and_uploads_their_object(tmp_path, monkeypatch):
    from pipeline_steps.datasets import movielens
    from pipeline_steps.local import cli
    from pipeline_steps.query.metadata import parse_item_metadata

    base, test = tmp_path / "ua.base", tmp_path / "ua.test"
    base.write_text("1\t1\t5\t1\n", encoding="utf-8")
    test.write_text("1\t2\t4\t2\n", encoding="utf-8")
    ds = movielens.MovieLens100k(
        u_data=base,
        ua_base=base,
        ua_test=test,
        titles={"1": "Toy Story (1995)", "2": 'Heat, "the" movie (1995)'},
        genres={"1": frozenset({"Comedy", "Animation"})},
    )
    monkeypatch.setattr(movielens, "load", lambda: ds)
    seen: dict = {}

    def fake_run_local(**kwargs):
        seen.update(kwargs)
        ((key, path),) = kwargs["uploads"]
        seen["metadata"] = parse_item_metadata(
            path.read_bytes(), key, kwargs["overrides"]["topx:api"]["item_fields"]
        )
        return {"status": "SUCCEEDED"}

    monkeypatch.setattr(cli, "run_local", fake_run_local)
    assert cli.main(["demo", "--out", str(tmp_path / "out")]) == 0
    assert seen["overrides"]["topx:api"] == cli.DEMO_API
    assert seen["uploads"][0][0] == cli.DEMO_API["item_metadata_key"]
    assert seen["metadata"].values == {
        "1": ("Toy Story (1995)", "Animation|Comedy"),
        "2": ('Heat, "the" movie (1995)', ""),
    }

"""Bad rows by reason, examples with file:line, the bad-fraction limit, and 'nothing valid'."""

from __future__ import annotations

import pytest

from pipeline_steps.prepare.layout import PrepareInputError

REG = {"label_mode": "regression", "split": "none", "shuffle": False}
GOOD = "".join(f"u{k},i{k % 7},{1 + k % 5},{1600000000 + k}\n" for k in range(200))
BAD = (
    "u1,i1\n"  # missing field (line 2)
    "u2,i2,3,1600000000,extra\n"  # extra field
    ",i3,4,1600000000\n"  # empty user id
    "u4,,4,1600000000\n"  # empty item id
    "u5,i5,five,1600000000\n"  # non-numeric rating
    "u6,i6,nan,1600000000\n"  # non-finite rating
    "u7,i7,4,yesterday\n"  # bad timestamp
    "u8,i8,4,\n"  # empty timestamp
)


@pytest.mark.parametrize("quoted", [False, True], ids=["fast", "csv"])
def test_each_bad_kind_is_counted_with_examples(run_prepare, quoted):
    head = "user,item,rating,timestamp\n"
    body = BAD + GOOD
    if quoted:
        body = body.replace("u199,", '"u199",')
    r = run_prepare({"input/d.csv": head + body}, **REG, max_bad_fraction=0.05)
    rep = r.report
    assert rep["bad_rows_by_reason"] == {
        "missing field": 1,
        "extra field": 1,
        "empty user id": 1,
        "empty item id": 1,
        "non-numeric rating": 2,
        "bad timestamp": 2,
    }
    assert rep["examples"][:3] == [
        "input/d.csv:2: missing field",
        "input/d.csv:3: extra field",
        "input/d.csv:4: empty user id",
    ]
    assert "input/d.csv:7: non-numeric rating" in rep["examples"]
    assert "input/d.csv:9: bad timestamp" in rep["examples"]
    c = r.manifest["counts"]
    assert (c["rows_read"], c["rows_valid"], c["bad_rows"]) == (208, 200, 8)


def test_examples_are_capped_per_reason(run_prepare):
    body = "user,item,rating\n" + "u,i,x\n" * 50 + "".join(f"u{k},i,1\n" for k in range(100))
    r = run_prepare({"input/d.csv": body}, **REG, max_bad_fraction=0.5)
    assert r.report["bad_rows_by_reason"] == {"non-numeric rating": 50}
    assert r.report["examples"] == [f"input/d.csv:{n}: non-numeric rating" for n in range(2, 7)]


def test_bad_fraction_over_the_limit_is_an_error(run_prepare):
    body = "user,item,rating\n" + "u,i,x\n" * 3 + "".join(f"u{k},i,1\n" for k in range(97))
    with pytest.raises(
        PrepareInputError, match=r"3 of 100 train rows are bad \(3\.00% > max_bad_fraction 1\.00%\)"
    ):
        run_prepare({"input/d.csv": body}, **REG)
    r = run_prepare({"input/d.csv": body}, **REG, max_bad_fraction=0.03)
    assert r.manifest["counts"]["bad_rows"] == 3


def test_nothing_valid_is_an_error_with_examples(run_prepare):
    with pytest.raises(
        PrepareInputError, match=r"no valid rows .* e\.g\. input/d\.csv:2: non-numeric rating"
    ):
        run_prepare({"input/d.csv": "user,item,rating\nu,i,x\n"}, **REG, max_bad_fraction=1.0)
    with pytest.raises(PrepareInputError, match=r"no valid rows"):
        run_prepare({"input/d.csv": ""}, **REG)


def test_unbalanced_quote_is_reported_with_the_file(run_prepare):
    body = 'user,item,rating\nu1,"never closed,4\n' + "u2,i2,3\n" * 5
    with pytest.raises(PrepareInputError, match=r"input/d\.csv"):
        run_prepare({"input/d.csv": body}, **REG)


def test_a_file_that_is_all_header_is_named_in_the_error(run_prepare):
    with pytest.raises(PrepareInputError, match=r"no valid rows in the train input input/h\.csv \(0 row"):
        run_prepare({"input/h.csv": "user_id,item_id,rating,timestamp\r\n"})


@pytest.mark.parametrize("quoted", [False, True], ids=["fast", "csv"])
def test_ids_longer_than_the_key_budget_are_bad_rows(run_prepare, quoted):
    from pipeline_steps.prepare.query import MAX_ID_BYTES

    long_user, long_item = "ü" * (MAX_ID_BYTES // 2 + 1), "x" * (MAX_ID_BYTES + 1)  # bytes, not chars
    q = '"' if quoted else ""
    body = (
        "user,item,rating,timestamp\n"
        f"{q}{long_user}{q},i1,3,1600000000\n"
        f"u1,{long_item},3,1600000000\n"
        f"{'y' * MAX_ID_BYTES},i1,3,1600000000\n"  # exactly at the limit: kept
    ) + GOOD
    r = run_prepare({"input/d.csv": body}, **REG, max_bad_fraction=0.05)
    assert r.report["bad_rows_by_reason"] == {"user id too long": 1, "item id too long": 1}
    assert r.report["examples"] == ["input/d.csv:2: user id too long", "input/d.csv:3: item id too long"]
    assert r.manifest["counts"]["rows_valid"] == 201


def test_a_file_with_one_column_names_the_file_instead_of_building_a_layout_without_items(run_prepare):
    with pytest.raises(PrepareInputError, match=r"input/ids\.csv: needs a user and an item column"):
        run_prepare({"input/ids.csv": "u1\nu2\nu3\n"}, delimiter=",")

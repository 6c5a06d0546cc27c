"""Input variations: delimiters, headers, compression, encodings, quoting, id kinds, timestamps."""

from __future__ import annotations

import gzip

import pytest

from pipeline_steps.prepare.layout import PrepareInputError

REG = {"label_mode": "regression", "split": "none", "shuffle": False}


def triples(run) -> list[tuple[str, str, float]]:
    return sorted(run.rows("train"))


def test_movielens_u_data_tab_no_header(run_prepare):
    data = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
    r = run_prepare({"input/u.data": data}, **REG)
    assert triples(r) == [("186", "302", 3.0), ("196", "242", 3.0), ("22", "377", 1.0)]
    assert r.users == ["22", "186", "196"]  # numeric ids sort numerically
    f = r.report["files"][0]
    assert f["header"] is False and f["delimiter"] == "\t"
    assert f["columns"] == {"user": 0, "item": 1, "rating": 2, "timestamp": 3}


@pytest.mark.parametrize(
    ("header", "sep"),
    [
        ("userId,movieId,rating,timestamp", ","),
        ("user_id;item_id;rating;timestamp", ";"),
        ("customer_id|product_id|star_rating|review_date", "|"),
        ("user_id:token\titem_id:token\trating:float\ttimestamp:float", "\t"),  # RecBole .inter
        ("UserID::MovieID::Rating::Timestamp", "::"),  # MovieLens 1M
    ],
)
def test_header_aliases_and_delimiters(run_prepare, header, sep):
    ts = "2015-08-31" if "review_date" in header else "1500000000"
    rows = [sep.join(["u1", "i1", "5", ts]), sep.join(["u2", "i1", "2", ts])]
    r = run_prepare({"input/a.txt": "\n".join([header, *rows]) + "\n"}, **REG)
    assert triples(r) == [("u1", "i1", 5.0), ("u2", "i1", 2.0)]
    assert r.report["files"][0]["header"] is True
    assert r.report["files"][0]["delimiter"] == sep


def test_quoted_fields_with_a_two_character_delimiter(run_prepare):
    data = 'UserID::MovieID::Rating\n1::"a::b"::3\n2::"say ""hi"""::4\n3::x::oops\n' + "4::y::5\n" * 97
    r = run_prepare({"input/q.dat": data}, **REG, max_bad_fraction=0.05)
    assert ("1", "a::b", 3.0) in triples(r) and ("2", 'say "hi"', 4.0) in triples(r)
    assert r.report["examples"] == ["input/q.dat:4: non-numeric rating"]


def test_amazon_reviews_layout_picks_named_columns(run_prepare):
    header = "marketplace\tcustomer_id\treview_id\tproduct_id\tproduct_parent\tproduct_title"
    header += "\tstar_rating\treview_date"
    row = 'US\t5243\tR1\tB00ABC1234\t99\tA "quoted", title\t4\t2015-08-31'
    r = run_prepare({"input/reviews.tsv": header + "\n" + row + "\n"}, **REG, quotechar="")
    assert triples(r) == [("5243", "B00ABC1234", 4.0)]
    cols = r.report["files"][0]["columns"]
    assert cols == {
        "user": "customer_id",
        "item": "product_id",
        "rating": "star_rating",
        "timestamp": "review_date",
    }


def test_columns_by_name_and_position(run_prepare):
    data = "when,who,score,what\n1,alice,4,book\n2,bob,3,pen\n"
    by_name = run_prepare(
        {"input/x.csv": data},
        **REG,
        user_col="who",
        item_col="what",
        rating_col="score",
        timestamp_col="when",
    )
    by_pos = run_prepare(
        {"input/x.csv": data}, **REG, header=True, user_col=1, item_col=3, rating_col=2, timestamp_col=0
    )
    assert triples(by_name) == triples(by_pos) == [("alice", "book", 4.0), ("bob", "pen", 3.0)]


def test_gzip_bom_crlf_and_no_final_newline(run_prepare):
    text = "\ufeffuser_id,item_id,rating\r\nu1,i1,4\r\nu2,i2,5"
    r = run_prepare({"input/a.csv.gz": gzip.compress(text.encode("utf-8"))}, **REG)
    assert triples(r) == [("u1", "i1", 4.0), ("u2", "i2", 5.0)]
    assert r.report["files"][0]["gzip"] is True


def test_a_bom_before_a_data_line_is_not_part_of_the_first_id(run_prepare):
    r = run_prepare({"input/u.data": "\ufeffu1\ti1\t4\t1\nu2\ti2\t5\t2\n".encode()}, **REG)
    assert r.users == ["u1", "u2"]


def test_string_ids_of_every_kind(run_prepare):
    ids = [
        ("A1B2C3D4E5F6G7", "B00EXAMPLE"),
        ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", "The Matrix (1999)"),
        ("zoë", 'Crème brûlée, "the" movie'),
        ("用户", "Star Wars: Episode IV, A New Hope"),
    ]
    lines = ["user,item,rating"] + [f'"{u}","{i.replace(chr(34), chr(34) * 2)}",4' for u, i in ids]
    r = run_prepare({"input/x.csv": "\n".join(lines) + "\n"}, **REG)
    assert sorted((u, i) for u, i, _ in triples(r)) == sorted(ids)
    assert set(r.users) == {u for u, _ in ids} and r.users == sorted(r.users)


def test_quoted_fields_with_delimiters_quotes_and_newlines(run_prepare):
    data = 'user,item,rating\nu1,"a, b",4\nu2,"say ""hi""",3\nu3,"two\nlines",5\nu4,plain,1\n'
    r = run_prepare({"input/q.csv": data}, **REG)
    assert triples(r) == [
        ("u1", "a, b", 4.0),
        ("u2", 'say "hi"', 3.0),
        ("u3", "two\nlines", 5.0),
        ("u4", "plain", 1.0),
    ]


def test_csv_fallback_line_numbers_after_multiline_field(run_prepare):
    data = 'user,item,rating\nu1,"two\nlines",4\nu2,i2,x\n' + "".join(f"u{k},i{k},1\n" for k in range(300))
    r = run_prepare({"input/q.csv": data}, **REG)
    assert r.report["examples"] == ["input/q.csv:4: non-numeric rating"]


def test_plain_and_quoted_files_agree(run_prepare):
    rows = [f"user {k % 37},item-{(k * 7) % 53},{1 + k % 5},{1400000000 + k}" for k in range(2000)]
    plain = "user,item,rating,timestamp\n" + "\n".join(rows) + "\n"
    quoted = plain.replace("user 0,", '"user 0",')
    a = run_prepare({"input/a.csv": plain}, **REG)
    b = run_prepare({"input/a.csv": quoted}, **REG)
    assert triples(a) == triples(b)
    assert a.users == b.users and a.items == b.items


def test_timestamps_unix_decimal_and_iso(run_prepare):
    # Duplicate pair: the later timestamp wins, whatever the format.
    data = (
        "user,item,rating,timestamp\n"
        "u,a,1,2020-01-01T00:00:00Z\n"
        "u,a,2,1577836801\n"  # 2020-01-01T00:00:01Z -> later
        "u,b,3,2021-06-01 12:00:00\n"
        "u,b,4,1622548800.5\n"  # 2021-06-01T12:00:00.5 -> same second; later line wins
        "v,a,5,2019-12-31\n"
    )
    r = run_prepare({"input/t.csv": data}, **REG)
    assert triples(r) == [("u", "a", 2.0), ("u", "b", 4.0), ("v", "a", 5.0)]
    assert r.manifest["counts"]["duplicates"] == 2


def test_many_files_under_prefix_in_key_order(run_prepare):
    files = {
        "input/part-2.csv": "user,item,rating\nu1,i1,5\n",  # later file: wins the duplicate
        "input/part-1.tsv": "u1\ti1\t1\nu2\ti2\t3\n",
        "input/sub/part-3.csv.gz": gzip.compress(b"u3,i3,4\n"),
        "input/_SUCCESS": "",
        "input/.hidden": "junk",
        "other/x.csv": "u9,i9,1\n",
    }
    r = run_prepare(files, **REG)
    assert triples(r) == [("u1", "i1", 5.0), ("u2", "i2", 3.0), ("u3", "i3", 4.0)]
    assert [f["key"] for f in r.report["files"]] == [
        "input/part-1.tsv",
        "input/part-2.csv",
        "input/sub/part-3.csv.gz",
    ]


def test_blank_lines_are_ignored(run_prepare):
    r = run_prepare(
        {"input/a.csv": "\n\nuser,item\n\nu1,i1\n   \nu2,i2\n\n"}, label_mode="implicit", split="none"
    )
    assert r.manifest["counts"]["rows_read"] == 2 and r.manifest["counts"]["bad_rows"] == 0


def test_latin1_bytes_give_file_and_line(run_prepare):
    data = "user,item,rating\nu1,i1,4\nu2,caf\xe9,5\n".encode("latin-1")
    with pytest.raises(PrepareInputError, match=r"input/l\.csv:3: not valid utf-8 \(byte 0xe9 at column 7\)"):
        run_prepare({"input/l.csv": data}, **REG)
    r = run_prepare({"input/l.csv": data}, **REG, encoding="latin-1")
    assert ("u2", "café", 5.0) in triples(r)


def test_a_codec_the_engine_does_not_read_is_converted_first(run_prepare):
    data = "user,item,rating\nu1,caf\u20ac,4\nu2,i2,5\n".encode("cp1252")  # the euro sign is 0x80
    r = run_prepare({"input/w.csv": data}, **REG, encoding="cp1252")
    assert triples(r) == [("u1", "caf\u20ac", 4.0), ("u2", "i2", 5.0)]
    with pytest.raises(
        PrepareInputError, match=r"input/w\.csv:4: not valid cp1252 \(byte 0x81 at column 5\)"
    ):
        run_prepare({"input/w.csv": data + b"u3,x\x81y,3\n"}, **REG, encoding="cp1252")


def test_undetectable_delimiter_and_missing_columns(run_prepare):
    with pytest.raises(PrepareInputError, match=r"input/a:1: cannot detect the delimiter"):
        run_prepare({"input/a": "justoneword\n"}, **REG)
    with pytest.raises(PrepareInputError, match=r"cannot find the user column in header"):
        run_prepare({"input/a.csv": "movieId,rating\n1,4\n"}, **REG)
    with pytest.raises(PrepareInputError, match=r"no column named 'who'"):
        run_prepare({"input/a.csv": "user,item\n1,4\n"}, **REG, user_col="who")
    with pytest.raises(PrepareInputError, match=r"no input files"):
        run_prepare({"elsewhere/a.csv": "u,i\n"}, **REG)


def test_binary_mode_needs_ratings(run_prepare):
    with pytest.raises(PrepareInputError, match="needs a rating column"):
        run_prepare({"input/a.csv": "user,item\nu1,i1\n"}, label_mode="binary", split="none")


def test_empty_and_header_only_files_next_to_real_data(run_prepare):
    files = {
        "input/0-empty.csv": "",
        "input/1-header.csv": "user_id,item_id,rating,timestamp\n",
        "input/2-data.csv": "user_id,item_id,rating,timestamp\nu,i,4,1\n",
    }
    r = run_prepare(files, **REG)
    assert triples(r) == [("u", "i", 4.0)]
    assert [f["rows_read"] for f in r.report["files"]] == [0, 0, 1]


def test_a_long_line(run_prepare):
    long_item = "x" * 1000
    r = run_prepare({"input/a.csv": f"user,item,rating\nu1,{long_item},3\nu2,short,4\n"}, **REG)
    assert triples(r) == [("u1", long_item, 3.0), ("u2", "short", 4.0)]


def test_whitespace_only_lines_before_the_first_row_are_blank_too(run_prepare):
    r = run_prepare(
        {"input/a.csv": " \r\n\t\n\nuser,item\nu1,i1\nu2,i2\n"}, label_mode="implicit", split="none"
    )
    assert r.manifest["counts"]["rows_read"] == 2 and r.manifest["counts"]["bad_rows"] == 0
    assert r.users == ["u1", "u2"]

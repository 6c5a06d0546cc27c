"""Side features in prepare (docs/decisions/0018): column specs, metadata files, side matrices, FM rows."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.manifest import Manifest
from pipeline_steps.formats import recordio
from pipeline_steps.prepare.config import FeatureField, PrepareConfig, parse_feature_columns
from pipeline_steps.prepare.layout import PrepareInputError

RATINGS = "user_id,item_id,rating,timestamp\n" + "".join(
    f"u{u},i{i},5,{10 * u + i}\n" for u in range(1, 5) for i in range(1, 5) if (u + i) % 3
)
ITEMS = (
    "item_id\tgenres\tyear\n"
    "i1\tAction|Comedy\t1990\n"
    "i2\tComedy\t2000\n"
    "i3\t\t1995\n"  # no genres: the field is missing for i3
    "i9\tDrama\t1980\n"  # metadata only (no interactions)
)  # i4 has no metadata row
USERS = "user_id,occupation\nu1,writer\nu2,doctor\nu3,writer\nu4,\n"


def test_column_spec_syntax() -> None:
    fields = parse_feature_columns(
        "genres:multi:pipe, year:numeric:4,occupation:categorical,age:numeric", "x"
    )
    assert fields == (
        FeatureField("genres", "multi", separator="|"),
        FeatureField("year", "numeric", bins=4),
        FeatureField("occupation", "categorical"),
        FeatureField("age", "numeric", bins=5),
    )
    assert parse_feature_columns("g:multi:space", "x")[0].separator == " "
    assert parse_feature_columns("", "x") == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("genres:list", "field 'genres': kind must be one of categorical, multi, numeric, got 'list'"),
        ("genres", "field 'genres': kind must be one of"),
        ("genres:multi", "field 'genres': multi needs a one-character separator"),
        ("genres:multi:ab", "field 'genres': multi needs a one-character separator"),
        ("year:numeric:0", "field 'year': numeric bins must be an integer in [1, 1000], got '0'"),
        ("year:numeric:x", "field 'year': numeric bins must be an integer"),
        ("occ:categorical:3", "field 'occ': categorical takes no argument"),
        ("a:categorical,a:categorical", "field 'a': named twice"),
        (":categorical", "has no column name"),
    ],
)
def test_a_bad_column_spec_names_the_field(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"item_feature_columns: .*") as err:
        PrepareConfig(item_features="meta/", item_feature_columns=spec)
    assert message in str(err.value)


def test_prefix_and_columns_go_together() -> None:
    with pytest.raises(ConfigError, match="user_features and user_feature_columns go together"):
        PrepareConfig(user_features="meta/users/")
    with pytest.raises(ConfigError, match="item_features and item_feature_columns go together"):
        PrepareConfig(item_feature_columns="genres:categorical")


def _run(run_prepare, **extra):
    files = {"input/ratings.csv": RATINGS, "meta/items/items.tsv": ITEMS, "meta/users/users.csv": USERS}
    config = {
        "item_features": "meta/items/",
        "item_feature_columns": "genres:multi:pipe,year:numeric:2",
        "user_features": "meta/users/",
        "user_feature_columns": "occupation:categorical",
        "split": "none",
        "label_mode": "binary",
    }
    return run_prepare(files, **(config | extra))


def _side(run, name: str) -> np.ndarray:
    z = np.load(run.path(run.manifest["files"][name]))
    dense = np.zeros(tuple(z["shape"]), dtype=np.float32)
    for r in range(dense.shape[0]):
        lo, hi = z["indptr"][r], z["indptr"][r + 1]
        assert np.all(np.diff(z["indices"][lo:hi]) > 0)  # sorted columns
        dense[r, z["indices"][lo:hi]] = z["data"][lo:hi]
    assert z["data"].dtype == np.float32
    return dense


def test_features_columns_side_matrices_and_counts(run_prepare) -> None:
    run = _run(run_prepare)
    m = run.manifest
    users, items = run.users, run.items
    assert users == ["u1", "u2", "u3", "u4"] and items == ["i1", "i2", "i3", "i4"]
    base = 8
    # user fields first (occupation: doctor, writer), then item fields (genres: Action, Comedy, Drama;
    # year: 2 bins)
    fields = {f["name"]: f for f in m["features"]["fields"]}
    assert [f["name"] for f in m["features"]["fields"]] == ["occupation", "genres", "year"]
    assert (fields["occupation"]["start"], fields["occupation"]["stop"]) == (base, base + 2)
    assert (fields["genres"]["start"], fields["genres"]["stop"]) == (base + 2, base + 5)
    assert (fields["year"]["start"], fields["year"]["stop"]) == (base + 5, base + 7)
    assert fields["year"]["kind"] == "numeric-bins" and fields["genres"]["kind"] == "multi"
    assert fields["occupation"]["side"] == "user" and fields["year"]["side"] == "item"
    assert m["feature_dim"] == base + 7 and m["features"]["columns"] == 7
    assert m["features"]["item"] == {"with_metadata": 3, "without_metadata": 1, "metadata_only": 1}
    assert m["features"]["user"] == {"with_metadata": 4, "without_metadata": 0, "metadata_only": 0, "cold": 0}
    assert fields["genres"]["missing"] == 1 and fields["occupation"]["missing"] == 1
    assert fields["year"]["edges"] == [1992.5]  # the median of 1980, 1990, 1995, 2000
    Manifest.from_json(m, key="manifest.json")  # the reader's check accepts it

    us, it = _side(run, "user_side"), _side(run, "item_side")
    assert us.shape == (4, 15) and it.shape == (4, 15)
    expect_u = np.zeros((4, 15), np.float32)
    expect_u[np.arange(4), np.arange(4)] = 1
    expect_u[0, base + 1] = expect_u[1, base] = expect_u[2, base + 1] = 1  # writer, doctor, writer, none
    np.testing.assert_array_equal(us, expect_u)
    expect_i = np.zeros((4, 15), np.float32)
    expect_i[np.arange(4), 4 + np.arange(4)] = 1
    expect_i[0, [base + 2, base + 3]] = 0.5  # Action|Comedy: the field sums to 1
    expect_i[0, base + 5] = 1  # 1990 < 1992.5: bin 0
    expect_i[1, base + 3] = 1
    expect_i[1, base + 6] = 1  # 2000: bin 1
    expect_i[2, base + 6] = 1  # 1995, no genres
    np.testing.assert_array_equal(it, expect_i)  # i4: one-hot only

    # every FM row is user_side[u] + item_side[i], columns sorted
    n_rows = 0
    for key in m["train_shards"]:
        data, indices, indptr, shape, _labels = recordio.read_sparse(run.path(key).read_bytes())
        assert shape == (len(indptr) - 1, 15)
        for r in range(len(indptr) - 1):
            cols, vals = indices[indptr[r] : indptr[r + 1]], data[indptr[r] : indptr[r + 1]]
            assert np.all(np.diff(cols) > 0)
            row = np.zeros(15, np.float32)
            row[cols] = vals
            u, i = int(cols[0]), int(cols[1]) - 4
            np.testing.assert_array_equal(row, us[u] + it[i])
            n_rows += 1
    assert n_rows == m["counts"]["train_rows"]
    assert run.report["features"]["item"]["values"]["genres"] == ["Action", "Comedy", "Drama"]


def test_without_features_the_manifest_has_no_features_key(run_prepare) -> None:
    run = run_prepare({"input/ratings.csv": RATINGS}, split="none", label_mode="binary")
    assert "features" not in run.manifest
    assert set(run.manifest["files"]) == {"users", "items", "seen", "holdout", "popularity", "report"}
    assert run.manifest["feature_dim"] == 8


def test_bad_metadata_rows_are_reported_with_file_and_line(run_prepare) -> None:
    items = ITEMS + "i5\tDrama\n" + "i6\tDrama\tsoon\n" + "i1\tDrama\t1970\n" + "\tDrama\t1970\n"
    files = {"input/ratings.csv": RATINGS, "meta/items.tsv": items}
    config = {"item_features": "meta/", "item_feature_columns": "genres:multi:pipe,year:numeric:2"}
    with pytest.raises(PrepareInputError) as err:
        run_prepare(files, split="none", label_mode="binary", **config)
    text = str(err.value)
    assert "4 of 8 item metadata rows are bad" in text
    for expected in (
        "meta/items.tsv:6: missing field",
        "meta/items.tsv:7: not a number in year",
        "meta/items.tsv:8: repeated item id",
        "meta/items.tsv:9: empty item id",
    ):
        assert expected in text
    run = run_prepare(files, split="none", label_mode="binary", max_bad_fraction=0.5, **config)
    parse = run.report["features"]["item"]["parse"]
    assert parse["bad_rows_by_reason"] == {
        "empty item id": 1,
        "missing field": 1,
        "not a number in year": 1,
        "repeated item id": 1,
    }
    assert run.manifest["features"]["item"]["metadata_only"] == 1


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("movie_id\tkind\tyear", "meta/items.tsv:1: item_feature_columns field 'genres' is not in header"),
        ("name\tgenres\tyear", "meta/items.tsv:1: no item id column in header"),
    ],
)
def test_a_metadata_header_without_the_columns_is_an_error(run_prepare, header: str, message: str) -> None:
    files = {"input/ratings.csv": RATINGS, "meta/items.tsv": header + "\ni1\tAction\t1990\n"}
    with pytest.raises(PrepareInputError, match=message):
        run_prepare(files, split="none", item_features="meta/", item_feature_columns="genres:multi:pipe")


def test_metadata_under_the_interactions_prefix_is_refused(run_prepare) -> None:
    files = {"input/ratings.csv": RATINGS, "input/meta/items.tsv": ITEMS}
    with pytest.raises(PrepareInputError, match=r"item_features .* lies under input_prefix 'input/'"):
        run_prepare(files, split="none", item_features="input/meta/", item_feature_columns="year:numeric")


def test_no_metadata_files_is_an_error(run_prepare) -> None:
    with pytest.raises(PrepareInputError, match="no user metadata files under"):
        run_prepare(
            {"input/ratings.csv": RATINGS},
            split="none",
            user_features="meta/",
            user_feature_columns="a:categorical",
        )


def test_the_metadata_is_part_of_the_input_fingerprint(run_prepare, tmp_path) -> None:
    first = _run(run_prepare, run_id="same", out=tmp_path / "o")
    again = _run(run_prepare, run_id="same", out=tmp_path / "o")
    assert again.manifest == first.manifest
    channels = {o["channel"] for o in first.manifest["input"]["objects"]}
    assert channels == {"train", "user_features", "item_features"}


def test_manifest_check_counts_the_declared_feature_columns() -> None:
    doc = {"run_id": "r", "n_users": 2, "n_items": 3, "feature_dim": 9, "files": {}}
    doc["features"] = {"columns": 4, "fields": [{"name": "a", "start": 5, "stop": 9}]}
    assert Manifest.from_json(doc, key="m.json").features["columns"] == 4
    with pytest.raises(
        Exception, match=r"m.json: feature_dim 10 != n_users 2 \+ n_items 3 \+ feature columns 4"
    ):
        Manifest.from_json(doc | {"feature_dim": 10}, key="m.json")
    bad = doc | {"features": {"fields": [{"name": "a", "start": 6, "stop": 9}]}}
    with pytest.raises(Exception, match=r"m.json: features.fields\[0\] must have integer start == 5"):
        Manifest.from_json(bad, key="m.json")
    plain = {"run_id": "r", "n_users": 2, "n_items": 3, "feature_dim": 5, "files": {}}
    assert "features" not in Manifest.from_json(plain, key="m.json").to_json()


def test_the_cli_takes_metadata_paths(tmp_path, capsys) -> None:
    import json

    from pipeline_steps.prepare.__main__ import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ratings.csv").write_text(RATINGS)
    (tmp_path / "data" / "items.tsv").write_text(ITEMS)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "users.csv").write_text(USERS)
    args = ["--input", str(tmp_path / "data" / "ratings.csv"), "--out", str(tmp_path / "out"), "-q"]
    args += ["--set", "split=none", "--set", "label_mode=binary"]
    args += ["--item-features", str(tmp_path / "data" / "items.tsv")]
    args += ["--set", "item_feature_columns=genres:multi:pipe,year:numeric:2"]
    args += [
        "--user-features",
        str(tmp_path / "meta"),
        "--set",
        "user_feature_columns=occupation:categorical",
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["feature_dim"] == "15"
    without = args[: args.index("item_feature_columns=genres:multi:pipe,year:numeric:2") - 1]
    assert main([*without, "--run-id", "other"]) == 2  # item features without their columns
    assert "item_features and item_feature_columns go together" in capsys.readouterr().err


def test_the_recorded_config_has_feature_keys_only_when_set() -> None:
    # A run without features records the config document of before side features (byte-equal
    # manifests; a retry of a run prepared before them still matches instead of conflicting).
    plain = PrepareConfig().to_dict()
    assert not {"user_features", "item_features", "user_feature_columns", "item_feature_columns"} & set(plain)
    assert PrepareConfig.from_dict(plain) == PrepareConfig()
    with_items = PrepareConfig(item_features="meta/", item_feature_columns="genres:multi:pipe")
    assert with_items.to_dict()["item_features"] == "meta/" and "user_features" not in with_items.to_dict()
    assert PrepareConfig.from_dict(with_items.to_dict()) == with_items


def test_the_metadata_is_checked_before_the_interactions(run_prepare) -> None:
    # Interactions that would fail too (no valid rows): the metadata's error comes first.
    files = {"input/ratings.csv": "user_id,item_id\n,\n", "meta/items.tsv": "name\tgenres\nx\tDrama\n"}
    with pytest.raises(PrepareInputError, match=r"meta/items\.tsv:1: no item id column"):
        run_prepare(files, split="none", item_features="meta/", item_feature_columns="genres:categorical")


def test_feature_weight_scales_every_metadata_field_and_nothing_else(run_prepare) -> None:
    plain, weighted = _run(run_prepare), _run(run_prepare, feature_weight=0.25)
    base = 8  # 4 user and 4 item one-hots
    for name in ("user_side", "item_side"):
        one, quarter = _side(plain, name), _side(weighted, name)
        np.testing.assert_array_equal(quarter[:, :base], one[:, :base])  # the one-hots keep 1
        np.testing.assert_allclose(quarter[:, base:], 0.25 * one[:, base:])  # each field sums to 0.25
    assert _side(weighted, "item_side")[0, base + 2] == np.float32(0.125)  # Action|Comedy: 0.25 / 2
    fields = weighted.manifest["features"]["fields"]
    assert [f["weight"] for f in fields] == [0.25, 0.25, 0.25]
    assert weighted.manifest["config"]["feature_weight"] == 0.25
    Manifest.from_json(weighted.manifest, key="manifest.json")  # the reader accepts the weights
    # the FM rows are still user_side[u] + item_side[i]
    us, it = _side(weighted, "user_side"), _side(weighted, "item_side")
    for key in weighted.manifest["train_shards"]:
        data, indices, indptr, _shape, _labels = recordio.read_sparse(weighted.path(key).read_bytes())
        for r in range(len(indptr) - 1):
            cols, vals = indices[indptr[r] : indptr[r + 1]], data[indptr[r] : indptr[r + 1]]
            row = np.zeros(us.shape[1], np.float32)
            row[cols] = vals
            np.testing.assert_array_equal(row, us[int(cols[0])] + it[int(cols[1]) - 4])


def test_feature_weight_1_writes_what_no_weight_writes(run_prepare) -> None:
    plain, one = _run(run_prepare), _run(run_prepare, feature_weight=1.0)
    assert one.manifest == plain.manifest  # no "weight" in the fields, no key in the config
    assert all("weight" not in f for f in plain.manifest["features"]["fields"])
    for key in plain.manifest["train_shards"]:
        assert one.path(key).read_bytes() == plain.path(key).read_bytes()


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf"), 101.0])
def test_a_feature_weight_out_of_range_is_refused(weight: float) -> None:
    with pytest.raises(ConfigError, match=r"feature_weight: must be in \(0, 100\]"):
        PrepareConfig(feature_weight=weight)

from pipeline_steps.datasets.movielens import ua_split


def test_ua_split_takes_first_ten_per_user_in_file_order():
    lines = [f"{u}\t{i}\t5\t{1000 - i}" for i in range(12) for u in ("a", "b")]
    lines.append("c\t1\t4\t1")
    base, test = ua_split(lines)
    assert [x for x in test if x.startswith("a\t")] == [f"a\t{i}\t5\t{1000 - i}" for i in range(10)]
    assert [x for x in base if x.startswith("a\t")] == ["a\t10\t5\t990", "a\t11\t5\t989"]
    assert "c\t1\t4\t1" in test
    assert len(base) + len(test) == len(lines)


def test_genre_share_of_related_pairs_and_of_all_random_pairs():
    from pipeline_steps.datasets.movielens import genre_share

    genres = {
        "1": frozenset({"Comedy", "Animation"}),
        "2": frozenset({"Comedy"}),
        "3": frozenset({"Horror"}),
        "4": frozenset(),  # no genre: left out of both shares
    }
    share = genre_share({"1": ["2", "3", "4"], "3": ["1"], "4": ["1"]}, genres)
    # related pairs with genres on both sides: 1-2 (shared), 1-3, 3-1
    assert share["related_pairs"] == 3 and share["related_share"] == 1 / 3
    # ordered pairs of distinct items with genres: 6, of which 1-2 and 2-1 share one
    assert share["random_share"] == 2 / 6


def test_feature_files_get_plain_headers_and_quoting(tmp_path):
    import csv

    from pipeline_steps.datasets.movielens import ITEM_FEATURE_HEADER, _write_tsv

    path = tmp_path / "items.tsv"
    _write_tsv(path, ITEM_FEATURE_HEADER, ['1\t"Toy" Story\t1995\tAnimation Comedy', "", "2\tNo Year\t"])
    rows = list(csv.reader(path.open(encoding="utf-8", newline=""), delimiter="\t"))
    assert rows == [
        ["item_id", "title", "year", "genres"],
        ["1", '"Toy" Story', "1995", "Animation Comedy"],
        ["2", "No Year", "", ""],
    ]

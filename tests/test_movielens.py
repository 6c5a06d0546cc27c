from pipeline_steps.datasets.movielens import ua_split


def test_ua_split_takes_first_ten_per_user_in_file_order():
    lines = [f"{u}\t{i}\t5\t{1000 - i}" for i in range(12) for u in ("a", "b")]
    lines.append("c\t1\t4\t1")
    base, test = ua_split(lines)
    assert [x for x in test if x.startswith("a\t")] == [f"a\t{i}\t5\t{1000 - i}" for i in range(10)]
    assert [x for x in base if x.startswith("a\t")] == ["a\t10\t5\t990", "a\t11\t5\t989"]
    assert "c\t1\t4\t1" in test
    assert len(base) + len(test) == len(lines)

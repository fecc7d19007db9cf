"""Long-form ratings CSVs: bad rows reported and counted, the design checked."""

import pytest

from common.study.ratings import load_ratings


def test_bad_rows_are_reported_and_the_rest_used(tmp_path):
    lines = ["modality,reader,case,truth,rating"]
    for m in ("A", "B"):
        for r in ("1", "2"):
            for c, t in (("1", 0), ("2", 1), ("10", 1)):
                lines.append(f"{m},{r},{c},{t},{int(c) % 5}")
    lines += ["A,1,1,0,x", "A,1,1,0,3", "A,1,2,0,3", "A,1,2,2,3"]
    path = tmp_path / "reads.csv"
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    ratings = load_ratings(path)
    assert ratings.values.shape == (2, 2, 3)
    assert ratings.cases == ("1", "2", "10")
    assert [p.split(": ", 1)[1] for p in ratings.problems] == [
        "rating 'x' is not a number",
        "second rating of case 1 by 1 under A",
        "case 2 has truth 0 here and not elsewhere",
        "truth '2' is not 0 or 1",
    ]
    assert ratings.problems[0].startswith(f"{path}:14")
    assert path.read_bytes() == before


def test_an_incomplete_design_is_refused_naming_a_hole(tmp_path):
    path = tmp_path / "reads.csv"
    path.write_text("modality,reader,case,truth,rating\nA,1,1,0,1\nA,1,2,1,2\nA,2,1,0,1\n")
    with pytest.raises(ValueError, match="not fully crossed: 1 rating.*case 2 by 2 under A"):
        load_ratings(path)

"""Readers' marks: the reads CSV's ``marks`` column."""

import pytest

from common.data.manifest import READS_NAME, load_reads
from common.data.marks import Mark, format_marks, parse_marks
from common.data.problems import ProblemLog


def test_parse_and_format_round_trip():
    marks = parse_marks(" cc:812,430.5,85 ; MLO:1020,388,70;")
    assert marks == (Mark("CC", 812.0, 430.5, 85.0), Mark("MLO", 1020.0, 388.0, 70.0))
    assert parse_marks(format_marks(marks)) == marks
    assert parse_marks("") == ()


@pytest.mark.parametrize(
    "text, reason",
    [
        ("LAT:1,2,3", "VIEW one of"),
        ("CC:1,2", "VIEW:row,col,rating"),
        ("CC 1,2,3", "VIEW:row,col,rating"),
        ("CC:1,2,x", "VIEW:row,col,rating"),
        ("CC:1,2,101", "rating outside"),
        ("CC:-1,2,50", "negative position"),
    ],
)
def test_bad_marks_name_the_mark(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_marks(f"MLO:5,5,5;{text}")


def test_reads_with_a_marks_column(tmp_path):
    path = tmp_path / READS_NAME
    path.write_text(
        "patient_id,exam_id,laterality,reader_id,reader_role,birads,suspicion,aided,marks\n"
        'P1,,L,r1,senior,4,77.5,no,"CC:10,20,77.5;MLO:30,40,60"\n'
        "P1,,R,r1,senior,1,3,no,\n"  # the column, empty: read with no mark
        "P2,,L,r1,senior,4,70,no,CC:10;20\n"  # malformed: refused, the others kept
    )
    problems = ProblemLog(echo=False)
    reads = {r.patient_id + r.laterality: r for r in load_reads(path, problems)}
    assert reads["P1L"].marks == (Mark("CC", 10, 20, 77.5), Mark("MLO", 30, 40, 60))
    assert reads["P1R"].marks == ()
    assert set(reads) == {"P1L", "P1R"}
    (problem,) = problems.problems
    line = problem.line()
    assert "row 4" in line and "column 'marks'" in line and READS_NAME in line


def test_reads_without_the_column_have_no_marks_recorded(tmp_path):
    path = tmp_path / READS_NAME
    path.write_text(
        "patient_id,exam_id,laterality,reader_id,reader_role,birads,suspicion,aided\n"
        "P1,,L,r1,senior,4,77.5,no\n"
    )
    (read,) = load_reads(path, ProblemLog(echo=False))
    assert read.marks is None

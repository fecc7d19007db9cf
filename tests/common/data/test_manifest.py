"""The calcifl manifest and reader-reads CSV: valid data loads, bad rows name row and column."""

import csv
from pathlib import Path

import numpy as np
import pytest

from common.data.folders import detect_format, load_hospital
from common.data.manifest import MANIFEST_NAME, READS_NAME, load_manifest, load_reads
from common.errors import CalciflInputError
from common.imaging.writing import mammogram_dataset, mask_dataset, save

SHAPE = (60, 40)


@pytest.fixture
def site(tmp_path) -> Path:
    """Three images (one R MLO without CSV laterality/view) and one ROI mask."""
    rng = np.random.default_rng(0)
    for name, lat, view in (("a.dcm", "L", "CC"), ("b.dcm", "R", "MLO"), ("c.dcm", "L", "MLO")):
        ds = mammogram_dataset(
            rng.integers(0, 4000, SHAPE).astype(np.uint16), laterality=lat, view=view
        )
        save(ds, tmp_path / "img" / name)
    mask = np.zeros(SHAPE, bool)
    mask[10:20, 5:15] = True
    save(mask_dataset(mask), tmp_path / "img" / "a_roi.dcm")
    return tmp_path


def write_manifest(root: Path, rows: list[dict], name: str = MANIFEST_NAME) -> Path:
    columns = sorted({k for r in rows for k in r}, key=lambda c: (c != "image", c))
    path = root / name
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


GOOD = [
    {
        "image": "img/a.dcm",
        "patient_id": "X1",
        "split": "train",
        "laterality": "L",
        "view": "CC",
        "density": "B",
        "finding_id": "1",
        "pathology": "malignant",
        "calc_type": "PLEOMORPHIC-FINE_LINEAR_BRANCHING",
        "mask": "img/a_roi.dcm",
        "points": "6,11;9,15",
        "reader_id": "r1",
        "reader_role": "senior",
        "birads": "5",
    },
    {
        "image": "img/a.dcm",
        "patient_id": "X1",
        "split": "train",
        "finding_id": "2",
        "pathology": "BENIGN_WITHOUT_CALLBACK",
        "box": "20,30,30,40",
    },
    {"image": "img/b.dcm", "patient_id": "X1", "split": "train"},
    {"image": "img/c.dcm", "patient_id": "X2", "split": "test", "density": "4"},
]


def test_good_manifest_loads(site):
    write_manifest(site, GOOD)
    assert detect_format(site) == "manifest"
    data = load_hospital(site)
    assert not data.problems, data.problems.problems
    by_name = {im.path.name: im for im in data.images}
    a, b = by_name["a.dcm"], by_name["b.dcm"]
    assert a.density == 2 and by_name["c.dcm"].density == 4
    assert (b.laterality, b.view) == ("R", "MLO")  # from the DICOM header
    assert b.label == "normal" and a.label == "malignant"
    f1, f2 = a.findings
    assert f1.calc_types == ("PLEOMORPHIC", "FINE_LINEAR_BRANCHING")
    assert f1.box == (10, 5, 20, 15) and f1.area_px == 100.0  # the mask outline
    assert f1.centroid == (14.5, 9.5)
    np.testing.assert_array_equal(f1.points, [[11, 6], [15, 9]])
    assert f2.pathology == "benign" and f2.pathology_detail == "BENIGN_WITHOUT_CALLBACK"
    assert f2.box == (30, 20, 40, 30) and f2.area_px == 100 and f2.centroid == (35, 25)
    (read,) = data.reads
    assert (read.laterality, read.role, read.birads, read.aided) == ("L", "senior", 5, False)


@pytest.mark.parametrize(
    ("change", "column", "words"),
    [
        ({"pathology": "probably"}, "pathology", "'probably' is not one of"),
        ({"split": "holdout"}, "split", "'holdout'"),
        ({"laterality": "B"}, "laterality", "'B'"),
        ({"density": "5"}, "density", "'5'"),
        ({"subtlety": "7"}, "subtlety", "outside"),
        ({"points": "3;4"}, "points", "not 'x,y'"),
        ({"box": "5,5,2,9"}, "box", "empty"),
        ({"birads": "9", "reader_id": "r2", "reader_role": "junior"}, "birads", "outside"),
        ({"patient_id": ""}, "patient_id", "required"),
    ],
)
def test_bad_values_name_row_and_column(site, change, column, words):
    rows = [dict(GOOD[2]), dict(GOOD[3], **change)]
    write_manifest(site, rows)
    data = load_manifest(site)
    (problem,) = data.problems.problems
    assert problem.source.endswith(MANIFEST_NAME) and "row 3" in problem.reason
    assert f"column '{column}'" in problem.reason and words in problem.reason
    assert len(data.images) == 1  # the good row is still used


def test_missing_files_and_bad_masks(site):
    save(mask_dataset(np.ones((10, 10), bool)), site / "img" / "small_roi.dcm")
    rows = [
        dict(GOOD[2]),
        {"image": "img/nope.dcm", "patient_id": "X3"},
        {"image": "img/c.dcm", "patient_id": "X2", "finding_id": "1", "mask": "img/none.dcm"},
        {"image": "img/c.dcm", "patient_id": "X2", "finding_id": "2", "mask": "img/small_roi.dcm"},
        {"image": "img/c.dcm", "patient_id": "X2", "finding_id": "3", "points": "4,5;8,9"},
    ]
    write_manifest(site, rows)
    data = load_manifest(site)
    kinds = [p.kind for p in data.problems.problems]
    assert kinds.count("missing-file") == 2 and len(kinds) == 3
    lines = "\n".join(p.line() for p in data.problems.problems)
    assert "nope.dcm" in lines and "none.dcm" in lines
    assert "ROI mask is (10, 10), its image is (60, 40)" in lines
    c = next(im for im in data.images if im.path.name == "c.dcm")
    (finding,) = c.findings  # only the points-only finding survives
    assert finding.box == (5, 4, 10, 9) and finding.centroid == (7, 6)


def test_missing_required_column_refuses_the_file(site):
    write_manifest(site, [{"image": "img/a.dcm", "patient": "X1"}])
    data = load_manifest(site)
    (problem,) = data.problems.problems
    assert "row 1" in problem.reason and "'patient_id'" in problem.reason
    assert data.images == []


def test_ragged_row_is_refused(site):
    path = site / MANIFEST_NAME
    path.write_text("image,patient_id\nimg/a.dcm,X1\nimg/b.dcm,X1,extra\n")
    data = load_manifest(site)
    (problem,) = data.problems.problems
    assert "row 3" in problem.reason and "more value" in problem.reason
    assert len(data.images) == 1


def test_conflicting_image_rows(site):
    write_manifest(site, [dict(GOOD[2]), dict(GOOD[2], patient_id="OTHER", finding_id="9")])
    data = load_manifest(site)
    assert "differs" in data.problems.problems[0].reason


def test_reads_csv(tmp_path):
    path = tmp_path / READS_NAME
    path.write_text(
        "patient_id,exam_id,laterality,reader_id,reader_role,birads,suspicion,aided\n"
        "P1,,L,r1,senior,4,77.5,no\n"
        "P1,,L,r1,senior,4,77.5,no\n"  # exact repeat: kept once
        "P1,,L,r1,senior,2,10,no\n"  # conflicting repeat: refused
        "P1,,R,r2,junior,3,,yes\n"
        "P1,,X,r2,junior,3,,no\n"
        "P1,,R,r2,fellow,3,,no\n"
        "P1,,R,r3,junior,3,,maybe\n"
    )
    from common.data.problems import ProblemLog

    problems = ProblemLog(echo=False)
    reads = load_reads(path, problems)
    assert len(reads) == 2
    assert {(r.reader_id, r.aided, r.exam_id) for r in reads} == {
        ("r1", False, "P1"),
        ("r2", True, "P1"),
    }
    reasons = [p.reason for p in problems.problems]
    assert len(reasons) == 4
    assert any("conflicts" in p.line() for p in problems.problems)
    assert any("column 'laterality'" in r for r in reasons)
    assert any("column 'reader_role'" in r for r in reasons)
    assert any("column 'aided'" in r for r in reasons)


def test_unknown_folder(tmp_path):
    with pytest.raises(CalciflInputError, match="neither"):
        load_hospital(tmp_path)


def test_synthetic_manifest_and_cbis_agree(consortium):
    site = consortium / "hospital-1"
    manifest = load_hospital(site, fmt="manifest", echo=False)
    cbis = load_hospital(site, fmt="cbis-ddsm", echo=False)
    assert not manifest.problems and not cbis.problems
    # the manifest also lists normal images; abnormal ones agree with CBIS-DDSM
    abnormal = {im.path.resolve(): im for im in manifest.images if im.findings}
    assert {im.path.resolve() for im in cbis.images} == set(abnormal)
    for im in cbis.images:
        m = abnormal[im.path.resolve()]
        assert [f.pathology for f in im.findings] == [f.pathology for f in m.findings]
        assert [f.area_px for f in im.findings] == [f.area_px for f in m.findings]
    # every reader reads both breasts of every patient, alone and aided
    readers = {r.reader_id for r in manifest.reads}
    assert len(readers) == 3
    assert len(manifest.reads) == 2 * len(readers) * 2 * len(manifest.patients())

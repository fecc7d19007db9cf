"""CBIS-DDSM: the real descriptor CSVs, and DICOM trees written at the paths they name."""

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from common.data.cbis import load_cbis, split_of
from common.data.splits import shared_patients
from common.imaging.writing import mammogram_dataset, mask_dataset, save

TRAIN = "calc_case_description_train_set.csv"
TEST = "calc_case_description_test_set.csv"
SWAPPED = ("P_00474", "LEFT", "MLO")  # the row whose crop and mask paths are swapped


@pytest.fixture(scope="module")
def real(cbis_dir):
    d = cbis_dir
    train = load_cbis(d, [d / TRAIN], resolve=False)
    test = load_cbis(d, [d / TEST], resolve=False)
    return train, test


def test_real_csvs_parse_exactly(real):
    train, test = real
    assert not train.problems and not test.problems
    assert len(train.findings()) == 1546 and len(train.patients()) == 602
    assert len(train.images) == 1227
    assert len(test.findings()) == 326 and len(test.patients()) == 151
    detail = Counter(f.pathology_detail for f in train.findings())
    assert detail == {"MALIGNANT": 544, "BENIGN": 528, "BENIGN_WITHOUT_CALLBACK": 474}
    # BENIGN_WITHOUT_CALLBACK is benign, explicitly
    assert Counter(f.pathology for f in train.findings()) == {"malignant": 544, "benign": 1002}
    assert {im.split for im in train.images} == {"train"}
    assert {im.split for im in test.images} == {"test"}


def test_real_csv_quirks(real):
    train, test = real
    findings = train.findings() + test.findings()
    # newlines inside the quoted crop paths are gone
    assert all(not str(f.crop_path).endswith(("\n", " ")) for f in findings)
    assert all(str(f.crop_path).endswith(".dcm") for f in findings)
    types = Counter(t for f in findings for t in f.calc_types)
    assert "LUCENT_CENTERED" not in types and types["LUCENT_CENTER"] == 175 + 44 + 21
    assert "NA" not in types and "N/A" not in types
    assert sum(1 for f in findings if not f.calc_types) == 20 + 4
    combined = [f for f in findings if len(f.calc_types) > 1]
    assert combined and all("-" not in t for f in combined for t in f.calc_types)
    # density 0 (two test rows) is not a BI-RADS category: unknown
    assert sum(1 for im in test.images if im.density is None) >= 1
    assert all(im.density in (None, 1, 2, 3, 4) for im in train.images + test.images)
    assert {f.assessment for f in findings} <= {0, 2, 3, 4, 5}


def test_official_split_is_patient_disjoint(real):
    train, test = real
    assert shared_patients({"train": train.images, "test": test.images}) == {}


def test_split_of_file_names():
    assert split_of(Path(TRAIN)) == "train" and split_of(Path(TEST)) == "test"
    assert split_of(Path("calc.csv")) is None


# --- DICOM trees in both on-disk layouts ------------------------------------------------

FULL = (64, 48)


def _sample_rows(cbis_dir: Path) -> tuple[list[str], list[dict]]:
    """Rows of a few images, including the swapped row and a two-finding image."""
    with (cbis_dir / TRAIN).open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    by_image = Counter(r["image file path"] for r in rows)
    multi = next(p for p, n in by_image.items() if n == 2)
    wanted = {multi}
    wanted |= {
        r["image file path"]
        for r in rows
        if (r["patient_id"], r["left or right breast"], r["image view"]) == SWAPPED
    }
    wanted |= {r["image file path"] for r in rows[:40:10]}
    return header, [r for r in rows if r["image file path"] in wanted]


def _full_image(rng) -> np.ndarray:
    return rng.integers(100, 4000, size=FULL).astype(np.uint16)


def _mask(finding_index: int) -> np.ndarray:
    m = np.zeros(FULL, bool)
    r0, c0 = 10 + 8 * finding_index, 12 + 5 * finding_index
    m[r0 : r0 + 6, c0 : c0 + 9] = True
    return m


def _write_tree(root: Path, rows: list[dict], layout: str) -> None:
    rng = np.random.default_rng(0)
    written = set()
    for n, row in enumerate(rows):
        image_rel = row["image file path"].strip()
        if image_rel not in written:
            written.add(image_rel)
            ds = mammogram_dataset(_full_image(rng), imager_spacing=None, laterality=None)
            case, study, series, name = image_rel.split("/")
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            save(ds, root / _on_disk(image_rel, layout, "full mammogram images", n, 1))
        mask_rel = row["ROI mask file path"].strip()
        crop_rel = row["cropped image file path"].strip()
        swapped = (row["patient_id"], row["left or right breast"], row["image view"]) == SWAPPED
        if swapped:  # the real quirk: the CSV's "ROI mask" path holds the crop
            mask_rel, crop_rel = crop_rel, mask_rel
        k = int(row["abnormality id"])
        mask = mask_dataset(_mask(k))
        crop = mammogram_dataset(rng.integers(0, 4000, (12, 10)).astype(np.uint16))
        for ds, rel, index in ((mask, mask_rel, 1), (crop, crop_rel, 2)):
            _, study, series, _ = rel.split("/")
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            save(ds, root / _on_disk(rel, layout, "ROI mask images", n, index))


def _on_disk(rel: str, layout: str, description: str, n: int, index: int) -> str:
    if layout == "csv":
        return rel
    # NBIA retriever: no UIDs in folder names, files named 1-1.dcm, 1-2.dcm
    case, _, series, _ = rel.split("/")
    return f"{case}/07-20-2016-DDSM-{n:05d}/1.000000-{description}-{series[-5:]}/1-{index}.dcm"


@pytest.mark.parametrize("layout", ["csv", "nbia"])
def test_loads_tree_in_both_layouts(tmp_path, cbis_dir, layout):
    header, rows = _sample_rows(cbis_dir)
    root = tmp_path / "hospital"
    root.mkdir()
    with (root / TRAIN).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    _write_tree(root / "CBIS-DDSM", rows, layout)
    data = load_cbis(root)
    assert not data.problems, data.problems.problems
    assert len(data.findings()) == len(rows)
    assert len(data.images) == len({r["image file path"] for r in rows})
    for im in data.images:
        assert im.path.is_file()
        for f in im.findings:
            expected = _mask(int(f.finding_id))
            rows_, cols_ = np.nonzero(expected)
            assert f.box == (rows_.min(), cols_.min(), rows_.max() + 1, cols_.max() + 1)
            assert f.area_px == expected.sum()
            assert f.centroid == pytest.approx((rows_.mean(), cols_.mean()))
            # told apart by content, even for the swapped row
            assert f.mask_path != f.crop_path and f.crop_path is not None
    swapped = [im for im in data.images if (im.patient_id, im.view) == ("P_00474", "MLO")]
    assert swapped and swapped[0].findings[0].box is not None


def test_missing_files_are_reported_and_the_rest_used(tmp_path, cbis_dir):
    header, rows = _sample_rows(cbis_dir)
    root = tmp_path / "h"
    (root / "CBIS-DDSM").mkdir(parents=True)
    _write_tree(root / "CBIS-DDSM", rows[1:], "csv")
    bad = dict(rows[0], **{"abnormality type": "mass"})
    with (root / TRAIN).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)  # rows[0]'s files were never written
        writer.writerow(bad)
        writer.writerow(dict(rows[1], pathology="MAYBE"))
    data = load_cbis(root)
    kinds = data.problems.counts()
    assert kinds["table"] == 2 and kinds["missing-file"] >= 1
    lines = [p.line() for p in data.problems.problems]
    assert any("'mass' is not a calcification" in line and "row" in line for line in lines)
    assert any("column 'pathology'" in line and "MAYBE" in line for line in lines)
    assert len(data.images) >= 1 and all(im.path.is_file() for im in data.images)


def test_no_descriptor_is_a_clear_error(tmp_path):
    from common.errors import CalciflInputError

    with pytest.raises(CalciflInputError, match="no descriptor CSV"):
        load_cbis(tmp_path)

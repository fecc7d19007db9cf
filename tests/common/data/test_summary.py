"""calcifl's shareable summary: right counts, bad input counted, no PHI."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom

from common.data.folders import load_hospital
from common.data.manifest import MANIFEST_NAME, READS_NAME
from common.data.summary import summarize, to_markdown
from common.imaging.writing import mammogram_dataset, save


def _phi(site: Path) -> set[str]:
    """Every identifying value the synthetic files hold."""
    values = set()
    for path in site.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        values |= {str(ds.PatientID), str(ds.PatientName), str(ds.AccessionNumber)}
        values |= {str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)}
    return values


def test_summary_counts_and_privacy(consortium):
    site = consortium / "hospital-1"
    info = json.loads((site / "synth.json").read_text())
    data = load_hospital(site, echo=False)
    summary = summarize(data)
    assert summary["images"] == {
        "listed": info["counts"]["images"],
        "usable": info["counts"]["images"],
        "refused": 0,
    }
    assert summary["patients"] == info["patients"]
    assert summary["by_view"] == {
        "CC": summary["images"]["usable"] // 2,
        "MLO": summary["images"]["usable"] // 2,
    }
    assert summary["by_image_label"]["normal"] == info["counts"]["normal_images"]
    assert summary["dicom"]["by_manufacturer"] == {"Aurora Imaging": info["counts"]["images"]}
    assert summary["patients_in_several_splits"] == 0
    assert summary["reads"]["readers_by_role"] == {"junior": 2, "senior": 1}
    text = json.dumps(summary) + to_markdown(summary)
    leaked = [v for v in _phi(site) | {str(consortium), "P_1"} if v in text]
    assert leaked == []


def test_files_are_counted_by_transfer_syntax(consortium):
    site = consortium / "hospital-3"  # a vendor storing part of its images as JPEG-LS
    counts = json.loads((site / "synth.json").read_text())["counts"]
    syntaxes = summarize(load_hospital(site, echo=False))["dicom"]["by_transfer_syntax"]
    assert syntaxes == {
        "JPEG-LS Lossless Image Compression": counts["compressed"],
        "Explicit VR Little Endian": counts["images"] - counts["compressed"],
    }
    assert 0 < counts["compressed"] < counts["images"]


def test_small_cells_are_suppressed(consortium):
    data = load_hospital(consortium / "hospital-3", echo=False)
    plain = summarize(data)
    hidden = summarize(data, min_cell=1000)
    assert hidden["privacy"]["suppressed_cells"] > 10
    assert set(hidden["by_view"].values()) == {"withheld"}
    assert plain["privacy"]["suppressed_cells"] == 0


def test_a_withheld_cell_is_not_the_total_minus_those_shown():
    from collections import Counter

    from common.data.summary import suppress

    table = Counter({"CC": 40, "MLO": 38, "XCCL": 2})
    hidden = suppress(table, 5)
    # the total (80) is shown exactly: hiding XCCL alone would give it away as 80 - 40 - 38
    assert hidden == {"XCCL", "MLO"} and sum(table[k] for k in hidden) >= 5
    # two small cells whose sum is still small take a third along
    assert suppress(Counter({"a": 1, "b": 2, "c": 30, "d": 50}), 5) == {"a", "b", "c"}
    assert suppress(Counter({"a": 10, "b": 0}), 5) == set()  # zeros are not small


def _hash_tree(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_bad_input_is_counted_and_the_rest_used(tmp_path, consortium):
    good = load_hospital(consortium / "hospital-1", echo=False).images[:3]
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    rows = ["image,patient_id,split"]
    for i, im in enumerate(good):
        shutil.copy(im.path, site / "img" / f"good{i}.dcm")
        rows.append(f"img/good{i}.dcm,A{i},train")
    stored = (np.random.default_rng(0).random((64, 48)) * 4000).astype(np.uint16)
    save(mammogram_dataset(stored, Modality="CT"), site / "img" / "ct.dcm")
    save(mammogram_dataset(stored, intent="FOR PROCESSING"), site / "img" / "raw.dcm")
    save(mammogram_dataset(stored, imager_spacing=None), site / "img" / "nospacing.dcm")
    (site / "img" / "notes.dcm").write_text("not an image")
    cut = (site / "img" / "good0.dcm").read_bytes()
    (site / "img" / "cut.dcm").write_bytes(cut[: len(cut) // 2])
    for name in ("ct", "raw", "nospacing", "notes", "cut", "missing"):
        rows.append(f"img/{name}.dcm,B,train")
    rows.append("img/good0.dcm,A0,somewhere")  # bad split value
    rows.append("img/good1.dcm,A0,test")  # same patient in two splits
    (site / MANIFEST_NAME).write_text("\n".join(rows) + "\n")
    (site / READS_NAME).write_text("patient_id,laterality,reader_id,birads\nA0,L,r1,12\n")
    before = _hash_tree(site)

    data = load_hospital(site, echo=False)
    summary = summarize(data, deep=True)
    assert _hash_tree(site) == before  # no source file written
    assert summary["images"]["usable"] == 3
    assert summary["refused"] == {
        "table": 3,
        "missing-file": 1,
        "modality": 1,
        "for-processing": 1,
        "truncated": 1,
        "spacing": 1,
        "not-dicom": 1,
    }
    assert sum(summary["refused"].values()) == len(data.problems)
    lines = [p.line() for p in data.problems.problems]
    assert all(str(site) in line for line in lines)  # local lines name the file...
    assert str(site) not in json.dumps(summary)  # ...the shareable summary does not


def test_patients_across_splits_are_reported(consortium, tmp_path):
    images = load_hospital(consortium / "hospital-1", echo=False).images
    site = tmp_path / "s"
    site.mkdir()
    rows = ["image,patient_id,split"]
    rows += [f"{images[0].path},SAME,train", f"{images[1].path},SAME,test"]
    (site / MANIFEST_NAME).write_text("\n".join(rows) + "\n")
    summary = summarize(load_hospital(site, echo=False))
    assert summary["patients_in_several_splits"] == 1

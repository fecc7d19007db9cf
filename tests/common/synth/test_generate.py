"""The synthetic consortium: valid MG DICOM, vendors that differ, deterministic output."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from sklearn.metrics import roc_auc_score

from common.data.folders import load_hospital
from common.imaging.reading import MG_FOR_PRESENTATION, read_mammogram
from common.synth.calcs import MALIGNANT_TYPES, make_cluster
from common.synth.generate import SynthConfig, consortium, synthesize
from common.synth.readers import (
    DEFAULT_CAD,
    DEFAULT_READERS,
    JUNIOR,
    SENIOR,
    load_profiles,
    read_breast,
)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_deterministic_for_a_seed(tmp_path):
    config = SynthConfig(hospitals=2, exams=3, seed=5)
    synthesize(tmp_path / "a", config, progress=False)
    synthesize(tmp_path / "b", config, progress=False)
    synthesize(tmp_path / "c", SynthConfig(hospitals=2, exams=3, seed=6), progress=False)
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c


def test_files_are_valid_mammograms(consortium):
    images = 0
    for site in sorted(consortium.glob("hospital-*")):
        data = load_hospital(site, echo=False)
        for im in data.images:
            ds = pydicom.dcmread(im.path)
            assert ds.Modality == "MG" and ds.SOPClassUID == MG_FOR_PRESENTATION
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
            assert ds.pixel_array.max() < 2**ds.BitsStored
            images += 1
    assert images > 50


def test_vendors_differ(consortium):
    seen = Counter()
    for site in sorted(consortium.glob("hospital-*")):
        info = json.loads((site / "synth.json").read_text())
        data = load_hospital(site, echo=False)
        ds = pydicom.dcmread(data.images[0].path)
        seen["bits", ds.BitsStored] += 1
        seen["photometric", ds.PhotometricInterpretation] += 1
        seen["compressed", ds.file_meta.TransferSyntaxUID.is_compressed] += 1
        seen["voi", "lut" if "VOILUTSequence" in ds else ds.get("VOILUTFunction")] += 1
        seen["spacing", "ImagerPixelSpacing" in ds] += 1
        seen["orientation", info["vendor"]["orientation"]] += 1
    for key in ("bits", "photometric", "voi", "orientation"):
        assert len([k for k in seen if k[0] == key]) >= 3 or key == "photometric", key
    assert ("compressed", True) in seen and ("compressed", False) in seen
    assert ("photometric", "MONOCHROME1") in seen
    assert ("spacing", False) in seen  # PixelSpacing only at one site


def test_every_site_reads_to_the_same_canonical_form(consortium):
    shapes = set()
    for site in sorted(consortium.glob("hospital-*")):
        data = load_hospital(site, echo=False)
        for im in data.images[:4]:
            m = read_mammogram(im.path)
            shapes.add(m.pixels.shape)
            assert m.spacing_mm == (0.1, 0.1)
            # chest wall left, breast fills a good part of the image
            assert m.mask[:, :5].mean() > 0.5 and 0.3 < m.mask.mean() < 0.9
    assert len(shapes) == 1  # vendors' spacings all resample to one grid


def test_annotations_land_on_calcifications(consortium):
    # fine (malignant-type) calcs are smaller than 4 px at 0.1 mm: the ring is tissue
    contrasts = []
    for site in sorted(consortium.glob("hospital-*")):
        data = load_hospital(site, echo=False)
        for im in data.images:
            findings = [f for f in im.findings if f.pathology == "malignant"]
            if not findings:
                continue
            m = read_mammogram(im.path)
            h, w = m.pixels.shape
            for f in findings:
                pts = np.rint(m.geometry.map_points(f.points)).astype(int)
                pts = pts[(pts.min(axis=1) >= 4) & (pts[:, 0] < h - 4) & (pts[:, 1] < w - 4)]
                on = m.pixels[pts[:, 0], pts[:, 1]]
                corners = ((-4, -4), (4, 4), (-4, 4), (4, -4))
                ring = np.mean([m.pixels[pts[:, 0] + a, pts[:, 1] + b] for a, b in corners], axis=0)
                contrasts.append(float(np.median(on - ring)))
    assert len(contrasts) >= 4
    assert np.median(contrasts) > 0.05  # calcs are brighter than the tissue around them


def test_normal_images_and_both_pathologies(consortium):
    labels = Counter()
    for site in consortium.glob("hospital-*"):
        labels.update(im.label for im in load_hospital(site, echo=False).images)
    assert labels["normal"] > labels["malignant"] > 0 and labels["benign"] > 0


def test_malignant_clusters_are_denser_and_finer():
    rng = np.random.default_rng(0)
    mal = [make_cluster(True, 3, rng) for _ in range(200)]
    ben = [make_cluster(False, 3, rng) for _ in range(200)]
    assert all(c.calc_type in MALIGNANT_TYPES for c in mal)

    def density(c):  # calcs per cm² within the cluster's extent
        return len(c.calcs) / (np.pi * max(c.extent_mm, 1.0) ** 2 / 100)

    assert np.median([density(c) for c in mal]) > 20 > np.median([density(c) for c in ben])
    mal_size = np.median([x.a for c in mal for x in c.calcs])
    ben_size = np.median([x.a for c in ben for x in c.calcs])
    assert mal_size < ben_size and 0.05 < mal_size < 0.5


def _reads(profile, truths, rng, cad=None, subtlety=3, density=3):
    out = [read_breast(profile, t, subtlety, density, rng, cad) for t in truths]
    return out


def test_senior_reader_beats_junior():
    rng = np.random.default_rng(1)
    truths = rng.choice(["normal", "benign", "malignant"], p=[0.5, 0.25, 0.25], size=3000)
    y = truths == "malignant"
    aucs = {}
    for profile in (SENIOR, JUNIOR):
        scores = [unaided[1] for unaided, _ in _reads(profile, truths, rng)]
        aucs[profile.role] = roc_auc_score(y, scores)
    assert aucs["senior"] > aucs["junior"] + 0.05 and aucs["junior"] > 0.6
    assert SENIOR.miss_probability(1, 4) > SENIOR.miss_probability(5, 1)


def test_cad_assistance_helps_juniors_more():
    rng = np.random.default_rng(2)
    truths = rng.choice(["normal", "benign", "malignant"], p=[0.5, 0.25, 0.25], size=6000)
    y = truths == "malignant"
    calcified = truths != "normal"
    gain, miss_drop = {}, {}
    for profile in (SENIOR, JUNIOR):
        reads = _reads(profile, truths, rng, DEFAULT_CAD, subtlety=2, density=4)
        alone = np.array([u for u, _ in reads])
        aided = np.array([a for _, a in reads])
        gain[profile.role] = roc_auc_score(y, aided[:, 1]) - roc_auc_score(y, alone[:, 1])
        # a miss: a calcified breast read BI-RADS 1 (nothing reported)
        miss_drop[profile.role] = np.mean(alone[calcified, 0] == 1) - np.mean(
            aided[calcified, 0] == 1
        )
        # normal breasts keep their recall rate within a few points
        normal = truths == "normal"
        assert abs(np.mean(aided[normal, 0] >= 4) - np.mean(alone[normal, 0] >= 4)) < 0.03
    assert gain["junior"] > gain["senior"] > 0
    assert miss_drop["junior"] > miss_drop["senior"] > 0


def test_reader_profiles_from_json(tmp_path):
    path = tmp_path / "readers.json"
    path.write_text(json.dumps([SENIOR.to_dict(), {**JUNIOR.to_dict(), "d_prime": 1.0}]))
    profiles = load_profiles(path)
    assert profiles[0] == SENIOR and profiles[1].d_prime == 1.0
    path.write_text(json.dumps([{**SENIOR.to_dict(), "skill": 3}]))
    with pytest.raises(ValueError, match="readers.json: unknown reader profile field.*skill"):
        load_profiles(path)
    path.write_text(json.dumps([{**SENIOR.to_dict(), "role": "resident"}]))
    with pytest.raises(ValueError, match="role must be one of"):
        load_profiles(path)


def test_aided_reads_written_for_every_reader(consortium):
    from common.data.manifest import load_reads

    reads = load_reads(consortium / "hospital-1" / "reader_reads.csv")
    by = {(r.reader_id, r.aided) for r in reads}
    assert by == {(p.reader_id, a) for p in DEFAULT_READERS for a in (False, True)}
    keys = {(r.patient_id, r.laterality) for r in reads}
    assert len(reads) == len(keys) * len(DEFAULT_READERS) * 2


def test_worker_processes_write_the_same_files(tmp_path):
    config = SynthConfig(hospitals=2, exams=3, seed=5)
    one = synthesize(tmp_path / "one", config, progress=False, workers=1)
    two = synthesize(tmp_path / "two", config, progress=False, workers=2)
    assert [d.name for d in one] == [d.name for d in two]
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*"))
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*"))
    for f in files:
        if (tmp_path / "one" / f).is_file():
            assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f


def test_a_complete_consortium_is_reused_an_interrupted_one_written_again(tmp_path):
    config = SynthConfig(hospitals=2, exams=2, seed=5)
    out = tmp_path / "data"
    (out / "hospital-2").mkdir(parents=True)  # what an interrupted run leaves behind
    dirs = consortium(out, config, progress=False)
    assert [d.name for d in dirs] == ["hospital-1", "hospital-2"]
    written = _digest(out)
    assert any(name.startswith("hospital-2/") for name in written)
    marker = (out / "consortium.json").stat().st_mtime_ns
    assert consortium(out, config, progress=False) == dirs  # complete: not written again
    assert (out / "consortium.json").stat().st_mtime_ns == marker and _digest(out) == written
    with pytest.raises(ValueError, match="other settings"):
        consortium(out, SynthConfig(hospitals=2, exams=3, seed=5), progress=False)

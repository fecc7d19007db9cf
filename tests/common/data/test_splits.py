from pathlib import Path

import pytest

from common.data.records import ImageRecord
from common.data.splits import shared_patients, split_by_patient


def _images(n_patients: int, per: int = 4, split=None):
    return [
        ImageRecord(Path(f"{p}-{i}.dcm"), f"P{p}", f"P{p}", "L", "CC", split=split)
        for p in range(n_patients)
        for i in range(per)
    ]


def test_split_by_patient_has_no_leakage_and_is_reproducible():
    images = _images(200)
    a = split_by_patient(images, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    b = split_by_patient(images, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    assert {k: [im.path for im in v] for k, v in a.items()} == {
        k: [im.path for im in v] for k, v in b.items()
    }
    assert shared_patients(a) == {}
    assert sum(len(v) for v in a.values()) == len(images)
    n_train = len({im.patient_id for im in a["train"]})
    assert 120 <= n_train <= 160  # ~70 % of 200 patients
    c = split_by_patient(images, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=4)
    assert [im.path for im in c["test"]] != [im.path for im in a["test"]]


def test_split_is_stable_when_patients_are_added():
    small = split_by_patient(_images(50), {"train": 0.8, "test": 0.2}, seed=1)
    large = split_by_patient(_images(80), {"train": 0.8, "test": 0.2}, seed=1)
    assert {im.patient_id for im in small["test"]} <= {im.patient_id for im in large["test"]}


def test_existing_split_kept_and_leak_detected():
    official = _images(3, split="test")
    out = split_by_patient(official + _images(3), {"train": 1.0}, keep_existing=True)
    assert len(out["test"]) == 12
    assert set(shared_patients(out)) == {"P0", "P1", "P2"}


def test_bad_fractions():
    with pytest.raises(ValueError):
        split_by_patient(_images(2), {"train": 0.0})

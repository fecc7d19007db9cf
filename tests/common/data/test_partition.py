"""Splitting a pooled data set into simulated hospitals by patient."""

import numpy as np
import pytest

from common.data.partition import PartitionSpec, partition, patient_class
from common.data.records import Finding, ImageRecord


def _pool(n=300, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for p in range(n):
        label = rng.choice(["malignant", "benign", "normal"], p=[0.3, 0.3, 0.4])
        for view in ("CC", "MLO"):
            findings = [] if label == "normal" else [Finding("f1", pathology=str(label))]
            records.append(
                ImageRecord(
                    path=f"/x/{p}-{view}.dcm",
                    patient_id=f"P{p:04d}",
                    exam_id=f"P{p:04d}",
                    laterality="L",
                    view=view,
                    findings=findings,
                )
            )
    return records


def _patients(part):
    return {im.patient_id for im in part}


def test_every_patient_lands_in_exactly_one_hospital():
    records = _pool()
    parts = partition(records, PartitionSpec(4, alpha=0.5, seed=1))
    sets = [_patients(p) for p in parts]
    assert sum(len(s) for s in sets) == len(_patients(records))
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    assert sorted(im.path for p in parts for im in p) == sorted(im.path for im in records)


def test_split_is_reproducible_and_independent_of_input_order():
    records = _pool()
    spec = PartitionSpec(3, alpha=1.0, seed=5)
    a = [_patients(p) for p in partition(records, spec)]
    b = [_patients(p) for p in partition(list(reversed(records)), spec)]
    assert a == b
    c = [_patients(p) for p in partition(records, PartitionSpec(3, alpha=1.0, seed=6))]
    assert a != c


def test_sizes_set_the_imbalance():
    parts = partition(_pool(), PartitionSpec(3, sizes=(3, 2, 1)))
    n = [len(_patients(p)) for p in parts]
    assert n[0] > n[1] > n[2]
    assert n[0] / sum(n) == pytest.approx(0.5, abs=0.02)


def test_small_alpha_skews_labels_more_than_large_alpha():
    def spread(alpha):
        shares = []
        for seed in range(5):
            for part in partition(_pool(seed=seed), PartitionSpec(4, alpha=alpha, seed=seed)):
                by_patient = {}
                for im in part:
                    by_patient.setdefault(im.patient_id, []).append(im)
                classes = [patient_class(v) for v in by_patient.values()]
                if classes:
                    shares.append(classes.count("malignant") / len(classes))
        return np.std(shares)

    assert spread(0.1) > 2 * spread(100.0)


def test_parse_and_validation():
    spec = PartitionSpec.parse(3, "dirichlet:0.3+sizes:1,1,2", seed=4)
    assert spec.alpha == 0.3 and spec.sizes == (1.0, 1.0, 2.0) and spec.seed == 4
    assert PartitionSpec.parse(2, "iid").alpha is None
    with pytest.raises(ValueError, match="unknown partition"):
        PartitionSpec.parse(2, "labels:3")
    with pytest.raises(ValueError, match="sizes"):
        PartitionSpec(3, sizes=(1, 2))

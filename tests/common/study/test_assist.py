"""Aided reads simulated from the model's own output: a better model, better aided reads."""

import json
from pathlib import Path

import numpy as np
import pytest

from common.evaluation.images import BreastScore
from common.federation.protocol import Refusal
from common.hospital.service import Hospital
from common.hospital.settings import NodeSettings
from common.study.arms import StudyConfig, build_cases
from common.synth.generate import SynthConfig, synthesize
from common.synth.readers import PERCEPTION_NAME, load_simulated_readers


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("assist")
    synthesize(out, SynthConfig(hospitals=1, exams=90, seed=5, test_fraction=0.9), progress=False)
    return next(p for p in out.iterdir() if p.is_dir() and (p / PERCEPTION_NAME).is_file())


def _hospital(site, tmp_path) -> Hospital:
    settings = NodeSettings(
        data_dir=site, hospital_id="h", state_dir=tmp_path / "state", test_fraction=0.9
    )
    return Hospital(settings)


def _model(cases: dict, quality: float, seed: int) -> dict:
    """Breast scores separating malignant breasts with ``quality`` (0: coin flips)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, case in cases.items():
        z = rng.normal() + quality * case.malignant + 0.5 * quality * (case.truth == "benign")
        score = float(1 / (1 + np.exp(-z)))
        detection = float(case.calcified and rng.random() < 0.3 + 0.6 * quality / 3)
        out[key] = BreastScore(score, detection, case.malignant)
    return out


def _aided_auc(site, tmp_path, quality: float) -> tuple[dict, dict]:
    hospital = _hospital(site, tmp_path)
    records = hospital.records(0)
    cases = build_cases(records.test, [])
    val = {k: BreastScore(float(i % 7) / 7 + 0.05, 0.0, False) for i, k in enumerate(cases)}
    config = StudyConfig(model_threshold=0.5, assistance="simulated-model")
    stats = hospital.assisted_study(_model(cases, quality, 1), val, records, config, 0.5, 0)
    return stats.summary()["all"]["arms"], stats.provenance


def test_a_better_model_gives_better_aided_reads(site, tmp_path):
    poor, provenance = _aided_auc(site, tmp_path / "a", 0.0)
    good, _ = _aided_auc(site, tmp_path / "b", 3.0)
    assert provenance == {"readers": "simulated", "assistance": "simulated from the model"}
    juniors = [a for a in good if a.endswith(":aided") and a.startswith("junior")]
    assert juniors
    for arm in juniors:
        alone = arm.split(":")[0]
        assert good[alone]["auc"]["value"] == poor[alone]["auc"]["value"]  # unaided unchanged
        assert good[arm]["auc"]["value"] > poor[arm]["auc"]["value"] + 0.02
        assert (
            good[arm]["detection_miss_rate"]["value"] <= poor[arm]["detection_miss_rate"]["value"]
        )


def test_simulated_assistance_replaces_the_cad_reads_and_is_deterministic(site, tmp_path):
    hospital = _hospital(site, tmp_path)
    records = hospital.records(0)
    cases = build_cases(records.test, [])
    scores = _model(cases, 2.0, 2)
    val = {k: BreastScore(float(i % 5) / 5 + 0.1, 0.0, False) for i, k in enumerate(cases)}
    config = StudyConfig(model_threshold=0.5, assistance="simulated-model")
    a = hospital.assisted_study(scores, val, records, config, 0.5, 0).to_dict()
    b = hospital.assisted_study(scores, val, records, config, 0.5, 0).to_dict()
    assert a == b
    recorded = hospital.assisted_study(
        scores, val, records, StudyConfig(model_threshold=0.5), 0.5, 0
    )
    assert recorded.provenance["assistance"] == "simulated CAD"
    assert recorded.to_dict()["strata"] != a["strata"]
    assert "junior: unaided vs aided" in recorded.panels
    profiles, perception = load_simulated_readers(site)
    assert set(profiles) == {"senior-1", "junior-1", "junior-2"}
    patients = json.loads((site / "synth.json").read_text())["patients"]
    assert len(perception) == 3 * 2 * patients  # every reader, every breast


def test_real_readers_refuse_simulated_assistance(site, tmp_path):
    import shutil

    real = tmp_path / "real"
    shutil.copytree(site, real)
    (real / PERCEPTION_NAME).unlink()
    hospital = _hospital(real, tmp_path)
    records = hospital.records(0)
    config = StudyConfig(model_threshold=0.5, assistance="simulated-model")
    with pytest.raises(Refusal, match="readers are real"):
        hospital.assisted_study({}, {}, records, config, 0.5, 0)


def _aided_reads(site, tmp_path, quality: float):
    from common.study.assist import aid_scale, model_assisted_reads

    records = _hospital(site, tmp_path).records(0)
    cases = build_cases(records.test, [])
    val = {k: BreastScore(float(i % 7) / 7 + 0.05, 0.0, False) for i, k in enumerate(cases)}
    scores = _model(cases, quality, 1)
    reads = model_assisted_reads(
        records.reads, records.test, scores, *load_simulated_readers(site), aid_scale(val), 0.5, 0
    )
    return records, scores, reads


def test_simulated_aided_reads_mark_where_the_reader_looked(site, tmp_path):
    from common.study.arms import wafroc_panels

    records, scores, reads = _aided_reads(site, tmp_path / "a", 3.0)
    centres = {
        (im.breast_key, (im.view or "").upper(), f.centroid)
        for im in records.test
        for f in im.findings
    }
    own = {(r.patient_id, r.exam_id, r.laterality, r.reader_id): r for r in reads if not r.aided}
    aided = [r for r in reads if r.aided]
    assert aided and all(r.marks is not None for r in reads)
    for r in aided:
        key = (r.patient_id, r.exam_id, r.laterality)
        spots = {(m.view, m.row, m.col) for m in own[(*key, r.reader_id)].marks}
        for m in r.marks:
            assert m.rating == r.suspicion
            assert (key, m.view, (m.row, m.col)) in centres or (m.view, m.row, m.col) in spots
    # a better model: better aided wAFROC, unaided unchanged
    spacing = json.loads((site / "synth.json").read_text())["vendor"]["spacing_mm"]
    fom = {}
    for quality in (0.0, 3.0):
        records, scores, reads = _aided_reads(site, tmp_path / str(quality), quality)
        cases = build_cases(records.test, reads, scores, lambda im: (spacing, spacing))
        roles = {r.reader_id: r.role for r in reads}
        panels = dict(wafroc_panels(list(cases.values()), roles, 101)[0])
        fom[quality] = panels["junior: unaided vs aided (wAFROC)"].fom()[0].reshape(2, -1)
    assert np.allclose(fom[0.0][0], fom[3.0][0])
    assert fom[3.0][1].mean() > fom[0.0][1].mean() + 0.02

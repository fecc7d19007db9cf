"""A hospital's training material and the shared local training."""

from dataclasses import replace

import pytest
import torch

from common.data.partition import PartitionSpec
from common.learning.dp import DPConfig, PrivacyBudgetError
from common.learning.material import SiteData, SiteSettings, plan_models, site_records, train_models
from common.learning.models import ClassifierConfig, DetectorConfig, build
from common.learning.training import TrainConfig

SMALL = SiteSettings(detector=DetectorConfig(width=4), classifier=ClassifierConfig(width=4))
QUICK = {t: TrainConfig(epochs=1, patience=0, progress=False) for t in ("detector", "classifier")}


def test_site_records_follow_the_data_split(consortium):
    train, test = site_records(consortium / "hospital-1")
    assert train and test
    assert {im.split for im in test} == {"test"}
    assert not {im.patient_id for im in train} & {im.patient_id for im in test}


def test_partition_keeps_one_share_of_a_pooled_folder(consortium):
    spec = PartitionSpec(2, seed=3)
    shares = [site_records(consortium / "hospital-1", (i, spec)) for i in range(2)]
    whole = site_records(consortium / "hospital-1")
    for part in (0, 1):
        assert len(shares[0][part]) + len(shares[1][part]) == len(whole[part])
    patients = [{im.patient_id for im in tr + te} for tr, te in shares]
    assert patients[0] and patients[1] and not patients[0] & patients[1]


@pytest.fixture(scope="module")
def site(consortium):
    train, _ = site_records(consortium / "hospital-1")
    return SiteData(train, SMALL)


def test_site_counts(site):
    c = site.counts()
    assert c["train_images"] > 0 and c["detector_patches"] == site.examples("detector") > 0
    assert c["unreadable"] == 0


def test_train_models_continues_dp_histories(site):
    models = {t: build(t, {"width": 4}) for t in ("detector", "classifier")}
    dp = DPConfig(noise_multiplier=1.0, delta=1e-5)
    first = train_models(models, site, QUICK, dp=dp)
    histories = {t: r.privacy["accountant"] for t, r in first.items()}
    second = train_models(models, site, QUICK, dp=dp, histories=histories)
    for t in QUICK:
        assert second[t].privacy["epsilon"] > first[t].privacy["epsilon"] > 0


def test_plan_refuses_before_training_and_names_the_model(site):
    dp = DPConfig(noise_multiplier=0.5, delta=1e-5, budget_epsilon=0.1)
    with pytest.raises(PrivacyBudgetError) as info:
        plan_models(site, QUICK, dp)
    assert info.value.task == "detector"


def test_mined_negatives_join_the_detector_patches_and_replace_earlier_ones(consortium):
    train, _ = site_records(consortium / "hospital-1")
    site = SiteData(train, SMALL)
    sampled = len(site.detector_train), len(site.detector_val)
    before = site.examples_per_patient()
    detector = build("detector", {"width": 4})
    with torch.no_grad():  # an untrained detector that peaks somewhere
        detector.head.bias.fill_(-1.0)
    first = site.mine(detector, per_image=2)
    assert 0 < first["mined_train_patches"] <= 2 * len(site.train_images)
    assert len(site.detector_train) == sampled[0] + first["mined_train_patches"]
    assert len(site.detector_val) == sampled[1] + first["mined_val_patches"]
    assert before < site.examples_per_patient() <= before + 2 * len(site.train_images)
    again = site.mine(detector, per_image=1)
    assert len(site.detector_train) == sampled[0] + again["mined_train_patches"]
    assert again["mined_train_patches"] <= len(site.train_images)


def test_no_mining_with_dp(consortium):
    train, _ = site_records(consortium / "hospital-1")
    site = SiteData(train[:4], replace(SMALL, dp=True))
    with pytest.raises(ValueError, match="DP-SGD"):
        site.mine(build("detector", {"width": 4}), per_image=2)

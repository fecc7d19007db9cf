"""A short training learns: held-out synthetic images are ranked and found well above chance.

The margins were measured over data and training seeds (``docs/results.md``, "Learning
test"); the thresholds sit below the worst seed and far above an untrained cascade.
"""

import pytest

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.evaluation.images import evaluate_images
from common.learning.models import load_run, seeded_models
from common.learning.samples import ImageStore
from common.learning.training import TrainConfig
from common.synth.generate import SynthConfig, synthesize
from simulations.central import CentralConfig, train_central

SEED = 11

# trained from ROI masks alone (multiple-instance bags): below the worst of three data
# seeds (docs/results.md, "Learning test")
MASKS_FROC = 0.5
MASKS_POINT_RECALL = 0.6
MASKS_POINT_PRECISION = 0.2


def _summary(models, test, store, cascade) -> dict:
    return evaluate_images(models, test, store, cascade)[0].summary()


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    dirs = synthesize(root / "data", SynthConfig(hospitals=2, exams=16, seed=SEED), progress=False)
    config = CentralConfig(
        detector_train=TrainConfig(epochs=4, seed=SEED, progress=False),
        classifier_train=TrainConfig(epochs=8, patience=10, seed=SEED, progress=False),
        seed=SEED,
        cache_dir=root / "cache",
    )
    train_central(dirs, root / "model", config)
    models, read, cascade, _ = load_run(root / "model")
    store = ImageStore(PreprocessCache(root / "cache", read))
    test = [im for d in dirs for im in load_hospital(d, echo=False).images if im.split == "test"]
    untrained = seeded_models({"detector": {}, "classifier": {}}, SEED)
    return _summary(models, test, store, cascade), _summary(untrained, test, store, cascade)


def test_trained_cascade_ranks_held_out_breasts_well_above_chance(learned):
    trained, _ = learned
    assert trained["breast"]["auc"] >= 0.80


def test_trained_detector_finds_held_out_clusters(learned):
    trained, untrained = learned
    assert trained["detection"]["mean_sensitivity"] >= 0.30
    # at the strictest point: an untrained detector on smooth parenchyma finds bright
    # clusters too once many false positives are allowed
    assert trained["detection"]["sens@0.25fp"] >= untrained["detection"]["sens@0.25fp"] + 0.2


@pytest.fixture(scope="module")
def learned_from_masks(tmp_path_factory):
    """The same kind of consortium, trained and scored from its CBIS-DDSM folders alone."""
    root = tmp_path_factory.mktemp("masks")
    dirs = synthesize(root / "data", SynthConfig(hospitals=2, exams=16, seed=SEED), progress=False)
    images = [im for d in dirs for im in load_hospital(d, fmt="cbis-ddsm", echo=False).images]
    assert images and all(f.points is None for im in images for f in im.findings)
    config = CentralConfig(
        detector_train=TrainConfig(epochs=4, seed=SEED, progress=False),
        classifier_train=TrainConfig(epochs=8, patience=10, seed=SEED, progress=False),
        seed=SEED,
        cache_dir=root / "cache",
        weak_targets="mil",
    )
    train = [im for im in images if im.split == "train"]
    train_central(dirs, root / "model", config, records=train)
    models, read, cascade, _ = load_run(root / "model")
    store = ImageStore(PreprocessCache(root / "cache", read))
    test = [im for im in images if im.split == "test"]
    # the generator's points, never seen in training, score where the marks fall
    truth = [im for d in dirs for im in load_hospital(d, echo=False).images]
    truth = [im for im in truth if im.split == "test" and im.findings]
    return _summary(models, test, store, cascade), _summary(models, truth, store, cascade)


def test_a_cbis_folder_without_points_trains_a_cascade_that_finds_clusters(learned_from_masks):
    on_masks, _ = learned_from_masks
    assert on_masks["detection"]["mean_sensitivity"] >= MASKS_FROC


def test_marks_learned_from_masks_fall_on_calcifications(learned_from_masks):
    _, on_points = learned_from_masks
    assert on_points["detection"]["point_recall"] >= MASKS_POINT_RECALL
    assert on_points["detection"]["point_precision"] >= MASKS_POINT_PRECISION

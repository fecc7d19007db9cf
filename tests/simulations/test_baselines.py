"""The centralised baseline mirrors a federated run's training settings."""

import pytest

from common.learning.recipes import classifier_rate
from server.settings import RunSettings
from simulations.baselines import central_config


def test_central_baseline_mirrors_the_federated_training():
    settings = RunSettings(num_server_rounds=2, detector_epochs=3, dp=True)
    config = central_config(settings, None, progress=False)
    det, cls = config.detector_schedule(), config.classifier_schedule()
    assert det.epochs == 6 and det.batch_size == settings.batch_size
    assert det.frozen == ("stem.",)  # as the hospitals train it under DP
    assert cls.lr == classifier_rate(settings.classifier_lr, "descriptors") and cls.frozen == ()
    assert config.classifier_config().arch == "descriptors"
    free = RunSettings(dp=True, dp_freeze_stem=False)
    assert central_config(free, None, progress=False).detector_schedule().frozen == ()
    plain = central_config(RunSettings(), None, progress=False)
    assert plain.dp is None and plain.detector_schedule().frozen == ()


def test_pooled_baselines_read_files_as_the_hospitals_do():
    from common.imaging.reading import ReadOptions
    from simulations.baselines import hospitals_reading

    read = ReadOptions(target_spacing_mm=0.1)
    film = {"fallback-spacing": 0.05, "for-processing": "normalize"}
    nodes = [{"data-dir": f"/d{i}", **film} for i in range(3)]
    pooled = hospitals_reading(read, nodes)
    assert pooled.fallback_spacing_mm == 0.05 and pooled.for_processing == "normalize"
    assert pooled.target_spacing_mm == 0.1
    with pytest.raises(ValueError, match="differently"):
        hospitals_reading(read, [*nodes, {"data-dir": "/other"}])

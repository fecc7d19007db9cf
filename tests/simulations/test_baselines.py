"""The centralised baseline mirrors a federated run's training settings."""

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

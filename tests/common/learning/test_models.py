import json

import pytest
import torch
from opacus.validators import ModuleValidator
from torch.nn import functional as F

from common.learning import models
from common.learning.descriptors import NAMES, describe_batch, standardise
from common.learning.models import (
    Classifier,
    ClassifierConfig,
    DescriptorClassifier,
    Detector,
    DetectorConfig,
    _upsampled_conv,
    build,
    faster_dtype,
    inference_dtype,
    load_models,
    precision_timings,
    save_models,
)
from tests.common.learning.norms import trained_like_classifier, trained_like_detector


@pytest.mark.parametrize("size", [96, 128, 100])
def test_detector_is_fully_convolutional_at_stride_2(size):
    out = Detector()(torch.rand(3, 1, size, size))
    assert out.shape == (3, 1, size // 2, size // 2)


@pytest.mark.parametrize("size", [(160, 160), (100, 68), (8, 12)])
def test_detector_inference_path_gives_the_training_path_logits(size):
    det = trained_like_detector()
    x = torch.rand(3, 1, *size) * 0.6 + 0.2
    x[0, 0, 2:4, 3:5] = 1.0  # a bright spot: what the high-pass channel is for
    with torch.no_grad():
        expected = det(x)
    out = det.infer(x)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(10, 7), (1, 1), (2, 3)])
def test_upsampled_convolution_is_the_convolution_of_the_upsampled_map(layout, size, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(10, 5, 3, padding=1, bias=bias)
    low = torch.randn(2, 6, *size).contiguous(memory_format=layout)
    skip = torch.randn(2, 4, 2 * size[0], 2 * size[1]).contiguous(memory_format=layout)
    with torch.no_grad():
        expected = conv(torch.cat([F.interpolate(low, scale_factor=2.0), skip], dim=1))
        out = _upsampled_conv(conv, low, skip)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_upsampled_convolution_reaches_only_the_block_around_the_copy():
    # a single bright source pixel reaches exactly the 4x4 block around its 2x2 copy
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(10, 5, 3, padding=1, bias=False)
    spot = torch.zeros(1, 6, 4, 4)
    spot[0, :, 1, 2] = 1.0
    with torch.no_grad():
        reach = _upsampled_conv(conv, spot, torch.zeros(1, 4, 8, 8)).abs().sum(dim=(0, 1))
    assert torch.equal(torch.nonzero(reach).amin(0), torch.tensor([1, 3]))
    assert torch.equal(torch.nonzero(reach).amax(0), torch.tensor([4, 6]))


def test_classifier_outputs_one_logit_per_crop():
    assert Classifier()(torch.rand(5, 1, 96, 96)).shape == (5,)


def test_classifier_inference_path_gives_the_training_path_logits():
    cls = trained_like_classifier()
    x = torch.rand(6, 1, 96, 96) * 0.6 + 0.2
    x[0, 0, 40:42, 50:52] = 1.0
    with torch.no_grad():
        expected = cls(x)
    out = cls.infer(x)
    assert out.shape == (6,)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "model", [Detector(), Classifier(), Detector(DetectorConfig(width=32)), DescriptorClassifier()]
)
def test_models_are_opacus_valid(model):
    assert ModuleValidator.validate(model, strict=False) == []
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_width_is_configurable():
    small = sum(p.numel() for p in build("classifier").parameters())
    wide = sum(p.numel() for p in build("classifier", {"width": 32}).parameters())
    assert wide > 4 * small


def test_checkpoint_alone_is_enough_for_inference(tmp_path):
    torch.manual_seed(0)
    det, cls = Detector(DetectorConfig(width=8)), Classifier(ClassifierConfig(width=8, crop=64))
    save_models(tmp_path, {"detector": det, "classifier": cls}, {"preprocessing": {"x": 1}})
    spec = json.loads((tmp_path / "model.json").read_text())
    assert spec["models"]["classifier"]["crop"] == 64 and spec["preprocessing"] == {"x": 1}
    loaded, _ = load_models(tmp_path)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded["detector"](x), det.eval()(x))
        assert torch.equal(loaded["classifier"](x), cls.eval()(x))
    # plain state_dicts, loadable without calcifl
    weights = torch.load(tmp_path / "detector.pt", weights_only=True)
    assert all(not k.startswith("_module") for k in weights)


def test_bad_configs_and_folders(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        build("detector", {"depth": 3})
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_models(tmp_path)


def test_seeded_models_do_not_depend_on_the_global_rng():
    from common.learning.models import flat_state, seeded_models

    configs = {"detector": {"width": 4}, "classifier": {"width": 4}}
    a = flat_state(seeded_models(configs, 3))
    torch.rand(1000)  # whatever the caller drew before
    b = flat_state(seeded_models(configs, 3))
    c = flat_state(seeded_models(configs, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_descriptor_classifier_scores_crops_through_their_descriptors():
    torch.manual_seed(0)
    model = build("classifier", {"arch": "descriptors"})
    assert isinstance(model, DescriptorClassifier)
    assert sum(p.numel() for p in model.parameters()) == len(NAMES) + 1
    torch.nn.init.normal_(model.head.weight)
    crops = torch.rand(4, 1, 96, 96)
    with torch.no_grad():
        from_crops = model(crops)
        from_descriptors = model(torch.from_numpy(standardise(describe_batch(crops.numpy()))))
    assert from_crops.shape == (4,)
    assert torch.equal(from_crops, from_descriptors)


def test_descriptor_classifier_round_trips_through_a_run_folder(tmp_path):
    cls = DescriptorClassifier(ClassifierConfig(arch="descriptors", crop=64))
    torch.nn.init.normal_(cls.head.weight)
    save_models(tmp_path, {"detector": Detector(DetectorConfig(width=4)), "classifier": cls}, {})
    assert json.loads((tmp_path / "model.json").read_text())["models"]["classifier"]["arch"] == (
        "descriptors"
    )
    loaded, _ = load_models(tmp_path)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded["classifier"](x), cls.eval()(x))


def test_auto_precision_takes_bfloat16_only_for_a_clear_gain():
    assert faster_dtype({torch.float32: 1.0, torch.bfloat16: 0.6}) == torch.bfloat16
    assert faster_dtype({torch.float32: 1.0, torch.bfloat16: 0.95}) == torch.float32
    assert faster_dtype({torch.float32: 1.0, torch.bfloat16: 1.7}) == torch.float32


def test_precision_timings_time_both_dtypes_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    timings = precision_timings(windows=2, side=64, repeats=1)
    assert set(timings) == {torch.float32, torch.bfloat16}
    assert all(0 < t < 60 for t in timings.values())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_auto_precision_is_measured_once_and_only_with_native_bfloat16(monkeypatch):
    calls = []

    def timings():
        calls.append(1)
        return {torch.float32: 1.0, torch.bfloat16: 0.5}

    monkeypatch.setattr(models, "precision_timings", timings)
    monkeypatch.setattr(models, "native_bfloat16", lambda: True)
    models._auto_dtype.cache_clear()
    try:
        assert inference_dtype("auto") == torch.bfloat16
        assert inference_dtype("auto") == torch.bfloat16
        assert len(calls) == 1
        monkeypatch.setattr(models, "native_bfloat16", lambda: False)
        models._auto_dtype.cache_clear()
        assert inference_dtype("auto") == torch.float32 and len(calls) == 1
    finally:
        models._auto_dtype.cache_clear()
    assert inference_dtype("float32") == torch.float32
    assert inference_dtype("bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="half"):
        inference_dtype("half")

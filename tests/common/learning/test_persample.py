"""Per-sample gradients in one backward pass, against Opacus' own hooks."""

import warnings

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from torch import nn
from torch.utils.data import TensorDataset

from common.learning.dp import DPConfig
from common.learning.models import Classifier, DescriptorClassifier, Detector, state_dict
from common.learning.persample import PerSampleGradients
from common.learning.training import LOSSES, TrainConfig, train


def _opacus_grad_samples(model, x, loss_fn, reduction="mean"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gsm = GradSampleModule(model, loss_reduction=reduction)
        loss_fn(gsm(x)).backward()
    out = [p.grad_sample.clone() for p in model.parameters()]
    gsm._close()
    return out


def _ours(model, x, loss_fn, reduction="mean"):
    wrapped = PerSampleGradients(model, loss_reduction=reduction)
    loss_fn(wrapped(x)).backward()
    out = [p.grad_sample.clone() for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())  # no batch gradient computed
    wrapped.remove_hooks()
    return out


def _trained_descriptors():
    model = DescriptorClassifier()
    torch.nn.init.normal_(model.head.weight, std=0.3)  # away from the zero start
    return model


def _copy(model):
    clone = type(model)()
    clone.load_state_dict(model.state_dict())
    return clone


def _assert_same(ours, reference):
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape
        scale = float(b.abs().max()) + 1e-12
        assert float((a - b).abs().max()) / scale < 1e-4


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_detector_and_classifier_match_opacus(reduction):
    torch.manual_seed(0)
    x = torch.rand(6, 1, 64, 64)
    heat = torch.zeros(6, 1, 32, 32)
    heat[:, :, 5, 7] = 1.0
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    for model, loss_fn in (
        (Detector(), lambda out: LOSSES["detector"](out, heat)),
        (Classifier(), lambda out: LOSSES["classifier"](out, labels)),
        (_trained_descriptors(), lambda out: LOSSES["classifier"](out, labels)),
    ):
        reference = _opacus_grad_samples(_copy(model), x, loss_fn, reduction)
        _assert_same(_ours(model, x, loss_fn, reduction), reference)


class _Mixed(nn.Module):
    """Strides, dilation, bias, rectangular kernels and a Linear over a sequence."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0), bias=True)
        self.b = nn.Conv2d(5, 4, 3, dilation=2, padding=2)
        self.norm = nn.GroupNorm(2, 4)
        self.seq = nn.Linear(9, 3)
        self.out = nn.Linear(4 * 3, 1)

    def forward(self, x):
        h = torch.relu(self.norm(self.b(torch.relu(self.a(x)))))  # (n, 4, 9, 9)
        h = self.seq(h.mean(2))  # Linear over (n, 4 positions, 9 features)
        return self.out(h.flatten(1)).squeeze(1)


def test_other_layer_geometries_match_opacus():
    torch.manual_seed(1)
    model = _Mixed()
    x = torch.randn(5, 3, 18, 10)
    target = torch.randn(5)

    def loss_fn(out):
        return ((out - target) ** 2).mean()

    reference = _opacus_grad_samples(_copy(model), x, loss_fn)
    _assert_same(_ours(model, x, loss_fn), reference)


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="layer '0'"):
        PerSampleGradients(model)
    with pytest.raises(ValueError, match="BatchNorm2d"):
        PerSampleGradients(nn.Sequential(nn.BatchNorm2d(4)))


def test_shared_and_unused_layers_fail_loudly():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(ValueError, match="used twice"):
        PerSampleGradients(model)(torch.randn(4, 3))

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(3, 1), nn.Linear(3, 1)

        def forward(self, x):
            self.spare(x)  # computed, but the loss does not depend on it
            return self.used(x)

    with pytest.raises(RuntimeError, match="no gradient reached"):
        PerSampleGradients(Unused())(torch.randn(4, 3)).sum().backward()


def test_dp_training_equals_opacus_hooks_and_leaves_the_model_clean(monkeypatch):
    from common.learning import training

    # both modes draw the same batches and noise here, to compare their gradients
    monkeypatch.setattr(training, "entropy_generator", lambda: torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    x = torch.rand(40, 1, 96, 96)
    y = torch.rand(40) > 0.5
    data = TensorDataset(x, y.float())
    config = TrainConfig(
        epochs=2, batch_size=8, lr=1e-3, patience=0, progress=False, restore_best=False
    )
    results, weights = {}, {}
    start = Classifier()
    for mode in ("fast", "opacus"):
        model = _copy(start)
        dp = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, per_sample=mode)
        results[mode] = train(model, data, None, "classifier", config, dp=dp)
        weights[mode] = state_dict(model)
        assert not any(
            hasattr(p, "grad_sample") and p.grad_sample is not None for p in model.parameters()
        )
        assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    assert results["fast"].steps == results["opacus"].steps > 0
    assert results["fast"].privacy["epsilon"] == results["opacus"].privacy["epsilon"]
    moved = max(
        float((weights["fast"][k] - start.state_dict()[k]).abs().max()) for k in weights["fast"]
    )
    assert moved > 1e-3
    for k, v in weights["opacus"].items():  # same batches, same noise
        np.testing.assert_allclose(weights["fast"][k].numpy(), v.numpy(), atol=2e-5, err_msg=k)


class _Branches(nn.Module):
    """Two layers that both read the input: neither is upstream of the other."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        return (self.a(x) + self.b(x)).mean((1, 2, 3))


@pytest.mark.parametrize("factory", [Detector, _Branches])
def test_later_calls_match_opacus_whichever_tensor_carries_backward(factory):
    torch.manual_seed(0)
    model = factory()
    heat = torch.zeros(4, 1, 32, 32)
    heat[:, :, 3, 9] = 1.0
    loss_fn = (
        (lambda out: LOSSES["detector"](out, heat))
        if factory is Detector
        else (lambda out: (out**2).mean())
    )
    wrapped = PerSampleGradients(model)
    for _ in range(3):
        x = torch.rand(4, 1, 64, 64)
        reference = _opacus_grad_samples(_copy(model), x, loss_fn)
        loss_fn(wrapped(x)).backward()
        _assert_same([p.grad_sample.clone() for p in model.parameters()], reference)
        for p in model.parameters():
            p.grad_sample = None
    # the detector's first convolution carries backward after the first call; with two
    # input branches the input keeps carrying it
    assert wrapped._leaf == ("stem.1.0.weight" if factory is Detector else None)
    wrapped.remove_hooks()


def test_a_frozen_stem_gets_no_per_sample_work_and_the_rest_matches_opacus():
    torch.manual_seed(0)
    model = Detector()
    for p in model.stem.parameters():
        p.requires_grad_(False)
    heat = torch.zeros(4, 1, 32, 32)
    heat[:, :, 5, 7] = 1.0
    wrapped = PerSampleGradients(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for _ in range(2):
        x = torch.rand(4, 1, 64, 64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = GradSampleModule(_copy(model), loss_reduction="mean")
            for p in reference._module.stem.parameters():
                p.requires_grad_(False)
            LOSSES["detector"](reference(x), heat).backward()
        expected = [p.grad_sample for p in reference._module.parameters() if p.requires_grad]
        reference._close()
        LOSSES["detector"](wrapped(x), heat).backward()
        _assert_same([p.grad_sample.clone() for p in trainable], expected)
        assert all(getattr(p, "grad_sample", None) is None for p in model.stem.parameters())
        for p in trainable:
            p.grad_sample = None
    assert wrapped._leaf == "down1.0.0.weight"  # backward stops below the frozen stem
    wrapped.remove_hooks()

"""Training engine: determinism, early stopping, DP-SGD with cumulative ε and a budget."""

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import TensorDataset

from common.learning.dp import DPConfig, PrivacyBudgetError, epsilon
from common.learning.models import Classifier, ClassifierConfig, DescriptorClassifier, state_dict
from common.learning.training import TrainConfig, evaluate, focal_loss, train

QUIET = {"progress": False}


def toy(n=64, seed=0):
    """Crops whose label is whether a bright dot is present: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.4, 0.05, (n, 1, 32, 32)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.float32)
    for i in np.flatnonzero(y):
        r, c = rng.integers(8, 24, 2)
        x[i, 0, r - 1 : r + 2, c - 1 : c + 2] = 1.0
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def model():
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(width=4, crop=32))


def test_deterministic_for_a_seed_and_learns():
    a, b = model(), model()
    cfg = TrainConfig(epochs=6, batch_size=16, patience=0, lr=3e-3, **QUIET)
    ra = train(a, toy(), toy(32, 1), "classifier", cfg)
    rb = train(b, toy(), toy(32, 1), "classifier", cfg)
    for k, v in state_dict(a).items():
        assert torch.equal(v, state_dict(b)[k])
    assert ra.history == rb.history
    assert ra.history[-1]["train_loss"] < ra.history[0]["train_loss"]
    assert evaluate(a, toy(32, 2), "classifier")["auc"] > 0.9


def test_early_stopping_keeps_best_weights():
    m = model()
    cfg = TrainConfig(epochs=30, batch_size=16, patience=2, lr=5e-2, **QUIET)  # noisy lr
    r = train(m, toy(), toy(32, 1), "classifier", cfg)
    assert len(r.history) < 30 or r.best_epoch == 30
    best = min(h["val_loss"] for h in r.history)
    assert r.metrics["val_loss"] == best
    assert evaluate(m, toy(32, 1), "classifier")["loss"] == pytest.approx(best, rel=1e-5)


def test_focal_loss_is_a_mean_of_per_sample_losses():
    torch.manual_seed(1)
    logits = torch.randn(4, 1, 8, 8)
    target = torch.rand(4, 1, 8, 8) * 0.9
    target[0, 0, 2, 2] = target[1, 0, 5, 5] = target[1, 0, 1, 1] = 1.0
    whole = focal_loss(logits, target)
    parts = torch.stack([focal_loss(logits[i : i + 1], target[i : i + 1]) for i in range(4)])
    assert whole == pytest.approx(parts.mean().item(), rel=1e-6)


def test_a_bag_teaches_its_most_probable_cell_and_none_of_it_as_negative():
    from common.learning.samples import BAG

    logits = torch.full((2, 1, 6, 6), -2.0)
    logits[0, 0, 2, 3] = 0.5  # the bag's most probable cell
    logits[0, 0, 1, 1] = 1.0  # outside the bag: a negative
    target = torch.zeros(2, 1, 6, 6)
    target[0, 0, 2:4, 2:5] = BAG
    target[1, 0, 4, 4] = 1.0  # a plain peak in the other sample
    logits.requires_grad_(True)
    focal_loss(logits, target).backward()
    grad = logits.grad[0, 0]
    assert grad[2, 3] < 0  # pushed up: the bag's peak
    bag = target[0, 0] == BAG
    others = bag.clone()
    others[2, 3] = False
    assert (grad[others] == 0).all()  # the rest of the bag is neither peak nor negative
    assert grad[1, 1] > 0  # outside the bag, a negative as before
    # the bag counts as one peak: the sample's loss is the peak's term plus negatives
    p = torch.sigmoid(torch.tensor(0.5))
    neg = torch.sigmoid(logits.detach()[0, 0][~bag])
    expected = -((1 - p) ** 2) * torch.log(p) - (neg**2 * torch.log(1 - neg)).sum()
    alone = focal_loss(logits.detach()[:1], target[:1])
    assert alone.item() == pytest.approx(expected.item(), rel=1e-5)


def test_dp_epsilon_is_cumulative_across_calls():
    dp = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    cfg = TrainConfig(epochs=2, batch_size=16, patience=0, **QUIET)
    m = model()
    first = train(m, toy(), None, "classifier", cfg, dp=dp)
    second = train(m, toy(), None, "classifier", cfg, dp=dp, accountant=first.privacy["accountant"])
    assert 0 < first.privacy["epsilon"] < second.privacy["epsilon"]
    # 2 calls x 2 epochs x 4 batches (Opacus merges identical (noise, rate) entries)
    assert sum(steps for _, _, steps in second.privacy["accountant"]) == 16
    assert second.privacy["epsilon"] == pytest.approx(epsilon(second.privacy["accountant"], 1e-5))
    fresh = train(model(), toy(), None, "classifier", cfg, dp=dp)
    assert fresh.privacy["epsilon"] == pytest.approx(first.privacy["epsilon"])
    # the Opacus wrapper's keys never leak into the weights
    assert all(not k.startswith("_module") for k in state_dict(m))


def test_target_epsilon_is_met():
    dp = DPConfig(target_epsilon=4.0, delta=1e-5)
    r = train(
        model(),
        toy(),
        None,
        "classifier",
        TrainConfig(epochs=3, batch_size=16, patience=0, **QUIET),
        dp=dp,
    )
    assert 3.6 < r.privacy["epsilon"] <= 4.0 + 1e-6


def test_budget_is_enforced_before_any_step():
    m = model()
    before = {k: v.clone() for k, v in state_dict(m).items()}
    dp = DPConfig(noise_multiplier=0.6, delta=1e-5, budget_epsilon=1.0)
    with pytest.raises(PrivacyBudgetError, match="budget") as info:
        train(m, toy(), None, "classifier", TrainConfig(epochs=5, batch_size=16, **QUIET), dp=dp)
    assert info.value.would_reach > 1.0 and info.value.allowed_steps >= 0
    assert all(torch.equal(v, before[k]) for k, v in state_dict(m).items())


def test_budget_counts_earlier_calls():
    dp = DPConfig(noise_multiplier=1.0, delta=1e-5)
    cfg = TrainConfig(epochs=2, batch_size=16, patience=0, **QUIET)
    m = model()
    first = train(m, toy(), None, "classifier", cfg, dp=dp)
    capped = DPConfig(
        noise_multiplier=1.0, delta=1e-5, budget_epsilon=first.privacy["epsilon"] * 1.2
    )
    with pytest.raises(PrivacyBudgetError):
        train(m, toy(), None, "classifier", cfg, dp=capped, accountant=first.privacy["accountant"])


def test_last_weights_can_be_kept():
    m = model()
    cfg = TrainConfig(epochs=3, batch_size=16, patience=0, restore_best=False, **QUIET)
    r = train(m, toy(), toy(32, 1), "classifier", cfg)
    assert r.best_epoch == 3 and len(r.history) == 3
    assert evaluate(m, toy(32, 1), "classifier")["loss"] == pytest.approx(
        r.history[-1]["val_loss"], rel=1e-5
    )


def test_dp_batches_follow_the_power_of_two_below_n():
    from common.learning.training import plan_private

    dp = DPConfig(noise_multiplier=1.0, delta=1e-5)
    cfg = TrainConfig(epochs=2, batch_size=16)
    # 520 and 1000 examples sample alike (512 → 32 batches), so ε cannot tell them apart
    a, b = plan_private(520, cfg, dp), plan_private(1000, cfg, dp)
    assert a == b and a.steps == 64 and a.sample_rate == 1 / 32
    assert plan_private(1024, cfg, dp).steps == 128


def test_empty_poisson_batches_are_skipped():
    tiny = torch.utils.data.Subset(toy(), [0, 1, 2, 3])
    r = train(
        model(),
        tiny,
        None,
        "classifier",
        TrainConfig(epochs=6, batch_size=1, patience=0, **QUIET),
        dp=DPConfig(noise_multiplier=1.0, delta=1e-5),
    )
    assert r.skipped_empty > 0  # P(empty) = (3/4)^4 per batch, 24 batches
    assert r.steps + r.skipped_empty == 24
    assert sum(s for _, _, s in r.privacy["accountant"]) == r.steps


def _distance(a, b):
    return sum(float((a[k] - b[k]).pow(2).sum()) for k in a) ** 0.5


@pytest.mark.parametrize("dp", [None, DPConfig(noise_multiplier=1.0, delta=1e-5)])
def test_proximal_term_keeps_weights_near_the_start(dp):
    start = state_dict(model())
    moved = {}
    for mu in (0.0, 50.0):
        m = model()
        train(
            m,
            toy(),
            None,
            "classifier",
            TrainConfig(epochs=3, batch_size=16, patience=0, lr=1e-2, proximal_mu=mu, **QUIET),
            dp=dp,
        )
        moved[mu] = _distance(state_dict(m), start)
    assert 0 < moved[50.0] < 0.5 * moved[0.0]


def test_plan_predicts_what_training_spends():
    from common.learning.training import plan_private

    dp = DPConfig(target_epsilon=3.0, delta=1e-5)
    cfg = TrainConfig(epochs=2, batch_size=16, patience=0, **QUIET)
    # calibrated for 3 equal calls: the first spends well under the target
    plan = plan_private(len(toy()), cfg, dp, horizon_calls=3)
    assert plan.epsilon_before == 0 and plan.epsilon_after < 3.0 * 0.8
    fixed = DPConfig(noise_multiplier=plan.noise_multiplier, delta=1e-5)
    r = train(model(), toy(), None, "classifier", cfg, dp=fixed)
    assert r.privacy["epsilon"] == pytest.approx(plan.epsilon_after)
    assert r.steps == plan.steps
    history = r.privacy["accountant"]
    for _ in range(2):
        history = [*history, (plan.noise_multiplier, plan.sample_rate, plan.steps)]
    assert epsilon(history, 1e-5) == pytest.approx(3.0, abs=0.01)


def test_descriptor_classifier_learns_under_dp():
    # 15 weights: DP-SGD's noise barely moves it where the CNN would need far more data
    m = DescriptorClassifier(ClassifierConfig(arch="descriptors", crop=32))
    cfg = TrainConfig(epochs=10, batch_size=32, lr=0.03, patience=0, restore_best=False, **QUIET)
    result = train(
        m, toy(128), None, "classifier", cfg, dp=DPConfig(target_epsilon=2.0, delta=1e-5)
    )
    assert 0 < result.privacy["epsilon"] <= 2.0 + 1e-6
    assert evaluate(m, toy(64, 2), "classifier")["auc"] > 0.95


@pytest.mark.parametrize("dp", [False, True])
def test_frozen_parameters_stay_and_the_rest_trains(dp):
    m = model()
    start = {k: v.clone() for k, v in state_dict(m).items()}
    cfg = TrainConfig(
        epochs=2, batch_size=16, lr=1e-2, patience=0, frozen=("features.1.",), **QUIET
    )
    privacy = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5) if dp else None
    train(m, toy(), None, "classifier", cfg, dp=privacy)
    after = state_dict(m)
    frozen = [k for k in start if k.startswith("features.1.")]
    assert frozen and all(torch.equal(after[k], start[k]) for k in frozen)
    assert not torch.equal(after["head.weight"], start["head.weight"])
    assert not torch.equal(after["features.2.0.weight"], start["features.2.0.weight"])
    assert all(p.requires_grad for p in m.parameters())  # restored for the next call


def test_frozen_prefixes_are_checked():
    with pytest.raises(ValueError, match="no parameter of the model starts with 'stem.'"):
        train(model(), toy(), None, "classifier", TrainConfig(epochs=1, frozen=("stem.",), **QUIET))
    with pytest.raises(ValueError, match="leaves nothing to train"):
        train(model(), toy(), None, "classifier", TrainConfig(epochs=1, frozen=("",), **QUIET))


def _first_noisy_gradient(seed: int, sigma: float) -> torch.Tensor:
    """Train a linear model on zero inputs (every per-sample gradient is 0) with DP and
    return the gradient Adam receives at the first step: pure DP noise / batch size."""
    grads = []

    def capture(optimizer, args, kwargs):
        if type(optimizer) is torch.optim.Adam and not grads:
            grads.append(
                torch.cat([p.grad.flatten().clone() for p in optimizer.param_groups[0]["params"]])
            )

    handle = register_optimizer_step_pre_hook(capture)
    try:
        data = TensorDataset(torch.zeros(64, 512), torch.ones(64, 1))
        net = torch.nn.Linear(512, 1, bias=False)
        dp = DPConfig(noise_multiplier=sigma, max_grad_norm=1.0, delta=1e-5, per_sample="opacus")
        cfg = TrainConfig(epochs=1, batch_size=32, seed=seed, **QUIET)
        train(net, data, None, "classifier", cfg, dp=dp)
    finally:
        handle.remove()
    return grads[0].double()


def test_dp_noise_cannot_be_replayed_from_the_seed():
    # the coordinator picks the seed: two calls with the same one must draw independent noise
    sigma = 1.5
    a, b = _first_noisy_gradient(3, sigma), _first_noisy_gradient(3, sigma)
    expected = sigma * 1.0 / 32  # σ·C over the expected batch (64 examples, rate 1/2)
    assert float(a.std()) == pytest.approx(expected, rel=0.12)
    assert float((a - b).std()) == pytest.approx(np.sqrt(2) * expected, rel=0.12)
    assert abs(float(np.corrcoef(a.numpy(), b.numpy())[0, 1])) < 0.2


def test_training_without_dp_stays_reproducible_from_the_seed():
    cfg = TrainConfig(epochs=1, batch_size=16, seed=5, **QUIET)
    a, b = model(), model()
    b.load_state_dict(a.state_dict())
    train(a, toy(), None, "classifier", cfg)
    train(b, toy(), None, "classifier", cfg)
    assert all(
        torch.equal(x, y)
        for x, y in zip(state_dict(a).values(), state_dict(b).values(), strict=True)
    )

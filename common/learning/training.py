"""Local training and evaluation of the detector and the classifier, with optional DP-SGD.

:func:`train` is the one loop the centralised baseline and the federated client share:
seeded, with a progress bar, early stopping on a validation set, and Opacus DP-SGD whose
accountant history is imported before and exported after the call (so ε is cumulative
across calls) and whose budget is enforced before any step is taken.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from common.evaluation.metrics import RocStats
from common.learning.dp import (
    DPConfig,
    PrivacyBudgetError,
    allowed_steps,
    epsilon,
    noise_for_target,
    public_size,
    with_steps,
)
from common.learning.models import unwrap
from common.learning.persample import PerSampleGradients

logger = logging.getLogger("calcifl")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes
    ----------
    epochs : int
        Most epochs to run.
    patience : int
        Stop after this many epochs without a better validation loss (0: never).
    restore_best : bool
        End with the best-validation weights (else with the last ones: better when the
        validation set is too small to rank noisy DP epochs).
    proximal_mu : float
        FedProx: after each step, pull the weights towards their values at the start of
        the call by ``lr * mu * (w - w0)`` (the gradient of ``mu/2 |w - w0|^2`` applied
        outside the per-sample gradients, so it works unchanged under DP-SGD).
    frozen : tuple of str
        Parameter-name prefixes (e.g. ``("stem.",)``) kept at their current values in this
        call: they get no gradient, no noise and no per-sample work.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3
    seed: int = 0
    progress: bool = True
    restore_best: bool = True
    proximal_mu: float = 0.0
    frozen: tuple[str, ...] = ()


@dataclass
class TrainResult:
    """What a training call did.

    Attributes
    ----------
    history : list of dict
        Per epoch: train loss, validation metrics.
    privacy : dict or None
        ε spent (cumulative), δ, noise multiplier, steps, and ``accountant`` — the
        history to pass to the next call.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    metrics: dict = field(default_factory=dict)
    privacy: dict | None = None
    steps: int = 0
    skipped_empty: int = 0


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss, normalised per sample then averaged.

    Normalising within each sample (not by the batch's peak count) keeps the loss a
    mean of per-sample terms, as DP-SGD's per-sample clipping requires.

    Cells whose target is negative (:data:`common.learning.samples.BAG`) form a sample's
    multiple-instance bag: no cell of it is a negative, and its most probable cell is
    taught as a peak (max-pooling MIL: the region holds at least one calcification).
    """
    p = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    bag = target.lt(-0.5)
    pos = target.ge(0.999).float()
    pos_term = -((1 - p) ** alpha) * torch.log(p) * pos
    weight = (1 - target.clamp(min=0.0)) ** beta
    neg_term = -weight * (p**alpha) * torch.log(1 - p) * (1 - pos) * (~bag).float()
    dims = tuple(range(1, logits.dim()))
    total = (pos_term + neg_term).sum(dim=dims)
    n_pos = pos.sum(dim=dims)
    if bool(bag.any()):
        has_bag = bag.flatten(1).any(dim=1)
        top = torch.sigmoid(logits.masked_fill(~bag, -1e4).flatten(1).amax(dim=1))
        top = top.clamp(1e-6, 1 - 1e-6)
        total = total - ((1 - top) ** alpha) * torch.log(top) * has_bag.float()
        n_pos = n_pos + has_bag.float()
    return (total / n_pos.clamp(min=1.0)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits, mean over the batch."""
    return F.binary_cross_entropy_with_logits(logits, target)


LOSSES = {"detector": focal_loss, "classifier": bce_loss}


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, task: str, batch_size: int = 64) -> dict:
    """Mean loss over ``data``; for the classifier also AUC (and its statistics)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    loss_fn = LOSSES[task]
    total, n = 0.0, 0
    scores, labels = [], []
    for x, y in DataLoader(data, batch_size=batch_size):
        out = model(x)
        total += loss_fn(out, y).item() * len(x)
        n += len(x)
        if task == "classifier":
            scores.append(torch.sigmoid(out).numpy())
            labels.append(y.numpy())
    model.train(was_training)
    result = {"loss": total / max(n, 1), "n": n}
    if task == "classifier" and n:
        s, y = np.concatenate(scores), np.concatenate(labels)
        stats = RocStats.from_scores(s, y)
        result["auc"] = stats.auc() if 0 < y.sum() < len(y) else float("nan")
    return result


def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    task: str,
    config: TrainConfig = TrainConfig(),
    dp: DPConfig | None = None,
    accountant: list | None = None,
    plan: DPPlan | None = None,
) -> TrainResult:
    """Train ``model`` in place (its best-validation weights are kept).

    Parameters
    ----------
    model : nn.Module
        Detector or classifier.
    train_set, val_set : Dataset
        (input, target) pairs; ``val_set`` drives early stopping (may be None).
    task : {"detector", "classifier"}
        Chooses the loss.
    config : TrainConfig
        Optimisation settings.
    dp : DPConfig, optional
        Enables DP-SGD (Poisson sampling, per-sample clipping, Gaussian noise).
    accountant : list, optional
        Accountant history from earlier calls (``result.privacy["accountant"]``).
    plan : DPPlan, optional
        The call's DP plan, made by :func:`plan_private` (with ``accountant``) and checked
        against the budget there; planned here when not given.

    Raises
    ------
    PrivacyBudgetError
        Before any step, if this call's planned steps would push ε past the budget.
    """
    if len(train_set) == 0:
        raise ValueError("no training samples")
    frozen = _freeze(model, config.frozen)
    try:
        return _train(model, train_set, val_set, task, config, dp, accountant, plan)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _freeze(model: nn.Module, prefixes: tuple[str, ...]) -> list[nn.Parameter]:
    """Stop gradients of the parameters named by ``prefixes``; return those it stopped."""
    if not prefixes:
        return []
    names = dict(model.named_parameters())
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(f"frozen: no parameter of the model starts with {prefix!r}")
    chosen = [p for n, p in names.items() if p.requires_grad and n.startswith(tuple(prefixes))]
    if len(chosen) == sum(p.requires_grad for p in names.values()):
        raise ValueError(f"frozen {list(prefixes)} leaves nothing to train")
    for p in chosen:
        p.requires_grad_(False)
    return chosen


def entropy_generator() -> torch.Generator:
    """Return a generator seeded from OS entropy (64 bits), unknown to anyone who knows the seed.

    DP noise and Poisson sampling come from such generators: a coordinator who picks every
    seed could otherwise replay the noise and subtract it from the update.
    """
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))


def _train(model, train_set, val_set, task, config, dp, accountant, plan) -> TrainResult:
    torch.manual_seed(config.seed)  # initialisation and augmentation stay reproducible
    if dp is None:
        generator = torch.Generator().manual_seed(config.seed)
        loader = DataLoader(
            train_set, batch_size=config.batch_size, shuffle=True, generator=generator
        )
    else:
        if plan is None:
            plan = plan_private(len(train_set), config, dp, accountant)
        # Opacus replaces this loader by Poisson sampling at 1 / len(loader), drawn from
        # its generator: never the seeded one
        batches = [[0]] * round(1 / plan.sample_rate)
        loader = DataLoader(train_set, batch_sampler=batches, generator=entropy_generator())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = LOSSES[task]
    privacy, engine = None, None
    if dp is not None:
        model, optimizer, loader, engine, privacy = _make_private(
            model, optimizer, loader, len(train_set), config, dp, accountant or [], plan
        )
    plain = unwrap(model)
    anchor = None
    if config.proximal_mu > 0:
        anchor = [p.detach().clone() for p in plain.parameters()]
    best_state, best_loss, best_epoch, stale = None, math.inf, 0, 0
    result = TrainResult()
    model.train()
    with Progress(disable=not config.progress, transient=True) as bar:
        for epoch in range(1, config.epochs + 1):
            task_id = bar.add_task(f"{task} epoch {epoch}/{config.epochs}", total=len(loader))
            total, n = 0.0, 0
            for x, y in loader:
                if len(x) == 0:
                    # Poisson sampling drew nobody: whether that happens does not depend on
                    # anyone's data, so skipping the step (unaccounted) releases nothing
                    result.skipped_empty += 1
                    bar.advance(task_id)
                    continue
                optimizer.zero_grad()
                loss = loss_fn(model(x), y)
                with warnings.catch_warnings():
                    # Opacus' hooks note that the input needs no gradient: expected
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    loss.backward()
                optimizer.step()
                if anchor is not None:
                    _proximal_pull(plain, anchor, config.lr * config.proximal_mu)
                result.steps += 1
                total += loss.item() * len(x)
                n += len(x)
                bar.advance(task_id)
            bar.remove_task(task_id)
            row = {"epoch": epoch, "train_loss": total / max(n, 1)}
            if val_set is not None and len(val_set):
                val = evaluate(plain, val_set, task)
                row.update({f"val_{k}": v for k, v in val.items()})
                improved = val["loss"] < best_loss - 1e-6
            else:
                improved = row["train_loss"] < best_loss - 1e-6
            if improved:
                best_loss = row.get("val_loss", row["train_loss"])
                best_state, best_epoch, stale = copy.deepcopy(plain.state_dict()), epoch, 0
            else:
                stale += 1
            result.history.append(row)
            logger.debug("%s epoch %d: %s", task, epoch, row)
            if config.patience and stale >= config.patience:
                break
    if best_state is not None and config.restore_best:
        plain.load_state_dict(best_state)
    elif not config.restore_best:
        best_epoch = len(result.history)
    result.best_epoch = best_epoch
    result.metrics = dict(result.history[best_epoch - 1]) if best_epoch else {}
    if engine is not None:
        # unhook so the same module can be trained (and wrapped) again next round
        model._close()
        if isinstance(model._module, PerSampleGradients):
            model._module.remove_hooks()
        history = [tuple(h) for h in engine.accountant.history]
        privacy["accountant"] = [list(h) for h in history]
        privacy["epsilon"] = epsilon(history, privacy["delta"])
        privacy["steps"] = result.steps
        result.privacy = privacy
    return result


@torch.no_grad()
def _proximal_pull(model: nn.Module, anchor: list[torch.Tensor], rate: float) -> None:
    for p, p0 in zip(model.parameters(), anchor, strict=True):
        p.sub_(rate * (p - p0))


@dataclass(frozen=True)
class DPPlan:
    """What a DP training call will spend: its noise, sampling and steps."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon_before: float
    epsilon_after: float


def plan_private(
    n: int,
    config: TrainConfig,
    dp: DPConfig,
    history: list | None = None,
    horizon_calls: int = 1,
) -> DPPlan:
    """Plan a DP-SGD call on ``n`` examples without training; refuse it if over budget.

    Parameters
    ----------
    n : int
        Training examples.
    config : TrainConfig
        Its epochs and batch size set the steps.
    dp : DPConfig
        Noise (or target ε), δ and budget.
    history : list, optional
        Accountant history of earlier calls.
    horizon_calls : int
        With a target ε: calibrate the noise so that this many equal calls (this one
        included) end at the target (a federation's remaining rounds).

    Raises
    ------
    PrivacyBudgetError
        If the call would push cumulative ε past ``dp.budget_epsilon``.
    """
    history = [tuple(h) for h in history or []]
    # Opacus' Poisson loader samples each example with rate 1/len(loader) and draws
    # len(loader) batches per epoch: account with exactly those. The batches follow the
    # power of two below n, so that ε (under a coordinator's noise and batch size) says
    # no more about n than the counts a hospital reports
    batches = max(1, math.ceil(public_size(n) / config.batch_size))
    sample_rate = 1.0 / batches
    steps = config.epochs * batches
    delta = dp.delta_for(n)
    noise = dp.noise_multiplier
    if noise is None:
        noise = noise_for_target(
            history, sample_rate, steps * max(1, horizon_calls), delta, dp.target_epsilon
        )
    before = epsilon(history, delta)
    after = epsilon(with_steps(history, noise, sample_rate, steps), delta)
    if dp.budget_epsilon is not None and after > dp.budget_epsilon:
        fit = allowed_steps(history, noise, sample_rate, delta, dp.budget_epsilon)
        raise PrivacyBudgetError(before, after, dp.budget_epsilon, fit)
    return DPPlan(noise, sample_rate, steps, delta, before, after)


def _make_private(model, optimizer, loader, n, config, dp: DPConfig, history, plan=None):
    from opacus import PrivacyEngine

    if plan is None:
        plan = plan_private(n, config, dp, history)
    if abs(plan.sample_rate - 1.0 / len(loader)) > 1e-12:
        raise RuntimeError("DP plan and data loader disagree on the batches per epoch")
    noise, sample_rate, steps, delta = (
        plan.noise_multiplier,
        plan.sample_rate,
        plan.steps,
        plan.delta,
    )
    with warnings.catch_warnings():
        # the insecure-RNG notice is the documented meaning of secure_mode=False
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp", secure_mode=dp.secure_mode)
    fast = dp.per_sample == "fast"
    model, optimizer, loader = engine.make_private(
        module=PerSampleGradients(model) if fast else model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        grad_sample_mode="no_op" if fast else "hooks",
        noise_generator=None if dp.secure_mode else entropy_generator(),
    )
    # Opacus' noise robust to floating-point attacks (a sum of Gaussians), from our generator
    optimizer.secure_mode = True
    engine.accountant.history = [tuple(h) for h in history]  # ε accumulates over calls
    info = {
        "delta": delta,
        "noise_multiplier": noise,
        "sample_rate": sample_rate,
        "max_grad_norm": dp.max_grad_norm,
        "planned_steps": steps,
    }
    return model, optimizer, loader, engine, info

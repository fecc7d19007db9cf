"""Model benchmark: centralised cascade quality and time, DP cost, inference speed.

Usage: python bench/bench_models.py [--data DIR ...] [--skip-dp] [--skip-train]
                                    [--cascade-only]

Prints, from one run on this machine:
- training time and held-out metrics of the centralised cascade on the default synthetic
  consortium (3 hospitals x 40 exams, seed 1): cluster sensitivity at 1 FP/image and
  malignancy AUC (targets >= 0.85, training <= 15 min);
- the same with DP-SGD at ε = 8, δ = 1e-5 (target: AUC within 0.07 of non-DP);
- DP-SGD step time / plain step time on the detector (target <= 1.3): Opacus hooks,
  functorch, and the one-pass per-sample gradients training uses (common/learning/persample.py),
  with a hand-written clip + noise; then whole steps of common.learning.training.train (Opacus
  DPOptimizer, Poisson loader) with one-pass and with Opacus hooks, and as DP training
  runs the detector (stem frozen) against plain training with and without that stem;
- seconds for the cascade on one full-field image (2400 x 3000 at 0.1 mm), CC and MLO
  (target <= 1.0 s on 2 cores), and how much of it the detector's sliding window takes
  with its inference path (:meth:`Detector.infer`) and with the training forward pass,
  and the classifier on the clusters found, with :meth:`Classifier.infer` and forward.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.evaluation.images import EvalStats, evaluate_images
from common.learning.dp import DPConfig
from common.learning.inference import CascadeConfig, run_cascade
from common.learning.models import Detector, load_run
from common.learning.persample import PerSampleGradients
from common.learning.samples import ImageStore
from common.learning.training import focal_loss
from common.synth.generate import SynthConfig, synthesize
from simulations.central import CentralConfig, train_central


def held_out(
    sites,
    run_dir: Path,
    cache: Path,
    options=None,
    split: str | None = "test",
    mark_threshold: float | None = None,
) -> dict:
    """Pooled held-out metrics of a run folder, at the run's own operating point.

    ``split`` None scores every image of the sites (sites never trained on);
    ``mark_threshold`` replaces the run's operating point.
    """
    models, read, cascade, _ = load_run(run_dir)
    if mark_threshold is not None:
        cascade = replace(cascade, mark_threshold=mark_threshold)
    store = ImageStore(PreprocessCache(cache, options or read))
    total = EvalStats()
    for site in sites:
        images = load_hospital(site, echo=False).images
        test = [im for im in images if split is None or im.split == split]
        stats, _ = evaluate_images(models, test, store, cascade)
        total = total + stats
    return total.summary(mark_threshold=cascade.mark_threshold)


def step_ratio(batch: int = 32, patch: int = 96, rounds: int = 12) -> dict:
    """Median seconds per detector step: plain, Opacus hooks, functorch and one-pass.

    The variants are timed in turn, one step each per round, so that each sees the same
    machine state (on 2 shared cores a variant timed alone in its own minute drifted by
    up to 20 % between runs).
    """
    from opacus import GradSampleModule

    torch.manual_seed(0)
    x = torch.rand(batch, 1, patch, patch)
    y = torch.zeros(batch, 1, patch // 2, patch // 2)
    y[:, :, 10, 10] = 1.0

    def stepper(model, per_sample: bool):
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def step() -> float:
            t = time.perf_counter()
            opt.zero_grad()
            focal_loss(model(x), y).backward()
            if per_sample:  # clip + noise as DPOptimizer does
                norms = torch.stack(
                    [p.grad_sample.flatten(1).norm(dim=1) for p in model.parameters()]
                ).norm(dim=0)
                scale = (1.0 / (norms + 1e-6)).clamp(max=1.0)
                for p in model.parameters():
                    g = torch.einsum("i,i...->...", scale, p.grad_sample)
                    p.grad = g + torch.randn_like(g) / batch
                    p.grad_sample = None
            opt.step()
            return time.perf_counter() - t

        return step

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = {
            "plain": stepper(Detector(), False),
            "hooks": stepper(GradSampleModule(Detector()), True),
            "functorch": stepper(GradSampleModule(Detector(), force_functorch=True), True),
            "fast": stepper(PerSampleGradients(Detector()), True),  # what training uses
        }
        times = {name: [] for name in steps}
        for r in range(rounds + 2):
            for name, step in steps.items():
                elapsed = step()
                if r >= 2:  # two warm-up rounds
                    times[name].append(elapsed)
    out = {f"{name}_s": float(np.median(t)) for name, t in times.items()}
    for name in ("hooks", "functorch", "fast"):
        out[f"{name}_ratio"] = out[f"{name}_s"] / out["plain_s"]
    return out


def train_step_ratio(n: int = 1024, patch: int = 96) -> dict:
    """Seconds per step of ``common.learning.training.train`` on the detector, plain and DP.

    Two epochs of 32 steps, so the per-call set-up (Opacus wrappers, ε at the end) is
    counted but spread as in real training calls; each mode's figure is the mean of two
    calls made in turn with the others. Modes: ``plain``, ``fast`` (one-pass per-sample
    gradients), ``opacus`` (Opacus hooks), all training every weight; ``fast-stem`` and
    ``plain-stem`` with the stem frozen as DP training does (``DP_FROZEN_DETECTOR``).
    """
    from dataclasses import replace

    from torch.utils.data import TensorDataset

    from common.learning.dp import DPConfig
    from common.learning.recipes import DP_FROZEN_DETECTOR
    from common.learning.training import TrainConfig, train

    torch.manual_seed(0)
    y = torch.zeros(n, 1, patch // 2, patch // 2)
    y[:, :, 10, 10] = 1.0
    data = TensorDataset(torch.rand(n, 1, patch, patch), y)
    config = TrainConfig(epochs=2, batch_size=32, patience=0, progress=False)
    times = {"plain": [], "fast": [], "opacus": [], "fast-stem": [], "plain-stem": []}
    # a warm-up call, then the modes in turn, twice: each sees the same machine state
    for mode in ["plain"] + list(times) * 2:
        per_sample = mode.removesuffix("-stem")
        dp = (
            None
            if per_sample == "plain"
            else DPConfig(noise_multiplier=1.0, delta=1e-5, per_sample=per_sample)
        )
        frozen = DP_FROZEN_DETECTOR if mode.endswith("-stem") else ()
        t = time.perf_counter()
        result = train(Detector(), data, None, "detector", replace(config, frozen=frozen), dp=dp)
        times[mode].append((time.perf_counter() - t) / result.steps)
    return {mode: float(np.mean(t[-2:])) for mode, t in times.items()}


def cascade_time(tmp: Path, repeats: int = 3) -> dict:
    """Median seconds of the cascade on full-field CC and MLO images (untrained weights).

    The detector's sliding window (at ``auto``, float32 and bfloat16) and the classifier
    are timed with their ``infer`` and with the plain ``forward`` in turn, ``repeats``
    times each, so all see the same machine state.
    """
    from common.imaging.breast import search_region
    from common.imaging.reading import read_mammogram
    from common.imaging.writing import mammogram_dataset, save
    from common.learning.inference import classify, heatmap
    from common.learning.models import Classifier, inference_dtype
    from common.synth.phantom import render_breast

    class Forward(torch.nn.Module):
        """A model without its inference path: the cascade calls forward."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.config = model, model.config

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    torch.manual_seed(0)
    detector, classifier = Detector().eval(), Classifier().eval()
    config = CascadeConfig(precision="auto")
    out = {}
    for view in ("CC", "MLO"):
        phantom = render_breast((3000, 2400), view, 2, np.random.default_rng(0))
        stored = (np.clip(phantom.attenuation, 0, 1) * 4000).astype(np.uint16)
        ds = mammogram_dataset(stored, view=view, WindowCenter=2000, WindowWidth=4000)
        image = read_mammogram(save(ds, tmp / f"full-{view}.dcm"))
        region = search_region(image.pixels, image.mask, image.view)
        times: dict[str, list[float]] = {
            "cascade": [],
            "cascade-float32": [],
            "window": [],
            "window-float32": [],
            "window-bfloat16": [],
            "window-forward": [],
            "classify": [],
            "classify-forward": [],
        }
        exact = replace(config, precision="float32")
        rounded = replace(config, precision="bfloat16")
        for _ in range(repeats):
            for name, cfg in (("cascade", config), ("cascade-float32", exact)):
                t = time.perf_counter()
                result = run_cascade({"detector": detector, "classifier": classifier}, image, cfg)
                times[name].append(time.perf_counter() - t)
            for name, model, cfg in (
                ("window", detector, config),
                ("window-float32", detector, exact),
                ("window-bfloat16", detector, rounded),
                ("window-forward", Forward(detector), exact),
            ):
                t = time.perf_counter()
                heatmap(model, image.pixels, image.bbox, cfg, region)
                times[name].append(time.perf_counter() - t)
            centres = [c.centre for c in result.clusters]
            for name, model in (
                ("classify", classifier),
                ("classify-forward", Forward(classifier)),
            ):
                t = time.perf_counter()
                classify(model, image.pixels, centres, config.tta)
                times[name].append(time.perf_counter() - t)
        med = {k: float(np.median(v)) for k, v in times.items()}
        out[view] = med
        print(
            f"cascade on one {image.pixels.shape[1]}x{image.pixels.shape[0]} {view} image: "
            f"{med['cascade']:.2f} s at precision {config.precision} "
            f"({inference_dtype(config.precision)}; target <= 1.0), "
            f"{med['cascade-float32']:.2f} s in float32 ({len(result.points)} points, "
            f"untrained weights); its sliding window {med['window']:.2f} s, "
            f"{med['window-float32']:.2f} s in float32 and {med['window-bfloat16']:.2f} s in "
            f"bfloat16 with the inference path, {med['window-forward']:.2f} s with forward "
            f"(ratios {med['window-float32'] / med['window-forward']:.2f} and "
            f"{med['window-bfloat16'] / med['window-forward']:.2f}); the classifier on its "
            f"{len(result.clusters)} clusters x 8 views {med['classify']:.2f} s, "
            f"{med['classify-forward']:.2f} s with forward; medians of {repeats}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", type=Path)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-dp", action="store_true")
    parser.add_argument("--cascade-only", action="store_true", help="only time the cascade")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        if not args.skip_train and not args.cascade_only:
            sites = args.data or synthesize(
                tmp / "data", SynthConfig(hospitals=3, exams=40, seed=1), progress=False
            )
            runs = {"plain": None}
            if not args.skip_dp:
                runs["dp eps=8"] = DPConfig(target_epsilon=8.0, delta=1e-5)
            results = {}
            for name, dp in runs.items():
                t = time.perf_counter()
                train_central(sites, tmp / name, CentralConfig(dp=dp, cache_dir=cache))
                minutes = (time.perf_counter() - t) / 60
                s = held_out(sites, tmp / name, cache)
                results[name] = s
                print(
                    f"[{name}] training {minutes:.1f} min (target <= 15); held-out: "
                    f"cluster sens@1FP {s['detection']['sens@1fp']:.3f} (target >= 0.85), "
                    f"mean FROC sens {s['detection']['mean_sensitivity']:.3f}; malignancy AUC "
                    f"clusters {s['classification']['auc']:.3f} "
                    f"[{s['classification']['auc_ci95'][0]:.3f}, "
                    f"{s['classification']['auc_ci95'][1]:.3f}], breasts "
                    f"{s['breast']['auc']:.3f} (target >= 0.85)"
                )
            if "dp eps=8" in results:
                for level in ("classification", "breast"):
                    gap = results["plain"][level]["auc"] - results["dp eps=8"][level]["auc"]
                    print(f"DP AUC gap ({level}): {gap:+.3f} (target <= 0.07)")
        if args.cascade_only:
            cascade_time(tmp)
            return
        r = step_ratio()
        print(
            f"detector step: plain {r['plain_s'] * 1000:.0f} ms; DP hooks "
            f"{r['hooks_s'] * 1000:.0f} ms (ratio {r['hooks_ratio']:.2f}); DP functorch "
            f"{r['functorch_s'] * 1000:.0f} ms (ratio {r['functorch_ratio']:.2f}); DP "
            f"one-pass per-sample gradients {r['fast_s'] * 1000:.0f} ms (ratio "
            f"{r['fast_ratio']:.2f}); target <= 1.3"
        )
        t = train_step_ratio()
        print(
            f"detector train() per step, Opacus DPOptimizer and Poisson loader included: "
            f"plain {t['plain'] * 1000:.0f} ms, DP (one-pass) {t['fast'] * 1000:.0f} ms "
            f"(ratio {t['fast'] / t['plain']:.2f}), DP (Opacus hooks) {t['opacus'] * 1000:.0f}"
            f" ms (ratio {t['opacus'] / t['plain']:.2f}); target <= 1.3"
        )
        print(
            f"detector train() per step as DP training runs it (stem frozen, one-pass): "
            f"{t['fast-stem'] * 1000:.0f} ms, ratio {t['fast-stem'] / t['plain']:.2f} to plain "
            f"training of every weight; {t['fast-stem'] / t['plain-stem']:.2f} to plain "
            f"training with the same stem frozen ({t['plain-stem'] * 1000:.0f} ms)"
        )
        cascade_time(tmp)


if __name__ == "__main__":
    main()

"""Split-plot OR test: its type I error under the null, by readers per hospital.

Simulates a consortium whose hospitals each have their own readers reading their own
cases under two modalities of equal accuracy (a Roe–Metz-like latent model: case,
reader, reader × modality, modality × case and error effects), runs
:func:`common.study.mrmc.split_plot` on the jackknife covariances, and prints the
share of P < 0.05 (should be near 0.05) and the power at a modality effect.

    python bench/bench_mrmc.py [--trials 400] [--cases 40] [--seed 1]
"""

from __future__ import annotations

import argparse

import numpy as np

from common.study.fom import auc_covariances
from common.study.mrmc import split_plot

DESIGNS = ([1, 1, 1, 1, 1, 1], [2, 2, 2], [3, 3], [1, 2, 3, 2], [6])


def trial(rng: np.random.Generator, sizes: list[int], cases: int, delta: float) -> float:
    """P-value of one simulated split-plot study."""
    thetas, blocks, groups = [], [], []
    for g, readers in enumerate(sizes):
        truth = np.arange(cases) < cases // 2
        case = rng.normal(size=cases)
        reader = rng.normal(0, 0.3, (1, readers, 1)) + rng.normal(0, 0.2, (2, readers, 1))
        case_mod = rng.normal(0, 0.6, (2, 1, cases))
        shift = 1.0 + reader + np.array([0.0, delta])[:, None, None]
        x = truth * shift + case + case_mod + rng.normal(0, 0.7, (2, readers, cases))
        theta, covs = auc_covariances(x.reshape(2 * readers, -1), truth)
        thetas.append(theta.reshape(2, readers))
        blocks.append(covs["jackknife"])
        groups += [g] * readers
    theta = np.concatenate(thetas, axis=1)
    r = theta.shape[1]
    full, start = np.zeros((2 * r, 2 * r)), 0
    for th, cov in zip(thetas, blocks, strict=True):
        rg = th.shape[1]
        idx = np.array([i * r + start + j for i in range(2) for j in range(rg)])
        full[np.ix_(idx, idx)] = cov
        start += rg
    return split_plot(theta, full, np.array(groups))["split_plot_jackknife.p"]


def main() -> None:
    """Print the rejection rates under the null and under an effect."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--cases", type=int, default=40, help="per hospital")
    parser.add_argument("--effect", type=float, default=0.5, help="latent shift (modality 2)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.trials} trials, {args.cases} cases per hospital (half abnormal)")
    print("readers per hospital   P<0.05 under the null (SE)   power at the effect")
    for sizes in DESIGNS:
        null = np.array([trial(rng, sizes, args.cases, 0.0) for _ in range(args.trials)])
        alt = np.array([trial(rng, sizes, args.cases, args.effect) for _ in range(args.trials)])
        size = (null < 0.05).mean()
        se = np.sqrt(0.05 * 0.95 / args.trials)
        print(f"{str(sizes):22s} {size:.3f} ({se:.3f}){'':17s} {(alt < 0.05).mean():.3f}")


if __name__ == "__main__":
    main()

"""Reader-study benchmark: a large simulated multicentre study, pooled from summed statistics.

Draws breasts like the synthetic generator (finding rate, malignant share, subtlety and
density mixes), lets the default simulated readers read each one alone and aided, adds a
binormal model score, and runs the study per hospital and pooled. Prints the structure the
paper reports (miss rates and sensitivity alone vs aided, senior vs junior), how long the
statistics take, how many bytes each hospital sends, and that the pooled table equals the
table of the union of the cases.

    python bench/bench_reader_study.py [--hospitals 4] [--breasts 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.stats import norm

from common.data.records import ReaderRead
from common.evaluation.images import BreastScore
from common.study.arms import Case, StudyConfig, StudyStats, study_stats
from common.synth.readers import DEFAULT_CAD, DEFAULT_READERS, read_breast


def simulate_site(h: int, breasts: int, seed: int, model_d: float = 2.2) -> dict:
    """One hospital's cases, with reads and a model score."""
    rng = np.random.default_rng([seed, h])
    density_mix = rng.dirichlet(np.array([1.5, 3.0, 3.0, 1.5]) * 2)
    finding_rate, malignant_share = rng.uniform(0.35, 0.55), rng.uniform(0.3, 0.6)
    cases = {}
    for b in range(breasts):
        density = int(rng.choice([1, 2, 3, 4], p=density_mix))
        truth, subtlety = "normal", None
        if rng.uniform() < finding_rate:
            truth = "malignant" if rng.uniform() < malignant_share else "benign"
            subtlety = int(rng.choice([1, 2, 3, 4, 5], p=[0.08, 0.15, 0.3, 0.25, 0.22]))
        case = Case(
            truth,
            {
                "pathology": truth,
                "density": "ABCD"[density - 1],
                "calc_type": "none" if truth == "normal" else "unknown",
            },
        )
        for reader in DEFAULT_READERS:
            alone, aided = read_breast(reader, truth, subtlety, density, rng, DEFAULT_CAD)
            for flag, (birads, suspicion) in ((False, alone), (True, aided)):
                case.reads[(reader.reader_id, flag)] = ReaderRead(
                    f"p{h}-{b}",
                    f"p{h}-{b}",
                    "L",
                    reader.reader_id,
                    reader.role,
                    birads,
                    suspicion,
                    flag,
                )
        shift = {"normal": 0.0, "benign": 0.6, "malignant": model_d}[truth]
        score = float(norm.cdf(shift + rng.standard_normal() - model_d / 2))
        case.model = BreastScore(
            score, float(truth != "normal") * rng.uniform(0.4, 1.0), truth == "malignant"
        )
        cases[(f"p{h}-{b}", f"p{h}-{b}", "L")] = case
    return cases


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hospitals", type=int, default=4)
    parser.add_argument("--breasts", type=int, default=600, help="per hospital")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = StudyConfig(model_threshold=0.5)
    sites = [simulate_site(h, args.breasts, args.seed) for h in range(args.hospitals)]
    t0 = time.perf_counter()
    per_site = [study_stats(cases, config, 0.5) for cases in sites]
    site_seconds = (time.perf_counter() - t0) / len(sites)
    payloads = [json.dumps(s.to_dict()) for s in per_site]
    t0 = time.perf_counter()
    pooled = StudyStats.from_dict(json.loads(payloads[0]))
    for text in payloads[1:]:
        pooled = pooled + StudyStats.from_dict(json.loads(text))
    summary = pooled.summary()
    pool_seconds = time.perf_counter() - t0
    union = {}
    for i, cases in enumerate(sites):
        union.update({(i, *k): c for k, c in cases.items()})
    central = study_stats(union, config, 0.5).summary()
    same = json.dumps(summary, sort_keys=True) == json.dumps(central, sort_keys=True)

    everyone = summary["all"]
    print(f"{len(union)} breasts at {len(sites)} hospitals: {everyone['classes']}")
    print(
        f"statistics per hospital: {site_seconds:.2f} s; JSON sent per hospital: "
        f"{np.mean([len(p) for p in payloads]) / 1e3:.0f} kB; pooling: {pool_seconds:.2f} s"
    )
    print(f"pooled == union of cases (exactly, serialised): {same}")
    print("\narm                         miss rate  sensitivity  specificity  det. miss  AUC")
    for name, arm in everyone["arms"].items():
        print(
            f"{name:27s} {arm['miss_rate']['value']:9.3f} {arm['sensitivity']['value']:12.3f} "
            f"{arm['specificity']['value']:12.3f} {arm['detection_miss_rate']['value']:10.3f}"
            f" {arm['auc']['value']:6.3f}"
        )
    print("\ncomparison (A - B)                               Δmiss    P      Δdet.miss(benign) P")
    benign = summary.get("pathology=benign", {"comparisons": {}})["comparisons"]
    for name, c in everyone["comparisons"].items():
        b = benign.get(name, {}).get(
            "detection_miss_rate", {"difference": float("nan"), "p": float("nan")}
        )
        print(
            f"{name:48s} {c['miss_rate']['difference']:+.3f} {c['miss_rate']['p']:.1e} "
            f"{b['difference']:+.3f} {b['p']:.1e}"
        )


if __name__ == "__main__":
    main()

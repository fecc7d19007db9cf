"""Whether the detector's output depends on how its windows are batched, per precision.

Usage: python bench/bench_precision.py [--windows 8] [--size 160] [--seed 0]

A detector with random weights (``N(0, 0.2)``, so that every layer's rounding shows)
reads the same windows once as one batch and once one window at a time, with one and
with two threads, in float32 and in bfloat16. It prints the largest difference of the
heatmap logits for each case. Pooled evaluation in the simulation equals
evaluation of the union only where the output does not depend on the batch.
"""

from __future__ import annotations

import argparse

import torch

from common.learning.models import Detector, DetectorConfig


def main() -> None:
    """Print the batch and thread dependence of the detector's output per precision."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    detector = Detector(DetectorConfig()).eval()
    with torch.no_grad():
        for p in detector.parameters():
            p.normal_(0, 0.2)
        x = torch.rand(args.windows, 1, args.size, args.size)
        whole: dict = {}
        print("threads  precision  batch of all vs one at a time (max |diff|)")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for dtype in (torch.float32, torch.bfloat16):
                full = detector.infer(x, dtype)
                single = torch.cat([detector.infer(x[i : i + 1], dtype) for i in range(len(x))])
                whole[(threads, dtype)] = full
                diff = float((full - single).abs().max())
                print(f"{threads:>7}  {str(dtype)[6:]:>9}  {diff:.2e}")
        print("precision  1 vs 2 threads, whole batch (max |diff|)")
        for dtype in (torch.float32, torch.bfloat16):
            diff = float((whole[(1, dtype)] - whole[(2, dtype)]).abs().max())
            print(f"{str(dtype)[6:]:>9}  {diff:.2e}")


if __name__ == "__main__":
    main()

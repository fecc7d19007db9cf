"""DICOM ingest benchmark: read+normalise throughput vs raw pydicom, and the cache speed-up.

Usage: python bench/bench_dicom.py [--data DIR ...] [--size small|medium|full] [--repeat N]

Without --data it writes a synthetic consortium (one hospital per vendor) to a temporary
folder. Prints, from one run: images/s of ``pydicom.dcmread(path).pixel_array`` and of
``read_mammogram(path)`` on the same files (overall and per vendor), their ratio
(target >= 0.8), the time ``breast_mask`` takes on each canonical image (its share of
reading), and the time of an epoch read through a warm ``PreprocessCache`` against
re-decoding every file (target speed-up >= 10).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pydicom

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.imaging.breast import breast_mask
from common.imaging.reading import read_mammogram
from common.synth.generate import SynthConfig, synthesize


def _time(fn, paths, repeat: int) -> float:
    """Best-of-``repeat`` seconds for one pass of ``fn`` over ``paths``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, time.perf_counter() - t)
    return best


def _raw(path: Path) -> None:
    pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is the work measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", type=Path, help="hospital folders")
    parser.add_argument("--size", default="medium", choices=("small", "medium", "full"))
    parser.add_argument("--exams", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sites = args.data
        if not sites:
            print(f"writing synthetic data ({args.size}, 4 vendors, {args.exams} exams each)...")
            sites = synthesize(
                Path(tmp) / "data",
                SynthConfig(hospitals=4, exams=args.exams, seed=3, size=args.size),
                progress=False,
            )
        groups: dict[str, list[Path]] = defaultdict(list)
        for site in sites:
            for im in load_hospital(site, echo=False).images:
                ds = pydicom.dcmread(im.path, stop_before_pixels=True)
                label = (
                    f"{ds.get('Manufacturer', '?')} ({ds.BitsStored}-bit, "
                    f"{ds.file_meta.TransferSyntaxUID.name.split(' (')[0]})"
                )
                groups[label].append(im.path)
        paths = [p for group in groups.values() for p in group]
        shape = pydicom.dcmread(paths[0]).pixel_array.shape
        print(f"{len(paths)} files, first is {shape[0]}x{shape[1]}")

        print(f"\nread + normalise vs raw pydicom decode (images/s, best of {args.repeat}):")
        rows = []
        for label, group in sorted(groups.items()):
            raw = _time(_raw, group, args.repeat)
            ours = _time(read_mammogram, group, args.repeat)
            rows.append((label, len(group), len(group) / raw, len(group) / ours, raw / ours))
        raw_all = _time(_raw, paths, args.repeat)
        ours_all = _time(read_mammogram, paths, args.repeat)
        rows.append(
            ("ALL", len(paths), len(paths) / raw_all, len(paths) / ours_all, raw_all / ours_all)
        )
        print(f"  {'files':<52} {'n':>4} {'raw/s':>8} {'ours/s':>8} {'ratio':>6}")
        for label, n, r, o, ratio in rows:
            print(f"  {label:<52} {n:>4} {r:>8.1f} {o:>8.1f} {ratio:>6.2f}")
        print(
            f"throughput ratio (ours / raw), all files: {raw_all / ours_all:.2f}  (target >= 0.8)"
        )

        images = [read_mammogram(p) for p in paths]
        masks = []
        for m in images:
            best = float("inf")
            for _ in range(args.repeat):
                t = time.perf_counter()
                breast_mask(m.pixels, spacing_mm=m.spacing_mm[0])
                best = min(best, time.perf_counter() - t)
            masks.append(best)
        rows, cols = images[0].pixels.shape
        median = statistics.median(masks)
        print(
            f"breast_mask per canonical image ({rows}x{cols} first): median "
            f"{median * 1000:.1f} ms, max {max(masks) * 1000:.1f} ms; "
            f"{median * len(paths) / ours_all:.0%} of reading"
        )

        cache = PreprocessCache(Path(tmp) / "cache")
        for p in paths:  # fill
            cache.load(p)
        warm = [_time(cache.load, paths, 1) for _ in range(args.repeat)]
        decode = ours_all
        speedup = decode / min(warm)
        print(
            f"\nepoch re-decoding: {decode:.3f} s; epoch from warm cache: {min(warm):.3f} s "
            f"(median {statistics.median(warm):.3f} s)"
        )
        print(f"cached-epoch speed-up: {speedup:.1f}x  (target >= 10)")


if __name__ == "__main__":
    main()

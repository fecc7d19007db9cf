"""Baselines every federated result is compared with: centralised and local-only.

- **centralised**: one model trained on all hospitals' training data pooled (what the
  federation would reach if the data could move), same total epochs as the federation
  (rounds × local epochs);
- **local-only**: each hospital trains alone on its own data, same epochs.

Every model is evaluated on every hospital's held-out images with the same cascade and
statistics as the federation, so the per-hospital table compares like with like.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from common.data.cache import PreprocessCache
from common.data.records import ImageRecord
from common.evaluation.images import EvalStats, evaluate_images
from common.hospital.service import Hospital
from common.hospital.settings import NodeSettings
from common.imaging.reading import ReadOptions
from common.learning.models import load_run
from common.learning.recipes import dp_config, local_train_configs
from common.learning.samples import ImageStore
from server.settings import RunSettings
from simulations.central import CentralConfig, train_central

logger = logging.getLogger("calcifl")


def site_splits(node_configs: list[dict], seed: int) -> dict[str, tuple[list, list]]:
    """Each simulated hospital's (training, held-out) images, as its client sees them."""
    out = {}
    for config in node_configs:
        hospital = Hospital.from_config(config)
        records = hospital.records(seed)
        out[hospital.name] = (records.train, records.test)
    return out


def hospitals_reading(read: ReadOptions, node_configs: list[dict]) -> ReadOptions:
    """Return ``read`` as the simulated hospitals read their files (fallback spacing, ...).

    Pooled baselines read every hospital's images with one set of options, so the
    hospitals must agree on them (a simulation gives all of them the same).
    """
    readings = {NodeSettings.from_config(node).reading(read) for node in node_configs}
    if len(readings) > 1:
        raise ValueError("the hospitals read their files differently; a pooled baseline cannot")
    return readings.pop() if readings else read


def central_config(settings: RunSettings, cache_dir: Path | None, progress: bool) -> CentralConfig:
    """Training settings matching a federated run's total epochs and optimiser.

    The same recipe as a hospital's round (:func:`~common.learning.recipes.local_train_configs`)
    over all rounds' epochs; the pooled model ends at its best validation epoch.
    """
    spec = settings.model_spec()
    configs = local_train_configs(
        settings,
        spec.classifier.arch,
        settings.seed,
        rounds=settings.num_server_rounds,
        progress=progress,
        restore_best=True,
    )
    det, cls = configs["detector"], configs["classifier"]
    return CentralConfig(
        detector=spec.detector,
        classifier=spec.classifier,
        detector_train=det,
        classifier_train=cls,
        dp_classifier_train=cls,
        dp_detector_train=det,
        read=spec.read,
        cascade=spec.cascade,
        dp=dp_config(settings),
        val_fraction=settings.val_fraction,
        seed=settings.seed,
        cache_dir=cache_dir,
        weak_targets=settings.weak_targets,
    )


def evaluate_sites(
    model_dir: Path,
    splits: dict[str, tuple[list, list]],
    cache_dir: Path | None,
    only: str | None = None,
) -> dict[str, EvalStats]:
    """Statistics of a saved model on each hospital's held-out images."""
    models, read, cascade, _ = load_run(model_dir)
    store = ImageStore(PreprocessCache(cache_dir, read))
    out = {}
    for site, (_, test) in splits.items():
        if only is not None and site != only:
            continue
        out[site] = evaluate_images(models, test, store, cascade)[0] if test else EvalStats()
    return out


def run_baselines(
    settings: RunSettings,
    node_configs: list[dict],
    out_dir: Path,
    which: tuple[str, ...] = ("centralised", "local-only"),
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Train and evaluate the baselines; return per-site statistics and timings."""
    splits = site_splits(node_configs, settings.seed)
    config = central_config(settings, cache_dir, progress)
    config = replace(config, read=hospitals_reading(config.read, node_configs))
    results: dict = {}
    if "centralised" in which:
        pooled: list[ImageRecord] = [im for train, _ in splits.values() for im in train]
        t0 = time.perf_counter()
        summary = train_central([], out_dir / "centralised", config, records=pooled)
        seconds = time.perf_counter() - t0
        stats = evaluate_sites(out_dir / "centralised", splits, cache_dir)
        results["centralised"] = {
            "train_seconds": round(seconds, 1),
            "train": summary,
            "per_site": stats,
        }
        logger.info("centralised baseline trained in %.0f s", seconds)
    if "local-only" in which:
        per_site, seconds = {}, {}
        for site, (train, _) in splits.items():
            t0 = time.perf_counter()
            try:
                train_central([], out_dir / "local-only" / site, config, records=train)
            except ValueError as exc:  # e.g. a site with no clusters to train a classifier
                logger.warning("local-only baseline of %s not trained: %s", site, exc)
                continue
            seconds[site] = round(time.perf_counter() - t0, 1)
            per_site.update(
                evaluate_sites(out_dir / "local-only" / site, splits, cache_dir, only=site)
            )
        results["local-only"] = {"train_seconds": seconds, "per_site": per_site}
    return results

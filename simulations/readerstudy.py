"""``calcifl reader-study``: a trained model and the hospitals' readers, on one machine.

Each hospital folder is one site: its held-out breasts are the study's cases, its
validation patients (held out from training) choose the model's operating point. The
pooled table is the sum of the sites' statistics — the same computation the federated
study runs, with the same release policy.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from common.evaluation.metrics import RocStats
from common.federation.protocol import Refusal
from common.hospital.service import Hospital, stored_spacing
from common.hospital.settings import NodeSettings
from common.imaging.reading import ReadOptions
from common.learning.material import validation_split
from common.learning.models import load_run
from common.study.arms import StudyConfig, model_threshold
from common.study.local import breast_scores, scores_roc
from common.study.report import study_result, study_setup, write_study

logger = logging.getLogger("calcifl")


def run_reader_study(
    model_dir: Path,
    data_dirs: list[Path],
    out_dir: Path,
    config: StudyConfig | None = None,
    cache_dir: Path | None = None,
    test_fraction: float = 0.25,
    seed: int | None = None,
    val_fraction: float | None = None,
    progress: bool = True,
    read: ReadOptions | None = None,
) -> dict:
    """Run the study on each hospital folder and write the pooled and per-site tables.

    Returns
    -------
    dict
        The study result (also in ``out_dir/reader_study.json``), with ``paths``.

    ``read`` replaces the model's reading options (e.g. with a fallback spacing for
    digitised film).
    """
    config = config or StudyConfig()
    models, options, cascade, spec = load_run(model_dir)
    options = read or options  # the model's, or the caller's for these files
    seed = int(spec.get("seed", 0)) if seed is None else seed
    val_fraction = float(spec.get("val_fraction", 0.15)) if val_fraction is None else val_fraction
    sites: dict[str, Hospital] = {}
    refused = {}
    for d in data_dirs:
        name = Path(d).name
        if name in sites:
            raise ValueError(f"two hospital folders are named '{name}'")
        node = NodeSettings(
            data_dir=Path(d),
            hospital_id=name,
            state_dir=Path(out_dir) / "hospital-state" / name,
            cache_dir=cache_dir,
            test_fraction=test_fraction,
        )
        sites[name] = Hospital(node)
        problems = sites[name].records(seed).problems
        for problem in problems.problems:  # local console: these lines may name files
            logger.warning("refused %s", problem.line())
        refused[name] = len(problems)
    validation = RocStats.empty(config.bins)
    scores, val_scores = {}, {}
    with Progress(transient=True, disable=not progress, console=Console(stderr=True)) as bar:
        for name, hospital in sites.items():
            records, store = hospital.records(seed), hospital.store(options)
            task = bar.add_task(f"{name}: model on study images", total=len(records.test))
            scores[name] = breast_scores(
                models, records.test, store, cascade, lambda t=task: bar.advance(t)
            )
            if config.model_threshold is None or config.assistance == "simulated-model":
                val = validation_split(records.train, val_fraction, seed)["val"]
                task = bar.add_task(f"{name}: model on validation images", total=len(val))
                val_scores[name] = breast_scores(
                    models, val, store, cascade, lambda t=task: bar.advance(t)
                )
                validation = validation + scores_roc(val_scores[name], config.bins)
    threshold = model_threshold(validation, config)
    per_site = {}
    for name, hospital in sites.items():
        try:
            per_site[name] = hospital.assisted_study(
                scores[name],
                val_scores.get(name),
                hospital.records(seed),
                config,
                threshold,
                seed,
                stored_spacing(hospital.store(options)),
            )
        except Refusal as exc:
            logger.error("%s: %s; this hospital is left out of the study", name, exc)
    if not per_site:
        raise ValueError("no hospital has reader reads on its held-out breasts")
    setup = study_setup(config, threshold, validation)
    setup["refused_inputs"] = refused
    result, pooled = study_result(per_site, setup)
    result["paths"] = {k: str(v) for k, v in write_study(out_dir, result, pooled).items()}
    return result

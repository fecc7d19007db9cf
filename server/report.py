"""Write a federated run's report: ``report.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from common.evaluation.images import EvalStats
from common.evaluation.report import (
    clean_json,
    federated_markdown,
    plot_froc,
    plot_roc,
    plot_rounds,
)
from common.study.report import arms_table, comparisons_table


def write_report(run_dir: Path, report: dict) -> Path:
    """Write the report files into ``run_dir``; return the JSON's path."""
    run_dir = Path(run_dir)
    path = run_dir / "report.json"
    clean = clean_json(report)
    path.write_text(json.dumps(clean, indent=2))
    (run_dir / "report.md").write_text(federated_markdown(clean) + _study_section(clean))
    plot_rounds(report["rounds"], run_dir / "rounds.png")
    final = report.get("final")
    if final:
        pooled = EvalStats.from_dict(final["pooled"]["statistics"])
        plot_roc(pooled, run_dir / "roc.png", title="Pooled malignancy ROC (federated)")
        threshold = (report.get("marks") or {}).get("threshold")
        plot_froc(
            pooled,
            run_dir / "froc.png",
            title="Pooled cluster FROC (federated)",
            mark_threshold=threshold,
        )
    return path


def _study_section(report: dict) -> str:
    study = report.get("reader_study")
    if not study:
        return ""
    lines = ["## Reader-assist study (pooled over hospitals, all cases)", ""]
    if not study.get("all"):
        reason = study.get("error") or "no hospital sent statistics"
        lines += [f"Not computed: {reason}.", ""]
    else:
        setup = study["setup"]
        lines += [
            f"{study['all']['cases']} breasts from {len(study['sites'])} hospitals; model "
            f"operating point {setup['model_threshold']:.3f} "
            f"({setup['threshold_source']}).",
            "",
        ]
        lines += arms_table(study["all"]["arms"]) + [""]
        if study["all"]["comparisons"]:
            lines += comparisons_table(study["all"]["comparisons"]) + [""]
        lines += [
            "Full table (strata, hospitals): `reader_study.md`; figure: `reader_study_roc.png`.",
            "",
        ]
    for f in study.get("failed", []):
        lines.append(f"- refused ({f['code']}): {f['reason']}")
    return "\n".join(lines) + "\n"

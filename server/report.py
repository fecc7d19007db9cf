"""Write a federated run's report: ``report.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from common.evaluation import EvalStats
from common.report import clean_json, federated_markdown, plot_froc, plot_roc, plot_rounds


def write_report(run_dir: Path, report: dict) -> Path:
    """Write the report files into ``run_dir``; return the JSON's path."""
    run_dir = Path(run_dir)
    path = run_dir / "report.json"
    clean = clean_json(report)
    path.write_text(json.dumps(clean, indent=2))
    (run_dir / "report.md").write_text(federated_markdown(clean))
    plot_rounds(report["rounds"], run_dir / "rounds.png")
    final = report.get("final")
    if final:
        pooled = EvalStats.from_dict(final["pooled"]["statistics"])
        plot_roc(pooled, run_dir / "roc.png", title="Pooled malignancy ROC (federated)")
        plot_froc(pooled, run_dir / "froc.png", title="Pooled cluster FROC (federated)")
    return path

"""Federated vs centralised vs local-only, per hospital and pooled: table and figure."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.evaluation.images import EvalStats  # noqa: E402
from common.evaluation.report import clean_json, save_figure  # noqa: E402

ARMS = ("federated", "centralised", "local-only")
METRICS = {
    "breast_auc": ("breast AUC (cascade)", lambda s: s["breast"]["auc"]),
    "cluster_auc": ("cluster AUC (classifier)", lambda s: s["classification"]["auc"]),
    "sens_at_1fp": ("cluster sens @1 FP/img", lambda s: s["detection"]["sens@1fp"]),
    "mean_froc": ("mean FROC sensitivity", lambda s: s["detection"]["mean_sensitivity"]),
}


def compare(report: dict, baselines: dict) -> dict:
    """Per-site and pooled metrics of each arm (statistics summed for the pooled rows)."""
    per_arm: dict[str, dict[str, EvalStats]] = {}
    final = report.get("final") or {"per_site": {}}
    per_arm["federated"] = {
        k: EvalStats.from_dict(v["statistics"]) for k, v in final["per_site"].items()
    }
    for arm in ("centralised", "local-only"):
        if arm in baselines:
            per_arm[arm] = baselines[arm]["per_site"]
    sites = sorted(set().union(*(d.keys() for d in per_arm.values())))
    table: dict = {"sites": {}, "pooled": {}}
    for arm, stats in per_arm.items():
        pooled = EvalStats()
        for site in sites:
            if site in stats:
                pooled = pooled + stats[site]
                summary = stats[site].summary()
                table["sites"].setdefault(site, {})[arm] = {
                    k: f(summary) for k, (_, f) in METRICS.items()
                }
        summary = pooled.summary()
        table["pooled"][arm] = {k: f(summary) for k, (_, f) in METRICS.items()}
        table["pooled"][arm]["auc_ci95"] = summary["breast"]["auc_ci95"]
    table["train_seconds"] = {arm: baselines[arm]["train_seconds"] for arm in baselines}
    return clean_json(table)


def _cell(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def comparison_markdown(table: dict) -> str:
    """Markdown table: rows sites (+ pooled), columns arm × metric."""
    arms = [a for a in ARMS if a in table["pooled"]]
    lines = ["## Federated vs centralised vs local-only", ""]
    for key, (label, _) in METRICS.items():
        lines += [
            f"### {label}",
            "",
            "| site | " + " | ".join(arms) + " |",
            "|---|" + "---|" * len(arms),
        ]
        for site, row in sorted(table["sites"].items()):
            lines.append(
                f"| {site} | " + " | ".join(_cell(row.get(a, {}).get(key)) for a in arms) + " |"
            )
        lines.append(
            "| **pooled** | " + " | ".join(_cell(table["pooled"][a][key]) for a in arms) + " |"
        )
        lines.append("")
    lines += [
        "Local-only: each hospital's own model on its own held-out images; pooled rows "
        "sum the per-site statistics.",
        "",
        "Figure: `comparison.png`.",
        "",
    ]
    return "\n".join(lines)


def plot_comparison(table: dict, path: Path) -> Path:
    """Draw grouped bars of breast and cluster AUC per site and pooled, one colour per arm."""
    arms = [a for a in ARMS if a in table["pooled"]]
    rows = [*sorted(table["sites"]), "pooled"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    width = 0.8 / max(len(arms), 1)
    for ax, key in zip(axes, ("breast_auc", "cluster_auc"), strict=True):
        x = np.arange(len(rows))
        for i, arm in enumerate(arms):
            vals = [
                (table["pooled"] if r == "pooled" else table["sites"][r]).get(arm, {}).get(key)
                for r in rows
            ]
            vals = [np.nan if v is None else v for v in vals]
            ax.bar(x + (i - (len(arms) - 1) / 2) * width, vals, width, label=arm)
        ax.set_xticks(x, rows, rotation=20)
        ax.set(ylim=(0, 1.15), yticks=np.linspace(0, 1, 6), title=METRICS[key][0])
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("AUC")
    axes[0].legend(fontsize=8, loc="upper center", ncol=len(arms), frameon=False)
    return save_figure(fig, path)


def add_to_report(run_dir: Path, table: dict) -> None:
    """Add the comparison to ``report.json``/``report.md`` and draw ``comparison.png``."""
    run_dir = Path(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    report["comparison"] = table
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    md = (run_dir / "report.md").read_text()
    (run_dir / "report.md").write_text(md + "\n" + comparison_markdown(table))
    plot_comparison(table, run_dir / "comparison.png")

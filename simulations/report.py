"""Plots and Markdown for evaluation results."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.evaluation import EvalStats  # noqa: E402


def plot_roc(stats: EvalStats, path: Path, title: str = "Malignancy ROC") -> Path:
    """ROC curves of the classifier (annotated clusters) and the cascade (breasts)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, roc in (("clusters (classifier)", stats.finding_roc),
                      ("breasts (cascade)", stats.breast_roc)):  # fmt: skip
        if roc.n_pos and roc.n_neg:
            fpr, tpr, _ = roc.curve()
            lo, hi = roc.auc_ci()
            ax.plot(fpr, tpr, label=f"{name}: AUC {roc.auc():.3f} ({lo:.3f}–{hi:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1),
           ylim=(0, 1.01))  # fmt: skip
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_froc(stats: EvalStats, path: Path, title: str = "Cluster detection FROC") -> Path:
    """FROC curve with the 0.25/0.5/1/2 FP-per-image points marked."""
    fppi, sens = stats.froc.curve()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fppi, sens, drawstyle="steps-post")
    for p in (0.25, 0.5, 1.0, 2.0):
        ax.plot([p], [stats.froc.sensitivity_at(p)], "o", color="C3")
    ax.set(xlabel="false positives per image", ylabel="cluster sensitivity", title=title,
           xlim=(0, max(4.0, float(np.min([fppi.max(), 8])))), ylim=(0, 1.01))  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def metrics_markdown(summary: dict, title: str) -> str:
    """Render :meth:`EvalStats.summary` as Markdown."""
    det, cls, br = summary["detection"], summary["classification"], summary["breast"]

    def ci(d):
        return f"{d['auc']:.3f} ({d['auc_ci95'][0]:.3f}–{d['auc_ci95'][1]:.3f})"

    lines = [
        f"# {title}", "",
        "## Detection (clusters)", "",
        "| FP/image | 0.25 | 0.5 | 1 | 2 | mean |", "|---|---|---|---|---|---|",
        "| sensitivity | " + " | ".join(f"{det[f'sens@{p}fp']:.3f}" for p in
                                        ("0.25", "0.5", "1", "2"))
        + f" | {det['mean_sensitivity']:.3f} |",
        "",
        f"- clusters: {det['lesions']}, images: {det['images']}",
        f"- point precision {det['point_precision']:.3f}, recall {det['point_recall']:.3f}",
        "", "## Malignancy", "",
        "| level | AUC (95% CI, DeLong) | sensitivity | specificity | positives | negatives |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, d in (("annotated clusters", cls), ("breasts (cascade)", br)):
        op = d["operating_point"]
        lines.append(
            f"| {name} | {ci(d)} | {op['sensitivity']:.3f} | {op['specificity']:.3f} "
            f"| {d['positives']} | {d['negatives']} |"
        )
    threshold = cls["operating_point"]["threshold"]
    lines += ["", f"- calibration error (ECE, clusters): {cls['ece']:.3f}",
              f"- operating point: score ≥ {threshold:.2f}", ""]  # fmt: skip
    return "\n".join(lines)

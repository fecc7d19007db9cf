"""Plots and Markdown for evaluation results."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.evaluation.images import EvalStats  # noqa: E402
from common.evaluation.marks import FULL_FIELD_BREAST_CM2, marks_line  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_roc(stats: EvalStats, path: Path, title: str = "Malignancy ROC") -> Path:
    """ROC curves of the classifier (annotated clusters) and the cascade (breasts)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, roc in (
        ("clusters (classifier)", stats.finding_roc),
        ("breasts (cascade)", stats.breast_roc),
    ):
        if roc.n_pos and roc.n_neg:
            fpr, tpr, _ = roc.curve()
            lo, hi = roc.auc_ci()
            ax.plot(fpr, tpr, label=f"{name}: AUC {roc.auc():.3f} ({lo:.3f}–{hi:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no positive and negative cases", ha="center", color="grey")
    return save_figure(fig, path)


def plot_froc(
    stats: EvalStats,
    path: Path,
    title: str = "Cluster detection FROC",
    mark_threshold: float | None = None,
) -> Path:
    """FROC per full-field image (per image evaluated without breast areas), points marked.

    With ``mark_threshold`` the cascade's operating point is drawn too.
    """
    froc = stats.froc
    full = froc.area_cm2 > 0
    fppi, sens = froc.full_field_curve(FULL_FIELD_BREAST_CM2) if full else froc.curve()
    breast = FULL_FIELD_BREAST_CM2 if full else None
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(fppi, sens, drawstyle="steps-post")
    for p in (0.25, 0.5, 1.0, 2.0):
        ax.plot([p], [froc.sensitivity_at(p, breast)], "o", color="C3")
    if mark_threshold is not None and full:
        at = (
            froc.fp_per_cm2(mark_threshold) * FULL_FIELD_BREAST_CM2,
            froc.sensitivity_above(mark_threshold),
        )
        ax.plot(*at, "D", color="C2")
        ax.annotate("operating point", at, fontsize=8)
    ax.set(
        xlabel=(
            f"false clusters per full-field image ({FULL_FIELD_BREAST_CM2:.0f} cm² of breast)"
            if full
            else "false positives per image"
        ),
        ylabel="cluster sensitivity",
        title=title,
        xlim=(0, max(4.0, float(np.min([fppi.max(), 8])))),
        ylim=(0, 1.01),
    )
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def metrics_markdown(summary: dict, title: str) -> str:
    """Render :meth:`EvalStats.summary` as Markdown."""
    det, cls, br = summary["detection"], summary["classification"], summary["breast"]

    def ci(d):
        return f"{d['auc']:.3f} ({d['auc_ci95'][0]:.3f}–{d['auc_ci95'][1]:.3f})"

    lines = [
        f"# {title}",
        "",
        "## Detection (clusters)",
        "",
        "| FP/image | 0.25 | 0.5 | 1 | 2 | mean |",
        "|---|---|---|---|---|---|",
        "| sensitivity | "
        + " | ".join(f"{det[f'sens@{p}fp']:.3f}" for p in ("0.25", "0.5", "1", "2"))
        + f" | {det['mean_sensitivity']:.3f} |",
        "",
        f"- clusters: {det['lesions']}, images: {det['images']}"
        + (
            f" (annotated calcified vessels, set aside and not counted: {det['vessels']})"
            if det.get("vessels")
            else ""
        ),
        f"- point precision {det['point_precision']:.3f}, recall {det['point_recall']:.3f}",
        *_full_field_lines(det.get("full_field")),
        "",
        "## Malignancy",
        "",
        "| level | AUC (95% CI, DeLong) | sensitivity | specificity | positives | negatives |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in (("annotated clusters", cls), ("breasts (cascade)", br)):
        op = d["operating_point"]
        lines.append(
            f"| {name} | {ci(d)} | {op['sensitivity']:.3f} | {op['specificity']:.3f} "
            f"| {d['positives']} | {d['negatives']} |"
        )
    threshold = cls["operating_point"]["threshold"]
    lines += [
        "",
        f"- calibration error (ECE, clusters): {cls['ece']:.3f}",
        f"- operating point: score ≥ {threshold:.2f}",
        "",
    ]
    return "\n".join(lines)


def _full_field_lines(full: dict | None) -> list[str]:
    """Return Markdown lines: detection per full-field image, the marks' operating point."""
    if not full or full.get("mean_sensitivity") is None:
        return []
    lines = [
        "",
        f"Per full-field image ({FULL_FIELD_BREAST_CM2:.0f} cm² of breast; the images "
        f"evaluated hold {full['full_field_images']:.2f} full-field images of breast):",
        "",
        "| false clusters per full-field image | 0.25 | 0.5 | 1 | 2 | mean |",
        "|---|---|---|---|---|---|",
        "| sensitivity | "
        + " | ".join(f"{full[f'sens@{p}fp']:.3f}" for p in ("0.25", "0.5", "1", "2"))
        + f" | {full['mean_sensitivity']:.3f} |",
    ]
    if full.get("mark_threshold") is not None:
        fp = full.get("normal_false_marks_per_full_field_image")
        fp_text = "no normal image" if fp is None else f"{fp:.2f}"
        lines += [
            "",
            f"- operating point (marks): detection score ≥ {full['mark_threshold']:.3f}: "
            f"false marks per full-field normal image {fp_text} "
            f"({full['normal_images']} normal images), cluster sensitivity "
            f"{full['mark_sensitivity']:.3f}",
        ]
    return lines


def clean_json(value):
    """Replace NaN/inf by None so the output is strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return clean_json(value.item())
    return value


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def round_curves(rounds: list[dict]) -> dict[str, list]:
    """Per-round series of a federated run: pooled AUCs, FROC and training losses."""
    out: dict[str, list] = {
        k: [] for k in ("round", "cluster_auc", "breast_auc", "mean_froc", "det_loss", "cls_loss")
    }
    for r in rounds:
        ev = (r.get("evaluation") or {}).get("pooled", {}).get("summary")
        tm = r.get("aggregated_train_metrics") or {}
        out["round"].append(r["round"])
        out["cluster_auc"].append(ev["classification"]["auc"] if ev else None)
        out["breast_auc"].append(ev["breast"]["auc"] if ev else None)
        out["mean_froc"].append(ev["detection"]["mean_sensitivity"] if ev else None)
        out["det_loss"].append(tm.get("det-train-loss"))
        out["cls_loss"].append(tm.get("cls-train-loss"))
    return out


def plot_rounds(rounds: list[dict], path: Path) -> Path:
    """Learning curves: pooled evaluation metrics and mean training losses per round."""
    c = round_curves(rounds)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))

    def series(key):
        return np.array([np.nan if v is None else v for v in c[key]], dtype=float)

    for key, label in (
        ("cluster_auc", "cluster AUC"),
        ("breast_auc", "breast AUC"),
        ("mean_froc", "mean FROC sensitivity"),
    ):
        a1.plot(c["round"], series(key), "o-", label=label)
    a1.set(xlabel="round", ylabel="pooled metric", ylim=(0, 1.02), title="Federated evaluation")
    a1.legend(fontsize=8, loc="lower right")
    for key, label in (("det_loss", "detector"), ("cls_loss", "classifier")):
        a2.plot(c["round"], series(key), "o-", label=label)
    a2.set(xlabel="round", ylabel="mean local training loss", title="Training")
    a2.legend(fontsize=8)
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.set_xticks(c["round"])
    return save_figure(fig, path)


def site_row(name: str, summary: dict) -> str:
    """One Markdown table row of a site's (or the pool's) evaluation summary."""
    det, cls, br = summary["detection"], summary["classification"], summary["breast"]

    def auc(d):
        if d["auc"] is None or not np.isfinite(d["auc"]):
            return "–"
        return f"{d['auc']:.3f} ({d['auc_ci95'][0]:.3f}–{d['auc_ci95'][1]:.3f})"

    return (
        f"| {name} | {det['images']} | {_fmt(det['sens@1fp'])} | "
        f"{_fmt(det['mean_sensitivity'])} | {auc(cls)} | {auc(br)} |"
    )


SITE_HEADER = [
    "| site | images | cluster sens @1 FP/img | mean FROC sens | cluster AUC (95% CI) "
    "| breast AUC (95% CI) |",
    "|---|---|---|---|---|---|",
]


PRIVACY_MEANING = (
    "ε is per training example (a detector patch, a classifier crop), at the hospital's δ. "
    "Both models see the same findings, so the composed ε (Rényi-DP composition of both) "
    "is the figure per finding. A patient contributes at most the examples shown (rounded "
    "up to a power of two); group privacy protects them at that multiple of ε, with δ "
    "grown as shown (1 means no guarantee). Replies under DP carry no loss and only "
    "power-of-two example counts; each hospital's ledger (`calcifl privacy STATE_DIR`) "
    "lists every release."
)


def federated_markdown(report: dict) -> str:
    """Markdown of a federated run's report (rounds, pooled and per-site results)."""
    s = report["settings"]
    lines = [
        f"# Federated run {report['run']}",
        "",
        f"- strategy **{s['strategy']}**, {s['num-server-rounds']} rounds, "
        f"{s['detector-epochs']} detector / {s['classifier-epochs']} classifier local epochs "
        f"per round, DP-SGD: {'on, target ε ' + str(s['dp-epsilon']) if s['dp'] else 'off'}",
        f"- model size: {report['parameter_bytes_fp32'] / 1e6:.2f} MB (fp32, both models)",
    ]
    if s.get("central-dp"):
        lines.append(
            f"- central DP: hospitals clip their update to L2 {s['central-dp-clip']:g}, "
            "the server averages them uniformly and adds Gaussian noise "
            f"(δ {s['central-dp-delta']:g}; see Privacy)"
        )
    if report.get("stopped"):
        lines.append(f"- **stopped before the last round**: {report['stopped']}")
    if report.get("resumed_from_round"):
        lines.append(f"- resumed from the checkpoint of round {report['resumed_from_round']}")
    lines += [
        "",
        "## Rounds",
        "",
        "| round | trained | refused | dropped | pooled cluster AUC | pooled breast AUC "
        "| mean FROC sens | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curves = round_curves(report["rounds"])
    for i, r in enumerate(report["rounds"]):
        refused = ", ".join(x["site"] for x in r.get("refused", [])) or "–"
        dropped = ", ".join(r.get("dropped", [])) or "–"
        lines.append(
            f"| {r['round']} | {len(r.get('trained', []))} | {refused} | {dropped} | "
            f"{_fmt(curves['cluster_auc'][i])} | {_fmt(curves['breast_auc'][i])} | "
            f"{_fmt(curves['mean_froc'][i])} | {r.get('seconds', '–')} |"
        )
    refusals = [(r["round"], x) for r in report["rounds"] for x in r.get("refused", [])]
    if refusals:
        lines += ["", "Refusals:", ""]
        lines += [f"- round {n}: {x['site']}: {x['reason']}" for n, x in refusals]
    final = report.get("final")
    if final:
        lines += [
            "",
            "## Final model: pooled and per-site evaluation",
            "",
            "Pooled from summed per-site statistics (not averaged).",
            "",
        ]
        lines += SITE_HEADER
        for name, site in sorted(final["per_site"].items()):
            lines.append(site_row(name, site["summary"]))
        lines.append(site_row("**pooled**", final["pooled"]["summary"]))
        for name, parts in sorted(final.get("withheld", {}).items()):
            lines.append(f"\n- {name} withheld {', '.join(parts)} (below its minimum cell size)")
        lines += _full_field_lines(final["pooled"]["summary"]["detection"].get("full_field"))
    marks = report.get("marks")
    if marks:
        lines += ["", "## Operating point (marks)", "", f"- {marks_line(marks)}"]
        lines += [f"- refused ({f['code']}): {f['reason']}" for f in marks.get("failed", [])]
    eps = {}
    for r in report["rounds"]:
        for site, m in r.get("per_site", {}).items():
            if "det-epsilon" in m:
                eps[site] = m
    if s["dp"] and eps:
        lines += [
            "",
            "## Privacy (cumulative per hospital, over every federation and run it joined)",
            "",
            "| site | δ | detector ε | classifier ε | composed ε | examples per patient "
            "| per-patient ε (δ) |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, m in sorted(eps.items()):
            lines.append(
                f"| {k} | {m.get('dp-delta', 0):g} | {m['det-epsilon']:.2f} | "
                f"{m.get('cls-epsilon', 0):.2f} | {m.get('composed-epsilon', 0):.2f} | "
                f"≤ {m.get('patient-examples', 0):g} | {m.get('patient-epsilon', 0):.1f} "
                f"({m.get('patient-delta', 0):.2g}) |"
            )
        lines += ["", PRIVACY_MEANING]
    lines += _central_dp_lines(report["rounds"])
    lines += ["", "Plots: `rounds.png`, `roc.png`, `froc.png`.", ""]
    return "\n".join(lines)


def _central_dp_lines(rounds: list[dict]) -> list[str]:
    """Central DP per round: noise, hospitals, cumulative ε (hospital-level guarantee)."""
    rows = [r for r in rounds if r.get("central_dp")]
    if not rows:
        return []
    lines = [
        "",
        "## Privacy: central DP (hospital-level, cumulative over the run)",
        "",
        "| round | hospitals | clip | noise multiplier | noise std | ε | δ | server-clipped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["central_dp"]
        lines.append(
            f"| {r['round']} | {c['hospitals']} | {c['clip']:g} | "
            f"{c['noise_multiplier']:.3f} | {c['noise_stdev']:.3g} | "
            f"{c['epsilon']:.2f} | {c['delta']:g} | "
            f"{', '.join(r.get('unclipped', [])) or '–'} |"
        )
    lines += [
        "",
        "ε by Rényi DP accounting (Opacus) of the Gaussian mechanism composed once "
        "per noised aggregate, without sampling amplification. Server-clipped: hospitals "
        "whose update came back above the clipping norm and were clipped by the server.",
    ]
    return lines

"""Reader-study outputs: a paper-style table (Markdown, JSON) and a ROC figure."""

from __future__ import annotations

import functools
import json
import math
import operator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.evaluation.metrics import RocStats  # noqa: E402
from common.evaluation.report import clean_json, save_figure  # noqa: E402
from common.study.arms import Arm, StudyConfig, StudyStats  # noqa: E402
from common.study.randomreaders import (  # noqa: E402
    plot_random_readers,
    random_reader_markdown,
    random_reader_summaries,
)

STRATUM_TITLES = {
    "pathology": "pathology",
    "density": "BI-RADS density",
    "calc_type": "calcification type",
}


def _finite(x) -> bool:
    """Numbers only (a cleaned JSON has None where a rate is undefined)."""
    return isinstance(x, int | float) and math.isfinite(x)


def _pct(d: dict, scale: float = 100.0, form: str = ".1f", unit: str = "%") -> str:
    v = d["value"]
    if not _finite(v):
        return "—"
    lo, hi = (scale * x for x in d["ci95"])
    return f"{scale * v:{form}}{unit} ({lo:{form}}–{hi:{form}})"


def _auc(d: dict) -> str:
    return _pct(d, 1.0, ".3f", "")


def p_value(p: float) -> str:
    """Format a P-value as papers do."""
    if not _finite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _delta(d: dict, percent: bool = True) -> str:
    diff = d["difference"]
    if not _finite(diff):
        return "—"
    diff = diff + 0.0  # no "-0.0"
    text = f"{100 * diff:+.1f} pts" if percent else f"{diff:+.3f}"
    return f"{text} (P={p_value(d['p'])})"


def arms_table(arms: dict) -> list[str]:
    """Markdown rows: one per arm."""
    rows = [
        "| Arm | Miss rate | Sensitivity | Specificity | Recall rate | "
        "Detection miss rate | AUC (95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        rows.append(
            f"| {name} | {_pct(a['miss_rate'])} | {_pct(a['sensitivity'])} | "
            f"{_pct(a['specificity'])} | {_pct(a['recall_rate'])} | "
            f"{_pct(a['detection_miss_rate'])} | {_auc(a['auc'])} |"
        )
    return rows


def comparisons_table(comparisons: dict) -> list[str]:
    """Markdown rows: one per paired comparison (A - B, P-values)."""
    rows = [
        "| A vs B | Δ miss rate | Δ sensitivity | Δ specificity | Δ detection miss rate | "
        "Δ AUC (95% CI), P |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in comparisons.items():
        auc = c["auc"]
        if _finite(auc["difference"]):
            lo, hi = auc["ci95"]
            auc_text = f"{auc['difference']:+.3f} ({lo:+.3f} to {hi:+.3f}), P={p_value(auc['p'])}"
        else:
            auc_text = "—"
        rows.append(
            f"| {name} | {_delta(c['miss_rate'])} | {_delta(c['sensitivity'])} | "
            f"{_delta(c['specificity'])} | {_delta(c['detection_miss_rate'])} | "
            f"{auc_text} |"
        )
    return rows


def _classes(s: dict, unit: str = "breast") -> str:
    c = s.get("classes", {})
    return (
        f"{s['cases']} {unit}s ({c.get('malignant', 0)} malignant, "
        f"{c.get('benign', 0)} benign, {c.get('normal', 0)} without calcifications)"
    )


def provenance_label(provenance: dict) -> str:
    """Return the line that says which readers and which assistance a table shows."""
    readers = provenance.get("readers", "recorded")
    assistance = provenance.get("assistance", "recorded")
    if readers == "recorded" and assistance == "recorded":
        return ""
    text = {
        "simulated": "**Simulated readers** (calcifl's reader model, not radiologists)",
        "mixed": "**Partly simulated readers**",
    }.get(readers, "Recorded readers")
    aid = {
        "simulated from the model": "aided reads simulated from the **federated model's own "
        "marks and scores** on each breast",
        "simulated CAD": "aided reads simulated with the generator's **simulated CAD**",
        "recorded": "aided reads as recorded",
    }.get(assistance, f"assistance: {assistance}")
    return f"{text}; {aid}."


def study_markdown(result: dict) -> str:
    """Render a study result (see :func:`study_result`) as Markdown."""
    pooled = result["pooled"]
    lines = ["# Reader-assist study", ""]
    setup = result["setup"]
    unit = setup.get("unit", "breast")
    label = provenance_label(result.get("provenance", {}))
    tag = [label, ""] if label else []  # above every table: who read, with what aid
    lines += tag
    lines += [
        f"- Cases: {_classes(pooled['all'], unit)}"
        + (f" from {len(result['per_site'])} hospitals" if len(result["per_site"]) > 1 else ""),
        f"- Recall (positive call): BI-RADS ≥ {setup['recall_from']} or 0; reader ROC score: "
        f"{setup['reader_score']}; double reading: recall if "
        f"{'either' if setup['consensus'] == 'max' else 'both'} recall(s).",
        f"- Model operating point: {setup['model_threshold']:.3f} "
        f"({setup['threshold_source']}); a {unit} is *reported* by the model when a cluster "
        f"scores ≥ {setup['detection_threshold']}.",
        f"- Miss rate: malignant {unit}s not recalled; detection miss rate: {unit}s with "
        "calcifications read as BI-RADS 1 (nothing reported). 95% CIs: Wilson (rates), "
        "DeLong (AUC). Paired P-values: McNemar (rates; exact below 25 discordant pairs), "
        "DeLong (AUC). Δ is A − B.",
    ]
    if result.get("excluded"):
        lines.append(
            f"- Excluded {unit}s: " + ", ".join(f"{k}: {v}" for k, v in result["excluded"].items())
        )
    for key, text in (
        ("withheld", "Withheld by hospitals' release policy (minimum cell size)"),
        ("unavailable", "Arms a hospital has no reads for"),
    ):
        if result.get(key):
            lines.append(
                f"- {text}: "
                + "; ".join(f"{site}: {', '.join(names)}" for site, names in result[key].items())
            )
    lines += ["", "## All cases", "", *tag]
    lines += arms_table(pooled["all"]["arms"]) + [""]
    if pooled["all"]["comparisons"]:
        lines += comparisons_table(pooled["all"]["comparisons"]) + [""]
    for stratum, title in STRATUM_TITLES.items():
        names = [n for n in pooled if n.startswith(f"{stratum}=")]
        if not names:
            continue
        lines += [f"## By {title}", ""]
        for name in names:
            s = pooled[name]
            lines += [f"### {name.split('=', 1)[1]} — {_classes(s, unit)}", ""]
            lines += tag + arms_table(s["arms"]) + [""]
            if s["comparisons"]:
                lines += comparisons_table(s["comparisons"]) + [""]
    if len(result["per_site"]) > 1:
        lines += ["## By hospital", ""]
        for site, summary in result["per_site"].items():
            if "all" not in summary:
                lines += [f"### {site} — all cases withheld", ""]
                continue
            lines += [f"### {site} — {_classes(summary['all'], unit)}", ""]
            lines += tag + arms_table(summary["all"]["arms"]) + [""]
            if summary["all"]["comparisons"]:
                lines += comparisons_table(summary["all"]["comparisons"]) + [""]
    lines += random_reader_markdown(result.get("random_readers", {}), label)
    return "\n".join(lines) + "\n"


def plot_study_roc(stats: StudyStats, path: Path, title: str = "Reader study (all cases)"):
    """ROC figure: the model as a curve, each reading arm as an operating point."""
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    ax.plot([0, 1], [0, 1], color="0.8", lw=0.8)
    everyone = stats.strata.get("all", {"arms": {}})["arms"]
    markers = {"senior": "o", "junior": "s"}
    colours = plt.get_cmap("tab10")
    for i, (name, arm_stats) in enumerate(everyone.items()):
        arm = Arm.parse(name)
        s = arm_stats.summary()
        if not arm.readers:
            fpr, tpr, _ = arm_stats.roc.curve()
            ax.plot(fpr, tpr, color="black", lw=1.6, label=f"model (AUC {s['auc']['value']:.3f})")
        sens, spec = s["sensitivity"]["value"], s["specificity"]["value"]
        if not (_finite(sens) and _finite(spec)):
            continue
        if not arm.readers:
            ax.scatter(
                1 - spec,
                sens,
                s=110,
                marker="*",
                color="black",
                zorder=4,
                label="model at its operating point",
            )
            continue
        role = "senior" if arm.readers[0].startswith("senior") else "junior"
        marker = markers[role] if len(arm.readers) == 1 else "D"
        # filled: unaided reading; open: aided or with the model as second reader
        ax.scatter(
            1 - spec,
            sens,
            s=60,
            marker=marker,
            color=colours(i % 10),
            facecolors="none" if arm.aided or arm.model else None,
            label=f"{name} (AUC {s['auc']['value']:.3f})",
            zorder=3,
        )
    ax.set(
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        xlabel="1 − specificity",
        ylabel="sensitivity",
        title=title,
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def study_setup(config: StudyConfig, threshold: float, validation: RocStats | None) -> dict:
    """Return the settings a study table states, with the model's operating point."""
    if config.model_threshold is not None or validation is None:
        source = "given"
    else:
        source = (
            f"chosen on {validation.n_pos + validation.n_neg} validation breasts for "
            f"sensitivity ≥ {config.target_sensitivity:g}"
        )
    setup = {k: v for k, v in vars(config).items() if k not in ("arms", "comparisons")}
    return {
        **setup,
        "arms": list(config.arms),
        "comparisons": list(config.comparisons),
        "model_threshold": threshold,
        "threshold_source": source,
    }


def study_result(per_site: dict[str, StudyStats], setup: dict) -> tuple[dict, StudyStats]:
    """Return the JSON-ready study result: pooled (sum of the sites) and per-site summaries."""
    pooled = functools.reduce(operator.add, per_site.values())
    result = {
        "setup": setup,
        "pooled": pooled.summary(),
        "per_site": {site: s.summary() for site, s in per_site.items()},
        "excluded": dict(pooled.excluded),
        "withheld": {site: s.withheld for site, s in per_site.items() if s.withheld},
        "unavailable": {site: s.unavailable for site, s in per_site.items() if s.unavailable},
        "provenance": dict(pooled.provenance),
        "random_readers": random_reader_summaries(pooled.panels),
        "statistics": {"pooled": pooled.to_dict()},
    }
    return clean_json(result), pooled


def write_study(out_dir: Path, result: dict, pooled: StudyStats) -> dict[str, Path]:
    """Write ``reader_study.json``, ``reader_study.md`` and ``reader_study_roc.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "reader_study.json",
        "markdown": out_dir / "reader_study.md",
        "roc": out_dir / "reader_study_roc.png",
    }
    paths["json"].write_text(json.dumps(result, indent=2))
    paths["markdown"].write_text(study_markdown(result))
    label = provenance_label(result.get("provenance", {})).replace("*", "")
    plot_study_roc(
        pooled, paths["roc"], "Reader study (all cases)" + (f"\n{label}" if label else "")
    )
    readers_png = out_dir / "reader_study_readers.png"
    if plot_random_readers(pooled.panels, readers_png, label):
        paths["readers"] = readers_png
    return paths

"""The random-reader (MRMC) section of a reader study: summaries, table, figure.

Each reader panel (e.g. ``junior: unaided vs aided``) arrives as one
:class:`~common.study.panel.PanelStats` per hospital. With one hospital the design is fully
crossed and every OR and DBM analysis applies; with several, readers and cases are nested
in hospitals and the random-reader analysis is the split-plot one
(:func:`~common.study.mrmc.split_plot`). Readers are pooled by role, never matched by id.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.evaluation.report import save_figure  # noqa: E402
from common.study.panel import PanelStats, split_plot_panels  # noqa: E402
from common.study.sizing import Pilot, plan  # noqa: E402

#: The effect size the study-size table is computed for when the pilot's is tiny
MIN_EFFECT = 0.05


def _ci(out: dict, pre: str) -> list[float]:
    return [out[f"{pre}.ci_lower"], out[f"{pre}.ci_upper"]]


def _ci_flipped(out: dict, pre: str) -> list[float]:
    """CI of modality 2 − modality 1 (the analyses give 1 − 2)."""
    return [-out[f"{pre}.ci_upper"], -out[f"{pre}.ci_lower"]]


def panel_summary(items: list[PanelStats], target_power: float = 0.8) -> dict:
    """Analyses of one panel across hospitals (JSON-ready)."""
    modalities = list(items[0].modalities)
    summary = {
        "modalities": modalities,
        "hospitals": len(items),
        "readers": sum(len(p.readers) for p in items),
        "readers_per_hospital": [len(p.readers) for p in items],
        "cases": sum(p.cases for p in items),
        "abnormal": sum(p.abnormal for p in items),
    }
    # a hospital needs two cases of each class for its AUC covariances
    usable = [p for p in items if p.abnormal >= 2 and p.normal >= 2]
    if len(usable) < len(items):
        summary["left_out"] = (
            f"{len(items) - len(usable)} hospital(s) with fewer than two malignant or two "
            "other cases"
        )
    if not usable:
        return {**summary, "note": "no hospital has two malignant and two other cases"}
    try:
        sp = split_plot_panels(usable)
        crossed = usable[0].analyse() if len(usable) == 1 else None
    except ValueError as exc:
        return {**summary, "note": str(exc)}
    key = "split_plot_jackknife"
    if f"{key}.F" not in sp:
        return {**summary, "note": sp.get(f"{key}.note", "no reader variance")}
    summary["design"] = (
        "fully crossed (one hospital)"
        if len(usable) == 1
        else "split-plot: readers and cases nested in hospitals"
    )
    summary["auc"] = {
        m: {
            "value": sp[f"{key}.modality{i + 1}"],
            "ci95": _ci(sp, f"{key}.modality{i + 1}"),
            "df": sp[f"{key}.modality{i + 1}.df"],
        }
        for i, m in enumerate(modalities)
    }
    diff = sp[f"{key}.diff"]
    analyses = {
        "random readers and cases (OR, Hillis df)": {
            "F": sp[f"{key}.F"],
            "df": [1, sp[f"{key}.df"]],
            "p": sp[f"{key}.p"],
            "ci95": _ci_flipped(sp, key),
        },
        "fixed readers, random cases (OR, χ²)": {
            "chisq": sp["split_plot_frrc_jackknife.chisq"],
            "df": [1],
            "p": sp["split_plot_frrc_jackknife.p"],
            "ci95": _ci_flipped(sp, "split_plot_frrc_jackknife"),
        },
    }
    if crossed is not None and "rrfc.F" in crossed:
        analyses["random readers, fixed cases"] = {
            "F": crossed["rrfc.F"],
            "df": [1, crossed["rrfc.df"]],
            "p": crossed["rrfc.p"],
            "ci95": _ci_flipped(crossed, "rrfc"),
        }
        analyses["DBM random readers and cases"] = {
            "F": crossed["dbm_rrrc.F"],
            "df": [1, crossed["dbm_rrrc.df"]],
            "p": crossed["dbm_rrrc.p"],
        }
        analyses["DBM fixed readers, random cases"] = {
            "F": crossed["dbm_frrc.F"],
            "df": [1, crossed["dbm_frrc.df"]],
            "p": crossed["dbm_frrc.p"],
        }
    # shown as the second reading minus the first: aided − unaided, with model − alone
    summary["difference"] = {"modalities": f"{modalities[1]} − {modalities[0]}", "value": -diff}
    summary["analyses"] = analyses
    summary["variance_components"] = {
        k: sp[f"{key}.{k}"] for k in ("VarR", "VarTR", "Var", "Cov1", "Cov2", "Cov3")
    }
    summary["variance_components"]["covariance"] = "jackknife"
    try:
        pilot = Pilot.from_analysis(sp)
        effect = max(abs(diff), MIN_EFFECT)
        summary["sizing"] = plan(pilot, effect, target_power, groups=1)
        summary["sizing"].pop("curves")
    except (ValueError, ZeroDivisionError) as exc:
        summary["sizing"] = {"note": str(exc)}
    return summary


def random_reader_summaries(panels: dict[str, list[PanelStats]]) -> dict:
    """One :func:`panel_summary` per panel."""
    return {name: panel_summary(items) for name, items in panels.items() if items}


def _f(x, form=".3f") -> str:
    ok = isinstance(x, int | float) and np.isfinite(x)
    return f"{x:{form}}" if ok else "—"


def _p(p) -> str:
    if not isinstance(p, int | float) or not np.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def figure_of_merit(panel: str) -> str:
    """Return the figure of merit a panel's name says it holds: "wAFROC" or "AUC"."""
    return "wAFROC" if panel.endswith("(wAFROC)") else "AUC"


def random_reader_markdown(summaries: dict, label: str = "") -> list[str]:
    """Markdown lines of the random-reader section."""
    if not summaries:
        return []
    lines = [
        "## Random-reader analysis (MRMC)",
        "",
        *([label, ""] if label else []),
        "Readers and cases both random: Obuchowski–Rockette with Hillis' denominator df "
        "(jackknife covariance; empirical AUC). Readers are pooled by role across hospitals "
        "and never matched between them: with several hospitals readers and cases are "
        "nested in hospitals (split-plot OR; Obuchowski 1995, Hillis 2014; see "
        "docs/reader-study.md). Study size: the cases a fully crossed study (every reader "
        "reads every case) needs for "
        "80% power at the observed difference (at least 0.05), Hillis, Obuchowski & "
        "Berbaum 2011.",
        "",
    ]
    for name, s in summaries.items():
        lines += [
            f"### {name} — {s['readers']} readers "
            f"({', '.join(map(str, s['readers_per_hospital']))} per hospital), "
            f"{s['cases']} cases ({s['abnormal']} malignant)",
            "",
        ]
        if "left_out" in s:
            lines += [f"Left out: {s['left_out']}.", ""]
        if "note" in s:
            lines += [f"Not analysed: {s['note']}.", ""]
            continue
        lines += [f"Design: {s['design']}.", ""]
        fom = figure_of_merit(name)
        lines += [f"| Modality | {fom} (95% CI) | df |", "|---|---|---|"]
        for m, a in s["auc"].items():
            lo, hi = a["ci95"]
            lines.append(f"| {m} | {_f(a['value'])} ({_f(lo)}–{_f(hi)}) | {_f(a['df'], '.1f')} |")
        lines += [
            "",
            f"Difference {s['difference']['modalities']}: {_f(s['difference']['value'], '+.3f')}",
            "",
        ]
        lines += [
            "| Analysis | Statistic | df | P | 95% CI of the difference |",
            "|---|---|---|---|---|",
        ]
        for title, a in s["analyses"].items():
            stat = f"χ² = {_f(a['chisq'], '.2f')}" if "chisq" in a else f"F = {_f(a['F'], '.2f')}"
            df = ", ".join(_f(d, ".1f") for d in a["df"])
            ci = a.get("ci95")
            ci_text = f"{_f(ci[0], '+.3f')} to {_f(ci[1], '+.3f')}" if ci else "—"
            lines.append(f"| {title} | {stat} | {df} | {_p(a['p'])} | {ci_text} |")
        vc = s["variance_components"]
        lines += [
            "",
            "Variance components: "
            + ", ".join(
                f"{k} {vc[k]:.3g}" for k in ("VarR", "VarTR", "Var", "Cov1", "Cov2", "Cov3")
            ),
            "",
        ]
        sizing = s.get("sizing", {})
        if "table" in sizing:
            lines += [
                f"Study size for {100 * sizing['target_power']:.0f}% power at Δ {fom} = "
                f"{sizing['effect']:.3f} (α = {sizing['alpha']}):",
                "",
                "| Readers | Cases |",
                "|---|---|",
            ]
            for row in sizing["table"]:
                lines.append(f"| {row['readers']} | {row['cases'] or 'not reachable'} |")
            lines.append("")
    return lines


def reader_curves(items: list[PanelStats], modality: int) -> tuple[list, int]:
    """Each reader's empirical curve (fpr, tpr) in ``modality``, over ``items``' panels.

    A panel without both abnormal and normal cases (a site that saw only one kind) has no
    curve; its readers are counted, not drawn, and left out of the average.

    Returns
    -------
    curves : list of (numpy.ndarray, numpy.ndarray)
        (fpr, tpr) per reader with a curve, from (0, 0) to (1, 1).
    skipped : int
        Readers of panels without both kinds of case.
    """
    curves, skipped = [], 0
    for panel in items:
        for j in range(len(panel.readers)):
            reading = modality * len(panel.readers) + j
            pos, neg = panel.marginal(True, reading), panel.marginal(False, reading)
            if pos.sum() <= 0 or neg.sum() <= 0:
                skipped += 1
                continue
            tpr = np.concatenate([[0.0], np.cumsum(pos[::-1]) / pos.sum()])
            fpr = np.concatenate([[0.0], np.cumsum(neg[::-1]) / neg.sum()])
            curves.append((fpr, tpr))
    return curves, skipped


def plot_random_readers(panels: dict[str, list[PanelStats]], path: Path, label: str = ""):
    """Per panel: each reader's empirical ROC (or wAFROC) curve and the average per modality."""
    names = [n for n, items in panels.items() if items and all(p.cases for p in items)]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.8 * len(names), 4.8), squeeze=False)
    grid = np.linspace(0, 1, 101)
    colours = ("tab:blue", "tab:red", "tab:green")
    for ax, name in zip(axes[0], names, strict=True):
        items = panels[name]
        wafroc = figure_of_merit(name) == "wAFROC"
        ax.plot([0, 1], [0, 1], color="0.85", lw=0.8)
        for i, modality in enumerate(items[0].modalities):
            curves, skipped = reader_curves(items, i)
            for fpr, tpr in curves:
                ax.plot(fpr, tpr, color=colours[i % 3], lw=0.6, alpha=0.35)
                ax.scatter(fpr[1:-1], tpr[1:-1], color=colours[i % 3], s=6, alpha=0.35)
            if not curves:
                continue
            note = f"; {skipped} of one-class sites not drawn" if skipped else ""
            ax.plot(
                grid,
                np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves], axis=0),
                color=colours[i % 3],
                lw=2.0,
                label=f"{modality}: average of {len(curves)} readers{note}",
            )
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.01),
            xlabel="false-positive fraction (non-diseased)" if wafroc else "1 − specificity",
            ylabel="weighted lesion localisation fraction" if wafroc else "sensitivity",
            title=name,
        )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    if label:
        fig.suptitle(label, fontsize=9)
    return save_figure(fig, path)


def mrmc_markdown(result: dict) -> str:
    """Render a fully crossed OR/DBM analysis (``calcifl mrmc``)."""
    out, mods = result["results"], result["modalities"]
    t, r, c = (int(out[f"design.n_{k}"]) for k in ("modalities", "readers", "cases"))
    lines = [
        "# MRMC analysis",
        "",
        f"- {t} modalities ({', '.join(mods)}) × {r} readers × {c} cases "
        f"({out.get('design.n_abnormal', '?')} abnormal); empirical AUC.",
    ]
    if result.get("refused_rows"):
        lines.append(f"- Rows refused: {result['refused_rows']} (listed on the console).")
    lines += [
        "",
        "| Modality | AUC | 95% CI (random readers and cases, jackknife) |",
        "|---|---|---|",
    ]
    for i, m in enumerate(mods):
        pre = f"rrrc_jackknife.modality{i + 1}"
        ci = (out.get(f"{pre}.ci_lower"), out.get(f"{pre}.ci_upper"))
        lines.append(f"| {m} | {_f(out[f'auc.modality{i + 1}'])} | {_f(ci[0])}–{_f(ci[1])} |")
    lines += [
        "",
        "| Analysis | Statistic | df | P | 95% CI of the difference |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for cov in ("jackknife", "delong", "unbiased"):
        rows.append((f"OR random readers and cases ({cov})", f"rrrc_{cov}", "F", "df"))
        rows.append((f"OR fixed readers, random cases ({cov})", f"frrc_{cov}", "chisq", "df"))
    rows += [
        ("OR random readers, fixed cases", "rrfc", "F", "df"),
        ("DBM random readers and cases", "dbm_rrrc", "F", "df"),
        ("DBM fixed readers, random cases", "dbm_frrc", "F", "df"),
        ("DBM random readers, fixed cases", "dbm_rrfc", "F", "df"),
    ]
    for title, key, stat, df in rows:
        if f"{key}.{stat}" not in out:
            continue
        name = "χ²" if stat == "chisq" else "F"
        ci = f"{_f(out.get(f'{key}.ci_lower'), '+.4f')} to {_f(out.get(f'{key}.ci_upper'), '+.4f')}"
        lines.append(
            f"| {title} | {name} = {_f(out[f'{key}.{stat}'], '.4f')} | "
            f"{_f(out[f'{key}.{df}'], '.2f')} | {_p(out[f'{key}.p'])} | {ci} |"
        )
    lines += [
        "",
        "OR variance components (jackknife): "
        + ", ".join(
            f"{k} {_f(out.get(f'or_jackknife.{k}'), '.4g')}"
            for k in ("VarR", "VarTR", "Var", "Cov1", "Cov2", "Cov3")
        ),
    ]
    return "\n".join(lines) + "\n"

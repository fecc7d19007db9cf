"""Planning a reader study from a pilot: pilots from files, the size table and its plot."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.evaluation.report import save_figure  # noqa: E402
from common.study.fom import auc_covariances  # noqa: E402
from common.study.mrmc import analyse  # noqa: E402
from common.study.ratings import load_ratings  # noqa: E402
from common.study.sizing import Pilot, plan  # noqa: E402


def load_pilot(path: str | Path, panel: str | None = None) -> tuple[Pilot, str]:
    """Load a pilot from a ratings CSV (two modalities) or a ``reader_study.json``.

    Returns
    -------
    (Pilot, str)
        The variance components and a description of where they come from.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        ratings = load_ratings(path)
        t, r, c = ratings.values.shape
        if t != 2:
            raise ValueError(f"{path}: a pilot needs exactly two modalities, not {t}")
        theta, covs = auc_covariances(ratings.values.reshape(t * r, c), ratings.truth)
        out = analyse(theta.reshape(t, r), {"jackknife": covs["jackknife"]}, c)
        what = f"{path.name}: {r} readers, {c} cases ({' − '.join(ratings.modalities)})"
        return Pilot.from_analysis(out), what
    try:
        study = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the pilot: {exc}") from exc
    panels = study.get("random_readers", {})
    usable = {k: v for k, v in panels.items() if "variance_components" in v}
    if not usable:
        raise ValueError(f"{path}: no random-reader section with variance components")
    if panel is None:
        panel = next(iter(usable))
    if panel not in usable:
        raise ValueError(f"{path}: no panel '{panel}'; choose from {', '.join(usable)}")
    s = usable[panel]
    vc = s["variance_components"]
    groups = int(s["hospitals"])
    pilot = Pilot(
        vc["VarTR"],
        vc["Var"],
        vc["Cov1"],
        vc["Cov2"],
        vc["Cov3"],
        cases=max(1, round(s["cases"] / groups)),
        readers=int(s["readers"]),
        effect=s["difference"]["value"],
        groups=groups,
    )
    return pilot, f"{path.name}, panel '{panel}': {s['readers']} readers, {s['cases']} cases"


def plan_markdown(result: dict, source: str) -> str:
    """Render a :func:`common.study.sizing.plan` result."""
    p = result["pilot"]
    lines = [
        "# Reader-study size",
        "",
        f"- Pilot: {source}; per-group cases {p['cases']}; observed Δ AUC {p['effect']:+.3f}.",
        f"- Variance components (jackknife): σ²_TR {p['var_tr']:.3g}, Var {p['var']:.3g}, "
        f"Cov1 {p['cov1']:.3g}, Cov2 {p['cov2']:.3g}, Cov3 {p['cov3']:.3g}.",
        f"- Target: {100 * result['target_power']:.0f}% power to detect Δ AUC = "
        f"{result['effect']:.3f} at α = {result['alpha']} (two-sided), readers and cases "
        f"random; {result['method']}."
        + (
            f" {result['groups']} hospitals, readers and cases split evenly."
            if result["groups"] > 1
            else ""
        ),
        "",
        "| Readers | Cases needed | Power |",
        "|---|---|---|",
    ]
    for row in result["table"]:
        power = f"{row['power']:.3f}" if row["power"] else "—"
        lines.append(f"| {row['readers']} | {row['cases'] or 'not reachable'} | {power} |")
    return "\n".join(lines) + "\n"


def plot_plan(result: dict, path: Path) -> Path:
    """Power against cases, one curve per reader count, the target as a line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    cases = result["curves"]["cases"]
    for readers, power in result["curves"]["power"].items():
        ax.plot(cases, power, lw=1.4, label=f"{readers} readers")
    ax.axhline(result["target_power"], color="0.5", ls="--", lw=0.8)
    ax.set(
        xscale="log",
        ylim=(0, 1),
        xlabel="cases",
        ylabel="power",
        title=f"Power for Δ AUC = {result['effect']:.3f} (α = {result['alpha']})",
    )
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_plan(
    pilot_path: Path,
    out_dir: Path,
    effect: float | None = None,
    target: float = 0.8,
    alpha: float = 0.05,
    readers: tuple[int, ...] = (4, 6, 8, 10, 12, 16, 20),
    groups: int = 1,
    panel: str | None = None,
) -> dict:
    """Size a study from a pilot; write ``study_plan.json``, ``.md`` and ``.png``."""
    pilot, source = load_pilot(pilot_path, panel)
    if effect is None:
        effect = abs(pilot.effect)
        if not effect > 0:
            raise ValueError("the pilot shows no difference: give --effect")
    result = plan(pilot, effect, target, alpha, readers, groups)
    result["source"] = source
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "study_plan.json").write_text(json.dumps(result, indent=2))
    (out_dir / "study_plan.md").write_text(plan_markdown(result, source))
    plot_plan(result, out_dir / "study_plan.png")
    return result

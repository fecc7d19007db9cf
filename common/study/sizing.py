"""Reader-study sizing from a pilot's OR variance components.

Power of the random-reader, random-case OR test of two modalities (Hillis, Obuchowski &
Berbaum 2011, "Power estimation for multireader ROC methods: an updated and unified
approach", Acad Radiol 18:129–142, eq. 10): for r readers and c cases, with the pilot's
Var, Cov1..Cov3 (on c* cases, scaled by c*/c) and σ²_TR (negative estimates set to 0),

    den  = σ²_TR + (c*/c)·[Var − Cov1 + (r−1)·max(Cov2 − Cov3, 0)]
    ddf  = den² / {[σ²_TR + (c*/c)·(Var − Cov1 − max(Cov2 − Cov3, 0))]² / (r−1)}
    λ    = r·δ² / (2·den),     power = P(F(1, ddf; λ) > F_{1−α}(1, ddf)).

With ``groups`` > 1 the design is split-plot (each of G hospitals has r/G readers who read
its c/G cases; :func:`common.study.mrmc.split_plot`): the covariances scale with the cases
per group, r−1 in ``den`` becomes r/G − 1 and the Cov2 − Cov3 term of E[MS(T×R)] is
multiplied by k = (r/G − 1)/(r − 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Pilot:
    """OR variance components of a pilot study (two modalities).

    Attributes
    ----------
    var_tr : float
        Reader-by-modality variance σ²_TR.
    var, cov1, cov2, cov3 : float
        Error variance and covariances on ``cases`` cases (per group when ``groups`` > 1).
    effect : float
        The pilot's observed AUC difference (for reference).
    """

    var_tr: float
    var: float
    cov1: float
    cov2: float
    cov3: float
    cases: int
    readers: int
    effect: float = float("nan")
    groups: int = 1

    @classmethod
    def from_analysis(cls, out: dict, name: str = "jackknife") -> Pilot:
        """Take the components from an :func:`common.study.mrmc.analyse` or split-plot result."""
        if f"split_plot_{name}.VarTR" in out:
            key = f"split_plot_{name}"
            groups = int(out[f"{key}.groups"])
            return cls(
                out[f"{key}.VarTR"],
                *(out[f"{key}.{k}"] for k in ("Var", "Cov1", "Cov2", "Cov3")),
                cases=int(round(out[f"{key}.cases"] / groups)),
                readers=int(out[f"{key}.readers"]),
                effect=out.get(f"{key}.diff", float("nan")),
                groups=groups,
            )
        key = f"or_{name}"
        return cls(
            out[f"{key}.VarTR"],
            *(out[f"{key}.{k}"] for k in ("Var", "Cov1", "Cov2", "Cov3")),
            cases=int(out["design.n_cases"]),
            readers=int(out["design.n_readers"]),
            effect=out.get("auc.diff", float("nan")),
        )

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


def power(
    pilot: Pilot, readers: int, cases: int, effect: float, alpha: float = 0.05, groups: int = 1
) -> dict:
    """Power of the random-reader, random-case test for ``readers`` and ``cases``.

    ``cases`` is the study's total; with ``groups`` > 1 each group has cases/groups.
    """
    if readers < 2 or readers % groups:
        raise ValueError("need at least two readers, the same number in each group")
    scale = pilot.cases / (cases / groups)
    var_tr = max(pilot.var_tr, 0.0)
    gap = max(pilot.cov2 - pilot.cov3, 0.0)
    base = pilot.var - pilot.cov1
    per_group = readers // groups
    den = var_tr + scale * (base + (per_group - 1) * gap)
    ms_tr = var_tr + scale * (base - (per_group - 1) / (readers - 1) * gap)
    if not (den > 0 and ms_tr > 0):
        raise ValueError("the pilot's variance components leave no variance to size a study on")
    dof = readers - 1
    ddf = den**2 / (ms_tr**2 / dof)
    ncp = readers * effect**2 / (2 * den)
    crit = stats.f.ppf(1 - alpha, 1, ddf)
    return {
        "power": float(stats.ncf.sf(crit, 1, ddf, ncp)),
        "ddf": float(ddf),
        "ncp": float(ncp),
        "f_crit": float(crit),
    }


def cases_needed(
    pilot: Pilot,
    readers: int,
    effect: float,
    target: float = 0.8,
    alpha: float = 0.05,
    groups: int = 1,
    max_cases: int = 100_000,
) -> int | None:
    """Return the fewest cases (a multiple of ``groups``) reaching ``target``, or None."""

    def ok(c: int) -> bool:
        return power(pilot, readers, c, effect, alpha, groups)["power"] >= target

    hi = groups
    while not ok(hi):
        if hi >= max_cases:
            return None  # the reader variance alone keeps the power below the target
        hi = min(2 * hi, max_cases - max_cases % groups)
    lo = max(groups, hi // 2)
    if ok(lo):
        return lo
    while hi - lo > groups:  # power grows with cases: bisect on multiples of groups
        mid = (lo + hi) // 2 // groups * groups
        if mid <= lo:
            break
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def plan(
    pilot: Pilot,
    effect: float,
    target: float = 0.8,
    alpha: float = 0.05,
    readers: tuple[int, ...] = (4, 6, 8, 10, 12, 16, 20),
    groups: int = 1,
) -> dict:
    """Study-size table: cases needed per reader count, and power curves for a plot."""
    rows = []
    for r in readers:
        if r < 2 or r % groups:
            continue
        c = cases_needed(pilot, r, effect, target, alpha, groups)
        rows.append(
            {
                "readers": r,
                "cases": c,
                "power": power(pilot, r, c, effect, alpha, groups)["power"] if c else None,
            }
        )
    grid = np.unique(np.geomspace(max(20, groups), 2000, 40).astype(int) // groups * groups)
    curves = {
        str(row["readers"]): [
            power(pilot, row["readers"], int(c), effect, alpha, groups)["power"] for c in grid
        ]
        for row in rows
    }
    return {
        "pilot": pilot.to_dict(),
        "effect": effect,
        "target_power": target,
        "alpha": alpha,
        "groups": groups,
        "table": rows,
        "curves": {"cases": grid.tolist(), "power": curves},
        "method": "OR random readers and cases, Hillis, Obuchowski & Berbaum 2011 (eq. 10)"
        + ("; split-plot (readers and cases nested in hospitals)" if groups > 1 else ""),
    }

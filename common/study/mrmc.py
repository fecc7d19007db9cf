"""Multi-reader multi-case (MRMC) ROC analysis: Obuchowski–Rockette and DBM.

Input: the modalities × readers matrix of figures of merit (empirical AUCs) and their
error covariance matrix over cases (jackknife, DeLong or unbiased; see
:mod:`common.study.fom`). Output: a flat dict keyed as in OR-DBM MRMC / RJafroc / MRMCaov
reports (``rrrc_jackknife.F``, ``or_jackknife.Cov2``, ``dbm.MS_TC`` ...):

- **OR** (Obuchowski & Rockette 1995) with Hillis' denominator degrees of freedom
  (Hillis 2007): random readers and cases (``rrrc_*``), fixed readers and random cases
  (``frrc_*``, χ² test), random readers and fixed cases (``rrfc``);
- **DBM** (Dorfman, Berbaum & Metz 1992): the T×R×C ANOVA of jackknife pseudovalues. The
  pseudovalues' case cross-products are the jackknife covariance times c(c−1), so DBM needs
  no per-case value either. Its random-reader and fixed-case analyses equal OR's with the
  jackknife covariance; its fixed-reader test refers MS(T)/MS(TC) to F(t−1, (t−1)(c−1)).
- **split-plot** (:func:`split_plot`): readers and cases nested in groups (hospitals):
  the OR model's moment test for that covariance structure (Obuchowski 1995; Hillis 2014).

``diff`` is always modality 1 − modality 2 (for two modalities).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import stats

LEVEL = 0.95


def _quiet(fn):
    """Run ``fn`` with numpy's division warnings off: degenerate inputs give inf/nan."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _means(theta: np.ndarray) -> tuple[float, float, float]:
    """Mean squares of modality, reader and their interaction for a t × r matrix."""
    t, r = theta.shape
    grand = theta.mean()
    mt, mr = theta.mean(axis=1), theta.mean(axis=0)
    nan = np.float64("nan")
    ms_t = r * ((mt - grand) ** 2).sum() / (t - 1) if t > 1 else nan
    ms_r = t * ((mr - grand) ** 2).sum() / (r - 1) if r > 1 else nan
    inter = theta - mt[:, None] - mr[None, :] + grand
    ms_tr = (inter**2).sum() / ((t - 1) * (r - 1)) if t > 1 and r > 1 else nan
    # numpy scalars: a degenerate study (identical readers) gives inf/nan, not an exception
    return np.float64(ms_t), np.float64(ms_r), np.float64(ms_tr)


def _masks(t: int, r: int) -> dict[str, np.ndarray]:
    mod = np.repeat(np.arange(t), r)
    rdr = np.tile(np.arange(r), t)
    same_m, same_r = mod[:, None] == mod[None, :], rdr[:, None] == rdr[None, :]
    return {
        "Var": same_m & same_r,
        "Cov1": ~same_m & same_r,
        "Cov2": same_m & ~same_r,
        "Cov3": ~same_m & ~same_r,
        "mod": mod,
        "rdr": rdr,
    }


@_quiet
def or_covariances(cov: np.ndarray, t: int, r: int) -> dict[str, float]:
    """Return Var, Cov1, Cov2, Cov3 of a (t·r)² covariance matrix (modality-major).

    With the per-modality and per-reader averages and the correlations rho1..rho3.
    """
    cov = np.asarray(cov, dtype=np.float64)
    m = _masks(t, r)
    out = {k: np.float64(cov[m[k]].mean() if m[k].any() else "nan") for k in _COV}
    for k in ("rho1", "rho2", "rho3"):
        out[k] = out[f"Cov{k[-1]}"] / out["Var"]
    for i in range(t):
        sel = (m["mod"][:, None] == i) & (m["mod"][None, :] == i)
        out[f"Var_modality{i + 1}"] = np.float64(cov[sel & m["Var"]].mean())
        if r > 1:
            out[f"Cov2_modality{i + 1}"] = np.float64(cov[sel & m["Cov2"]].mean())
    for j in range(r):
        sel = (m["rdr"][:, None] == j) & (m["rdr"][None, :] == j)
        out[f"Var_reader{j + 1}"] = np.float64(cov[sel & m["Var"]].mean())
        if t > 1:
            out[f"Cov1_reader{j + 1}"] = np.float64(cov[sel & m["Cov1"]].mean())
    return out


_COV = ("Var", "Cov1", "Cov2", "Cov3")


def _t_ci(est: float, se: float, df: float, level: float) -> tuple[float, float]:
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return est - half, est + half


def _z_ci(est: float, se: float, level: float) -> tuple[float, float]:
    half = stats.norm.ppf(0.5 + level / 2) * se
    return est - half, est + half


def _f_test(key, ms_t, den, ddf, t, r, diff, level) -> dict:
    """F = MS(T)/den on (t−1, ddf) df; for two modalities the difference's SE, t and CI."""
    f = ms_t / den
    out = {f"{key}.F": f, f"{key}.df": ddf, f"{key}.p": float(stats.f.sf(f, t - 1, ddf))}
    out[f"{key}.den"] = den
    if t == 2:
        se = np.float64(np.sqrt(2 * den / r))
        lo, hi = _t_ci(diff, se, ddf, level)
        out.update({f"{key}.diff": diff, f"{key}.se": se, f"{key}.t": diff / se})
        out.update({f"{key}.ci_lower": lo, f"{key}.ci_upper": hi})
    return out


def _chisq_test(key, ms_t, den, t, r, diff, level) -> dict:
    """χ² = (t−1)·MS(T)/den on t−1 df (fixed readers); normal-theory CI for two."""
    chisq = (t - 1) * ms_t / den
    out = {f"{key}.chisq": chisq, f"{key}.df": float(t - 1), f"{key}.den": den}
    out[f"{key}.p"] = float(stats.chi2.sf(chisq, t - 1))
    if t == 2:
        se = np.float64(np.sqrt(2 * den / r))
        lo, hi = _z_ci(diff, se, level)
        out.update({f"{key}.diff": diff, f"{key}.se": se, f"{key}.z": diff / se})
        out.update({f"{key}.ci_lower": lo, f"{key}.ci_upper": hi})
    return out


@_quiet
def or_analysis(
    theta: np.ndarray, cov: np.ndarray, name: str = "jackknife", level: float = LEVEL
) -> dict[str, float]:
    """Obuchowski–Rockette analyses of one covariance estimate.

    Parameters
    ----------
    theta : numpy.ndarray
        (modalities, readers) figures of merit.
    cov : numpy.ndarray
        Their error covariance over cases, modality-major ((t·r) × (t·r)).
    name : str
        Estimator name, used in the keys (``or_<name>``, ``rrrc_<name>``, ``frrc_<name>``).

    Returns
    -------
    dict
        Flat keys: ``or_<name>.*`` (covariances, Var(R), Var(TR)), ``rrrc_<name>.*``
        (F, df, p, den, se, CI, per modality SE/df/CI), ``frrc_<name>.*`` (χ², p, CI, per
        modality and per reader), and ``or.*``, ``rrfc.*`` (which need no covariance).
    """
    theta = np.asarray(theta, dtype=np.float64)
    t, r = theta.shape
    ms_t, ms_r, ms_tr = _means(theta)
    c = or_covariances(cov, t, r)
    out: dict[str, float] = {f"or_{name}.{k}": v for k, v in c.items()}
    out.update({"or.MS_T": ms_t, "or.MS_R": ms_r, "or.MS_TR": ms_tr})
    mt = theta.mean(axis=1)
    for i in range(t):
        out[f"or.MS_R_modality{i + 1}"] = (
            np.float64(((theta[i] - mt[i]) ** 2).sum() / (r - 1)) if r > 1 else float("nan")
        )
    v, c1, c2, c3 = (c[k] for k in _COV)
    if r > 1:
        if t > 1:
            out[f"or_{name}.VarR"] = (ms_r - ms_tr) / t - c1 + c3
            out[f"or_{name}.VarTR"] = ms_tr - v + c1 + c2 - c3
            # RJafroc clamps Cov2 - Cov3 at zero inside Var(TR) (and so in Var(R))
            tr_rj = ms_tr - v + c1 + max(c2 - c3, 0.0)
            out[f"or_{name}.VarTR_rjafroc"] = tr_rj
            out[f"or_{name}.VarR_rjafroc"] = (
                ms_r - tr_rj - v - (t - 1) * c1 + c2 + (t - 1) * c3
            ) / t
    diff = float(mt[0] - mt[1]) if t == 2 else float("nan")
    if t > 1 and r > 1:
        # random readers and cases (Hillis 2007)
        den = ms_tr + r * max(c2 - c3, 0.0)
        ddf = den**2 / (ms_tr**2 / ((t - 1) * (r - 1)))
        out.update(_f_test(f"rrrc_{name}", ms_t, den, ddf, t, r, diff, level))
    if r > 1:
        for i in range(t):
            ms_ri = out[f"or.MS_R_modality{i + 1}"]
            c2i = max(c[f"Cov2_modality{i + 1}"], 0.0)
            se = np.float64(np.sqrt((ms_ri + r * c2i) / r))
            df = (ms_ri + r * c2i) ** 2 / (ms_ri**2 / (r - 1))
            lo, hi = _t_ci(float(mt[i]), se, df, level)
            pre = f"rrrc_{name}.modality{i + 1}"
            out.update({f"{pre}.se": se, f"{pre}.df": df, f"{pre}.ci_lower": lo})
            out[f"{pre}.ci_upper"] = hi
    if t > 1:
        # fixed readers, random cases: chi-square on t-1 df
        den = v - c1 + (r - 1) * max(c2 - c3, 0.0)
        key = f"frrc_{name}"
        out.update(_chisq_test(key, ms_t, den, t, r, diff, level))
        if t == 2:
            for j in range(r):
                d = float(theta[0, j] - theta[1, j])
                sej = np.float64(np.sqrt(2 * (c[f"Var_reader{j + 1}"] - c[f"Cov1_reader{j + 1}"])))
                lo, hi = _z_ci(d, sej, level)
                z = d / sej
                pre = f"{key}.reader{j + 1}"
                out.update({f"{pre}.diff": d, f"{pre}.se": sej, f"{pre}.z": z})
                out[f"{pre}.p"] = float(2 * stats.norm.sf(abs(z)))
                out.update({f"{pre}.ci_lower": lo, f"{pre}.ci_upper": hi})
    for i in range(t):
        c2i = max(c.get(f"Cov2_modality{i + 1}", 0.0), 0.0)
        se = np.float64(np.sqrt((c[f"Var_modality{i + 1}"] + (r - 1) * c2i) / r))
        lo, hi = _z_ci(float(mt[i]), se, level)
        pre = f"frrc_{name}.modality{i + 1}"
        out.update({f"{pre}.se": se, f"{pre}.ci_lower": lo, f"{pre}.ci_upper": hi})
    out.update(rrfc(theta, level))
    return out


@_quiet
def rrfc(theta: np.ndarray, level: float = LEVEL) -> dict[str, float]:
    """Random readers, fixed cases: F = MS(T)/MS(TR) (for two modalities, a paired t test)."""
    theta = np.asarray(theta, dtype=np.float64)
    t, r = theta.shape
    out: dict[str, float] = {}
    if r < 2:
        return out
    ms_t, _, ms_tr = _means(theta)
    mt = theta.mean(axis=1)
    if t > 1:
        f = ms_t / ms_tr
        df = float((t - 1) * (r - 1))
        out.update({"rrfc.F": f, "rrfc.df": df, "rrfc.p": float(stats.f.sf(f, t - 1, df))})
        if t == 2:
            diff = float(mt[0] - mt[1])
            se = np.float64(np.sqrt(2 * ms_tr / r))
            lo, hi = _t_ci(diff, se, df, level)
            out.update({"rrfc.se": se, "rrfc.t": diff / se})
            out.update({"rrfc.ci_lower": lo, "rrfc.ci_upper": hi})
    for i in range(t):
        ms_ri = np.float64(((theta[i] - mt[i]) ** 2).sum() / (r - 1))
        se = np.float64(np.sqrt(ms_ri / r))
        lo, hi = _t_ci(float(mt[i]), se, r - 1, level)
        pre = f"rrfc.modality{i + 1}"
        out.update({f"{pre}.se": se, f"{pre}.ci_lower": lo, f"{pre}.ci_upper": hi})
    return out


@_quiet
def dbm_analysis(
    theta: np.ndarray, cov_jackknife: np.ndarray, cases: int, level: float = LEVEL
) -> dict[str, float]:
    """Dorfman–Berbaum–Metz: the T×R×C ANOVA of the jackknife pseudovalues.

    The pseudovalues' means are the AUCs (exactly, for the Wilcoxon AUC) and their case
    cross-products are c(c−1) times the jackknife covariance, which is all the ANOVA uses.
    """
    theta = np.asarray(theta, dtype=np.float64)
    t, r = theta.shape
    c = int(cases)
    s = (c - 1) * c * np.asarray(cov_jackknife, dtype=np.float64)  # Σ_k z_k z_kᵀ
    # contrast matrices on the (t·r) vector of one case's centred pseudovalues
    e_t, e_r = np.eye(t) - 1.0 / t, np.eye(r) - 1.0 / r
    j_t, j_r = np.full((t, t), 1.0 / t), np.full((r, r), 1.0 / r)

    def ss(a: np.ndarray) -> float:
        return float(np.trace(a @ s))

    ss_c = ss(np.kron(j_t, j_r))
    ss_tc = ss(np.kron(e_t, j_r))
    ss_rc = ss(np.kron(j_t, e_r))
    ss_trc = ss(np.kron(e_t, e_r))
    ms_t, ms_r, ms_tr = (c * x for x in _means(theta))
    ms_c = ss_c / (c - 1)
    ms_tc = ss_tc / ((t - 1) * (c - 1)) if t > 1 else float("nan")
    ms_rc = ss_rc / ((r - 1) * (c - 1)) if r > 1 else float("nan")
    ms_trc = ss_trc / ((t - 1) * (r - 1) * (c - 1)) if t > 1 and r > 1 else float("nan")
    out = {
        "dbm.MS_T": ms_t,
        "dbm.MS_R": ms_r,
        "dbm.MS_TR": ms_tr,
        "dbm.MS_C": ms_c,
        "dbm.MS_TC": ms_tc,
        "dbm.MS_RC": ms_rc,
        "dbm.MS_TRC": ms_trc,
        "dbm.VarErr": ms_trc,
        "dbm.VarTC": (ms_tc - ms_trc) / r,
        "dbm.VarRC": (ms_rc - ms_trc) / t,
        "dbm.VarTR": (ms_tr - ms_trc) / c,
        "dbm.VarC": (ms_c - ms_tc - ms_rc + ms_trc) / (t * r),
        "dbm.VarR": (ms_r - ms_tr - ms_rc + ms_trc) / (t * c),
    }
    if t < 2 or r < 2:
        return out
    mt = theta.mean(axis=1)

    def f_test(key: str, den: float, ddf: float) -> dict:
        f = ms_t / den
        p = float(stats.f.sf(f, t - 1, ddf))
        return {f"{key}.F": f, f"{key}.df": ddf, f"{key}.den": den, f"{key}.p": p}

    den = ms_tr + max(ms_tc - ms_trc, 0.0)
    out.update(f_test("dbm_rrrc", den, den**2 / (ms_tr**2 / ((t - 1) * (r - 1)))))
    df = float((t - 1) * (c - 1))
    out.update(f_test("dbm_frrc", ms_tc, df))
    if t == 2:
        diff = float(mt[0] - mt[1])
        se = np.float64(np.sqrt(2 * ms_tc / (r * c)))
        lo, hi = _t_ci(diff, se, df, level)
        out.update({"dbm_frrc.se": se, "dbm_frrc.t": diff / se})
        out.update({"dbm_frrc.ci_lower": lo, "dbm_frrc.ci_upper": hi})
    out.update(f_test("dbm_rrfc", ms_tr, float((t - 1) * (r - 1))))
    return out


def analyse(
    theta: np.ndarray,
    covariances: dict[str, np.ndarray],
    cases: int,
    normal: int | None = None,
    level: float = LEVEL,
) -> dict[str, float]:
    """Every analysis of a fully crossed study, as one flat dict.

    Parameters
    ----------
    theta : numpy.ndarray
        (modalities, readers) AUCs.
    covariances : dict
        Estimator name (``jackknife``, ``delong``, ``unbiased``) → covariance matrix; DBM is
        computed when ``jackknife`` is present.
    cases, normal : int
        Number of cases (and of normal ones, for the design keys).
    """
    theta = np.asarray(theta, dtype=np.float64)
    t, r = theta.shape
    out: dict[str, float] = {
        "design.n_modalities": t,
        "design.n_readers": r,
        "design.n_cases": int(cases),
    }
    if normal is not None:
        out.update({"design.n_normal": int(normal), "design.n_abnormal": int(cases - normal)})
    mt = theta.mean(axis=1)
    for i in range(t):
        out[f"auc.modality{i + 1}"] = float(mt[i])
        for j in range(r):
            out[f"auc.modality{i + 1}.reader{j + 1}"] = float(theta[i, j])
    if t == 2:
        out["auc.diff"] = float(mt[0] - mt[1])
    for name, cov in covariances.items():
        out.update(or_analysis(theta, cov, name, level))
    if "jackknife" in covariances:
        out.update(dbm_analysis(theta, covariances["jackknife"], cases, level))
    return out


@_quiet
def split_plot(
    theta: np.ndarray,
    cov: np.ndarray,
    groups: np.ndarray,
    name: str = "jackknife",
    level: float = LEVEL,
) -> dict[str, float]:
    """OR analysis, random readers and cases, of a split-plot design.

    Readers are nested in groups (hospitals) and so are cases: each reader reads every case
    of their own group under every modality, nothing of another group (Obuchowski 1995;
    Hillis 2014 analyses the same design). Covariances between readers of different groups
    are zero by design, so Cov2 and Cov3 are averaged over pairs of readers of the same
    group. With r_g readers in group g, r* = Σ r_g² / r (r for one group, 1 for one reader
    per group) and k = (r* − 1)/(r − 1), the OR model gives, under the null hypothesis,

        E[MS(T)]   = σ²_TR + Var − Cov1 + (r* − 1)(Cov2 − Cov3)
        E[MS(T×R)] = σ²_TR + Var − Cov1 − k (Cov2 − Cov3)

    hence F = MS(T) / [MS(T×R) + r·k·max(Cov2 − Cov3, 0)] with Hillis-type denominator
    df = den² / [MS(T×R)² / ((t−1)(r−1))]. One group is the crossed OR test; one reader
    per group (each reader their own cases) is the paired t test of the readers'
    differences. Per modality, SE² = [MS_R,i + r·k·max(Cov2_i, 0)] / r likewise.

    Parameters
    ----------
    theta : numpy.ndarray
        (modalities, readers) AUCs, each reader's on their own group's cases.
    cov : numpy.ndarray
        Error covariance (modality-major), zero between readers of different groups.
    groups : array of int
        Each reader's group.
    """
    theta = np.asarray(theta, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    groups = np.asarray(groups)
    t, r = theta.shape
    labels = sorted(set(groups.tolist()))
    sizes = np.array([(groups == g).sum() for g in labels])
    m = _masks(t, r)
    same_g = groups[m["rdr"]][:, None] == groups[m["rdr"]][None, :]
    v = np.float64(cov[m["Var"]].mean())
    c1 = np.float64(cov[m["Cov1"]].mean())
    within2, within3 = m["Cov2"] & same_g, m["Cov3"] & same_g
    c2 = np.float64(cov[within2].mean()) if within2.any() else np.float64(0.0)
    c3 = np.float64(cov[within3].mean()) if within3.any() else np.float64(0.0)
    ms_t, ms_r, ms_tr = _means(theta)
    mt = theta.mean(axis=1)
    key = f"split_plot_{name}"
    out = {
        f"{key}.groups": len(labels),
        f"{key}.readers": r,
        f"{key}.Var": v,
        f"{key}.Cov1": c1,
        f"{key}.Cov2": c2,
        f"{key}.Cov3": c3,
        f"{key}.MS_T": ms_t,
        f"{key}.MS_R": ms_r,
    }
    for i in range(t):
        out[f"{key}.modality{i + 1}"] = float(mt[i])
    if r < 2 or t < 2:
        out[f"{key}.note"] = "fewer than two readers: no reader variance"
        return out
    r_star = float((sizes**2).sum() / r)
    k = (r_star - 1) / (r - 1)
    gap = max(c2 - c3, 0.0)
    den = ms_tr + r * k * gap
    dof = (t - 1) * (r - 1)
    ddf = den**2 / (ms_tr**2 / dof)
    var_tr = ms_tr - v + c1 + k * (c2 - c3)
    out.update(
        {
            f"{key}.MS_TR": ms_tr,
            f"{key}.r_star": r_star,
            f"{key}.VarTR": var_tr,
            f"{key}.VarR": (ms_r - var_tr - v - (t - 1) * c1 + k * (c2 + (t - 1) * c3)) / t,
        }
    )
    for i in range(t):
        sel = m["Cov2"] & same_g & (m["mod"][:, None] == i) & (m["mod"][None, :] == i)
        c2i = max(np.float64(cov[sel].mean()) if sel.any() else 0.0, 0.0)
        ms_ri = np.float64(((theta[i] - mt[i]) ** 2).sum() / (r - 1))
        var_i = ms_ri + r * k * c2i
        se = np.float64(np.sqrt(var_i / r))
        df = var_i**2 / (ms_ri**2 / (r - 1))
        lo, hi = _t_ci(float(mt[i]), se, df, level)
        pre = f"{key}.modality{i + 1}"
        out.update({f"{pre}.se": se, f"{pre}.df": df, f"{pre}.ci_lower": lo})
        out[f"{pre}.ci_upper"] = hi
    diff = float(mt[0] - mt[1]) if t == 2 else float("nan")
    out.update(_f_test(key, ms_t, den, ddf, t, r, diff, level))
    # fixed readers, random cases: only the cases vary
    den_f = v - c1 + (r_star - 1) * gap
    out.update(_chisq_test(f"split_plot_frrc_{name}", ms_t, den_f, t, r, diff, level))
    return out

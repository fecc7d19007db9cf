"""Reader-study definition: arms, cases, per-site statistics, pooling and release."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from common.data.folders import load_hospital
from common.data.records import ImageRecord, ReaderRead
from common.evaluation.images import BreastScore
from common.evaluation.metrics import RocStats
from common.study.arms import (
    Arm,
    ArmReader,
    Case,
    StudyConfig,
    StudyStats,
    build_cases,
    default_arms,
    default_comparisons,
    model_threshold,
    study_stats,
)


def test_arm_parsing():
    assert Arm.parse("senior-1") == Arm("senior-1", ("senior-1",))
    assert Arm.parse("junior-1:aided") == Arm("junior-1:aided", ("junior-1",), aided=True)
    assert Arm.parse("senior-1+junior-1+model") == Arm(
        "senior-1+junior-1+model", ("senior-1", "junior-1"), model=True
    )
    assert Arm.parse("model") == Arm("model", (), model=True)
    assert Arm.parse("j1+j2@s1") == Arm("j1+j2@s1", ("j1", "j2"), arbiter="s1")
    assert Arm.parse("j1:aided+j2:aided@s1+model") == Arm(
        "j1:aided+j2:aided@s1+model", ("j1", "j2"), aided=True, model=True, arbiter="s1"
    )
    for bad, why in [
        ("a+", "empty"),
        ("a:helped", "not ':aided'"),
        ("a:aided+b", "mix"),
        ("a+a", "twice"),
        ("a+b@a", "twice"),
        ("a@b", "exactly two"),
        ("a+b@c+d", "one reader"),
    ]:
        with pytest.raises(ValueError, match=why):
            Arm.parse(bad)


def test_default_arms_and_comparisons_follow_the_paper():
    readers = {"senior-1": "senior", "junior-1": "junior", "junior-2": "junior"}
    arms = default_arms(readers, {"senior-1", "junior-1", "junior-2"})
    for arm in (
        "model",
        "senior-1",
        "junior-1:aided",
        "junior-2+model",
        "senior-1+junior-1",
        "junior-1+junior-2",
        "junior-1:aided+junior-2:aided",
        "senior-1+junior-1+model",
    ):
        assert arm in arms
    comparisons = default_comparisons(arms)
    assert "junior-1 vs junior-1:aided" in comparisons
    assert "junior-1 vs junior-1+model" in comparisons
    assert "junior-1+junior-2 vs junior-1:aided+junior-2:aided" in comparisons
    assert "model vs senior-1" in comparisons
    assert default_arms({"r": "senior"}, set(), model=False) == ["r"]


def test_study_config_json_and_errors(tmp_path):
    config = StudyConfig(arms=("model", "r1"), comparisons=("model vs r1",), recall_from=3)
    assert StudyConfig.from_json(config.to_json()) == config
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"arms": ["r1"], "recal_from": 4}))
    with pytest.raises(ValueError, match=r"study.json: unknown study setting\(s\): recal_from"):
        StudyConfig.load(path)
    with pytest.raises(ValueError, match="not 'ARM vs ARM'"):
        StudyConfig(comparisons=("model versus r1",))
    with pytest.raises(ValueError, match="consensus"):
        StudyConfig(consensus="mean")


def _read(reader, birads, aided=False, role="junior"):
    return ReaderRead("p", "p", "L", reader, role, birads, None, aided)


def test_arm_rules_consensus_and_second_reader():
    case = Case(
        "malignant",
        {},
        {
            ("a", False): _read("a", 3),
            ("b", False): _read("b", 4),
            ("a", True): _read("a", 1, True),
        },
        BreastScore(0.8, 0.9, True),
    )
    reader = ArmReader(StudyConfig(), model_threshold=0.5)
    score_a, call_a, seen_a = reader.outputs(Arm.parse("a"), case)
    assert (call_a, seen_a) == (False, True)  # BI-RADS 3: reported, not recalled
    assert reader.outputs(Arm.parse("a+b"), case)[1] is True  # either recalls
    assert ArmReader(StudyConfig(consensus="min"), 0.5).outputs(Arm.parse("a+b"), case)[1] is False
    assert reader.outputs(Arm.parse("a:aided"), case)[1:] == (False, False)  # BI-RADS 1
    score, call, seen = reader.outputs(Arm.parse("a+model"), case)
    assert call and seen and score == pytest.approx(StudyConfig().recall_cut())
    assert score > score_a
    assert reader.outputs(Arm.parse("model"), case) == (0.8, True, True)
    assert reader.outputs(Arm.parse("c"), case) is None
    # arbitration: a (no recall) and b (recall) disagree, so the arbiter decides
    case.reads[("s", False)] = _read("s", 5, role="senior")
    assert reader.outputs(Arm.parse("a+b@s"), case) == (1.0 * 5 / 6, True, True)
    case.reads[("s", False)] = _read("s", 2, role="senior")
    assert reader.outputs(Arm.parse("a+b@s"), case)[1] is False
    case.reads[("b", False)] = _read("b", 3)  # now they agree (no recall): arbiter unused
    assert reader.outputs(Arm.parse("a+b@s"), case)[:2] == (3 / 6, False)
    # BI-RADS 0 (incomplete) is a recall
    zero = Case("normal", {}, {("a", False): _read("a", 0)})
    assert reader.outputs(Arm.parse("a"), zero)[1] is True


def _site_cases(root, seed):
    data = load_hospital(root, echo=False)
    test = [im for im in data.images if im.split == "test"] or data.images
    rng = np.random.default_rng(seed)
    model = {}
    for im in test:
        y = im.label == "malignant"
        s = float(np.clip(0.35 + 0.35 * y + 0.2 * rng.standard_normal(), 0, 1))
        model[im.breast_key] = BreastScore(s, float(rng.uniform()), y)
    return data, build_cases(test, data.reads, model)


def _close(a, b, path="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    elif isinstance(a, (int, float)):
        assert b == pytest.approx(a, abs=1e-9), path
    else:
        assert a == b, path


def test_pooled_study_equals_the_union(consortium):
    config = StudyConfig(bins=200)
    sites = [_site_cases(root, i) for i, root in enumerate(sorted(consortium.glob("hospital-*")))]
    per_site = [study_stats(cases, config, 0.5) for _, cases in sites]
    pooled = sum(per_site[1:], per_site[0])
    # travel as JSON, as from a hospital
    pooled = StudyStats.from_dict(json.loads(json.dumps(pooled.to_dict())))
    union = {}
    for i, (_, cases) in enumerate(sites):
        union.update({(i, *k): c for k, c in cases.items()})
    central = study_stats(union, config, 0.5)
    _close(pooled.summary(), central.summary())
    summary = central.summary()
    arms = summary["all"]["arms"]
    assert {"model", "senior-1", "junior-1:aided", "senior-1+junior-1+model"} <= set(arms)
    assert summary["all"]["cases"] == sum(len(c) for _, c in sites)
    assert "pathology=benign" in summary
    assert any(name.startswith("density=") for name in summary)
    assert any(name.startswith("calc_type=") for name in summary)
    comparison = summary["all"]["comparisons"]["junior-1 vs junior-1:aided"]
    assert {"sensitivity", "specificity", "miss_rate", "detection_miss_rate", "auc"} <= set(
        comparison
    )
    assert 0 <= comparison["auc"]["p"] <= 1


def test_missing_reads_are_counted_not_dropped(consortium):
    data, cases = _site_cases(consortium / "hospital-1", 0)
    key = next(iter(cases))
    del cases[key].reads[("junior-1", True)]
    stats = study_stats(cases, StudyConfig(), 0.5)
    assert stats.excluded == {"missing read for junior-1:aided": 1}
    assert stats.strata["all"]["cases"] == len(cases) - 1
    # an arm no one at this site reads is listed, not silently dropped
    stats = study_stats(cases, StudyConfig(arms=("senior-1", "senior-9")), 0.5)
    assert stats.unavailable == ["senior-9 (no reads by senior-9)"]


def _arm_vectors(stratum: dict) -> dict:
    """Every arm of a stratum as one vector of counts (ROC histograms and 2x2 counts)."""
    out = {}
    for name, arm in stratum["arms"].items():
        counts = [getattr(arm, k) for k in ("tp", "fn", "fp", "tn", "calcified", "detected")]
        out[name] = np.concatenate([arm.roc.pos, arm.roc.neg, counts]).astype(np.int64)
    return out


def _recover(released: StudyStats, factor_values: dict) -> dict:
    """The coordinator's attack: a withheld value = ``all`` minus its released siblings."""
    strata, found = released.strata, {}
    if "all" not in strata:
        return found
    for factor, values in factor_values.items():
        hidden = [v for v in values if f"{factor}={v}" not in strata]
        if len(hidden) == 1:
            diff = _arm_vectors(strata["all"])
            for v in values:
                if v != hidden[0]:
                    for arm, vec in _arm_vectors(strata[f"{factor}={v}"]).items():
                        diff[arm] = diff[arm] - vec
            found[f"{factor}={hidden[0]}"] = diff
    return found


def test_release_withholds_small_strata_and_survives_differencing(consortium):
    # one larger site: the consortium's cases, findings repeated so that "all" is released
    cases = {}
    for i, root in enumerate(sorted(consortium.glob("hospital-*"))):
        for k, c in _site_cases(root, i)[1].items():
            for j in range(6 if c.malignant else 3 if c.calcified else 1):
                cases[(i, j, *k)] = c
    stats = study_stats(cases, StudyConfig(), 0.5)
    min_cell = 3
    small = {
        n
        for n, s in stats.strata.items()
        if any(0 < c < min_cell for c in [s["cases"], *s["classes"].values()])
    }
    assert small and "all" not in small
    factor_values = {}
    for name in stats.strata:
        if "=" in name:
            f, _, v = name.partition("=")
            factor_values.setdefault(f, []).append(v)
    # suppressing the small strata alone is undone by subtraction
    naive = StudyStats(stats.bins, {n: s for n, s in stats.strata.items() if n not in small})
    recovered = _recover(naive, factor_values)
    assert recovered
    for name, diff in recovered.items():
        truth = _arm_vectors(stats.strata[name])
        assert all(np.array_equal(diff[arm], truth[arm]) for arm in truth), name
    # the release withholds every value of a factor with a small one: nothing to subtract
    released = stats.release(min_cell)
    assert small <= set(released.withheld)
    assert set(released.strata) == set(stats.strata) - set(released.withheld)
    assert "all" in released.strata
    out = StudyStats.from_dict(json.loads(json.dumps(released.to_dict())))  # as received
    assert _recover(out, factor_values) == {}
    assert out.withheld == sorted(released.withheld)


def test_build_cases_truth_and_strata():
    from common.data.records import Finding

    def image(lat, findings, density=3):
        return ImageRecord(Path("x.dcm"), "p", "p", lat, "CC", density, "test", findings)

    benign = Finding("1", pathology="benign", calc_types=("ROUND",))
    malignant = Finding("2", pathology="malignant", calc_types=("FINE_LINEAR_BRANCHING",))
    cases = build_cases(
        [image("L", [benign]), image("L", [benign, malignant]), image("R", [])],
        [_read("a", 4), _read("a", 2, aided=True)],
    )
    left, right = cases[("p", "p", "L")], cases[("p", "p", "R")]
    assert left.truth == "malignant" and left.strata["calc_type"] == "FINE_LINEAR_BRANCHING"
    assert right.strata == {"density": "C", "pathology": "normal", "calc_type": "none"}
    assert set(left.reads) == {("a", False), ("a", True)} and not right.reads


def test_model_threshold_from_validation():
    roc = RocStats.from_scores([0.1, 0.3, 0.6, 0.8, 0.9, 0.2], [0, 1, 1, 1, 1, 0], bins=100)
    assert model_threshold(roc, StudyConfig(target_sensitivity=0.75)) == pytest.approx(0.6)
    assert model_threshold(roc, StudyConfig(model_threshold=0.42)) == 0.42
    with pytest.raises(ValueError, match="no malignant validation breast"):
        model_threshold(RocStats.from_scores([0.1], [0]), StudyConfig())


def test_exam_level_study_merges_breasts(consortium):
    from common.study.arms import exam_cases

    _, breasts = _site_cases(consortium / "hospital-2", 3)
    exams = exam_cases(breasts)
    assert len(exams) == len({k[:2] for k in breasts})
    for (patient, exam), case in exams.items():
        group = [c for k, c in breasts.items() if k[:2] == (patient, exam)]
        assert case.malignant == any(c.malignant for c in group)
        assert case.model.score == max(c.model.score for c in group)
        read = case.reads[("junior-1", False)]
        assert read.birads in {c.reads[("junior-1", False)].birads for c in group}
    by_breast = study_stats(breasts, StudyConfig(), 0.5).summary()["all"]
    by_exam = study_stats(breasts, StudyConfig(unit="exam"), 0.5).summary()["all"]
    assert by_exam["cases"] == len(exams) < by_breast["cases"]
    # an exam is recalled when either breast is: the exam recall rate is not lower
    assert (
        by_exam["arms"]["junior-1"]["recall_rate"]["value"]
        >= (by_breast["arms"]["junior-1"]["recall_rate"]["value"])
    )

"""The random-reader section: panels per hospital, split-plot summary, table and figure."""

import warnings

import numpy as np

from common.study.arms import StudyStats
from common.study.panel import PanelStats
from common.study.randomreaders import (
    plot_random_readers,
    random_reader_markdown,
    random_reader_summaries,
    reader_curves,
)
from common.study.report import study_markdown, study_result, write_study

SETUP = {
    "recall_from": 4,
    "reader_score": "birads",
    "consensus": "max",
    "model_threshold": 0.5,
    "threshold_source": "given",
    "detection_threshold": 0.5,
}


def _panel(seed, readers, cases=80, gain=0.5, same=False):
    rng = np.random.default_rng(seed)
    truth = rng.random(cases) < 0.35
    case = rng.normal(size=cases)
    shape = (1 if same else len(readers), cases)
    base = case + 1.2 * truth + rng.normal(size=shape)
    aided = base + gain * truth + 0.5 * rng.normal(size=shape)
    x = np.stack(
        [
            np.broadcast_to(base, (len(readers), cases)),
            np.broadcast_to(aided, (len(readers), cases)),
        ]
    )
    levels = np.digitize(x, [-1, 0, 1, 2])
    return PanelStats.from_cases(levels, truth, ("unaided", "aided"), readers, 5, True)


def _stats(panels):
    return StudyStats(
        panels={"junior: unaided vs aided": panels},
        provenance={"readers": "simulated", "assistance": "simulated from the model"},
    )


def test_sites_add_side_by_side_and_are_analysed_split_plot():
    a, b = _stats([_panel(0, ("j1", "j2"))]), _stats([_panel(1, ("j1", "j2", "j3"))])
    pooled = a + b
    assert [len(p.readers) for p in pooled.panels["junior: unaided vs aided"]] == [2, 3]
    s = random_reader_summaries(pooled.panels)["junior: unaided vs aided"]
    assert s["design"].startswith("split-plot")
    assert s["readers"] == 5 and s["cases"] == 160
    assert s["auc"]["aided"]["value"] > s["auc"]["unaided"]["value"]
    rrrc = s["analyses"]["random readers and cases (OR, Hillis df)"]
    assert 0 <= rrrc["p"] <= 1 and rrrc["df"][1] > 0
    assert s["sizing"]["table"][0]["readers"] == 4
    one = random_reader_summaries(a.panels)["junior: unaided vs aided"]
    assert "DBM random readers and cases" in one["analyses"]


def test_degenerate_panels_are_reported_not_fatal(tmp_path):
    # identical readers: no reader-by-modality variance; one reader: no reader variance
    pooled = _stats([_panel(2, ("j1", "j2"), same=True)]) + _stats([_panel(3, ("j9",))])
    result, stats = study_result({"h1": pooled}, SETUP)
    lines = random_reader_markdown(result["random_readers"])
    assert any("junior: unaided vs aided" in line for line in lines)


def test_tables_and_figure_say_readers_and_assistance_are_simulated(tmp_path):
    pooled = _stats([_panel(4, ("j1", "j2", "j3"))])
    pooled.strata = {}
    result, stats = study_result({"h1": pooled}, SETUP)
    result["pooled"]["all"] = {"cases": 0, "classes": {}, "arms": {}, "comparisons": {}}
    md = study_markdown(result)
    assert md.count("**Simulated readers**") >= 2
    assert "federated model's own marks and scores" in md
    assert "## Random-reader analysis (MRMC)" in md
    paths = write_study(tmp_path, result, stats)
    assert paths["readers"].stat().st_size > 10_000


def test_constant_ratings_give_undefined_statistics_not_errors():
    truth = np.arange(40) < 15
    levels = np.full((2, 3, 40), 2)
    panel = PanelStats.from_cases(levels, truth, ("unaided", "aided"), ("a", "b", "c"), 5, True)
    s = random_reader_summaries({"p": [panel], "q": [panel, panel]})
    assert s["p"]["auc"]["unaided"]["value"] == 0.5
    assert not np.isfinite(s["p"]["analyses"]["random readers and cases (OR, Hillis df)"]["F"])
    assert random_reader_markdown(s)


def test_release_withholds_small_panels_and_lists_them():
    stats = _stats([_panel(5, ("j1", "j2"), cases=30)])
    panel = stats.panels["junior: unaided vs aided"][0]
    smallest = min(panel.abnormal, panel.normal)
    kept = stats.release(smallest)
    assert kept.panels and not kept.withheld
    held = StudyStats.from_dict(stats.release(smallest + 1).to_dict())
    assert held.panels == {}
    assert held.withheld == ["panel junior: unaided vs aided"]


def test_a_site_with_one_kind_of_case_is_counted_not_drawn(tmp_path):
    both = _panel(0, ("j1", "j2"))
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 5, size=(2, 3, 12))
    normal_only = PanelStats.from_cases(
        levels, np.zeros(12, bool), ("unaided", "aided"), ("a", "b", "c"), 5, True
    )
    curves, skipped = reader_curves([normal_only, both], 1)
    assert (len(curves), skipped) == (2, 3)
    for fpr, tpr in curves:
        assert np.isfinite(fpr).all() and np.isfinite(tpr).all()
        assert fpr[-1] == tpr[-1] == 1.0
    # each drawn curve is its reader's: the second panel's first reader in modality 1
    pos, neg = both.marginal(True, 2), both.marginal(False, 2)
    assert np.allclose(curves[0][1][1:], np.cumsum(pos[::-1]) / pos.sum())
    assert np.allclose(curves[0][0][1:], np.cumsum(neg[::-1]) / neg.sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by an empty class
        path = plot_random_readers({"junior": [normal_only, both]}, tmp_path / "r.png")
    assert path is not None and path.stat().st_size > 10_000

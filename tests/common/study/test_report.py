"""Reader-study outputs: the paper-style Markdown table and the ROC figure."""

import json

import numpy as np
import pytest

from common.data.records import ReaderRead
from common.evaluation.images import BreastScore
from common.study.arms import Case, StudyConfig, study_stats
from common.study.report import p_value, study_result, study_setup, write_study


def _cases(n=60, seed=0):
    rng = np.random.default_rng(seed)
    cases = {}
    for i in range(n):
        truth = ["normal", "benign", "malignant"][i % 3]
        case = Case(truth, {"pathology": truth, "density": "B", "calc_type": "none"})
        for reader, aided in (("senior-1", False), ("senior-1", True)):
            birads = int(np.clip(round(1 + 2 * (truth == "malignant") + rng.normal()), 1, 5))
            case.reads[(reader, aided)] = ReaderRead(
                str(i), str(i), "L", reader, "senior", birads, None, aided
            )
        case.model = BreastScore(float(rng.uniform()), 0.9, truth == "malignant")
        cases[(str(i), str(i), "L")] = case
    return cases


@pytest.mark.parametrize(
    "p, text", [(0.0004, "<0.001"), (0.0123, "0.012"), (float("nan"), "—"), (None, "—")]
)
def test_p_values_as_papers_write_them(p, text):
    assert p_value(p) == text


def test_markdown_table_and_figure(tmp_path):
    config = StudyConfig(model_threshold=0.5)
    sites = {
        "h1": study_stats(_cases(60, 0), config, 0.5),
        "h2": study_stats(_cases(30, 1), config, 0.5).release(15),
    }
    result, pooled = study_result(sites, study_setup(config, 0.5, None))
    paths = write_study(tmp_path, result, pooled)
    text = paths["markdown"].read_text()
    assert "| senior-1:aided |" in text and "| senior-1 vs senior-1:aided |" in text
    assert "## By pathology" in text and "### benign" in text and "## By hospital" in text
    assert "Withheld by hospitals' release policy (minimum cell size): h2:" in text
    assert "Model operating point: 0.500 (given)" in text
    data = json.loads(paths["json"].read_text())  # strict JSON: no NaN
    assert data["pooled"]["all"]["cases"] == 60 + sites["h2"].strata.get("all", {}).get("cases", 0)
    assert data["pooled"]["pathology=benign"]["arms"]["model"]["sensitivity"]["value"] is None
    assert paths["roc"].stat().st_size > 10_000

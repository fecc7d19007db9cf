"""The reader-assist study in a real Flower simulation and as ``calcifl reader-study``.

The pooled federated table must equal the table computed centrally on the union of the
hospitals' cases (same model, same binning), and the standalone command must agree.
"""

import functools
import json
import operator
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.data.cache import PreprocessCache
from common.evaluation.metrics import RocStats
from common.evaluation.report import clean_json
from common.hospital.service import stored_spacing
from common.learning.material import site_study_data, validation_split
from common.learning.models import load_run
from common.learning.samples import ImageStore
from common.study.arms import StudyConfig, build_cases, model_threshold, study_stats
from common.study.assist import aid_scale, model_assisted_reads
from common.study.local import breast_scores, scores_roc
from common.study.randomreaders import random_reader_summaries
from common.synth.readers import load_simulated_readers
from tests.common.study.test_arms import _close


@pytest.fixture(scope="module")
def study_run(tmp_path_factory) -> Path:
    # the acceptance command, on small synthetic hospitals and a short training
    out = tmp_path_factory.mktemp("study-run") / "run"
    args = [
        "--synthetic",
        "--hospitals",
        "3",
        "--exams",
        "14",
        "--out",
        str(out),
        "--rounds",
        "1",
        "--detector-epochs",
        "1",
        "--classifier-epochs",
        "2",
        "--reader-study",
        "-q",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def study_data(study_run) -> list[Path]:
    return sorted((study_run / "data").glob("hospital-*"))


def test_simulation_writes_the_study_table_and_figure(study_run):
    for name in ("reader_study.md", "reader_study.json", "reader_study_roc.png"):
        assert (study_run / name).is_file(), name
    table = (study_run / "reader_study.md").read_text()
    assert "| junior-1:aided |" in table and "## By pathology" in table
    assert "## By hospital" in table and "McNemar" in table
    # the random-reader section, and what is simulated said above every table
    assert "## Random-reader analysis (MRMC)" in table
    assert "### junior: unaided vs aided — " in table
    # the simulated readers' marks: wAFROC per arm, with no reader left without marks
    assert "### junior: unaided vs aided (wAFROC) — " in table
    assert "| Modality | wAFROC (95% CI) | df |" in table or "Not analysed" in table
    assert "has reads without marks" not in table
    label = "**Simulated readers** (calcifl's reader model, not radiologists); aided reads"
    assert table.count(label) >= table.count("| Arm |")
    assert "federated model's own marks and scores" in table
    result = json.loads((study_run / "reader_study.json").read_text())
    assert result["provenance"] == {
        "readers": "simulated",
        "assistance": "simulated from the model",
    }
    assert "junior: unaided vs aided (wAFROC)" in result["random_readers"]
    juniors = result["random_readers"]["junior: unaided vs aided"]
    # each hospital's own two juniors; a hospital this small may lack two malignant breasts
    assert juniors["readers_per_hospital"] == [2] * juniors["hospitals"]
    assert juniors["hospitals"] >= 2
    if "analyses" in juniors:
        assert "random readers and cases (OR, Hillis df)" in juniors["analyses"]
        assert juniors["sizing"]["table"]
    else:
        assert juniors["note"]
    assert (study_run / "reader_study_readers.png").stat().st_size > 10_000
    report = json.loads((study_run / "report.json").read_text())
    assert sorted(report["reader_study"]["sites"]) == ["hospital-1", "hospital-2", "hospital-3"]
    assert "Reader-assist study" in (study_run / "report.md").read_text()


def test_pooled_federated_study_equals_the_union(study_run, study_data):
    result = json.loads((study_run / "reader_study.json").read_text())
    models, options, cascade, spec = load_run(study_run)
    store = ImageStore(PreprocessCache(None, options))
    config = StudyConfig(assistance="simulated-model")
    union, validation, sites = {}, RocStats.empty(config.bins), []
    for i, root in enumerate(study_data):
        train, test, reads = site_study_data(root, seed=spec["seed"])
        scores = breast_scores(models, test, store, cascade)
        val = validation_split(train, spec["val_fraction"], spec["seed"])["val"]
        val_scores = breast_scores(models, val, store, cascade)
        # the simulated readers read again with the federated model's marks and scores
        reads = model_assisted_reads(
            reads,
            test,
            scores,
            *load_simulated_readers(root),
            aid_scale(val_scores),
            config.detection_threshold,
            spec["seed"],
        )
        cases = build_cases(test, reads, scores, stored_spacing(store))
        sites.append(cases)
        union.update({(i, *k): c for k, c in cases.items()})
        validation = validation + scores_roc(val_scores, config.bins)
    threshold = model_threshold(validation, config)
    assert result["setup"]["model_threshold"] == pytest.approx(threshold, abs=1e-12)
    central = clean_json(study_stats(union, config, threshold).summary())
    _close(result["pooled"], central)
    assert result["pooled"]["all"]["cases"] == len(union)
    # random readers: each hospital's own panel, side by side (readers never matched)
    per_site = [study_stats(cases, config, threshold) for cases in sites]
    pooled = functools.reduce(operator.add, per_site)
    _close(result["random_readers"], clean_json(random_reader_summaries(pooled.panels)))


def test_standalone_reader_study_agrees(study_run, study_data, tmp_path):
    out = tmp_path / "study"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "reader-study",
            "--model",
            str(study_run),
            "--data",
            *map(str, study_data),
            "--out",
            str(out),
            "--assistance",
            "simulated-model",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    local = json.loads((out / "reader_study.json").read_text())
    federated = json.loads((study_run / "reader_study.json").read_text())
    _close(local["pooled"], federated["pooled"])
    _close(local["random_readers"], federated["random_readers"])
    assert local["per_site"].keys() == federated["per_site"].keys()
    assert (out / "reader_study_roc.png").stat().st_size > 10_000


def test_standalone_study_refuses_a_bad_study_file(study_run, study_data, tmp_path):
    bad = tmp_path / "study.json"
    bad.write_text(json.dumps({"arms": ["senior-1", "senior-1+"]}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "reader-study",
            "--model",
            str(study_run),
            "--data",
            str(study_data[0]),
            "--study",
            str(bad),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400"},  # one log line, unwrapped
    )
    assert done.returncode == 2
    assert "study.json" in done.stderr and "senior-1+" in done.stderr


def test_bad_reader_rows_are_named_and_the_rest_used(study_run, study_data, tmp_path):
    import shutil

    site = tmp_path / "hospital-1"
    shutil.copytree(study_data[0], site)
    reads = site / "reader_reads.csv"
    lines = reads.read_text().splitlines()
    header = lines[0].split(",")
    bad = dict(zip(header, lines[1].split(","), strict=True))
    bad.update(birads="9", reader_id="senior-1", aided="no", patient_id="P_X")
    reads.write_text("\n".join([*lines, ",".join(bad[h] for h in header)]) + "\n")
    before = reads.read_bytes()
    out = tmp_path / "study"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "reader-study",
            "--model",
            str(study_run),
            "--data",
            str(site),
            "--out",
            str(out),
            "--model-threshold",
            "0.5",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"row {len(lines) + 1}" in done.stderr and "birads" in done.stderr
    result = json.loads((out / "reader_study.json").read_text())
    assert result["setup"]["refused_inputs"] == {"hospital-1": 1}
    assert result["pooled"]["all"]["cases"] > 0
    assert reads.read_bytes() == before  # the source is only read

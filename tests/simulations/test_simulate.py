"""Real Flower simulations (Ray backend) on tiny synthetic hospitals.

Covers the federated acceptance: the aggregated model moves, pooled evaluation equals the
centralised computation on the union of held-out sets, a run killed after round 1
resumes to the same final weights, a hospital over its privacy budget is refused
while the others train, and two DP runs with one seed give different models.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.data.cache import PreprocessCache
from common.evaluation.images import evaluate_images
from common.learning.models import flat_state, load_run
from common.learning.samples import ImageStore
from server.federation import initial_models
from server.settings import RunSettings
from simulations.baselines import site_splits
from simulations.simulate import SimulationSetup, hospital_nodes, run_simulation

ARGS = ["--rounds", "2", "--detector-epochs", "1", "--classifier-epochs", "2", "-q"]


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "cli.main", "simulate", *args]


@pytest.fixture(scope="module")
def hospitals(consortium) -> list[Path]:
    return [consortium / "hospital-1", consortium / "hospital-2"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, hospitals) -> Path:
    out = tmp_path_factory.mktemp("sim") / "full"
    done = subprocess.run(
        _cli("--data", *map(str, hospitals), "--out", str(out), *ARGS),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    models, *_ = load_run(run_dir)
    return {k: v.numpy() for k, v in flat_state(models).items()}


def test_federated_run_moves_the_model_and_writes_the_report(full_run):
    report = json.loads((full_run / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert all(sorted(r["trained"]) == ["hospital-1", "hospital-2"] for r in report["rounds"])
    assert all(r["sampled"] == 2 for r in report["rounds"])
    settings = RunSettings.from_config(report["settings"])
    start = {k: v.numpy() for k, v in flat_state(initial_models(settings)).items()}
    final = _weights(full_run)
    assert start.keys() == final.keys()
    assert not any("_module" in k for k in final)  # no Opacus wrapper names travel
    moved = [k for k in final if not np.allclose(start[k], final[k])]
    assert len(moved) > len(final) // 2
    for name in ("report.md", "rounds.png", "roc.png", "froc.png", "model.json"):
        assert (full_run / name).is_file(), name
    assert "Federated run" in (full_run / "report.md").read_text()
    # the operating point: calibrated on the hospitals' validation images, saved, reported
    # (a hospital too small to hold validation patients refuses, and is counted)
    marks = report["marks"]
    assert marks["sites"] and len(marks["sites"]) + len(marks["failed"]) == 2
    assert all("no validation images" in f["reason"] for f in marks["failed"])
    spec = json.loads((full_run / "model.json").read_text())
    assert spec["cascade"]["mark_threshold"] == marks["threshold"] is not None
    full = report["final"]["pooled"]["summary"]["detection"]["full_field"]
    assert full["mark_threshold"] == marks["threshold"]
    assert "Operating point (marks)" in (full_run / "report.md").read_text()
    # sizes per round: the payload is the fp32 weights plus small per-array headers
    fp32 = report["parameter_bytes_fp32"]
    for r in report["rounds"]:
        assert fp32 <= r["bytes_sent_to_site"] <= 1.05 * fp32


def test_pooled_evaluation_equals_evaluation_on_the_union(full_run, hospitals):
    report = json.loads((full_run / "report.json").read_text())
    settings = RunSettings.from_config(report["settings"])
    nodes = hospital_nodes(hospitals, full_run / "unused")
    union = [im for _, test in site_splits(nodes, settings.seed).values() for im in test]
    models, read, cascade, _ = load_run(full_run)
    stats, _ = evaluate_images(models, union, ImageStore(PreprocessCache(None, read)), cascade)
    pooled = report["final"]["pooled"]["statistics"]
    assert json.loads(json.dumps(stats.to_dict())) == pooled
    assert set(report["final"]["per_site"]) == {"hospital-1", "hospital-2"}
    assert stats.froc.images == len(union) > 0


def test_killed_run_resumes_to_the_same_result(tmp_path, hospitals, full_run):
    out = tmp_path / "killed"
    cmd = _cli("--data", *map(str, hospitals), "--out", str(out), *ARGS)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    latest = out / "checkpoints" / "latest.json"
    deadline = time.time() + 300
    try:
        while not latest.is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its Ray workers, mid round 2
        proc.wait(timeout=60)
    assert json.loads(latest.read_text())["round"] == 1
    assert not (out / "report.json").exists()
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_from_round"] == 1
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    resumed, uninterrupted = _weights(out), _weights(full_run)
    for k, v in uninterrupted.items():
        np.testing.assert_allclose(resumed[k], v, rtol=0, atol=1e-6, err_msg=k)


def test_hospital_over_budget_is_refused_while_others_train(tmp_path, hospitals):
    nodes = hospital_nodes(hospitals, tmp_path / "state")
    nodes[1]["privacy-total-budget"] = 0.5  # far below what one DP round costs
    settings = RunSettings(
        num_server_rounds=2,
        detector_epochs=1,
        classifier_epochs=2,
        dp=True,
        dp_epsilon=8.0,
        out_dir=str(tmp_path / "run"),
        min_available_nodes=2,
        min_train_nodes=2,
        min_evaluate_nodes=2,
        federation="budget-test",
    )
    report = run_simulation(settings, SimulationSetup(nodes), progress=False)
    for r in report["rounds"]:
        assert r["trained"] == ["hospital-1"]
        (refusal,) = r["refused"]
        assert refusal["site"] == "hospital-2" and refusal["code"] == 4001
        assert "privacy-total-budget" in refusal["reason"]
        assert r["per_site"]["hospital-1"]["det-epsilon"] > 0
    from common.hospital.ledger import PrivacyLedger

    ledger1 = PrivacyLedger(tmp_path / "state/hospital-1/privacy_ledger.json", "hospital-1")
    releases = ledger1.releases("detector")
    assert {r["federation"] for r in releases} == {"budget-test"}
    eps = [r["epsilon"] for r in releases]
    assert len(eps) == 2 and eps[0] < eps[1] <= 8.0 + 1e-6  # cumulative, within the target
    assert all("det-train-loss" not in r["sent"] for r in releases)
    ledger2 = PrivacyLedger(tmp_path / "state/hospital-2/privacy_ledger.json", "hospital-2")
    assert ledger2.models() == []  # refused before any step: nothing spent
    # but its statistics left, each release in its ledger
    assert {e["kind"] for e in ledger2.evaluations()} == {"evaluate", "mark-calibrate"}
    audit = [
        json.loads(x) for x in (tmp_path / "state/hospital-2/audit.jsonl").read_text().splitlines()
    ]
    assert [e["status"] for e in audit if e["message"] == "train"] == ["refused", "refused"]
    assert "refused" in (tmp_path / "run" / "report.md").read_text().lower()
    # what the coordinator received under DP: no loss, no step count
    sent = report["rounds"][-1]["per_site"]["hospital-1"]
    assert not [k for k in sent if "loss" in k or "steps" in k], sent
    assert sent["dp-delta"] == 1e-5 and "composed-epsilon" in sent
    assert "composed ε" in (tmp_path / "run" / "report.md").read_text()
    # the same run again, same seed, fresh ledgers: the noise differs, so does the model
    again = hospital_nodes(hospitals, tmp_path / "state-2")
    again[1]["privacy-total-budget"] = 0.5
    rerun = RunSettings(**{**vars(settings), "out_dir": str(tmp_path / "run-2")})
    run_simulation(rerun, SimulationSetup(again), progress=False)
    first, second = _weights(tmp_path / "run"), _weights(tmp_path / "run-2")
    moved = [k for k in first if not np.array_equal(first[k], second[k])]
    assert len(moved) > len(first) // 2, moved


def test_federated_run_folder_serves_evaluate_and_predict(full_run, hospitals, tmp_path):
    from cli.main import main

    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(full_run),
                "--data",
                str(hospitals[0]),
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["summary"]["detection"]["images"] > 0
    image = next(hospitals[1].rglob("Calc-*_CC/*/*/000000.dcm"))
    assert (
        main(["predict", "--model", str(full_run), str(image), "--out", str(tmp_path / "pred")])
        == 0
    )
    assert list((tmp_path / "pred").glob("*.png"))


def test_central_dp_clips_adds_calibrated_noise_and_stops_at_its_budget(tmp_path, hospitals):
    from common.learning.dp import epsilon

    clip, noise = 0.05, 1.0
    budget = epsilon([(noise, 1.0, 1)], 1e-5) + 0.1  # room for one noised round, not two
    settings = RunSettings(
        num_server_rounds=2,
        detector_epochs=1,
        classifier_epochs=1,
        central_dp=True,
        central_dp_clip=clip,
        central_dp_noise=noise,
        central_dp_epsilon=budget,
        out_dir=str(tmp_path / "run"),
        min_available_nodes=2,
        min_train_nodes=2,
        min_evaluate_nodes=2,
        federation="central-dp-test",
    )
    nodes = hospital_nodes(hospitals, tmp_path / "state")
    report = run_simulation(settings, SimulationSetup(nodes), progress=False)
    (r1,) = report["rounds"]
    assert "round 2" in report["stopped"] and "budget" in report["stopped"]
    dp = r1["central_dp"]
    assert dp["hospitals"] == 2 and dp["epsilon"] == pytest.approx(epsilon([(noise, 1.0, 1)], 1e-5))
    assert r1["unclipped"] == [] and r1["bounded"] == []  # the hospitals clipped themselves
    assert all(v <= clip * 1.0001 for v in r1["update_norms"].values())
    # final - initial = mean of two clipped updates (norm <= clip) + N(0, (noise clip / 2)²)
    start = {k: v.numpy() for k, v in flat_state(initial_models(settings)).items()}
    final = _weights(tmp_path / "run")
    diff = np.concatenate([(final[k] - start[k]).ravel() for k in final])
    assert diff.std() == pytest.approx(noise * clip / 2, rel=0.03)
    md = (tmp_path / "run" / "report.md").read_text()
    assert "central DP" in md and f"{dp['epsilon']:.2f}" in md
    audit = (tmp_path / "state/hospital-1/audit.jsonl").read_text()
    assert '"central_dp_clip": 0.05' in audit


def test_a_film_hospital_states_its_scanners_spacing(tmp_path):
    from common.synth.generate import SynthConfig, synthesize

    dirs = synthesize(
        tmp_path / "data",
        SynthConfig(hospitals=2, exams=2, seed=3, vendors=("aurora", "halide")),
        progress=False,
    )
    digital, film = hospital_nodes(dirs, tmp_path / "state")
    assert "fallback-spacing" not in digital and film["fallback-spacing"] == 0.05
    # what the operator sets wins
    assert (
        hospital_nodes(dirs, tmp_path / "s", **{"fallback-spacing": 0.07})[1]["fallback-spacing"]
        == 0.07
    )

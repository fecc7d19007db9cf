"""One poisoned hospital: plain FedAvg degrades, robust aggregation + update bounding holds.

Real Flower simulations (Ray) on synthetic hospitals; the attacker is the simulation
factory's ``simulate-attack`` (sign-flipped, scaled updates). Slow: three federated runs.
"""

import pytest

from client.app import parse_attack
from server.settings import RunSettings
from simulations.simulate import SimulationSetup, hospital_nodes, run_simulation


def test_attack_parsing():
    assert parse_attack("sign-flip:5") == -5.0 and parse_attack("scale:3") == 3.0
    with pytest.raises(ValueError, match="sign-flip:K or scale:K"):
        parse_attack("noise:1")


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    from common.synth.generate import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("robust-data")
    return synthesize(out, SynthConfig(hospitals=5, exams=24, seed=21), progress=False)


def _run(tmp_path, sites, name: str, attack: bool, **settings) -> dict:
    nodes = hospital_nodes(sites, tmp_path / name / "state", tmp_path / "cache")
    if attack:  # the smallest hospital turns malicious
        nodes[1]["simulate-attack"] = "sign-flip:4"
    run = RunSettings(
        num_server_rounds=2,
        detector_epochs=2,
        classifier_epochs=4,
        min_available_nodes=5,
        min_train_nodes=5,
        min_evaluate_nodes=5,
        eval_every=2,
        out_dir=str(tmp_path / name / "run"),
        **settings,
    )
    report = run_simulation(run, SimulationSetup(nodes), progress=False)
    return report


@pytest.mark.slow
def test_poisoned_hospital_robust_run_stays_close_to_clean(tmp_path, sites):
    def auc(report):
        return report["final"]["pooled"]["summary"]["breast"]["auc"]

    clean = _run(tmp_path, sites, "clean", attack=False)
    plain = _run(tmp_path, sites, "plain", attack=True)
    robust = _run(
        tmp_path,
        sites,
        "robust",
        attack=True,
        strategy="fedtrimmedavg",
        trim_beta=0.2,
        update_norm_median=1.0,
    )
    print(
        f"breast AUC clean {auc(clean):.3f}, poisoned FedAvg {auc(plain):.3f}, "
        f"poisoned trimmed+bounded {auc(robust):.3f}"
    )
    assert abs(auc(robust) - auc(clean)) <= 0.05
    assert auc(plain) < auc(clean) - 0.05
    last = robust["rounds"][-1]
    assert "hospital-2" in last["bounded"]  # the attacker's update was scaled down
    norms = last["update_norms"]
    assert norms["hospital-2"] > 2 * max(v for k, v in norms.items() if k != "hospital-2")

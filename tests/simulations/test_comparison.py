"""Federated vs baselines table, and the simulation's node and backend settings."""

import numpy as np

from common.evaluation.images import EvalStats
from common.evaluation.metrics import RocStats
from simulations.comparison import compare, comparison_markdown, plot_comparison
from simulations.simulate import (
    SimulationSetup,
    auto_cpus,
    backend_config,
    hospital_nodes,
    partition_nodes,
)


def _stats(seed: int) -> EvalStats:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40)
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 40), 0, 1)
    return EvalStats(breast_roc=RocStats.from_scores(s, y), finding_roc=RocStats.from_scores(s, y))


def test_pooled_rows_sum_the_sites(tmp_path):
    fed = {"a": _stats(1), "b": _stats(2)}
    report = {"final": {"per_site": {k: {"statistics": v.to_dict()} for k, v in fed.items()}}}
    baselines = {
        "centralised": {"per_site": {"a": _stats(3), "b": _stats(4)}, "train_seconds": 1.0},
        "local-only": {"per_site": {"a": _stats(5)}, "train_seconds": {"a": 1.0}},
    }
    table = compare(report, baselines)
    pooled = fed["a"] + fed["b"]
    assert table["pooled"]["federated"]["breast_auc"] == pooled.breast_roc.auc()
    assert table["sites"]["a"]["local-only"]["cluster_auc"] == _stats(5).finding_roc.auc()
    assert "local-only" not in table["sites"]["b"]
    md = comparison_markdown(table)
    assert "| **pooled** |" in md and "| b |" in md and "–" in md
    assert plot_comparison(table, tmp_path / "c.png").stat().st_size > 1000


def test_nodes_and_backend(tmp_path):
    nodes = hospital_nodes(
        [tmp_path / "north", tmp_path / "south"], tmp_path / "st", None, **{"min-cell": 5}
    )
    assert [n["hospital-id"] for n in nodes] == ["north", "south"]
    assert nodes[0]["state-dir"] == str(tmp_path / "st" / "north") and nodes[1]["min-cell"] == 5
    parts = partition_nodes(tmp_path / "pool", 3, "dirichlet:0.5", 7, tmp_path / "st")
    assert [p["partition"] for p in parts] == ["0/3", "1/3", "2/3"]
    assert {p["partition-scheme"] for p in parts} == {"dirichlet:0.5"}
    local = backend_config(SimulationSetup(nodes, cpus_per_client=2))
    assert local["client_resources"]["num_cpus"] == 2
    assert local["init_args"]["_node_ip_address"] == "127.0.0.1"  # loopback only
    assert backend_config(SimulationSetup(nodes))["client_resources"]["num_cpus"] == auto_cpus(2)
    assert (auto_cpus(3, cores=2), auto_cpus(2, cores=2), auto_cpus(3, cores=16)) == (2, 1, 5)
    remote = backend_config(SimulationSetup(nodes, ray_address="10.0.0.5:6379"))
    assert remote["init_args"]["address"] == "10.0.0.5:6379"
    assert "_node_ip_address" not in remote["init_args"]


def test_progress_line_names_rounds_and_hospitals():
    from simulations.simulate import round_line

    record = {
        "trained": ["hospital-1", "hospital-3"],
        "refused": [{"site": "hospital-2", "code": 4001, "reason": "budget"}],
        "dropped": [],
        "seconds": 12.4,
    }
    line = round_line(1, 3, record, hospitals=3)
    assert line.startswith("round 1/3 · 2/3 hospitals trained (hospital-2 did not)")
    assert "round 2 training" in line and "AUC" not in line
    summary = {"breast": {"auc": 0.91}, "classification": {"auc": 0.8}}
    record = {
        "trained": ["a", "b", "c"],
        "seconds": 3,
        "evaluation": {"pooled": {"summary": summary}},
    }
    line = round_line(3, 3, record, hospitals=3)
    assert "3/3 hospitals trained" in line and "breast AUC 0.910" in line
    assert "training" not in line

"""``calcifl privacy STATE_DIR``: a hospital reads every release in its own ledger."""

import json

import pytest

from cli.main import main
from common.hospital.ledger import PrivacyLedger
from common.learning.dp import epsilon


def test_privacy_prints_every_release_with_epsilon_and_delta(tmp_path, capsys):
    ledger = PrivacyLedger(tmp_path / "privacy_ledger.json", "site-1a2b")
    for federation, server_round in (("trial-a", 1), ("trial-a", 2), ("trial-b", 1)):
        with ledger.book() as book:
            rid = book.plan("detector", federation, "run-1", server_round, 1.2, 0.05, 40, 1e-5)
        ledger.settle({"detector": (rid, 38)}, sent={"weights": "both models", "det-epsilon": 1})
    with ledger.book() as book:
        book.plan("classifier", "trial-b", "run-1", 1, 1.5, 0.1, 20, 1e-5)  # never settled
    ledger.record_evaluation("evaluate", "trial-b", "run-1", 1, 7, ["froc"], ["eval-stats"])
    assert main(["privacy", str(tmp_path), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("| detector | done | 38 |") == 3 and "| classifier | planned | 20 |" in out
    assert "trial-a" in out and "trial-b" in out and "| evaluate | trial-b |" in out
    assert "group privacy" in out and "δ 1e-05" in out
    report = json.loads((tmp_path / "s.json").read_text())["hospitals"]["site-1a2b"]
    history = [(1.2, 0.05, 38)] * 3 + [(1.5, 0.1, 20)]
    assert report["epsilon"]["composed"] == pytest.approx(epsilon(history, 1e-5))
    assert report["epsilon"]["detector"] == pytest.approx(epsilon(history[:3], 1e-5))


def test_privacy_without_a_ledger_says_so(tmp_path, capsys):
    assert main(["privacy", str(tmp_path)]) == 2
    assert "no privacy ledger" in capsys.readouterr().err

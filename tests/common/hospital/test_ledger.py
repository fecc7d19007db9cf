"""The hospital's privacy ledger: cumulative, per federation, crash-safe, strict."""

import json
import multiprocessing as mp

import pytest

from common.hospital.ledger import PrivacyLedger
from common.learning.dp import epsilon

STEP = (1.1, 0.01, 100)


def test_spending_accumulates_and_survives_a_restart(tmp_path):
    path = tmp_path / "ledger.json"
    a = PrivacyLedger(path, "fed")
    e1 = a.record("detector", [STEP], 1e-5, 1.1, "run-1", 1, 100, final=True)
    b = PrivacyLedger(path, "fed")  # a new process would read the same file
    assert b.history("detector") == [STEP]
    e2 = b.record("detector", [STEP, STEP], 1e-5, 1.1, "run-2", 1, 100, final=True)
    assert 0 < e1 < e2 == pytest.approx(epsilon([STEP, STEP], 1e-5))
    assert PrivacyLedger(path, "fed").spent("detector") == pytest.approx(e2)
    assert [r["run"] for r in b.entry("detector")["rounds"]] == ["run-1", "run-2"]


def test_federations_and_models_are_separate(tmp_path):
    path = tmp_path / "ledger.json"
    PrivacyLedger(path, "fed-a").record("detector", [STEP], 1e-5, 1.1, "r", 1, 100, True)
    assert PrivacyLedger(path, "fed-b").spent("detector") == 0.0
    assert PrivacyLedger(path, "fed-a").spent("classifier") == 0.0


def test_planned_entry_is_replaced_by_the_final_one(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", "fed")
    planned = ledger.record("classifier", [STEP], 1e-5, 1.1, "r", 3, 100, final=False)
    assert ledger.spent("classifier") == pytest.approx(planned)  # a crash now counts as spent
    done = ledger.record("classifier", [(1.1, 0.01, 60)], 1e-5, 1.1, "r", 3, 60, final=True)
    rounds = ledger.entry("classifier")["rounds"]
    assert len(rounds) == 1 and rounds[0]["status"] == "done" and done < planned


def test_damaged_ledger_and_changed_delta_are_refused(tmp_path):
    path = tmp_path / "l.json"
    ledger = PrivacyLedger(path, "fed")
    ledger.record("detector", [STEP], 1e-5, 1.1, "r", 1, 100, True)
    with pytest.raises(RuntimeError, match="δ changed"):
        ledger.record("detector", [STEP, STEP], 1e-6, 1.1, "r", 2, 100, True)
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="not valid JSON"):
        ledger.spent("detector")


def _writer(path, model):
    ledger = PrivacyLedger(path, "fed")
    for i in range(1, 6):
        ledger.record(model, [(1.1, 0.01, 10 * i)], 1e-5, 1.1, "r", i, 10, True)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "l.json"
    procs = [
        mp.get_context("spawn").Process(target=_writer, args=(path, m))
        for m in ("detector", "classifier")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    data = json.loads(path.read_text())["federations"]["fed"]
    assert len(data["detector"]["rounds"]) == len(data["classifier"]["rounds"]) == 5

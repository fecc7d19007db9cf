"""The hospital's privacy ledger: per hospital and model, crash-safe, strict, race-free."""

import json
import multiprocessing as mp

import pytest

from common.hospital.ledger import PrivacyLedger
from common.learning.dp import epsilon

STEP = (1.1, 0.01, 100)
DELTA = 1e-5


def _release(ledger, model, federation="fed", run="r", server_round=1, steps=100):
    with ledger.book() as book:
        rid = book.plan(model, federation, run, server_round, STEP[0], STEP[1], steps, DELTA)
    return rid


def test_spending_accumulates_over_federations_and_survives_a_restart(tmp_path):
    path = tmp_path / "ledger.json"
    a = PrivacyLedger(path, "north")
    _release(a, "detector", federation="fed-a")
    b = PrivacyLedger(path, "north")  # a new process reads the same file
    assert b.history("detector") == [STEP]
    # a new federation name is no fresh budget
    _release(b, "detector", federation="fed-b", run="other")
    assert b.spent("detector", DELTA) == pytest.approx(epsilon([STEP, STEP], DELTA))
    assert [r["federation"] for r in b.releases("detector")] == ["fed-a", "fed-b"]
    assert b.spent("classifier", DELTA) == 0.0
    assert PrivacyLedger(path, "south").spent("detector", DELTA) == 0.0


def test_planned_steps_count_until_settled_with_those_taken(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", "north")
    rid = _release(ledger, "classifier", server_round=3)
    planned = ledger.spent("classifier", DELTA)
    assert planned > 0  # a crash now counts as spent
    ledger.settle({"classifier": (rid, 60)}, sent={"weights": "both models", "cls-epsilon": 1.0})
    (line,) = ledger.releases("classifier")
    assert (line["status"], line["steps"], line["planned_steps"]) == ("done", 60, 100)
    assert line["sent"] == {"weights": "both models", "cls-epsilon": 1.0}
    assert line["epsilon"] == pytest.approx(ledger.spent("classifier", DELTA))
    assert 0 < ledger.spent("classifier", DELTA) < planned


def test_composed_epsilon_covers_both_models(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", "north")
    _release(ledger, "detector")
    _release(ledger, "classifier")
    det, both = ledger.spent("detector", DELTA), ledger.composed(DELTA)
    assert both == pytest.approx(epsilon([STEP, STEP], DELTA)) and det < both <= 2 * det


def test_a_failed_transaction_writes_nothing(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", "north")
    with pytest.raises(RuntimeError, match="refused"), ledger.book() as book:
        book.plan("detector", "fed", "r", 1, *STEP, DELTA)
        raise RuntimeError("refused by a cap")
    assert ledger.history("detector") == []


def test_a_damaged_ledger_is_refused(tmp_path):
    path = tmp_path / "l.json"
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="not valid JSON"):
        PrivacyLedger(path, "north").spent("detector", DELTA)


def test_a_format_1_ledger_keeps_every_federation_s_spending(tmp_path):
    path = tmp_path / "l.json"
    entry = {"history": [list(STEP)], "delta": 1e-3, "noise_multiplier": 1.1, "rounds": []}
    path.write_text(
        json.dumps(
            {"format": 1, "federations": {"a": {"detector": entry}, "b": {"detector": entry}}}
        )
    )
    ledger = PrivacyLedger(path, "north")
    assert ledger.history("detector") == [STEP, STEP]
    _release(ledger, "detector")
    assert json.loads(path.read_text())["format"] == 2
    assert len(ledger.history("detector")) == 3


def test_evaluations_are_counted_as_releases(tmp_path):
    ledger = PrivacyLedger(tmp_path / "l.json", "north")
    ledger.record_evaluation("evaluate", "fed", "r", 2, 6, ["breast_roc"], ["eval-stats"])
    (line,) = ledger.evaluations()
    assert (line["kind"], line["round"], line["tables"], line["withheld"]) == (
        "evaluate",
        2,
        6,
        ["breast_roc"],
    )


def _spender(path, rounds):
    ledger = PrivacyLedger(path, "north")
    for i in range(rounds):
        with ledger.book() as book:
            rid = book.plan("detector", "fed", "r", i, 1.1, 0.01, 10, 1e-5)
        ledger.settle({"detector": (rid, 10)}, sent={"weights": "both models"})


def test_two_processes_spending_on_one_model_record_every_step(tmp_path):
    path, rounds = tmp_path / "l.json", 8
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_spender, args=(path, rounds)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    releases = PrivacyLedger(path, "north").releases("detector")
    assert len(releases) == 2 * rounds
    assert sum(r["steps"] for r in releases) == 2 * rounds * 10
    assert all(r["status"] == "done" for r in releases)

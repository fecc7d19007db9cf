"""A real federation on 127.0.0.1: TLS, SuperNode authentication, no PHI leaves.

Real ``flower-superlink`` / ``flower-supernode`` processes and ``flwr run . deploy``, as the
README's "Running a real federation" section documents them (see
:mod:`simulations.deployment`). Bounded in time; every process is stopped at the end.
"""

import json
import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import pydicom
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from common.data.folders import load_hospital
from simulations.deployment import LocalFederation

SITES = ("hospital-1", "hospital-2", "hospital-3")
PINNED = "pinned-hospital"


def _trusted_entities(path: Path) -> Path:
    """A trusted-entities file naming one signer (an Ed25519 key that signed nothing)."""
    public = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    path.write_text(f"fpk_{uuid.uuid4()}: '{public.decode()} reviewer'\n")
    return path


def _small_federation(root: Path, consortium: Path, pinned: bool = False) -> LocalFederation:
    """A SuperLink and three hospital SuperNodes, online (stopped again if that fails).

    ``pinned``: a fourth hospital whose SuperNode accepts only signed apps.
    """
    fed = LocalFederation(root)
    try:
        fed.start_superlink()
        for name in SITES:
            fed.add_hospital(name, consortium / name)
            fed.start_supernode(name)
        if pinned:
            fed.add_hospital(PINNED, consortium / "hospital-4")
            fed.start_supernode(PINNED, trusted=_trusted_entities(root / "trusted.yaml"))
        fed.wait_online(len(SITES) + pinned)
    except BaseException:
        fed.stop()
        raise
    return fed


@pytest.fixture(scope="module")
def federation(tmp_path_factory, consortium):
    with _small_federation(tmp_path_factory.mktemp("deploy"), consortium, pinned=True) as fed:
        yield fed


@pytest.fixture(scope="module")
def finished_run(federation):
    out = federation.root / "run"
    result = federation.run(
        {
            "out-dir": str(out),
            "num-server-rounds": 2,
            "detector-epochs": 1,
            "classifier-epochs": 1,
            "min-available-nodes": 4,
            "min-train-nodes": 3,
            "min-evaluate-nodes": 3,
            "round-timeout": 600.0,
            "reader-study": True,
            "reader-study-config": '{"model_threshold": 0.5}',
        },
        timeout=900,
    )
    return out, result


def test_tls_federation_with_node_auth_completes_two_rounds(finished_run):
    out, result = finished_run
    assert result["status"].startswith("finished:completed"), result["output"][-3000:]
    report = (out / "report.json").read_text()
    rounds = json.loads(report)["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(sorted(r["trained"]) == list(SITES) for r in rounds)
    for name in ("report.md", "model.json", "roc.png", "reader_study.md"):
        assert (out / name).is_file(), name


def test_a_hospital_pinning_apps_refuses_an_unsigned_one(finished_run, federation):
    out, _ = finished_run
    rounds = json.loads((out / "report.json").read_text())["rounds"]
    for r in rounds:  # the pinned hospital answered each round with Flower's INVALID_FAB
        assert r["sampled"] == len(SITES) + 1 and not r["dropped"] and not r["lost"]
        (refusal,) = r["refused"]
        assert refusal["code"] == 7 and "could not be verified" in refusal["reason"]
    log = federation.hospitals[PINNED].log.read_text()
    assert "App verification is not supported" in log, log[-2000:]
    assert not (federation.root / "state" / PINNED).exists()  # its ClientApp never ran


def test_unregistered_key_and_missing_ca_are_refused(federation, consortium):
    federation.add_hospital("intruder", consortium / "hospital-4", register=False)
    intruder = federation.start_supernode("intruder")
    federation.add_hospital("no-ca", consortium / "hospital-4")
    no_ca = federation.start_supernode("no-ca", ca=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (intruder.poll() is None or no_ca.poll() is None):
        time.sleep(1)
    assert intruder.poll() not in (None, 0), "an unregistered SuperNode kept running"
    assert no_ca.poll() not in (None, 0), "a SuperNode without the CA kept running"
    log = federation.hospitals["intruder"].log.read_text()
    assert "Failed to activate" in log or "PERMISSION_DENIED" in log or "2004" in log, log[-2000:]
    log = federation.hospitals["no-ca"].log.read_text()
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log, log[-2000:]


def _identifiers(consortium: Path) -> set[str]:
    """PatientID, PatientName, AccessionNumber of every synthetic image, and the paths."""
    values = {str(consortium)}
    for name in SITES:
        for im in load_hospital(consortium / name, echo=False).images:
            ds = pydicom.dcmread(im.path, stop_before_pixels=True)
            values |= {str(ds.PatientID), str(ds.PatientName), str(ds.AccessionNumber)}
            values.add(str(im.path))
    return {v for v in values if len(v) >= 4}


def test_no_phi_reaches_the_server(finished_run, federation, consortium):
    out, result = finished_run
    identifiers = _identifiers(consortium)
    assert len(identifiers) > 30
    # everything the server side holds: the SuperLink's database (every message it
    # relayed), its log, the streamed ServerApp log, and the run folder's text files
    texts = {
        "flwr run output": result["output"],
        "superlink.log": (federation.root / "superlink.log").read_text(errors="replace"),
    }
    with sqlite3.connect(federation.root / "superlink.db") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - our own tables
                for i, value in enumerate(row):
                    if isinstance(value, bytes):
                        value = value.decode("latin-1")
                    texts[f"superlink.db:{table}:{i}"] = (
                        texts.get(f"superlink.db:{table}:{i}", "") + f"\n{value}"
                    )
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".csv", ".txt", ".log"):
            texts[str(path.relative_to(out))] = path.read_text(errors="replace")
    leaks = [
        (where, value) for where, text in texts.items() for value in identifiers if value in text
    ]
    assert not leaks, leaks[:10]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


RUN = {
    "detector-epochs": 1,
    "classifier-epochs": 1,
    "min-available-nodes": 3,
    "min-train-nodes": 2,
    "min-evaluate-nodes": 2,
    "eval-every": 5,
}


@pytest.mark.slow
def test_killed_supernode_drops_out_and_rejoins(tmp_path, consortium):
    out = tmp_path / "run"
    with _small_federation(tmp_path / "fed", consortium) as fed:
        launched = fed.launch(
            {
                **RUN,
                "out-dir": str(out),
                "num-server-rounds": 3,
                "round-timeout": 150.0,
                "node-wait-timeout": 90.0,
            }
        )
        victim = fed.hospitals["hospital-3"]
        # kill hospital-3 (SuperNode and its ClientApp) while it trains in round 1
        _wait(
            lambda: fed.processes("flwr-clientapp", victim.process),
            180,
            "hospital-3 never started training",
        )
        fed.kill(victim.process)
        _wait(lambda: (out / "checkpoints" / "round-0001").is_dir(), 400, "round 1 never ended")
        fed.start_supernode("hospital-3")  # it rejoins under its registered key
        result = fed.finish(launched, timeout=900)
    assert result["status"].startswith("finished:completed"), result["output"][-3000:]
    rounds = json.loads((out / "report.json").read_text())["rounds"]
    assert len(rounds) == 3
    first = rounds[0]
    assert sorted(first["trained"]) == ["hospital-1", "hospital-2"]
    assert len(first["dropped"]) == 1 and not first["refused"], first  # listed once
    assert any("hospital-3" in r["trained"] for r in rounds[1:]), rounds
    assert "|" in (out / "report.md").read_text()


@pytest.mark.slow
def test_killed_server_resumes_from_its_checkpoint(tmp_path, consortium):
    out = tmp_path / "run"
    config = {
        **RUN,
        "out-dir": str(out),
        "num-server-rounds": 2,
        "min-train-nodes": 3,
        "min-evaluate-nodes": 3,
    }
    with _small_federation(tmp_path / "fed", consortium) as fed:
        launched = fed.launch(config)
        _wait(lambda: (out / "checkpoints" / "round-0001").is_dir(), 400, "round 1 never ended")
        (server,) = fed.processes("flwr-serverapp")
        os.kill(server, signal.SIGKILL)  # the coordinator's ServerApp dies
        first = fed.finish(launched, timeout=300)
        assert not first["status"].startswith("finished:completed")
        assert not (out / "report.json").exists()
        result = fed.run({**config, "resume": True}, timeout=900)
    assert result["status"].startswith("finished:completed"), result["output"][-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_from_round"] == 1
    assert [r["round"] for r in report["rounds"]] == [1, 2]

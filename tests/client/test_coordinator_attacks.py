"""A curious coordinator's attacks on a hospital, each with real Flower messages.

The coordinator follows the protocol but chooses every setting and seed and keeps every
reply; the hospital trusts only its node config and its disk. Each test mounts one
attack from the coordinator's side and checks that it fails.
"""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from client.app import BUDGET_EXCEEDED, POLICY, handle_reader_study, handle_train
from common.hospital.ledger import PrivacyLedger
from server.settings import RunSettings
from tests.client.test_app import _message, _study_message

DP = RunSettings(
    detector_epochs=1, classifier_epochs=1, num_server_rounds=2, dp=True, dp_epsilon=6.0
)


def _node(tmp_path, data, name="state", **more):
    return {"data-dir": str(data), "hospital-id": "h1", "state-dir": str(tmp_path / name), **more}


def _arrays(reply):
    return np.concatenate([v.numpy().ravel() for _, v in sorted(reply.content["arrays"].items())])


def _update(reply, settings=DP):
    sent = _message(settings).content["arrays"]
    before = np.concatenate([v.numpy().ravel() for _, v in sorted(sent.items())])
    return _arrays(reply) - before


def test_attack_1_replaying_the_dp_noise_from_the_seed_fails(flower_task, tmp_path, consortium):
    # two hospitals with the same data, one seed chosen by the coordinator
    data = consortium / "hospital-1"
    a = handle_train(_message(DP), _node(tmp_path, data, "a"), {})
    b = handle_train(_message(DP), _node(tmp_path, data, "b"), {})
    assert not a.has_error() and not b.has_error()
    ua, ub = _update(a), _update(b)
    assert not np.allclose(ua, ub)
    # (without DP the same seed gives the same update: test_app's central-DP test relies
    # on it, and common/learning/test_training.py checks it)


def test_attack_2_a_dp_reply_carries_nothing_un_noised(flower_task, tmp_path, consortium):
    node = _node(tmp_path, consortium / "hospital-1")
    reply = handle_train(_message(DP), node, {})
    metrics = dict(reply.content["metrics"])
    assert not [k for k in metrics if "loss" in k or "steps" in k], metrics
    for key in ("num-examples", "det-examples", "cls-examples"):  # powers of two only
        n = int(metrics[key])
        assert n > 0 and n & (n - 1) == 0, (key, n)
    assert metrics["dp-delta"] == 1e-5 and metrics["composed-epsilon"] >= metrics["det-epsilon"]
    # and the hospital's ledger lists what left
    (release,) = PrivacyLedger(Path(node["state-dir"]) / "privacy_ledger.json", "h1").releases(
        "detector"
    )
    assert release["sent"]["det-epsilon"] == metrics["det-epsilon"] and "weights" in release["sent"]


def test_attack_3_resetting_the_budget_fails(flower_task, tmp_path, consortium):
    node = _node(tmp_path, consortium / "hospital-1", **{"privacy-budget": 3.0})
    whole = {**vars(DP), "dp_epsilon": 3.0, "num_server_rounds": 1}  # one round spends it all
    first = handle_train(_message(RunSettings(**whole)), node, {})
    assert not first.has_error(), first.error
    assert first.content["metrics"]["det-epsilon"] == pytest.approx(3.0, rel=0.01)
    # a new federation name and a new run: the same account, so no fresh ε
    fresh = RunSettings(**{**whole, "federation": "brand-new"})
    again = handle_train(_message(fresh, server_round=1), node, {})
    assert again.has_error() and again.error.code == BUDGET_EXCEEDED
    assert "privacy-budget" in again.error.reason
    # asking for a larger ε does not lift the hospital's cap
    greedy = RunSettings(**{**vars(DP), "dp_epsilon": 50.0, "federation": "other"})
    refused = handle_train(_message(greedy), node, {})
    assert refused.has_error() and refused.error.code == BUDGET_EXCEEDED
    # a larger δ reads a smaller ε: refused with the limit named
    loose = RunSettings(**{**vars(DP), "dp_delta": 0.5})
    wide = handle_train(_message(loose), _node(tmp_path, consortium / "hospital-1", "w"), {})
    assert wide.has_error() and wide.error.code == POLICY and "dp-delta" in wide.error.reason
    # the total over both models, every federation and run, is capped as well
    total = _node(tmp_path, consortium / "hospital-1", "t", **{"privacy-total-budget": 2.0})
    over = handle_train(_message(DP), total, {})
    assert over.has_error() and over.error.code == BUDGET_EXCEEDED
    assert "privacy-total-budget" in over.error.reason
    assert PrivacyLedger(Path(total["state-dir"]) / "privacy_ledger.json", "h1").models() == []


def test_attack_6_names_do_not_leave(flower_task, tmp_path, consortium):
    # a hospital exported under a telling folder name, with reader names in its reads
    export = tmp_path / "St-Mary-Breast-Unit"
    shutil.copytree(consortium / "hospital-1", export)
    reads = export / "reader_reads.csv"
    rows = list(csv.DictReader(reads.open()))
    for r in rows:
        r["reader_id"] = {"senior-1": "dr-ada-king", "junior-1": "dr-bo-lee"}.get(
            r["reader_id"], r["reader_id"]
        )
    with reads.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    node = {"data-dir": str(export), "state-dir": str(tmp_path / "s")}  # no hospital-id
    reply = handle_train(_message(RunSettings(detector_epochs=1, classifier_epochs=1)), node, {})
    name = str(reply.content["site"]["hospital-id"])
    assert name.startswith("site-") and "Mary" not in name
    again = handle_train(_message(RunSettings(detector_epochs=1, classifier_epochs=1)), node, {})
    assert str(again.content["site"]["hospital-id"]) == name  # made once, kept
    # the coordinator probes for a reader by name: no reply tells it the name is here
    from common.study.arms import StudyConfig

    probe = StudyConfig(arms=("dr-ada-king", "senior-1", "senior-1:aided"))
    study = handle_reader_study(_study_message(probe), node, {})
    assert not study.has_error(), study.error
    payload = json.dumps({k: str(v) for k, v in study.content["site"].items()})
    assert "ada" not in payload.replace("dr-ada-king (no reads by dr-ada-king)", "")
    assert "bo-lee" not in payload
    stats = json.loads(str(study.content["site"]["study-stats"]))
    assert "senior-1 vs senior-1:aided" in stats["strata"]["all"]["pairs"]
    # the mapping stays with the hospital
    identity = json.loads((tmp_path / "s" / "identity.json").read_text())
    assert identity["readers"]["dr-ada-king"].startswith("senior-")
    # with its policy allowing names, the real ids are used
    named = handle_reader_study(
        _study_message(StudyConfig(arms=("dr-ada-king",))),
        {**node, "share-reader-ids": True},
        {},
    )
    assert (
        "dr-ada-king"
        in json.loads(str(named.content["site"]["study-stats"]))["strata"]["all"]["arms"]
    )


def test_attack_6_the_image_key_salt_is_the_hospital_s(tmp_path, consortium):
    from dataclasses import replace

    import pydicom

    from common.federation.rounds import ModelSpec
    from common.hospital.service import Hospital
    from common.imaging.reading import ReadOptions, image_key

    # the coordinator sends a salt it knows: the hospital uses its own instead
    known = ModelSpec(read=ReadOptions(key_salt="known")).to_json()
    spec = replace(RunSettings().round_spec("r"), model_spec=known)
    a = Hospital.from_config(_node(tmp_path, consortium / "hospital-1", "a"))
    b = Hospital.from_config(_node(tmp_path, consortium / "hospital-1", "b"))
    ra, rb = a.read_options(spec), b.read_options(spec)
    assert len({ra.key_salt, rb.key_salt, "known", ""}) == 4
    assert (
        Hospital.from_config(_node(tmp_path, consortium / "hospital-1", "a")).read_options(spec)
        == ra
    )  # kept in its state folder
    record = a.records(0).train[0]
    uid = str(pydicom.dcmread(record.path, stop_before_pixels=True).SOPInstanceUID)
    keys = {a.store(ra).get(record).image_key, b.store(rb).get(record).image_key}
    guessable = {image_key(uid), image_key(uid, "known")}
    assert len(keys) == 2 and not keys & guessable


def _no_clusters(src: Path, dst: Path) -> Path:
    """A copy of a hospital whose manifest annotates no finding at all."""
    dst.mkdir()
    (dst / "CBIS-DDSM").symlink_to(src / "CBIS-DDSM")
    rows = list(csv.DictReader((src / "calcifl_manifest.csv").open()))
    blank = ("finding_id", "pathology", "calc_type", "calc_distribution", "subtlety")
    blank += ("assessment", "mask", "box", "points")
    seen, kept = set(), []
    for r in rows:
        if r["image"] in seen:
            continue
        seen.add(r["image"])
        kept.append({**r, **dict.fromkeys(blank, "")})
    with (dst / "calcifl_manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return dst


def test_attack_7_a_hospital_without_clusters_keeps_a_working_ledger(
    flower_task, tmp_path, consortium
):
    data = _no_clusters(consortium / "hospital-1", tmp_path / "normals")
    node = _node(tmp_path, data)
    for server_round in (1, 2):
        reply = handle_train(_message(DP, server_round=server_round), node, {})
        assert not reply.has_error(), reply.error
        assert reply.content["metrics"]["cls-examples"] == 0
    ledger = PrivacyLedger(Path(node["state-dir"]) / "privacy_ledger.json", "h1")
    assert ledger.models() == ["detector"]  # nothing planned for the classifier
    assert all(r["status"] == "done" for r in ledger.releases("detector"))


@pytest.mark.parametrize("delta", [1e-7])  # the default, 1e-5, is attack 2's
def test_delta_is_the_hospital_s_setting_not_a_function_of_n(
    flower_task, tmp_path, consortium, delta
):
    node = _node(tmp_path, consortium / "hospital-1", **{"dp-delta": delta})
    reply = handle_train(_message(DP), node, {})
    assert not reply.has_error(), reply.error
    assert reply.content["metrics"]["dp-delta"] == delta


@pytest.fixture(scope="module")
def larger_site(tmp_path_factory) -> Path:
    """One hospital with enough held-out breasts that ``all`` is released at min-cell 2."""
    from common.synth.generate import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("larger")
    # seed 9: a density and a calc type are the only small values of their factor
    synthesize(root, SynthConfig(hospitals=1, exams=30, seed=9), progress=False)
    return root / "hospital-1"


def test_attack_5_differencing_withheld_strata_fails(flower_task, tmp_path, larger_site):
    from common.study.arms import StudyStats

    node = _node(tmp_path, larger_site, **{"min-cell": 2})
    reply = handle_reader_study(_study_message(), node, {})
    assert not reply.has_error(), reply.error
    received = StudyStats.from_dict(json.loads(str(reply.content["site"]["study-stats"])))
    withheld = str(reply.content["site"]["withheld"]).split(",")
    assert "all" in received.strata and any("=" in w for w in withheld)
    # the coordinator knows which values were withheld; it subtracts the released ones
    factors: dict[str, list[str]] = {}
    for name in [*received.strata, *withheld]:
        if "=" in name:
            factor, _, value = name.partition("=")
            factors.setdefault(factor, []).append(value)
    for factor, values in factors.items():
        hidden = [v for v in values if f"{factor}={v}" not in received.strata]
        assert len(hidden) != 1, f"{factor}={hidden} = all minus its siblings"
    # the threat is real here: withholding only the small strata would leave one value of
    # a factor hidden, which the subtraction above recovers
    full = handle_reader_study(_study_message(), {**node, "min-cell": 1}, {})
    strata = json.loads(str(full.content["site"]["study-stats"]))["strata"]
    small = [
        n
        for n, st in strata.items()
        if any(0 < c < 2 for c in [st["cases"], *st["classes"].values()])
    ]
    assert "all" not in small
    per_factor = [sum(n.startswith(f + "=") for n in small) for f in factors]
    assert 1 in per_factor

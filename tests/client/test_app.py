"""The ClientApp's handlers on real Flower messages and real DICOM hospitals."""

import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.app import (
    BAD_REQUEST,
    BUDGET_EXCEEDED,
    NO_DATA,
    POLICY,
    app,
    handle_evaluate,
    handle_train,
    make_client_app,
)
from common.evaluation.images import EvalStats
from common.learning.models import flat_state
from server.federation import initial_models, to_record
from server.settings import RunSettings

SETTINGS = RunSettings(detector_epochs=1, classifier_epochs=1, num_server_rounds=3)


def _message(settings=SETTINGS, kind=MessageType.TRAIN, arrays=None, server_round=1, **drop):
    spec = settings.round_spec("test-run")
    if arrays is None:
        arrays = {k: v.numpy() for k, v in flat_state(initial_models(settings)).items()}
    config = {**spec.to_config(), "server-round": server_round}
    for key in drop:
        config.pop(key.replace("_", "-"))
    content = RecordDict({"arrays": to_record(arrays), "config": ConfigRecord(config)})
    return Message(content=content, dst_node_id=7, message_type=kind)


def _audit(node):
    lines = (__import__("pathlib").Path(node["state-dir"]) / "audit.jsonl").read_text()
    return [json.loads(x) for x in lines.splitlines()]


def test_train_replies_with_prefixed_weights_and_metrics(flower_task, node):
    reply = handle_train(_message(), node, {})
    assert not reply.has_error(), reply.error
    arrays = reply.content["arrays"]
    assert all(k.split(".")[0] in ("detector", "classifier") for k in arrays)
    assert not any("_module" in k for k in arrays)
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] > 0 and metrics["det-steps"] > 0
    assert "det-epsilon" not in metrics  # no DP, nothing accounted
    assert str(reply.content["site"]["hospital-id"]) == "h1"
    (event,) = _audit(node)
    assert event["status"] == "trained" and event["round"] == 1
    assert set(event["arrays_sent"]) == set(arrays.keys())
    assert event["metrics_sent"]["num-examples"] == metrics["num-examples"]


def _update_norm(reply, sent):
    arrays = reply.content["arrays"]
    return float(
        np.sqrt(
            sum(
                np.sum((arrays[k].numpy().astype(np.float64) - sent[k].astype(np.float64)) ** 2)
                for k in arrays
            )
        )
    )


def test_central_dp_round_clips_the_update_in_both_client_apps(flower_task, node):
    sent = {k: v.numpy() for k, v in flat_state(initial_models(SETTINGS)).items()}
    plain = make_client_app([node])(
        _message(), Context(1, 7, {"partition-id": 0}, RecordDict(), {})
    )
    norm = _update_norm(plain, sent)
    assert norm > 0.05  # an unclipped update is larger than the clip used below
    clipped_message = _message()
    clipped_message.content["config"]["clipping_norm"] = 0.05  # as Flower's DP wrapper sends
    context = Context(1, 7, {**node}, RecordDict(), {})
    reply = app(clipped_message, context)  # the deployed ClientApp, with its mods
    assert not reply.has_error(), reply.error
    assert _update_norm(reply, sent) == pytest.approx(0.05, rel=1e-4)
    for k, v in reply.content["arrays"].items():  # same seeded training, update scaled down
        expected = sent[k] + (plain.content["arrays"][k].numpy() - sent[k]) * (0.05 / norm)
        np.testing.assert_allclose(v.numpy(), expected, rtol=0, atol=1e-6, err_msg=k)
    event = _audit(node)[-1]
    assert event["status"] == "trained" and event["central_dp_clip"] == 0.05


def test_dp_epsilon_accumulates_in_the_ledger_across_rounds(flower_task, node):
    from common.hospital.ledger import PrivacyLedger

    dp = RunSettings(
        detector_epochs=1, classifier_epochs=1, num_server_rounds=2, dp=True, dp_epsilon=6.0
    )
    first = handle_train(_message(dp, server_round=1), node, {})
    second = handle_train(_message(dp, server_round=2), node, {})
    e1, e2 = first.content["metrics"]["det-epsilon"], second.content["metrics"]["det-epsilon"]
    assert 0 < e1 < e2 <= 6.0 + 1e-6
    assert second.content["metrics"]["dp-delta"] == 1e-5
    ledger = PrivacyLedger(
        __import__("pathlib").Path(node["state-dir"]) / "privacy_ledger.json", "h1"
    )
    releases = ledger.releases("detector")
    assert [(r["round"], r["status"]) for r in releases] == [(1, "done"), (2, "done")]
    assert ledger.spent("detector", 1e-5) == pytest.approx(e2)
    # a third round would pass the requested ε, which caps spending when the node sets none
    third = handle_train(_message(dp, server_round=3), node, {})
    assert third.has_error() and third.error.code == BUDGET_EXCEEDED
    assert third.error.reason.startswith("[h1] ") and "dp-epsilon" in third.error.reason
    assert ledger.releases("detector") == releases


def test_hospital_requiring_dp_refuses_plain_rounds(flower_task, node):
    reply = handle_train(_message(), {**node, "require-dp": True}, {})
    assert reply.has_error() and reply.error.code == POLICY


def test_malformed_requests_get_clear_error_replies(flower_task, node):
    reply = handle_train(_message(detector_epochs=True), node, {})
    assert reply.has_error() and reply.error.code == BAD_REQUEST
    assert "detector-epochs" in reply.error.reason
    arrays = {k: v.numpy() for k, v in flat_state(initial_models(SETTINGS)).items()}
    key = next(iter(arrays))
    arrays[key] = np.zeros((3, 3), dtype=np.float32)
    reply = handle_train(_message(arrays=arrays), node, {})
    assert reply.has_error() and reply.error.code == BAD_REQUEST
    assert key in reply.error.reason and "wrong shape" in reply.error.reason
    bad = _message()
    bad.content["extra"] = ArrayRecord({"x": Array(np.zeros(2))})
    assert handle_train(bad, node, {}).error.code == BAD_REQUEST
    assert [e["status"] for e in _audit(node)] == ["refused"] * 3


def test_unusable_data_is_refused_without_revealing_paths(flower_task, node, tmp_path):
    missing = tmp_path / "PATIENT_SMITH_export"
    reply = handle_train(_message(), {**node, "data-dir": str(missing)}, {})
    assert reply.has_error() and reply.error.code == NO_DATA
    assert "PATIENT_SMITH" not in reply.error.reason and str(tmp_path) not in reply.error.reason
    assert str(missing) in _audit(node)[-1]["local_detail"]  # the detail stays local


def test_evaluate_replies_with_summable_statistics(flower_task, node):
    reply = handle_evaluate(_message(kind=MessageType.EVALUATE), node, {})
    assert not reply.has_error(), reply.error
    stats = EvalStats.from_dict(json.loads(str(reply.content["site"]["eval-stats"])))
    assert stats.froc.images == reply.content["metrics"]["num-examples"] > 0
    # a strict release policy withholds the ROC statistics of this small held-out set
    strict = handle_evaluate(_message(kind=MessageType.EVALUATE), {**node, "min-cell": 1000}, {})
    withheld = str(strict.content["site"]["withheld"]).split(",")
    assert "breast_roc" in withheld
    assert (
        EvalStats.from_dict(json.loads(str(strict.content["site"]["eval-stats"]))).breast_roc.n_pos
        == 0
    )


def test_unreadable_images_are_counted_and_the_rest_used(flower_task, node, tmp_path, consortium):
    import csv
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(consortium / "hospital-1", copy)
    with open(copy / "calcifl_manifest.csv") as f:
        first = next(r for r in csv.DictReader(f) if r["split"] == "train")
    (copy / first["image"]).write_bytes(b"not a dicom file")
    reply = handle_train(_message(), {**node, "data-dir": str(copy)}, {})
    assert not reply.has_error(), reply.error
    assert reply.content["metrics"]["refused-inputs"] == 1
    assert reply.content["metrics"]["num-examples"] > 0


def _study_message(study=None, threshold=0.5, kind="evaluate.reader_study"):
    from common.study.arms import StudyConfig

    message = _message(kind=MessageType.EVALUATE)
    record = {"study-config": (study or StudyConfig()).to_json()}
    if threshold is not None:
        record["model-threshold"] = threshold
    message.content["study"] = ConfigRecord(record)
    return Message(content=message.content, dst_node_id=7, message_type=kind)


def test_reader_study_replies_with_released_statistics(flower_task, node, consortium):
    from client.app import handle_reader_calibrate, handle_reader_study
    from common.evaluation.metrics import RocStats
    from common.study.arms import StudyStats

    calibrate = handle_reader_calibrate(
        _study_message(threshold=None, kind="evaluate.reader_calibrate"), node, {}
    )
    assert not calibrate.has_error(), calibrate.error
    roc = RocStats.from_dict(json.loads(str(calibrate.content["site"]["validation-roc"])))
    assert roc.n_pos + roc.n_neg == calibrate.content["metrics"]["num-examples"]
    reply = handle_reader_study(_study_message(), node, {})
    assert not reply.has_error(), reply.error
    payload = str(reply.content["site"]["study-stats"])
    stats = StudyStats.from_dict(json.loads(payload))
    assert stats.strata["all"]["cases"] == reply.content["metrics"]["num-examples"] > 0
    assert "senior-1 vs senior-1:aided" in stats.strata["all"]["pairs"]
    # counts only: no patient id, name or path of this hospital leaves
    for text in ("P_1", str(consortium), ".dcm", "^"):
        assert text not in payload, text
    # the hospital's own minimum cell size wins over the server's request
    strict = handle_reader_study(_study_message(), {**node, "min-cell": 1000}, {})
    released = StudyStats.from_dict(json.loads(str(strict.content["site"]["study-stats"])))
    assert not released.strata and "all" in released.withheld
    assert strict.content["metrics"]["withheld"] == len(released.withheld)
    events = [e["message"] for e in _audit(node)]
    assert events == ["reader-calibrate", "reader-study", "reader-study"]


def test_reader_study_refusals(flower_task, node):
    from client.app import handle_reader_study

    refused = handle_reader_study(_study_message(), {**node, "reader-study": False}, {})
    assert refused.has_error() and refused.error.code == POLICY
    no_threshold = handle_reader_study(_study_message(threshold=None), node, {})
    assert no_threshold.has_error() and no_threshold.error.code == BAD_REQUEST
    assert "model-threshold" in no_threshold.error.reason
    message = _study_message()
    message.content["study"] = ConfigRecord({"study-config": '{"arms": ["a"], "bogus": 1}'})
    bad = handle_reader_study(message, node, {})
    assert bad.has_error() and bad.error.code == BAD_REQUEST and "bogus" in bad.error.reason


def test_mark_calibration_replies_with_validation_froc_counts_only(flower_task, node, consortium):
    from dataclasses import replace

    from client.app import handle
    from common.data.folders import load_hospital
    from common.federation import protocol as P
    from common.learning.material import validation_split

    settings = replace(SETTINGS, val_fraction=0.5)  # the tiny hospital's validation patients
    message = _message(settings, kind=f"evaluate.{P.MARK_CALIBRATE}")
    reply = handle(P.MARK_CALIBRATE, message, node, {})
    assert not reply.has_error(), reply.error
    payload = str(reply.content["site"]["eval-stats"])
    stats = EvalStats.from_dict(json.loads(payload))
    images = load_hospital(consortium / "hospital-1", echo=False).images
    train = [im for im in images if im.split == "train"]
    val = validation_split(train, 0.5, settings.seed)["val"]
    assert stats.froc.images == len(val) == reply.content["metrics"]["num-examples"] > 0
    assert stats.froc.area_cm2 > 0
    assert stats.froc.normal_images == sum(not im.findings for im in val)
    assert stats.froc.lesions == sum(len(im.findings) for im in val) > 0
    assert stats.breast_roc.n_pos + stats.breast_roc.n_neg == 0  # no scores, no ROC
    for text in ("P_1", str(consortium), ".dcm", "^"):
        assert text not in payload, text
    (event,) = _audit(node)
    assert event["message"] == "mark-calibrate" and event["status"] == "calibrated-marks"

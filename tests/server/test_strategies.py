"""Per-model weights in the averaging strategies, checked against Flower's own FedAvg."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from server.settings import RunSettings
from server.strategies import PerModelWeights, make_strategy

RNG = np.random.default_rng(0)


def _reply(det: float, cls: float, images: int, patches: int | None, clusters: int | None):
    arrays = {
        "detector.conv": det + RNG.normal(size=(2, 3)).astype(np.float32),
        "detector.bias": np.full(2, det, np.float32),
        "classifier.fc": cls + RNG.normal(size=(4,)).astype(np.float32),
    }
    metrics = {"num-examples": images, "cls-train-loss": float(cls)}
    if patches is not None:
        metrics["det-examples"] = patches
    if clusters is not None:
        metrics["cls-examples"] = clusters
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord(metrics),
        }
    )
    return Message(content=content, dst_node_id=1, message_type="train")


def _flower_mean(replies: list[Message], prefix: str, key: str) -> dict[str, np.ndarray]:
    """Flower's FedAvg on one model's arrays, weighted by ``key``."""
    sub = []
    for m in replies:
        arrays = m.content["arrays"]
        own = ArrayRecord({k: arrays[k] for k in arrays.keys() if k.startswith(prefix)})
        sub.append(
            Message(
                content=RecordDict({"arrays": own, "metrics": m.content["metrics"]}),
                dst_node_id=1,
                message_type="train",
            )
        )
    out, _ = FedAvg(weighted_by_key=key).aggregate_train(1, sub)
    return {k: a.numpy() for k, a in out.items()}


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def test_each_model_is_averaged_by_its_own_examples(flower_task):
    replies = [
        _reply(1.0, 1.0, 10, 300, 4),
        _reply(5.0, 5.0, 30, 100, 40),
        _reply(9.0, 9.0, 20, 200, 16),
    ]
    out, metrics = PerModelWeights().aggregate_train(1, replies)
    got = _numpy(out)
    assert list(got) == ["detector.conv", "detector.bias", "classifier.fc"]
    expected = {
        **_flower_mean(replies, "detector.", "det-examples"),
        **_flower_mean(replies, "classifier.", "cls-examples"),
    }
    for k, v in expected.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-6)
        assert got[k].dtype == np.float32
    # Flower's single weight (images) would have given both models other values
    by_images, flower_metrics = FedAvg().aggregate_train(1, replies)
    for k in got:
        assert not np.allclose(got[k], by_images[k].numpy(), rtol=1e-3), k
    # the training metrics stay Flower's mean weighted by images
    assert dict(metrics) == pytest.approx(dict(flower_metrics))


def test_a_hospital_without_clusters_leaves_the_classifier_out(flower_task):
    replies = [_reply(1.0, 1.0, 50, 100, 0), _reply(3.0, 3.0, 10, 100, 12)]
    got = _numpy(PerModelWeights().aggregate_train(1, replies)[0])
    np.testing.assert_array_equal(
        got["classifier.fc"], replies[1].content["arrays"]["classifier.fc"].numpy()
    )
    np.testing.assert_allclose(got["detector.bias"], 2.0)


def test_without_the_counts_it_is_flowers_fedavg(flower_task):
    for clusters in (None, 0):  # not reported, or no hospital trained the classifier
        replies = [_reply(1.0, 1.0, 10, None, clusters), _reply(5.0, 2.0, 30, None, clusters)]
        got = _numpy(PerModelWeights().aggregate_train(1, replies)[0])
        expected = _numpy(FedAvg().aggregate_train(1, replies)[0])
        for k, v in expected.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-6)


def test_fedprox_fedavgm_and_fedadam_build_on_the_per_model_mean(flower_task):
    replies = [_reply(1.0, 1.0, 10, 300, 4), _reply(5.0, 5.0, 30, 100, 40)]
    mean = _numpy(PerModelWeights().aggregate_train(1, replies)[0])
    prox = make_strategy(RunSettings(strategy="fedprox"))
    for k, v in _numpy(prox.aggregate_train(1, replies)[0]).items():
        np.testing.assert_allclose(v, mean[k], rtol=1e-6)
    # FedAvgM's first move is the averaged update; FedAdam's follows its sign
    start = {k: np.zeros_like(v) for k, v in mean.items()}
    avgm = make_strategy(RunSettings(strategy="fedavgm"))
    avgm.current_arrays = ArrayRecord({k: Array(v) for k, v in start.items()})
    for k, v in _numpy(avgm.aggregate_train(1, replies)[0]).items():
        np.testing.assert_allclose(v, mean[k], rtol=1e-5)
    adam = make_strategy(RunSettings(strategy="fedadam"))
    adam.current_arrays = {k: v.copy() for k, v in start.items()}
    for k, v in _numpy(adam.aggregate_train(1, replies)[0]).items():
        np.testing.assert_array_equal(np.sign(v), np.sign(mean[k]))


def test_central_dp_and_the_setting_keep_one_weight(flower_task):
    assert not isinstance(make_strategy(RunSettings(per_model_weights=False)), PerModelWeights)
    dp = make_strategy(RunSettings(central_dp=True, central_dp_noise=1.0))
    assert not isinstance(dp.strategy, PerModelWeights)

"""Checkpoints and strategy state."""

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from server import checkpoint
from server.settings import RunSettings
from server.strategies import make_strategy, restore_strategy_state, strategy_state


def test_latest_checkpoint_round_trip(tmp_path):
    assert checkpoint.load_latest(tmp_path) is None
    for r in (1, 2):
        checkpoint.save(
            tmp_path,
            checkpoint.Checkpoint(
                r,
                {"detector.w": np.full(3, r, np.float32)},
                {"m_t/dict/x": np.ones(2)},
                {"history": [{"round": i} for i in range(1, r + 1)]},
            ),
        )
    ckpt = checkpoint.load_latest(tmp_path)
    assert ckpt.round == 2 and ckpt.arrays["detector.w"].tolist() == [2, 2, 2]
    assert ckpt.strategy["m_t/dict/x"].tolist() == [1, 1]
    assert len(ckpt.state["history"]) == 2
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def _reply(value: float) -> RecordDict:
    return RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.full(4, value, np.float32))}),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )


def test_fedadam_state_survives_a_checkpoint():
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    settings = RunSettings(strategy="fedadam")
    a = make_strategy(settings)
    a.current_arrays = {"w": np.zeros(4, np.float32)}
    a._compute_deltat_and_mt(aggregate_arrayrecords([_reply(1.0)], "num-examples"))
    state = strategy_state(a)
    assert any(k.startswith("m_t/") for k in state)
    b = make_strategy(settings)
    restore_strategy_state(b, state)
    np.testing.assert_array_equal(a.m_t["w"], b.m_t["w"])
    np.testing.assert_array_equal(a.current_arrays["w"], b.current_arrays["w"])


def test_every_strategy_name_builds_flowers_strategy():
    import flwr.serverapp.strategy as flower

    from server.settings import STRATEGIES

    classes = {c.__name__.lower(): c for c in vars(flower).values() if isinstance(c, type)}
    for name in STRATEGIES:
        strategy = make_strategy(RunSettings(strategy=name, num_malicious_nodes=1))
        assert isinstance(strategy, classes[name]), name
        plain = make_strategy(
            RunSettings(strategy=name, num_malicious_nodes=1, per_model_weights=False)
        )
        assert type(plain) is classes[name], name


def test_fedavgm_momentum_survives_a_checkpoint(flower_task):
    from flwr.app import Message

    def replies(value):
        return [Message(content=_reply(value), dst_node_id=1, message_type="train")]

    settings = RunSettings(strategy="fedavgm", server_momentum=0.9)
    a = make_strategy(settings)
    a.current_arrays = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    a.aggregate_train(1, replies(1.0))
    state = strategy_state(a)
    assert any(k.startswith("momentum_vector/") for k in state)
    b = make_strategy(settings)
    restore_strategy_state(b, state)
    after_a, _ = a.aggregate_train(2, replies(2.0))
    after_b, _ = b.aggregate_train(2, replies(2.0))
    # round 1 moved w by 1; round 2 by (2 - 1) + 0.9 x 1: momentum was carried over
    np.testing.assert_allclose(after_a["w"].numpy(), np.full(4, 2.9), rtol=1e-6)
    np.testing.assert_array_equal(after_a["w"].numpy(), after_b["w"].numpy())

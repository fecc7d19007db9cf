"""The protocol's names and refusal format, as both sides read them."""

import pytest

from common.federation import protocol as P


def test_refusal_reason_names_the_site_and_is_read_back():
    reason = P.refusal_reason("hospital-2", "no usable training images")
    assert reason == "[hospital-2] no usable training images"
    assert P.refusing_site(reason) == "hospital-2"
    assert P.refusing_site(P.refusal_reason(None, "bad")) is None
    assert P.refusing_site("Flower: node lost") is None and P.refusing_site(None) is None


def test_per_model_metric_keys():
    assert [P.examples_key(m) for m in P.MODELS] == ["det-examples", "cls-examples"]
    assert P.model_metric("classifier", "epsilon") == "cls-epsilon"
    with pytest.raises(KeyError):
        P.model_metric("segmenter", "steps")


def test_refusal_carries_a_known_code():
    refusal = P.Refusal(4003, "no held-out images")
    assert refusal.code is P.Code.NO_DATA and refusal.reason == "no held-out images"
    with pytest.raises(ValueError):
        P.Refusal(4999, "unknown")

"""The hospital's own service, without Flower: train, evaluate, refuse, audit."""

import json

from common.federation import protocol as P
from common.hospital.service import Hospital, Outcome, Refused, serve
from common.learning.models import flat_state
from server.federation import initial_models
from server.settings import RunSettings

SETTINGS = RunSettings(detector_epochs=1, classifier_epochs=1)


def _config(**changes):
    return {**RunSettings(**{**vars(SETTINGS), **changes}).round_spec("r").to_config()}


def _weights():
    return flat_state(initial_models(SETTINGS))


def test_train_returns_new_weights_counts_and_what_the_audit_records(node):
    hospital = Hospital.from_config(node)
    spec = SETTINGS.round_spec("r")
    out = hospital.train(_weights(), spec, 1)
    assert isinstance(out, Outcome) and set(out.weights) == set(_weights())
    assert out.metrics[P.NUM_EXAMPLES] > 0 and out.metrics[P.examples_key("detector")] > 0
    assert out.metrics[P.model_metric("detector", "steps")] > 0
    assert out.audit["status"] == "trained" and out.audit["metrics_sent"] == out.metrics


def test_evaluate_releases_statistics_only(node):
    out = Hospital.from_config(node).evaluate(_weights(), SETTINGS.round_spec("r"))
    stats = json.loads(out.site[P.EVAL_STATS])
    assert out.metrics[P.NUM_EXAMPLES] > 0 and "breast_roc" in stats
    assert "h1" not in out.site[P.EVAL_STATS] and str(node["data-dir"]) not in json.dumps(out.site)


def test_serve_turns_policy_into_a_coded_refusal_and_audits_it(node, tmp_path):
    node = {**node, "require-dp": True}
    hospital, result = serve(
        "train",
        node,
        {},
        lambda: {**_config(), P.SERVER_ROUND: 1},
        lambda h, spec, r: h.train(_weights(), spec, r),
    )
    assert isinstance(result, Refused) and result.code is P.Code.POLICY
    assert P.refusing_site(result.reason) == "h1"
    (event,) = hospital.audit.read()
    assert event["status"] == "refused" and event["code"] == 4004 and event["round"] == 1


def test_serve_refuses_a_malformed_round_and_a_bad_node_config(node):
    _, result = serve("evaluate", node, {}, lambda: {"num-rounds": "three"}, None)
    assert result.code is P.Code.BAD_REQUEST and result.reason.startswith("[h1] ")
    hospital, result = serve("evaluate", {"data-dir": "x", "colour": 1}, {}, dict, None)
    assert hospital is None and result.code is P.Code.BAD_REQUEST and "colour" in result.reason


def test_evaluations_that_leave_are_counted_in_the_ledger(node):
    from common.hospital.ledger import PrivacyLedger
    from common.hospital.release import released_tables

    hospital, result = serve(
        "evaluate",
        node,
        {},
        lambda: {**_config(), P.SERVER_ROUND: 2},
        lambda h, spec, r: h.evaluate(_weights(), spec),
    )
    assert isinstance(result, Outcome)
    (line,) = PrivacyLedger(hospital.settings.ledger_path, "h1").evaluations()
    # every histogram that left, as many as the evaluation's statistics hold (an empty
    # one is none)
    sent = json.loads(result.site[P.EVAL_STATS])
    assert line["kind"] == "evaluate" and line["round"] == 2
    assert line["tables"] == released_tables(sent) >= 3, (line, sorted(sent))
    assert P.EVAL_STATS in line["sent"]


def test_small_froc_sets_are_withheld_too():
    import numpy as np

    from common.evaluation.images import EvalStats
    from common.evaluation.metrics import FrocStats, PointStats
    from common.hospital.release import release_eval

    froc = FrocStats(np.array([0, 2, 0]), np.array([3, 1, 0]), 1, 12)  # 3 lesions
    stats, withheld = release_eval(EvalStats(froc=froc, points=PointStats(3, 1, 0)), 5)
    assert "froc" in withheld and stats.froc.images == 0 and stats.points == PointStats()
    kept, none = release_eval(EvalStats(froc=froc), 3)
    assert "froc" not in none and kept.froc.images == 12
    # a few normal images' false clusters are withheld; every image's still count
    mixed = FrocStats(np.array([0, 6, 0]), np.array([3, 1, 0]), 0, 20)
    mixed.add_image([], [0.5], 30.0, normal=True)
    mixed.add_image([], [], 30.0, normal=True)
    released, parts = release_eval(EvalStats(froc=mixed), 5)
    assert parts == ["froc_normal"] and released.froc.normal_images == 0
    assert released.froc.normal_fp.sum() == 0 and released.froc.fp.sum() == 5
    assert released.froc.area_cm2 == 60.0 and released.froc.normal_area_cm2 == 0.0


def test_counts_under_dp_keep_only_their_scale():
    from common.learning.dp import public_size

    assert [public_size(n) for n in (0, 1, 2, 3, 7, 8, 1000)] == [0, 1, 2, 2, 4, 8, 512]
    assert [public_size(n, up=True) for n in (1, 3, 8, 9)] == [1, 4, 8, 16]

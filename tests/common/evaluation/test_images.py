"""Matching the cascade's clusters to an image's findings."""

import numpy as np

from common.evaluation.images import match_clusters
from common.evaluation.metrics import FrocStats
from common.learning.inference import ClusterResult
from common.learning.samples import CanonFinding


def _finding(row, col, types):
    box = (row - 20.0, col - 20.0, row + 20.0, col + 20.0)
    return CanonFinding(np.array([row, col]), box, np.array([[row, col]]), False, calc_types=types)


def _cluster(row, col, score, artifact=None):
    return ClusterResult(
        (row, col), (row - 5, col - 5, row + 5, col + 5), 9, score, artifact=artifact
    )


def test_an_annotated_calcified_vessel_is_no_lesion_where_vessels_are_set_aside():
    vessel = _finding(100.0, 100.0, ("VASCULAR",))
    mixed = _finding(300.0, 300.0, ("VASCULAR", "COARSE"))  # a vessel and more: a lesion
    assert vessel.vessel and not mixed.vessel and not _finding(0, 0, ()).vessel
    on_vessel, set_aside = _cluster(100.0, 104.0, 0.8), _cluster(96.0, 100.0, 0.0, "vessel")
    on_mixed = _cluster(300.0, 302.0, 0.6)
    clusters = [on_vessel, on_mixed, set_aside]
    hits, false, vessels = match_clusters(clusters, [vessel, mixed], tolerance=10.0)
    assert hits == [0.6] and vessels == 1
    assert false == [0.8, 0.0]  # a mark on the vessel is a false mark; set aside, never
    # the cascade keeping line clusters (--keep-line-clusters) is asked to mark it
    hits, false, vessels = match_clusters(clusters, [vessel, mixed], 10.0, vessels_aside=False)
    assert hits == [0.8, 0.6] and false == [] and vessels == 0


def test_vessels_left_out_are_counted_added_and_survive_json():
    a, b = FrocStats.empty(), FrocStats.empty()
    a.add_image([0.6], [0.8], 10.0, vessels=1)
    b.add_image([], [], 10.0, normal=True)
    total = FrocStats.from_dict(a.to_dict()) + b
    assert total.vessels == 1 and total.lesions == 1 and total.summary()["vessels"] == 1
    old = {k: v for k, v in a.to_dict().items() if k != "vessels"}
    assert FrocStats.from_dict(old).vessels == 0  # statistics written before the count

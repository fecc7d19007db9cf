import numpy as np
import pytest
import torch

from common.learning.inference import CascadeConfig, aggregate_scores, group, heatmap, peaks
from common.learning.models import Detector, DetectorConfig


def test_peaks_nms_and_threshold():
    prob = np.zeros((20, 20), np.float32)
    prob[5, 5], prob[5, 6] = 0.9, 0.8  # the weaker neighbour is suppressed
    prob[15, 3] = 0.5
    prob[10, 10] = 0.05  # below threshold
    idx, scores = peaks(prob, 0.1, 100)
    assert idx.tolist() == [[5, 5], [15, 3]] and scores.tolist() == pytest.approx([0.9, 0.5])
    assert len(peaks(prob, 0.1, 1)[0]) == 1


def test_grouping_into_clusters():
    rng = np.random.default_rng(0)
    tight = rng.normal([100, 100], 8, size=(6, 2))  # 6 calcs within ~2 mm at 0.1 mm
    pair = np.array([[300.0, 300.0], [305.0, 302.0]])  # too few
    far = rng.normal([100, 400], 8, size=(4, 2))
    pts = np.concatenate([tight, pair, far])
    scores = np.linspace(0.9, 0.2, len(pts))
    clusters = group(pts, scores, 0.1, CascadeConfig(link_mm=5.0, min_calcs=3))
    assert sorted(c.n_calcs for c in clusters) == [4, 6]
    best = clusters[0]
    assert best.n_calcs == 6 and best.detection_score == pytest.approx(np.mean(scores[:3]))
    r0, c0, r1, c1 = best.box
    assert r0 <= best.centre[0] <= r1 and c0 <= best.centre[1] <= c1
    assert len(group(pts, scores, 0.1, CascadeConfig(min_calcs=5))) == 1


def test_tiled_heatmap_matches_a_sliding_window_by_hand():
    torch.manual_seed(0)
    det = Detector(DetectorConfig(width=4)).eval()
    image = np.random.default_rng(1).random((200, 150)).astype(np.float32)
    cfg = CascadeConfig(tile=64, halo=16)
    prob, origin = heatmap(det, image, (0, 0, 200, 150), cfg)
    assert origin == (0, 0) and prob.shape == (100, 76)
    # the tile at (64, 64): the network sees the window with its halo
    window = np.pad(image, 16)[64 : 64 + 96, 64 : 64 + 96]
    with torch.no_grad():
        expected = torch.sigmoid(det(torch.from_numpy(window)[None, None]))[0, 0, 8:40, 8:40]
    np.testing.assert_allclose(prob[32:64, 32:64], expected.numpy(), atol=1e-6)


def test_breast_and_exam_scores_take_the_maximum():
    breasts, exams = aggregate_scores(
        [
            (("P1", "E1", "L"), 0.2),
            (("P1", "E1", "L"), 0.7),
            (("P1", "E1", "R"), 0.4),
            (("P2", "E1", "L"), 0.1),
        ]
    )
    assert breasts == {("P1", "E1", "L"): 0.7, ("P1", "E1", "R"): 0.4, ("P2", "E1", "L"): 0.1}
    assert exams == {("P1", "E1"): 0.7, ("P2", "E1"): 0.1}

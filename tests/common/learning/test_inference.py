import numpy as np
import pytest
import torch

from common.learning.inference import CascadeConfig, aggregate_scores, group, heatmap, peaks
from common.learning.models import Detector, DetectorConfig, build
from tests.common.learning.norms import trained_like_detector


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
    cfg = CascadeConfig(tile=64, halo=16, precision="float32")
    prob, origin = heatmap(det, image, (0, 0, 200, 150), cfg)
    assert origin == (0, 0) and prob.shape == (100, 76)
    # the tile at (64, 64): the network sees the window with its halo
    window = np.pad(image, 16)[64 : 64 + 96, 64 : 64 + 96]
    with torch.no_grad():
        expected = torch.sigmoid(det(torch.from_numpy(window)[None, None]))[0, 0, 8:40, 8:40]
    np.testing.assert_allclose(prob[32:64, 32:64], expected.numpy(), atol=1e-6)


def test_bfloat16_heatmap_stays_close_to_float32_and_unknown_precisions_are_refused():
    det = trained_like_detector()
    with torch.no_grad():
        det.head.bias.fill_(0.0)  # probabilities near 0.5, where rounding shows most
    image = np.random.default_rng(1).random((200, 150)).astype(np.float32) * 0.3 + 0.3
    image[50:53, 60:63] = 0.9
    exact, _ = heatmap(det, image, (0, 0, 200, 150), CascadeConfig(precision="float32"))
    fast, _ = heatmap(det, image, (0, 0, 200, 150), CascadeConfig(precision="bfloat16"))
    assert 0.05 < exact.mean() < 0.95
    assert np.abs(fast - exact).max() < 0.02 and np.abs(fast - exact).mean() < 0.003
    assert not np.array_equal(fast, exact)  # it did run in bfloat16
    with pytest.raises(ValueError, match="precision 'half'"):
        CascadeConfig(precision="half")


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


class _PeaksEverywhere(torch.nn.Module):
    """A detector whose heatmap peaks on a regular grid, whatever the image."""

    def __init__(self):
        super().__init__()
        self.config = DetectorConfig(width=4)

    def forward(self, x):
        out = torch.full((x.shape[0], 1, x.shape[2] // 2, x.shape[3] // 2), -10.0)
        out[..., ::6, ::6] = 10.0
        return out


def test_marks_fall_only_in_the_breast_and_never_on_the_pectoral_muscle(tmp_path):
    from common.imaging.breast import pectoral_mask
    from common.imaging.reading import read_mammogram
    from common.imaging.writing import mammogram_dataset, save
    from common.learning.inference import run_cascade
    from common.synth.phantom import render_breast

    rng = np.random.default_rng(2)
    p = render_breast((480, 384), "MLO", 2, rng)
    image = np.clip(p.attenuation + 0.02 * rng.standard_normal(p.mask.shape), 0, 1)
    image[-10:, :] = 0.95  # a film border along the bottom, inside the breast's box
    stored = (image * 4095).astype(np.uint16)
    ds = mammogram_dataset(stored, view="MLO", WindowCenter=2048, WindowWidth=4096)
    m = read_mammogram(save(ds, tmp_path / "mlo.dcm"))
    classifier = build("classifier", {"width": 4}).eval()
    models = {"detector": _PeaksEverywhere(), "classifier": classifier}
    config = CascadeConfig(max_points=100000)
    result = run_cascade(models, m, config)
    r, c = result.points.astype(int).T
    muscle = pectoral_mask(m.pixels, m.mask)
    assert len(result.points) > 100 and m.mask[r, c].all() and not muscle[r, c].any()
    assert muscle.sum() > 0.03 * m.mask.sum()
    assert (r < m.pixels.shape[0] - 12).all()  # none on the border


def test_tiles_outside_the_search_region_are_not_run_and_the_rest_unchanged():
    torch.manual_seed(0)
    det = Detector(DetectorConfig(width=4)).eval()
    image = np.random.default_rng(1).random((200, 150)).astype(np.float32)
    cfg = CascadeConfig(tile=64, halo=16, precision="float32")
    bbox = (8, 4, 200, 150)
    full, origin = heatmap(det, image, bbox, cfg)
    search = np.zeros(image.shape, bool)
    search[100:140, 90:120] = True  # inside the tiles at (64, 64) and (128, 64) of the box
    part, same_origin = heatmap(det, image, bbox, cfg, search)
    assert same_origin == origin == (8, 4)
    # the box-relative tiles (64, 64) and (128, 64) ran, nothing else did
    ran = np.zeros(part.shape, bool)
    ran[32:96, 32:64] = True
    assert (part[ran] > 0).all() and (part[~ran] == 0).all()
    np.testing.assert_allclose(part[ran], full[ran], atol=1e-6)


def test_clusters_below_the_operating_point_are_listed_but_not_marks(tmp_path):
    from common.evaluation.overlay import draw_overlay
    from common.imaging.reading import read_mammogram
    from common.imaging.writing import mammogram_dataset, save
    from common.learning.inference import ImageResult, result_to_json

    stored = np.full((200, 160), 2000, np.uint16)
    m = read_mammogram(save(mammogram_dataset(stored, view="CC"), tmp_path / "cc.dcm"))
    rng = np.random.default_rng(0)
    strong = rng.normal([50, 50], 4, size=(5, 2))
    weak = rng.normal([150, 110], 4, size=(4, 2))
    points = np.concatenate([strong, weak])
    scores = np.array([0.9] * 5 + [0.3] * 4)
    clusters = group(points, scores, 0.1, CascadeConfig())
    result = ImageResult(points, scores, clusters, mark_threshold=0.5)
    assert [c.n_calcs for c in result.marks] == [5]
    np.testing.assert_allclose(np.sort(result.marked_points(), axis=0), np.sort(strong, axis=0))
    listed = result_to_json(result, m)
    assert listed["n_marks"] == 1 and listed["mark_threshold"] == 0.5
    assert [c["marked"] for c in listed["clusters"]] == [True, False]
    assert sorted(listed["clusters"][1]["point_indices"]) == [5, 6, 7, 8]
    assert draw_overlay(m, result, tmp_path / "o.png").stat().st_size > 1000
    uncalibrated = ImageResult(points, scores, clusters)
    assert len(uncalibrated.marks) == 2  # no operating point: every cluster is a mark

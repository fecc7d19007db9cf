"""Hard negatives from a detector's false peaks."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.imaging.breast import search_region
from common.learning import mining
from common.learning.inference import run_cascade
from common.learning.mining import explained, false_peaks
from common.learning.models import build
from common.learning.samples import CanonFinding, ImageStore, PreparedImage, prepare


class BrightSpots(nn.Module):
    """A detector whose logits follow the image's small bright spots (its top-hat)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2)
        return 40.0 * (x - F.avg_pool2d(x, 9, stride=1, padding=4)) - 1.0


@pytest.fixture(scope="module")
def prepared(consortium, tmp_path_factory):
    store = ImageStore(PreprocessCache(tmp_path_factory.mktemp("cache")))
    records = load_hospital(consortium / "hospital-2", echo=False).images
    return store, prepare(records, store, weak="mil")


def _item(findings) -> PreparedImage:
    return PreparedImage(None, (200, 200), (0, 0, 200, 200), 0.1, findings)


def test_annotations_explain_points_near_them_and_inside_their_regions():
    finding = CanonFinding(
        centroid=np.array([50.0, 50.0]),
        box=(40.0, 40.0, 60.0, 70.0),
        points=np.array([[45.0, 45.0], [55.0, 65.0]]),
        malignant=True,
    )
    weak = CanonFinding(np.array([150.0, 150.0]), None, np.array([[150.0, 150.0]]), None)
    weak.bag = (125.0, 125.0, 175.0, 175.0)
    points = np.array(
        [
            [45.0, 64.0],  # inside the box
            [40.0, 89.0],  # 19 px (1.9 mm) right of the box: within the clearance
            [40.0, 92.0],  # 22 px: outside
            [170.0, 176.0],  # in the bag's margin
            [100.0, 100.0],
            [150.0, 125.0 - 25.0],
        ]
    )
    near = explained(points, _item([finding, weak]))
    assert near.tolist() == [True, True, False, True, False, False]
    assert not explained(points, _item([])).any()


def test_false_peaks_are_strong_spread_inside_the_search_region_and_unexplained(prepared):
    store, images = prepared
    detector = BrightSpots()
    spots = false_peaks(detector, images, store, per_image=3, spacing_px=48)
    assert len(spots) == len(images) and sum(len(s) for s in spots) > len(images)
    for item, found in zip(images, spots, strict=True):
        assert len(found) <= 3
        m = store.get(item.record)
        region = search_region(m.pixels, m.mask, m.view)
        for r, c in found:
            assert region[int(r), int(c)]
        assert not explained(found, item).any()
        gaps = [np.hypot(*(p - q)) for i, p in enumerate(found) for q in found[i + 1 :]]
        assert all(g >= 48 for g in gaps)
    # the strongest spots come first: the detector's logit at each kept spot falls
    item, found = next((im, s) for im, s in zip(images, spots, strict=True) if len(s) > 1)
    m = store.get(item.record)
    logits = detector(torch.from_numpy(m.pixels)[None, None])[0, 0].numpy()
    values = [logits[int(r) // 2, int(c) // 2] for r, c in found]
    assert values == sorted(values, reverse=True)


def test_no_false_peak_where_the_annotation_reaches_everywhere(prepared, monkeypatch):
    store, images = prepared
    with_findings = [im for im in images if im.findings]
    monkeypatch.setattr(mining, "CLEARANCE_MM", 1e4)
    spots = false_peaks(BrightSpots(), with_findings, store, per_image=5, spacing_px=8)
    assert with_findings and all(len(s) == 0 for s in spots)


def test_mined_spots_are_points_the_cascade_reports(prepared):
    store, images = prepared
    torch.manual_seed(3)
    detector = build("detector", {"width": 4})
    with torch.no_grad():  # a bias that puts some heatmap peaks above the threshold
        detector.head.bias.fill_(-1.0)
    spots = false_peaks(detector, images[:4], store, per_image=4, spacing_px=24)
    assert sum(len(s) for s in spots) > 0
    for item, found in zip(images[:4], spots, strict=True):
        result = run_cascade({"detector": detector}, store.get(item.record))
        reported = {tuple(p) for p in result.points}
        assert {tuple(p) for p in found} <= reported

"""Fitting the cluster verifier on a detector's own clusters."""

from types import SimpleNamespace

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from common.learning.inference import run_cascade
from common.learning.samples import CanonFinding, PreparedImage
from common.learning.verification import fit_verifier, labelled_clusters

SIZE, SPACING = 256, 0.1


class Dots(nn.Module):
    """A detector that finds every small bright dot (the image's top-hat), true or not."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2)
        return 40.0 * (x - F.avg_pool2d(x, 9, stride=1, padding=4)) - 4.0


class Store:
    """Images by record, as :class:`~common.learning.samples.ImageStore` gives them."""

    def __init__(self) -> None:
        self.images: dict[str, SimpleNamespace] = {}

    def get(self, record):
        return self.images[record]


def _dot(pixels, r, c, amplitude):
    pixels[int(r) : int(r) + 2, int(c) : int(c) + 2] += amplitude


def _images(store: Store, n: int, seed: int) -> list[PreparedImage]:
    """Each image: one annotated cluster of dots and one unannotated dotted line (a scratch),
    their dots equally bright, so the detector's scores cannot tell them apart."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        pixels = np.full((SIZE, SIZE), 0.3, np.float32)
        centre = rng.uniform(60, 100, size=2)
        calcs = centre + rng.normal(0, 7, size=(int(rng.integers(6, 12)), 2))
        for r, c in calcs:
            _dot(pixels, r, c, rng.uniform(0.2, 0.6))
        row, start = rng.uniform(170, 220), rng.uniform(20, 60)
        for k in range(int(rng.integers(12, 20))):
            _dot(pixels, row + 0.15 * k, start + 9 * k, rng.uniform(0.2, 0.6))
        key = f"{seed}-{i}"
        store.images[key] = SimpleNamespace(
            pixels=pixels,
            mask=np.ones((SIZE, SIZE), bool),
            bbox=(0, 0, SIZE, SIZE),
            view="CC",
            spacing_mm=(SPACING, SPACING),
        )
        lo, hi = calcs.min(axis=0) - 3, calcs.max(axis=0) + 3
        finding = CanonFinding(calcs.mean(axis=0), (*lo, *hi), calcs, True)
        items.append(PreparedImage(key, (SIZE, SIZE), (0, 0, SIZE, SIZE), SPACING, [finding]))
    return items


def test_the_verifier_tells_clusters_from_lines_the_detector_scores_alike():
    store, detector = Store(), Dots()
    train, test = _images(store, 14, seed=0), _images(store, 14, seed=1)
    verifier, report = fit_verifier(detector, train, store)
    assert report["findings"] >= 14 and report["false_clusters"] >= 14
    features, labels = labelled_clusters(detector, test, store)
    assert labels.any() and (~labels).any()
    verified = features[:, 0] * verifier.probability(features)
    assert roc_auc_score(labels, features[:, 0]) < 0.8  # the detector alone: no better
    assert roc_auc_score(labels, verified) > 0.95
    # in the cascade, the verifier's product is each cluster's detection score (the
    # image's frame, where the top-hat answers too, may be split off as tracks: score 0)
    image = store.get(test[0].record)
    result = run_cascade({"detector": detector, "verifier": verifier}, image)
    judged = [c for c in result.clusters if c.artifact is None]
    assert judged and all(c.detection_score == c.detector_score * c.verification for c in judged)
    assert all(c.detection_score == 0.0 for c in result.clusters if c.artifact)


def test_no_verifier_without_enough_clusters_of_each_kind():
    store = Store()
    images = _images(store, 2, seed=2)
    verifier, report = fit_verifier(Dots(), images, store)
    assert verifier is None and "fewer than 5" in report["skipped"]

"""Candidate calcifications from a finding's region, against the generator's points."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from common.imaging.breast import breast_mask
from common.learning.weak import candidate_points
from common.synth.calcs import draw_cluster, make_cluster
from common.synth.phantom import render_breast

SPACING = 0.1


def _case(seed: int, malignant: bool = True):
    """A phantom breast at 0.1 mm with one cluster: image, breast, truth points, ROI."""
    rng = np.random.default_rng(seed)
    p = render_breast((600, 480), "CC", 2, rng)
    image = p.attenuation.copy()
    cluster = make_cluster(malignant, 3, rng)
    points, roi = draw_cluster(image, cluster, p.position(0.5, 0.0), SPACING)
    image = np.clip(image + 0.01 * rng.standard_normal(image.shape), 0, 1).astype(np.float32)
    return image, breast_mask(image), points, roi


def _box(roi):
    rows, cols = np.nonzero(roi)
    return (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)


def _match(found, truth, radius_mm=0.5):
    radius = radius_mm / SPACING
    precision = float(np.mean(cKDTree(truth).query(found)[0] <= radius))
    recall = float(np.mean(cKDTree(found).query(truth)[0] <= radius))
    return precision, recall


@pytest.mark.parametrize("malignant", [True, False])
def test_candidates_in_a_roi_box_fall_on_its_calcifications(malignant):
    scores = []
    for seed in range(6):
        image, breast, truth, roi = _case(seed, malignant)
        centre = truth.mean(axis=0)
        found = candidate_points(image, _box(roi), centre, SPACING, breast)
        assert len(found) > 1  # more than the centroid
        scores.append(_match(found, truth))
    precision, recall = np.mean(scores, axis=0)
    # what one peak at the centroid gives: recall 1/N at best
    assert precision >= 0.6 and recall >= 0.6, scores


def test_the_mask_limits_the_candidates_and_a_quiet_region_gives_the_centroid():
    image, breast, truth, roi = _case(0)
    centre = truth.mean(axis=0)
    found = candidate_points(image, _box(roi), centre, SPACING, breast, region=roi)
    r, c = found.astype(int).T
    assert roi[r, c].all()
    # a region of noise alone: nothing stands out, so the finding keeps its centroid
    rng = np.random.default_rng(1)
    flat = (0.5 + 0.01 * rng.standard_normal((300, 300))).astype(np.float32)
    calm = candidate_points(flat, (100, 100, 150, 150), np.array([125.0, 125.0]), SPACING)
    assert calm.tolist() == [[125.0, 125.0]]
    assert candidate_points(image, None, centre, SPACING).tolist() == [centre.tolist()]

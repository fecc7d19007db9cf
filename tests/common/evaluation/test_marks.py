"""The cascade's operating point: false marks per full-field normal image."""

import numpy as np
import pytest

from common.evaluation.marks import (
    FULL_FIELD_BREAST_CM2,
    calibrate,
    full_field_summary,
    marks_line,
)
from common.evaluation.metrics import FrocStats
from common.synth.generate import SIZES
from common.synth.phantom import render_breast


def test_full_field_breast_area_is_the_phantoms():
    spacing = 0.4  # coarse: the outline, not the texture, sets the area
    height, width = SIZES["full"]
    shape = (round(height / spacing), round(width / spacing))
    areas = []
    for view in ("CC", "MLO"):
        for seed in range(4):
            p = render_breast(shape, view, 2, np.random.default_rng(seed))
            searched = p.mask & ~(p.muscle if p.muscle is not None else False)
            areas.append(searched.sum() * spacing**2 / 100)
    assert np.mean(areas) == pytest.approx(FULL_FIELD_BREAST_CM2, rel=0.05)


def _normal_images(fp_scores, images: int, area_each: float) -> FrocStats:
    froc = FrocStats.empty()
    for i in range(images):
        froc.add_image([], fp_scores if i == 0 else [], area_each, normal=True)
    return froc


def test_calibration_takes_the_lowest_threshold_meeting_the_target():
    # 10 normal images of 75 cm²: two full-field images of breast, four false clusters
    froc = _normal_images([0.2, 0.3, 0.6, 0.9], 10, 2 * FULL_FIELD_BREAST_CM2 / 10)
    froc.add_image([0.95, 0.5, None], [0.99], 10.0)  # findings, and a false cluster
    strict = calibrate(froc, max_false=0.5)
    assert strict["threshold"] == pytest.approx(0.601)  # one false mark in two images
    assert strict["false_marks_per_full_field_image"] == pytest.approx(0.5)
    assert strict["basis"] == "normal images" and strict["images"] == 10
    assert strict["sensitivity"] == pytest.approx(1 / 3)
    # exact Poisson bound of one event in two units: chi2(0.95, 4) / 2 / 2
    assert strict["false_marks_upper95"] == pytest.approx(9.4877 / 2 / 2, rel=1e-3)
    assert calibrate(froc, max_false=0.0)["threshold"] == pytest.approx(0.901)
    loose = calibrate(froc, max_false=1.0)
    assert loose["threshold"] == pytest.approx(0.301)
    assert loose["sensitivity"] == pytest.approx(2 / 3)
    assert calibrate(froc, max_false=10.0)["threshold"] == 0.0
    assert "0.601" in marks_line(strict)


def test_false_marks_scale_with_the_breast_area_not_the_image_count():
    # the same four false clusters spread over four full-field images of breast
    froc = _normal_images([0.2, 0.3, 0.6, 0.9], 10, 4 * FULL_FIELD_BREAST_CM2 / 10)
    assert calibrate(froc, max_false=0.5)["threshold"] == pytest.approx(0.301)
    assert calibrate(froc, max_false=0.25)["threshold"] == pytest.approx(0.601)
    summary = full_field_summary(froc, 0.301)
    assert summary["normal_false_marks_per_full_field_image"] == pytest.approx(0.5)
    assert summary["full_field_images"] == pytest.approx(4.0)
    assert summary["normal_false_marks"] == 2 and summary["normal_full_field_images"] == 4.0
    # Garwood's exact interval for 2 events: [0.2422, 7.2247] per unit, here 4 units
    low, high = summary["normal_false_marks_95ci"]
    assert low == pytest.approx(0.2422 / 4, rel=1e-3) and high == pytest.approx(
        7.2247 / 4, rel=1e-3
    )


def test_little_normal_breast_falls_back_to_every_images_false_clusters():
    froc = _normal_images([0.9], 4, FULL_FIELD_BREAST_CM2 / 4)  # one full-field image
    froc.add_image([0.8], [0.4, 0.7], FULL_FIELD_BREAST_CM2)
    result = calibrate(froc, max_false=1.0)
    assert result["basis"] == "all images" and result["full_field_images"] == 2.0
    assert result["threshold"] == pytest.approx(0.401)  # 0.9 and 0.7 in two images


def test_without_normal_images_every_false_cluster_counts_and_without_area_none():
    froc = FrocStats.empty()
    froc.add_image([0.8], [0.4, 0.7], FULL_FIELD_BREAST_CM2)
    result = calibrate(froc, max_false=1.0)
    assert result["basis"] == "all images" and result["threshold"] == pytest.approx(0.401)
    assert result["false_marks_upper95"] > 1.0  # one full-field image cannot show 1
    assert froc.fp_per_cm2(0.5) == pytest.approx(1 / FULL_FIELD_BREAST_CM2)
    assert froc.fp_per_cm2(0.0) == pytest.approx(2 / FULL_FIELD_BREAST_CM2)
    empty = calibrate(FrocStats.empty())
    assert empty["threshold"] is None and "not calibrated" in marks_line(empty)


def test_area_and_normal_counts_add_across_hospitals_and_survive_json():
    a = _normal_images([0.5], 3, 12.0)
    b = FrocStats.empty()
    b.add_image([0.7], [0.2], 20.0)
    total = FrocStats.from_dict(a.to_dict()) + FrocStats.from_dict(b.to_dict())
    assert total.area_cm2 == pytest.approx(56.0)
    assert total.normal_area_cm2 == pytest.approx(36.0) and total.normal_images == 3
    assert total.normal_fp.sum() == 1 and total.fp.sum() == 2
    old = {k: v for k, v in b.to_dict().items() if "area" not in k and "normal" not in k}
    assert FrocStats.from_dict(old).normal_images == 0  # statistics written before areas

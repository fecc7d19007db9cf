"""The cascade's operating point: which clusters are drawn as marks.

A screening reader tolerates well under one false mark per image, and the images we
evaluate on are often far smaller than a mammogram (the default synthetic image holds
about 1/40 of a full-field breast). False clusters are therefore counted per cm² of the
breast the detector searched, and scaled to a **full-field image**: the breast area of
the phantom's full-field preset (24 × 30 cm detector), :data:`FULL_FIELD_BREAST_CM2`.

:func:`calibrate` picks the lowest detection score at which the validation images' false
clusters stay at or under the target per full-field normal image. Clusters below it are
still listed (with their scores) but are not marks.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

from common.evaluation.metrics import FrocStats

#: Breast area (cm², pectoral muscle excluded) of a full-field image: the mean of the
#: phantom's CC and MLO views at the 'full' size (tests/common/evaluation/test_marks.py).
FULL_FIELD_BREAST_CM2 = 375.0
#: Default target: false clusters per full-field normal image at the operating point.
MAX_FALSE_MARKS = 0.5
#: Normal breast (in full-field images) below which every image's false clusters are used
MIN_NORMAL_FULL_FIELD = 2.0


def calibrate(
    froc: FrocStats,
    max_false: float = MAX_FALSE_MARKS,
    breast_cm2: float = FULL_FIELD_BREAST_CM2,
) -> dict:
    """Return the lowest detection threshold meeting ``max_false`` on ``froc``'s images.

    The false clusters of images with no finding are used when they hold at least
    :data:`MIN_NORMAL_FULL_FIELD` full-field images of breast; otherwise those of every
    image (each false cluster is a false mark wherever it is), for a steadier estimate.
    The estimate's exact Poisson 95 % upper bound is returned with it: a validation set of
    little breast cannot show a low false-mark rate, and the bound says so.

    Returns
    -------
    dict
        ``threshold`` (None when no breast area was evaluated), ``basis`` ('normal
        images' or 'all images'), the estimate ``false_marks_per_full_field_image`` and
        ``sensitivity`` at it, and how much breast the estimate rests on
        (``full_field_images``: the area in full-field images).
    """
    bins = len(froc.fp)
    if froc.normal_area_cm2 >= MIN_NORMAL_FULL_FIELD * breast_cm2:
        counts, area, basis = froc.normal_fp, froc.normal_area_cm2, "normal images"
    elif froc.area_cm2 > 0:
        counts, area, basis = froc.fp, froc.area_cm2, "all images"
    else:
        return {"threshold": None, "basis": None, "reason": "no breast area evaluated"}
    # false marks at threshold k / bins, for k = 0..bins (the last: none)
    above = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]]) / area * breast_cm2
    k = int(np.argmax(above <= max_false + 1e-12))
    threshold = k / bins
    count = int(round(above[k] * area / breast_cm2))
    return {
        "threshold": threshold,
        "basis": basis,
        "target_false_marks": max_false,
        "false_marks_per_full_field_image": float(above[k]),
        "false_marks_upper95": float(chi2.ppf(0.95, 2 * (count + 1)) / 2 / (area / breast_cm2)),
        "sensitivity": froc.sensitivity_above(threshold),
        "lesions": froc.lesions,
        "images": froc.normal_images if basis == "normal images" else froc.images,
        "full_field_images": round(area / breast_cm2, 3),
    }


def full_field_summary(
    froc: FrocStats,
    threshold: float | None,
    breast_cm2: float = FULL_FIELD_BREAST_CM2,
    points=(0.25, 0.5, 1.0, 2.0),
) -> dict:
    """FROC per full-field image, and false marks on normal images at ``threshold``."""
    out: dict = {
        f"sens@{p:g}fp": froc.sensitivity_at(p, breast_cm2) if froc.area_cm2 > 0 else None
        for p in points
    }
    values = [v for v in out.values() if v is not None]
    out["mean_sensitivity"] = float(np.mean(values)) if values else None
    out["breast_cm2"] = round(froc.area_cm2, 2)
    out["full_field_images"] = round(froc.area_cm2 / breast_cm2, 3)
    out["false_clusters_per_cm2"] = (
        float(froc.fp.sum() / froc.area_cm2) if froc.area_cm2 > 0 else None
    )
    if threshold is not None:
        rate = froc.normal_fp_per_cm2(threshold)
        out["mark_threshold"] = threshold
        out["normal_false_marks_per_full_field_image"] = (
            float(rate * breast_cm2) if np.isfinite(rate) else None
        )
        out["mark_sensitivity"] = froc.sensitivity_above(threshold)
        out["normal_images"] = froc.normal_images
        # a rate from a few false marks is a wide interval: give the count and its bounds
        fields = froc.normal_area_cm2 / breast_cm2
        count = int(round(rate * froc.normal_area_cm2)) if np.isfinite(rate) else 0
        out["normal_false_marks"] = count
        out["normal_full_field_images"] = round(fields, 3)
        out["normal_false_marks_95ci"] = (
            list(poisson_interval(count, fields)) if fields > 0 else None
        )
    return out


def poisson_interval(count: int, exposure: float, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson rate: ``count`` events in ``exposure`` units."""
    alpha = 1.0 - level
    low = chi2.ppf(alpha / 2, 2 * count) / 2 if count > 0 else 0.0
    high = chi2.ppf(1 - alpha / 2, 2 * (count + 1)) / 2
    return float(low / exposure), float(high / exposure)


def marks_line(calibration: dict) -> str:
    """One line saying which operating point a calibration chose, and on what."""
    if calibration.get("threshold") is None:
        reason = calibration.get("reason", "no data")
        return f"operating point not calibrated ({reason}): every cluster is a mark"
    c = calibration
    return (
        f"operating point: detection score >= {c['threshold']:.3f} "
        f"({c['false_marks_per_full_field_image']:.2f} false marks per full-field image, "
        f"95% upper bound {c['false_marks_upper95']:.2f}, on {c['images']} validation "
        f"{c['basis']} holding {c['full_field_images']:.2f} full-field images of breast; "
        f"cluster sensitivity {c['sensitivity']:.2f} of {c['lesions']})"
    )

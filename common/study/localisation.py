"""Readers' marks localised on the findings: what the wAFROC figure of merit needs.

A mark (:mod:`common.data.marks`) *localises* a finding of its view when it lies in the
finding's ROI box grown by 1 mm (the rule the model's clusters are scored by,
:mod:`common.evaluation.images`). The targets are the malignant findings, one lesion per
finding id over the breast's views (a lesion seen on CC and MLO keeps its id); every
other mark is a non-lesion mark. This is what RJafroc's weighted AFROC (wAFROC) needs:
the highest non-lesion rating of each non-diseased case, and each lesion's highest
localising rating (:meth:`common.study.panel.PanelStats.from_marks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from common.data.marks import Mark
from common.data.records import Finding, ImageRecord
from common.imaging.roi import in_roi

#: How far outside a finding's ROI box a mark still localises it.
TOLERANCE_MM = 1.0


@dataclass
class MarkedRead:
    """A read's marks localised on its breast.

    Attributes
    ----------
    non_lesion : float
        Highest rating of a mark that localises no lesion (NaN: none).
    lesions : dict
        Lesion (finding id) → highest rating of a mark localising it (NaN: not marked).
    """

    non_lesion: float = math.nan
    lesions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BreastViews:
    """The findings of a breast's views, in stored pixels, with each view's spacing."""

    findings: dict[str, list[Finding]]
    spacing_mm: dict[str, tuple[float, float]]

    @property
    def lesions(self) -> tuple[str, ...]:
        """The breast's malignant findings (finding ids, over all views)."""
        ids = {f.finding_id for fs in self.findings.values() for f in fs if f.malignant}
        return tuple(sorted(ids))


def breast_views(
    images: list[ImageRecord], spacing: Callable[[ImageRecord], tuple[float, float]]
) -> dict[tuple, BreastViews]:
    """Group the images by breast: each view's findings and its stored spacing (mm)."""
    out: dict[tuple, BreastViews] = {}
    for im in images:
        views = out.setdefault(im.breast_key, BreastViews({}, {}))
        view = (im.view or "").upper()
        views.findings.setdefault(view, []).extend(im.findings)
        views.spacing_mm[view] = tuple(spacing(im))
    return out


def localise(
    marks: tuple[Mark, ...], views: BreastViews, tolerance_mm: float = TOLERANCE_MM
) -> MarkedRead:
    """Localise a read's marks on its breast's lesions (malignant findings)."""
    out = MarkedRead(lesions={lesion: math.nan for lesion in views.lesions})
    for mark in marks:
        spacing = views.spacing_mm.get(mark.view)
        hit = []
        if spacing is not None:
            tolerance = (tolerance_mm / spacing[0], tolerance_mm / spacing[1])
            hit = [
                f.finding_id
                for f in views.findings.get(mark.view, [])
                if f.malignant and in_roi((mark.row, mark.col), f.box, f.centroid, tolerance)
            ]
        for lesion in hit:
            out.lesions[lesion] = np.fmax(out.lesions[lesion], mark.rating)
        if not hit:
            out.non_lesion = float(np.fmax(out.non_lesion, mark.rating))
    out.lesions = {k: float(v) for k, v in out.lesions.items()}
    return out

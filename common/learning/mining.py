"""Hard negatives mined from a detector's own false peaks (bootstrapping).

The negatives sampled before any training (random spots of the breast and the brightest
top-hat spots, :func:`~common.learning.samples.detector_patches`) seldom fall on what a
trained detector still takes for calcification: the parallel tracks of a calcified
vessel, an emulsion scratch, a row of dust specks. Mining asks the detector itself, the
way the cascade runs it (its tiles over the search region), and keeps for each image:

1. the peaks of its heatmap (3 x 3 maxima) of at least :data:`MIN_SCORE`, inside the
   search region (the breast, less an oblique view's muscle);
2. that no annotation explains: farther than :data:`CLEARANCE_MM` from every annotated
   point and centroid, and outside every finding's box and multiple-instance bag grown
   by :data:`CLEARANCE_MM`;
3. the strongest first, no two closer than half a training patch (each then adds a
   different patch), at most ``per_image``.

The patches cut there keep the image's own target (:func:`negative_patches`): a patch
that also holds part of a finding still teaches that finding.

A calcification nobody annotated becomes a negative too: in CBIS-DDSM only the findings
that were worked up are outlined, so the detector is taught to stay quiet on the rest,
which is what a CAD that marks clusters to look at should do, but it is a choice.

Not used with DP-SGD: which patches enter the training set would depend on the model,
itself trained on the patient's images, and DP-SGD's accounting assumes a fixed set of
examples per patient.
"""

from __future__ import annotations

import numpy as np
import torch
from rich.progress import Progress
from scipy.spatial import cKDTree

from common.imaging.breast import search_region
from common.learning.inference import DEFAULT_CASCADE, CascadeConfig, heatmap, peaks
from common.learning.samples import ImageStore, PreparedImage

#: Lowest heatmap probability of a mined peak: the cascade's own point threshold.
MIN_SCORE = DEFAULT_CASCADE.peak_threshold

#: How far (mm) from an annotation a peak must be to count as false.
CLEARANCE_MM = 2.0


def false_peaks(
    detector: torch.nn.Module,
    images: list[PreparedImage],
    store: ImageStore,
    per_image: int,
    spacing_px: float,
    cascade: CascadeConfig = DEFAULT_CASCADE,
    progress: bool = False,
) -> list[np.ndarray]:
    """Return, per image, the detector's strongest peaks that no annotation explains.

    Parameters
    ----------
    detector : torch.nn.Module
        The model to ask (put in eval mode; the caller's training sets its own mode).
    images : list of PreparedImage
        Images with their findings in canonical coordinates.
    store : ImageStore
        Where their canonical pixels come from.
    per_image : int
        Most peaks kept per image.
    spacing_px : float
        Least distance (canonical pixels) between two kept peaks of an image.
    cascade : CascadeConfig
        Tiling and precision of the heatmap (the cascade's own by default).
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of numpy.ndarray
        (K, 2) (row, col) per image, strongest first, K <= ``per_image``.
    """
    stride = detector.config.stride
    out = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("mining false peaks", total=len(images))
        for item in images:
            m = store.get(item.record)
            region = search_region(m.pixels, m.mask, m.view)
            prob, origin = heatmap(detector, m.pixels, m.bbox, cascade, region)
            idx, _ = peaks(prob, MIN_SCORE, cascade.max_points)
            points = idx.astype(np.float64) * stride + np.array(origin)
            if len(points):
                r = np.clip(points[:, 0].astype(int), 0, region.shape[0] - 1)
                c = np.clip(points[:, 1].astype(int), 0, region.shape[1] - 1)
                points = points[region[r, c]]
            points = points[~explained(points, item)]
            out.append(_spread(points, per_image, spacing_px))
            bar.advance(task)
    return out


def explained(points: np.ndarray, item: PreparedImage) -> np.ndarray:
    """Which ``points`` lie near an annotation of ``item`` (see the module's rule 2)."""
    near = np.zeros(len(points), dtype=bool)
    if len(points) == 0 or not item.findings:
        return near
    reach = CLEARANCE_MM / item.spacing_mm
    marks = [item.points] + [f.centroid[None, :] for f in item.findings]
    dist, _ = cKDTree(np.concatenate(marks)).query(points)
    near |= dist <= reach
    for f in item.findings:
        for box in (f.box, f.bag):
            if box is not None:
                r0, c0, r1, c1 = box
                near |= (
                    (points[:, 0] >= r0 - reach)
                    & (points[:, 0] <= r1 + reach)
                    & (points[:, 1] >= c0 - reach)
                    & (points[:, 1] <= c1 + reach)
                )
    return near


def _spread(points: np.ndarray, most: int, spacing: float) -> np.ndarray:
    """Keep the first ``most`` of ``points`` (strongest first), none closer than ``spacing``."""
    kept: list[np.ndarray] = []
    for p in points:
        if len(kept) == most:
            break
        if all(np.hypot(*(p - q)) >= spacing for q in kept):
            kept.append(p)
    return np.array(kept).reshape(-1, 2)

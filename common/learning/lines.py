"""Clusters strung along straight lines: scratches and calcified vessels, not findings.

An emulsion scratch is a thin straight line, and a calcified vessel shows two parallel
tracks (its walls, "tram lines") about a vessel's width apart. The detector fires along
both, and single linkage strings the peaks into long clusters. Readers dismiss both.
Malignant calcifications cast in a duct (BI-RADS linear or segmental) lie along a line
too, but they are scattered across it by a few tenths of a millimetre. So a cluster is
set aside only when nearly all of its points lie on one line, or on two parallel lines,
within 0.15 mm: as straight as the peak grid allows.

The rule (:func:`line_artifact`): a cluster of at least ``LINE_MIN_POINTS`` points spanning
at least ``LINE_MIN_LENGTH_MM`` is a **scratch** when at least ``SCRATCH_SHARE`` of them
lie in one straight band ``LINE_BAND_MM`` wide; one of at least ``VESSEL_MIN_POINTS``
spanning at least ``VESSEL_MIN_LENGTH_MM`` is a **vessel** when at least ``VESSEL_SHARE``
of them lie in two parallel bands that wide, 0.7–2.5 mm apart, each holding at least 3.
Two bands catch scattered points more easily than one, hence the larger minimum. The
thresholds were chosen on the film bench's clusters and on clusters the phantom draws
(docs/results.md, "Line artifacts"); the tests check them on fresh draws.
"""

from __future__ import annotations

import numpy as np

#: Width of the band a straight line's points fall in (mm): the 0.2 mm peak grid's
#: spread across a line at any angle.
LINE_BAND_MM = 0.3
#: Fewest points of a cluster judged a scratch (fewer lie on a line by chance).
LINE_MIN_POINTS = 8
#: Shortest extent of such a cluster (mm).
LINE_MIN_LENGTH_MM = 5.0
#: Share of points in one band that makes a scratch.
SCRATCH_SHARE = 0.85
#: Fewest points and shortest extent (mm) of a cluster judged a calcified vessel.
VESSEL_MIN_POINTS = 15
VESSEL_MIN_LENGTH_MM = 10.0
#: Share of points in two parallel bands that makes a calcified vessel.
VESSEL_SHARE = 0.85
#: Distances between a vessel's two tracks tried (mm).
VESSEL_GAPS_MM = np.arange(0.7, 2.5001, 0.05)


def line_shares(points_mm: np.ndarray) -> tuple[float, float]:
    """Return the largest shares of points in one band and in two parallel bands.

    Directions are searched every 1° and refined every 0.1° around the best ones; a band
    starts at a point (the densest placement of a band always does).

    Parameters
    ----------
    points_mm : numpy.ndarray
        (N, 2) point positions in mm.

    Returns
    -------
    one, two : float
        Shares in ``LINE_BAND_MM`` of one line and of two lines ``VESSEL_GAPS_MM`` apart,
        each with at least 3 points (0 where none is).
    """
    p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    if n == 0:
        return 0.0, 0.0
    p = p - p.mean(axis=0)
    index = np.arange(n)

    def counts(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        best_one, best_two = np.zeros(len(angles)), np.zeros(len(angles))
        for k, angle in enumerate(angles):
            across = np.sort(p @ np.array([np.cos(angle), -np.sin(angle)]))
            one = np.searchsorted(across, across + LINE_BAND_MM, "right") - index
            start = across[:, None] + VESSEL_GAPS_MM[None, :]
            two = np.searchsorted(across, start + LINE_BAND_MM, "right") - np.searchsorted(
                across, start, "left"
            )
            both = np.where((two >= 3) & (one[:, None] >= 3), one[:, None] + two, 0)
            best_one[k], best_two[k] = one.max(), both.max()
        return best_one, best_two

    coarse = np.deg2rad(np.arange(0.0, 180.0, 1.0))
    one, two = counts(coarse)
    best = [float(one.max()), float(two.max())]
    for top in {int(np.argmax(one)), int(np.argmax(two))}:
        fine = coarse[top] + np.deg2rad(np.arange(-1.0, 1.0001, 0.1))
        f_one, f_two = counts(fine)
        best = [max(best[0], float(f_one.max())), max(best[1], float(f_two.max()))]
    return best[0] / n, best[1] / n


def line_artifact(points_mm: np.ndarray) -> str | None:
    """Return ``"scratch"`` or ``"vessel"`` for a cluster strung along lines, else None."""
    p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    if len(p) < LINE_MIN_POINTS:
        return None
    centred = p - p.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    length = float(np.ptp(centred @ direction))
    if length < LINE_MIN_LENGTH_MM:
        return None
    one, two = line_shares(p)
    if one >= SCRATCH_SHARE:
        return "scratch"
    if len(p) >= VESSEL_MIN_POINTS and length >= VESSEL_MIN_LENGTH_MM and two >= VESSEL_SHARE:
        return "vessel"
    return None

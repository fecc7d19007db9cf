"""Lead markers and burned-in letters: flat plateaus of the brightest level, not breast.

The technologist's lead marker ("LCC", "RMLO") blocks the beam, so on film its letters
are clear film, the brightest level of the scan, and on a digital unit burned-in text is
drawn at the display's white. Either way a letter is a plateau: flat (no quantum noise or
film grain reaches it), millimetres long, and far brighter than what lies around it. A
calcification detector fires on the letters' corners and stroke ends. The breast mask
keeps markers out where they lie in the air (:mod:`common.imaging.breast`), but a marker
under tape that the mask joins to the breast, or one laid over the skin, would be
searched.

:func:`marker_mask` finds the plateaus in the pixels: connected regions at least
``MARKER_LEVEL`` of the display range, at least ``MARKER_AREA_MM2`` in area and
``MARKER_EXTENT_MM`` long, drawn in strokes no wider than twice
``MARKER_HALF_STROKE_MM``, whose values vary by at most ``MARKER_FLAT`` (standard
deviation) and stand at least ``MARKER_RISE`` above the ring ``MARKER_RING_MM`` outside
them (median against median). A calcification is smaller. Where calcifications and dense
tissue saturate together, the tissue around them is nearly as bright and varies, so they
fail the rise and the flatness; a saturated pectoral muscle is too wide. Grown by
``MARKER_REACH_MM``, the plateaus are taken out of the breast mask, so they are never
searched, sampled as patches or mined as hard negatives. A marker wholly over tissue
rises above it no more than a large calcification does, and one merged with a film
border of another level is not flat; neither is found. The thresholds are in the
canonical image's display range and were measured on the phantom's film
(docs/results.md, "Lead markers in the pixels"), not on real images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Least level of a marker's plateau (display range).
MARKER_LEVEL = 0.9
#: Least area of one plateau (mm²): a letter's strokes, more than a calcification's.
MARKER_AREA_MM2 = 1.0
#: Least length of one plateau (mm, its bounding box's longer side).
MARKER_EXTENT_MM = 2.0
#: Most standard deviation of a plateau's values (display range).
MARKER_FLAT = 0.02
#: Least rise of a plateau's median above the median of the ring around it.
MARKER_RISE = 0.6
#: Most half-width of a plateau's widest stroke (mm): a letter is drawn in strokes, while
#: a pectoral muscle or dense tissue that a window saturates is wide.
MARKER_HALF_STROKE_MM = 1.0
#: The ring's inner and outer distance from the plateau (mm).
MARKER_RING_MM = (0.3, 0.6)
#: How far beyond a plateau the detector's peaks still sit on it (mm): its high-pass
#: input sees a letter's edge from about as far as a film border's
#: (:data:`common.imaging.breast.BORDER_MARGIN`).
MARKER_REACH_MM = 1.0


def marker_mask(image: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Return where ``image`` shows a lead marker or burned-in letters (module docstring).

    Parameters
    ----------
    image : numpy.ndarray
        The canonical image (display range 0–1, calcium bright).
    spacing_mm : float
        Its pixel spacing (mm, square).

    Returns
    -------
    numpy.ndarray
        bool, ``image.shape``: the plateaus grown by ``MARKER_REACH_MM``.
    """
    image = np.asarray(image)
    out = np.zeros(image.shape, dtype=bool)
    bright = image >= MARKER_LEVEL
    labels, n = ndimage.label(bright, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return out
    flat = labels[bright]  # the bright pixels only: few beside the whole image
    count = np.bincount(flat, minlength=n + 1)[1:]
    values = image[bright].astype(np.float64)
    total = np.bincount(flat, weights=values, minlength=n + 1)[1:]
    squares = np.bincount(flat, weights=values * values, minlength=n + 1)[1:]
    mean = total / np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean * mean, 0.0))
    objects = ndimage.find_objects(labels)
    extent = np.array([max(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in objects])
    candidates = np.flatnonzero(
        (count * spacing_mm**2 >= MARKER_AREA_MM2)
        & (extent * spacing_mm >= MARKER_EXTENT_MM)
        & (std <= MARKER_FLAT)
    )
    inner, outer = MARKER_RING_MM
    pad = int(np.ceil(max(outer, MARKER_REACH_MM) / spacing_mm)) + 1
    for i in candidates:
        rows, cols = objects[i]
        window = (
            slice(max(rows.start - pad, 0), rows.stop + pad),
            slice(max(cols.start - pad, 0), cols.stop + pad),
        )
        plateau = labels[window] == i + 1
        if ndimage.distance_transform_edt(plateau).max() * spacing_mm > MARKER_HALF_STROKE_MM:
            continue
        away = ndimage.distance_transform_edt(~plateau) * spacing_mm
        ring = (away > inner) & (away <= outer)
        crop = image[window]
        if ring.any() and np.median(crop[plateau]) - np.median(crop[ring]) >= MARKER_RISE:
            out[window] |= away <= MARKER_REACH_MM
    return out

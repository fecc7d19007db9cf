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
``MARKER_EXTENT_MM`` to ``MARKER_MAX_EXTENT_MM`` long, drawn in strokes no wider than twice
``MARKER_HALF_STROKE_MM``, whose values vary by at most ``MARKER_FLAT`` (standard
deviation) and stand at least ``MARKER_RISE`` above the ring ``MARKER_RING_MM`` outside
them (median against median). A calcification is smaller. Where calcifications and dense
tissue saturate together, the tissue around them is nearly as bright and varies, so they
fail the rise and the flatness; a saturated pectoral muscle is too wide. Grown by
``MARKER_REACH_MM``, the plateaus are taken out of the breast mask, so they are never
searched, sampled as patches or mined as hard negatives. A marker wholly over tissue
rises above it no more than a large calcification does, and one merged with a film
border of another level is not flat; neither is found, nor is one within
``MARKER_BLOCK`` pixels of a bright structure longer than a marker (a border): bright
pixels are grouped by blocks first, and such a group is passed over whole. Given the
breast mask, only plateaus within ``MARKER_EDGE_MM`` of the air beside it count: a dense
casting calcification that the window saturates is a flat, bright stroke a few
millimetres long as well, and it lies deeper in the breast than a marker does. The
thresholds are in the canonical image's display range and were measured on the phantom's
film (docs/results.md, "Lead markers in the pixels"), not on real images.
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
#: Most length of one plateau (mm): a marker's letters are at most a few centimetres,
#: while a film border or the scanner's edge runs along a side (and is cleared as one).
MARKER_MAX_EXTENT_MM = 40.0
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
#: Side of the blocks (pixels) in which bright pixels are first sought.
MARKER_BLOCK = 8
#: Farthest a marker lies from the air beside the breast (mm), where a breast mask is
#: given: a lead marker lies in the air, across the skin line or under tape that leaves the
#: film, while a dense casting calcification, flat where the window saturates it, lies
#: deeper in the breast and must stay searched.
MARKER_EDGE_MM = 5.0


def marker_mask(
    image: np.ndarray, spacing_mm: float, breast: np.ndarray | None = None
) -> np.ndarray:
    """Return where ``image`` shows a lead marker or burned-in letters (module docstring).

    Parameters
    ----------
    image : numpy.ndarray
        The canonical image (display range 0–1, calcium bright).
    spacing_mm : float
        Its pixel spacing (mm, square).
    breast : numpy.ndarray, optional
        The breast mask the markers are taken out of: then only plateaus within
        ``MARKER_EDGE_MM`` of the air outside it count.

    Returns
    -------
    numpy.ndarray
        bool, ``image.shape``: the plateaus grown by ``MARKER_REACH_MM``.
    """
    image = np.asarray(image)
    h, w = image.shape
    out = np.zeros(image.shape, dtype=bool)
    # Blocks holding a bright pixel, joined as 8-neighbours: each plateau lies in one
    # group, and only the groups are looked at pixel by pixel (labelling the whole image
    # would cost more than the rest of the breast mask together)
    hb, wb = -(-h // MARKER_BLOCK), -(-w // MARKER_BLOCK)
    bright = np.zeros((hb * MARKER_BLOCK, wb * MARKER_BLOCK), dtype=bool)
    np.greater_equal(image, MARKER_LEVEL, out=bright[:h, :w])
    blocks = bright.reshape(hb, MARKER_BLOCK, -1).any(1).reshape(hb, wb, MARKER_BLOCK).any(2)
    groups, _ = ndimage.label(blocks, structure=np.ones((3, 3), dtype=bool))
    longest = MARKER_MAX_EXTENT_MM / spacing_mm + 2 * MARKER_BLOCK
    for number, where in enumerate(ndimage.find_objects(groups), start=1):
        top, left = where[0].start * MARKER_BLOCK, where[1].start * MARKER_BLOCK
        bottom, right = where[0].stop * MARKER_BLOCK, where[1].stop * MARKER_BLOCK
        if max(bottom - top, right - left) > longest:
            continue  # a border, the scanner's edge, or what lies within a block of them
        mine = np.repeat(np.repeat(groups[where] == number, MARKER_BLOCK, 0), MARKER_BLOCK, 1)
        labels, _ = ndimage.label(
            bright[top:bottom, left:right] & mine, structure=np.ones((3, 3), dtype=bool)
        )
        for i, box in enumerate(ndimage.find_objects(labels), start=1):
            origin = (top + box[0].start, left + box[1].start)
            _mark(out, image, labels[box] == i, origin, spacing_mm, breast)
    return out


def _mark(
    out: np.ndarray,
    image: np.ndarray,
    plateau: np.ndarray,
    origin: tuple[int, int],
    spacing_mm: float,
    breast: np.ndarray | None,
) -> None:
    """Mark ``plateau`` (its box's pixels, the box at ``origin``) in ``out`` if a marker."""
    r0, c0 = origin
    r1, c1 = r0 + plateau.shape[0], c0 + plateau.shape[1]
    extent = max(plateau.shape) * spacing_mm
    if (
        plateau.sum() * spacing_mm**2 < MARKER_AREA_MM2
        or not MARKER_EXTENT_MM <= extent <= MARKER_MAX_EXTENT_MM
        or float(image[r0:r1, c0:c1][plateau].std()) > MARKER_FLAT
    ):
        return
    inner, outer = MARKER_RING_MM
    reach = max(outer, MARKER_REACH_MM, MARKER_EDGE_MM if breast is not None else 0.0)
    pad = int(np.ceil(reach / spacing_mm)) + 1
    top, left = max(r0 - pad, 0), max(c0 - pad, 0)
    window = (slice(top, r1 + pad), slice(left, c1 + pad))
    crop = image[window]
    inside = np.zeros(crop.shape, dtype=bool)
    inside[r0 - top : r1 - top, c0 - left : c1 - left] = plateau
    if ndimage.distance_transform_edt(inside).max() * spacing_mm > MARKER_HALF_STROKE_MM:
        return
    away = ndimage.distance_transform_edt(~inside) * spacing_mm
    if breast is not None and not (~breast[window] & (away <= MARKER_EDGE_MM)).any():
        return  # deep in the breast: a calcification, however flat and bright
    ring = (away > inner) & (away <= outer)
    if ring.any() and np.median(crop[inside]) - np.median(crop[ring]) >= MARKER_RISE:
        out[window] |= away <= MARKER_REACH_MM

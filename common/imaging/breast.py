"""Breast segmentation on the canonical image: mask, bounding box and search region.

The search region is where detection looks: the breast without the pectoral muscle of
oblique views.

The segmentation runs on a reduced copy; along the breast's edge each of its blocks is
decided again pixel by pixel at full resolution (:func:`_refine_edge`).

Film and scanner artifacts are kept out of the mask: bright borders and scanner edges along
the image's sides are cleared before the breast is taken as the largest bright component,
so labels, lead markers and a white frame are not part of it. Where a border was cleared,
a margin inside it goes too: the step from border to breast is an edge the detector's
high-pass input sees as bright structure. Tape that reaches in from the film's edge
through the air and over the skin line is cleared where it lies in the air. A lead
marker the mask still holds (under tape joined to the breast, or over the skin) is taken
out by its letters' flat, bright plateaus (:mod:`common.imaging.markers`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from common.imaging.markers import marker_mask


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Return Otsu's threshold for values in [0, 1]."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.5
    centers = (edges[:-1] + edges[1:]) / 2
    uppers = edges[1:]
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    # the threshold is the top of the last background bin: values above it are foreground
    return float(uppers[int(np.argmax(between))])


def breast_mask(image: np.ndarray, work_size: int = 160, spacing_mm: float = 0.1) -> np.ndarray:
    """Segment the breast in a canonical [0, 1] image.

    Otsu threshold on a reduced copy, largest connected component, holes filled; the
    result is brought back to full size. Background air is dark after VOI and
    MONOCHROME1 inversion, so tissue is the bright class.

    Parameters
    ----------
    image : numpy.ndarray
        float32 image in [0, 1].
    work_size : int
        Longest side of the reduced copy the segmentation runs on.
    spacing_mm : float
        Pixel spacing of ``image`` (tape is recognised by its width in mm).

    Returns
    -------
    numpy.ndarray
        bool mask of ``image.shape``.
    """
    h, w = image.shape
    step = max(1, -(-max(h, w) // work_size))  # ceil: the reduced copy fits work_size
    small = image[::step, ::step]
    values = small.ravel()
    thr = otsu_threshold(values)
    # Otsu splits air from dense tissue; the thin skin rim lies between. Go down to just
    # above the air's noise floor instead.
    air = values[values <= thr]
    floor = float(values.min())
    if air.size:
        air = _darkest_mode(air)
        floor = float(np.median(air))
        noise = 1.4826 * float(np.median(np.abs(air - floor)))
        thr = min(thr, max(floor + 5 * noise, floor + 0.1 * (thr - floor)))
    fg, cleared = _clear_borders(small > thr)
    fg = _clear_tape(image, step, fg, floor, spacing_mm)
    labels, n = ndimage.label(fg)
    if n == 0:
        return np.zeros(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    fg = labels == int(np.argmax(sizes))
    # Pad so closing does not erode the breast where it meets the image edge
    fg = ndimage.binary_closing(np.pad(fg, 3, mode="edge"), iterations=2)[3:-3, 3:-3]
    # Fill holes: background not connected to the image border (cheaper than
    # binary_fill_holes' iterative propagation)
    bg, _ = ndimage.label(~fg)
    border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    fg |= ~np.isin(bg, border)
    full = _blocks_to_pixels(fg, step, (h, w))
    if step > 1:
        full = _refine_edge(image, full, fg, small > thr, step, thr)
    top, bottom, right = (n * step + BORDER_MARGIN if n else 0 for n in cleared)
    full[:top] = False
    full[h - bottom :] = False
    full[:, w - right :] = False
    # a marker that tape joins to the breast, or one laid over the skin, is not breast
    full &= ~marker_mask(image, spacing_mm, breast=full)
    return full


def _refine_edge(
    image: np.ndarray,
    full: np.ndarray,
    fg: np.ndarray,
    bright: np.ndarray,
    step: int,
    thr: float,
) -> np.ndarray:
    """Decide the breast's edge blocks pixel by pixel at full resolution.

    Each reduced pixel stands for a block ``step`` pixels wide (1.9 mm on a full-field
    image), so the brought-back edge is out by up to a block: air beside the skin line
    searched, or the skin cut. In the blocks along the edge, inside it and just outside
    (those outside whose reduced pixel was air and that touch nothing bright that was
    cleared, so never tape or a border), each full-resolution pixel is breast where its
    3 × 3 mean is above ``thr``; what is then cut off from the breast goes.

    Only the edge's blocks are visited at full resolution: each is decided and labelled on
    its own, and the pieces are joined across the blocks' sides and to the untouched
    blocks inside (:func:`_joined`), so the cost follows the edge's length, not the
    image's area.
    """
    inner = fg & ~ndimage.binary_erosion(fg, border_value=1)
    # never beside what was bright and cleared (tape, a border, a label): a pit in its
    # grain can make a block of it look like air
    outer = ndimage.binary_dilation(fg) & ~fg & ~bright
    outer &= ~ndimage.binary_dilation(bright & ~fg)
    band = inner | outer
    bi, bj = np.nonzero(band)
    if not bi.size:
        return full
    h, w = image.shape
    span = np.arange(step)
    rows = bi[:, None] * step + span  # each block's full-resolution rows and columns
    cols = bj[:, None] * step + span
    # the 3 x 3 mean over each block and a pixel around it, edges mirrored
    ring_rows = _mirror(np.concatenate([rows[:, :1] - 1, rows, rows[:, -1:] + 1], 1), h)
    ring_cols = _mirror(np.concatenate([cols[:, :1] - 1, cols, cols[:, -1:] + 1], 1), w)
    patch = image[ring_rows[:, :, None], ring_cols[:, None, :]].astype(np.float64)
    summed = patch[:, :-2] + patch[:, 1:-1] + patch[:, 2:]
    summed = summed[:, :, :-2] + summed[:, :, 1:-1] + summed[:, :, 2:]
    inside = (rows < h)[:, :, None] & (cols < w)[:, None, :]  # the image's last blocks
    decided = (summed / 9 > thr) & inside
    kept, core_kept = _joined(decided, band, fg & ~band, bi, bj, (h, w), step)
    refined = full.copy()
    index = (rows[:, :, None] * w + cols[:, None, :])[inside]
    refined.ravel()[index] = kept[inside]
    if core_kept is not None:  # the breast came apart inside: only its largest piece stays
        lost = _blocks_to_pixels(fg & ~band & ~core_kept, step, (h, w))
        refined &= ~lost
    return refined


def _blocks_to_pixels(small: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """Bring a reduced mask back to ``shape``, each pixel repeated ``step`` x ``step`` times."""
    h, w = shape
    # columns first, on the few rows, then whole rows: one pass over the full image
    return np.repeat(np.repeat(small, step, 1)[:, :w], step, 0)[:h]


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """Reflect indices one step outside ``[0, size)`` back in (edge pixel not repeated)."""
    index = np.abs(index)
    return np.where(index >= size, 2 * size - 2 - index, index)


def _joined(
    decided: np.ndarray,
    band: np.ndarray,
    core: np.ndarray,
    bi: np.ndarray,
    bj: np.ndarray,
    shape: tuple[int, int],
    step: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Keep the largest 4-connected piece of the edge blocks and the whole blocks inside.

    ``decided`` holds the edge blocks' pixels (``K x step x step``, block ``k`` at reduced
    pixel ``(bi[k], bj[k])``), ``core`` the reduced pixels wholly breast. Each block is
    labelled alone; pieces that meet across a block's side, and core blocks side by side,
    are one. Returns the edge pixels kept and, only where the core does not all belong to
    the largest piece, the core's reduced pixels that do (``None`` otherwise).
    """
    plane = np.zeros((3, 3, 3), dtype=bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)  # within a block, never across
    labels, n = ndimage.label(decided, structure=plane)
    core_labels, m = ndimage.label(core)
    h, w = shape
    heights = np.minimum(step, h - np.arange(core.shape[0]) * step)
    widths = np.minimum(step, w - np.arange(core.shape[1]) * step)
    block_area = heights[:, None] * widths[None, :]
    sizes = np.concatenate(
        [
            np.bincount(labels.ravel(), minlength=n + 1)[1:],
            np.bincount(core_labels.ravel(), weights=block_area.ravel(), minlength=m + 1)[1:],
        ]
    )
    if sizes.size <= 1:
        return decided, None
    where = np.full(band.shape, -1)
    where[bi, bj] = np.arange(bi.size)
    sources, targets = [], []
    # neighbours of every edge block on its four sides, vectorised per side
    for di, dj in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        ni, nj = bi + di, bj + dj
        ok = (ni >= 0) & (ni < band.shape[0]) & (nj >= 0) & (nj < band.shape[1])
        k = np.flatnonzero(ok)
        ni, nj = ni[ok], nj[ok]
        mine = _side(labels[k], di, dj)
        # another edge block beside it: join the pieces that touch across the side
        other = where[ni, nj]
        beside = other >= 0
        if di + dj > 0 and beside.any():  # each pair once
            theirs = _side(labels[other[beside]], -di, -dj)
            a, b = mine[beside], theirs
            touch = (a > 0) & (b > 0)
            sources.append(a[touch] - 1)
            targets.append(b[touch] - 1)
        # a core block beside it: the pieces along that side join the core's piece
        inner = core_labels[ni, nj]
        into = inner > 0
        if into.any():
            a = mine[into]
            c = np.broadcast_to(inner[into][:, None], a.shape)
            touch = a > 0
            sources.append(a[touch] - 1)
            targets.append(n + c[touch] - 1)
    # core blocks side by side are one piece already (core_labels)
    edges = (np.concatenate(sources), np.concatenate(targets)) if sources else ((), ())
    graph = sparse.coo_matrix(
        (np.ones(len(edges[0]), dtype=np.int8), edges), shape=(sizes.size, sizes.size)
    )
    _, piece = csgraph.connected_components(graph, directed=False)
    largest = int(np.argmax(np.bincount(piece, weights=sizes)))
    keep = piece == largest
    kept = decided & np.concatenate([[False], keep[:n]])[labels]
    core_kept = np.concatenate([[False], keep[n:]])[core_labels]
    return kept, None if bool(np.all(core_kept == core)) else core_kept


def _side(labels: np.ndarray, di: int, dj: int) -> np.ndarray:
    """Return the labels along the side of each block facing its neighbour at ``(di, dj)``."""
    if dj == 1:
        return labels[:, :, -1]
    if dj == -1:
        return labels[:, :, 0]
    if di == 1:
        return labels[:, -1, :]
    return labels[:, 0, :]


#: Outer share of each side searched for film borders and scanner edges.
BORDER_BAND = 0.05
#: Deepest a border is followed inward from its side (share of the side).
BORDER_DEPTH = 0.25
#: Canonical pixels cleared beyond a border: the detector's 9-pixel high-pass window sees
#: the border's edge from this far.
BORDER_MARGIN = 8


def _clear_borders(fg: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Clear lines near the top, bottom and right sides that are bright nearly end to end.

    A breast never spans a whole side; a film border or a scanner edge does. Such a line
    in the outer ``BORDER_BAND`` starts a border; it is followed inward, line by line,
    while the lines stay bright end to end (a film's frame can be wider than the band),
    and everything from the side to its inner edge is cleared. The chest wall's side
    (left) is left alone: an oblique view's breast and muscle can cover it.

    Returns
    -------
    fg : numpy.ndarray
        The cleared copy.
    cleared : tuple of int
        Lines cleared from the top, bottom and right (0 where no border was found).
    """
    fg = fg.copy()
    h, w = fg.shape
    cleared = []
    for lines in (fg, fg[::-1], fg.T[::-1]):  # top, bottom, right: row 0 on the side
        bright = lines.mean(axis=1) > 0.9
        band = max(1, int(BORDER_BAND * len(lines)))
        hits = np.flatnonzero(bright[:band])
        depth = 0
        if hits.size:
            depth = int(hits[-1]) + 1
            limit = max(depth, int(BORDER_DEPTH * len(lines)))
            while depth < limit and bright[depth]:
                depth += 1
            lines[:depth] = False  # a view: clears ``fg`` itself
        cleared.append(depth)
    return fg, (cleared[0], cleared[1], cleared[2])


#: Narrowest strip taken for tape (mm).
TAPE_MIN_WIDTH_MM = 8.0
#: Shortest straight, even stretch of it in the air, from the image's side (mm).
TAPE_MIN_RUN_MM = 3.0
#: Reduced pixels of a row's gap still inside one strip of tape.
TAPE_GAP = 2


def _clear_tape(
    image: np.ndarray, step: int, fg: np.ndarray, floor: float, spacing_mm: float
) -> np.ndarray:
    """Clear tape lying in the air, from the top or bottom side over the skin line.

    ``fg`` is the foreground of ``image`` reduced by ``step`` (every ``step``-th pixel).

    Tape is a strip with straight parallel edges, fainter than the breast, reaching in
    from the film's edge. Where it leaves the side in the air (its run starting within
    ``TAPE_MIN_RUN_MM`` of the first foreground row, which tolerates specks of noise) it
    is a run of each row, not at the chest wall, at least ``TAPE_MIN_WIDTH_MM`` wide, whose
    ends move along two straight parallel lines for at least ``TAPE_MIN_RUN_MM`` while its
    level stays below the breast's median. That stretch is cleared, and along the lines'
    continuation, the strip's pixels no brighter than the tape (air under tape, not
    breast under it) until it ends. Where the strip meets the breast already at the side,
    :func:`_clear_merged_strip` follows its far edge alone.
    """
    small = image[::step, ::step]
    pixel_mm = spacing_mm * step
    h = fg.shape[0]
    if not fg.any():
        return fg
    tissue = float(np.median(small[fg]))
    min_width = TAPE_MIN_WIDTH_MM / pixel_mm
    min_rows = max(3, int(np.ceil(TAPE_MIN_RUN_MM / pixel_mm)))
    plateau = max(4, min_rows)  # of tape over air, beside the breast: may be narrow
    # the strips are followed without the air's specks and the tape's pinholes of noise
    solid = np.pad(fg, 1, mode="edge")
    solid = ndimage.binary_opening(solid)[1:-1, 1:-1]
    out = solid.copy()
    for flip in (False, True):  # top side, then bottom (rows counted from that side)
        mask = out[::-1] if flip else out  # views: clearing them clears ``out``
        pixels = small[::-1] if flip else small
        full = image[::-1] if flip else image
        first = next((r for r in range(h // 4) if mask[r].any()), None)
        if first is None:
            continue
        for r0 in range(first, min(first + min_rows, h // 4)):
            for a, b in _runs(mask[r0], TAPE_GAP):
                if b - a < min_width:
                    continue
                if a > 0:  # a strip of its own, in the air beside the breast
                    _clear_strip(
                        mask,
                        pixels,
                        (full, step),
                        r0,
                        (a, b),
                        min_rows,
                        (tissue, floor),
                        spacing_mm,
                    )
                else:  # the breast's run: tape may end it, already over the skin line
                    _clear_merged_strip(
                        mask,
                        pixels,
                        (full, step, pixel_mm),
                        r0,
                        b,
                        plateau,
                        min_rows,
                        (tissue, floor),
                    )
    return fg & ~(solid & ~out)


def _plateau(
    line: np.ndarray, band: np.ndarray, step: int, end: int, width: int, levels: tuple
) -> float | None:
    """Return the level of tape ending a reduced row's run at ``end``, or None.

    Tape over air is an even plateau, brighter than the air and darker than the breast
    (``levels``: tissue, floor), over the run's last ``width`` pixels, and its edge is a
    step: in the full-resolution rows ``band``, the level of the pixels just before the
    steepest fall is the plateau's, and the pixels just after it are air. A breast's rim
    fades towards the skin over millimetres.
    """
    tissue, floor = levels
    if end - width < 1:
        return None
    stretch = line[end - width : end]
    level = float(np.median(stretch))
    spread = 1.4826 * float(np.median(np.abs(stretch - level)))
    lift = level - floor
    if not (0.02 < lift and level < tissue) or spread > 0.3 * lift:
        return None
    if stretch.min() < floor + 0.6 * lift:  # a dip: the rim's fall, not an even strip
        return None
    reach = max(2 * step, 12)  # full-resolution pixels either side of the reduced end
    profile = band[:, max(0, end * step - reach) : end * step + reach].mean(axis=0)
    if profile.size < 16:
        return None
    edge = int(np.argmax(profile[:-2] - profile[2:])) + 1
    before, after = profile[max(0, edge - 8) : edge - 1], profile[edge + 2 : edge + 6]
    if not (before.size and after.size):
        return None
    inside = float(before.mean())
    if inside - float(after.mean()) < 0.7 * lift or inside < level - 0.2 * lift:
        return None
    return level


def _clear_merged_strip(
    mask: np.ndarray,
    pixels: np.ndarray,
    full: tuple[np.ndarray, int, float],
    r0: int,
    end: int,
    width: int,
    min_rows: int,
    levels: tuple[float, float],
) -> None:
    """Clear tape that ends the breast's run of row ``r0`` at ``end``, where it is air.

    The strip meets the breast at the film's edge, so only its far edge shows: the run's
    end moves along a straight line for at least ``min_rows`` while the run's last
    ``width`` pixels stay an even plateau at one level ending in a step
    (:func:`_plateau`; ``full`` is the full-resolution image, its reduction step and the
    reduced pixel's size in mm, ``levels`` the tissue's and the air's). In those rows, and
    on along the line while the run still ends on it, the plateau's pixels (no brighter
    than the tape) are cleared back to where the breast begins, and never beyond the
    tape's near edge where :func:`_tape_edges` finds it: faint fat beside the tape is as
    dark as air under it. Past the rows found, a row is cleared only while its far edge
    still shows (:func:`_tape_at`).
    """
    image, step, pixel_mm = full
    tissue, floor = levels
    h = mask.shape[0]
    rows, ends, found = [], [], []
    prev, misses = end, 0
    for r in range(r0, h * 3 // 5):
        run = next(((x, y) for x, y in _runs(mask[r], TAPE_GAP) if x < prev <= y + 2), None)
        level = None
        if run is not None and abs(run[1] - prev) <= 2:
            mid = r * step + step // 2  # three full-resolution rows in the reduced row's middle
            band = image[max(0, mid - 1) : mid + 2]
            level = _plateau(pixels[r], band, step, run[1], width, levels)
        if level is None:
            misses += 1  # a row the air's noise spoils, or the strip's end
            if misses >= 3:
                break
            continue
        misses = 0
        rows.append(r)
        ends.append(run[1])
        found.append(level)
        prev = run[1]
    # nearly every row of the stretch an even plateau ending in a step: a rim passes
    # the test in a row here and there
    if len(rows) < max(min_rows, 0.6 * (rows[-1] - rows[0] + 1) if rows else 0):
        return
    r = np.asarray(rows, dtype=np.float64)
    line = np.polyfit(r, ends, 1)
    # a quarter of the rows may stray (a lead label over the far edge): fit the rest
    off = np.abs(np.polyval(line, r) - ends)
    keep = off <= np.quantile(off, 0.75)
    line = np.polyfit(r[keep], np.asarray(ends)[keep], 1)
    level = float(np.median(found))
    bent = np.abs(np.polyval(line, r[keep]) - np.asarray(ends)[keep]).max()
    if bent > 1.5 or np.ptp(found) > 0.5 * (level - floor):
        return
    ceiling = level + 0.5 * (level - floor)
    span = width
    far, near = _tape_edges(image, step, rows, ends, pixel_mm, level - floor)

    def clear_row(i: int, hidden: bool = False) -> int | None:
        """Clear row ``i``'s air under the tape; return how many pixels that was.

        None where, past the rows found, something brighter than the tape lies across
        its far edge (nothing is cleared then); ``hidden`` clears such a row.
        """
        nonlocal span
        x = int(round(np.polyval(line, i)))
        # past the rows found, the line runs on only while the tape does: beyond its end
        # the skin line's faint rim would pass for air under it
        edge = (x * step, False) if far is None else (float(np.polyval(far, i)), True)
        if i > rows[-1] and not hidden and not _tape_at(image, step, i, edge, level, floor):
            return None if _covered(image, step, i, edge[0], ceiling) else 0
        run = next(((a, b) for a, b in _runs(mask[i], TAPE_GAP) if a < x <= b + 2), None)
        if run is None:
            return 0
        # the tape ends at the line: what reaches beyond it (a lead label) is not tape
        stop = run[1] if run[1] <= x + 2 else x
        high = pixels[i, run[0] : stop] >= ceiling
        high[1:-1] &= high[:-2] | high[2:]  # a lone bright pixel is the air's noise
        start = stop - int(np.argmax(high[::-1])) if high.any() else run[0]
        span = max(span, stop - start)
        # every pixel as faint as the tape within the widest air under it seen so far,
        # not only those next to the edge: a lead label under the tape stays, cut off
        begin = max(run[0], stop - span - 1)
        if near is not None:  # the first sample a full-resolution pixel clear of the edge
            begin = max(begin, int(np.floor((np.polyval(near, i) + 1) / step)) + 1)
        if begin >= stop:
            return 0
        mask[i, begin:stop] &= high[begin - run[0] :]
        return int((~high[begin - run[0] :]).sum())

    # on from the first row found, then back to the side (rows next to a cleared border
    # can fail the plateau's test); rows with no air under the tape (the breast's outline
    # has passed its edge) end each walk. Rows where a lead label hides the far edge, for
    # at most ``LABEL_MAX_MM``, are cleared once the edge shows again beyond them.
    for walk in (range(rows[0], h * 3 // 5), range(rows[0] - 1, -1, -1)):
        quiet, covered = 0, []
        for i in walk:
            cleared = clear_row(i)
            if cleared is None and len(covered) < LABEL_MAX_MM / pixel_mm:
                covered.append(i)
                continue
            if cleared:
                for j in covered:
                    clear_row(j, hidden=True)
                covered = []
            quiet = 0 if (cleared or 0) >= 2 else quiet + 1
            if quiet >= 3:
                break


#: Tallest lead label under tape that a strip of tape is followed across (mm).
LABEL_MAX_MM = 15.0
#: Widest strip of tape whose near edge is looked for (mm).
TAPE_MAX_WIDTH_MM = 50.0
#: Full-resolution pixels averaged either side of an edge.
EDGE_WINDOW = 4


def _profile(image: np.ndarray, step: int, r: int) -> np.ndarray:
    """Return the mean of three full-resolution rows in reduced row ``r``'s middle."""
    mid = r * step + step // 2
    return image[max(0, mid - 1) : mid + 2].mean(axis=0, dtype=np.float64)


def _tape_at(
    image: np.ndarray,
    step: int,
    r: int,
    edge: tuple[float, bool],
    level: float,
    floor: float,
) -> bool:
    """Whether tape at ``level`` over air still ends in its far edge in reduced row ``r``.

    ``edge`` is the far edge's full-resolution column and whether it is placed to a pixel
    (a line through the full-resolution edges) or only to a reduced pixel. The steepest
    fall within two reduced pixels must have about the tape's level before it and air
    after it, and lie on a placed edge: past the tape's end a skin line can fall the same
    way, but it follows the breast's outline, not the tape's straight edge.
    """
    col, placed = edge
    lift = level - floor
    at, rise = _steps(image, step, r, int(col) - 2 * step, int(col) + 2 * step)
    if at.size < 4:
        return False
    fall = float(at[int(np.argmin(rise))])
    if placed and abs(fall - col) > 3:
        return False
    x = int(fall)  # the last pixel before the fall
    profile = _profile(image, step, r)
    before, after = profile[max(0, x - 7) : x], profile[x + 2 : x + 6]
    if not (before.size and after.size):
        return False
    inside = float(before.mean())
    return abs(inside - level) <= 0.3 * lift and float(after.mean()) < floor + 0.5 * lift


def _steps(image: np.ndarray, step: int, r: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the steps of reduced row ``r`` between full-resolution columns ``a`` and ``b``.

    The profile is the mean of three full-resolution rows in the reduced row's middle. A
    step at boundary ``x + 0.5`` is the mean of the ``EDGE_WINDOW`` pixels after it less
    that of those before it (positive: a rise).

    Returns
    -------
    positions, rises : numpy.ndarray
        The boundaries and their steps; empty where the stretch is too short.
    """
    k = EDGE_WINDOW
    profile = _profile(image, step, r)
    xs = np.arange(max(a, k - 1), min(b, profile.size - k))
    if not xs.size:
        return xs.astype(np.float64), xs.astype(np.float64)
    sums = np.concatenate([[0.0], np.cumsum(profile)])
    rise = (sums[xs + 1 + k] - 2 * sums[xs + 1] + sums[xs + 1 - k]) / k
    return xs + 0.5, rise


def _edge(image: np.ndarray, step: int, r: int, col: int, sign: int) -> float | None:
    """Return the steepest rise (``sign`` 1) or fall (-1) within two reduced pixels of ``col``.

    ``col`` is a full-resolution column of reduced row ``r``; the edge is a boundary
    between full-resolution pixels, or None where the stretch is too short.
    """
    at, rise = _steps(image, step, r, col - 2 * step, col + 2 * step)
    if at.size < 4:
        return None
    return float(at[int(np.argmax(sign * rise))])


def _tape_edges(
    image: np.ndarray,
    step: int,
    rows: list[int],
    ends: list[int],
    pixel_mm: float,
    lift: float,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return the far and near edges of tape whose far edge ends the reduced ``rows`` at ``ends``.

    Where tape meets the breast at the film's edge, its near edge lies over the breast or
    the faint fat beside it: a rise of about the tape's ``lift`` in the full-resolution
    rows. Parenchyma rises too, but the tape's edges are parallel, so the near edge is one
    width from the far edge in every row: the width most rows agree on (at least 0.6 of
    them) is the tape's.

    Returns
    -------
    far, near : numpy.ndarray or None
        Lines (``numpy.polyval`` coefficients): the full-resolution boundary of each edge
        against the reduced row; None where fewer than 3 rows show the far edge, or (the
        near edge) where no width is agreed.
    """
    spacing = pixel_mm / step
    lo, hi = TAPE_MIN_WIDTH_MM / spacing, TAPE_MAX_WIDTH_MM / spacing
    tol = 3  # full-resolution pixels the widths agree within
    found, fars, widths = [], [], []
    for r, end in zip(rows, ends, strict=True):
        far = _edge(image, step, r, end * step, -1)
        if far is None:
            continue
        at, rise = _steps(image, step, r, int(far - hi), int(far - lo))
        if at.size < 3:
            continue
        peak = np.zeros(at.size, dtype=bool)
        peak[1:-1] = (rise[1:-1] >= rise[:-2]) & (rise[1:-1] > rise[2:])
        peak &= (rise >= 0.6 * lift) & (rise <= 1.6 * lift)
        found.append(r)
        fars.append(far)
        widths.append(far - at[peak])
    if len(found) < 3:
        return None, None
    far_line = np.polyfit(np.asarray(found, dtype=np.float64), fars, 1)
    if not any(w.size for w in widths):
        return far_line, None
    # rows that have a rise within ``tol`` of each width (widths are whole pixels)
    support = np.zeros(int(np.ceil(hi)) + tol + 2, dtype=np.int64)
    for w in widths:
        near = np.unique((w[:, None] + np.arange(-tol, tol + 1)).astype(np.int64).ravel())
        support[near[(near >= 0) & (near < support.size)]] += 1
    best = int(np.argmax(support))
    if support[best] < max(3, 0.6 * len(rows)):
        return far_line, None
    agreed = [w[np.argmin(np.abs(w - best))] for w in widths if w.size]
    width = float(np.median([w for w in agreed if abs(w - best) <= tol]))
    return far_line, far_line - np.array([0.0, width])


def _edge_lines(
    image: np.ndarray, step: int, rows: list[int], lefts: list[int], rights: list[int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Fit an isolated strip's edges at full resolution, or return None.

    ``lefts`` and ``rights`` are its runs' reduced ends in ``rows``: the left edge is a
    rise, the right a fall. Each line gives the full-resolution boundary against the
    reduced row.
    """
    found, at_left, at_right = [], [], []
    for r, x, y in zip(rows, lefts, rights, strict=True):
        left, right = _edge(image, step, r, x * step, 1), _edge(image, step, r, y * step, -1)
        if left is not None and right is not None and left < right:
            found.append(r)
            at_left.append(left)
            at_right.append(right)
    if len(found) < max(3, 0.6 * len(rows)):
        return None
    r = np.asarray(found, dtype=np.float64)
    return np.polyfit(r, at_left, 1), np.polyfit(r, at_right, 1)


def _clear_strip(
    mask: np.ndarray,
    pixels: np.ndarray,
    full: tuple[np.ndarray, int],
    r0: int,
    run: tuple[int, int],
    min_rows: int,
    levels: tuple[float, float],
    spacing_mm: float,
) -> None:
    """Follow the run ``run`` of row ``r0`` down ``mask``; clear it in place if it is tape.

    ``full`` is the full-resolution image and its reduction step, ``levels`` the tissue's
    and the air's, ``spacing_mm`` the full-resolution pixel's size. Rows where something
    juts out of the far edge (a lead label under the tape) are followed across, for at
    most ``LABEL_MAX_MM``, and cleared with the strip where it goes on at its width past
    them. Along the strip's continuation, rows where something brighter than the tape
    lies across its far edge (a lead label), for at most ``LABEL_MAX_MM``, are cleared
    when the edge shows again beyond them, the label's letters left: the label is then
    cut off from the breast.
    """
    image, step = full
    tissue, floor = levels
    h, w = mask.shape
    pixel_mm = spacing_mm * step
    rows, lefts, rights, juts, pending = [], [], [], [], []
    width, prev = run[1] - run[0], run
    tol = max(2, 0.15 * width)
    for r in range(r0, h * 3 // 5):
        run = next(
            ((x, y) for x, y in _runs(mask[r], TAPE_GAP) if x < prev[1] and y > prev[0]), None
        )
        if run is not None and abs(run[0] - prev[0]) <= 2 and run[1] > prev[1] + 2:
            # something juts out of the far edge: a lead label under the tape, if the
            # strip goes on at its width past it
            pending.append((r, *run))
            if len(pending) > LABEL_MAX_MM / pixel_mm:
                break
            continue
        if run is None or abs((run[1] - run[0]) - width) > tol:
            break  # the strip ends, or merges with the breast
        juts += pending
        pending = []
        rows.append(r)
        lefts.append(run[0])
        rights.append(run[1])
        prev = run
    if len(rows) < min_rows:
        return
    spans = list(zip(rows, lefts, rights, strict=True))
    level = float(np.median(np.concatenate([pixels[i, x:y] for i, x, y in spans])))
    if level >= tissue:
        return
    ceiling = level + 0.5 * (level - floor)
    # a quarter of the rows may stray from the edges (a lead label under the tape juts
    # out): fit the rest; failing that, fit the rows without anything brighter than the
    # tape in them (a label's letters)
    lettered = np.array([_bright(pixels[i, x:y], ceiling) for i, x, y in spans])
    tries = [np.ones(len(rows), dtype=bool)]
    if lettered.any() and (~lettered).sum() >= min_rows:
        tries.append(~lettered)
    for plain in tries:
        r = np.asarray(rows, dtype=np.float64)[plain]
        at_left, at_right = np.asarray(lefts)[plain], np.asarray(rights)[plain]
        left, right = _parallel_edges(r, at_left, at_right)
        if left is not None:
            break
    else:
        return
    for i, x, y in spans + juts:  # in the air: a label under the tape goes with it
        mask[i, x:y] = False
    # on along the strip, where it lies over the skin line: air under tape only, and not a
    # pixel beyond the edges (faint fat beside the tape is as dark as air under it). The
    # full-resolution edges place them; the reduced runs' ends only to a pixel.
    sharp = _edge_lines(image, step, [int(i) for i in r], list(at_left), list(at_right))
    quiet, covered = 0, []
    for i in range(rows[-1] + 1, h * 3 // 5):
        if sharp is None:
            x = max(0, int(np.floor(np.polyval(left, i))) - 1)
            y = min(w, int(np.ceil(np.polyval(right, i))) + 1)
            edge = (float(np.polyval(right, i)) * step, False)
        else:  # the samples a full-resolution pixel clear of each edge's boundary
            x = max(0, int(np.floor((np.polyval(sharp[0], i) + 1) / step)) + 1)
            y = min(w, int(np.ceil((np.polyval(sharp[1], i) - 1) / step)))
            edge = (float(np.polyval(sharp[1], i)), True)
        # past the tape's end the skin line's faint rim would pass for air under it
        under = np.zeros(max(0, y - x), dtype=bool)
        if x < y and _tape_at(image, step, i, edge, level, floor):
            under = mask[i, x:y] & (pixels[i, x:y] < ceiling)
            mask[i, x:y] &= ~under
            for j, a, b in covered:  # the tape went on under a label over its far edge
                mask[j, a:b] &= pixels[j, a:b] >= ceiling
            covered = []
        elif (
            x < y
            and len(covered) < LABEL_MAX_MM / pixel_mm
            and _covered(image, step, i, edge[0], ceiling)
        ):
            covered.append((i, x, y))
            continue
        quiet = 0 if under.any() else quiet + 1
        if quiet >= 3:
            break


def _parallel_edges(
    rows: np.ndarray, lefts: np.ndarray, rights: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Fit a strip's edges to its runs' ends; None, None where they are not straight and parallel.

    A quarter of the rows may stray: the lines are fitted again to the rest.
    """
    left, right = np.polyfit(rows, lefts, 1), np.polyfit(rows, rights, 1)
    off = np.maximum(
        np.abs(np.polyval(left, rows) - lefts), np.abs(np.polyval(right, rows) - rights)
    )
    keep = off <= np.quantile(off, 0.75)
    left = np.polyfit(rows[keep], lefts[keep], 1)
    right = np.polyfit(rows[keep], rights[keep], 1)
    bent = max(
        np.abs(np.polyval(left, rows[keep]) - lefts[keep]).max(),
        np.abs(np.polyval(right, rows[keep]) - rights[keep]).max(),
    )
    # parallel: the edges' slopes agree, or part by at most 2 pixels over a short stretch
    apart = abs(left[0] - right[0])
    if bent > 1.5 or (apart > 0.1 and apart * len(rows) > 2):
        return None, None
    return left, right


def _bright(line: np.ndarray, ceiling: float) -> bool:
    """Whether two neighbouring pixels of ``line`` are brighter than ``ceiling``.

    A lone bright pixel is the air's noise or a speck of dust.
    """
    high = line >= ceiling
    return bool((high[1:] & high[:-1]).any())


def _covered(image: np.ndarray, step: int, r: int, col: float, ceiling: float) -> bool:
    """Whether something brighter than tape (``ceiling``) lies across its far edge ``col``.

    A lead label over the edge hides it; its letters lie on either side.
    """
    around = _profile(image, step, r)[max(0, int(col) - 8) : int(col) + 6]
    return bool(around.size) and float(around.max()) >= ceiling


def _runs(line: np.ndarray, gap: int = 0) -> list[tuple[int, int]]:
    """Return the (start, end) of each run of True in a bool line, end exclusive.

    Runs apart by at most ``gap`` pixels are one (the air's noise pits faint tape).
    """
    edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(np.int8), [0]])))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def pectoral_mask(image: np.ndarray, mask: np.ndarray, work_size: int = 160) -> np.ndarray:
    """Return the pectoral muscle of a canonical oblique view, or an empty mask.

    On an MLO view with the chest wall on the left and superior up, the muscle is the
    bright region in the upper-left corner bounded by a near-straight edge. Each row of
    the breast's upper part gives the column where the corner's brightness ends; a robust
    (Theil–Sen) line through them is the muscle's edge. Nothing is removed unless the
    corner is clearly brighter than the tissue below the edge and the line cuts off a
    corner of plausible size (2–45 % of the breast).
    """
    from scipy.stats import theilslopes

    empty = np.zeros(mask.shape, dtype=bool)
    h, w = image.shape
    step = max(1, -(-max(h, w) // work_size))
    small = _block_mean(image, step) if step > 1 else image
    m = mask[::step, ::step]
    if m.sum() < 100:
        return empty
    r0, c0, r1, c1 = bounding_box(m)
    depth = c1 - c0
    corner = small[r0 : r0 + max(2, (r1 - r0) // 12), c0 : c0 + max(2, depth // 12)]
    corner_m = m[r0 : r0 + corner.shape[0], c0 : c0 + corner.shape[1]]
    if corner_m.mean() < 0.8:
        return empty
    muscle_level = float(np.median(corner[corner_m]))
    upper = small[r0 : r0 + (r1 - r0) * 2 // 3, c0 : c0 + depth * 2 // 3]
    upper_m = m[r0 : r0 + upper.shape[0], c0 : c0 + upper.shape[1]]
    tissue_level = float(np.median(upper[upper_m]))
    if muscle_level - tissue_level < 0.05:
        return empty
    threshold = 0.5 * (muscle_level + tissue_level)
    edge_rows, edge_cols = [], []
    for i in range(upper.shape[0]):
        line = upper[i] > threshold
        if not line[0]:
            break  # below the muscle's lower tip
        run = int(np.argmin(line)) if not line.all() else line.size
        edge_rows.append(i)
        edge_cols.append(run)
    if len(edge_rows) < 5:
        return empty
    slope, intercept, _, _ = theilslopes(edge_cols, edge_rows)
    if slope >= 0 or intercept <= 0:
        return empty
    rr, cc = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    small_muscle = ((cc - c0) < intercept + slope * (rr - r0)) & m
    share = small_muscle.sum() / m.sum()
    inside = small[small_muscle]
    below = small[m & ~small_muscle]
    if not 0.02 <= share <= 0.45 or inside.mean() - np.median(below) < 0.05:
        return empty
    # back to full size row by row, so the edge stays straight
    edge = (intercept + slope * (np.arange(h) / step - r0) + c0) * step
    return (np.arange(w)[None, :] < edge[:, None]) & mask


def _block_mean(image: np.ndarray, step: int) -> np.ndarray:
    """Return ``uniform_filter(image, step)[::step, ::step]`` from block sums.

    The mean of the ``step`` x ``step`` window around every ``step``-th pixel (mirrored at
    the edges, as ``scipy.ndimage`` does): the same values, from two strided sums rather
    than a filter over every pixel of a full-field image.
    """
    h, w = image.shape
    nh, nw = -(-h // step), -(-w // step)
    top = step // 2
    pad = ((top, max(0, nh * step - h - top)), (top, max(0, nw * step - w - top)))
    blocks = np.pad(image, pad, mode="symmetric")[: nh * step, : nw * step]
    rows = blocks.reshape(nh, step, nw * step).sum(axis=1)
    return rows.reshape(nh, nw, step).sum(axis=2) / (step * step)


def search_region(image: np.ndarray, mask: np.ndarray, view: str | None) -> np.ndarray:
    """Return where calcifications are searched: the breast, less an oblique view's muscle."""
    if view and view.upper() in ("MLO", "ML", "LMO", "SIO", "ISO"):
        return mask & ~pectoral_mask(image, mask)
    return mask


def _darkest_mode(values: np.ndarray) -> np.ndarray:
    """Return the darkest class of ``values`` when it holds two well separated ones.

    When a bright pectoral muscle or dense tissue takes Otsu's upper class, the lower one
    holds air *and* fatty tissue, and its median would be tissue.
    """
    t = otsu_threshold(values)
    low, high = values[values <= t], values[values > t]
    if low.size == 0 or high.size == 0:
        return values
    spread = 1.4826 * float(np.median(np.abs(low - np.median(low))))
    gap = float(np.median(high) - np.median(low))
    return low if gap > 10 * spread + 0.02 else values


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Return (row0, col0, row1, col1), end-exclusive, of a mask; the whole image if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, mask.shape[0], mask.shape[1])
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)

"""What real images hold besides the breast and its findings: film and calcification mimics.

Everything here is drawn on the canonical attenuation map (chest wall left, air 0, dense
tissue about 1) before a vendor stores it, and nothing here is annotated: a detector that
marks it makes a false mark.

Digitised film (:func:`film_artifacts`), as in CBIS-DDSM (DESIGN.md, "Real mammograms"):

- **borders**: the unexposed film under the cassette frame is clear film, white on
  the scan, along the sides away from the chest wall; the scanner's edge is a saturated
  line at the very border;
- **lead label**: the technologist's lead marker ("LCC", "RMLO") blocks the beam, so it
  is white, in the air beside the breast;
- **grain**: film grain, noise correlated over about a pixel at 0.05 mm;
- **dust in the cassette**: it blocks the screen's light from the film, so it shows as a
  white speck of 0.1–0.3 mm: the classic mimic of a microcalcification (Hogge et al.,
  "Quality assurance in mammography: artifact analysis", RadioGraphics 1999;19:503–522);
- **scratches**: emulsion scratches, thin white lines;
- **tape**: adhesive tape on the film, a flat grey strip in from the top or bottom edge,
  laid across the skin line (in 3 films of 10).

Digital units (:func:`ffdm_artifacts`, DESIGN.md: "FFDM adds the pectoral muscle on
MLO, paddle edges, skin folds"):

- **paddle edge**: a compression paddle narrower than the breast leaves the breast
  beyond its side uncompressed, so thicker and brighter, and its wall, seen edge on, is a
  thin bright line across the image, along the chest-wall-to-nipple axis near the top or
  bottom of the breast;
- **skin fold**: on oblique views the skin can fold over itself near the inframammary
  fold: a curving bright band of double skin with a thin dark line of trapped air beside
  it.

How often and how strong they are is chosen, not measured (``PADDLE_CHANCE``,
``FOLD_CHANCE``).

Calcification mimics on any unit (:func:`add_mimics`): skin (dermal) specks near the skin
line, single-pixel noise spikes (detector defects, film pinholes), vascular calcification
(parallel tracks along a straight or curving vessel) and large benign (coarse, "popcorn")
calcifications, which readers see and do not report.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

from common.synth.calcs import Calc, Cluster, draw_cluster

#: 5 × 7 glyphs of the letters a lead marker spells
_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "C": ("01111", "10000", "10000", "10000", "10000", "10000", "01111"),
    "M": ("10001", "11011", "10101", "10001", "10001", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
}


def _speck(image: np.ndarray, r: float, c: float, radius_px: float, contrast: float) -> None:
    """Add a small bright disc (soft edge) at (r, c)."""
    h, w = image.shape
    half = int(np.ceil(radius_px)) + 2
    r0, r1 = max(0, int(r) - half), min(h, int(r) + half + 1)
    c0, c1 = max(0, int(c) - half), min(w, int(c) + half + 1)
    if r0 >= r1 or c0 >= c1:
        return
    yy, xx = np.mgrid[r0:r1, c0:c1]
    d = np.hypot(yy - r, xx - c)
    image[r0:r1, c0:c1] += contrast * np.clip(radius_px + 0.5 - d, 0.0, 1.0)


def lead_label(text: str, height_px: int) -> np.ndarray:
    """Return a bool image of ``text`` in block letters ``height_px`` tall."""
    scale = max(1, height_px // 7)
    glyphs = [np.array([[ch == "1" for ch in row] for row in _GLYPHS[t]]) for t in text]
    gap = np.zeros((7, 1), dtype=bool)
    strip = np.concatenate([g for glyph in glyphs for g in (glyph, gap)][:-1], axis=1)
    return np.kron(strip, np.ones((scale, scale), dtype=bool))


def film_artifacts(
    image: np.ndarray,
    inside: np.ndarray,
    spacing_mm: float,
    label: str,
    rng: np.random.Generator,
) -> dict:
    """Add digitised-film artifacts to ``image`` in place; return their counts.

    ``inside`` is the breast (the label goes in the air beside it); ``label`` the lead
    marker's text (e.g. "LCC").
    """
    h, w = image.shape
    counts = {}
    # grain: correlated noise, stronger in the film's darker (denser) parts
    grain = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 0.8)
    image += 0.05 * grain * (1.1 - np.clip(image, 0, 1))
    # borders: clear film under the cassette frame on the top, bottom and right
    for side in ("top", "bottom", "right"):
        if rng.uniform() < 0.75:
            width = max(2, round(rng.uniform(1.0, 3.0) / spacing_mm))
            level = rng.uniform(0.9, 1.05)
            if side == "top":
                image[:width] = level
            elif side == "bottom":
                image[-width:] = level
            else:
                image[:, -width:] = level
            counts[f"border_{side}"] = 1
    image[-1:, :] = 1.15  # the scanner's edge line
    # lead label in the air beside the breast, away from the chest wall
    tall = min(rng.uniform(3.0, 5.0) / spacing_mm, w / (2.5 * len(label)))
    glyph = lead_label(label, max(7, round(tall)))
    gh, gw = glyph.shape
    air = ndimage.binary_dilation(inside, iterations=max(1, round(2.0 / spacing_mm)))
    for _ in range(30 if gh < h and gw < w // 2 else 0):
        r = int(rng.integers(0, h - gh))
        c = int(rng.integers(w // 2, w - gw))
        if not air[r : r + gh, c : c + gw].any():
            image[r : r + gh, c : c + gw][glyph] = 1.1
            counts["label"] = 1
            break
    # dust in the cassette: white specks, anywhere on the film
    n = int(rng.poisson(6))
    for _ in range(n):
        radius = rng.uniform(0.05, 0.15) / spacing_mm
        _speck(image, rng.uniform(0, h), rng.uniform(0, w), radius, rng.uniform(0.15, 0.4))
    counts["dust"] = n
    # emulsion scratches: thin white lines
    n = int(rng.poisson(0.7))
    for _ in range(n):
        length = rng.uniform(5.0, 25.0) / spacing_mm
        r, c, angle = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi)
        t = np.arange(0.0, length)
        rr = np.clip((r + t * np.sin(angle)).astype(int), 0, h - 1)
        cc = np.clip((c + t * np.cos(angle)).astype(int), 0, w - 1)
        image[rr, cc] += rng.uniform(0.1, 0.25)
    counts["scratches"] = n
    counts["tape"] = int(rng.uniform() < 0.3)
    if counts["tape"]:
        add_tape(image, inside, spacing_mm, rng)
    return counts


def add_tape(
    image: np.ndarray, inside: np.ndarray, spacing_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Add a strip of tape from the top or bottom edge across the skin line; return it.

    12–25 mm wide (at most 0.3 of a small image's width: tape is narrow beside a film),
    reaching 20–45 % of the way in, tilted up to 8°, centred near where the breast's
    outline crosses its middle (the nipple side's extreme otherwise).
    """
    h, w = image.shape
    width = min(rng.uniform(12.0, 25.0) / spacing_mm, 0.3 * w)
    length = rng.uniform(0.2, 0.45) * h
    top = rng.uniform() < 0.5
    depth = int(length / 2) if top else h - 1 - int(length / 2)
    cols = np.flatnonzero(inside[depth])
    if not cols.size:  # the breast does not reach that row: its widest extent instead
        cols = np.flatnonzero(inside.any(axis=0)) if inside.any() else np.array([w // 2])
    centre = float(cols.max())
    centre += rng.uniform(-0.3, 0.3) * width
    tilt = np.deg2rad(rng.uniform(-8.0, 8.0))
    rr, cc = np.mgrid[0:h, 0:w]
    down = rr if top else h - 1 - rr
    across = (cc - centre) * np.cos(tilt) - down * np.sin(tilt)
    strip = (np.abs(across) <= width / 2) & (down * np.cos(tilt) <= length)
    image[strip] += rng.uniform(0.08, 0.15)
    return strip


def add_mimics(
    image: np.ndarray,
    inside: np.ndarray,
    spacing_mm: float,
    rng: np.random.Generator,
    avoid: np.ndarray | None = None,
) -> dict:
    """Add unannotated calcification mimics to ``image`` in place; return their counts.

    ``avoid`` (bool) marks the annotated findings' ROIs, where no mimic is drawn.
    """
    h, w = image.shape
    counts = {}
    allowed = inside if avoid is None else inside & ~avoid
    # skin specks: within 3 mm inside the skin line
    rim = allowed & ~ndimage.binary_erosion(inside, iterations=max(1, round(3.0 / spacing_mm)))
    rows, cols = np.nonzero(rim)
    n = int(rng.poisson(2.0)) if len(rows) else 0
    for i in rng.integers(0, len(rows), size=n) if n else []:
        radius = rng.uniform(0.1, 0.25) / spacing_mm
        _speck(image, rows[i], cols[i], radius, rng.uniform(0.05, 0.15))
    counts["skin_specks"] = n
    # noise spikes: single hot pixels, anywhere
    n = int(rng.poisson(3.0))
    image[rng.integers(0, h, size=n), rng.integers(0, w, size=n)] += rng.uniform(0.2, 0.5, n)
    counts["noise_spikes"] = n
    rows, cols = np.nonzero(allowed)
    for kind, chance in (("vascular", 0.15), ("coarse", 0.1)):
        if not len(rows) or rng.uniform() >= chance:
            counts[kind] = 0
            continue
        i = int(rng.integers(len(rows)))
        draw_cluster(
            image,
            _mimic(kind, rng),
            (float(rows[i]), float(cols[i])),
            spacing_mm,
            rotation=float(rng.uniform(0, 2 * np.pi)),
        )
        counts[kind] = 1
    return counts


def vessel_rods(
    theta: float, gap: float, length_mm: float, bend: float, rng: np.random.Generator
) -> list[Calc]:
    """Return a calcified vessel's rods: two tracks ``gap`` mm apart along an arc.

    The arc sets off at angle ``theta`` (rad), ``length_mm`` long with curvature
    ``bend`` (1/mm, 0: straight); a rod every 1 mm on each track, 8 in 10 of them drawn.
    """
    calcs = []
    for s in np.arange(-length_mm / 2, length_mm / 2, 1.0):
        angle = theta + bend * s  # the vessel's direction at arc length s
        y = (np.cos(theta) - np.cos(angle)) / bend if bend else s * np.sin(theta)
        x = (np.sin(angle) - np.sin(theta)) / bend if bend else s * np.cos(theta)
        for side in (-1, 1):
            if rng.uniform() < 0.8:
                dy, dx = side * gap / 2 * np.cos(angle), -side * gap / 2 * np.sin(angle)
                calcs.append(Calc(y + dy, x + dx, "rod", 0.5, 0.1, angle, 0.2))
    return calcs


def _mimic(kind: str, rng: np.random.Generator) -> Cluster:
    """Return a benign calcification nobody reports: a calcified vessel or popcorn."""
    calcs = []
    if kind == "vascular":
        # 15-30 mm long, bending with a curvature up to 1/20 mm (straight to a radius of
        # 20 mm), either way
        theta, gap = rng.uniform(0, np.pi), rng.uniform(0.8, 1.4)
        length, bend = rng.uniform(15.0, 30.0), rng.uniform(-1 / 20, 1 / 20)
        calcs = vessel_rods(theta, gap, length, bend, rng)
    else:
        for _ in range(int(rng.integers(1, 4))):
            a = rng.uniform(1.0, 2.5)
            calcs.append(
                Calc(
                    rng.uniform(-3, 3),
                    rng.uniform(-3, 3),
                    "ellipse",
                    a,
                    a * rng.uniform(0.6, 1.0),
                    rng.uniform(0, np.pi),
                    0.3,
                )
            )
    return Cluster(kind.upper(), "NONE", False, 5, calcs)


#: Share of a digital unit's images with a paddle edge across the breast.
PADDLE_CHANCE = 0.2
#: Share of a digital unit's oblique views with a skin fold.
FOLD_CHANCE = 0.25


def ffdm_artifacts(
    image: np.ndarray,
    inside: np.ndarray,
    spacing_mm: float,
    view: str,
    rng: np.random.Generator,
    strength: float = 1.0,
) -> dict:
    """Add a digital unit's paddle edge and skin fold to ``image`` in place (module docstring).

    ``inside`` is the breast; ``strength`` scales every contrast (the same draws at any
    strength). Returns the counts (``paddle_edge``, ``skin_fold``).
    """
    h, w = image.shape
    counts = {"paddle_edge": 0, "skin_fold": 0}
    rows = np.flatnonzero(inside.any(axis=1))
    if not rows.size:
        return counts
    if rng.uniform() < PADDLE_CHANCE:
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)  # only where something is drawn
        top, bottom = float(rows[0]), float(rows[-1])
        share = rng.uniform(0.05, 0.2)
        upper = rng.uniform() < 0.5
        line = top + share * (bottom - top) if upper else bottom - share * (bottom - top)
        slope = np.tan(np.radians(rng.uniform(-3.0, 3.0)))
        # signed distance (px) from the paddle's edge, positive beyond it (uncompressed)
        beyond = ((line - rr) if upper else (rr - line)) - slope * (cc - w / 2)
        soft = special.expit(beyond / (0.15 / spacing_mm))
        image *= 1.0 + strength * rng.uniform(0.04, 0.12) * soft * inside
        wall = rng.uniform(0.15, 0.4) / spacing_mm
        image += strength * rng.uniform(0.03, 0.08) * np.exp(-0.5 * (beyond / wall) ** 2)
        counts["paddle_edge"] = 1
    if view.upper() == "MLO" and rng.uniform() < FOLD_CHANCE:
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float32)
        deep = ndimage.binary_erosion(inside, iterations=max(1, round(3.0 / spacing_mm)))
        low = deep & (rr > rows[0] + 0.6 * (rows[-1] - rows[0]))
        r_i, c_i = np.nonzero(low)
        if r_i.size:
            k = int(rng.integers(r_i.size))
            radius = rng.uniform(30.0, 80.0) / spacing_mm
            heading = rng.uniform(0, 2 * np.pi)
            cy = r_i[k] - radius * np.sin(heading)
            cx = c_i[k] - radius * np.cos(heading)
            away = np.hypot(rr - cy, cc - cx) - radius
            angle = np.angle(np.exp(1j * (np.arctan2(rr - cy, cc - cx) - heading)))
            span = rng.uniform(10.0, 40.0) / spacing_mm / radius / 2
            along = np.clip(1.0 - np.abs(angle) / span, 0.0, 1.0) ** 0.5 * inside
            width = rng.uniform(0.5, 1.5) / spacing_mm
            band = special.expit((width / 2 - np.abs(away)) / (0.1 / spacing_mm))
            air = np.exp(-0.5 * ((away - width / 2 - 0.3 / spacing_mm) / (0.12 / spacing_mm)) ** 2)
            fold = rng.uniform(0.03, 0.08) * band - rng.uniform(0.02, 0.05) * air
            image += strength * along * fold
            np.maximum(image, 0.0, out=image)
            counts["skin_fold"] = 1
    return counts

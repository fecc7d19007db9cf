"""Microcalcification clusters drawn by BI-RADS morphology and distribution.

Sizes are in millimetres and converted with the pixel spacing, so the same cluster is
drawn at the right physical size for every vendor. Typically benign: round/punctate,
coarse, lucent-centred/rim (eggshell), vascular tracks, scattered/regional. Suspicious:
fine pleomorphic (< 0.5 mm, varied shapes), fine linear branching along ducts, amorphous;
grouped/linear/segmental and denser (> 20/cm²).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

MALIGNANT_TYPES = ("PLEOMORPHIC", "FINE_LINEAR_BRANCHING", "AMORPHOUS")
BENIGN_TYPES = (
    "PUNCTATE",
    "ROUND_AND_REGULAR",
    "LUCENT_CENTER",
    "COARSE",
    "VASCULAR",
    "EGGSHELL",
)


@dataclass
class Calc:
    """One calcification, relative to its cluster centre, in mm.

    ``kind`` is 'ellipse' (a, b semi-axes, angle), 'ring' (a outer radius, b wall
    thickness) or 'rod' (a half-length, b half-width, angle).
    """

    dy: float
    dx: float
    kind: str
    a: float
    b: float
    angle: float
    contrast: float


@dataclass
class Cluster:
    """A calcification finding: morphology, distribution, pathology and its calcs."""

    calc_type: str
    distribution: str
    malignant: bool
    subtlety: int
    calcs: list[Calc] = field(default_factory=list)

    @property
    def extent_mm(self) -> float:
        """Largest distance of a calc centre from the cluster centre."""
        return max((np.hypot(c.dy, c.dx) for c in self.calcs), default=0.0)


def make_cluster(malignant: bool, subtlety: int, rng: np.random.Generator) -> Cluster:
    """Draw a cluster of the given pathology; ``subtlety`` 1 (subtle) to 5 (obvious)."""
    contrast = 0.06 + 0.035 * subtlety  # subtle lesions are faint
    if malignant:
        calc_type = str(rng.choice(MALIGNANT_TYPES, p=[0.55, 0.25, 0.20]))
        distribution = str(rng.choice(["CLUSTERED", "LINEAR", "SEGMENTAL"], p=[0.7, 0.15, 0.15]))
    else:
        calc_type = str(rng.choice(BENIGN_TYPES, p=[0.25, 0.2, 0.2, 0.12, 0.13, 0.1]))
        distribution = str(
            rng.choice(["CLUSTERED", "REGIONAL", "DIFFUSELY_SCATTERED"], p=[0.5, 0.3, 0.2])
        )
    cluster = Cluster(calc_type, distribution, malignant, int(subtlety))
    draw = _GENERATORS[calc_type]
    cluster.calcs = draw(distribution, contrast, rng)
    return cluster


def _spread(distribution: str, rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    """Return n (dy, dx) offsets for a distribution within ``radius`` mm."""
    if distribution in ("LINEAR", "SEGMENTAL"):
        theta = rng.uniform(0, np.pi)
        along = rng.uniform(-radius * 1.6, radius * 1.6, n)
        across = rng.normal(0, radius * (0.12 if distribution == "LINEAR" else 0.35), n)
        return np.stack(
            [
                along * np.sin(theta) + across * np.cos(theta),
                along * np.cos(theta) - across * np.sin(theta),
            ],
            axis=1,
        )
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    t = rng.uniform(0, 2 * np.pi, n)
    return np.stack([r * np.sin(t), r * np.cos(t)], axis=1)


def _pleomorphic(distribution: str, contrast: float, rng: np.random.Generator) -> list[Calc]:
    # fine pleomorphic: many, tightly grouped (> 20/cm²), varied size and shape
    n = int(rng.integers(12, 30))
    offsets = _spread(distribution, rng, n, rng.uniform(2.5, 4.5))
    return [
        Calc(
            dy,
            dx,
            "ellipse",
            rng.uniform(0.12, 0.35),
            rng.uniform(0.06, 0.18),
            rng.uniform(0, np.pi),
            contrast * rng.uniform(1.0, 1.6),
        )
        for dy, dx in offsets
    ]


def _linear_branching(distribution: str, contrast: float, rng: np.random.Generator) -> list[Calc]:
    # fragments cast along a branching duct tree
    calcs: list[Calc] = []
    heads = [(0.0, 0.0, rng.uniform(0, 2 * np.pi))]
    for _ in range(int(rng.integers(3, 6))):
        y, x, theta = heads[int(rng.integers(len(heads)))]
        for _ in range(int(rng.integers(3, 7))):
            length = rng.uniform(0.25, 0.9)
            theta += rng.normal(0, 0.25)
            y, x = y + 2 * length * np.sin(theta), x + 2 * length * np.cos(theta)
            calcs.append(
                Calc(
                    y,
                    x,
                    "rod",
                    length * 0.8,
                    rng.uniform(0.05, 0.12),
                    theta,
                    contrast * rng.uniform(0.8, 1.2),
                )
            )
        heads.append((y, x, theta + rng.choice([-0.7, 0.7])))
    cy = np.mean([c.dy for c in calcs])
    cx = np.mean([c.dx for c in calcs])
    for c in calcs:
        c.dy, c.dx = c.dy - cy, c.dx - cx
    return calcs


def _amorphous(distribution: str, contrast: float, rng: np.random.Generator) -> list[Calc]:
    n = int(rng.integers(15, 35))
    offsets = _spread(distribution, rng, n, rng.uniform(3.0, 5.0))
    return [
        Calc(dy, dx, "ellipse", r, r, 0.0, contrast * 0.8)
        for (dy, dx), r in zip(offsets, rng.uniform(0.08, 0.16, n), strict=True)
    ]


def _round(lo: float, hi: float, nmin: int, nmax: int, radius: tuple[float, float]):
    def draw(distribution: str, contrast: float, rng: np.random.Generator) -> list[Calc]:
        n = int(rng.integers(nmin, nmax))
        offsets = _spread(distribution, rng, n, rng.uniform(*radius))
        return [
            Calc(
                dy,
                dx,
                "ellipse",
                r,
                r * rng.uniform(0.85, 1.0),
                rng.uniform(0, np.pi),
                contrast * rng.uniform(0.9, 1.3),
            )
            for (dy, dx), r in zip(offsets, rng.uniform(lo, hi, n), strict=True)
        ]

    return draw


def _ring(distribution: str, contrast: float, rng: np.random.Generator) -> list[Calc]:
    n = int(rng.integers(3, 8))
    offsets = _spread(distribution, rng, n, rng.uniform(5.0, 9.0))
    return [
        Calc(dy, dx, "ring", r, r * rng.uniform(0.25, 0.4), 0.0, contrast * 1.3)
        for (dy, dx), r in zip(offsets, rng.uniform(0.4, 0.9, n), strict=True)
    ]


def _coarse(distribution: str, contrast: float, rng: np.random.Generator) -> list[Calc]:
    n = int(rng.integers(2, 5))
    offsets = _spread(distribution, rng, n, rng.uniform(2.0, 4.0))
    calcs = []
    for dy, dx in offsets:
        # popcorn: a few overlapping lumps
        for _ in range(3):
            calcs.append(
                Calc(
                    dy + rng.normal(0, 0.3),
                    dx + rng.normal(0, 0.3),
                    "ellipse",
                    rng.uniform(0.35, 0.7),
                    rng.uniform(0.3, 0.6),
                    rng.uniform(0, np.pi),
                    contrast * 1.6,
                )
            )
    return calcs


def _vascular(distribution: str, contrast: float, rng: np.random.Generator) -> list[Calc]:
    # two parallel tracks along a gently curving vessel
    theta0 = rng.uniform(0, np.pi)
    gap = rng.uniform(0.8, 1.4)
    calcs = []
    for s in np.arange(-8.0, 8.0, 1.1):
        theta = theta0 + 0.03 * s
        y, x = s * np.sin(theta), s * np.cos(theta)
        for side in (-1, 1):
            if rng.uniform() < 0.75:
                calcs.append(
                    Calc(
                        y + side * gap / 2 * np.cos(theta),
                        x - side * gap / 2 * np.sin(theta),
                        "rod",
                        0.45,
                        0.09,
                        theta,
                        contrast * 1.1,
                    )
                )
    return calcs


_GENERATORS = {
    "PLEOMORPHIC": _pleomorphic,
    "FINE_LINEAR_BRANCHING": _linear_branching,
    "AMORPHOUS": _amorphous,
    "PUNCTATE": _round(0.1, 0.25, 5, 15, (4.0, 8.0)),
    "ROUND_AND_REGULAR": _round(0.25, 0.5, 4, 12, (5.0, 9.0)),
    "LUCENT_CENTER": _ring,
    "EGGSHELL": _ring,
    "COARSE": _coarse,
    "VASCULAR": _vascular,
}


def draw_cluster(
    image: np.ndarray,
    cluster: Cluster,
    center_rc: tuple[float, float],
    spacing_mm: float,
    rotation: float = 0.0,
    supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``cluster`` to ``image`` (in place) around ``center_rc``.

    Each calc is rasterised with ``supersample``² sub-pixel samples so that
    sub-millimetre calcs keep their area at any spacing.

    Returns
    -------
    points : numpy.ndarray
        (N, 2) row/col centres of the calcs that fell inside the image.
    roi : numpy.ndarray
        bool outline of the cluster (calcs dilated by 1.5 mm, holes filled), as drawn
        by an annotator.
    """
    h, w = image.shape
    cos, sin = np.cos(rotation), np.sin(rotation)
    points = []
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    for c in cluster.calcs:
        dy, dx = c.dx * sin + c.dy * cos, c.dx * cos - c.dy * sin
        r0 = center_rc[0] + dy / spacing_mm
        c0 = center_rc[1] + dx / spacing_mm
        if not (0 <= r0 < h and 0 <= c0 < w):
            continue
        points.append((r0, c0))
        half = int(np.ceil(max(c.a, c.b) / spacing_mm)) + 2
        ra, rb = max(0, int(r0) - half), min(h, int(r0) + half + 1)
        ca, cb = max(0, int(c0) - half), min(w, int(c0) + half + 1)
        yy = (np.arange(ra, rb)[:, None, None, None] + sub[None, None, :, None] - r0) * spacing_mm
        xx = (np.arange(ca, cb)[None, :, None, None] + sub[None, None, None, :] - c0) * spacing_mm
        angle = c.angle + rotation
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        if c.kind == "ring":
            rr = np.hypot(u, v)
            inside = (rr <= c.a) & (rr >= c.a - c.b)
        elif c.kind == "rod":
            inside = (np.abs(u) <= c.a) & (np.abs(v) <= c.b)
        else:
            inside = (u / c.a) ** 2 + (v / c.b) ** 2 <= 1.0
        coverage = inside.mean(axis=(2, 3))
        image[ra:rb, ca:cb] += c.contrast * coverage.astype(np.float32)
    pts = np.array(points, dtype=np.float64).reshape(-1, 2)
    roi = np.zeros((h, w), dtype=bool)
    if len(pts):
        r = np.clip(np.rint(pts[:, 0]).astype(int), 0, h - 1)
        cc = np.clip(np.rint(pts[:, 1]).astype(int), 0, w - 1)
        margin = 1.5 / spacing_mm
        pad = int(margin) + 2
        ra, rb = max(0, r.min() - pad), min(h, r.max() + pad + 1)
        ca, cb = max(0, cc.min() - pad), min(w, cc.max() + pad + 1)
        seeds = np.ones((rb - ra, cb - ca), dtype=bool)
        seeds[r - ra, cc - ca] = False
        local = ndimage.distance_transform_edt(seeds) <= margin
        # join nearby calcs into one outline, like a hand-drawn ROI
        local = ndimage.binary_closing(local, iterations=int(margin))
        roi[ra:rb, ca:cb] = ndimage.binary_fill_holes(local)
    return pts, roi


#: The detector's peak grid (mm): every other 0.1 mm canonical pixel.
PEAK_GRID_MM = 0.2


def drawn_peaks(calcs: list[Calc], rng: np.random.Generator, found: float = 0.7) -> np.ndarray:
    """Return the peaks a detector would give on ``calcs``, in mm about their centre.

    One every 0.4 mm along each rod and one at each other calcification's centre, on the
    peak grid (``PEAK_GRID_MM``, at a random offset), ``found`` of them kept: what the
    rules judging clusters' shapes are checked on without a trained detector.
    """
    pts = []
    for c in calcs:
        if c.kind == "rod":
            for t in np.arange(-c.a, c.a + 1e-9, 0.4):
                pts.append((c.dy + t * np.sin(c.angle), c.dx + t * np.cos(c.angle)))
        else:
            pts.append((c.dy, c.dx))
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2) + rng.uniform(0, PEAK_GRID_MM, 2)
    pts = np.unique(np.round(pts / PEAK_GRID_MM) * PEAK_GRID_MM, axis=0)
    return pts[rng.uniform(size=len(pts)) < found]


def rim_peaks(calcs: list[Calc], rng: np.random.Generator, found: float = 0.7) -> np.ndarray:
    """Return the peaks a detector gives along large calcifications' rims, in mm.

    One every 0.5 mm along each ellipse's outline (rods and rings as in
    :func:`drawn_peaks`), on the peak grid at a random offset, ``found`` of them kept:
    what a detector of microcalcifications answers on a coarse ("popcorn") one.
    """
    pts = []
    for c in calcs:
        if c.kind != "ellipse":
            pts.extend(drawn_peaks([c], rng, found=1.0).tolist())
            continue
        n = max(int(np.ceil(np.pi * (c.a + c.b) / 0.5)), 4)
        t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
        u, v = c.a * np.cos(t), c.b * np.sin(t)
        x = u * np.cos(c.angle) - v * np.sin(c.angle)
        y = u * np.sin(c.angle) + v * np.cos(c.angle)
        pts.extend(zip(c.dy + y, c.dx + x, strict=True))
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2) + rng.uniform(0, PEAK_GRID_MM, 2)
    pts = np.unique(np.round(pts / PEAK_GRID_MM) * PEAK_GRID_MM, axis=0)
    return pts[rng.uniform(size=len(pts)) < found]

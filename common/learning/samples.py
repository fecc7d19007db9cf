"""Training samples: detector patches with heatmap targets, classifier ROI crops.

Everything is in canonical coordinates (chest wall left, target spacing): annotations
given on the stored image are mapped through each image's :class:`Geometry`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset, TensorDataset

from common.data.cache import PreprocessCache
from common.data.problems import ProblemLog
from common.data.records import ImageRecord
from common.errors import CalciflInputError
from common.imaging.breast import search_region
from common.imaging.geometry import resize
from common.learning.weak import candidate_points


@dataclass
class CanonFinding:
    """A finding in canonical coordinates (row, col)."""

    centroid: np.ndarray
    box: tuple[float, float, float, float] | None
    points: np.ndarray  # (N, 2) calcification centres, else what :func:`prepare` derives
    malignant: bool | None
    pathology_detail: str | None = None
    subtlety: int | None = None
    #: (r0, c0, r1, c1) region holding the calcifications when the detector learns from
    #: the region itself (multiple-instance learning); None: it learns ``points``
    bag: tuple[float, float, float, float] | None = None
    #: BI-RADS calcification types, as the record gives them
    calc_types: tuple[str, ...] = ()

    @property
    def vessel(self) -> bool:
        """The finding is a calcified vessel alone (every type given is ``VASCULAR``)."""
        return bool(self.calc_types) and all(t == "VASCULAR" for t in self.calc_types)


@dataclass
class PreparedImage:
    """One readable image with its findings mapped to canonical coordinates."""

    record: ImageRecord
    shape: tuple[int, int]
    bbox: tuple[int, int, int, int]
    spacing_mm: float
    findings: list[CanonFinding] = field(default_factory=list)

    @property
    def points(self) -> np.ndarray:
        """All annotated calcification points of the image."""
        if not self.findings:
            return np.zeros((0, 2))
        return np.concatenate([f.points for f in self.findings])

    @property
    def peak_points(self) -> np.ndarray:
        """The points the detector is taught as peaks (not those of a region bag)."""
        pts = [f.points for f in self.findings if f.bag is None]
        return np.concatenate(pts) if pts else np.zeros((0, 2))


#: Target value of a heatmap cell inside a multiple-instance bag (see ``focal_loss``)
BAG = -1.0


class ImageStore:
    """Canonical images through the disk cache, with an in-memory LRU bounded in bytes.

    Parameters
    ----------
    cache : PreprocessCache
        Where decoded images live on disk.
    max_bytes : int
        Memory the kept images may use (a full-field image is ~30 MB as float32).
    """

    def __init__(self, cache: PreprocessCache, max_bytes: int = 2 * 1024**3) -> None:
        self.cache = cache
        self.max_bytes = max_bytes
        self._bytes = 0
        self._lru: OrderedDict = OrderedDict()

    def get(self, record: ImageRecord):
        """Return the :class:`~common.imaging.reading.Mammogram` of ``record``."""
        key = str(record.path)
        if key in self._lru:
            self._lru.move_to_end(key)
            return self._lru[key]
        image = self.cache.load(record.path, record.laterality, record.view)
        self._lru[key] = image
        self._bytes += image.pixels.nbytes + image.mask.nbytes
        while self._bytes > self.max_bytes and len(self._lru) > 1:
            _, old = self._lru.popitem(last=False)
            self._bytes -= old.pixels.nbytes + old.mask.nbytes
        return image


def prepare(
    records: list[ImageRecord],
    store: ImageStore,
    problems: ProblemLog | None = None,
    weak: str = "centroid",
) -> list[PreparedImage]:
    """Read each image once (through the cache) and map its findings; refusals are logged.

    A finding without annotated points gets, as its points, its centroid (``weak`` =
    "centroid": what evaluation scores against) or the candidate calcifications of its
    region (``weak`` = "candidates": :func:`common.learning.weak.candidate_points`, for
    training the detector); with ``weak`` = "mil" its region (box grown by 1 mm, else 5 mm
    around the centroid) becomes a bag in which the detector must find some calcification
    (its points: the centroid, where positive patches are cut).
    """
    problems = problems if problems is not None else ProblemLog()
    out = []
    for record in records:
        try:
            m = store.get(record)
        except CalciflInputError as exc:
            problems.add(exc)
            continue
        findings = []
        for f in record.findings:
            if f.centroid is None:
                continue
            centroid = m.geometry.map_points([f.centroid])[0]
            box = None
            if f.box is not None:
                corners = m.geometry.map_points([[f.box[0], f.box[1]], [f.box[2], f.box[3]]])
                (r0, r1), (c0, c1) = np.sort(corners[:, 0]), np.sort(corners[:, 1])
                box = (float(r0), float(c0), float(r1), float(c1))
            bag = None
            if f.points is not None and len(f.points):
                pts = m.geometry.map_points(f.points)
            elif weak == "candidates":
                pts = candidate_points(m.pixels, box, centroid, m.spacing_mm[0], m.mask)
            else:
                pts = centroid[None, :]
                if weak == "mil":
                    bag = _bag(box, centroid, m.spacing_mm[0])
            findings.append(
                CanonFinding(
                    centroid,
                    box,
                    pts,
                    f.malignant,
                    f.pathology_detail,
                    f.subtlety,
                    bag,
                    tuple(f.calc_types),
                )
            )
        out.append(PreparedImage(record, m.pixels.shape, m.bbox, m.spacing_mm[0], findings))
    return out


def _bag(box, centroid: np.ndarray, spacing_mm: float) -> tuple[float, float, float, float]:
    """Return a finding's region for MIL: its box + 1 mm, else 5 mm around the centroid."""
    if box is not None:
        grow = 1.0 / spacing_mm
        return (box[0] - grow, box[1] - grow, box[2] + grow, box[3] + grow)
    half = 2.5 / spacing_mm
    r, c = float(centroid[0]), float(centroid[1])
    return (r - half, c - half, r + half, c + half)


def mark_bags(target: np.ndarray, bags, origin, stride: int) -> np.ndarray:
    """Set the cells of ``target`` (a patch at ``origin``) inside each bag to :data:`BAG`."""
    n = target.shape[0]
    for r0, c0, r1, c1 in bags:
        a = int(np.floor((r0 - origin[0]) / stride))
        b = int(np.ceil((r1 - origin[0]) / stride))
        c = int(np.floor((c0 - origin[1]) / stride))
        d = int(np.ceil((c1 - origin[1]) / stride))
        a, b, c, d = max(a, 0), min(b, n), max(c, 0), min(d, n)
        if a < b and c < d:
            cells = target[a:b, c:d]
            cells[cells < 0.999] = BAG
    return target


def heatmap_target(points: np.ndarray, size: int, stride: int, sigma: float) -> np.ndarray:
    """Gaussian peaks (max 1 at each point's nearest heatmap pixel) on a size/stride grid."""
    n = size // stride
    target = np.zeros((n, n), dtype=np.float32)
    if len(points) == 0:
        return target
    grid = np.arange(n, dtype=np.float32)
    for r, c in np.asarray(points) / stride:
        if not (-3 * sigma <= r < n + 3 * sigma and -3 * sigma <= c < n + 3 * sigma):
            continue
        g = np.exp(-((grid[:, None] - r) ** 2 + (grid[None, :] - c) ** 2) / (2 * sigma**2))
        np.maximum(target, g, out=target)
        ri, ci = int(round(r)), int(round(c))
        if 0 <= ri < n and 0 <= ci < n:
            target[ri, ci] = 1.0
    return target


def _crop(pixels: np.ndarray, r0: int, c0: int, size: int) -> np.ndarray:
    """Size x size window at (r0, c0), zero-padded where it leaves the image."""
    out = np.zeros((size, size), dtype=np.float32)
    h, w = pixels.shape
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + size, h), min(c0 + size, w)
    if re > rs and ce > cs:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = pixels[rs:re, cs:ce]
    return out


def detector_patches(
    images: list[PreparedImage],
    store: ImageStore,
    patch: int,
    stride: int,
    sigma: float,
    rng: np.random.Generator,
    positives_per_finding: int = 4,
    negatives_per_image: int = 2,
) -> TensorDataset:
    """Sample a detector epoch.

    Patches around annotated calcifications (jittered), plus random negatives from the
    breast and hard negatives: the brightest spots away from any annotation.
    """
    xs, ys = [], []
    half = patch // 2
    for item in images:
        m = store.get(item.record)
        pts, peaks = item.points, item.peak_points
        bags = [f.bag for f in item.findings if f.bag is not None]
        origins = []
        for f in item.findings:
            for _ in range(positives_per_finding):
                centre = f.points[rng.integers(len(f.points))]
                jitter = rng.integers(-patch // 4, patch // 4 + 1, size=2)
                origins.append(
                    (int(centre[0]) - half + jitter[0], int(centre[1]) - half + jitter[1])
                )
        # negatives come from where the cascade searches: not the air, not the muscle
        region = search_region(m.pixels, m.mask, m.view)
        inside = np.argwhere(region[::4, ::4]) * 4
        if len(inside):
            for _ in range(negatives_per_image):
                r, c = inside[rng.integers(len(inside))]
                origins.append((int(r) - half, int(c) - half))
            hard = _bright_spots(m.pixels, region, pts, min_distance=patch / 4)
            if len(hard):
                r, c = hard[rng.integers(min(len(hard), 20))]
                origins.append((int(r) - half, int(c) - half))
        _cut(m.pixels, origins, peaks, bags, patch, stride, sigma, xs, ys)
    return _dataset(xs, ys, patch, stride)


def negative_patches(
    images: list[PreparedImage],
    store: ImageStore,
    centres: list[np.ndarray],
    patch: int,
    stride: int,
    sigma: float,
    rng: np.random.Generator,
) -> TensorDataset:
    """Patches around given spots of each image (e.g. a model's false peaks).

    ``centres[i]`` are (row, col) spots of ``images[i]``; each patch is jittered by up to a
    quarter of its side (the spot is not always at its centre) and its target is the
    image's annotation, as for every other patch.
    """
    xs, ys = [], []
    half = patch // 2
    for item, spots in zip(images, centres, strict=True):
        if len(spots) == 0:
            continue
        m = store.get(item.record)
        bags = [f.bag for f in item.findings if f.bag is not None]
        origins = []
        for r, c in spots:
            jitter = rng.integers(-patch // 4, patch // 4 + 1, size=2)
            origins.append((int(r) - half + jitter[0], int(c) - half + jitter[1]))
        _cut(m.pixels, origins, item.peak_points, bags, patch, stride, sigma, xs, ys)
    return _dataset(xs, ys, patch, stride)


def _cut(pixels, origins, peaks, bags, patch, stride, sigma, xs, ys) -> None:
    """Append the patches at ``origins`` and their heatmap targets to ``xs``, ``ys``."""
    for r0, c0 in origins:
        xs.append(_crop(pixels, r0, c0, patch))
        local = peaks - np.array([r0, c0]) if len(peaks) else peaks
        target = heatmap_target(local, patch, stride, sigma)
        ys.append(mark_bags(target, bags, (r0, c0), stride) if bags else target)


def _dataset(xs: list, ys: list, patch: int, stride: int) -> TensorDataset:
    x = torch.from_numpy(np.stack(xs)[:, None]) if xs else torch.zeros((0, 1, patch, patch))
    y = (
        torch.from_numpy(np.stack(ys)[:, None])
        if ys
        else torch.zeros((0, 1, patch // stride, patch // stride))
    )
    return TensorDataset(x, y)


def _bright_spots(pixels, mask, avoid: np.ndarray, min_distance: float) -> np.ndarray:
    """Local maxima of a top-hat-filtered image inside the breast, brightest first."""
    small = pixels[::2, ::2]
    tophat = small - ndimage.uniform_filter(small, 9)
    peaks = (tophat == ndimage.maximum_filter(tophat, 5)) & mask[::2, ::2] & (tophat > 0)
    coords = np.argwhere(peaks) * 2
    if len(coords) == 0:
        return coords
    order = np.argsort(-tophat[peaks])
    coords = coords[order][:200]
    if len(avoid):
        d = np.linalg.norm(coords[:, None, :] - avoid[None, :, :], axis=2).min(axis=1)
        coords = coords[d > min_distance]
    return coords


class ClassifierCrops(Dataset):
    """ROI crops around annotated clusters with optional augmentation.

    Augmentation: flips, 90-degree rotations, intensity gamma/contrast and ±10 % scale,
    drawn from a seeded generator so an epoch is reproducible.
    """

    def __init__(
        self,
        images: list[PreparedImage],
        store: ImageStore,
        crop: int,
        augment: bool = False,
        seed: int = 0,
        repeats: int = 1,
    ) -> None:
        self.crop = crop
        self.augment = augment
        self.repeats = repeats  # augmented views of each crop per epoch
        self.rng = np.random.default_rng(seed)
        base = int(np.ceil(crop * 1.25))  # room for scale and jitter
        crops, labels = [], []
        for item in images:
            m = None
            for f in item.findings:
                if f.malignant is None:
                    continue
                if m is None:
                    m = store.get(item.record)
                r, c = (int(round(v)) for v in f.centroid)
                crops.append(_crop(m.pixels, r - base // 2, c - base // 2, base))
                labels.append(float(f.malignant))
        self.base = np.stack(crops) if crops else np.zeros((0, base, base), np.float32)
        self.labels = np.asarray(labels, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.labels) * self.repeats

    def reseed(self, seed: int) -> None:
        """Restart the augmentation stream (e.g. per federated round, for resumable runs)."""
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = i % len(self.labels)
        x = self.base[i]
        size, crop = x.shape[0], self.crop
        if self.augment:
            rng = self.rng
            side = int(round(crop * rng.uniform(0.9, 1.1)))
            side = min(side, size)
            r0 = rng.integers(0, size - side + 1)
            c0 = rng.integers(0, size - side + 1)
            x = resize(x[r0 : r0 + side, c0 : c0 + side], (crop, crop))
            if rng.uniform() < 0.5:
                x = x[:, ::-1]
            if rng.uniform() < 0.5:
                x = x[::-1, :]
            x = np.rot90(x, int(rng.integers(4)))
            x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
            x = (x - 0.5) * rng.uniform(0.9, 1.1) + 0.5
        else:
            off = (size - crop) // 2
            x = x[off : off + crop, off : off + crop]
        x = np.ascontiguousarray(x, dtype=np.float32)
        return torch.from_numpy(x)[None], torch.tensor(self.labels[i])


def roi_crop(pixels: np.ndarray, centre_rc, crop: int) -> np.ndarray:
    """Return the classifier's input around ``centre_rc`` (zero-padded at the edges)."""
    r, c = (int(round(v)) for v in centre_rc)
    return _crop(pixels, r - crop // 2, c - crop // 2, crop)

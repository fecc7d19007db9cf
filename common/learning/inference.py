"""The cascade: image → calcification points → clusters → malignancy → image/breast score.

:func:`run_cascade` is the one function a reader-facing tool calls. Coordinates are
canonical (row, col) pixels; map them back to the stored DICOM grid with the image's
``geometry.unmap_points``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch.nn import functional as F

from common.imaging.breast import search_region
from common.imaging.reading import Mammogram
from common.learning.coarse import coarse_points
from common.learning.lines import line_artifact, vessel_tracks
from common.learning.models import PRECISIONS, inference_dtype
from common.learning.samples import roi_crop
from common.learning.skin import skin_run
from common.learning.verifier import cluster_features
from common.learning.walls import walled_tracks


@dataclass(frozen=True)
class CascadeConfig:
    """Inference settings.

    Attributes
    ----------
    peak_threshold : float
        Minimum heatmap probability of a calcification point.
    link_mm : float
        Points closer than this are linked into one group (single linkage).
    min_calcs : int
        Smallest group reported as a cluster. BI-RADS calls "grouped" at least 5
        calcifications within 1 cm; the detector finds most of a cluster's, not all, and
        groups of 3 let chance runs of grain peaks through (docs/results.md, "Clusters of
        four").
    tile : int
        Side of the sliding window, canonical pixels (multiple of 4). GroupNorm makes the
        output depend on the window's content, so windows close to the training patch
        size (96 + 2 x 16 halo = 128 ~ 160) detect best.
    halo : int
        Context added around each tile and discarded from its output.
    mark_threshold : float or None
        Clusters with a detection score at or above this are marks (drawn, counted as the
        CAD's findings); the others are listed only. Calibrated on validation images to
        ``max_false_marks`` (:mod:`common.evaluation.marks`); None (not calibrated) marks
        every cluster.
    max_false_marks : float
        The calibration's target: false marks per full-field normal image.
    precision : {"float32", "auto", "bfloat16"}
        The detector's arithmetic (:func:`common.learning.models.inference_dtype`).
        ``float32`` (default) gives the hospitals' processes of a simulation the numbers
        of one process, which pooled evaluation relies on; ``auto`` is bfloat16 after the
        first layer on CPUs that multiply it natively (heatmap probabilities within about
        0.006 of float32's on trained weights, but not the same in every process), float32
        elsewhere.
    line_artifacts : bool
        Set aside clusters strung along one straight line (a scratch), two parallel or
        concentric ones (a calcified vessel's tracks) (:mod:`common.learning.lines`) or
        the skin line (:mod:`common.learning.skin`), and the peaks on the rim of a coarse
        calcification (:mod:`common.learning.coarse`): listed with their ``artifact`` and
        the detector's score, but with detection score 0, so never a mark, a false
        positive of the FROC or an image's score. A vessel's tracks, found by the points
        or by its walls' ridges in the pixels (:mod:`common.learning.walls`), a run
        along the skin line (:func:`common.learning.skin.skin_run`) and the points on a
        coarse calcification (:func:`common.learning.coarse.coarse_points`) are split off
        clusters that hold more (:func:`split_off`).
    """

    peak_threshold: float = 0.1
    link_mm: float = 5.0
    min_calcs: int = 4
    max_points: int = 3000
    tta: bool = True
    tile: int = 128
    halo: int = 16
    mark_threshold: float | None = None
    max_false_marks: float = 0.5
    precision: str = "float32"
    line_artifacts: bool = True

    def __post_init__(self) -> None:
        """Validate the precision setting."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")


DEFAULT_CASCADE = CascadeConfig()

# Detector windows per forward pass (one at a time leaves most of a CPU's vector units idle)
TILE_BATCH = 16


@dataclass
class ClusterResult:
    """One detected cluster (canonical coordinates)."""

    centre: tuple[float, float]
    box: tuple[float, float, float, float]
    n_calcs: int
    detection_score: float
    malignancy: float | None = None
    #: indices of the cluster's calcifications in the image's ``points``
    members: tuple[int, ...] = ()
    #: with a verifier: the detector's own score (``detection_score`` is it times
    #: ``verification``, P(finding) from the cluster's shape and pixels)
    detector_score: float | None = None
    verification: float | None = None
    #: "scratch", "vessel" or "skin" where the cluster is strung along lines, "coarse"
    #: where it lies on a calcification millimetres across
    #: (``CascadeConfig.line_artifacts``): its detection score is then 0
    artifact: str | None = None

    @property
    def suspicion(self) -> float:
        """Detection score times malignancy probability."""
        return self.detection_score * (self.malignancy or 0.0)


@dataclass
class ImageResult:
    """Cascade output for one image."""

    points: np.ndarray
    point_scores: np.ndarray
    clusters: list[ClusterResult] = field(default_factory=list)
    #: breast area searched (cm²): the FP-per-area denominator
    search_cm2: float = 0.0
    mark_threshold: float | None = None

    @property
    def marks(self) -> list[ClusterResult]:
        """The clusters at or above the operating point: what a reader is shown."""
        return [c for c in self.clusters if _marked(c, self.mark_threshold)]

    def marked_points(self) -> np.ndarray:
        """Return the calcifications of the marks, (N, 2) canonical (row, col)."""
        members = [i for c in self.marks for i in c.members]
        return self.points[members].reshape(-1, 2)

    @property
    def score(self) -> float:
        """Image score: the most suspicious cluster (0 with no cluster).

        A cluster's suspicion is P(real cluster) x P(malignant): the classifier only ever
        saw true clusters, so a weak detection must not borrow a confident malignancy.
        (On held-out synthetic breasts this lifted the cascade's AUC from 0.72 to 0.97.)
        """
        return max((c.suspicion for c in self.clusters), default=0.0)


@torch.no_grad()
def heatmap(
    detector: torch.nn.Module,
    pixels: np.ndarray,
    bbox,
    config: CascadeConfig,
    search: np.ndarray | None = None,
):
    """Detector probabilities over the breast box, by overlapping tiles.

    Tiles whose core holds no pixel of ``search`` (a bool mask of the canonical image:
    where marks may fall) are not run and stay at probability 0.

    Returns
    -------
    prob : numpy.ndarray
        Probability map at the detector's stride over ``bbox``.
    origin : tuple of int
        (row, col) of ``prob``'s first pixel in the canonical image.
    """
    stride = detector.config.stride
    r0, c0, r1, c1 = bbox
    r0, c0 = r0 - r0 % 4, c0 - c0 % 4  # keep the heatmap grid aligned with the image
    region = pixels[r0:r1, c0:c1]
    h, w = region.shape
    ph, pw = -(-h // 4) * 4, -(-w // 4) * 4
    out = np.zeros((ph // stride, pw // stride), dtype=np.float32)
    t, halo = config.tile, config.halo
    padded = np.pad(region, ((halo, ph - h + halo + t), (halo, pw - w + halo + t)))
    detector.eval()
    infer = getattr(detector, "infer", None)  # the Detector's inference-only path
    dtype = inference_dtype(config.precision)

    def run(x: torch.Tensor) -> torch.Tensor:
        return infer(x, dtype) if infer is not None else detector(x)

    corners = [(tr, tc) for tr in range(0, ph, t) for tc in range(0, pw, t)]
    if search is not None:
        inside = search[r0:r1, c0:c1]
        corners = [(tr, tc) for tr, tc in corners if inside[tr : tr + t, tc : tc + t].any()]
    # tiles go through in batches: GroupNorm is per sample, so batching changes nothing
    for start in range(0, len(corners), TILE_BATCH):
        chunk = corners[start : start + TILE_BATCH]
        windows = np.stack(
            [padded[tr : tr + t + 2 * halo, tc : tc + t + 2 * halo] for tr, tc in chunk]
        )
        probs = torch.sigmoid(run(torch.from_numpy(windows)[:, None]))
        core = probs[
            :, 0, halo // stride : (halo + t) // stride, halo // stride : (halo + t) // stride
        ]
        for (tr, tc), tile in zip(chunk, core.numpy(), strict=True):
            rh = min(t, ph - tr) // stride
            rw = min(t, pw - tc) // stride
            out[tr // stride : tr // stride + rh, tc // stride : tc // stride + rw] = tile[:rh, :rw]
    return out, (r0, c0)


def peaks(prob: np.ndarray, threshold: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima (3x3 NMS) above ``threshold``: (indices (N, 2), scores), best first."""
    t = torch.from_numpy(prob)[None, None]
    keep = (t == F.max_pool2d(t, 3, stride=1, padding=1)) & (t >= threshold)
    idx = torch.nonzero(keep[0, 0]).numpy()
    scores = prob[idx[:, 0], idx[:, 1]] if len(idx) else np.zeros(0, np.float32)
    order = np.argsort(-scores, kind="stable")[:limit]
    return idx[order], scores[order]


def group(points: np.ndarray, scores: np.ndarray, spacing_mm: float, config: CascadeConfig):
    """Single-linkage groups of points within ``link_mm``; groups of ``min_calcs``+ kept."""
    if len(points) == 0:
        return []
    tree = cKDTree(points)
    pairs = tree.query_pairs(config.link_mm / spacing_mm, output_type="ndarray")
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    clusters = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) >= config.min_calcs:
            clusters.append(_cluster(points, scores, members))
    return sorted(clusters, key=lambda c: -c.detection_score)


def _cluster(points: np.ndarray, scores: np.ndarray, members: np.ndarray) -> ClusterResult:
    """Return the cluster of ``points[members]``, scored by its three best points."""
    pts, sc = points[members], scores[members]
    top = np.sort(sc)[::-1][:3]
    return ClusterResult(
        centre=tuple(float(v) for v in np.average(pts, axis=0, weights=sc)),
        box=(
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max() + 1),
            float(pts[:, 1].max() + 1),
        ),
        n_calcs=int(len(members)),
        detection_score=float(top.mean()),
        members=tuple(int(i) for i in members),
    )


@torch.no_grad()
def classify(
    classifier: torch.nn.Module, pixels: np.ndarray, centres, tta: bool = True
) -> np.ndarray:
    """Malignancy probabilities of ROI crops around ``centres``.

    With ``tta`` the probability is averaged over the 8 flips/rotations of the crop (the
    classifier was trained with them; +0.03 AUC on held-out synthetic clusters).
    """
    if len(centres) == 0:
        return np.zeros(0, np.float32)
    crop = classifier.config.crop
    batch = torch.from_numpy(np.stack([roi_crop(pixels, c, crop) for c in centres])[:, None])
    classifier.eval()
    views = [batch]
    if tta:
        views = [
            torch.flip(torch.rot90(batch, k, dims=(2, 3)), dims=(3,))
            if flip
            else torch.rot90(batch, k, dims=(2, 3))
            for k in range(4)
            for flip in (False, True)
        ]
    infer = getattr(classifier, "infer", None)  # the CNN's inference-only path
    batch = torch.cat(views)
    probs = torch.sigmoid(infer(batch) if infer is not None else classifier(batch))
    return probs.reshape(len(views), len(centres)).mean(dim=0).numpy()


def verify(
    verifier: torch.nn.Module,
    image: Mammogram,
    points: np.ndarray,
    scores: np.ndarray,
    clusters: list[ClusterResult],
) -> list[ClusterResult]:
    """Weigh each cluster's detection score by the verifier's P(finding); re-sort."""
    if not clusters:
        return clusters
    features = np.stack(
        [
            cluster_features(
                image.pixels,
                image.spacing_mm[0],
                points,
                scores,
                c.members,
                c.detection_score,
                c.centre,
            )
            for c in clusters
        ]
    )
    for cluster, p in zip(clusters, verifier.probability(features), strict=True):
        cluster.detector_score = cluster.detection_score
        cluster.verification = float(p)
        cluster.detection_score = cluster.detection_score * float(p)
    return sorted(clusters, key=lambda c: -c.detection_score)


def _marked(cluster: ClusterResult, threshold: float | None) -> bool:
    return cluster.artifact is None and cluster.detection_score >= (threshold or 0.0)


def set_aside_lines(
    clusters: list[ClusterResult], points: np.ndarray, spacing_mm: float
) -> list[ClusterResult]:
    """Give clusters strung along lines their ``artifact`` and detection score 0; re-sort.

    The detector's own score stays in ``detector_score`` (already set by a verifier).
    Clusters already set aside stay as they are.
    """
    for c in clusters:
        kind = None if c.artifact else line_artifact(points[list(c.members)] * spacing_mm)
        if kind is None:
            continue
        c.artifact = kind
        if c.detector_score is None:
            c.detector_score = c.detection_score
        c.detection_score = 0.0
    return sorted(clusters, key=lambda c: -c.detection_score)


def split_off(
    clusters: list[ClusterResult],
    points: np.ndarray,
    scores: np.ndarray,
    spacing_mm: float,
    config: CascadeConfig,
    part: Callable[[np.ndarray], np.ndarray | None],
    artifact: str,
    rescore: Callable[[list[ClusterResult]], list[ClusterResult]] | None = None,
) -> list[ClusterResult]:
    """Split the points ``part`` finds off each cluster, set aside as ``artifact``; re-sort.

    Single linkage joins an artifact's peaks with peaks beside them or with a finding
    the artifact passes, and a finding of a few points joined to a long artifact would
    go with it if the whole cluster were set aside. So where ``part`` (given the members'
    indices, returning a bool per member or None) finds an artifact in a cluster, its
    points become a cluster of their own, set aside as ``artifact`` with the detector's
    score of its points; the other points are grouped again (:func:`group`), each group
    scored afresh (``rescore``, e.g. by the verifier). Points left in a group too small
    to be a cluster are no cluster's. Clusters already set aside stay as they are.
    """
    out = []
    for c in clusters:
        members = np.asarray(c.members, dtype=np.int64)
        found = None if c.artifact else part(members)
        if found is None:
            out.append(c)
            continue
        aside = _cluster(points, scores, members[found])
        aside.artifact, aside.detector_score = artifact, aside.detection_score
        aside.detection_score = 0.0
        out.append(aside)
        rest = members[~found]
        parts = group(points[rest], scores[rest], spacing_mm, config)
        for piece in parts:
            piece.members = tuple(int(rest[i]) for i in piece.members)
        if rescore is not None and parts:
            parts = rescore(parts)
        out.extend(parts)
    return sorted(out, key=lambda c: -c.detection_score)


def split_vessels(
    clusters: list[ClusterResult],
    points: np.ndarray,
    scores: np.ndarray,
    spacing_mm: float,
    config: CascadeConfig,
    rescore: Callable[[list[ClusterResult]], list[ClusterResult]] | None = None,
    pixels: np.ndarray | None = None,
) -> list[ClusterResult]:
    """Split calcified vessels' tracks off clusters (:func:`split_off`).

    The tracks are found by the points (:func:`common.learning.lines.vessel_tracks`),
    or, given the canonical image's ``pixels``, where the points alone show none, by the
    ridges of the vessel's walls (:func:`common.learning.walls.walled_tracks`). Run
    before :func:`set_aside_lines`, which judges the groups left.
    """

    def part(members: np.ndarray) -> np.ndarray | None:
        found = vessel_tracks(points[members] * spacing_mm)
        if found is None and pixels is not None:
            found = walled_tracks(pixels, spacing_mm, points[members])
        return found

    return split_off(clusters, points, scores, spacing_mm, config, part, "vessel", rescore)


def run_cascade(
    models: dict[str, torch.nn.Module], image: Mammogram, config: CascadeConfig = DEFAULT_CASCADE
) -> ImageResult:
    """Run detector → clusters (→ verifier) → classifier on one canonical mammogram.

    Without a ``"classifier"`` in ``models`` the clusters are detected only (malignancy
    None, image score 0): what calibrating the marks needs.
    """
    detector, classifier = models["detector"], models.get("classifier")
    region = search_region(image.pixels, image.mask, image.view)
    prob, (r0, c0) = heatmap(detector, image.pixels, image.bbox, config, region)
    idx, scores = peaks(prob, config.peak_threshold, config.max_points)
    stride = detector.config.stride
    points = idx.astype(np.float64) * stride + np.array([r0, c0])
    if len(points):  # nothing outside the breast (or in an oblique view's muscle) is a mark
        r = np.clip(points[:, 0].astype(int), 0, region.shape[0] - 1)
        c = np.clip(points[:, 1].astype(int), 0, region.shape[1] - 1)
        inside = region[r, c]
        points, scores = points[inside], scores[inside]
    clusters = group(points, scores, image.spacing_mm[0], config)
    if models.get("verifier") is not None:
        clusters = verify(models["verifier"], image, points, scores, clusters)
    if config.line_artifacts:
        verifier = models.get("verifier")
        rescore = (
            None
            if verifier is None
            else (lambda parts: verify(verifier, image, points, scores, parts))
        )
        spacing = image.spacing_mm[0]
        clusters = split_vessels(clusters, points, scores, spacing, config, rescore, image.pixels)
        parts = {
            "skin": lambda members: skin_run(points[members], image.mask, spacing),
            "coarse": lambda members: coarse_points(image.pixels, region, spacing, points[members]),
        }
        for artifact, part in parts.items():
            clusters = split_off(clusters, points, scores, spacing, config, part, artifact, rescore)
        clusters = set_aside_lines(clusters, points, spacing)
    if classifier is not None:
        probs = classify(classifier, image.pixels, [c.centre for c in clusters], config.tta)
        for cluster, p in zip(clusters, probs, strict=True):
            cluster.malignancy = float(p)
    return ImageResult(
        points=points,
        point_scores=scores,
        clusters=clusters,
        search_cm2=float(region.sum() * image.spacing_mm[0] * image.spacing_mm[1] / 100.0),
        mark_threshold=config.mark_threshold,
    )


def aggregate_scores(image_scores) -> tuple[dict, dict]:
    """Breast and exam scores: the maximum over views, then over breasts.

    Parameters
    ----------
    image_scores : iterable of ((patient, exam, laterality), score)

    Returns
    -------
    breasts : dict
        (patient, exam, laterality) → score.
    exams : dict
        (patient, exam) → score.
    """
    breasts: dict = {}
    for key, score in image_scores:
        breasts[key] = max(breasts.get(key, 0.0), float(score))
    exams: dict = {}
    for (patient, exam, _), score in breasts.items():
        exams[(patient, exam)] = max(exams.get((patient, exam), 0.0), score)
    return breasts, exams


def result_to_json(result: ImageResult, image: Mammogram) -> dict:
    """JSON for one image: canonical and stored-grid (DICOM pixel) coordinates."""

    def both(points_rc):
        pts = np.asarray(points_rc, dtype=float).reshape(-1, 2)
        stored = image.geometry.unmap_points(pts) if len(pts) else pts
        return pts.round(1).tolist(), stored.round(1).tolist()

    canon_pts, stored_pts = both(result.points)
    clusters = []
    for c in result.clusters:
        (centre,), (stored_centre,) = both([c.centre])
        corners, stored_corners = both([[c.box[0], c.box[1]], [c.box[2], c.box[3]]])
        sr = sorted([stored_corners[0][0], stored_corners[1][0]])
        sc = sorted([stored_corners[0][1], stored_corners[1][1]])
        clusters.append(
            {
                **{k: v for k, v in asdict(c).items() if k not in ("centre", "box", "members")},
                "point_indices": list(c.members),
                "suspicion": c.suspicion,
                "marked": _marked(c, result.mark_threshold),
                "centre_rc": centre,
                "box_rc": [*corners[0], *corners[1]],
                "stored_centre_rc": stored_centre,
                "stored_box_rc": [sr[0], sc[0], sr[1], sc[1]],
            }
        )
    return {
        "image_score": result.score,
        "mark_threshold": result.mark_threshold,
        "n_marks": len(result.marks),
        "n_points": len(canon_pts),
        "points_rc": canon_pts,
        "point_scores": [round(float(s), 4) for s in result.point_scores],
        "stored_points_rc": stored_pts,
        "clusters": clusters,
        "image": image.info(),
    }

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.nn import functional as F

from common.imaging.breast import breast_mask, search_region
from common.imaging.reading import ReadOptions, read_mammogram
from common.learning import coarse
from common.learning.coarse import COARSE_MIN_POINTS, coarse_map, coarse_points
from common.learning.inference import CascadeConfig, group, run_cascade, split_off
from common.learning.models import DetectorConfig
from common.synth.artifacts import _mimic, film_artifacts
from common.synth.calcs import Calc, Cluster, draw_cluster, drawn_peaks, make_cluster, rim_peaks
from common.synth.phantom import render_breast
from common.synth.scenes import SCENE_SPACING_MM as SPACING
from common.synth.scenes import film_scene, stored_scene
from common.synth.vendors import FILM, VENDORS


def _everywhere(image: np.ndarray) -> np.ndarray:
    return np.ones(image.shape, dtype=bool)


def test_the_peaks_on_a_popcorns_rim_are_coarse():
    rng = np.random.default_rng(7)
    whole = 0
    for _ in range(12):
        popcorn = _mimic("coarse", rng)
        image, centre = film_scene(rng, popcorn)
        points = centre + rim_peaks(popcorn.calcs, rng) / SPACING
        found = coarse_points(image, _everywhere(image), SPACING, points)
        whole += found is not None and found.mean() > 0.9
    assert whole >= 11, whole


def test_hardly_a_drawn_findings_point_is_coarse():
    rng = np.random.default_rng(9)
    judged, touched = 0, []
    for i in range(90):
        cluster = make_cluster(malignant=i % 3 != 0, subtlety=int(rng.integers(1, 6)), rng=rng)
        points = drawn_peaks(cluster.calcs, rng, found=float(rng.uniform(0.5, 1.0)))
        if len(points) < 3:
            continue
        image, centre = film_scene(rng, cluster)
        judged += 1
        found = coarse_points(image, _everywhere(image), SPACING, centre + points / SPACING)
        if found is not None:
            touched.append((cluster.calc_type, int(found.sum()), len(points)))
    # about 1 in 100 in longer draws, mostly the phantom's coarse findings, whose lumps
    # overlap into objects as wide as the opening (docs/results.md, "Coarse calcifications")
    assert judged >= 80 and len(touched) <= 3, touched
    assert all(n - on >= 3 for kind, on, n in touched if kind != "COARSE"), touched


def _breast(view: str, seed: int):
    rng = np.random.default_rng(seed)
    phantom = render_breast((700, 560), view, 3, rng)
    image = phantom.attenuation.copy()
    film_artifacts(image, phantom.mask, SPACING, "LCC", rng)
    return image, phantom


def test_the_skin_line_and_the_pectoral_muscle_are_no_coarse_calcification():
    for seed in (3, 4, 5, 6):
        image, _ = _breast("MLO", seed)
        region = search_region(image, breast_mask(image), "MLO")
        assert not coarse_map(image, region, SPACING).any(), seed
        # points along both edges, within 0.3 mm inside the searched region
        rows, cols = np.nonzero(region & ~ndimage.binary_erosion(region, iterations=3))
        pick = np.random.default_rng(seed).choice(len(rows), 40, replace=False)
        points = np.stack([rows[pick], cols[pick]], axis=1)
        assert coarse_points(image, region, SPACING, points) is None, seed


def test_a_bright_region_wider_than_the_background_square_is_no_coarse_calcification(
    monkeypatch,
):
    image, phantom = _breast("CC", 4)
    centre = (350, 200)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    plateau = np.hypot(yy - centre[0], xx - centre[1]) <= 80  # 16 mm across, sharp-edged
    image[plateau] += 0.3
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    rim = np.stack([centre[0] + 80 * np.sin(angles), centre[1] + 80 * np.cos(angles)], axis=1)
    assert coarse_points(image, phantom.mask, SPACING, rim) is None
    # the same step around a 5 mm one is a coarse calcification's rim
    small = np.hypot(yy - centre[0], xx - 420) <= 25
    image[small] += 0.3
    ring = np.stack([centre[0] + 25 * np.sin(angles), 420 + 25 * np.cos(angles)], axis=1)
    found = coarse_points(image, phantom.mask, SPACING, ring)
    assert found is not None and found.all()
    # the wide one's rim stands above its surroundings only where the background square
    # cannot reach: arcs, no rim round an object
    monkeypatch.setattr(coarse, "COARSE_BACKGROUND_MM", 20.0)
    assert coarse_points(image, phantom.mask, SPACING, rim) is not None


@pytest.mark.parametrize("vendor", [*VENDORS, FILM], ids=lambda v: v.name)
def test_a_popcorn_read_from_every_vendors_dicom_is_coarse(tmp_path, vendor):
    # the levels are in the display range: each unit's gamma, window or LUT and the
    # film's missing spacing and window must leave the popcorn found, the finding not
    rng = np.random.default_rng(3)
    for k in range(3):
        phantom = render_breast((700, 560), "CC", int(rng.integers(1, 5)), rng)
        image = phantom.attenuation.copy()
        popcorn = _mimic("coarse", rng)
        draw_cluster(image, popcorn, (350.0, 250.0), SPACING)
        finding = make_cluster(True, int(rng.integers(1, 6)), rng)
        draw_cluster(image, finding, (350.0, 420.0), SPACING)
        if vendor.film:
            film_artifacts(image, phantom.mask, SPACING, "LCC", rng)
        path = stored_scene(image, phantom.mask, vendor, rng, tmp_path / f"{k}.dcm")
        read = read_mammogram(path, ReadOptions(fallback_spacing_mm=SPACING))
        assert read.pixels.shape == image.shape  # read at the scene's spacing, unflipped
        region = search_region(read.pixels, read.mask, read.view)
        rim = np.array([350.0, 250.0]) + rim_peaks(popcorn.calcs, rng) / SPACING
        found = coarse_points(read.pixels, region, SPACING, rim)
        assert found is not None and (~found).sum() < 3, k  # too few left for a cluster
        peaks = np.array([350.0, 420.0]) + drawn_peaks(finding.calcs, rng) / SPACING
        assert coarse_points(read.pixels, region, SPACING, peaks) is None, k


def test_a_finding_beside_a_popcorn_keeps_its_cluster():
    rng = np.random.default_rng(14)
    popcorn = Cluster("COARSE", "NONE", False, 5, [Calc(0.0, 0.0, "ellipse", 2.0, 1.5, 0.0, 0.3)])
    image, centre = film_scene(rng, popcorn)
    rim = rim_peaks(popcorn.calcs, rng, found=1.0)
    finding = np.stack([rng.uniform(-1.5, 1.5, 12), rng.uniform(3.5, 6.5, 12)], axis=1)
    points = centre + np.concatenate([rim, finding]) / SPACING
    scores = np.concatenate([np.full(len(rim), 0.9), np.full(len(finding), 0.6)])
    config = CascadeConfig()
    clusters = group(points, scores, SPACING, config)
    assert len(clusters) == 1

    def part(members):
        return coarse_points(image, _everywhere(image), SPACING, points[members])

    out = split_off(clusters, points, scores, SPACING, config, part, "coarse")
    aside = [c for c in out if c.artifact == "coarse"]
    kept = [c for c in out if c.artifact is None]
    assert len(aside) == 1 and aside[0].detection_score == 0.0
    assert set(aside[0].members) >= set(range(len(rim) - 1))
    assert len(kept) == 1 and set(kept[0].members) >= set(range(len(rim), len(points)))
    assert COARSE_MIN_POINTS <= aside[0].n_calcs


class _Edges(torch.nn.Module):
    """A detector that fires on steep edges, as one of microcalcifications does on a rim."""

    def __init__(self):
        super().__init__()
        self.config = DetectorConfig(width=4)

    def forward(self, x):
        s = F.avg_pool2d(x, 3, stride=1, padding=1)
        dy = s[..., 2:, 1:-1] - s[..., :-2, 1:-1]
        dx = s[..., 1:-1, 2:] - s[..., 1:-1, :-2]
        return 200 * (F.max_pool2d(F.pad(torch.hypot(dy, dx), (1, 1, 1, 1)), 2) - 0.12)


def test_the_cascade_sets_a_popcorn_aside_as_coarse(tmp_path):
    rng = np.random.default_rng(12)
    phantom = render_breast((700, 560), "CC", 2, rng)
    image = phantom.attenuation.copy()
    lumps = [
        Calc(0.0, 0.0, "ellipse", 1.8, 1.3, 0.4, 0.3),
        Calc(1.5, 1.5, "ellipse", 1.2, 1.0, 0.0, 0.3),
    ]
    draw_cluster(image, Cluster("COARSE", "NONE", False, 5, lumps), (350.0, 250.0), SPACING)
    film_artifacts(image, phantom.mask, SPACING, "LCC", rng)
    path = stored_scene(image, phantom.mask, FILM, rng, tmp_path / "film.dcm")
    read = read_mammogram(path, ReadOptions(fallback_spacing_mm=SPACING))

    def on_popcorn(result):
        return [c for c in result.clusters if np.hypot(*np.subtract(c.centre, (350, 250))) < 30]

    judged = on_popcorn(
        run_cascade({"detector": _Edges()}, read, CascadeConfig(line_artifacts=False))
    )
    assert len(judged) == 1 and judged[0].n_calcs >= 10 and judged[0].artifact is None
    result = run_cascade({"detector": _Edges()}, read)
    (aside,) = on_popcorn(result)
    assert aside.artifact == "coarse" and aside.detection_score == 0.0
    assert aside.n_calcs >= judged[0].n_calcs - 2 and aside.detector_score > 0.5
    assert not [c for c in result.marks if c in on_popcorn(result)]

import numpy as np
from scipy import ndimage

from common.learning.inference import CascadeConfig, group, set_aside_lines, split_off
from common.learning.skin import SKIN_BAND_MM, edge_distance, skin_run

SPACING = 0.1  # mm per canonical pixel
SIZE = 600


def _breast(radius_px=400):
    """A breast mask: a disc's quarter against the chest wall (the image's left edge)."""
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return np.hypot(rows - SIZE / 2, cols) <= radius_px


def _along_edge(rng, n, depth_mm, arc_deg=(-20, 20), radius_px=400):
    """Points ``depth_mm`` inside the edge, over an arc of the skin line."""
    angle = np.deg2rad(rng.uniform(*arc_deg, n))
    r = radius_px - depth_mm / SPACING + rng.normal(0, 1.5, n)
    return np.stack([SIZE / 2 + r * np.sin(angle), r * np.cos(angle)], axis=1)


def test_distances_to_the_edge_are_the_whole_masks_within_the_band():
    mask = _breast()
    points = np.random.default_rng(0).uniform(0, SIZE, (300, 2))
    points = points[mask[points[:, 0].astype(int), points[:, 1].astype(int)]]
    full = ndimage.distance_transform_edt(mask) * SPACING
    exact = full[points[:, 0].astype(int), points[:, 1].astype(int)]
    near = exact <= SKIN_BAND_MM
    got = edge_distance(points, mask, SPACING)
    assert near.any() and np.allclose(got[near], exact[near])
    assert (got[~near] > SKIN_BAND_MM).all()


def test_a_run_along_the_skin_line_is_found_and_a_compact_group_there_is_not():
    rng = np.random.default_rng(1)
    mask = _breast()
    for _ in range(20):
        run = _along_edge(rng, int(rng.integers(10, 40)), rng.uniform(0.3, 1.5))
        found = skin_run(run, mask, SPACING)
        assert found is not None and found.all()
        # a finding of 12 calcifications within 3 mm, as near the edge: no run
        centre = _along_edge(rng, 1, 1.5)[0]
        compact = centre + rng.normal(0, 8, (12, 2))
        assert skin_run(compact, mask, SPACING) is None
        # the same run 4 mm deep in the breast: no run
        assert skin_run(_along_edge(rng, 30, 4.0), mask, SPACING) is None
    assert skin_run(_along_edge(rng, 7, 0.5), mask, SPACING) is None  # too few to judge


def test_a_finding_joined_to_the_skin_line_is_kept_and_the_run_set_aside():
    rng = np.random.default_rng(2)
    mask = _breast()
    run = _along_edge(rng, 30, 0.8)
    inside = _along_edge(rng, 1, 6.0, arc_deg=(0, 0))[0]
    finding = inside + rng.normal(0, 6, (10, 2))
    points = np.concatenate([run, finding])
    scores = np.concatenate([np.full(len(run), 0.9), np.full(len(finding), 0.6)])
    config = CascadeConfig()
    (joined,) = group(points, scores, SPACING, config)  # single linkage joins them
    assert joined.n_calcs == len(points)
    clusters = split_off(
        [joined],
        points,
        scores,
        SPACING,
        config,
        lambda members: skin_run(points[members], mask, SPACING),
        "skin",
    )
    clusters = set_aside_lines(clusters, points, SPACING)
    kept, aside = clusters
    assert aside.artifact == "skin" and aside.detection_score == 0.0
    assert aside.detector_score == 0.9 and set(aside.members) >= set(range(len(run)))
    assert kept.artifact is None and kept.detection_score == 0.6
    assert set(kept.members) == set(range(len(run), len(points)))

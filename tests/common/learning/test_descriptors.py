import numpy as np
import pytest

from common.learning.descriptors import NAMES, cluster_descriptors, describe_batch
from common.synth.calcs import draw_cluster, make_cluster


def _tissue(size=96, seed=0):
    rng = np.random.default_rng(seed)
    return 0.35 + rng.normal(0, 0.004, (size, size))


def _disc(img, r, c, radius, value=0.15):
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    img[(yy - r) ** 2 + (xx - c) ** 2 <= radius**2] += value
    return img


def _rod(img, r, c, length, value=0.15, vertical=False):
    if vertical:
        img[r - length // 2 : r + length // 2, c] += value
    else:
        img[r, c - length // 2 : c + length // 2] += value
    return img


def _named(v):
    return dict(zip(NAMES, v, strict=True))


def test_empty_tissue_has_no_calcifications():
    d = cluster_descriptors(_tissue())
    assert d.shape == (len(NAMES),) and d.dtype == np.float32
    # a few noise pixels may pass 3 sigma, but nothing with a strong peak
    assert _named(d)["log_strong_count"] == 0.0


def test_counts_sizes_and_shapes():
    dots = _tissue()
    centres = [(30, 30), (30, 60), (60, 30), (60, 60), (45, 45)]
    for r, c in centres:
        _disc(dots, r, c, 1.5)
    d = _named(cluster_descriptors(dots))
    assert d["log_strong_count"] == pytest.approx(np.log1p(5))
    big = _tissue()
    for r, c in centres:
        _disc(big, r, c, 4)
    b = _named(cluster_descriptors(big))
    assert b["log_mean_area"] > d["log_mean_area"] + 1.0
    rods = _tissue()
    for i, (r, c) in enumerate(centres):
        _rod(rods, r, c, 9, vertical=bool(i % 2))
    rd = _named(cluster_descriptors(rods))
    assert rd["log_mean_elongation"] > d["log_mean_elongation"] + 0.5
    assert rd["elongated_fraction"] > 0.5 > d["elongated_fraction"]


def test_faint_outlines_are_grown_from_bright_seeds():
    # a rod bright at one end and faint (about 2.5 noise sigmas) along the rest: grown from
    # its bright end it is one long component; thresholded alone it falls apart
    img = _tissue()
    img[40:42, 30:50] += 0.014
    img[40:42, 30:33] += 0.05
    grown = _named(cluster_descriptors(img))
    assert grown["log_max_area"] >= np.log(30)  # most of the 40-pixel rod
    alone = _named(cluster_descriptors(img, grow=3.5))
    assert alone["log_max_area"] < np.log(10)  # the bright end and a few noise pixels


def test_rings_and_layout():
    ring = _tissue()
    _disc(ring, 48, 48, 7)
    _disc(ring, 48, 48, 4, value=-0.15)  # lucent centre
    assert _named(cluster_descriptors(ring))["hole_fraction"] > 0.2
    tight, wide, line = _tissue(), _tissue(), _tissue()
    for dr, dc in [(-3, -3), (-3, 3), (3, -3), (3, 3), (0, 0)]:
        _disc(tight, 48 + 2 * dr, 48 + 2 * dc, 1)
        _disc(wide, 48 + 10 * dr, 48 + 10 * dc, 1)
    for k in range(-4, 5):
        _disc(line, 48 + 8 * k, 48, 1)
    t, w, li = (_named(cluster_descriptors(x)) for x in (tight, wide, line))
    assert w["spread"] > t["spread"] + 0.5
    assert t["log_density"] > w["log_density"]
    assert li["layout_linearity"] > 0.5 > w["layout_linearity"]


def test_rotations_and_flips_do_not_change_descriptors():
    crop = _tissue(seed=3)
    rng = np.random.default_rng(1)
    for r, c in rng.integers(25, 70, (12, 2)):
        _disc(crop, r, c, rng.uniform(0.8, 2.5))
    _rod(crop, 40, 50, 11)
    base = cluster_descriptors(crop)
    for view in (np.rot90(crop), np.rot90(crop, 2), crop[:, ::-1], crop[::-1]):
        np.testing.assert_allclose(
            cluster_descriptors(np.ascontiguousarray(view)), base, rtol=1e-5, atol=1e-5
        )


def test_synthetic_malignant_clusters_are_denser_than_benign_ones():
    # the phantom's BI-RADS morphologies: pleomorphic = many fine calcs, coarse = few lumps
    rng = np.random.default_rng(0)
    counts = {True: [], False: []}
    for malignant in (True, False):
        for _ in range(12):
            cluster = make_cluster(malignant, 4, rng)
            img = _tissue(seed=int(rng.integers(1000)))
            draw_cluster(img, cluster, (48, 48), 0.1)
            counts[malignant].append(_named(cluster_descriptors(img))["log_density"])
    assert np.mean(counts[True]) > np.mean(counts[False])


def test_batches_and_bad_shapes():
    crops = np.stack([_tissue(seed=s) for s in range(3)])
    out = describe_batch(crops[:, None])
    assert out.shape == (3, len(NAMES))
    np.testing.assert_array_equal(out[1], cluster_descriptors(crops[1]))
    assert describe_batch(np.zeros((0, 1, 96, 96))).shape == (0, len(NAMES))
    with pytest.raises(ValueError, match="2-D"):
        cluster_descriptors(np.zeros((2, 96, 96)))

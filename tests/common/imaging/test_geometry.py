import numpy as np
import pytest

from common.imaging.geometry import Geometry, output_shape, resize


@pytest.mark.parametrize("flip_h", [False, True])
@pytest.mark.parametrize("flip_v", [False, True])
def test_points_round_trip(flip_h, flip_v):
    g = Geometry((300, 200), output_shape((300, 200), (0.07, 0.07), 0.1), flip_h, flip_v)
    pts = np.random.default_rng(0).uniform(0, 199, size=(20, 2))
    np.testing.assert_allclose(g.unmap_points(g.map_points(pts)), pts, atol=1e-9)


def test_mask_and_points_follow_the_same_transform():
    g = Geometry((300, 200), (210, 140), flip_h=True, flip_v=False)
    mask = np.zeros((300, 200), bool)
    mask[100:120, 30:50] = True
    out = g.map_array(mask, order=0)
    assert out.shape == (210, 140) and out.dtype == bool
    rows, cols = np.nonzero(out)
    centre = g.map_points([[109.5, 39.5]])[0]
    assert abs(rows.mean() - centre[0]) < 1 and abs(cols.mean() - centre[1]) < 1


def test_resize_keeps_dtype_for_labels_and_antialiases_images():
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert resize(labels, (6, 8), order=0).dtype == np.int32
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (40, 20))
    small = resize(stripes, (20, 20))
    # area-weighted shrink averages one-pixel stripes instead of aliasing them
    np.testing.assert_allclose(small[:, 1:-1], 0.5, atol=0.05)  # edges: border handling


def test_map_array_rejects_wrong_shape():
    g = Geometry((10, 10), (5, 5), False, False)
    with pytest.raises(ValueError, match="differs"):
        g.map_array(np.zeros((9, 10)))


def test_geometry_serialises():
    g = Geometry((10, 12), (5, 6), True, False)
    assert Geometry.from_dict(g.to_dict()) == g

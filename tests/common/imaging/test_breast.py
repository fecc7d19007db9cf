import numpy as np

from common.imaging.breast import bounding_box, breast_mask, otsu_threshold
from common.synth.phantom import render_breast


def test_otsu_separates_two_levels():
    values = np.concatenate([np.full(500, 0.1), np.full(500, 0.7)])
    assert 0.1 < otsu_threshold(values) < 0.7


def test_breast_mask_matches_phantom_outline():
    rng = np.random.default_rng(3)
    for view in ("CC", "MLO"):
        p = render_breast((480, 384), view, 2, rng)
        image = np.clip(p.attenuation, 0, 1) + 0.02 * rng.standard_normal(p.mask.shape)
        mask = breast_mask(np.clip(image, 0, 1).astype(np.float32))
        iou = (mask & p.mask).sum() / (mask | p.mask).sum()
        assert iou > 0.95, (view, iou)


def test_bounding_box_and_empty_mask():
    m = np.zeros((10, 12), bool)
    assert bounding_box(m) == (0, 0, 10, 12)
    m[2:5, 3:7] = True
    assert bounding_box(m) == (2, 3, 5, 7)
    assert not breast_mask(np.zeros((64, 64), np.float32)).any()


def test_breast_mask_with_bright_pectoral_and_noiseless_air():
    # A bright pectoral takes Otsu's upper class, leaving air (exactly 0) and a large
    # fatty breast in the lower one: the floor must still be the air
    rows, cols = np.mgrid[:240, :192]
    breast = ((rows - 120) / 118) ** 2 + (cols / 174) ** 2 < 1
    image = np.zeros((240, 192), np.float32)
    image[breast] = 0.3 + 0.1 * np.sin(rows[breast] / 7.0) * np.cos(cols[breast] / 9.0)
    image[breast & (cols < 100 - rows * 0.8)] = 0.9
    mask = breast_mask(image)
    assert (mask & breast).sum() / (mask | breast).sum() > 0.95

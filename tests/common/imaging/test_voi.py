"""The float32 VOI transforms agree with pydicom's reference implementation."""

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi_lut
from pydicom.sequence import Sequence

from common.imaging import voi


def _dataset(bits: int = 12, **attrs) -> Dataset:
    ds = Dataset()
    ds.BitsStored = bits
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


# pydicom's own float64 sigmoid overflows (harmlessly) on the narrow window
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(2048.0, 4096.0), (1500.5, 801.0), (900.0, 2.0)])
def test_window_matches_pydicom(function, center, width):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, size=(50, 40)).astype(np.uint16)
    ds = _dataset(WindowCenter=center, WindowWidth=width, VOILUTFunction=function)
    expected = apply_voi_lut(stored, ds) / 4095.0  # pydicom maps to [0, 2**12 - 1]
    x = stored.astype(np.float32)
    voi.apply_window(x, center, width, function)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, expected, atol=2e-6)


def test_lut_matches_pydicom():
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 4096, size=(30, 30)).astype(np.uint16)
    item = Dataset()
    first, n = 100, 3000
    item.add_new("LUTDescriptor", "US", [n, first, 12])
    lut = np.rint(4095 / (1 + np.exp(-(np.arange(n) - n / 2) / 300))).astype(np.uint16)
    item.add_new("LUTData", "US", lut.tolist())
    ds = _dataset(VOILUTSequence=Sequence([item]))
    expected = apply_voi_lut(stored, ds) / 4095.0
    got = voi.apply_lut(stored.astype(np.float32), item.LUTDescriptor, lut, signed_input=False)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_first_value_of_multivalued_window():
    ds = _dataset(WindowCenter=[100, 200], WindowWidth=[50, 60])
    assert voi.first_value(ds.WindowCenter) == 100.0
    assert voi.first_value(ds.WindowWidth, 1) == 60.0
    assert voi.first_value(ds.WindowWidth, 5) == 60.0  # past the end: last given


@pytest.mark.parametrize(
    ("function", "width"), [("LINEAR", 0.5), ("LINEAR_EXACT", 0), ("SIGMOID", -1)]
)
def test_invalid_window_width_is_refused(function, width):
    with pytest.raises(ValueError, match="width"):
        voi.apply_window(np.zeros(3, np.float32), 10.0, width, function)


def test_unknown_voi_function_is_refused():
    with pytest.raises(ValueError, match="VOI LUT Function"):
        voi.apply_window(np.zeros(3, np.float32), 10.0, 10.0, "GAMMA")

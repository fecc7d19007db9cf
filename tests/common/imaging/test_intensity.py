"""The per-code lookup table equals the per-pixel arithmetic it replaces."""

import numpy as np
import pytest
from pydicom.dataset import Dataset

from common.imaging import voi
from common.imaging.intensity import IntensityError, stored_codes, to_display


def _ds(**attrs) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_signed_rescaled_padded_windowed(photometric):
    rng = np.random.default_rng(0)
    stored = rng.integers(-2000, 2000, size=(40, 30)).astype(np.int16)
    stored[:3] = -2048  # padding range
    ds = _ds(
        PixelRepresentation=1,
        RescaleSlope=1.5,
        RescaleIntercept=-100.0,
        WindowCenter=300.0,
        WindowWidth=2500.0,
        VOILUTFunction="SIGMOID",
        PixelPaddingValue=-2048,
        PixelPaddingRangeLimit=-2040,
        PhotometricInterpretation=photometric,
    )
    got, source = to_display(ds, stored, "FOR PRESENTATION")
    x = stored.astype(np.float32) * 1.5 - 100.0
    voi.apply_window(x, 300.0, 2500.0, "SIGMOID")
    if photometric == "MONOCHROME1":
        x = 1 - x
    x[:3] = 0.0
    assert source == "window-sigmoid"
    np.testing.assert_allclose(got, x, atol=1e-6)


def test_minmax_from_histogram_ignores_padding():
    stored = np.array([[5, 10, 20, 4000]], dtype=np.uint16)
    got, source = to_display(_ds(PixelPaddingValue=4000), stored, "FOR PRESENTATION")
    assert source == "minmax"
    np.testing.assert_allclose(got, [[0.0, 1 / 3, 1.0, 0.0]], atol=1e-6)


def test_for_processing_percentiles_match_numpy():
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 16000, size=(200, 100)).astype(np.uint16)
    got, source = to_display(_ds(), stored, "FOR PROCESSING")
    lo, hi = np.percentile(stored, [0.5, 99.5], method="lower")
    expected = np.clip((stored.astype(np.float64) - lo) / (hi - lo), 0, 1)
    assert source == "percentile"
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_unsupported_pixel_types():
    with pytest.raises(IntensityError, match="float"):
        stored_codes(np.zeros((2, 2), np.float32))
    with pytest.raises(IntensityError, match="uint32"):
        stored_codes(np.zeros((2, 2), np.uint32))


def test_a_voi_lut_stored_as_ow_words_reads_like_us_values(tmp_path):
    import pydicom
    from pydicom.sequence import Sequence

    from common.imaging.intensity import lut_data

    rng = np.random.default_rng(1)
    stored = rng.integers(0, 4096, size=(20, 16)).astype(np.uint16)
    table = np.linspace(0, 4095, 4096).astype(np.uint16)[::-1].copy()
    outputs = []
    for vr, value in (("US", table.tolist()), ("OW", table.astype("<u2").tobytes())):
        item = Dataset()
        item.add_new("LUTDescriptor", "US", [4096, 0, 12])
        item.add_new("LUTData", vr, value)
        ds = _ds(PixelRepresentation=0, VOILUTSequence=Sequence([item]))
        outputs.append(to_display(ds, stored, "FOR PRESENTATION"))
    assert outputs[0][1] == outputs[1][1] == "voi-lut"
    assert np.array_equal(outputs[0][0], outputs[1][0])
    # and through a file written big-endian, as an old PACS export may be
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 12])
    item.add_new("LUTData", "OW", table.astype(">u2").tobytes())
    ds = _ds(PixelRepresentation=0, VOILUTSequence=Sequence([item]))
    path = tmp_path / "be.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=False, enforce_file_format=False)
    back = pydicom.dcmread(path, force=True)
    assert np.array_equal(lut_data(back.VOILUTSequence[0], back), table)

"""read_mammogram on DICOM files written here with pydicom, one attribute at a time."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from common.errors import (
    CalciflInputError,
    DicomError,
    DimensionError,
    MultiFrameError,
    NoPixelDataError,
    NotDicomError,
    PresentationIntentError,
    SpacingError,
    TruncatedDicomError,
    UnsupportedModalityError,
)
from common.imaging.reading import (
    MG_FOR_PROCESSING,
    ReadOptions,
    image_key,
    read_mammogram,
)
from common.imaging.writing import mammogram_dataset, save

H, W = 120, 90


def phantom(bits: int = 12) -> np.ndarray:
    """A breast (bright half-ellipse on the left) with a gradient, on dark air."""
    rows, cols = np.mgrid[0:H, 0:W]
    inside = ((rows - H / 2) / (0.45 * H)) ** 2 + (cols / (0.8 * W)) ** 2 < 1
    level = 0.3 + 0.6 * (rows / H)  # vertical gradient tells up from down
    top = 2**bits - 1
    return np.where(inside, level * top, 0.02 * top).astype(np.uint16)


def write(tmp_path: Path, stored: np.ndarray, name: str = "img.dcm", jpeg2000=False, **kw):
    """Write ``stored`` as an MG file; keyword arguments become DICOM attributes."""
    ds = mammogram_dataset(stored, **kw)
    return save(ds, tmp_path / name, JPEG2000Lossless if jpeg2000 else ExplicitVRLittleEndian)


def window_for(bits: int) -> dict:
    top = 2**bits - 1
    return {"WindowCenter": top / 2, "WindowWidth": top + 1}


NATIVE = ReadOptions(target_spacing_mm=None)  # keep the stored grid for exact comparisons


def test_canonical_output_and_metadata(tmp_path):
    path = write(tmp_path, phantom(), **window_for(12), Manufacturer="Acme")
    m = read_mammogram(path)
    assert m.pixels.dtype == np.float32
    assert 0.0 <= m.pixels.min() and m.pixels.max() <= 1.0
    assert m.laterality == "L" and m.view == "CC"
    assert m.spacing_mm == (0.1, 0.1) and m.spacing_source == "ImagerPixelSpacing"
    assert m.photometric == "MONOCHROME2"
    assert m.presentation_intent == "FOR PRESENTATION"
    assert m.manufacturer == "Acme" and m.bits_stored == 12
    # chest wall on the left: the breast touches column 0, air on the right
    assert m.mask[:, 0].sum() > 0.5 * H and not m.mask[:, -3:].any()
    r0, c0, r1, c1 = m.bbox
    assert (
        c0 == 0 and r1 - r0 == pytest.approx(0.9 * H, abs=4) and c1 == pytest.approx(0.8 * W, abs=3)
    )


def test_image_key_is_salted_hash_not_uid(tmp_path):
    path = write(tmp_path, phantom(), **window_for(12))
    uid = pydicom.dcmread(path).SOPInstanceUID
    m = read_mammogram(path)
    assert uid not in m.image_key and m.image_key == image_key(uid)
    other = read_mammogram(path, ReadOptions(key_salt="federation-2"))
    assert other.image_key != m.image_key


def test_monochrome1_is_inverted(tmp_path):
    stored = phantom()
    m2 = read_mammogram(write(tmp_path, stored, "m2.dcm", **window_for(12)), NATIVE)
    m1 = read_mammogram(
        write(tmp_path, 4095 - stored, "m1.dcm", photometric="MONOCHROME1", **window_for(12)),
        NATIVE,
    )
    assert m1.photometric == "MONOCHROME1"
    np.testing.assert_allclose(m1.pixels, m2.pixels, atol=1e-3)


@pytest.mark.parametrize("bits", [10, 12, 14, 16])
def test_bit_depths_give_the_same_image(tmp_path, bits):
    ref = read_mammogram(write(tmp_path, phantom(12), "ref.dcm", **window_for(12)), NATIVE)
    m = read_mammogram(write(tmp_path, phantom(bits), bits_stored=bits, **window_for(bits)), NATIVE)
    assert m.bits_stored == bits
    np.testing.assert_allclose(m.pixels, ref.pixels, atol=2e-3)


def test_rescale_slope_intercept(tmp_path):
    modality = phantom().astype(np.float64)
    slope, intercept = 2.0, -1000.0
    stored = np.rint((modality - intercept) / slope).astype(np.uint16)
    ref = read_mammogram(write(tmp_path, phantom(), "ref.dcm", **window_for(12)), NATIVE)
    m = read_mammogram(
        write(tmp_path, stored, RescaleSlope=slope, RescaleIntercept=intercept, **window_for(12)),
        NATIVE,
    )
    np.testing.assert_allclose(m.pixels, ref.pixels, atol=1e-3)


def test_pixel_padding_is_background_and_ignored_by_minmax(tmp_path):
    stored = phantom()
    air = stored == stored.min()
    stored[air] = 4095  # padding brighter than anything: must not drive normalisation
    m = read_mammogram(write(tmp_path, stored, PixelPaddingValue=4095), NATIVE)
    assert m.voi_source == "minmax"
    assert np.all(m.pixels[air] == 0.0)
    assert m.pixels[~air].max() == pytest.approx(1.0)
    assert m.pixels[~air].min() == pytest.approx(0.0)


def test_multivalued_window_uses_first_unless_told(tmp_path):
    path = write(tmp_path, phantom(), WindowCenter=[2000, 1000], WindowWidth=[4000, 600])
    first = read_mammogram(path, NATIVE)
    second = read_mammogram(path, ReadOptions(target_spacing_mm=None, voi_index=1))
    x = phantom().astype(np.float32)
    expected = np.clip((x - 1999.5) / 3999 + 0.5, 0, 1)
    np.testing.assert_allclose(first.pixels, expected, atol=1e-5)
    assert not np.allclose(first.pixels, second.pixels, atol=0.05)


@pytest.mark.parametrize(
    ("function", "formula"),
    [
        ("LINEAR", lambda x, c, w: np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)),
        ("LINEAR_EXACT", lambda x, c, w: np.clip((x - c) / w + 0.5, 0, 1)),
        ("SIGMOID", lambda x, c, w: 1 / (1 + np.exp(-4 * (x - c) / w))),
    ],
)
def test_voi_lut_functions(tmp_path, function, formula):
    c, w = 1800.0, 2400.0
    path = write(tmp_path, phantom(), WindowCenter=c, WindowWidth=w, VOILUTFunction=function)
    m = read_mammogram(path, NATIVE)
    assert m.voi_source == f"window-{function.lower()}"
    np.testing.assert_allclose(m.pixels, formula(phantom().astype(np.float64), c, w), atol=1e-5)


def test_voi_lut_sequence(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 10])
    lut = (np.sqrt(np.arange(4096) / 4095) * 1023).astype(np.uint16)
    item.add_new("LUTData", "US", lut.tolist())
    path = write(tmp_path, phantom(), VOILUTSequence=Sequence([item]), **window_for(12))
    m = read_mammogram(path, NATIVE)
    assert m.voi_source == "voi-lut"  # the LUT wins over the window by default
    np.testing.assert_allclose(m.pixels, lut[phantom()] / 1023.0, atol=1e-6)
    windowed = read_mammogram(path, ReadOptions(target_spacing_mm=None, prefer_lut=False))
    assert windowed.voi_source == "window-linear"


@pytest.mark.parametrize(
    ("attrs", "flipped"),
    [
        ({"laterality": "L"}, False),
        ({"laterality": "R"}, True),
        ({"laterality": None, "Laterality": "R"}, True),  # series-level only
        ({"laterality": "L", "Laterality": "R"}, False),  # ImageLaterality wins
        ({"laterality": "R", "FieldOfViewHorizontalFlip": "YES"}, False),
        ({"laterality": "R", "PatientOrientation": ["A", "L"]}, False),  # tags beat laterality
        ({"laterality": "L", "PatientOrientation": ["P", "R"]}, True),
    ],
)
def test_orientation_from_tags(tmp_path, attrs, flipped):
    canonical = phantom()
    stored = canonical[:, ::-1] if flipped else canonical
    m = read_mammogram(write(tmp_path, np.ascontiguousarray(stored), **attrs, **window_for(12)))
    assert m.geometry.flip_h is flipped
    assert m.mask[:, 0].sum() > 0.5 * m.pixels.shape[0]  # chest wall ends up on the left


def test_patient_orientation_vertical_flip(tmp_path):
    # MLO stored head-down: column direction towards the head means upside down
    stored = np.ascontiguousarray(phantom()[::-1])
    m = read_mammogram(
        write(tmp_path, stored, view="MLO", PatientOrientation=["A", "HR"], **window_for(12)),
        NATIVE,
    )
    assert m.geometry.flip_v and not m.geometry.flip_h
    ref = read_mammogram(write(tmp_path, phantom(), "ref.dcm", **window_for(12)), NATIVE)
    np.testing.assert_allclose(m.pixels, ref.pixels, atol=1e-6)


def test_orientation_from_content_without_tags(tmp_path):
    stored = np.ascontiguousarray(phantom()[:, ::-1])
    m = read_mammogram(write(tmp_path, stored, laterality=None, **window_for(12)))
    assert m.meta["orientation_from"] == "content" and m.geometry.flip_h
    assert m.laterality is None


def test_imager_spacing_preferred_over_pixel_spacing(tmp_path):
    both = write(
        tmp_path, phantom(), "both.dcm", imager_spacing=0.05, pixel_spacing=0.2, **window_for(12)
    )
    m = read_mammogram(both)
    assert m.spacing_source == "ImagerPixelSpacing" and m.source_spacing_mm == (0.05, 0.05)
    assert m.pixels.shape == (H // 2, W // 2)
    only_pixel = write(
        tmp_path, phantom(), "px.dcm", imager_spacing=None, pixel_spacing=0.05, **window_for(12)
    )
    m = read_mammogram(only_pixel)
    assert m.spacing_source == "PixelSpacing" and m.pixels.shape == (H // 2, W // 2)


def test_resampling_preserves_calcification_position(tmp_path):
    stored = phantom()
    stored[60:62, 40:42] = 4095  # a bright 2x2 "calcification"
    stored = np.ascontiguousarray(stored[:, ::-1])  # right breast, standard display
    m = read_mammogram(
        write(tmp_path, stored, laterality="R", imager_spacing=0.07, **window_for(12))
    )
    assert m.pixels.shape == (round(H * 0.7), round(W * 0.7))
    expected = m.geometry.map_points([[60.5, W - 1 - 40.5]])[0]
    peak = np.unravel_index(np.argmax(m.pixels), m.pixels.shape)
    assert np.hypot(*(np.array(peak) - expected)) <= 1.0
    back = m.geometry.unmap_points([expected])[0]
    np.testing.assert_allclose(back, [60.5, W - 1 - 40.5], atol=1e-9)


def test_jpeg2000_lossless_equals_uncompressed(tmp_path):
    plain = write(tmp_path, phantom(14), "plain.dcm", bits_stored=14, **window_for(14))
    j2k = write(tmp_path, phantom(14), "j2k.dcm", jpeg2000=True, bits_stored=14, **window_for(14))
    assert pydicom.dcmread(j2k).file_meta.TransferSyntaxUID == JPEG2000Lossless
    a, b = read_mammogram(plain), read_mammogram(j2k)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert b.transfer_syntax == JPEG2000Lossless


def test_for_processing_refused_or_normalised(tmp_path):
    path = write(tmp_path, phantom(), intent="FOR PROCESSING")
    assert pydicom.dcmread(path).SOPClassUID == MG_FOR_PROCESSING
    with pytest.raises(PresentationIntentError, match="FOR PROCESSING"):
        read_mammogram(path)
    m = read_mammogram(path, ReadOptions(for_processing="normalize"))
    assert m.presentation_intent == "FOR PROCESSING" and m.voi_source == "percentile"
    assert m.pixels.max() == pytest.approx(1.0) and m.pixels.min() == pytest.approx(0.0)


# --- refusals: each names the file and says why ------------------------------------------


def _truncated(tmp_path: Path) -> Path:
    path = write(tmp_path, phantom(), **window_for(12))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    return path


def _truncated_j2k(tmp_path: Path) -> Path:
    path = write(tmp_path, phantom(), jpeg2000=True, **window_for(12))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _no_pixels(tmp_path: Path) -> Path:
    ds = mammogram_dataset(phantom())
    del ds.PixelData
    return save(ds, tmp_path / "img.dcm")


def _multiframe(tmp_path: Path) -> Path:
    ds = mammogram_dataset(np.concatenate([phantom(), phantom()]))
    ds.Rows, ds.NumberOfFrames = H, 2
    return save(ds, tmp_path / "img.dcm")


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.dcm"
    path.write_text("patient list, not an image\n")
    return path


def _colour(tmp_path: Path) -> Path:
    ds = mammogram_dataset(phantom())
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    return save(ds, tmp_path / "img.dcm")


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (_text, NotDicomError, "not a DICOM"),
        (_truncated, TruncatedDicomError, "truncated"),
        (_truncated_j2k, TruncatedDicomError, "compressed pixel data"),
        (_no_pixels, NoPixelDataError, "no pixel data"),
        (lambda p: write(p, phantom(), Modality="CT"), UnsupportedModalityError, "'CT'"),
        (_multiframe, MultiFrameError, "2 frames"),
        (lambda p: write(p, np.zeros((10, 10), np.uint16)), DimensionError, "10x10"),
        (_colour, DimensionError, "colour"),
        (lambda p: write(p, phantom(), imager_spacing=None), SpacingError, "spacing"),
        (lambda p: p / "missing.dcm", DicomError, "not found"),
    ],
)
def test_bad_files_are_refused_with_clear_errors(tmp_path, make, error, words):
    path = make(tmp_path)
    with pytest.raises(error) as info:
        read_mammogram(path)
    assert isinstance(info.value, CalciflInputError)
    assert str(path) in str(info.value) and words in str(info.value)
    assert info.value.kind  # counted by kind in summaries


def test_refusals_can_be_relaxed(tmp_path):
    ct = write(tmp_path, phantom(), "ct.dcm", Modality="CT", **window_for(12))
    assert read_mammogram(ct, ReadOptions(modalities=None)).pixels.size
    nospacing = write(tmp_path, phantom(), "ns.dcm", imager_spacing=None, **window_for(12))
    m = read_mammogram(nospacing, ReadOptions(fallback_spacing_mm=0.05))
    assert m.spacing_source == "fallback" and m.pixels.shape == (H // 2, W // 2)


def test_reading_never_writes_the_source(tmp_path):
    path = write(tmp_path, phantom(), **window_for(12))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_mammogram(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# --- every PACS transfer syntax ------------------------------------------------------------

LOSSLESS = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Process 14
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, Process 14 SV1 (FFDM PACS' usual export)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
]
LOSSY = {
    "1.2.840.10008.1.2.4.81": 2 / 4095,  # JPEG-LS near-lossless: |error| <= 2 stored values
    "1.2.840.10008.1.2.4.91": 0.02,  # JPEG 2000 at 10:1
}


@pytest.mark.parametrize("syntax", LOSSLESS)
def test_lossless_syntaxes_read_as_the_uncompressed_file(tmp_path, syntax):
    plain = write(tmp_path, phantom(), "plain.dcm", **window_for(12))
    ds = mammogram_dataset(phantom(), **window_for(12))
    coded = save(ds, tmp_path / "coded.dcm", syntax)
    assert pydicom.dcmread(coded).file_meta.TransferSyntaxUID == syntax
    a, b = read_mammogram(plain, NATIVE), read_mammogram(coded, NATIVE)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert b.transfer_syntax == syntax and b.laterality == a.laterality


@pytest.mark.parametrize("syntax", sorted(LOSSY))
def test_lossy_syntaxes_read_within_their_error(tmp_path, syntax):
    plain = write(tmp_path, phantom(), "plain.dcm", **window_for(12))
    coded = save(mammogram_dataset(phantom(), **window_for(12)), tmp_path / "coded.dcm", syntax)
    a, b = read_mammogram(plain, NATIVE), read_mammogram(coded, NATIVE)
    assert b.transfer_syntax == syntax
    error = np.abs(a.pixels - b.pixels)
    assert 0 < error.max() and error.mean() <= LOSSY[syntax]


def test_8_bit_jpeg_baseline_reads(tmp_path):
    stored = (phantom(8)).astype(np.uint8)
    path = save(
        mammogram_dataset(stored, bits_stored=8, **window_for(8)),
        tmp_path / "baseline.dcm",
        "1.2.840.10008.1.2.4.50",
    )
    m = read_mammogram(path, NATIVE)
    assert m.bits_stored == 8 and m.laterality == "L" and m.mask.mean() > 0.3


def test_an_undecodable_syntax_is_one_line_naming_file_and_syntax(tmp_path):
    path = write(tmp_path, phantom(), **window_for(12))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.51"  # 12-bit JPEG Extended
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9"])
    ds.save_as(tmp_path / "extended.dcm", enforce_file_format=True)
    with pytest.raises(CalciflInputError) as info:
        read_mammogram(tmp_path / "extended.dcm")
    message = str(info.value)
    assert "\n" not in message and "extended.dcm" in message and "JPEG Extended" in message


@pytest.mark.parametrize(
    ("code", "meaning", "view"),
    [
        ("399368009", "médio-latéral oblique", "MLO"),  # SNOMED CT code, localised meaning
        ("R-10242", "", "CC"),  # SNOMED-RT code of older files
        ("", "cranio-caudal", "CC"),  # a meaning only
        ("12345", "unknown", None),
    ],
)
def test_view_from_the_view_code_sequence_without_view_position(tmp_path, code, meaning, view):
    from pydicom.dataset import Dataset

    item = Dataset()
    if code:
        item.CodeValue, item.CodingSchemeDesignator = code, "SCT"
    if meaning:
        item.CodeMeaning = meaning
    path = write(tmp_path, phantom(), view=None, ViewCodeSequence=[item], **window_for(12))
    assert read_mammogram(path).view == view

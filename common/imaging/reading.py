"""Read a mammogram DICOM file into a canonical, normalised image.

Order of operations (see DESIGN.md): refuse what is not a single-frame MG image →
decode → rescale slope/intercept → mask padding → VOI (window or VOI LUT sequence,
honouring VOILUTFunction) → invert MONOCHROME1 → flip to the canonical side → resample
to the target spacing → breast mask and bounding box.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from common.errors import (
    DicomError,
    DimensionError,
    MultiFrameError,
    NoPixelDataError,
    NotDicomError,
    PixelDecodeError,
    PresentationIntentError,
    SpacingError,
    TruncatedDicomError,
    UnsupportedModalityError,
)
from common.imaging.breast import bounding_box, breast_mask
from common.imaging.geometry import Geometry, orient, output_shape, resize
from common.imaging.intensity import to_display

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"
BREAST_PROJECTION_PRESENTATION = "1.2.840.10008.5.1.4.1.1.13.1.4"
BREAST_PROJECTION_PROCESSING = "1.2.840.10008.5.1.4.1.1.13.1.5"

_INTENT_BY_SOP_CLASS = {
    MG_FOR_PRESENTATION: "FOR PRESENTATION",
    DX_FOR_PRESENTATION: "FOR PRESENTATION",
    BREAST_PROJECTION_PRESENTATION: "FOR PRESENTATION",
    MG_FOR_PROCESSING: "FOR PROCESSING",
    DX_FOR_PROCESSING: "FOR PROCESSING",
    BREAST_PROJECTION_PROCESSING: "FOR PROCESSING",
}

_VIEW_BY_MEANING = {
    "cranio-caudal": "CC",
    "medio-lateral oblique": "MLO",
    "medio-lateral": "ML",
    "latero-medial": "LM",
    "cranio-caudal exaggerated laterally": "XCCL",
    "cranio-caudal exaggerated medially": "XCCM",
    "latero-medial oblique": "LMO",
    "caudo-cranial (from below)": "FB",
    "superolateral to inferomedial oblique": "SIO",
    "inferomedial to superolateral oblique": "ISO",
}

#: CID 4014 (View for Mammography) code values, SNOMED CT and SNOMED-RT, for files whose
#: View Code Sequence carries a code without (or with a localised) meaning.
_VIEW_BY_CODE = {
    "399162004": "CC",
    "R-10242": "CC",
    "399368009": "MLO",
    "R-10226": "MLO",
    "399260004": "ML",
    "R-10224": "ML",
    "399352003": "LM",
    "R-10228": "LM",
    "399099002": "LMO",
    "R-10230": "LMO",
    "399192003": "XCCL",
    "R-1024A": "XCCL",
    "399101009": "XCCM",
    "R-1024B": "XCCM",
    "R-10244": "FB",
    "R-102D0": "SIO",
    "R-40AAA": "ISO",
}


@dataclass(frozen=True)
class ReadOptions:
    """How mammograms are read; part of every cache key.

    Attributes
    ----------
    target_spacing_mm : float or None
        Pixel spacing of the canonical image (None keeps the stored grid).
    fallback_spacing_mm : float or None
        Spacing assumed when the file gives none (e.g. digitised film); None refuses.
    for_processing : {"refuse", "normalize"}
        FOR PROCESSING (raw detector) images are refused, or windowed to their
        0.5–99.5 percentiles inside the field.
    modalities : tuple of str or None
        Accepted Modality values; None accepts any.
    min_size, max_size : int
        Plausible range of Rows and Columns.
    voi_index : int
        Which window / VOI LUT to use when several are given.
    prefer_lut : bool
        Use a VOI LUT Sequence rather than a window when both are present.
    orientation : {"auto", "tags", "content"}
        How to find the chest-wall side: tags (PatientOrientation, else laterality with
        FieldOfViewHorizontalFlip), the image content, or tags falling back to content.
    key_salt : str
        Mixed into the de-identified image key so keys differ between federations.
    """

    target_spacing_mm: float | None = 0.1
    fallback_spacing_mm: float | None = None
    for_processing: str = "refuse"
    modalities: tuple[str, ...] | None = ("MG",)
    min_size: int = 32
    max_size: int = 12000
    voi_index: int = 0
    prefer_lut: bool = True
    orientation: str = "auto"
    key_salt: str = ""

    def __post_init__(self) -> None:
        """Validate option values early, with a clear message."""
        if self.for_processing not in ("refuse", "normalize"):
            raise ValueError("for_processing must be 'refuse' or 'normalize'")
        if self.orientation not in ("auto", "tags", "content"):
            raise ValueError("orientation must be 'auto', 'tags' or 'content'")
        if self.target_spacing_mm is not None and self.target_spacing_mm <= 0:
            raise ValueError("target_spacing_mm must be positive")

    @classmethod
    def from_dict(cls, d: dict) -> ReadOptions:
        """Rebuild options saved with ``dataclasses.asdict`` (JSON turns tuples to lists)."""
        modalities = d.get("modalities")
        return cls(**{**d, "modalities": tuple(modalities) if modalities is not None else None})

    def cache_token(self) -> str:
        """Return a stable string of every option (all of them change what is returned)."""
        return repr(self)


DEFAULT_OPTIONS = ReadOptions()


@dataclass
class Mammogram:
    """A canonical mammogram.

    Attributes
    ----------
    pixels : numpy.ndarray
        float32 in [0, 1], chest wall on the left, at ``spacing_mm``.
    mask : numpy.ndarray
        bool breast mask, same shape.
    bbox : tuple of int
        (row0, col0, row1, col1) of the mask, end-exclusive.
    spacing_mm : tuple of float
        (row, column) spacing of ``pixels``.
    source_spacing_mm : tuple of float
        Spacing of the stored image and where it came from (``spacing_source``).
    geometry : Geometry
        Stored → canonical transform (for ROI masks and points).
    image_key : str
        De-identified key: salted SHA-256 of SOPInstanceUID.
    """

    pixels: np.ndarray
    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    laterality: str | None
    view: str | None
    spacing_mm: tuple[float, float]
    source_spacing_mm: tuple[float, float]
    spacing_source: str
    photometric: str
    presentation_intent: str
    image_key: str
    geometry: Geometry
    bits_stored: int
    manufacturer: str | None = None
    transfer_syntax: str = ""
    voi_source: str = ""
    meta: dict = field(default_factory=dict)

    def crop(self) -> np.ndarray:
        """Return the pixels inside the breast bounding box."""
        r0, c0, r1, c1 = self.bbox
        return self.pixels[r0:r1, c0:c1]

    def info(self) -> dict:
        """Return the non-pixel attributes as a JSON-ready dict (no PHI)."""
        return {
            "bbox": list(self.bbox),
            "laterality": self.laterality,
            "view": self.view,
            "spacing_mm": list(self.spacing_mm),
            "source_spacing_mm": list(self.source_spacing_mm),
            "spacing_source": self.spacing_source,
            "photometric": self.photometric,
            "presentation_intent": self.presentation_intent,
            "image_key": self.image_key,
            "geometry": self.geometry.to_dict(),
            "bits_stored": self.bits_stored,
            "manufacturer": self.manufacturer,
            "transfer_syntax": self.transfer_syntax,
            "voi_source": self.voi_source,
        }


def image_key(sop_instance_uid: str, salt: str = "") -> str:
    """Return the de-identified key of an image (salted SHA-256 of its SOPInstanceUID)."""
    return salt_key(hashlib.sha256(f"|{sop_instance_uid}".encode()).hexdigest()[:24], salt)


def salt_key(key: str, salt: str) -> str:
    """Salt an unsalted image key (a hospital keeps its salt in its state folder)."""
    return hashlib.sha256(f"{salt}|{key}".encode()).hexdigest()[:24] if salt else key


def read_file(path: str | Path, **kwargs) -> Dataset:
    """``pydicom.dcmread`` with its failures turned into typed, one-line errors.

    Keyword arguments go to :func:`pydicom.dcmread` (e.g. ``stop_before_pixels``).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, **kwargs)
    except InvalidDicomError as exc:
        raise NotDicomError(path, f"not a DICOM file ({exc})") from exc
    except FileNotFoundError as exc:
        raise DicomError(path, "file not found") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        # pydicom raises these when the file ends inside an element
        raise TruncatedDicomError(path, f"file is truncated or corrupt ({exc})") from exc
    for warning in caught:
        # an encapsulated (compressed) stream cut short only warns in pydicom
        if "End of file reached" in str(warning.message):
            raise TruncatedDicomError(path, "file ends inside the compressed pixel data")
    return ds


def load_dataset(path: str | Path, options: ReadOptions = DEFAULT_OPTIONS) -> Dataset:
    """Read a DICOM file and refuse what cannot be a single-frame mammogram.

    Raises
    ------
    DicomError
        One of its subclasses, naming the file and the reason.
    """
    ds = read_file(path)
    check_dataset(ds, path, options)
    return ds


def check_dataset(ds: Dataset, path: str | Path, options: ReadOptions = DEFAULT_OPTIONS) -> None:
    """Raise a :class:`DicomError` if ``ds`` is not a usable single-frame mammogram."""
    if "PixelData" not in ds:
        raise NoPixelDataError(path, "no pixel data (not an image object)")
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "") or "").upper()
    if options.modalities is not None and modality not in options.modalities:
        allowed = "/".join(options.modalities)
        raise UnsupportedModalityError(
            path, f"modality '{modality or 'missing'}' is not {allowed} (ReadOptions.modalities)"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 or sop_class == BREAST_TOMOSYNTHESIS:
        raise MultiFrameError(
            path, f"multi-frame object ({frames} frames; tomosynthesis is not supported)"
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    lo, hi = options.min_size, options.max_size
    if not (lo <= rows <= hi and lo <= cols <= hi):
        raise DimensionError(path, f"implausible size {rows}x{cols} (expected {lo}..{hi})")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise DimensionError(path, "colour image (SamplesPerPixel != 1)")
    if presentation_intent(ds) == "FOR PROCESSING" and options.for_processing == "refuse":
        raise PresentationIntentError(
            path, "FOR PROCESSING image refused (set for_processing='normalize' to accept)"
        )
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not syntax.is_compressed:
        bits = int(ds.get("BitsAllocated", 16))
        expected = rows * cols * bits // 8
        if len(ds.PixelData) < expected:
            raise TruncatedDicomError(
                path, f"pixel data holds {len(ds.PixelData)} of {expected} bytes (truncated)"
            )


def _syntax_name(ds: Dataset) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return f"{syntax.name} ({syntax})" if syntax else "an unnamed transfer syntax"


def presentation_intent(ds: Dataset) -> str:
    """Return 'FOR PRESENTATION', 'FOR PROCESSING' or 'UNKNOWN'."""
    value = str(ds.get("PresentationIntentType", "") or "").upper()
    if value in ("FOR PRESENTATION", "FOR PROCESSING"):
        return value
    return _INTENT_BY_SOP_CLASS.get(str(ds.get("SOPClassUID", "")), "UNKNOWN")


def laterality_of(ds: Dataset) -> str | None:
    """Return 'L' or 'R' from ImageLaterality, else (series) Laterality."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return None


def view_of(ds: Dataset) -> str | None:
    """Return the view (CC, MLO, ...) from ViewPosition or the View Code Sequence."""
    value = str(ds.get("ViewPosition", "") or "").strip().upper()
    if value:
        return value
    for item in ds.get("ViewCodeSequence", []) or []:
        code = str(item.get("CodeValue", "")).strip().upper()
        if code in _VIEW_BY_CODE:
            return _VIEW_BY_CODE[code]
        meaning = str(item.get("CodeMeaning", "")).strip().lower()
        if meaning in _VIEW_BY_MEANING:
            return _VIEW_BY_MEANING[meaning]
    return None


def spacing_of(
    ds: Dataset, path: str | Path, fallback: float | None
) -> tuple[tuple[float, float], str]:
    """Return ((row, col) spacing in mm, source keyword).

    ImagerPixelSpacing (detector plane) is preferred for MG, then PixelSpacing.
    """
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        value = ds.get(keyword)
        if value is not None:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError, IndexError):
                continue
            if row > 0 and col > 0:
                return (row, col), keyword
    if fallback is None:
        raise SpacingError(
            path,
            "no ImagerPixelSpacing or PixelSpacing (assume one with --fallback-spacing MM, "
            "or fallback-spacing in the node config)",
        )
    return (fallback, fallback), "fallback"


def decide_flips(
    ds: Dataset, laterality: str | None, image: np.ndarray, mode: str
) -> tuple[bool, bool, str]:
    """Decide the flips that put the chest wall on the left.

    Returns
    -------
    flip_h, flip_v : bool
    how : str
        Which evidence decided: 'PatientOrientation', 'laterality', or 'content'.
    """
    if mode in ("auto", "tags"):
        orientation = ds.get("PatientOrientation")
        if orientation is not None and len(orientation) == 2:
            row_dir, col_dir = str(orientation[0]).upper(), str(orientation[1]).upper()
            if "A" in row_dir or "P" in row_dir:
                flip_h = "P" in row_dir
                # canonical: MLO runs head→feet downwards; CC has the lateral side up
                flip_v = "H" in col_dir or (laterality is not None and col_dir == laterality)
                return flip_h, flip_v, "PatientOrientation"
        if laterality is not None:
            # Standard display puts a right breast's chest wall on the right
            flip_h = laterality == "R"
            if str(ds.get("FieldOfViewHorizontalFlip", "") or "").upper() == "YES":
                flip_h = not flip_h
            return flip_h, False, "laterality"
        if mode == "tags":
            return False, False, "none"
    return chest_wall_on_right(image), False, "content"


def chest_wall_on_right(image: np.ndarray) -> bool:
    """Guess from the pixels whether the chest wall is on the right edge.

    The breast touches the chest-wall edge along its full height, while the nipple side
    is mostly air, so the brighter outer column band marks the chest wall.
    """
    w = image.shape[1]
    band = max(1, w // 10)
    step = max(1, image.shape[0] // 256)
    left = float(image[::step, :band].mean())
    right = float(image[::step, w - band :].mean())
    return right > left


def read_mammogram(
    path: str | Path,
    options: ReadOptions = DEFAULT_OPTIONS,
    laterality: str | None = None,
    view: str | None = None,
) -> Mammogram:
    """Read a mammogram into a canonical float32 image in [0, 1].

    Parameters
    ----------
    path : str or Path
        A DICOM file.
    options : ReadOptions
        Reading settings.
    laterality, view : str, optional
        Values from a descriptor CSV, used only where the file has none.

    Raises
    ------
    DicomError
        A typed subclass naming the file and the problem.
    """
    return mammogram_from_dataset(load_dataset(path, options), path, options, laterality, view)


def mammogram_from_dataset(
    ds: Dataset,
    path: str | Path,
    options: ReadOptions = DEFAULT_OPTIONS,
    laterality: str | None = None,
    view: str | None = None,
) -> Mammogram:
    """Build the canonical mammogram from a dataset already read and checked.

    :func:`read_mammogram` is :func:`load_dataset` followed by this; callers that need the
    header too (summaries) use the two steps to read the file once.
    """
    # refuse before the (possibly costly) decode
    src_spacing, spacing_source = spacing_of(ds, path, options.fallback_spacing_mm)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # codecs raise many types; all mean "cannot decode"
        reason = " ".join(str(exc).split())  # plugins' reasons come one per line
        message = reason.lower()
        if "truncat" in message or "end of" in message or "shorter" in message:
            raise TruncatedDicomError(path, f"pixel data is truncated ({reason})") from exc
        raise PixelDecodeError(
            path, f"cannot decode pixel data in {_syntax_name(ds)} ({reason})"
        ) from exc
    if stored.ndim != 2:
        raise DimensionError(path, f"pixel array has shape {stored.shape}, expected 2-D")

    intent = presentation_intent(ds)
    try:
        x, voi_source = to_display(ds, stored, intent, options.voi_index, options.prefer_lut)
    except (ValueError, TypeError, AttributeError) as exc:
        raise DicomError(path, f"unusable intensity attributes ({exc})") from exc

    lat = laterality_of(ds) or (laterality.upper()[:1] if laterality else None)
    flip_h, flip_v, how = decide_flips(ds, lat, x, options.orientation)
    shape = output_shape(x.shape, src_spacing, options.target_spacing_mm)
    if shape != x.shape:
        x = resize(x, shape, order=1)
        np.clip(x, 0.0, 1.0, out=x)  # the filter's weights are convex; guard rounding
    x = np.ascontiguousarray(orient(x, flip_h, flip_v))
    out_spacing = (
        (options.target_spacing_mm, options.target_spacing_mm)
        if options.target_spacing_mm is not None
        else src_spacing
    )
    mask = breast_mask(x, spacing_mm=out_spacing[0])
    sop_uid = str(ds.get("SOPInstanceUID", "")) or str(path)
    return Mammogram(
        pixels=x,
        mask=mask,
        bbox=bounding_box(mask),
        laterality=lat,
        view=view_of(ds) or (view.upper() if view else None),
        spacing_mm=out_spacing,
        source_spacing_mm=src_spacing,
        spacing_source=spacing_source,
        photometric=str(ds.get("PhotometricInterpretation", "")),
        presentation_intent=intent,
        image_key=image_key(sop_uid, options.key_salt),
        geometry=Geometry(tuple(stored.shape), tuple(shape), flip_h, flip_v),
        bits_stored=int(ds.get("BitsStored", 0) or 0),
        manufacturer=str(ds.get("Manufacturer", "")) or None,
        transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")),
        voi_source=voi_source,
        meta={"orientation_from": how},
    )


def read_mask(path: str | Path) -> np.ndarray:
    """Read an ROI mask DICOM (any modality) as a bool array on its stored grid."""
    ds = read_file(path)
    if "PixelData" not in ds:
        raise NoPixelDataError(path, "ROI mask has no pixel data")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # codecs raise many types
        raise PixelDecodeError(path, f"cannot decode ROI mask ({exc})") from exc
    if arr.ndim == 3:  # some masks are stored RGB
        arr = arr[..., 0]
    return arr > 0

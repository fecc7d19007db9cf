"""Write mammography DICOM files (used by the synthetic generator and by tests)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from common.imaging.reading import MG_FOR_PRESENTATION, MG_FOR_PROCESSING

#: UID root of files calcifl writes (pydicom's own root is used with a suffix).
UID_PREFIX = "1.2.826.0.1.3680043.8.498."


def new_uid(rng: np.random.Generator | None = None) -> str:
    """Return a new UID; deterministic when ``rng`` is given."""
    if rng is None:
        return generate_uid(prefix=UID_PREFIX)
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(rng.integers(0, 2**63))])


def mammogram_dataset(
    stored: np.ndarray,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    intent: str = "FOR PRESENTATION",
    laterality: str | None = "L",
    view: str | None = "CC",
    imager_spacing: float | None = 0.1,
    pixel_spacing: float | None = None,
    patient_id: str = "ANON",
    patient_name: str = "Anonymous",
    rng: np.random.Generator | None = None,
    **attributes: object,
) -> Dataset:
    """Build an MG dataset around ``stored`` (uint16 values).

    Extra keyword arguments are set as DICOM attributes by keyword, so tests can add or
    override anything (``WindowCenter=...``, ``PatientOrientation=["A", "R"]``).
    """
    if stored.ndim != 2:
        raise ValueError("stored must be 2-D")
    if stored.dtype == np.uint8:
        bits_allocated = 8
    elif stored.dtype in (np.uint16, np.int16):
        bits_allocated = 16
    else:
        raise ValueError(f"stored must be uint8/uint16/int16, got {stored.dtype}")
    sop_class = MG_FOR_PROCESSING if intent == "FOR PROCESSING" else MG_FOR_PRESENTATION
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = new_uid(rng)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.StudyInstanceUID = new_uid(rng)
    ds.SeriesInstanceUID = new_uid(rng)
    ds.Modality = "MG"
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyDate = dt.date(2020, 1, 1).strftime("%Y%m%d")
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PresentationIntentType = intent
    if laterality:
        ds.ImageLaterality = laterality
    if view:
        ds.ViewPosition = view
    if imager_spacing:
        ds.ImagerPixelSpacing = [imager_spacing, imager_spacing]
    if pixel_spacing:
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    ds.Rows, ds.Columns = (int(v) for v in stored.shape)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def mask_dataset(mask: np.ndarray, rng: np.random.Generator | None = None, **attributes) -> Dataset:
    """Build a CBIS-DDSM-style ROI mask (8-bit, 0/255, secondary capture)."""
    ds = mammogram_dataset(
        np.where(mask, 255, 0).astype(np.uint8),
        bits_stored=8,
        laterality=None,
        view=None,
        imager_spacing=None,
        rng=rng,
        **attributes,
    )
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.ImageType = ["DERIVED", "SECONDARY", ""]
    del ds.PresentationIntentType
    return ds


def save(ds: Dataset, path: str | Path, jpeg2000: bool = False) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (JPEG 2000 lossless when asked)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if jpeg2000:
        # lossless: the instance stays the same, so keep its UID (and determinism)
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path

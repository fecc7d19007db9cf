"""Write mammography DICOM files (used by the synthetic generator and by tests)."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
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


#: Transfer syntaxes :func:`save` writes, with the encoder used: pydicom's own writer,
#: one of pydicom's encoding plugins (pylibjpeg-openjpeg, pyjpegls, pylibjpeg-rle) or GDCM
#: (the JPEG processes, which pydicom does not encode).
ENCODERS = {
    ExplicitVRLittleEndian: "pydicom",
    ImplicitVRLittleEndian: "pydicom",
    ExplicitVRBigEndian: "pydicom",
    DeflatedExplicitVRLittleEndian: "pydicom",
    RLELossless: "plugin",
    JPEGLSLossless: "plugin",
    JPEGLSNearLossless: "plugin",
    JPEG2000Lossless: "plugin",
    JPEG2000: "plugin",
    JPEGLosslessSV1: "gdcm",
    JPEGLossless: "gdcm",
    JPEGBaseline8Bit: "gdcm",
}

_PLUGINS = {
    RLELossless: ("pylibjpeg", {}),
    JPEGLSLossless: ("pyjpegls", {}),
    JPEGLSNearLossless: ("pyjpegls", {"jls_error": 2}),
    JPEG2000Lossless: ("pylibjpeg", {}),
    JPEG2000: ("pylibjpeg", {"j2k_cr": [10]}),
}


def save(ds: Dataset, path: str | Path, syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a DICOM Part 10 file in transfer syntax ``syntax``.

    Lossless syntaxes keep the pixels; the lossy ones (JPEG-LS near-lossless with an error
    bound of 2, JPEG 2000 at 10:1, 8-bit JPEG baseline) change them. The instance UID is
    kept, so that writing stays deterministic. Raises ``ValueError`` for another syntax.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    syntax = pydicom.uid.UID(syntax)
    how = ENCODERS.get(syntax)
    if how is None:
        raise ValueError(f"cannot write transfer syntax {syntax}")
    if how == "gdcm":
        return _save_gdcm(ds, path, syntax)
    if how == "plugin":
        plugin, kwargs = _PLUGINS[syntax]
        if syntax == RLELossless and not _has_module("rle"):
            plugin = "pydicom"
        ds.compress(syntax, encoding_plugin=plugin, generate_instance_uid=False, **kwargs)
    elif syntax == ExplicitVRBigEndian:
        ds = _big_endian(ds)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _big_endian(ds: Dataset) -> Dataset:
    """Return a copy of ``ds`` with big-endian pixel bytes (pydicom writes them as given)."""
    out = ds.copy()
    out.file_meta = FileMetaDataset(ds.file_meta)
    out.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    if ds.BitsAllocated == 16:
        pixels = np.frombuffer(ds.PixelData, dtype="<u2")
        out.PixelData = pixels.astype(">u2").tobytes()
    return out


def _save_gdcm(ds: Dataset, path: Path, syntax: str) -> Path:
    """Write uncompressed, then let GDCM re-encode the file into ``path``."""
    import gdcm

    targets = {
        JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        JPEGLossless: gdcm.TransferSyntax.JPEGLosslessProcess14,
        JPEGBaseline8Bit: gdcm.TransferSyntax.JPEGBaselineProcess1,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".dcm")
    os.close(fd)
    try:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(tmp, enforce_file_format=True)
        reader = gdcm.ImageReader()
        reader.SetFileName(tmp)
        if not reader.Read():
            raise ValueError(f"GDCM could not read {tmp}")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(targets[syntax]))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise ValueError(f"GDCM could not encode {syntax.name}")
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(path))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise ValueError(f"GDCM could not write {path}")
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path

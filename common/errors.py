"""Typed errors for bad input.

Every error names the file (or CSV row and column) and says what is wrong in one line,
so that a loader can report it, skip the item and carry on with the rest of the data.
"""

from __future__ import annotations

from pathlib import Path


class CalciflInputError(Exception):
    """Base class for any input calcifl refuses.

    Parameters
    ----------
    source : str or Path
        The file (or ``file:row``) the problem was found in.
    reason : str
        A one-line human explanation.
    """

    #: Short machine-readable category used when counting refusals.
    kind = "invalid-input"

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class DicomError(CalciflInputError):
    """A DICOM file that cannot be used as a mammogram."""

    kind = "dicom"


class NotDicomError(DicomError):
    """The file is not a DICOM Part 10 file."""

    kind = "not-dicom"


class TruncatedDicomError(DicomError):
    """The file ends before its pixel data does."""

    kind = "truncated"


class NoPixelDataError(DicomError):
    """The dataset holds no image."""

    kind = "no-pixel-data"


class UnsupportedModalityError(DicomError):
    """The modality is not one the reader was configured to accept (MG by default)."""

    kind = "modality"


class MultiFrameError(DicomError):
    """A multi-frame object such as a tomosynthesis (DBT) volume."""

    kind = "multi-frame"


class DimensionError(DicomError):
    """Rows/Columns outside the plausible range for a mammogram."""

    kind = "dimensions"


class PresentationIntentError(DicomError):
    """A FOR PROCESSING image while the reader is set to refuse them."""

    kind = "for-processing"


class SpacingError(DicomError):
    """No usable pixel spacing and no fallback configured."""

    kind = "spacing"


class PixelDecodeError(DicomError):
    """The pixel data could not be decoded (codec missing, corrupt stream...)."""

    kind = "decode"


class TableError(CalciflInputError):
    """A bad row or value in a CSV (descriptor, manifest, reader reads).

    Parameters
    ----------
    source : str or Path
        The CSV file.
    row : int
        The 1-based line number of the row in the file (the header is line 1).
    column : str or None
        The column at fault, if any.
    reason : str
        What is wrong.
    """

    kind = "table"

    def __init__(self, source: str | Path, row: int, column: str | None, reason: str) -> None:
        self.row = row
        self.column = column
        where = f"row {row}" + (f", column '{column}'" if column else "")
        super().__init__(source, f"{where}: {reason}")


class MissingFileError(CalciflInputError):
    """A file a table names does not exist."""

    kind = "missing-file"


class RoiError(CalciflInputError):
    """A finding whose ROI (mask, box or points) cannot be used."""

    kind = "roi"

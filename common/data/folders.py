"""Open a hospital's data folder, whatever its format."""

from __future__ import annotations

from pathlib import Path

from common.data.cbis import DESCRIPTOR_GLOB, load_cbis
from common.data.manifest import MANIFEST_NAME, READS_NAME, load_manifest, load_reads
from common.data.problems import ProblemLog
from common.data.records import HospitalData
from common.errors import CalciflInputError

FORMATS = ("auto", "manifest", "cbis-ddsm")


def detect_format(root: Path) -> str:
    """Return 'manifest' or 'cbis-ddsm' for a folder, or raise naming what is missing."""
    if (root / MANIFEST_NAME).is_file():
        return "manifest"
    if any(root.glob(DESCRIPTOR_GLOB)):
        return "cbis-ddsm"
    raise CalciflInputError(
        root, f"neither {MANIFEST_NAME} nor a CBIS-DDSM descriptor ({DESCRIPTOR_GLOB}) found"
    )


def load_hospital(
    root: str | Path, fmt: str = "auto", resolve: bool = True, echo: bool = True
) -> HospitalData:
    """Load a hospital folder: its images, findings and reader reads.

    The manifest wins when both formats are present (it lists normal images too).
    ``reader_reads.csv`` beside either is read as well.

    Parameters
    ----------
    root : str or Path
        The hospital's data folder.
    fmt : {"auto", "manifest", "cbis-ddsm"}
        Force a format.
    resolve : bool
        Check files on disk and read ROI geometry (see the loaders).
    echo : bool
        Log one line per refused file or row as it is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise CalciflInputError(root, "not a folder")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}")
    fmt = detect_format(root) if fmt == "auto" else fmt
    problems = ProblemLog(echo=echo)
    if fmt == "manifest":
        data = load_manifest(root, resolve=resolve, problems=problems)
    else:
        data = load_cbis(root, resolve=resolve, problems=problems)
    reads_path = root / READS_NAME
    if reads_path.is_file():
        data.reads.extend(load_reads(reads_path, problems))
    return data

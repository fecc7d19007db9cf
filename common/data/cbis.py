"""CBIS-DDSM calcification descriptors and DICOM tree → case records.

Handles the quirks of the public release (see DESIGN.md): newlines inside quoted crop
paths, crop and mask told apart by content (one train row is swapped), both on-disk
layouts (the CSV's ``Case/<StudyUID>/<SeriesUID>/000000.dcm`` and the NBIA retriever's
``Case/<date>-DDSM-<n>/1.000000-full mammogram images-<n>/1-1.dcm``, matched by case folder
and SeriesInstanceUID), ``N/A`` vs ``NA``, density 0, two spellings of lucent-centred.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pydicom

from common.data.problems import ProblemLog
from common.data.records import Finding, HospitalData, ImageRecord
from common.data.tables import Row, read_rows
from common.errors import CalciflInputError, DicomError, MissingFileError, RoiError, TableError
from common.imaging.roi import find_mask, geometry_of, header_shape

CALC_COLUMNS = (
    "patient_id",
    "breast density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "calc type",
    "calc distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
)
REQUIRED = ("patient_id", "left or right breast", "image view", "pathology", "image file path")

#: Explicit mapping: BENIGN_WITHOUT_CALLBACK is benign (no recall needed), kept as detail.
PATHOLOGY = {
    "MALIGNANT": "malignant",
    "BENIGN": "benign",
    "BENIGN_WITHOUT_CALLBACK": "benign",
}
LATERALITY = {"LEFT": "L", "RIGHT": "R", "L": "L", "R": "R"}
CALC_TYPE_ALIASES = {"LUCENT_CENTERED": "LUCENT_CENTER"}
DESCRIPTOR_GLOB = "*calc_case_description*.csv"


def split_of(csv_path: Path) -> str | None:
    """Return 'train' or 'test' from a descriptor file name."""
    name = csv_path.name.lower()
    if "train" in name:
        return "train"
    if "test" in name:
        return "test"
    return None


def parse_row(row: Row) -> tuple[str, dict, Finding]:
    """Validate one descriptor row.

    Returns
    -------
    image_path : str
        The CSV's image path (stripped).
    image : dict
        Image-level fields (patient, laterality, view, density).
    finding : Finding
        The calcification, without geometry yet.
    """
    row.check_shape()
    kind = row.text("abnormality type")
    if kind is not None and kind.lower() != "calcification":
        raise row.error("abnormality type", f"'{kind}' is not a calcification (out of scope)")
    density_col = "breast density" if "breast density" in row.values else "breast_density"
    density = row.integer(density_col, 0, 4)
    image = {
        "patient_id": row.text("patient_id", required=True),
        "laterality": row.choice("left or right breast", LATERALITY, required=True),
        "view": (row.text("image view", required=True) or "").upper(),
        # density 0 occurs in the public CSVs and is not a BI-RADS category
        "density": density or None,
    }
    detail = (row.text("pathology", required=True) or "").upper()
    finding = Finding(
        finding_id=str(row.integer("abnormality id", 1, 99) or 1),
        pathology=row.choice("pathology", PATHOLOGY, required=True),
        pathology_detail=detail,
        calc_types=row.tokens("calc type", CALC_TYPE_ALIASES),
        distributions=row.tokens("calc distribution"),
        assessment=row.integer("assessment", 0, 6),
        subtlety=row.integer("subtlety", 0, 5),
    )
    image_path = row.text("image file path", required=True)
    finding.crop_path = _as_path(row.text("cropped image file path"))
    finding.mask_path = _as_path(row.text("ROI mask file path"))
    return image_path, image, finding


def _as_path(value: str | None) -> Path | None:
    # strip() in Row.text already removed CBIS-DDSM's trailing newline
    return Path(value) if value else None


class SeriesIndex:
    """Finds a CSV path's files on disk in either layout.

    The literal CSV path is tried first; otherwise files are matched by case folder and
    SeriesInstanceUID, read once from the headers of every DICOM under the root.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_series: dict[tuple[str, str], list[Path]] | None = None
        self.problems = ProblemLog()

    def series_files(self, csv_path: Path) -> list[Path]:
        """Return every file of the series ``csv_path`` names (empty if none)."""
        literal = self.root / csv_path
        if literal.is_file():
            return sorted(literal.parent.glob("*.dcm"))
        parts = csv_path.parts
        if len(parts) < 3:
            return []
        return list(self._index().get((parts[0], parts[-2]), []))

    def image_file(self, csv_path: Path) -> Path | None:
        """Return the one file of a full-image series, the literal one if it exists."""
        literal = self.root / csv_path
        if literal.is_file():
            return literal
        files = self.series_files(csv_path)
        return files[0] if len(files) == 1 else None

    def _index(self) -> dict[tuple[str, str], list[Path]]:
        if self._by_series is None:
            index: dict[tuple[str, str], list[Path]] = defaultdict(list)
            for path in sorted(self.root.rglob("*.dcm")):
                try:
                    ds = pydicom.dcmread(
                        path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
                    )
                    series = str(ds.SeriesInstanceUID)
                except Exception as exc:  # any unreadable header: report, keep indexing
                    self.problems.add(DicomError(path, f"unreadable header ({exc})"))
                    continue
                case = path.relative_to(self.root).parts[0]
                index[(case, series)].append(path)
            self._by_series = dict(index)
        return self._by_series


def dicom_root(root: Path) -> Path:
    """Return the folder holding the case folders (``CBIS-DDSM/`` if present)."""
    sub = root / "CBIS-DDSM"
    return sub if sub.is_dir() else root


def load_cbis(
    root: str | Path,
    csv_files: list[Path] | None = None,
    resolve: bool = True,
    problems: ProblemLog | None = None,
) -> HospitalData:
    """Load a CBIS-DDSM-layout folder into a :class:`HospitalData`.

    Parameters
    ----------
    root : str or Path
        Folder with the descriptor CSVs and the DICOM tree.
    csv_files : list of Path, optional
        Descriptor CSVs to read (default: every ``*calc_case_description*.csv`` in root).
    resolve : bool
        Find each image on disk and turn ROI masks into geometry. Without it only the
        CSVs are parsed (paths stay as written).
    problems : ProblemLog, optional
        Where refusals go (a new log by default).
    """
    root = Path(root)
    problems = problems if problems is not None else ProblemLog()
    csv_files = csv_files if csv_files is not None else sorted(root.glob(DESCRIPTOR_GLOB))
    if not csv_files:
        raise CalciflInputError(root, f"no descriptor CSV ({DESCRIPTOR_GLOB}) found")
    images: dict[str, ImageRecord] = {}
    for csv_path in csv_files:
        split = split_of(csv_path)
        try:
            for row in read_rows(csv_path, REQUIRED):
                try:
                    image_path, fields, finding = parse_row(row)
                    _add(images, image_path, fields, finding, split, row)
                except TableError as exc:
                    problems.add(exc)
        except TableError as exc:
            problems.add(exc)
    records = list(images.values())
    if resolve:
        records = _resolve(dicom_root(root), records, problems)
    return HospitalData(root=root, fmt="cbis-ddsm", images=records, problems=problems)


def _add(
    images: dict[str, ImageRecord],
    image_path: str,
    fields: dict,
    finding: Finding,
    split: str | None,
    row: Row,
) -> None:
    record = images.get(image_path)
    if record is None:
        images[image_path] = ImageRecord(
            path=Path(image_path),
            patient_id=fields["patient_id"],
            exam_id=fields["patient_id"],  # DDSM has one exam per case
            laterality=fields["laterality"],
            view=fields["view"],
            density=fields["density"],
            split=split,
            findings=[finding],
            source=row.source,
        )
        return
    for key in ("patient_id", "laterality", "view"):
        if getattr(record, key) != fields[key]:
            raise row.error(None, f"{key} differs from {record.source} for the same image")
    record.findings.append(finding)


def _resolve(root: Path, records: list[ImageRecord], problems: ProblemLog) -> list[ImageRecord]:
    index = SeriesIndex(root)
    kept = []
    for record in records:
        path = index.image_file(record.path)
        if path is None:
            problems.add(
                MissingFileError(
                    root / record.path,
                    f"image not found on disk ({record.source}; "
                    f"{len(record.findings)} finding(s) not used)",
                )
            )
            continue
        try:
            shape = header_shape(path)
        except CalciflInputError as exc:
            problems.add(exc)
            continue
        record.path = path
        for finding in record.findings:
            _resolve_finding(index, root, finding, shape, record, problems)
        kept.append(record)
    problems.extend(index.problems)
    return kept


def _resolve_finding(
    index: SeriesIndex,
    root: Path,
    finding: Finding,
    shape: tuple[int, int],
    record: ImageRecord,
    problems: ProblemLog,
) -> None:
    candidates: list[Path] = []
    for csv_path in (finding.mask_path, finding.crop_path):
        if csv_path is not None:
            candidates += [p for p in index.series_files(csv_path) if p not in candidates]
    mask_path, crop_path, mask = find_mask(candidates, shape)
    finding.mask_path, finding.crop_path = mask_path, crop_path
    if mask is None:
        problems.add(
            RoiError(
                root / record.path,
                f"no ROI mask found for finding {finding.finding_id} ({record.source}); "
                "kept without geometry",
            )
        )
        return
    geometry = geometry_of(mask)
    if geometry is None:
        problems.add(RoiError(mask_path, f"ROI mask is empty ({record.source})"))
        return
    finding.box, finding.centroid, finding.area_px = (
        geometry.box,
        geometry.centroid,
        geometry.area_px,
    )

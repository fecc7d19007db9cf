"""The calcifl manifest: one CSV a hospital writes for its own export.

Each row names one image; a row may also carry one finding and/or one reader read of
that image's breast. An image with several findings has one row per finding; an image
with no finding columns filled is a normal image. See README.md for the columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.data.cbis import CALC_TYPE_ALIASES
from common.data.marks import parse_marks
from common.data.problems import ProblemLog
from common.data.records import Finding, HospitalData, ImageRecord, ReaderRead
from common.data.tables import Row, read_rows
from common.errors import (
    CalciflInputError,
    MissingFileError,
    RoiError,
    TableError,
)
from common.imaging.reading import laterality_of, read_file, view_of
from common.imaging.roi import header_shape, load_mask_geometry

MANIFEST_NAME = "calcifl_manifest.csv"
READS_NAME = "reader_reads.csv"

FINDING_COLUMNS = (
    "finding_id",
    "pathology",
    "calc_type",
    "calc_distribution",
    "subtlety",
    "assessment",
    "mask",
    "box",
    "points",
)
MANIFEST_COLUMNS = (
    "image",
    "patient_id",
    "exam_id",
    "split",
    "laterality",
    "view",
    "density",
    *FINDING_COLUMNS,
)
READ_FIELDS = ("reader_id", "reader_role", "birads", "suspicion", "aided", "marks")
READ_COLUMNS = ("patient_id", "exam_id", "laterality", *READ_FIELDS)

PATHOLOGY = {
    "MALIGNANT": "malignant",
    "BENIGN": "benign",
    "BENIGN_WITHOUT_CALLBACK": "benign",
}
LATERALITY = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}
SPLITS = {"TRAIN": "train", "VAL": "val", "VALIDATION": "val", "TEST": "test"}
DENSITY = {"A": "1", "B": "2", "C": "3", "D": "4", "1": "1", "2": "2", "3": "3", "4": "4"}
ROLES = {"SENIOR": "senior", "JUNIOR": "junior", "RESIDENT": "junior", "OTHER": "other"}


def parse_points(row: Row, column: str = "points") -> np.ndarray | None:
    """Parse ``"x,y;x,y"`` into an (N, 2) array of (row, col)."""
    text = row.text(column)
    if text is None:
        return None
    pts = []
    for pair in text.split(";"):
        if not pair.strip():
            continue
        try:
            x, y = (float(v) for v in pair.split(","))
        except ValueError:
            raise row.error(column, f"'{pair}' is not 'x,y'") from None
        pts.append((y, x))
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def parse_box(row: Row, column: str = "box") -> tuple[float, float, float, float] | None:
    """Parse ``"x0,y0,x1,y1"`` into (row0, col0, row1, col1)."""
    text = row.text(column)
    if text is None:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise row.error(column, f"'{text}' is not 'x0,y0,x1,y1'") from None
    if x1 <= x0 or y1 <= y0:
        raise row.error(column, f"'{text}' is empty (x1 <= x0 or y1 <= y0)")
    return (y0, x0, y1, x1)


def parse_read(row: Row, patient_id: str, exam_id: str, laterality: str | None) -> ReaderRead:
    """Parse the read columns of a row (reader id known to be present)."""
    if laterality is None:
        raise row.error("laterality", "a read needs the breast's laterality")
    marks = None
    if "marks" in row.values:  # the column, even empty: marks recorded (maybe none)
        try:
            marks = parse_marks(row.values["marks"] or "")
        except ValueError as exc:
            raise row.error("marks", str(exc)) from None
    return ReaderRead(
        patient_id=patient_id,
        exam_id=exam_id,
        laterality=laterality,
        reader_id=row.text("reader_id", required=True),
        role=row.choice("reader_role", ROLES, required=True),
        birads=row.integer("birads", 0, 6, required=True),
        suspicion=row.number_("suspicion", 0.0, 100.0),
        aided=row.flag("aided"),
        source=row.source,
        marks=marks,
    )


def load_reads(path: str | Path, problems: ProblemLog | None = None) -> list[ReaderRead]:
    """Read a reader-reads CSV (one row per reader per breast)."""
    path = Path(path)
    problems = problems if problems is not None else ProblemLog()
    reads: list[ReaderRead] = []
    try:
        for row in read_rows(path, ("patient_id", "laterality", "reader_id", "birads")):
            try:
                row.check_shape()
                patient = row.text("patient_id", required=True)
                reads.append(
                    parse_read(
                        row,
                        patient,
                        row.text("exam_id") or patient,
                        row.choice("laterality", LATERALITY, required=True),
                    )
                )
            except TableError as exc:
                problems.add(exc)
    except TableError as exc:
        problems.add(exc)
    return _dedupe_reads(reads, problems)


def _dedupe_reads(reads: list[ReaderRead], problems: ProblemLog) -> list[ReaderRead]:
    """Keep one read per (breast, reader, aided); conflicting repeats are refused."""
    seen: dict[tuple, ReaderRead] = {}
    for read in reads:
        key = (read.patient_id, read.exam_id, read.laterality, read.reader_id, read.aided)
        first = seen.get(key)
        if first is None:
            seen[key] = read
        elif (first.birads, first.suspicion, first.role) != (
            read.birads,
            read.suspicion,
            read.role,
        ):
            problems.add(
                CalciflInputError(
                    read.source, f"read conflicts with {first.source} for the same breast; dropped"
                )
            )
    return list(seen.values())


def load_manifest(
    root: str | Path,
    manifest: str | Path | None = None,
    resolve: bool = True,
    problems: ProblemLog | None = None,
) -> HospitalData:
    """Load a calcifl manifest into a :class:`HospitalData`.

    Parameters
    ----------
    root : str or Path
        Hospital folder; relative paths in the manifest are relative to the manifest.
    manifest : str or Path, optional
        The CSV (default ``root/calcifl_manifest.csv``).
    resolve : bool
        Check each image exists, fill laterality/view from DICOM where the CSV omits
        them, and turn mask files into geometry.
    """
    root = Path(root)
    path = Path(manifest) if manifest is not None else root / MANIFEST_NAME
    problems = problems if problems is not None else ProblemLog()
    images: dict[Path, ImageRecord] = {}
    reads: list[ReaderRead] = []
    shapes: dict[Path, tuple[int, int]] = {}
    try:
        for row in read_rows(path, ("image", "patient_id")):
            try:
                _parse_manifest_row(row, path.parent, images, reads, shapes, resolve)
            except CalciflInputError as exc:
                problems.add(exc)
    except TableError as exc:
        problems.add(exc)
    return HospitalData(
        root=root,
        fmt="manifest",
        images=list(images.values()),
        reads=_dedupe_reads(reads, problems),
        problems=problems,
    )


def _parse_manifest_row(
    row: Row,
    base: Path,
    images: dict[Path, ImageRecord],
    reads: list[ReaderRead],
    shapes: dict[Path, tuple[int, int]],
    resolve: bool,
) -> None:
    row.check_shape()
    image = base / row.text("image", required=True)
    patient = row.text("patient_id", required=True)
    exam = row.text("exam_id") or patient
    laterality = row.choice("laterality", LATERALITY)
    view = (row.text("view") or "").upper() or None
    density = row.choice("density", DENSITY)
    split = row.choice("split", SPLITS)
    finding = _parse_finding(row, base) if _has_finding(row) else None

    record = images.get(image)
    if record is None:
        if resolve:
            if not image.is_file():
                raise MissingFileError(image, f"image not found ({row.source}, column 'image')")
            if laterality is None or view is None:
                ds = read_file(image, stop_before_pixels=True)
                laterality = laterality or laterality_of(ds)
                view = view or view_of(ds)
        record = ImageRecord(
            path=image,
            patient_id=patient,
            exam_id=exam,
            laterality=laterality,
            view=view,
            density=int(density) if density else None,
            split=split,
            source=row.source,
        )
    else:
        for key, value in (("patient_id", patient), ("exam_id", exam), ("split", split)):
            if getattr(record, key) != value:
                raise row.error(key, f"differs from {record.source} for the same image")
    if finding is not None:
        if resolve and finding.mask_path is not None:
            if image not in shapes:
                shapes[image] = header_shape(image)
            _attach_mask(row, finding, shapes[image])
        _complete_geometry(finding)
        if any(f.finding_id == finding.finding_id for f in record.findings):
            raise row.error("finding_id", f"finding '{finding.finding_id}' repeats for this image")
        record.findings.append(finding)
    if row.text("reader_id") is not None:
        reads.append(parse_read(row, patient, exam, record.laterality))
    images[image] = record


def _has_finding(row: Row) -> bool:
    return any(row.text(c) is not None for c in FINDING_COLUMNS)


def _parse_finding(row: Row, base: Path) -> Finding:
    pathology_detail = row.text("pathology")
    mask = row.text("mask")
    finding = Finding(
        finding_id=row.text("finding_id") or "1",
        pathology=row.choice("pathology", PATHOLOGY),
        pathology_detail=pathology_detail.upper() if pathology_detail else None,
        calc_types=row.tokens("calc_type", CALC_TYPE_ALIASES),
        distributions=row.tokens("calc_distribution"),
        assessment=row.integer("assessment", 0, 6),
        subtlety=row.integer("subtlety", 0, 5),
        mask_path=base / mask if mask else None,
        box=parse_box(row),
        points=parse_points(row),
    )
    return finding


def _complete_geometry(finding: Finding) -> None:
    """Fill what the row left open: box from points, centroid and area from the box."""
    points = finding.points if finding.points is not None and len(finding.points) else None
    if finding.box is None and points is not None:
        lo, hi = points.min(axis=0), points.max(axis=0) + 1
        finding.box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    if finding.centroid is None and points is not None:
        finding.centroid = (float(points[:, 0].mean()), float(points[:, 1].mean()))
    if finding.box is not None:
        r0, c0, r1, c1 = finding.box
        if finding.centroid is None:
            finding.centroid = ((r0 + r1) / 2, (c0 + c1) / 2)
        if finding.area_px is None:
            finding.area_px = (r1 - r0) * (c1 - c0)


def _attach_mask(row: Row, finding: Finding, shape: tuple[int, int]) -> None:
    if not finding.mask_path.is_file():
        raise MissingFileError(
            finding.mask_path, f"ROI mask not found ({row.source}, column 'mask')"
        )
    geometry = load_mask_geometry(finding.mask_path, shape)
    if geometry is None:
        raise RoiError(finding.mask_path, f"ROI mask is empty ({row.source}, column 'mask')")
    # an explicit box wins; otherwise the annotated outline is the ROI
    if finding.box is None:
        finding.box = geometry.box
    finding.centroid = geometry.centroid
    finding.area_px = geometry.area_px

"""Case records shared by every dataset format.

Patient and exam identifiers live here because a hospital needs them locally (patient-
level splits, pairing reads with breasts); nothing in this module sends them anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.data.problems import ProblemLog

PATHOLOGY_CLASSES = ("benign", "malignant")


@dataclass
class Finding:
    """A calcification finding on one image.

    Geometry is in stored-image pixel coordinates (row, col); map it to the canonical
    image with :meth:`common.imaging.geometry.Geometry.map_points`.

    Attributes
    ----------
    pathology : str or None
        'malignant', 'benign' or None (unknown).
    pathology_detail : str or None
        The source's own value, e.g. 'BENIGN_WITHOUT_CALLBACK'.
    calc_types, distributions : tuple of str
        Normalised BI-RADS descriptors (combined CSV values split on '-').
    box : tuple of float or None
        (row0, col0, row1, col1), end-exclusive.
    points : numpy.ndarray or None
        (N, 2) individual calcification centres when annotated.
    """

    finding_id: str
    pathology: str | None = None
    pathology_detail: str | None = None
    calc_types: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ()
    assessment: int | None = None
    subtlety: int | None = None
    mask_path: Path | None = None
    crop_path: Path | None = None
    box: tuple[float, float, float, float] | None = None
    centroid: tuple[float, float] | None = None
    area_px: float | None = None
    points: np.ndarray | None = None

    @property
    def malignant(self) -> bool | None:
        """True/False, or None when pathology is unknown."""
        return None if self.pathology is None else self.pathology == "malignant"


@dataclass
class ImageRecord:
    """One mammogram and what is known about it.

    Attributes
    ----------
    source : str
        Where the record came from (``file:row``), for error messages.
    """

    path: Path
    patient_id: str
    exam_id: str
    laterality: str | None
    view: str | None
    density: int | None = None
    split: str | None = None
    findings: list[Finding] = field(default_factory=list)
    source: str = ""

    @property
    def label(self) -> str:
        """'malignant' if any finding is, 'benign' if it has findings, else 'normal'."""
        if any(f.pathology == "malignant" for f in self.findings):
            return "malignant"
        return "benign" if self.findings else "normal"

    @property
    def breast_key(self) -> tuple[str, str, str | None]:
        """(patient, exam, laterality): the unit reader reads refer to."""
        return (self.patient_id, self.exam_id, self.laterality)


@dataclass(frozen=True)
class ReaderRead:
    """One reader's call on one breast."""

    patient_id: str
    exam_id: str
    laterality: str
    reader_id: str
    role: str
    birads: int
    suspicion: float | None
    aided: bool
    source: str = ""
    #: the read's marks (:class:`common.data.marks.Mark`); None: no marks recorded
    marks: tuple | None = None


@dataclass
class HospitalData:
    """Everything a hospital's data folder holds, after validation.

    Attributes
    ----------
    fmt : str
        'cbis-ddsm' or 'manifest'.
    problems : ProblemLog
        What was refused while loading, one entry per file or row.
    """

    root: Path
    fmt: str
    images: list[ImageRecord]
    reads: list[ReaderRead] = field(default_factory=list)
    problems: ProblemLog = field(default_factory=ProblemLog)

    def patients(self) -> set[str]:
        """Return the set of patient ids."""
        return {im.patient_id for im in self.images}

    def splits(self) -> dict[str, list[ImageRecord]]:
        """Return images grouped by split (None → 'unassigned')."""
        out: dict[str, list[ImageRecord]] = defaultdict(list)
        for im in self.images:
            out[im.split or "unassigned"].append(im)
        return dict(out)

    def findings(self) -> list[Finding]:
        """Return every finding of every image."""
        return [f for im in self.images for f in im.findings]

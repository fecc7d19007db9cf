"""Write a synthetic consortium: N hospitals of real DICOM files, deterministic for a seed.

Each hospital folder holds the CBIS-DDSM layout (descriptor CSVs, full images, ROI masks
and crops under ``CBIS-DDSM/``), a calcifl manifest listing every image (normal ones too,
which CBIS-DDSM's CSVs cannot), a reader-reads CSV and ``synth.json`` describing the site.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import queue
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless
from rich.progress import Progress

from common.data.cbis import CALC_COLUMNS
from common.data.manifest import MANIFEST_COLUMNS, MANIFEST_NAME, READ_COLUMNS, READS_NAME
from common.data.marks import Mark, format_marks
from common.imaging.writing import mammogram_dataset, mask_dataset, new_uid, save
from common.synth.artifacts import add_mimics, ffdm_artifacts, film_artifacts
from common.synth.calcs import Cluster, draw_cluster, make_cluster
from common.synth.phantom import render_breast
from common.synth.readers import (
    DEFAULT_CAD,
    DEFAULT_READERS,
    PERCEPTION_COLUMNS,
    PERCEPTION_NAME,
    CadProfile,
    ReaderProfile,
    read_breast,
)
from common.synth.vendors import (
    BY_NAME,
    PATIENT_ORIENTATION,
    Vendor,
    stored_orientation,
    to_stored,
    vendor_for,
)

#: Field of view (height, width) in mm per size preset.
SIZES = {"small": (48.0, 38.4), "medium": (120.0, 96.0), "full": (300.0, 240.0)}
#: Relative hospital sizes, cycled (non-IID: sites differ in size).
SIZE_FACTORS = (1.0, 0.75, 1.25, 0.9, 1.1)
_SURNAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Haddad", "Kowalski", "Silva", "Nguyen")
_GIVEN = ("Amara", "Ingrid", "Camille", "Yuki", "Leila", "Zofia", "Beatriz", "Linh")


# Below this many images, starting worker processes costs more than it saves
PARALLEL_FROM = 64


@dataclass(frozen=True)
class SynthConfig:
    """Settings of a synthetic consortium.

    Attributes
    ----------
    hospitals : int
        Number of sites.
    exams : int
        Mean number of exams (patients, four views each) per site.
    seed : int
        Everything written is a function of this.
    size : str
        Field-of-view preset: 'small' (CI), 'medium' or 'full' (full-field).
    spacing_mm : float or None
        Override every vendor's pixel spacing.
    finding_rate : float or None
        Fraction of breasts with a calcification finding (per-site random if None).
    test_fraction : float
        Fraction of patients in the test split.
    readers : tuple of ReaderProfile
        Who reads every breast (the first one's BI-RADS is the CSV's ``assessment``).
    cad : CadProfile or None
        With a CAD, every reader also reads every breast aided (``aided`` = yes rows).
    vendors : tuple of str
        Vendor names (:data:`common.synth.vendors.BY_NAME`), cycled over the hospitals;
        empty: the four digital units in turn. ``("halide",)`` is a CBIS-DDSM-like film
        consortium.
    mimics : bool or None
        Draw unannotated calcification mimics (:func:`common.synth.artifacts.add_mimics`);
        None: on film only.
    ffdm_artifacts : bool
        Draw paddle edges and skin folds on the digital units' images
        (:func:`common.synth.artifacts.ffdm_artifacts`), from their own random stream:
        every other pixel is as without them.
    ffdm_strength : float
        Scales their contrasts (1: as documented in docs/data-formats.md).
    """

    hospitals: int = 3
    exams: int = 40
    seed: int = 1
    size: str = "small"
    spacing_mm: float | None = None
    finding_rate: float | None = None
    test_fraction: float = 0.25
    readers: tuple[ReaderProfile, ...] = DEFAULT_READERS
    cad: CadProfile | None = DEFAULT_CAD
    vendors: tuple[str, ...] = ()
    mimics: bool | None = None
    ffdm_artifacts: bool = False
    ffdm_strength: float = 1.0

    def __post_init__(self) -> None:
        """Validate settings."""
        unknown = [v for v in self.vendors if v not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown vendor(s) {unknown}; known: {sorted(BY_NAME)}")
        if not self.readers:
            raise ValueError("need at least one reader")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}")
        if self.hospitals < 1 or self.exams < 2:
            raise ValueError("need at least 1 hospital and 2 exams")


def synthesize(
    out_dir: str | Path,
    config: SynthConfig = SynthConfig(),
    progress: bool = True,
    workers: int = 1,
):
    """Write the consortium under ``out_dir`` and return the hospital folders.

    Hospitals are written by ``workers`` processes (0: one per core, for consortia of more
    than :data:`PARALLEL_FROM` images); each hospital draws from its own seeded generators,
    so the files are the same however many processes write them. Worker processes are
    spawned, so a script that asks for them needs the ``if __name__ == "__main__":`` guard
    (the ``calcifl`` commands have it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = [_plan_hospital(h, config) for h in range(config.hospitals)]
    total = sum(len(p["patients"]) * 4 for p in plans)
    if workers == 0:
        workers = min(len(plans), os.cpu_count() or 1) if total > PARALLEL_FROM else 1
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("writing synthetic DICOM", total=total)
        if workers <= 1:
            dirs = [_write_hospital(out, plan, config, lambda: bar.advance(task)) for plan in plans]
        else:
            dirs = _write_in_processes(out, plans, config, workers, lambda: bar.advance(task))
    (out / "consortium.json").write_text(
        json.dumps({"config": asdict(config), "hospitals": [d.name for d in dirs]}, indent=2)
    )
    return dirs


def consortium(out: str | Path, config: SynthConfig, progress: bool = True) -> list[Path]:
    """Return a synthetic consortium's hospital folders, writing them unless already there.

    A complete consortium of the same settings in ``out`` is reused. ``consortium.json`` is
    written last, so a folder without it (an interrupted run) is
    written again; one made with other settings is refused rather than mixed.

    Raises
    ------
    ValueError
        When ``out`` holds a complete consortium of other settings.
    """
    out = Path(out)
    marker = out / "consortium.json"
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved.get("config") != json.loads(json.dumps(asdict(config))):
            raise ValueError(
                f"{out} holds a synthetic consortium of other settings; choose another folder"
            )
        return [out / name for name in saved["hospitals"]]
    return synthesize(out, config, progress=progress, workers=0)


def _write_in_processes(out: Path, plans: list[dict], config, workers: int, tick) -> list[Path]:
    """Write each hospital in a worker process; ``tick`` once per image written.

    The costliest hospitals start first, so one large site does not start last.
    """
    ctx = mp.get_context("spawn")  # no fork of a process that may hold torch's threads
    ticks = ctx.Queue()
    order = sorted(range(len(plans)), key=lambda i: -_cost(plans[i], config))
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_set_ticks, initargs=(ticks,)
    ) as pool:
        futures = {i: pool.submit(_write_hospital_queued, out, plans[i], config) for i in order}
        while not all(f.done() for f in futures.values()):
            try:
                ticks.get(timeout=0.2)
                tick()
            except queue.Empty:
                pass
        dirs = [futures[i].result() for i in range(len(plans))]
    while True:
        try:
            ticks.get(timeout=0.05)
            tick()
        except queue.Empty:
            return dirs


def _cost(plan: dict, config: SynthConfig) -> float:
    """Relative time to write a hospital: pixels written, JPEG 2000 encoding costing more."""
    vendor: Vendor = plan["vendor"]
    height_mm, width_mm = SIZES[config.size]
    pixels = height_mm * width_mm / vendor.spacing_mm**2
    # encoding costs half the drawing in JPEG 2000, a tenth in JPEG-LS
    extra = {JPEG2000Lossless: 0.5, JPEGLSLossless: 0.1}.get(vendor.syntax, 0.0)
    return len(plan["patients"]) * 4 * pixels * (1 + extra * vendor.compressed)


_TICKS = None


def _set_ticks(ticks) -> None:
    global _TICKS
    _TICKS = ticks


def _write_hospital_queued(out: Path, plan: dict, config) -> Path:
    return _write_hospital(out, plan, config, lambda: _TICKS.put(1))


def _plan_hospital(h: int, config: SynthConfig) -> dict:
    """Draw a site's non-IID parameters and its patients."""
    rng = np.random.default_rng([config.seed, h])
    vendor = vendor_for(h, rng, config.vendors)
    if config.spacing_mm:
        vendor = Vendor(**{**vendor.to_dict(), "spacing_mm": config.spacing_mm})
    n = max(2, round(config.exams * SIZE_FACTORS[h % len(SIZE_FACTORS)]))
    finding_rate = config.finding_rate or float(rng.uniform(0.35, 0.55))
    malignant_share = float(rng.uniform(0.3, 0.6))
    density_mix = rng.dirichlet(np.array([1.5, 3.0, 3.0, 1.5]) * 2)
    patients = []
    for p in range(n):
        split = "test" if rng.uniform() < config.test_fraction else "train"
        breasts = {}
        for lat in ("L", "R"):
            clusters = []
            if rng.uniform() < finding_rate:
                for _ in range(2 if rng.uniform() < 0.1 else 1):
                    subtlety = int(rng.choice([1, 2, 3, 4, 5], p=[0.08, 0.15, 0.3, 0.25, 0.22]))
                    clusters.append(make_cluster(rng.uniform() < malignant_share, subtlety, rng))
            breasts[lat] = clusters
        patients.append(
            {
                "patient_id": f"P_{h + 1}{p + 1:04d}",
                "name": f"{_SURNAMES[rng.integers(8)]}^{_GIVEN[rng.integers(8)]}",
                "accession": f"A{rng.integers(10**8, 10**9)}",
                "split": split,
                "density": int(rng.choice([1, 2, 3, 4], p=density_mix)),
                "breasts": breasts,
            }
        )
    # both splits present, even for tiny sites
    splits = {p["split"] for p in patients}
    if "test" not in splits:
        patients[-1]["split"] = "test"
    if "train" not in splits:
        patients[0]["split"] = "train"
    return {
        "index": h,
        "name": f"hospital-{h + 1}",
        "vendor": vendor,
        "finding_rate": finding_rate,
        "malignant_share": malignant_share,
        "density_mix": density_mix.round(3).tolist(),
        "patients": patients,
    }


def _write_hospital(out: Path, plan: dict, config: SynthConfig, tick) -> Path:
    root = out / plan["name"]
    dicom_root = root / "CBIS-DDSM"
    vendor: Vendor = plan["vendor"]
    rng = np.random.default_rng([config.seed, plan["index"], 1])
    # reads draw from their own stream: changing the readers leaves the images unchanged
    read_rng = np.random.default_rng([config.seed, plan["index"], 2])
    # and marks from a third: adding them left the images and the reads unchanged
    mark_rng = np.random.default_rng([config.seed, plan["index"], 3])
    # and artifacts from a fourth: a consortium without them draws the same images
    artifact_rng = np.random.default_rng([config.seed, plan["index"], 4])
    # and a digital unit's paddle edges and skin folds from a fifth
    ffdm_rng = (
        np.random.default_rng([config.seed, plan["index"], 5])
        if config.ffdm_artifacts and not vendor.film
        else None
    )
    mimics = vendor.film if config.mimics is None else config.mimics
    height_mm, width_mm = SIZES[config.size]
    shape = (round(height_mm / vendor.spacing_mm), round(width_mm / vendor.spacing_mm))
    cbis_rows: dict[str, list[dict]] = {"train": [], "test": []}
    manifest_rows: list[dict] = []
    read_rows: list[dict] = []
    perception_rows: list[dict] = []
    counts: Counter = Counter()
    for patient in plan["patients"]:
        study_uid = new_uid(rng)
        prefix = "Calc-Training" if patient["split"] == "train" else "Calc-Test"
        for lat in ("L", "R"):
            clusters: list[Cluster] = patient["breasts"][lat]
            seen: list = []
            found: dict[str, list] = {r.reader_id: [] for r in config.readers}
            reads = {
                r.reader_id: read_breast(
                    r,
                    _truth(clusters),
                    min((c.subtlety for c in clusters), default=None),
                    patient["density"],
                    read_rng,
                    config.cad,
                    seen,
                    found[r.reader_id],
                )
                for r in config.readers
            }
            breast_rows = list(_read_rows(patient, lat, reads, config.readers))
            read_rows.extend(breast_rows)
            views: dict[str, dict] = {}
            for r, p in zip(config.readers, seen, strict=True):
                perception_rows.append(
                    {
                        "patient_id": patient["patient_id"],
                        "exam_id": patient["patient_id"],
                        "laterality": lat,
                        "reader_id": r.reader_id,
                        "missed": int(p.missed),
                        "noise": f"{p.noise:.6f}",
                    }
                )
            for view in ("CC", "MLO"):
                case = (
                    f"{prefix}_{patient['patient_id']}_{'LEFT' if lat == 'L' else 'RIGHT'}_{view}"
                )
                image_rel, findings = _write_image(
                    dicom_root,
                    case,
                    study_uid,
                    patient,
                    lat,
                    view,
                    clusters,
                    vendor,
                    shape,
                    rng,
                    artifact_rng if mimics or vendor.film else None,
                    mimics,
                    ffdm_rng,
                    config.ffdm_strength,
                )
                views[view] = {
                    "inside": findings.pop("inside"),
                    "centres": [item["points"].mean(axis=0) for item in findings["items"]],
                }
                counts["images"] += 1
                counts["compressed"] += int(findings.pop("compressed"))
                counts.update(findings.pop("artifacts"))
                base = {
                    "image": f"CBIS-DDSM/{image_rel}",
                    "patient_id": patient["patient_id"],
                    "exam_id": patient["patient_id"],
                    "split": patient["split"],
                    "laterality": lat,
                    "view": view,
                    "density": patient["density"],
                }
                if not findings["items"]:
                    manifest_rows.append({**base})
                    counts["normal_images"] += 1
                for i, item in enumerate(findings["items"], start=1):
                    cluster: Cluster = item["cluster"]
                    pathology = "MALIGNANT" if cluster.malignant else "BENIGN"
                    counts[f"findings_{pathology.lower()}"] += 1
                    manifest_rows.append(
                        {
                            **base,
                            "finding_id": str(i),
                            "pathology": pathology,
                            "calc_type": cluster.calc_type,
                            "calc_distribution": cluster.distribution,
                            "subtlety": cluster.subtlety,
                            "assessment": reads[config.readers[0].reader_id][0][0],
                            "mask": f"CBIS-DDSM/{item['mask']}",
                            "points": ";".join(f"{c:.1f},{r:.1f}" for r, c in item["points"]),
                        }
                    )
                    cbis_rows[patient["split"]].append(
                        {
                            "patient_id": patient["patient_id"],
                            "breast density": patient["density"],
                            "left or right breast": "LEFT" if lat == "L" else "RIGHT",
                            "image view": view,
                            "abnormality id": i,
                            "abnormality type": "calcification",
                            "calc type": cluster.calc_type,
                            "calc distribution": cluster.distribution,
                            "assessment": reads[config.readers[0].reader_id][0][0],
                            "pathology": pathology,
                            "subtlety": cluster.subtlety,
                            "image file path": image_rel,
                            # CBIS-DDSM's crop paths end in a newline inside the quotes
                            "cropped image file path": item["crop"] + "\n",
                            "ROI mask file path": item["mask"],
                        }
                    )
                tick()
            for row in breast_rows:
                aided = row["aided"] == "yes"
                row["marks"] = format_marks(
                    _marks(views, found[row["reader_id"]][int(aided)], row, mark_rng)
                )
    for split, name in (("train", "train_set"), ("test", "test_set")):
        _write_csv(root / f"calc_case_description_{name}.csv", CALC_COLUMNS, cbis_rows[split])
    _write_csv(root / MANIFEST_NAME, MANIFEST_COLUMNS, manifest_rows)
    _write_csv(root / READS_NAME, READ_COLUMNS, read_rows)
    _write_csv(root / PERCEPTION_NAME, PERCEPTION_COLUMNS, perception_rows)
    info = {
        "hospital": plan["name"],
        "vendor": vendor.to_dict(),
        "size": config.size,
        "image_shape": list(shape),
        "finding_rate": round(plan["finding_rate"], 3),
        "malignant_share": round(plan["malignant_share"], 3),
        "density_mix": plan["density_mix"],
        "patients": len(plan["patients"]),
        "readers": [r.to_dict() for r in config.readers],
        "cad": config.cad.to_dict() if config.cad else None,
        "counts": dict(counts),
    }
    (root / "synth.json").write_text(json.dumps(info, indent=2))
    return root


def _truth(clusters: list[Cluster]) -> str:
    if any(c.malignant for c in clusters):
        return "malignant"
    return "benign" if clusters else "normal"


def _read_rows(patient: dict, lat: str, reads: dict, readers: tuple[ReaderProfile, ...]):
    for reader in readers:
        for aided, read in zip(("no", "yes"), reads[reader.reader_id], strict=True):
            if read is None:
                continue
            yield {
                "patient_id": patient["patient_id"],
                "exam_id": patient["patient_id"],
                "laterality": lat,
                "reader_id": reader.reader_id,
                "reader_role": reader.role,
                "birads": read[0],
                "suspicion": read[1],
                "aided": aided,
            }


def _marks(views: dict, found: bool, read: dict, rng: np.random.Generator) -> tuple:
    """Return a simulated read's marks.

    A reader marks each calcification cluster they saw, on both views, rated by their
    suspicion; seeing none and calling BI-RADS 3 or more, they mark one random spot of the
    breast (a false mark, or a true one by chance).
    """
    rating = float(read["suspicion"])
    if found:
        return tuple(
            Mark(view, float(c[0]), float(c[1]), rating)
            for view, v in views.items()
            for c in v["centres"]
        )
    if read["birads"] < 3:
        return ()
    view = VIEW_ORDER[int(rng.integers(len(VIEW_ORDER)))]
    rows, cols = np.nonzero(views[view]["inside"])
    i = int(rng.integers(len(rows)))
    return (Mark(view, float(rows[i]), float(cols[i]), rating),)


VIEW_ORDER = ("CC", "MLO")


def _write_image(
    dicom_root: Path,
    case: str,
    study_uid: str,
    patient: dict,
    lat: str,
    view: str,
    clusters: list[Cluster],
    vendor: Vendor,
    shape: tuple[int, int],
    rng: np.random.Generator,
    artifact_rng: np.random.Generator | None = None,
    mimics: bool = False,
    ffdm_rng: np.random.Generator | None = None,
    ffdm_strength: float = 1.0,
) -> tuple[str, dict]:
    """Render, write one view and its findings' ROI masks and crops; return paths.

    With ``artifact_rng``, unannotated mimics (``mimics``) and, on film, the film's
    artifacts are drawn from it; with ``ffdm_rng``, a digital unit's paddle edge and skin
    fold.
    """
    phantom = render_breast(shape, view, patient["density"], rng)
    image = phantom.attenuation
    drawn = []
    for cluster in clusters:
        center = _place(phantom, rng)
        points, roi = draw_cluster(
            image, cluster, center, vendor.spacing_mm, rotation=float(rng.uniform(0, 2 * np.pi))
        )
        drawn.append((cluster, points, roi & phantom.mask))
    artifacts: Counter = Counter()
    if artifact_rng is not None and mimics:
        rois = np.zeros(shape, dtype=bool)
        for _, _, roi in drawn:
            rois |= roi
        searched = phantom.mask if phantom.muscle is None else phantom.mask & ~phantom.muscle
        artifacts.update(add_mimics(image, searched, vendor.spacing_mm, artifact_rng, rois))
    if ffdm_rng is not None:
        artifacts.update(
            ffdm_artifacts(image, phantom.mask, vendor.spacing_mm, view, ffdm_rng, ffdm_strength)
        )
    if artifact_rng is not None and vendor.film:
        label = f"{lat}{view}"
        artifacts.update(
            film_artifacts(image, phantom.mask, vendor.spacing_mm, label, artifact_rng)
        )
    stored, attributes = to_stored(image, phantom.mask, vendor, rng)
    flip = stored_orientation(vendor, lat)
    if flip:
        stored = stored[:, ::-1]
    if vendor.orientation == "patient-orientation":
        attributes["PatientOrientation"] = PATIENT_ORIENTATION[(lat, view)]
    elif vendor.orientation == "fov-flip" and lat == "R":
        attributes["FieldOfViewHorizontalFlip"] = "YES"
    laterality_kw = "ImageLaterality"
    if vendor.orientation == "series-laterality":
        laterality_kw = "Laterality"
    compressed = bool(rng.uniform() < vendor.compressed)
    common = {
        "PatientID": patient["patient_id"],
        "PatientName": patient["name"],
        "AccessionNumber": patient["accession"],
        "Manufacturer": vendor.manufacturer,
        "ManufacturerModelName": vendor.model,
    }
    spacing_kw = {"imager_spacing": None, "pixel_spacing": None}
    if vendor.spacing_tag != "none":
        spacing_kw[
            "imager_spacing" if vendor.spacing_tag == "ImagerPixelSpacing" else "pixel_spacing"
        ] = vendor.spacing_mm
    ds = mammogram_dataset(
        np.ascontiguousarray(stored),
        bits_stored=vendor.bits_stored,
        photometric=vendor.photometric,
        laterality=lat if laterality_kw == "ImageLaterality" else None,
        view=view,
        rng=rng,
        **spacing_kw,
        **common,
        **attributes,
        StudyInstanceUID=study_uid,
    )
    if laterality_kw == "Laterality":
        ds.Laterality = lat
    rel = f"{case}/{study_uid}/{ds.SeriesInstanceUID}/000000.dcm"
    save(ds, dicom_root / rel, vendor.syntax if compressed else ExplicitVRLittleEndian)
    inside = phantom.mask[:, ::-1] if flip else phantom.mask
    items = []
    for i, (cluster, points, roi) in enumerate(drawn, start=1):
        if flip:
            roi = roi[:, ::-1]
            points = points.copy()
            points[:, 1] = shape[1] - 1 - points[:, 1]
        roi_study, roi_series = new_uid(rng), new_uid(rng)
        folder = f"{case}_{i}/{roi_study}/{roi_series}"
        mask_ds = mask_dataset(
            np.ascontiguousarray(roi),
            rng=rng,
            StudyInstanceUID=roi_study,
            SeriesInstanceUID=roi_series,
            SeriesDescription="ROI mask images",
            **common,
        )
        save(mask_ds, dicom_root / folder / "000000.dcm")
        rows, cols = np.nonzero(roi)
        pad = 8
        r0, r1 = max(0, rows.min() - pad), min(shape[0], rows.max() + pad + 1)
        c0, c1 = max(0, cols.min() - pad), min(shape[1], cols.max() + pad + 1)
        crop_ds = mammogram_dataset(
            np.ascontiguousarray(stored[r0:r1, c0:c1]),
            bits_stored=vendor.bits_stored,
            photometric=vendor.photometric,
            laterality=lat,
            view=view,
            rng=rng,
            **spacing_kw,
            **common,
            StudyInstanceUID=roi_study,
            SeriesInstanceUID=roi_series,
            SeriesDescription="cropped images",
        )
        save(crop_ds, dicom_root / folder / "000001.dcm")
        items.append(
            {
                "cluster": cluster,
                "points": points,
                "mask": f"{folder}/000000.dcm",
                "crop": f"{folder}/000001.dcm",
            }
        )
    return rel, {
        "items": items,
        "compressed": compressed,
        "inside": inside,
        "artifacts": {f"artifact_{k}": v for k, v in artifacts.items()},
    }


def _place(phantom, rng: np.random.Generator) -> tuple[float, float]:
    """Pick a cluster centre inside the breast, preferring glandular tissue."""
    best, best_score = None, -1.0
    for _ in range(12):
        r, c = phantom.position(rng.uniform(0.25, 0.7), rng.uniform(-0.6, 0.6))
        ri, ci = int(r), int(c)
        if not (0 <= ri < phantom.mask.shape[0] and 0 <= ci < phantom.mask.shape[1]):
            continue
        if not phantom.mask[ri, ci]:
            continue
        score = float(phantom.glandular[ri, ci]) + rng.uniform(0, 0.5)
        if score > best_score:
            best, best_score = (r, c), score
    if best is None:
        return phantom.center_row, phantom.depth * 0.5
    return best


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})

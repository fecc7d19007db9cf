"""A privacy-safe summary of a hospital's data folder, fit to share with the consortium.

Only counts leave this module: no patient or exam id, no UID, no path. Small counts can
be suppressed (``min_cell``) and the number of suppressed cells is reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pydicom.uid import UID

from common.data.records import HospitalData
from common.errors import CalciflInputError
from common.imaging.reading import (
    DEFAULT_OPTIONS,
    ReadOptions,
    load_dataset,
    mammogram_from_dataset,
    presentation_intent,
    spacing_of,
)


def _spacing_label(ds) -> str:
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        value = ds.get(keyword)
        if value is not None:
            return f"{float(value[0]):.3f}"
    return "missing"


def _voi_label(ds) -> str:
    if ds.get("VOILUTSequence"):
        return "voi-lut"
    if "WindowCenter" in ds:
        return f"window-{str(ds.get('VOILUTFunction', 'LINEAR') or 'LINEAR').lower()}"
    return "none"


HIDDEN = "withheld"


def suppress(counter: Counter, min_cell: int) -> set:
    """Cells of a count table to withhold when its total is shown exactly.

    Primary suppression withholds each count in ``1..min_cell-1``; complementary
    suppression then withholds the next smallest counts until at least two cells are
    withheld and they add up to ``min_cell`` or more, so that neither a withheld cell nor
    the sum of the withheld ones can be had as the total minus the cells shown.
    """
    hidden = {k for k, v in counter.items() if 0 < v < min_cell}
    if not hidden:
        return hidden
    others = sorted((v, str(k), k) for k, v in counter.items() if k not in hidden and v > 0)
    while others and (len(hidden) < 2 or sum(counter[k] for k in hidden) < min_cell):
        hidden.add(others.pop(0)[2])
    return hidden


def summarize(
    data: HospitalData,
    options: ReadOptions = DEFAULT_OPTIONS,
    deep: bool = False,
    min_cell: int = 1,
    tick: Callable[[], None] | None = None,
) -> dict:
    """Count what a hospital folder holds.

    Parameters
    ----------
    data : HospitalData
        A loaded folder (its problems so far are counted too).
    options : ReadOptions
        Used to check each file as training would.
    deep : bool
        Decode every image (finds corrupt compressed streams; slower).
    min_cell : int
        Categorical counts below this are withheld, with complementary cells (see
        :func:`suppress`).
    tick : callable, optional
        Called once per image (progress).
    """
    dicom: dict[str, Counter] = {
        k: Counter()
        for k in (
            "manufacturer",
            "bits_stored",
            "photometric",
            "transfer_syntax",
            "presentation_intent",
            "voi",
            "spacing_mm",
        )
    }
    usable = []
    for record in data.images:
        try:
            ds = load_dataset(record.path, options)
            spacing_of(ds, record.path, options.fallback_spacing_mm)  # refused as training would
            if deep:  # decode too, from the dataset already read
                mammogram_from_dataset(ds, record.path, options, record.laterality, record.view)
        except CalciflInputError as exc:
            data.problems.add(exc)
        else:
            usable.append(record)
            dicom["manufacturer"][str(ds.get("Manufacturer", "") or "unknown")] += 1
            dicom["bits_stored"][str(ds.get("BitsStored", "?"))] += 1
            dicom["photometric"][str(ds.get("PhotometricInterpretation", "?"))] += 1
            dicom["transfer_syntax"][UID(ds.file_meta.TransferSyntaxUID).name] += 1
            dicom["presentation_intent"][presentation_intent(ds)] += 1
            dicom["voi"][_voi_label(ds)] += 1
            dicom["spacing_mm"][_spacing_label(ds)] += 1
        if tick:
            tick()

    findings = [f for im in usable for f in im.findings]
    split_patients: dict[str, set[str]] = {}
    for im in usable:
        split_patients.setdefault(im.split or "unassigned", set()).add(im.patient_id)
    patient_splits = Counter(p for patients in split_patients.values() for p in patients)
    readers = {(r.reader_id, r.role) for r in data.reads}

    suppressed = 0

    def cells(counter: Counter) -> dict:
        nonlocal suppressed
        hidden = suppress(counter, min_cell)
        suppressed += len(hidden)
        ordered = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return {str(k): HIDDEN if k in hidden else v for k, v in ordered}

    summary = {
        "format": data.fmt,
        "images": {
            "listed": len(data.images),
            "usable": len(usable),
            "refused": len(data.images) - len(usable),
        },
        "patients": len({im.patient_id for im in usable}),
        "exams": len({(im.patient_id, im.exam_id) for im in usable}),
        "splits": {
            split: {
                "images": sum(1 for im in usable if (im.split or "unassigned") == split),
                "patients": len(patients),
            }
            for split, patients in sorted(split_patients.items())
        },
        "patients_in_several_splits": sum(1 for n in patient_splits.values() if n > 1),
        "by_view": cells(Counter(im.view or "unknown" for im in usable)),
        "by_laterality": cells(Counter(im.laterality or "unknown" for im in usable)),
        "by_density": cells(Counter(str(im.density or "unknown") for im in usable)),
        "by_image_label": cells(Counter(im.label for im in usable)),
        "findings": {
            "total": len(findings),
            "with_geometry": sum(1 for f in findings if f.box is not None),
            "by_pathology": cells(Counter(f.pathology or "unknown" for f in findings)),
            "by_pathology_detail": cells(
                Counter(f.pathology_detail or "unknown" for f in findings)
            ),
            "by_calc_type": cells(Counter(t for f in findings for t in f.calc_types)),
            "by_distribution": cells(Counter(t for f in findings for t in f.distributions)),
        },
        "dicom": {f"by_{k}": cells(v) for k, v in dicom.items()},
        "reads": {
            "total": len(data.reads),
            "readers_by_role": cells(Counter(role for _, role in readers)),
            "aided": sum(1 for r in data.reads if r.aided),
        },
        "refused": data.problems.counts(),
    }
    summary["privacy"] = {"min_cell": min_cell, "suppressed_cells": suppressed}
    return summary


def to_markdown(summary: dict, title: str = "Data summary") -> str:
    """Render a summary as Markdown tables."""
    lines = [f"# {title}", ""]
    im = summary["images"]
    lines += [
        f"- format: {summary['format']}",
        f"- images: {im['usable']} usable of {im['listed']} listed ({im['refused']} refused)",
        f"- patients: {summary['patients']}, exams: {summary['exams']}",
        f"- patients in more than one split: {summary['patients_in_several_splits']}",
        f"- reader reads: {summary['reads']['total']} ({summary['reads']['aided']} aided)",
        f"- small-cell suppression: counts below {summary['privacy']['min_cell']} withheld, "
        "with complementary cells so that no withheld count is the total minus those shown "
        f"({summary['privacy']['suppressed_cells']} cells)",
        "",
    ]

    def table(name: str, counts: dict) -> None:
        if not counts:
            return
        lines.extend([f"## {name}", "", "| value | count |", "|---|---|"])
        lines.extend(f"| {k} | {v} |" for k, v in counts.items())
        lines.append("")

    table("Splits (images)", {k: v["images"] for k, v in summary["splits"].items()})
    for key in ("by_view", "by_laterality", "by_density", "by_image_label"):
        table(key.replace("by_", "").replace("_", " ").capitalize(), summary[key])
    for key, counts in summary["findings"].items():
        if isinstance(counts, dict):
            table("Findings " + key.replace("by_", "").replace("_", " "), counts)
    for key, counts in summary["dicom"].items():
        table("DICOM " + key.replace("by_", "").replace("_", " "), counts)
    table("Readers by role", summary["reads"]["readers_by_role"])
    table("Refused (by reason)", summary["refused"])
    return "\n".join(lines)

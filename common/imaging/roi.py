"""ROI masks: tell masks from crops by content and reduce a mask to cluster geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DicomError
from common.imaging.reading import read_file, read_mask


@dataclass(frozen=True)
class RoiGeometry:
    """Cluster geometry from an ROI mask, in stored pixel coordinates (row, col)."""

    box: tuple[float, float, float, float]
    centroid: tuple[float, float]
    area_px: float


def header_shape(path: Path) -> tuple[int, int]:
    """Return (Rows, Columns) without reading pixel data."""
    ds = read_file(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
    if "Rows" not in ds or "Columns" not in ds:
        raise DicomError(path, "no Rows/Columns (not an image)")
    return int(ds.Rows), int(ds.Columns)


def geometry_of(mask: np.ndarray) -> RoiGeometry | None:
    """Reduce a bool mask to box, centroid and area; None when empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return RoiGeometry(
        box=(float(rows.min()), float(cols.min()), float(rows.max() + 1), float(cols.max() + 1)),
        centroid=(float(rows.mean()), float(cols.mean())),
        area_px=float(rows.size),
    )


def in_roi(point, box, centroid, tolerance: float | tuple[float, float]) -> bool:
    """Whether a (row, col) point lies in an ROI box grown by ``tolerance`` pixels.

    ``tolerance`` is one number or (rows, columns); without a box, the point must lie
    within the tolerance of the centroid (an ellipse for two tolerances).
    """
    tr, tc = (tolerance, tolerance) if np.isscalar(tolerance) else tolerance
    if box is not None:
        r0, c0, r1, c1 = box
        return r0 - tr <= point[0] <= r1 + tr and c0 - tc <= point[1] <= c1 + tc
    if centroid is None:
        return False
    return float(np.hypot((point[0] - centroid[0]) / tr, (point[1] - centroid[1]) / tc)) <= 1.0


def binary_mask(path: Path) -> np.ndarray | None:
    """Return the mask if the file holds at most two values (0 and one other), else None."""
    arr = read_file(path).pixel_array
    if arr.ndim == 3:
        arr = arr[..., 0]
    # bincount is linear in pixels, unique sorts them: matters on full-field masks
    small_ints = arr.dtype.kind == "u" and arr.dtype.itemsize <= 2
    values = np.flatnonzero(np.bincount(arr.ravel())) if small_ints else np.unique(arr)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        return None
    return arr > 0


def find_mask(
    candidates: list[Path], image_shape: tuple[int, int]
) -> tuple[Path | None, Path | None, np.ndarray | None]:
    """Among ``candidates`` find the ROI mask and the crop by content.

    File names are not reliable in CBIS-DDSM (crop and mask swapped in a row): the mask
    is the image of the full image's size holding two values.

    Returns
    -------
    mask_path, crop_path, mask
        None where not found.
    """
    mask_path = crop_path = None
    mask = None
    for path in candidates:
        try:
            shape = header_shape(path)
        except DicomError:
            continue
        if shape == image_shape and mask is None:
            try:
                found = binary_mask(path)
            except Exception:  # undecodable candidate: not our mask
                found = None
            if found is not None:
                mask_path, mask = path, found
                continue
        if shape != image_shape and crop_path is None:
            crop_path = path
    return mask_path, crop_path, mask


def load_mask_geometry(path: Path, image_shape: tuple[int, int]) -> RoiGeometry | None:
    """Read a mask named explicitly (manifest) and check it matches its image."""
    mask = read_mask(path)
    if mask.shape != image_shape:
        raise DicomError(path, f"ROI mask is {mask.shape}, its image is {image_shape}")
    return geometry_of(mask)

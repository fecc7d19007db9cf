"""Patient-level splits: every image of a patient lands in the same split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from common.data.records import ImageRecord


def shared_patients(splits: Mapping[str, Iterable[ImageRecord]]) -> dict[str, list[str]]:
    """Return {patient_id: [splits]} for patients found in more than one split (leakage)."""
    where: dict[str, set[str]] = {}
    for name, images in splits.items():
        for im in images:
            where.setdefault(im.patient_id, set()).add(name)
    return {p: sorted(s) for p, s in where.items() if len(s) > 1}


def split_by_patient(
    images: Iterable[ImageRecord],
    fractions: Mapping[str, float],
    seed: int = 0,
    keep_existing: bool = False,
) -> dict[str, list[ImageRecord]]:
    """Assign images to splits by a seeded hash of their patient id.

    The assignment of a patient depends only on its id and the seed, so it is stable
    when patients are added or removed, and no patient is ever in two splits.

    Parameters
    ----------
    fractions : mapping
        Split name → fraction of patients (normalised to sum to 1).
    keep_existing : bool
        Keep images' own ``split`` where set (e.g. the official CBIS-DDSM test set).
    """
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ValueError("fractions must be non-negative and sum to more than 0")
    bounds, acc = [], 0.0
    for name, value in fractions.items():
        acc += value / total
        bounds.append((acc, name))
    out: dict[str, list[ImageRecord]] = {name: [] for name in fractions}
    for im in images:
        if keep_existing and im.split:
            out.setdefault(im.split, []).append(im)
            continue
        digest = hashlib.sha256(f"{seed}|{im.patient_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        name = next((n for b, n in bounds if u < b), bounds[-1][1])
        out[name].append(im)
    return out

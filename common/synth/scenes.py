"""Small scenes the cascade's cluster rules are checked on without a trained detector.

A finding or mimic drawn at the middle of a phantom breast with the film's artifacts,
and the peaks a detector adds beside a calcified vessel's. The tests and
``bench/bench_walls.py`` draw from these, so both judge the same scenes;
:func:`stored_scene` writes one as a unit stores it, for rules whose levels are in the
display range the reading gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.imaging.writing import mammogram_dataset, save
from common.synth.artifacts import film_artifacts
from common.synth.calcs import Cluster, draw_cluster
from common.synth.phantom import render_breast
from common.synth.vendors import Vendor, to_stored

#: The scenes' pixel spacing (mm), the canonical one.
SCENE_SPACING_MM = 0.1


def film_scene(
    rng: np.random.Generator, cluster: Cluster | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return a 70×56 mm phantom breast with ``cluster`` drawn near its middle, and where.

    The breast (``render_breast``, a CC view of random density) gets the film's artifacts
    and grain (``film_artifacts``) after the cluster is drawn (unrotated). Returns the
    image and the cluster's centre (row, column pixels).
    """
    phantom = render_breast((700, 560), "CC", int(rng.integers(1, 5)), rng)
    image = phantom.attenuation.copy()
    centre = np.array([350.0, 250.0]) + rng.uniform(-20, 20, 2)
    if cluster is not None:
        draw_cluster(image, cluster, tuple(centre), SCENE_SPACING_MM)
    film_artifacts(image, phantom.mask, SCENE_SPACING_MM, "LCC", rng)
    return image, centre


def with_rows_beside(points_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a vessel's peaks with those a detector adds: a row beside, and strays.

    A copy 0.4 mm outward (across the points' long axis) of 4 in 10 of them, and 2–5
    points scattered 3 mm about their centre: what keeps a real detector's vessels from
    the line rule's two tracks.
    """
    centred = points_mm - points_mm.mean(axis=0)
    d = np.linalg.svd(centred, full_matrices=False)[2][0]
    normal = np.array([-d[1], d[0]])
    pick = points_mm[rng.uniform(size=len(points_mm)) < 0.4]
    side = np.sign((pick - points_mm.mean(axis=0)) @ normal)[:, None]
    strays = points_mm.mean(axis=0) + rng.normal(0, 3.0, (int(rng.integers(2, 6)), 2))
    return np.concatenate([points_mm, pick + 0.4 * side * normal, strays])


def stored_scene(
    image: np.ndarray,
    inside: np.ndarray,
    vendor: Vendor,
    rng: np.random.Generator,
    path: Path,
    burned: np.ndarray | None = None,
) -> Path:
    """Write the attenuation map ``image`` as ``vendor`` stores it; return the file.

    ``inside`` is the breast (``to_stored``); the film is written without spacing, the
    digital units at ``SCENE_SPACING_MM``. ``burned`` (bool, the image's shape) is burned
    in at the display's white after storage, as a unit or PACS burns in text.
    """
    stored, attributes = to_stored(image, inside, vendor, rng)
    if burned is not None:
        stored[burned] = 0 if vendor.photometric == "MONOCHROME1" else 2**vendor.bits_stored - 1
    dataset = mammogram_dataset(
        stored,
        bits_stored=vendor.bits_stored,
        photometric=vendor.photometric,
        imager_spacing=None if vendor.film else SCENE_SPACING_MM,
        **attributes,
    )
    return save(dataset, path)

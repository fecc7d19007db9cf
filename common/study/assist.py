"""Aided reads of simulated readers, driven by the trained model's own output.

For a synthetic hospital (its readers are simulated, :mod:`common.synth.readers`), the
aided reads of a reader study can come from the **federated model** instead of the
generator's simulated CAD: on each held-out breast the model's marks (a cluster scoring at
least the study's detection threshold) and its malignancy score are what the reader sees
when reading again. The reader's own perception of the breast (what they missed, their
noise) is the one of their unaided read, so the pair is correlated as in a crossover
study; a better model gives better aided reads.

The model's score enters the readers' latent scale as a z-score: its probit, centred and
scaled by the probits of the model's scores on the hospital's non-malignant validation
breasts (never study cases), so a normal breast's aid suspicion is about N(0, 1) like the
simulated CAD's.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.stats import norm

from common.data.marks import Mark
from common.data.records import ImageRecord, ReaderRead
from common.evaluation.images import BreastScore
from common.study.arms import build_cases
from common.synth.readers import Perception, ReaderProfile, aided_read

#: StudyConfig.assistance values
ASSISTANCE = ("recorded", "simulated-model")


def _probit(score: float) -> float:
    return float(norm.ppf(np.clip(score, 1e-4, 1 - 1e-4)))


#: Fewest non-malignant validation breasts to scale the aid on
MIN_SCALE_BREASTS = 5


def aid_scale(validation: dict[tuple, BreastScore]) -> tuple[float, float]:
    """(mean, sd) of the probit model scores of non-malignant validation breasts.

    With fewer than :data:`MIN_SCALE_BREASTS` of them, (0, 1): the aid's latent is then
    the probit of the model's probability itself.
    """
    values = np.array([_probit(s.score) for s in validation.values() if not s.malignant])
    if len(values) < MIN_SCALE_BREASTS:
        return 0.0, 1.0
    return float(values.mean()), float(max(values.std(ddof=1), 1e-3))


def model_assisted_reads(
    reads: list[ReaderRead],
    images: list[ImageRecord],
    scores: dict[tuple, BreastScore],
    profiles: dict[str, ReaderProfile],
    perception: dict[tuple, Perception],
    scale: tuple[float, float],
    detection_threshold: float,
    seed: int,
    names: dict[str, str] | None = None,
) -> list[ReaderRead]:
    """Replace the recorded aided reads by reads simulated from the model's output.

    Parameters
    ----------
    reads : list of ReaderRead
        The hospital's reads (reader ids as released: ``names`` maps a simulated reader's
        own id to it).
    images : list of ImageRecord
        The study's (held-out) images: truth per breast.
    scores : dict
        The model's breast scores on them.

    Returns
    -------
    list
        Unaided reads as they were plus the simulated aided reads.
    """
    names = names or {}
    kept = [r for r in reads if not r.aided]
    unaided = {(r.patient_id, r.exam_id, r.laterality, r.reader_id): r for r in kept}
    cases = build_cases(images, [], scores)
    centres = _finding_centres(images)
    mu, sd = scale
    added = []
    for key, case in sorted(cases.items()):
        if case.model is None:
            continue
        marked = case.model.detection >= detection_threshold
        latent = (_probit(case.model.score) - mu) / sd
        for reader_id, profile in sorted(profiles.items()):
            seen = perception.get((*key, reader_id))
            released = names.get(reader_id, reader_id)
            if seen is None or (*key, released) not in unaided:
                continue
            # one stream per breast and reader: the same read whatever else is in the study
            rng = np.random.default_rng([seed, zlib.crc32("|".join((*key, reader_id)).encode())])
            found: list = []
            birads, suspicion = aided_read(profile, case.truth, seen, marked, latent, rng, found)
            own = unaided[(*key, released)]
            added.append(
                ReaderRead(
                    *key,
                    released,
                    profile.role,
                    birads,
                    suspicion,
                    True,
                    "simulated from the model",
                    _aided_marks(own.marks, found[0], birads, suspicion, centres.get(key, [])),
                )
            )
    return kept + added


def _finding_centres(images: list[ImageRecord]) -> dict[tuple, list[tuple[str, float, float]]]:
    """Per breast, (view, row, col) of each finding's centre on each view (stored pixels)."""
    out: dict[tuple, list] = {}
    for im in images:
        for f in im.findings:
            if f.centroid is not None:
                out.setdefault(im.breast_key, []).append(((im.view or "").upper(), *f.centroid))
    return out


def _aided_marks(own, found: bool, birads: int, suspicion: float, centres: list) -> tuple | None:
    """Return the simulated aided read's marks, by the rule of the generator's reads.

    Seeing the breast's calcifications, the reader marks each finding on each view at its
    centre; seeing none and calling BI-RADS 3 or more, they keep the spots they marked
    unaided, now at the aided suspicion. None where the unaided read recorded no marks.
    """
    if own is None:
        return None
    if found:
        return tuple(Mark(view, row, col, suspicion) for view, row, col in centres)
    if birads < 3:
        return ()
    return tuple(Mark(m.view, m.row, m.col, suspicion) for m in own)

"""Simulated radiologists reading breasts as BI-RADS categories, alone and with a CAD.

A binormal model: each reader sees a latent suspicion that is N(0, 1) for normal breasts,
shifted by ``d_prime`` for malignant ones and by ``benign_shift`` for benign findings.
A lesion is missed outright (read as if normal) with a probability that grows for subtle
lesions and dense breasts. Thresholds on the latent value give BI-RADS 1–5.

Aided reads: a simulated CAD (:class:`CadProfile`) marks a calcified breast with
probability ``sensitivity`` and gives its own binormal suspicion. With the CAD the reader
looks again at a lesion they missed when it is marked (``recovery``) and blends the CAD's
suspicion into their own with weight ``reliance`` (same noise draw as the unaided read,
so the pair is correlated like a real crossover study). Juniors miss more and rely more,
so they gain more — the structure of multicentre reader-assist results; a marked
calcification is reported (BI-RADS >= 2) with probability ``recovery``, so the aid lowers
the miss rate of benign calcifications most.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy.special import ndtr

ROLES = ("senior", "junior")
#: Each simulated reader's unaided perception of each breast, beside the reads
PERCEPTION_NAME = "simulated_readers.csv"
PERCEPTION_COLUMNS = ("patient_id", "exam_id", "laterality", "reader_id", "missed", "noise")


@dataclass(frozen=True)
class ReaderProfile:
    """Skill of one simulated reader.

    Attributes
    ----------
    d_prime : float
        Separation of malignant from normal latent suspicion (binormal d').
    benign_shift : float
        Latent shift of benign findings (they look a little suspicious).
    miss_base : float
        Probability of missing an obvious lesion in a fatty breast.
    miss_per_subtlety : float
        Added miss probability per subtlety step below 5.
    miss_per_density : float
        Added miss probability per density category above A.
    thresholds : tuple of float
        Latent cut-offs between BI-RADS 1|2|3|4|5.
    recovery : float
        Probability that a missed lesion is found when the CAD marks it.
    reliance : float
        Weight of the CAD's suspicion in an aided read (0: ignores it).
    """

    reader_id: str
    role: str
    d_prime: float
    benign_shift: float
    miss_base: float
    miss_per_subtlety: float
    miss_per_density: float
    thresholds: tuple[float, float, float, float] = (0.0, 0.8, 1.4, 2.2)
    recovery: float = 0.6
    reliance: float = 0.25

    def __post_init__(self) -> None:
        """Validate the profile."""
        if not self.reader_id:
            raise ValueError("a reader needs a reader_id")
        if self.role not in ROLES:
            raise ValueError(f"reader {self.reader_id}: role must be one of {ROLES}")
        for name in ("miss_base", "recovery", "reliance"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"reader {self.reader_id}: {name} must be in [0, 1]")
        if list(self.thresholds) != sorted(self.thresholds) or len(self.thresholds) != 4:
            raise ValueError(f"reader {self.reader_id}: need 4 increasing thresholds")

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ReaderProfile:
        """Inverse of :meth:`to_dict` (missing skill fields take the junior defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown reader profile field(s): {', '.join(unknown)}")
        d = dict(d)
        if "thresholds" in d:
            d["thresholds"] = tuple(float(t) for t in d["thresholds"])
        return cls(**d)

    def miss_probability(self, subtlety: int | None, density: int | None) -> float:
        """Return the probability that this reader misses a lesion outright."""
        s = 5 - int(subtlety or 3)
        d = int(density or 2) - 1
        return float(
            np.clip(
                self.miss_base + self.miss_per_subtlety * s + self.miss_per_density * d, 0.0, 0.95
            )
        )


@dataclass(frozen=True)
class CadProfile:
    """A simulated detection/diagnosis aid the readers use in aided reads.

    Attributes
    ----------
    sensitivity : float
        Probability that a calcified breast is marked.
    d_prime, benign_shift : float
        Binormal suspicion of a marked malignant / benign lesion.
    """

    sensitivity: float = 0.92
    d_prime: float = 2.6
    benign_shift: float = 0.3

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


SENIOR = ReaderProfile(
    "senior-1", "senior", 2.4, 0.9, 0.03, 0.04, 0.03, recovery=0.5, reliance=0.15
)
JUNIOR = ReaderProfile(
    "junior-1", "junior", 1.5, 1.1, 0.08, 0.07, 0.05, recovery=0.75, reliance=0.35
)
JUNIOR_2 = ReaderProfile(
    "junior-2", "junior", 1.6, 1.1, 0.07, 0.07, 0.05, recovery=0.75, reliance=0.35
)
DEFAULT_READERS = (SENIOR, JUNIOR, JUNIOR_2)
DEFAULT_CAD = CadProfile()


def load_profiles(path: str | Path) -> tuple[ReaderProfile, ...]:
    """Read reader profiles from a JSON list of objects (see :class:`ReaderProfile`)."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read reader profiles: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path}: expected a non-empty JSON list of reader profiles")
    try:
        profiles = tuple(ReaderProfile.from_dict(d) for d in items)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    ids = [p.reader_id for p in profiles]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: reader ids must be unique")
    return profiles


def _birads(profile: ReaderProfile, latent: float) -> tuple[int, float]:
    birads = 1 + int(np.searchsorted(profile.thresholds, latent))
    suspicion = float(np.round(100 * ndtr(latent - profile.d_prime / 2), 1))
    return birads, suspicion


@dataclass(frozen=True)
class Perception:
    """What a simulated reader saw on a breast when reading it alone.

    Attributes
    ----------
    missed : bool
        The lesion was missed outright (read as if normal).
    noise : float
        The reader's N(0, 1) perception noise on this breast (shared by the aided read).
    """

    missed: bool
    noise: float


def perceive(
    profile: ReaderProfile,
    truth: str,
    subtlety: int | None,
    density: int | None,
    rng: np.random.Generator,
) -> Perception:
    """Draw a reader's unaided perception of one breast."""
    missed = truth != "normal" and rng.uniform() < profile.miss_probability(subtlety, density)
    return Perception(bool(missed), float(rng.standard_normal()))


def _shift(profile: ReaderProfile, truth: str) -> float:
    return {"normal": 0.0, "benign": profile.benign_shift, "malignant": profile.d_prime}[truth]


def unaided_read(profile: ReaderProfile, truth: str, seen: Perception) -> tuple[int, float]:
    """(BI-RADS 1–5, suspicion 0–100) of the unaided read."""
    return _birads(profile, (0.0 if seen.missed else _shift(profile, truth)) + seen.noise)


def aided_read(
    profile: ReaderProfile,
    truth: str,
    seen: Perception,
    marked: bool,
    aid_latent: float,
    rng: np.random.Generator,
    found_out: list | None = None,
) -> tuple[int, float]:
    """Read a breast again with an aid that marks it (or not) and gives its suspicion.

    Parameters
    ----------
    marked : bool
        The aid marks something in the breast.
    aid_latent : float
        The aid's suspicion on the readers' latent scale (about N(0, 1) on normal breasts).
    """
    recovered = seen.missed and marked and rng.uniform() < profile.recovery
    if found_out is not None:  # whether the reader saw the breast's calcifications
        found_out.append(truth != "normal" and (not seen.missed or bool(recovered)))
    own = (0.0 if seen.missed and not recovered else _shift(profile, truth)) + seen.noise
    w = profile.reliance
    # keep a normal breast's latent N(0, 1)-like so the BI-RADS cut-offs keep their meaning
    blended = ((1 - w) * own + w * aid_latent) / np.hypot(1 - w, w)
    aided = _birads(profile, blended)
    if marked and truth != "normal" and aided[0] == 1 and rng.uniform() < profile.recovery:
        # a marked calcification the reader would have called normal is at least reported
        aided = (2, aided[1])
    return aided


def read_breast(
    profile: ReaderProfile,
    truth: str,
    subtlety: int | None,
    density: int | None,
    rng: np.random.Generator,
    cad: CadProfile | None = None,
    seen_out: list | None = None,
    found_out: list | None = None,
) -> tuple[tuple[int, float], tuple[int, float] | None]:
    """Read one breast alone and (with ``cad``) aided by the simulated CAD.

    Parameters
    ----------
    truth : {"normal", "benign", "malignant"}
        What the breast holds.
    seen_out : list, optional
        Receives the reader's :class:`Perception` (kept so that aids other than the CAD,
        such as a trained model, can be simulated on the same reads later).
    found_out : list, optional
        Receives whether the reader saw the breast's calcifications, unaided and (with
        ``cad``) aided: where their marks go.

    Returns
    -------
    unaided, aided : tuple
        (BI-RADS 1–5, suspicion 0–100); ``aided`` is None without a CAD.
    """
    seen = perceive(profile, truth, subtlety, density, rng)
    if seen_out is not None:
        seen_out.append(seen)
    unaided = unaided_read(profile, truth, seen)
    if found_out is not None:
        found_out.append(truth != "normal" and not seen.missed)
    if cad is None:
        return unaided, None
    marked = truth != "normal" and rng.uniform() < cad.sensitivity
    cad_shift = {"normal": 0.0, "benign": cad.benign_shift, "malignant": cad.d_prime}[truth]
    cad_latent = (cad_shift if marked else 0.0) + rng.standard_normal()
    return unaided, aided_read(profile, truth, seen, marked, cad_latent, rng, found_out)


def load_simulated_readers(
    folder: str | Path,
) -> tuple[dict[str, ReaderProfile], dict[tuple, Perception]] | None:
    """Load the simulated readers of a synthetic hospital folder (None for real readers).

    Returns
    -------
    (dict, dict) or None
        Reader id → profile (from ``synth.json``), and (patient, exam, laterality,
        reader) → :class:`Perception` (from :data:`PERCEPTION_NAME`).
    """
    folder = Path(folder)
    info, table = folder / "synth.json", folder / PERCEPTION_NAME
    if not (info.is_file() and table.is_file()):
        return None
    try:
        profiles = {
            p.reader_id: p
            for p in (ReaderProfile.from_dict(d) for d in json.loads(info.read_text())["readers"])
        }
        seen = {}
        with table.open(newline="") as fh:
            for row in csv.DictReader(fh):
                key = (row["patient_id"], row["exam_id"], row["laterality"], row["reader_id"])
                seen[key] = Perception(row["missed"] == "1", float(row["noise"]))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{folder}: cannot read the simulated readers: {exc}") from exc
    return profiles, seen

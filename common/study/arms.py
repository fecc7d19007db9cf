"""Reader-assist study: reading arms, a hospital's cases, and their summable statistics.

A *case* is a breast: its truth (normal, benign or malignant calcifications), its strata
(pathology, BI-RADS density, calcification type) and everything read on it — each
reader's BI-RADS alone and aided, and the model's scores. An *arm* turns a case into a
score (for ROC), a recall call (BI-RADS >= ``recall_from``, or the model above its
operating point) and "anything reported" (for detection miss rates):

- ``senior-1`` — one reader, unaided; ``junior-1:aided`` — the same with the model's help
  (reads recorded with ``aided`` = yes);
- ``senior-1+junior-1`` — double reading: recall if either recalls (rule ``max``) or only
  if both do (rule ``min``); ``junior-1+junior-2@senior-1`` — double reading with
  arbitration: where the two disagree on recall, the arbiter's read decides;
- ``model`` — the cascade alone;
- ``junior-1+model`` — the model as second reader: recall if either flags. Its score is the
  reader's, raised to the recall level when the model flags, so its ROC and its call agree.

:func:`study_stats` computes, per stratum, :class:`~common.study.stats.ArmStats` for each arm
and :class:`~common.study.stats.PairStats` for each comparison — counts only, which sum
across hospitals (:class:`StudyStats`). :meth:`StudyStats.release` applies a hospital's
minimum cell size. Per-case values never leave this module's caller.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.data.records import ImageRecord, ReaderRead
from common.evaluation.images import BreastScore
from common.evaluation.metrics import DEFAULT_BINS, RocStats
from common.study.localisation import BreastViews, breast_views, localise
from common.study.panel import PanelStats
from common.study.stats import ArmStats, PairStats

#: BI-RADS 0 (incomplete: needs more imaging) ranks between 3 and 4: it is a recall
BIRADS_RANK = {1: 1.0, 2: 2.0, 3: 3.0, 0: 3.5, 4: 4.0, 5: 5.0, 6: 6.0}
DENSITY = {1: "A", 2: "B", 3: "C", 4: "D"}
STRATA = ("pathology", "density", "calc_type")
RULES = ("max", "min")


def birads_score(birads: int) -> float:
    """BI-RADS as an ordinal score in [0, 1] (for ROC analysis)."""
    return BIRADS_RANK[int(birads)] / 6.0


@dataclass(frozen=True)
class Arm:
    """One way of reading: readers (alone or in consensus), the model, or both.

    Attributes
    ----------
    readers : tuple of str
        Reader ids.
    aided : bool
        Use the readers' model-aided reads.
    model : bool
        Include the model (alone, or as second reader).
    arbiter : str or None
        Reader whose read decides where the two readers disagree on recall.
    """

    name: str
    readers: tuple[str, ...] = ()
    aided: bool = False
    model: bool = False
    arbiter: str | None = None

    @property
    def reader_ids(self) -> tuple[str, ...]:
        """Every reader whose reads the arm needs (arbiter included)."""
        return self.readers + ((self.arbiter,) if self.arbiter else ())

    @classmethod
    def parse(cls, text: str) -> Arm:
        """Parse ``reader[+reader...][:aided][@arbiter][+model]`` or ``model``."""
        name = text.strip()
        body, at, arbiter = name.partition("@")
        arbiter = arbiter.strip()
        if at:
            arbiter, plus, rest = arbiter.partition("+")
            if plus and rest.strip() != "model" or not arbiter.strip():
                raise ValueError(f"arm '{text}': '@' is followed by one reader (then '+model')")
            body += "+model" if plus else ""
            arbiter = arbiter.strip().partition(":")[0]
        tokens = [t.strip() for t in body.split("+")]
        if not name or any(not t for t in tokens):
            raise ValueError(f"arm '{text}': empty reader in the arm")
        model = "model" in tokens
        readers, aided = [], set()
        for t in tokens:
            if t == "model":
                continue
            reader, _, suffix = t.partition(":")
            if suffix not in ("", "aided"):
                raise ValueError(f"arm '{text}': ':{suffix}' is not ':aided'")
            readers.append(reader)
            aided.add(suffix == "aided")
        if len(aided) > 1:
            raise ValueError(f"arm '{text}': mix of aided and unaided reads")
        if len(set(readers)) != len(readers) or tokens.count("model") > 1 or arbiter in readers:
            raise ValueError(f"arm '{text}': a reader or the model appears twice")
        if at and len(readers) != 2:
            raise ValueError(f"arm '{text}': arbitration needs exactly two readers")
        return cls(name, tuple(readers), aided == {True}, model, arbiter or None)


@dataclass(frozen=True)
class StudyConfig:
    """What a reader study compares and how calls are made.

    Attributes
    ----------
    arms : tuple of str
        Arm definitions (see :meth:`Arm.parse`); empty: :func:`default_arms` of the data.
    comparisons : tuple of str
        ``"A vs B"`` pairs; empty: :func:`default_comparisons`.
    recall_from : int
        A BI-RADS at or above this (and BI-RADS 0) is a recall.
    reader_score : str
        ROC score of a read: ``birads`` (ordinal) or ``suspicion`` (0–100, where present).
    consensus : str
        Double reading: ``max`` (either recalls) or ``min`` (both must).
    model_threshold : float or None
        The model's operating point; None: chosen on validation cases for
        ``target_sensitivity``.
    detection_threshold : float
        A breast counts as "reported" by the model when a cluster scores at least this.
    min_cell : int
        A stratum with fewer cases (or malignant, benign, other breasts) than this, but
        more than none, is withheld from what a hospital releases.
    unit : str
        ``breast`` (default) or ``exam``: an exam is recalled when either breast is, its
        truth is its worse breast's, and its scores are the breasts' maxima.
    assistance : str
        ``recorded`` (the aided reads as the hospital has them) or ``simulated-model``
        (simulated readers only: aided reads simulated from the federated model's own
        marks and scores on each breast, :mod:`common.study.assist`).
    """

    arms: tuple[str, ...] = ()
    comparisons: tuple[str, ...] = ()
    recall_from: int = 4
    reader_score: str = "birads"
    consensus: str = "max"
    model_threshold: float | None = None
    target_sensitivity: float = 0.9
    detection_threshold: float = 0.5
    strata: tuple[str, ...] = STRATA
    bins: int = DEFAULT_BINS
    min_cell: int = 0
    unit: str = "breast"
    assistance: str = "recorded"

    def __post_init__(self) -> None:
        """Validate the configuration (errors name the setting)."""
        if self.assistance not in ("recorded", "simulated-model"):
            raise ValueError("assistance must be 'recorded' or 'simulated-model'")
        if self.recall_from not in (2, 3, 4, 5):
            raise ValueError("recall_from must be a BI-RADS category 2–5")
        if self.reader_score not in ("birads", "suspicion"):
            raise ValueError("reader_score must be 'birads' or 'suspicion'")
        if self.unit not in ("breast", "exam"):
            raise ValueError("unit must be 'breast' or 'exam'")
        if self.consensus not in RULES:
            raise ValueError(f"consensus must be one of {RULES}")
        unknown = sorted(set(self.strata) - set(STRATA))
        if unknown:
            raise ValueError(f"unknown strata {unknown}; choose from {STRATA}")
        if not 0 < self.target_sensitivity <= 1:
            raise ValueError("target_sensitivity must be in (0, 1]")
        for text in self.arms:
            Arm.parse(text)
        for text in self.comparisons:
            _pair(text)

    def to_json(self) -> str:
        """Serialise (to travel in a message or sit in a report)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StudyConfig:
        """Inverse of :meth:`to_json`; unknown keys are refused."""
        d = json.loads(text)
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown study setting(s): {', '.join(unknown)}")
        for key in ("arms", "comparisons", "strata"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> StudyConfig:
        """Read a study JSON file; errors name the file."""
        path = Path(path)
        try:
            return cls.from_json(path.read_text())
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def recall_cut(self) -> float:
        """Return the BI-RADS score at and above which a read is a recall."""
        return (BIRADS_RANK[self.recall_from] - 0.5) / 6.0


def _pair(text: str) -> tuple[str, str]:
    a, sep, b = text.partition(" vs ")
    if not sep or not a.strip() or not b.strip():
        raise ValueError(f"comparison '{text}' is not 'ARM vs ARM'")
    return a.strip(), b.strip()


def default_arms(readers: dict[str, str], aided: set[str], model: bool = True) -> list[str]:
    """Return the paper's arms for the readers present: alone, aided, pairs, with the model.

    Parameters
    ----------
    readers : dict
        Reader id → role.
    aided : set of str
        Readers who also have aided reads.
    """
    seniors = sorted(r for r, role in readers.items() if role == "senior")
    juniors = sorted(r for r, role in readers.items() if role == "junior")
    ordered = seniors + juniors
    arms = ["model"] if model else []
    for r in ordered:
        arms.append(r)
        if r in aided:
            arms.append(f"{r}:aided")
        if model:
            arms.append(f"{r}+model")
    pairs = [(s, j) for s in seniors[:1] for j in juniors[:1]]
    if len(juniors) >= 2:
        pairs.append((juniors[0], juniors[1]))
    for a, b in pairs:
        arms.append(f"{a}+{b}")
        if (a, b) == tuple(juniors[:2]) and seniors:
            arms.append(f"{a}+{b}@{seniors[0]}")  # discordant calls go to the senior
        if a in aided and b in aided:
            arms.append(f"{a}:aided+{b}:aided")
        if model:
            arms.append(f"{a}+{b}+model")
    return arms


def default_comparisons(arms: list[str]) -> list[str]:
    """Each reading against its model-aided and model-as-second-reader versions."""
    out = []
    for name in arms:
        arm = Arm.parse(name)
        if arm.model or arm.aided or not arm.readers:
            continue
        aided = "+".join(f"{r}:aided" for r in arm.readers) + (
            f"@{arm.arbiter}" if arm.arbiter else ""
        )
        for other in (aided, f"{name}+model"):
            if other in arms:
                out.append(f"{name} vs {other}")
        if "model" in arms and len(arm.readers) == 1:
            out.append(f"model vs {name}")
    return out


# --- cases --------------------------------------------------------------------------------


@dataclass
class Case:
    """One breast of the study (local to its hospital)."""

    truth: str
    strata: dict[str, str]
    reads: dict[tuple[str, bool], ReaderRead] = field(default_factory=dict)
    model: BreastScore | None = None
    #: the findings of its views, for localising readers' marks (None: not known)
    views: BreastViews | None = None

    @property
    def malignant(self) -> bool:
        """Malignant calcifications in this breast."""
        return self.truth == "malignant"

    @property
    def calcified(self) -> bool:
        """Any calcification finding in this breast."""
        return self.truth != "normal"


def build_cases(
    images: list[ImageRecord],
    reads: list[ReaderRead],
    model: dict[tuple, BreastScore] | None = None,
    spacing: Callable[[ImageRecord], tuple[float, float]] | None = None,
) -> dict[tuple, Case]:
    """Gather the study's breasts: truth and strata from the images, reads, model scores.

    With ``spacing`` (an image's stored pixel spacing in mm) and reads carrying marks, each
    breast also keeps its views' findings, so that the marks can be localised on them.

    Returns
    -------
    dict
        (patient, exam, laterality) → :class:`Case`, for every breast among ``images``.
    """
    cases: dict[tuple, Case] = {}
    findings: dict[tuple, list] = {}
    for im in images:
        key = im.breast_key
        if key not in cases:
            cases[key] = Case("normal", {"density": DENSITY.get(im.density, "unknown")})
            findings[key] = []
        findings[key].extend(im.findings)
        if im.label == "malignant" or (im.label == "benign" and cases[key].truth == "normal"):
            cases[key].truth = im.label
    for key, case in cases.items():
        case.strata["pathology"] = case.truth
        # the type of the finding that makes the breast's truth (its malignant one first)
        wanted = "malignant" if case.malignant else None
        types = [
            t.upper()
            for f in findings[key]
            if wanted is None or f.pathology == wanted
            for t in f.calc_types
        ]
        case.strata["calc_type"] = (
            types[0] if types else ("none" if case.truth == "normal" else "unknown")
        )
    for read in reads:
        case = cases.get((read.patient_id, read.exam_id, read.laterality))
        if case is not None:
            case.reads[(read.reader_id, read.aided)] = read
    for key, score in (model or {}).items():
        if key in cases:
            cases[key].model = score
    if spacing is not None and any(r.marks is not None for r in reads):
        # only reads with marks need the views (reading each image's spacing)
        for key, views in breast_views(images, spacing).items():
            cases[key].views = views
    return cases


_TRUTH_ORDER = ("normal", "benign", "malignant")


def exam_cases(breasts: dict[tuple, Case]) -> dict[tuple, Case]:
    """Merge breast cases into exam cases (screening recall is per exam).

    Truth and strata are the worse breast's (density: the denser); a reader's exam read is
    the more suspicious of their breast reads, and exists only when they read every breast;
    the model's scores are the maxima.
    """
    groups: dict[tuple, list[Case]] = {}
    for (patient, exam, _), case in breasts.items():
        groups.setdefault((patient, exam), []).append(case)
    out = {}
    for key, group in groups.items():
        worst = max(group, key=lambda c: _TRUTH_ORDER.index(c.truth))
        strata = dict(worst.strata)
        densities = [c.strata.get("density", "unknown") for c in group]
        known = [d for d in densities if d != "unknown"]
        strata["density"] = max(known) if known else "unknown"
        reads = {}
        for read_key in set.intersection(*(set(c.reads) for c in group)):
            reads[read_key] = max(
                (c.reads[read_key] for c in group), key=lambda r: BIRADS_RANK[r.birads]
            )
        models = [c.model for c in group]
        model = None
        if all(m is not None for m in models):
            model = BreastScore(
                max(m.score for m in models),
                max(m.detection for m in models),
                any(m.malignant for m in models),
            )
        out[key] = Case(worst.truth, strata, reads, model)
    return out


def site_arms(cases: dict[tuple, Case], config: StudyConfig) -> tuple[list[Arm], list[str]]:
    """Arms this hospital can read, and the configured arms it cannot (with the reason)."""
    present = {k for c in cases.values() for k in c.reads}
    roles = {k[0]: r.role for c in cases.values() for k, r in c.reads.items()}
    has_model = any(c.model is not None for c in cases.values())
    names = list(config.arms) or default_arms(
        roles, {r for r, aided in present if aided}, has_model
    )
    arms, missing = [], []
    for name in names:
        arm = Arm.parse(name)
        lacking = [r for r in arm.reader_ids if (r, arm.aided) not in present]
        if arm.model and not has_model:
            lacking.append("model")
        if lacking:
            missing.append(f"{name} (no reads by {', '.join(lacking)})")
        else:
            arms.append(arm)
    return arms, missing


class ArmReader:
    """Turn cases into one arm's scores, calls and "reported" flags."""

    def __init__(self, config: StudyConfig, model_threshold: float) -> None:
        self.config = config
        self.threshold = model_threshold
        self.cut = config.recall_cut()

    def _read(self, read: ReaderRead) -> tuple[float, bool, bool]:
        if self.config.reader_score == "suspicion":
            if read.suspicion is None:
                raise ValueError("no suspicion score")
            score = read.suspicion / 100.0
        else:
            score = birads_score(read.birads)
        call = BIRADS_RANK[read.birads] >= BIRADS_RANK[self.config.recall_from] - 0.5
        return score, call, read.birads != 1

    def outputs(self, arm: Arm, case: Case) -> tuple[float, bool, bool] | None:
        """(score, recall call, anything reported) or None when a read is missing."""
        parts = []
        for reader in arm.readers:
            read = case.reads.get((reader, arm.aided))
            if read is None:
                return None
            try:
                parts.append(self._read(read))
            except ValueError:
                return None
        model = None
        if arm.model:
            if case.model is None:
                return None
            m = case.model
            model = (
                m.score,
                m.score >= self.threshold,
                m.detection >= self.config.detection_threshold,
            )
        if not parts:
            return model
        scores, calls, reported = zip(*parts, strict=True)
        if arm.arbiter:
            read = case.reads.get((arm.arbiter, arm.aided))
            if read is None:
                return None
            if calls[0] == calls[1]:
                score, call, seen = max(scores), calls[0], any(reported)
            else:
                try:
                    score, call, seen = self._read(read)
                except ValueError:
                    return None
        else:
            pick = max if self.config.consensus == "max" else min
            combine = any if self.config.consensus == "max" else all
            score, call, seen = pick(scores), combine(calls), combine(reported)
        if model is None:
            return score, call, seen
        # second reader: recall if either flags; the model's flag lifts the score to recall
        return (max(score, self.cut) if model[1] else score, call or model[1], seen or model[2])


@dataclass
class StudyStats:
    """Summable statistics of a reader study, per stratum.

    Attributes
    ----------
    strata : dict
        ``"all"`` or ``"<stratum>=<value>"`` → {"cases": int, "arms": {name: ArmStats},
        "pairs": {"A vs B": PairStats}}.
    excluded : Counter
        Breasts left out and why (e.g. missing reads), counts only.
    panels : dict
        Reader panel name (e.g. ``"junior: unaided vs aided"``) → one
        :class:`~common.study.panel.PanelStats` per hospital, all cases: the random-reader
        (MRMC) analysis. Adding two studies puts their hospitals' panels side by side; a
        hospital's readers are its own and are never matched with another's.
    provenance : dict
        Where the reads come from: ``readers`` (``recorded`` or ``simulated``) and
        ``assistance`` (``recorded``, ``simulated CAD`` or ``simulated from the model``).
    """

    bins: int = DEFAULT_BINS
    strata: dict[str, dict] = field(default_factory=dict)
    excluded: Counter = field(default_factory=Counter)
    withheld: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    panels: dict[str, list[PanelStats]] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)

    def __add__(self, other: StudyStats) -> StudyStats:
        if self.bins != other.bins:
            raise ValueError("cannot add study statistics with different binning")
        panels = {k: list(v) for k, v in self.panels.items()}
        for name, items in other.panels.items():
            panels.setdefault(name, []).extend(items)
        provenance = dict(self.provenance)
        for key, value in other.provenance.items():
            if provenance.get(key, value) != value:
                value = "mixed"
            provenance[key] = value
        out = StudyStats(
            self.bins,
            {},
            self.excluded + other.excluded,
            sorted(set(self.withheld) | set(other.withheld)),
            sorted(set(self.unavailable) | set(other.unavailable)),
            panels,
            provenance,
        )
        for name in list(self.strata) + [s for s in other.strata if s not in self.strata]:
            a = self.strata.get(name, _EMPTY)
            b = other.strata.get(name, _EMPTY)
            out.strata[name] = {
                "cases": a["cases"] + b["cases"],
                "classes": _add_counts(a.get("classes", {}), b.get("classes", {})),
                "arms": _merge(a["arms"], b["arms"]),
                "pairs": _merge(a["pairs"], b["pairs"]),
            }
        return out

    def release(self, min_cell: int) -> StudyStats:
        """Withhold strata with fewer than ``min_cell`` breasts of any class (not none).

        Complementary suppression: a stratum's siblings (the other values of its factor)
        add up to ``all``, so withholding one value alone would be undone by
        subtraction. When any value of a factor is withheld, the whole factor is; when
        ``all`` is, everything is.
        """
        if min_cell <= 1:
            return self

        def small(s: dict) -> bool:
            return any(0 < c < min_cell for c in [s["cases"], *s.get("classes", {}).values()])

        primary = {name for name, s in self.strata.items() if small(s)}
        factors = {name.partition("=")[0] for name in primary if "=" in name}
        withheld = {
            name
            for name in self.strata
            if name in primary or "all" in primary or name.partition("=")[0] in factors
        }
        kept = {n: s for n, s in self.strata.items() if n not in withheld}
        panels = {}
        for name, items in self.panels.items():
            # a panel covers all cases: it goes when "all" does, or when a class is small
            if "all" in withheld or any(p.small(min_cell) for p in items):
                withheld.add(f"panel {name}")
            else:
                panels[name] = items
        return StudyStats(
            self.bins,
            kept,
            self.excluded,
            sorted(set(self.withheld) | withheld),
            self.unavailable,
            panels,
            self.provenance,
        )

    def to_dict(self) -> dict:
        """JSON-ready counts."""
        return {
            "bins": self.bins,
            "excluded": dict(self.excluded),
            "withheld": self.withheld,
            "unavailable": self.unavailable,
            "provenance": dict(self.provenance),
            "panels": {k: [p.to_dict() for p in v] for k, v in self.panels.items()},
            "strata": {
                name: {
                    "cases": s["cases"],
                    "classes": dict(s.get("classes", {})),
                    "arms": {a: v.to_dict() for a, v in s["arms"].items()},
                    "pairs": {p: v.to_dict() for p, v in s["pairs"].items()},
                }
                for name, s in self.strata.items()
            },
        }

    @classmethod
    def from_dict(cls, d: dict) -> StudyStats:
        """Inverse of :meth:`to_dict`."""
        strata = {
            name: {
                "cases": int(s["cases"]),
                "classes": {k: int(v) for k, v in s.get("classes", {}).items()},
                "arms": {a: ArmStats.from_dict(v) for a, v in s["arms"].items()},
                "pairs": {p: PairStats.from_dict(v) for p, v in s["pairs"].items()},
            }
            for name, s in d["strata"].items()
        }
        return cls(
            int(d["bins"]),
            strata,
            Counter(d.get("excluded", {})),
            list(d.get("withheld", [])),
            list(d.get("unavailable", [])),
            {k: [PanelStats.from_dict(p) for p in v] for k, v in d.get("panels", {}).items()},
            dict(d.get("provenance", {})),
        )

    def summary(self) -> dict:
        """Per stratum: each arm's rates and AUC with CIs; each comparison's tests."""
        out = {}
        for name, s in self.strata.items():
            out[name] = {
                "cases": s["cases"],
                "classes": dict(s.get("classes", {})),
                "arms": {a: v.summary() for a, v in s["arms"].items()},
                "comparisons": {p: v.summary() for p, v in s["pairs"].items()},
            }
        return out


_EMPTY = {"cases": 0, "classes": {}, "arms": {}, "pairs": {}}


def _add_counts(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k] + v if k in out else v
    return out


#: Panels of the random-reader analysis: name → (modality names, arm suffixes)
PANELS = {
    "unaided vs aided": (("unaided", "aided"), ("", ":aided")),
    "alone vs with the model": (("alone", "with model"), ("", "+model")),
}


def reader_panels(
    arms: list[str], roles: dict[str, str], scores: np.ndarray, malignant: np.ndarray, bins: int
) -> list[tuple[str, PanelStats]]:
    """Per role, the panel of its readers who read both ways (e.g. unaided and aided).

    Parameters
    ----------
    arms : list of str
        Arm names, in the order of ``scores``' second axis.
    roles : dict
        Reader id → role.
    scores : numpy.ndarray
        (cases, arms) scores.
    """
    index = {a: i for i, a in enumerate(arms)}
    out = []
    for role in sorted(set(roles.values())):
        readers = sorted(r for r, x in roles.items() if x == role)
        for kind, (modalities, suffixes) in PANELS.items():
            panel = [r for r in readers if all(f"{r}{s}" in index for s in suffixes)]
            if not panel:
                continue
            cols = [[index[f"{r}{s}"] for r in panel] for s in suffixes]
            ratings = np.stack([scores[:, c].T for c in cols])  # (modalities, readers, cases)
            out.append(
                (
                    f"{role}: {kind}",
                    PanelStats.from_cases(ratings, malignant, modalities, tuple(panel), bins),
                )
            )
    return out


def wafroc_panels(
    cases: list[Case], roles: dict[str, str], bins: int
) -> tuple[list[tuple[str, PanelStats]], list[str]]:
    """Per role, the wAFROC panel (unaided vs aided) of its readers whose reads carry marks.

    Lesions are the malignant findings; a breast without one is non-diseased and rated
    by its highest mark (:mod:`common.study.localisation`). Ratings are suspicion / 100.
    Cases built without their views' findings (:func:`build_cases` without ``spacing``)
    have nothing to localise marks on: no panel.

    Returns
    -------
    panels : list
        (name, :class:`PanelStats`) per role with marks.
    unavailable : list of str
        Why a reader or a role with marks has no panel.
    """
    out, unavailable = [], []
    flags = (False, True)

    def marked(case: Case, reader: str, aided: bool) -> bool:
        read = case.reads.get((reader, aided))
        return read is not None and read.marks is not None

    for role in sorted(set(roles.values())):
        readers = sorted(r for r, x in roles.items() if x == role)
        with_marks = [r for r in readers if any(marked(c, r, a) for c in cases for a in flags)]
        if not with_marks or any(c.views is None for c in cases):
            continue
        name = f"{role}: unaided vs aided (wAFROC)"
        panel = [r for r in with_marks if all(marked(c, r, a) for c in cases for a in flags)]
        for r in sorted(set(with_marks) - set(panel)):
            unavailable.append(f"{name}: {r} has reads without marks")
        if not panel:
            continue
        fp, lesions = [], []
        for c in cases:
            reads = [[localise(c.reads[(r, a)].marks, c.views) for r in panel] for a in flags]
            ids = c.views.lesions
            if c.malignant and ids:
                lesions.append(
                    np.array([[[m.lesions[i] for i in ids] for m in row] for row in reads]) / 100
                )
            elif not c.malignant:
                fp.append([[m.non_lesion for m in row] for row in reads])
        if not fp or not lesions:
            unavailable.append(f"{name}: needs both diseased and non-diseased breasts")
            continue
        fp_array = np.transpose(np.array(fp, dtype=np.float64), (1, 2, 0)) / 100
        out.append(
            (
                name,
                PanelStats.from_marks(fp_array, lesions, ("unaided", "aided"), tuple(panel), bins),
            )
        )
    return out, unavailable


def model_threshold(validation: RocStats, config: StudyConfig) -> float:
    """Return the model's operating point: given, or the highest reaching the target."""
    if config.model_threshold is not None:
        return float(config.model_threshold)
    if validation.n_pos == 0:
        raise ValueError(
            "no malignant validation breast to choose the model's operating "
            "point; give model_threshold"
        )
    return validation.threshold_for_sensitivity(config.target_sensitivity)


def study_stats(
    cases: dict[tuple, Case],
    config: StudyConfig,
    threshold: float,
) -> StudyStats:
    """Compute a hospital's study statistics (before its release policy).

    Every breast read by all of the site's arms enters, in every stratum it belongs to;
    breasts lacking a read are counted in ``excluded``, never silently dropped.
    """
    if config.unit == "exam":
        cases = exam_cases(cases)
    arms, unavailable = site_arms(cases, config)
    names = [a.name for a in arms]
    comparisons = list(config.comparisons) or default_comparisons(names)
    pairs = [(text, *_pair(text)) for text in comparisons]
    pairs = [(t, a, b) for t, a, b in pairs if a in names and b in names]
    reader = ArmReader(config, threshold)
    excluded: Counter = Counter()
    rows, kept = [], []
    for case in cases.values():
        outs = [reader.outputs(arm, case) for arm in arms]
        if any(o is None for o in outs):
            missing = [arm.name for arm, o in zip(arms, outs, strict=True) if o is None]
            excluded[f"missing read for {missing[0]}"] += 1
            continue
        rows.append(outs)
        kept.append(case)
    stats = StudyStats(config.bins, {}, excluded, [], unavailable)
    if not kept:
        return stats
    table = np.asarray(rows, dtype=np.float64)  # (cases, arms, 3)
    malignant = np.array([c.malignant for c in kept])
    roles = {k[0]: r.role for c in kept for k, r in c.reads.items()}
    stats.panels = {
        name: [panel]
        for name, panel in reader_panels(names, roles, table[:, :, 0], malignant, config.bins)
    }
    marked, why = wafroc_panels(kept, roles, config.bins)
    stats.panels.update({name: [panel] for name, panel in marked})
    stats.unavailable = sorted(set(stats.unavailable) | set(why))
    calcified = np.array([c.calcified for c in kept])
    groups = {"all": np.ones(len(kept), bool)}
    for stratum in config.strata:
        values = np.array([c.strata.get(stratum, "unknown") for c in kept])
        for value in sorted(set(values.tolist())):
            groups[f"{stratum}={value}"] = values == value
    for name, sel in groups.items():
        outs = {
            arm.name: {
                "scores": table[sel, i, 0],
                "calls": table[sel, i, 1] > 0.5,
                "detected": table[sel, i, 2] > 0.5,
            }
            for i, arm in enumerate(arms)
        }
        mal, calc = malignant[sel], calcified[sel]
        stats.strata[name] = {
            "cases": int(sel.sum()),
            "classes": {
                "malignant": int(mal.sum()),
                "benign": int((calc & ~mal).sum()),
                "normal": int((~calc).sum()),
            },
            "arms": {
                a: ArmStats.from_cases(
                    o["scores"], o["calls"], o["detected"], mal, calc, config.bins
                )
                for a, o in outs.items()
            },
            "pairs": {
                t: PairStats.from_cases(outs[a], outs[b], mal, calc, config.bins)
                for t, a, b in pairs
            },
        }
    return stats

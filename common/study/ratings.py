"""Reader-study ratings in long CSV form: ``modality,reader,case,truth,rating``.

The layout of iMRMC, RJafroc and MRMCaov exports: one row per rating, ``truth`` 1 for an
abnormal case and 0 for a normal one. Rows that cannot be used are reported one line
each (file, row, problem) and counted; the rest is used.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COLUMNS = ("modality", "reader", "case", "truth", "rating")


@dataclass
class Ratings:
    """A fully crossed study: every reader rates every case under every modality.

    Attributes
    ----------
    values : numpy.ndarray
        (modalities, readers, cases) ratings.
    truth : numpy.ndarray
        (cases,) booleans: abnormal.
    problems : list of str
        One line per row left out.
    """

    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]
    values: np.ndarray
    truth: np.ndarray
    problems: list[str] = field(default_factory=list)


def _key(text: str) -> tuple:
    # numeric ids sort as numbers (reader 10 after reader 9)
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def load_ratings(path: str | Path) -> Ratings:
    """Read a long-form ratings CSV.

    Raises
    ------
    ValueError
        Missing columns, or a design that is not fully crossed (naming what is missing).
    """
    path = Path(path)
    problems: list[str] = []
    seen: dict[tuple[str, str, str], float] = {}
    truth: dict[str, bool] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        for number, row in enumerate(reader, start=2):
            where = f"{path}:{number}"
            m, r, c = (row[k].strip() for k in ("modality", "reader", "case"))
            if not (m and r and c):
                problems.append(f"{where}: empty modality, reader or case")
                continue
            try:
                rating = float(row["rating"])
            except ValueError:
                problems.append(f"{where}: rating '{row['rating']}' is not a number")
                continue
            if not np.isfinite(rating):
                problems.append(f"{where}: rating '{row['rating']}' is not finite")
                continue
            t = row["truth"].strip()
            if t not in ("0", "1"):
                problems.append(f"{where}: truth '{t}' is not 0 or 1")
                continue
            if c in truth and truth[c] != (t == "1"):
                problems.append(f"{where}: case {c} has truth {t} here and not elsewhere")
                continue
            if (m, r, c) in seen:
                problems.append(f"{where}: second rating of case {c} by {r} under {m}")
                continue
            truth[c] = t == "1"
            seen[(m, r, c)] = rating
    modalities = tuple(sorted({k[0] for k in seen}, key=_key))
    readers = tuple(sorted({k[1] for k in seen}, key=_key))
    cases = tuple(sorted(truth, key=_key))
    values = np.full((len(modalities), len(readers), len(cases)), np.nan)
    index = {
        "m": {v: i for i, v in enumerate(modalities)},
        "r": {v: i for i, v in enumerate(readers)},
        "c": {v: i for i, v in enumerate(cases)},
    }
    for (m, r, c), rating in seen.items():
        values[index["m"][m], index["r"][r], index["c"][c]] = rating
    holes = np.argwhere(np.isnan(values))
    if len(holes):
        m, r, c = holes[0]
        raise ValueError(
            f"{path}: not fully crossed: {len(holes)} rating(s) missing, e.g. case "
            f"{cases[c]} by {readers[r]} under {modalities[m]}"
        )
    return Ratings(
        modalities,
        readers,
        cases,
        values,
        np.array([truth[c] for c in cases], dtype=bool),
        problems,
    )

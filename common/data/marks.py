"""Readers' marks as the reads CSV writes them: view, stored-image position and rating.

A read may carry marks (the reads CSV's optional ``marks`` column): on a view, a position
in the stored image's pixels and a rating on the suspicion scale (0–100), written
``VIEW:row,col,rating`` and separated by ``;``, e.g. ``CC:812,430,85;MLO:1020,388,70``. An
empty cell in a ``marks`` column is a read with no mark; without the column the read has
no marks recorded. :mod:`common.study.localisation` localises them on the findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VIEWS = ("CC", "MLO")


@dataclass(frozen=True)
class Mark:
    """One mark of a read: view, stored-image position (row, col) and rating (0–100)."""

    view: str
    row: float
    col: float
    rating: float


def parse_marks(text: str) -> tuple[Mark, ...]:
    """Parse a ``marks`` cell (``VIEW:row,col,rating;...``; empty: no mark).

    Raises
    ------
    ValueError
        Naming the first malformed mark.
    """
    marks = []
    for i, item in enumerate((s.strip() for s in text.split(";")), start=1):
        if not item:
            continue
        view, sep, rest = item.partition(":")
        view = view.strip().upper()
        values = rest.split(",")
        try:
            if not sep or view not in VIEWS or len(values) != 3:
                raise ValueError
            row, col, rating = (float(v) for v in values)
        except ValueError:
            raise ValueError(
                f"mark {i} {item!r}: expected VIEW:row,col,rating with VIEW one of {VIEWS}"
            ) from None
        if not (0.0 <= rating <= 100.0) or row < 0 or col < 0 or not math.isfinite(row + col):
            raise ValueError(f"mark {i} {item!r}: rating outside 0–100 or a negative position")
        marks.append(Mark(view, row, col, rating))
    return tuple(marks)


def format_marks(marks: tuple[Mark, ...]) -> str:
    """Write marks as a ``marks`` cell (the inverse of :func:`parse_marks`)."""
    return ";".join(f"{m.view}:{m.row:.1f},{m.col:.1f},{m.rating:g}" for m in marks)

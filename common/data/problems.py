"""Collect and count refused input so nothing is silently dropped."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from common.errors import CalciflInputError

logger = logging.getLogger("calcifl")


@dataclass(frozen=True)
class Problem:
    """One refused item: where, what kind, and why."""

    source: str
    kind: str
    reason: str

    def line(self) -> str:
        """Return the one-line report of this problem."""
        return f"{self.source}: {self.reason}"


@dataclass
class ProblemLog:
    """An ordered list of problems with per-kind counts.

    Each problem is logged once, as one line naming its source, when it is added.
    The lines may name local paths, so they stay on the hospital's console; only
    :meth:`counts` is meant to be shared.
    """

    problems: list[Problem] = field(default_factory=list)
    echo: bool = True

    def add(self, error: CalciflInputError) -> Problem:
        """Record ``error`` and return the stored problem."""
        problem = Problem(error.source, error.kind, error.reason)
        self.problems.append(problem)
        if self.echo:
            logger.warning("refused %s", problem.line())
        return problem

    def extend(self, other: ProblemLog) -> None:
        """Append every problem of ``other`` (without logging them again)."""
        self.problems.extend(other.problems)

    def counts(self) -> dict[str, int]:
        """Return the number of problems per kind, most frequent first."""
        return dict(Counter(p.kind for p in self.problems).most_common())

    def __len__(self) -> int:
        return len(self.problems)

    def __bool__(self) -> bool:
        return bool(self.problems)

"""Reading CSV tables row by row with errors that name the row and column."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from common.errors import TableError

#: Spellings of "no value" seen in the field (CBIS-DDSM mixes N/A and NA).
MISSING = frozenset({"", "N/A", "NA", "NAN", "NONE", "NULL", "-"})
_TRUE = frozenset({"yes", "y", "true", "1", "aided"})
_FALSE = frozenset({"no", "n", "false", "0", "unaided", ""})


class Row:
    """One CSV record with typed accessors that raise :class:`TableError`.

    Attributes
    ----------
    number : int
        Row number as a spreadsheet shows it (header = 1), whatever newlines the
        quoted fields hold.
    """

    def __init__(self, path: Path, number: int, values: dict) -> None:
        self.path = path
        self.number = number
        # csv puts surplus fields under the key None; a ragged row is refused
        self.extra = values.pop(None, None)
        self.values = values

    def check_shape(self) -> None:
        """Raise if the row had more fields than the header, or fewer."""
        if self.extra:
            raise self.error(None, f"{len(self.extra)} more value(s) than the header has")
        if any(v is None for v in self.values.values()):
            raise self.error(None, "fewer values than the header has")

    @property
    def source(self) -> str:
        """``file:row`` for messages."""
        return f"{self.path}:{self.number}"

    def error(self, column: str | None, reason: str) -> TableError:
        """Return a :class:`TableError` for this row."""
        return TableError(self.path, self.number, column, reason)

    def text(self, column: str, required: bool = False) -> str | None:
        """Return the stripped value, None when missing (or raise if ``required``)."""
        raw = self.values.get(column)
        value = raw.strip() if raw is not None else ""
        if value.upper() in MISSING:
            if required:
                raise self.error(column, "value is required")
            return None
        return value

    def integer(self, column: str, lo: int, hi: int, required: bool = False) -> int | None:
        """Return an int in [lo, hi] or None when missing."""
        value = self.text(column, required)
        if value is None:
            return None
        try:
            as_float = float(value)
        except ValueError:
            raise self.error(column, f"'{value}' is not a whole number") from None
        if not as_float.is_integer():
            raise self.error(column, f"'{value}' is not a whole number")
        number = int(as_float)
        if not lo <= number <= hi:
            raise self.error(column, f"{number} is outside {lo}..{hi}")
        return number

    def number_(self, column: str, lo: float, hi: float) -> float | None:
        """Return a float in [lo, hi] or None when missing."""
        value = self.text(column)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise self.error(column, f"'{value}' is not a number") from None
        if not lo <= number <= hi:
            raise self.error(column, f"{number} is outside {lo}..{hi}")
        return number

    def choice(self, column: str, mapping: dict[str, str], required: bool = False) -> str | None:
        """Return ``mapping[value.upper()]`` or raise listing the accepted values."""
        value = self.text(column, required)
        if value is None:
            return None
        key = value.upper()
        if key not in mapping:
            accepted = ", ".join(sorted(mapping))
            raise self.error(column, f"'{value}' is not one of {accepted}")
        return mapping[key]

    def flag(self, column: str) -> bool:
        """Return a yes/no value (missing means no)."""
        value = (self.values.get(column) or "").strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise self.error(column, f"'{value}' is not yes/no")

    def tokens(self, column: str, aliases: dict[str, str] | None = None) -> tuple[str, ...]:
        """Split a combined value ('A-B') into normalised tokens; () when missing."""
        value = self.text(column)
        if value is None:
            return ()
        out = []
        for token in value.upper().replace(" ", "_").split("-"):
            if token in MISSING:
                continue
            token = (aliases or {}).get(token, token)
            if token not in out:
                out.append(token)
        return tuple(out)


def read_rows(path: Path, required: tuple[str, ...] = ()) -> Iterator[Row]:
    """Yield the rows of a CSV, refusing the whole file if a required column is missing.

    Raises
    ------
    TableError
        Row 1 (the header) when the file is empty or lacks a required column.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise TableError(path, 1, None, f"cannot open ({exc.strerror})") from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        if not header:
            raise TableError(path, 1, None, "file is empty (no header row)")
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise TableError(path, 1, missing[0], f"required column missing (have: {header})")
        number = 1
        try:
            for values in reader:
                number += 1
                yield Row(path, number, values)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TableError(path, number + 1, None, f"unreadable ({exc})") from exc

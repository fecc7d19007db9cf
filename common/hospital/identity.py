"""A hospital's identity in replies: its pseudonym, its image-key salt, its readers'.

Made once from OS entropy and kept in the hospital's state folder, so they are stable
across runs and unknown to the coordinator: the pseudonym replaces the data folder's name
in replies, the salt keys de-identified image ids, and each reader leaves only as a
role pseudonym (``senior-1``, ``junior-2``) whose mapping stays in this file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


class Identity:
    """The identity file of one hospital (created on first use).

    Parameters
    ----------
    path : str or Path
        ``identity.json`` in the hospital's state folder.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = json.loads(self.path.read_text()) if self.path.is_file() else {}
            before = json.dumps(data, sort_keys=True)
            data.setdefault("pseudonym", f"site-{secrets.token_hex(4)}")
            data.setdefault("salt", secrets.token_hex(16))
            data.setdefault("readers", {})
            yield data
            if json.dumps(data, sort_keys=True) != before:
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".identity-")
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=2)
                os.replace(tmp, self.path)

    def _get(self, key: str):
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            if key in data:
                return data[key]
        with self._locked() as data:
            return data[key]

    @property
    def pseudonym(self) -> str:
        """The name this hospital's replies carry when its config names none."""
        return self._get("pseudonym")

    @property
    def salt(self) -> str:
        """Salt of the de-identified image keys."""
        return self._get("salt")

    def readers(self, readers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Return reader id → role pseudonym, adding readers not seen before.

        A reader keeps its pseudonym for good; a new one takes the next free number of
        its role.
        """
        with self._locked() as data:
            mapping = data["readers"]
            for reader, role in sorted(set(readers)):
                if reader in mapping:
                    continue
                taken = set(mapping.values())
                k = 1
                while f"{role}-{k}" in taken:
                    k += 1
                mapping[reader] = f"{role}-{k}"
            return dict(mapping)

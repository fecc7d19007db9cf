"""Preprocessing cache: decoded, normalised, resampled mammograms on disk.

An entry is keyed by the file's identity (resolved path, size, modification time, inode;
or its content hash) and by every reading option that changes the pixels, so a changed
file or changed options simply miss and are recomputed. Entries are written to a temporary
file and renamed into place, so concurrent readers see a whole entry or none; a damaged
entry is treated as a miss and rewritten. The cache lives outside the data folder: source
files are never written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.imaging.geometry import Geometry
from common.imaging.reading import (
    DEFAULT_OPTIONS,
    Mammogram,
    ReadOptions,
    read_mammogram,
    salt_key,
)

#: Bump when the preprocessing code changes what it produces.
# 2: bright pectoral muscles; 3: film borders cleared; 4: borders followed inward, margin;
# 5: tape in the air cleared; 6: tape meeting the breast at the film's edge cleared;
# 7: the breast beside tape kept (tape cleared between its full-resolution edges);
# 8: tape followed across a lead label over its far edge; 9: and across one inside it;
# 10: lead markers taken out by their plateaus; 11: the edge decided at full resolution;
# 12: plateaus longer than a marker's letters are no marker; 13: nor those deep in the breast
FORMAT_VERSION = 13


def default_cache_dir() -> Path:
    """Return ``$CALCIFL_CACHE`` or ``~/.cache/calcifl``."""
    env = os.environ.get("CALCIFL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "calcifl"


@dataclass
class CacheStats:
    """Hit and miss counts of one :class:`PreprocessCache`."""

    hits: int = 0
    misses: int = 0
    damaged: int = 0


class PreprocessCache:
    """Read mammograms through an on-disk cache.

    Parameters
    ----------
    root : str or Path, optional
        Cache folder (default :func:`default_cache_dir`).
    options : ReadOptions
        Reading options (part of every key).
    identity : {"stat", "content"}
        How a file is identified: by path, size, mtime and inode (cheap), or by a hash
        of its bytes (survives copies and touch; costs one read of the file).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        options: ReadOptions = DEFAULT_OPTIONS,
        identity: str = "stat",
    ) -> None:
        if identity not in ("stat", "content"):
            raise ValueError("identity must be 'stat' or 'content'")
        self.root = Path(root) if root is not None else default_cache_dir()
        self.options = options
        self.identity = identity
        self.stats = CacheStats()

    def key(self, path: str | Path, laterality: str | None = None, view: str | None = None) -> str:
        """Return the cache key of reading ``path`` with this cache's options."""
        path = Path(path).resolve()
        if self.identity == "content":
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            ident = digest.hexdigest()
        else:
            st = path.stat()
            ident = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        # the key salt changes only the image's key, which is salted on the way out
        options = replace(self.options, key_salt="").cache_token()
        token = f"{FORMAT_VERSION}|{ident}|{options}|{laterality}|{view}"
        return hashlib.sha256(token.encode()).hexdigest()

    def entry_path(self, key: str) -> Path:
        """Return the file an entry is stored in (two-level fan-out)."""
        return self.root / key[:2] / f"{key}.npz"

    def load(
        self, path: str | Path, laterality: str | None = None, view: str | None = None
    ) -> Mammogram:
        """Return the mammogram at ``path``, decoding it only on a cache miss."""
        key = self.key(path, laterality, view)
        entry = self.entry_path(key)
        if entry.exists():
            try:
                image = _read_entry(entry)
                self.stats.hits += 1
                return self._salted(image)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                self.stats.damaged += 1  # rewritten below
        self.stats.misses += 1
        image = read_mammogram(
            path, replace(self.options, key_salt=""), laterality=laterality, view=view
        )
        _write_entry(entry, image)
        return self._salted(image)

    def _salted(self, image: Mammogram) -> Mammogram:
        salt = self.options.key_salt
        return replace(image, image_key=salt_key(image.image_key, salt)) if salt else image

    def clear(self) -> int:
        """Delete every entry; return how many were removed."""
        removed = 0
        for entry in self.root.glob("*/*.npz"):
            entry.unlink(missing_ok=True)
            removed += 1
        return removed


def _write_entry(entry: Path, image: Mammogram) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    info = image.info()
    info["meta"] = image.meta
    fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                pixels=image.pixels,
                mask=np.packbits(image.mask, axis=None),
                info=np.frombuffer(json.dumps(info).encode(), dtype=np.uint8),
            )
        os.replace(tmp, entry)  # atomic: readers see the old entry or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_entry(entry: Path) -> Mammogram:
    with np.load(entry, allow_pickle=False) as data:
        pixels = data["pixels"]
        info = json.loads(data["info"].tobytes())
        mask = np.unpackbits(data["mask"], count=pixels.size).reshape(pixels.shape).astype(bool)
    return Mammogram(
        pixels=pixels,
        mask=mask,
        bbox=tuple(info["bbox"]),
        laterality=info["laterality"],
        view=info["view"],
        spacing_mm=tuple(info["spacing_mm"]),
        source_spacing_mm=tuple(info["source_spacing_mm"]),
        spacing_source=info["spacing_source"],
        photometric=info["photometric"],
        presentation_intent=info["presentation_intent"],
        image_key=info["image_key"],
        geometry=Geometry.from_dict(info["geometry"]),
        bits_stored=info["bits_stored"],
        manufacturer=info["manufacturer"],
        transfer_syntax=info["transfer_syntax"],
        voi_source=info["voi_source"],
        meta=info.get("meta", {}),
    )

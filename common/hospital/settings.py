"""A hospital's own settings, from the SuperNode's ``--node-config``.

Keys (kebab-case): ``data-dir`` (the hospital's export: calcifl manifest or CBIS-DDSM
layout), ``hospital-id`` (the name replies carry; default: a pseudonym made once and kept
in the state folder), ``state-dir`` (identity, privacy ledger and audit log; default
``$CALCIFL_HOME`` or ``~/.calcifl``, then the hospital id or the data folder's name and a
digest of its path), ``cache-dir`` (decoded images), ``dp-delta`` (the δ of all this
hospital's accounting, and the largest a request may ask; default 1e-5, never above 1/n),
``privacy-budget`` (cap on cumulative ε per model over every federation and run; 0 or
absent: the ε a request asks for), ``privacy-total-budget`` (cap on the ε of both models
composed, over every federation and run; default 20), ``share-reader-ids`` (let reader
ids leave in reader-study statistics; default false: role pseudonyms such as
``senior-1``), ``require-dp`` (refuse rounds without DP-SGD), ``min-cell`` (withhold evaluation
statistics of a set with fewer positives or negatives; reader-study strata with fewer
breasts of a class), ``reader-study`` (false: refuse to take part in reader studies),
``test-fraction`` (held-out
patients when the data carry no split), how this hospital's files are read:
``fallback-spacing`` (mm to assume for images without a spacing tag, e.g. digitised film;
default: refuse them), ``for-processing`` ("refuse" or "normalize" raw images) and
``any-modality`` (accept modalities other than MG), and for simulations of a pooled data set
``partition`` ("I/N"), ``partition-scheme`` and ``partition-seed``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from common.data.partition import PartitionSpec
from common.imaging.reading import ReadOptions
from common.learning.dp import DEFAULT_DELTA

DEFAULT_TOTAL_BUDGET = 20.0

KNOWN = {
    "data-dir",
    "dp-delta",
    "privacy-total-budget",
    "share-reader-ids",
    "hospital-id",
    "state-dir",
    "cache-dir",
    "privacy-budget",
    "require-dp",
    "min-cell",
    "reader-study",
    "test-fraction",
    "fallback-spacing",
    "for-processing",
    "any-modality",
    "partition",
    "partition-scheme",
    "partition-seed",
    "partition-id",
    "num-partitions",
}


@dataclass(frozen=True)
class NodeSettings:
    """Parsed node configuration of one hospital."""

    data_dir: Path
    hospital_id: str | None
    state_dir: Path
    cache_dir: Path | None = None
    dp_delta: float = DEFAULT_DELTA
    privacy_budget: float | None = None
    privacy_total_budget: float = DEFAULT_TOTAL_BUDGET
    share_reader_ids: bool = False
    require_dp: bool = False
    min_cell: int = 0
    reader_study: bool = True
    test_fraction: float = 0.25
    partition: tuple[int, PartitionSpec] | None = None
    fallback_spacing_mm: float | None = None
    for_processing: str = "refuse"
    any_modality: bool = False

    def reading(self, options: ReadOptions) -> ReadOptions:
        """Return ``options`` (the round's) with what this hospital says of its own files."""
        return replace(
            options,
            fallback_spacing_mm=self.fallback_spacing_mm,
            for_processing=self.for_processing,
            modalities=None if self.any_modality else ReadOptions().modalities,
        )

    @property
    def ledger_path(self) -> Path:
        """The privacy ledger's file."""
        return self.state_dir / "privacy_ledger.json"

    @property
    def identity_path(self) -> Path:
        """The hospital's pseudonym, image-key salt and reader pseudonyms."""
        return self.state_dir / "identity.json"

    @property
    def audit_path(self) -> Path:
        """The audit log's file."""
        return self.state_dir / "audit.jsonl"

    @classmethod
    def from_config(cls, node: dict, run: dict | None = None) -> NodeSettings:
        """Read a node configuration (``run`` supplies ``data-root`` for ``flwr run .``).

        Raises
        ------
        ValueError
            Naming the key that is unknown, missing or malformed.
        """
        run = run or {}
        unknown = sorted(set(node) - KNOWN)
        if unknown:
            raise ValueError(f"unknown node-config key(s): {', '.join(unknown)}")
        if "data-dir" in node:
            data_dir = Path(str(node["data-dir"])).expanduser()
        elif run.get("data-root") and "partition-id" in node:
            # Flower's local simulation numbers nodes; map them to hospital-1, -2, ...
            data_dir = Path(str(run["data-root"])).expanduser() / (
                f"hospital-{int(node['partition-id']) + 1}"
            )
        else:
            raise ValueError("node-config needs 'data-dir' (the hospital's data folder)")
        hospital = str(node["hospital-id"]) if node.get("hospital-id") else None
        home = Path(os.environ.get("CALCIFL_HOME", Path.home() / ".calcifl"))
        if node.get("state-dir"):
            state = Path(str(node["state-dir"])).expanduser()
        elif hospital:
            state = home / hospital
        else:  # local only: the folder's name, told apart from others of the same name
            digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
            state = home / f"{data_dir.name}-{digest}"
        budget = float(node.get("privacy-budget", 0) or 0) or None
        total = float(node.get("privacy-total-budget", DEFAULT_TOTAL_BUDGET))
        delta = float(node.get("dp-delta", DEFAULT_DELTA))
        if not 0 < delta < 1:
            raise ValueError(f"dp-delta {delta:g}: must be in (0, 1)")
        if total <= 0 or (budget is not None and budget < 0):
            raise ValueError("privacy-budget and privacy-total-budget must be positive")
        partition = None
        if "partition" in node:
            index, _, total = str(node["partition"]).partition("/")
            try:
                i, n = int(index), int(total)
            except ValueError as exc:
                raise ValueError(f"partition '{node['partition']}': expected 'I/N'") from exc
            if not 0 <= i < n:
                raise ValueError(f"partition '{node['partition']}': I must be in 0..N-1")
            spec = PartitionSpec.parse(
                n, str(node.get("partition-scheme", "iid")), int(node.get("partition-seed", 0))
            )
            partition = (i, spec)
        fallback = float(node.get("fallback-spacing", 0) or 0) or None
        if fallback is not None and not 0.01 <= fallback <= 1.0:
            raise ValueError(f"fallback-spacing {fallback:g} mm: expected 0.01..1")
        for_processing = str(node.get("for-processing", "refuse"))
        if for_processing not in ("refuse", "normalize"):
            raise ValueError(f"for-processing '{for_processing}': 'refuse' or 'normalize'")
        return cls(
            data_dir=data_dir,
            hospital_id=hospital,
            state_dir=state,
            cache_dir=Path(str(node["cache-dir"])) if node.get("cache-dir") else None,
            dp_delta=delta,
            privacy_budget=budget,
            privacy_total_budget=total,
            share_reader_ids=_flag(node.get("share-reader-ids", False)),
            require_dp=bool(node.get("require-dp", False)),
            min_cell=int(node.get("min-cell", 0)),
            reader_study=_flag(node.get("reader-study", True)),
            test_fraction=float(node.get("test-fraction", 0.25)),
            partition=partition,
            fallback_spacing_mm=fallback,
            for_processing=for_processing,
            any_modality=_flag(node.get("any-modality", False)),
        )


def _flag(value) -> bool:
    """Read a node-config boolean (Flower passes TOML booleans; strings are accepted too)."""
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError(f"'{value}' is not a boolean")
        return value.lower() in ("true", "yes", "1")
    return bool(value)

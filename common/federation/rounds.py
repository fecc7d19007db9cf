"""What the server asks of a hospital in one federated round, as plain scalars.

The server writes a :class:`RoundSpec` into the message's configuration and the client
reads it back; both sides share this one schema (kebab-case keys, scalar values), so a
key misspelt or a value of the wrong type is refused with its name. It knows nothing of
Flower: the adapters put the dict into (and take it out of) a ``ConfigRecord``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from common.imaging.reading import ReadOptions
from common.learning import recipes
from common.learning.dp import DPConfig
from common.learning.inference import CascadeConfig
from common.learning.models import ClassifierConfig, DetectorConfig
from common.learning.weak import WEAK_TARGETS


@dataclass(frozen=True)
class ModelSpec:
    """Architectures, image reading and inference settings every site must share."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    read: ReadOptions = field(default_factory=ReadOptions)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)

    def to_json(self) -> str:
        """Serialise (sorted keys, so equal specs give equal strings)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Inverse of :meth:`to_json`; raises ValueError on anything malformed."""
        try:
            d = json.loads(text)
            return cls(
                DetectorConfig(**d["detector"]),
                ClassifierConfig(**d["classifier"]),
                ReadOptions.from_dict(d["read"]),
                CascadeConfig(**d["cascade"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"model-spec: not a valid model specification ({exc})") from exc

    def meta(self) -> dict:
        """Return the ``model.json`` metadata of a saved run."""
        return {"preprocessing": asdict(self.read), "cascade": asdict(self.cascade)}


class KebabConfig:
    """Dataclass mixin: to and from flat kebab-case dicts of scalars, checked by type."""

    def to_config(self) -> dict:
        """Kebab-case keys, scalar values."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_config(cls, config: dict, strict: bool = True, complete: bool = False):
        """Build from a kebab-case dict.

        Parameters
        ----------
        strict : bool
            Refuse keys that are not fields (a misspelt option must not fall back to its
            default silently); else ignore them.
        complete : bool
            Require every field.

        Raises
        ------
        ValueError
            Naming the key that is unknown, missing or of the wrong type.
        """
        names = {f.name.replace("_", "-"): f for f in fields(cls)}
        unknown = sorted(set(config) - set(names))
        if strict and unknown:
            raise ValueError(
                f"unknown key(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        defaults = cls()
        values = {}
        for key, f in names.items():
            if key not in config:
                if complete:
                    raise ValueError(f"configuration lacks '{key}'")
                continue
            v, want = config[key], type(getattr(defaults, f.name))
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if type(v) is not want:
                raise ValueError(f"'{key}': expected {want.__name__}, got {type(v).__name__} {v!r}")
            values[f.name] = v
        return cls(**values)


@dataclass(frozen=True)
class LocalTraining(KebabConfig):
    """How each hospital trains in a round (chosen by the coordinator).

    Attributes
    ----------
    restore_best : bool
        End a hospital's round with its best local validation epoch instead of the last
        one (local validation sets are small: the last weights are FedAvg's usual choice).
    dp_noise : float
        Noise multiplier; 0: calibrated so the run's rounds end at ``dp_epsilon``.
    dp_delta : float
        δ asked for; 0: each hospital's own ``dp-delta``. A hospital refuses a δ above its
        own.
    classifier_batch_size : int
        0: 4 without DP, 32 with DP (see :func:`~common.learning.recipes.classifier_batch`).
    classifier_lr : float
        0: by architecture (see :func:`~common.learning.recipes.classifier_rate`).
    dp_freeze_stem : bool
        With DP, leave the detector's full-resolution stem at the federation's initial
        weights (:data:`common.learning.recipes.DP_FROZEN_DETECTOR`,
        :func:`~common.learning.recipes.detector_frozen`).
    weak_targets : {"candidates", "centroid", "mil"}
        What the detector is taught for a finding annotated only by a mask, a box or a
        centroid: candidate calcification centres found in its region
        (:mod:`common.learning.weak`), one peak at the centroid, or the region as a
        multiple-instance bag ("mil": its most probable cell is taught as a peak).
    """

    detector_epochs: int = 5
    classifier_epochs: int = 15
    lr: float = 1e-3
    classifier_lr: float = 0.0
    batch_size: int = 32
    classifier_batch_size: int = 0
    patience: int = 0
    restore_best: bool = False
    val_fraction: float = 0.15
    dp: bool = False
    dp_epsilon: float = 8.0
    dp_noise: float = 0.0
    dp_max_grad_norm: float = 1.0
    dp_delta: float = 0.0
    dp_freeze_stem: bool = True
    weak_targets: str = "mil"

    def __post_init__(self) -> None:
        """Validate counts."""
        if self.weak_targets not in WEAK_TARGETS:
            raise ValueError(f"'weak-targets' must be one of {', '.join(WEAK_TARGETS)}")
        for name in ("detector_epochs", "classifier_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name.replace('_', '-')}' must be >= 1")
        if self.classifier_batch_size < 0:
            raise ValueError("'classifier-batch-size' must be >= 0 (0: automatic)")
        if self.classifier_lr < 0:
            raise ValueError("'classifier-lr' must be >= 0 (0: automatic)")


@dataclass(frozen=True)
class RoundSpec(LocalTraining):
    """Local work of one round, as sent to every hospital.

    Attributes
    ----------
    federation : str
        Names the federation (in the hospitals' ledgers and reports; a hospital's ε
        accumulates over every federation it joins, not per name).
    run : str
        This run (a federation may span several runs, e.g. after a resume).
    num_rounds : int
        Rounds in the run (calibrates DP noise for a target ε).
    proximal_mu : float
        FedProx's μ (the strategy also sends it as ``proximal-mu``).
    """

    federation: str = "calcifl"
    run: str = "run"
    num_rounds: int = 3
    seed: int = 0
    model_spec: str = field(default_factory=lambda: ModelSpec().to_json())
    proximal_mu: float = 0.0

    @classmethod
    def received(cls, config: dict) -> RoundSpec:
        """Read a received configuration (other keys, e.g. server-round, are ignored)."""
        try:
            spec = cls.from_config(config, strict=False, complete=True)
        except ValueError as exc:
            raise ValueError(f"round configuration: {exc}") from exc
        spec.models()  # validates the model specification
        if spec.num_rounds < 1:
            raise ValueError("round configuration: 'num-rounds' must be >= 1")
        return spec

    def models(self) -> ModelSpec:
        """Return the shared model specification."""
        return ModelSpec.from_json(self.model_spec)

    def train_configs(self, server_round: int, site: str, progress: bool = False) -> dict:
        """Per-model :class:`TrainConfig` of this round at ``site`` (seeded by both)."""
        digest = hashlib.sha256(f"{self.seed}|{server_round}|{site}".encode()).digest()
        seed = int.from_bytes(digest[:4], "big")
        arch = self.models().classifier.arch
        return recipes.local_train_configs(
            self, arch, seed, progress=progress, proximal_mu=self.proximal_mu
        )

    def dp_config(self, budget: float | None) -> DPConfig | None:
        """DP settings (None without DP), capped at the hospital's ``budget``."""
        return recipes.dp_config(self, budget)

"""Run settings of a federation, from ``[tool.flwr.app.config]`` / ``--run-config``.

Every key is kebab-case; unknown keys are refused (a misspelt option must not silently
fall back to a default). :data:`DEFAULTS` lists them all with their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from common.dicom import ReadOptions
from common.models import ClassifierConfig, DetectorConfig
from common.rounds import ModelSpec, RoundSpec

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedtrimmedavg", "krum")


@dataclass(frozen=True)
class RunSettings:
    """Everything the coordinator chooses for a run.

    Attributes
    ----------
    num_server_rounds : int
        Rounds of the run (a resumed run continues up to this number).
    strategy : str
        One of :data:`STRATEGIES` (Flower's implementations).
    min_available_nodes, min_train_nodes, min_evaluate_nodes : int
        Node counts a round needs (Flower waits for ``min_available_nodes``).
    round_timeout : float
        Seconds to wait for replies in a round; late hospitals are counted as dropped.
    eval_every : int
        Federated evaluation every this many rounds (and always after the last one).
    out_dir : str
        Run directory (checkpoints, final models, report); empty: ``calcifl-runs/<run id>``.
    resume : bool
        Continue from the last checkpoint in ``out_dir``.
    federation : str
        Name under which hospitals account their ε (same name: cumulative ε).
    data_root : str
        For ``flwr run .`` simulations: folder of ``hospital-1``, ``hospital-2``, ...
    """

    num_server_rounds: int = 3
    strategy: str = "fedavg"
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_available_nodes: int = 1
    min_train_nodes: int = 1
    min_evaluate_nodes: int = 1
    round_timeout: float = 3600.0
    eval_every: int = 1
    proximal_mu: float = 0.01
    server_lr: float = 0.01
    trim_beta: float = 0.2
    num_malicious_nodes: int = 0
    out_dir: str = ""
    resume: bool = False
    federation: str = "calcifl"
    data_root: str = ""
    seed: int = 0
    detector_epochs: int = 5
    classifier_epochs: int = 15
    lr: float = 1e-3
    classifier_lr: float = 1e-3
    batch_size: int = 32
    classifier_batch_size: int = 32
    patience: int = 0
    val_fraction: float = 0.15
    detector_width: int = 12
    classifier_width: int = 12
    spacing_mm: float = 0.1
    dp: bool = False
    dp_epsilon: float = 8.0
    dp_noise: float = 0.0
    dp_max_grad_norm: float = 1.0
    dp_delta: float = 0.0

    def __post_init__(self) -> None:
        """Validate choices."""
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy '{self.strategy}': choose one of {', '.join(STRATEGIES)}")
        if self.num_server_rounds < 1 or self.eval_every < 1:
            raise ValueError("num-server-rounds and eval-every must be >= 1")

    @classmethod
    def from_config(cls, config: dict) -> RunSettings:
        """Read a run configuration (kebab-case keys); refuse unknown keys and bad types."""
        names = {f.name.replace("_", "-"): f for f in fields(cls)}
        unknown = sorted(set(config) - set(names))
        if unknown:
            raise ValueError(f"unknown run-config key(s): {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}")  # fmt: skip
        values = {}
        for key, value in config.items():
            f = names[key]
            want = type(getattr(cls(), f.name))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not want:
                raise ValueError(f"run-config '{key}': expected {want.__name__}, got {value!r}")
            values[f.name] = value
        return cls(**values)

    def model_spec(self) -> ModelSpec:
        """Architectures and reading options every hospital uses."""
        return ModelSpec(
            detector=DetectorConfig(width=self.detector_width),
            classifier=ClassifierConfig(width=self.classifier_width),
            read=ReadOptions(target_spacing_mm=self.spacing_mm),
        )

    def round_spec(self, run: str) -> RoundSpec:
        """Return what each hospital is asked to do per round."""
        return RoundSpec(
            federation=self.federation, run=run, num_rounds=self.num_server_rounds,
            seed=self.seed, model_spec=self.model_spec().to_json(),
            detector_epochs=self.detector_epochs, classifier_epochs=self.classifier_epochs,
            lr=self.lr, classifier_lr=self.classifier_lr, batch_size=self.batch_size,
            classifier_batch_size=self.classifier_batch_size, patience=self.patience,
            val_fraction=self.val_fraction, dp=self.dp, dp_epsilon=self.dp_epsilon,
            dp_noise=self.dp_noise, dp_max_grad_norm=self.dp_max_grad_norm,
            dp_delta=self.dp_delta,
        )  # fmt: skip

    def run_dir(self, run_id: int | str) -> Path:
        """Return the run directory."""
        return Path(self.out_dir).expanduser() if self.out_dir else (
            Path.cwd() / "calcifl-runs" / f"run-{run_id}"
        )  # fmt: skip

    def to_config(self) -> dict:
        """Kebab-case dict (inverse of :meth:`from_config`)."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

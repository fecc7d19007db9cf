"""Run settings of a federation, from ``[tool.flwr.app.config]`` / ``--run-config``.

Every key is kebab-case; unknown keys are refused (a misspelt option must not silently
fall back to a default). :data:`DEFAULTS` lists them all with their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from common.federation.rounds import LocalTraining, ModelSpec, RoundSpec
from common.imaging.reading import ReadOptions
from common.learning.dp import noise_for_target
from common.learning.models import ClassifierConfig, DetectorConfig
from common.learning.recipes import classifier_arch
from common.study.arms import StudyConfig

STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedtrimmedavg", "krum", "bulyan")
CENTRAL_DP_STRATEGIES = ("fedavg", "fedprox")


@dataclass(frozen=True)
class RunSettings(LocalTraining):
    """Everything the coordinator chooses for a run (local training fields included).

    Attributes
    ----------
    num_server_rounds : int
        Rounds of the run (a resumed run continues up to this number).
    strategy : str
        One of :data:`STRATEGIES` (Flower's implementations).
    min_available_nodes, min_train_nodes, min_evaluate_nodes : int
        Node counts a round needs. Flower's own wait for them has no bound: the run waits
        at most ``node_wait_timeout`` seconds, then goes on with the hospitals connected if
        they are at least ``min_train_nodes`` (``min_evaluate_nodes`` to evaluate), else it
        stops and says so in the report.
    node_wait_timeout : float
        Seconds to wait for missing hospitals before each round.
    server_momentum : float
        ``fedavgm``: momentum of the server's update (Flower's FedAvgM, server learning
        rate 1): each round moves the global model by the averaged update plus momentum
        times the previous move.
    per_model_weights : bool
        FedAvg, FedProx, FedAvgM, FedAdam: average each model's weights by the examples
        it trained on at each hospital (detector patches, classifier clusters; reported as
        ``det-examples``/``cls-examples``) instead of by images (``num-examples``) for
        both. A hospital with many images but few clusters then does not dominate the
        classifier, and one without clusters does not pull it back. Not with central DP
        (uniform weights).
    update_norm_bound, update_norm_median : float
        Server-side bounding of each hospital's update (its weights minus the global ones,
        L2 over both models) before aggregation: at most ``update_norm_bound`` (0: off)
        and at most ``update_norm_median`` times the round's median update norm (0: off).
    round_timeout : float
        Seconds to wait for replies in a round; late hospitals are counted as dropped.
    eval_every : int
        Federated evaluation every this many rounds (and always after the last one).
    classifier_arch : str
        ``auto`` (descriptors with DP-SGD, the CNN without), ``cnn`` or ``descriptors``
        (:func:`common.learning.recipes.classifier_arch`).
    out_dir : str
        Run directory (checkpoints, final models, report); empty: ``calcifl-runs/<run id>``.
    resume : bool
        Continue from the last checkpoint in ``out_dir``.
    federation : str
        Name under which hospitals account their ε (same name: cumulative ε).
    data_root : str
        For ``flwr run .`` simulations: folder of ``hospital-1``, ``hospital-2``, ...
    reader_study : bool
        After the last round, run the reader-assist study on the hospitals' held-out
        breasts (``reader_study.md``/``.json``/``_roc.png`` in the run folder).
    reader_study_config : str
        The study's :class:`~common.study.arms.StudyConfig` as JSON; empty: default arms.
    central_dp : bool
        Central (hospital-level) DP: each hospital clips its update to L2 norm
        ``central_dp_clip`` (Flower's ``fixedclipping_mod``), the server averages the
        updates uniformly and adds Gaussian noise of standard deviation
        ``noise × clip / hospitals`` (Flower's ``DifferentialPrivacyClientSideFixedClipping``).
        FedAvg and FedProx only (other aggregations change the sensitivity).
    central_dp_clip : float
        Clipping norm of a hospital's update (both models together).
    central_dp_noise : float
        Noise multiplier; 0: the smallest one that keeps the whole run within
        ``central_dp_epsilon``.
    central_dp_epsilon : float
        ε budget of the run at ``central_dp_delta``: a round that would exceed it is not
        started (0: no budget; then ``central_dp_noise`` must be set).
    central_dp_delta : float
        δ of the hospital-level guarantee.
    """

    num_server_rounds: int = 3
    strategy: str = "fedavg"
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_available_nodes: int = 1
    min_train_nodes: int = 1
    min_evaluate_nodes: int = 1
    round_timeout: float = 3600.0
    node_wait_timeout: float = 600.0
    update_norm_bound: float = 0.0
    update_norm_median: float = 0.0
    eval_every: int = 1
    proximal_mu: float = 0.01
    server_lr: float = 0.01
    server_momentum: float = 0.9
    per_model_weights: bool = True
    trim_beta: float = 0.2
    num_malicious_nodes: int = 0
    out_dir: str = ""
    resume: bool = False
    federation: str = "calcifl"
    data_root: str = ""
    seed: int = 0
    detector_width: int = 12
    classifier_width: int = 12
    classifier_arch: str = "auto"
    spacing_mm: float = 0.1
    reader_study: bool = False
    reader_study_config: str = ""
    central_dp: bool = False
    central_dp_clip: float = 1.0
    central_dp_noise: float = 0.0
    central_dp_epsilon: float = 0.0
    central_dp_delta: float = 1e-5

    def __post_init__(self) -> None:
        """Validate choices."""
        super().__post_init__()
        if self.reader_study_config:
            self.study_config()  # a bad study fails before round 1, naming the setting
        classifier_arch(self.classifier_arch, self.dp)  # names the bad value
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy '{self.strategy}': choose one of {', '.join(STRATEGIES)}")
        if self.num_server_rounds < 1 or self.eval_every < 1:
            raise ValueError("num-server-rounds and eval-every must be >= 1")
        if self.central_dp:
            self._check_central_dp()

    def _check_central_dp(self) -> None:
        if self.strategy not in CENTRAL_DP_STRATEGIES:
            raise ValueError(
                f"central-dp works with {' or '.join(CENTRAL_DP_STRATEGIES)} "
                f"(uniform averaging), not '{self.strategy}'"
            )
        if self.central_dp_clip <= 0:
            raise ValueError("central-dp-clip must be positive")
        if self.central_dp_noise < 0 or self.central_dp_epsilon < 0:
            raise ValueError("central-dp-noise and central-dp-epsilon must be >= 0")
        if self.central_dp_noise == 0 and self.central_dp_epsilon == 0:
            raise ValueError("central-dp needs central-dp-noise or central-dp-epsilon")
        if not 0 < self.central_dp_delta < 1:
            raise ValueError("central-dp-delta must be in (0, 1)")

    def central_dp_noise_multiplier(self) -> float:
        """Noise multiplier of central DP (given, or derived from the ε budget)."""
        if self.central_dp_noise > 0:
            return self.central_dp_noise
        return noise_for_target(
            [], 1.0, self.num_server_rounds, self.central_dp_delta, self.central_dp_epsilon
        )

    @classmethod
    def from_config(cls, config: dict, strict: bool = True, complete: bool = False):
        """Read a run configuration (kebab-case keys); refuse unknown keys and bad types."""
        try:
            return super().from_config(config, strict, complete)
        except ValueError as exc:
            raise ValueError(f"run-config: {exc}") from exc

    def model_spec(self) -> ModelSpec:
        """Architectures and reading options every hospital uses."""
        return ModelSpec(
            detector=DetectorConfig(width=self.detector_width),
            classifier=ClassifierConfig(
                width=self.classifier_width, arch=classifier_arch(self.classifier_arch, self.dp)
            ),
            read=ReadOptions(target_spacing_mm=self.spacing_mm),
        )

    def round_spec(self, run: str) -> RoundSpec:
        """Return what each hospital is asked to do per round."""
        local = {f.name: getattr(self, f.name) for f in fields(LocalTraining)}
        return RoundSpec(
            **local,
            federation=self.federation,
            run=run,
            num_rounds=self.num_server_rounds,
            seed=self.seed,
            model_spec=self.model_spec().to_json(),
        )

    def study_config(self) -> StudyConfig:
        """Return the reader study's definition."""
        if not self.reader_study_config:
            return StudyConfig()
        try:
            return StudyConfig.from_json(self.reader_study_config)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"reader-study-config: {exc}") from exc

    def run_dir(self, run_id: int | str) -> Path:
        """Return the run directory."""
        return (
            Path(self.out_dir).expanduser()
            if self.out_dir
            else (Path.cwd() / "calcifl-runs" / f"run-{run_id}")
        )

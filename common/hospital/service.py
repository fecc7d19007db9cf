"""A hospital's own service: its data, privacy policy, ledger, audit log and release policy.

:class:`Hospital` is what a site runs, whatever the federated-learning platform: train the
shared models on its data, evaluate them as summable statistics, calibrate and answer a
reader study, each under its own node configuration. It raises a typed
:class:`~common.federation.protocol.Refusal` for what it will not serve. The Flower
ClientApp (``client/app.py``) only translates messages to these calls; the standalone
reader study and the baselines use the same object.

:func:`serve` wraps one request: it opens the hospital from its node configuration, reads
the round, runs the work, turns any failure into a refusal that names no path or data, and
writes one audit line of what came in and what went out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from common.data.cache import PreprocessCache
from common.data.problems import ProblemLog
from common.data.records import ImageRecord, ReaderRead
from common.errors import CalciflInputError
from common.evaluation.images import EvalStats, detection_stats, evaluate_images
from common.evaluation.metrics import RocStats
from common.federation import protocol as P
from common.federation.protocol import Code, Refusal
from common.federation.rounds import RoundSpec
from common.hospital.audit import AuditLog
from common.hospital.identity import Identity
from common.hospital.ledger import PrivacyLedger
from common.hospital.release import release_eval, released_tables
from common.hospital.settings import NodeSettings
from common.imaging.reading import ReadOptions
from common.learning.dp import (
    DPConfig,
    PrivacyBudgetError,
    epsilon,
    group_privacy,
    public_size,
)
from common.learning.material import (
    TASKS,
    SiteData,
    SiteSettings,
    plan_models,
    site_study_data,
    train_models,
    validation_split,
)
from common.learning.models import build, flat_state, load_flat_state
from common.learning.samples import ImageStore
from common.study.arms import StudyConfig, StudyStats
from common.study.assist import aid_scale, model_assisted_reads
from common.study.local import breast_scores, scores_roc, site_study
from common.synth.readers import load_simulated_readers

logger = logging.getLogger("calcifl")

# A simulation serves many messages in one process: keep a few sites' samples in memory
# (a real SuperNode starts a fresh process per message and relies on the disk cache).
# A site holds up to five items (records, samples, images, test and validation scores):
# enough for three simulated hospitals served by one process to keep theirs between rounds
_MEMORY: OrderedDict = OrderedDict()
_MAX_ITEMS = 16


def _remember(key: tuple, make: Callable):
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    value = make()
    _MEMORY[key] = value
    while len(_MEMORY) > _MAX_ITEMS:
        _MEMORY.popitem(last=False)
    return value


@dataclass
class SiteRecords:
    """A hospital's images split for a seed, its refused inputs and its reader reads."""

    train: list[ImageRecord]
    test: list[ImageRecord]
    problems: ProblemLog
    reads: list[ReaderRead]


@dataclass
class Outcome:
    """What a served request sends back, and what the audit log records of it.

    Attributes
    ----------
    metrics : dict
        Scalars for the reply's MetricRecord.
    site : dict
        Further keys of the reply's "site" record (statistics as JSON, withheld sets).
    weights : dict or None
        The trained models' flat state (train only).
    audit : dict
        What the audit line says was sent.
    """

    metrics: dict
    site: dict = field(default_factory=dict)
    weights: dict[str, torch.Tensor] | None = None
    audit: dict = field(default_factory=dict)


def _steps(result) -> list[tuple[float, float, int]]:
    """Return the accountant entry a DP training call added."""
    p = result.privacy
    return [(p["noise_multiplier"], p["sample_rate"], result.steps)] if p and result.steps else []


def weights_digest(flat: dict[str, torch.Tensor]) -> str:
    """Return a digest of model weights (names and values): the key of cached scores."""
    digest = hashlib.sha256()
    for name, tensor in flat.items():
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class Hospital:
    """One site's service over its own data, under its own node configuration.

    Parameters
    ----------
    settings : NodeSettings
        The hospital's node configuration (data, state, privacy and release policy).
    """

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.audit = AuditLog(settings.audit_path)
        self.identity = Identity(settings.identity_path)

    @classmethod
    def from_config(cls, node: dict, run: dict | None = None) -> Hospital:
        """Open the hospital of a node configuration (refused with BAD_REQUEST if malformed)."""
        try:
            return cls(NodeSettings.from_config(node, run))
        except ValueError as exc:
            raise Refusal(Code.BAD_REQUEST, f"node configuration: {exc}") from exc

    @property
    def name(self) -> str:
        """The hospital's id as it appears in replies (its config's, else its pseudonym)."""
        return self.settings.hospital_id or self.identity.pseudonym

    def read_options(self, spec: RoundSpec) -> ReadOptions:
        """Return the round's reading options, with this hospital's own image-key salt."""
        read = self.settings.reading(spec.models().read)
        return replace(read, key_salt=self.identity.salt)

    # -- data -------------------------------------------------------------------------

    def _data_key(self, seed: int) -> tuple:
        s = self.settings
        # the state folder holds the reader pseudonyms that records() applies
        return (str(s.data_dir), repr(s.partition), s.test_fraction, seed, str(s.state_dir))

    def records(self, seed: int) -> SiteRecords:
        """Return the hospital's (training, held-out) images for ``seed``, refused inputs, reads."""

        def load() -> SiteRecords:
            s = self.settings
            problems = ProblemLog(echo=False)
            train, test, reads = site_study_data(
                s.data_dir, s.partition, s.test_fraction, seed, problems
            )
            if not s.share_reader_ids and reads:
                # readers leave only as role pseudonyms; the mapping stays in the state folder
                names = self.identity.readers((r.reader_id, r.role) for r in reads)
                reads = [replace(r, reader_id=names[r.reader_id]) for r in reads]
            if problems:
                # the detail (file names) stays in this hospital's log; counts may leave
                logger.warning(
                    "%s: %d input(s) refused: %s", self.name, len(problems), problems.counts()
                )
            return SiteRecords(train, test, problems, reads)

        key = ("records", *self._data_key(seed), self.settings.share_reader_ids)
        return _remember(key, load)

    def material(self, spec: RoundSpec) -> SiteData:
        """Return both models' training and validation samples for a round's settings."""
        models = spec.models()
        key = ("site", *self._data_key(spec.seed), spec.model_spec, spec.dp, spec.val_fraction)
        key = (*key, spec.weak_targets)
        key = (*key, str(self.settings.cache_dir))
        settings = SiteSettings(
            detector=models.detector,
            classifier=models.classifier,
            read=self.read_options(spec),
            val_fraction=spec.val_fraction,
            seed=spec.seed,
            cache_dir=self.settings.cache_dir,
            dp=spec.dp,
            weak_targets=spec.weak_targets,
        )
        return _remember(key, lambda: SiteData(self.records(spec.seed).train, settings))

    def store(self, read: ReadOptions) -> ImageStore:
        """Return decoded images (the hospital's preprocessing cache) for these reading options."""
        cache = self.settings.cache_dir
        return _remember(
            ("store", str(cache), read.cache_token()),
            lambda: ImageStore(PreprocessCache(cache, read)),
        )

    @staticmethod
    def models(spec: RoundSpec, weights: dict[str, torch.Tensor]) -> dict[str, torch.nn.Module]:
        """Build the round's models with ``weights`` (refused if they do not fit)."""
        m = spec.models()
        models = {
            "detector": build("detector", vars(m.detector)),
            "classifier": build("classifier", vars(m.classifier)),
        }
        try:
            load_flat_state(models, weights)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise Refusal(Code.BAD_REQUEST, str(exc)) from exc
        return models

    # -- services ---------------------------------------------------------------------

    def train(
        self, weights: dict[str, torch.Tensor], spec: RoundSpec, server_round: int
    ) -> Outcome:
        """Train both models from ``weights`` on this hospital's data (DP per its policy).

        Under DP the reply carries only what is accounted or coarse: the models, ε and δ,
        and example counts rounded down to a power of two; no loss and no step count.
        """
        node = self.settings
        if node.require_dp and not spec.dp:
            raise Refusal(Code.POLICY, "this hospital trains only with DP-SGD (require-dp)")
        models = self.models(spec, weights)
        site = self.material(spec)
        if site.examples("detector") == 0:
            raise Refusal(Code.NO_DATA, "no usable training images")
        # a model with no examples here is left as received: nothing planned, nothing spent
        configs = {
            t: c
            for t, c in spec.train_configs(server_round, self.name).items()
            if site.examples(t) > 0
        }
        dp = self.dp_config(spec)
        ledger = PrivacyLedger(node.ledger_path, self.name)
        plans, histories, planned = None, None, {}
        if dp is not None:
            with ledger.book() as book:
                histories = {t: book.history(t) for t in configs}
                noise = {t: book.noise(t, spec.federation, spec.run) for t in configs}
                noise = {t: z for t, z in noise.items() if z and not spec.dp_noise}
                plans = self._plan(site, configs, dp, histories, spec, server_round, noise)
                for t, plan in plans.items():  # counted before any step: a crash is spent
                    rid = book.plan(
                        t,
                        spec.federation,
                        spec.run,
                        server_round,
                        plan.noise_multiplier,
                        plan.sample_rate,
                        plan.steps,
                        plan.delta,
                    )
                    planned[t] = rid
        results = train_models(models, site, configs, dp=dp, plans=plans, histories=histories)
        metrics = {P.REFUSED_INPUTS: len(self.records(spec.seed).problems) + len(site.problems)}
        if dp is None:
            metrics[P.NUM_EXAMPLES] = len(site.train_images)
            for t in TASKS:
                m = results[t].metrics if t in results else {}
                metrics[P.examples_key(t)] = site.examples(t)
                metrics[P.model_metric(t, "train-loss")] = float(m.get("train_loss", 0.0))
                metrics[P.model_metric(t, "val-loss")] = float(m.get("val_loss", 0.0))
                metrics[P.model_metric(t, "steps")] = results[t].steps if t in results else 0
        else:
            metrics[P.NUM_EXAMPLES] = public_size(len(site.train_images))
            for t in TASKS:
                metrics[P.examples_key(t)] = public_size(site.examples(t))
            after = {t: [*histories[t], *_steps(results[t])] for t in configs}
            for t in TASKS:
                eps = epsilon(after[t], dp.delta) if t in after else ledger.spent(t, dp.delta)
                metrics[P.model_metric(t, "epsilon")] = eps
            metrics.update(self._privacy_metrics(ledger, site, dp.delta, after))
            ledger.settle(
                {t: (rid, results[t].steps) for t, rid in planned.items()},
                sent={"weights": "both models", **metrics},
            )
        new = flat_state(models)
        audit = {
            "status": "trained",
            "arrays_sent": {k: list(v.shape) for k, v in new.items()},
            "metrics_sent": metrics,
            "skipped_models": sorted(set(TASKS) - set(configs)),
        }
        return Outcome(metrics, weights=new, audit=audit)

    def dp_config(self, spec: RoundSpec) -> DPConfig | None:
        """Return the round's DP settings under this hospital's δ and ε caps (or None).

        Raises
        ------
        Refusal
            POLICY if the request asks for a δ above the hospital's ``dp-delta``.
        """
        if not spec.dp:
            return None
        node = self.settings
        if spec.dp_delta > node.dp_delta:
            raise Refusal(
                Code.POLICY,
                f"δ {spec.dp_delta:g} asked; this hospital's limit is dp-delta {node.dp_delta:g}",
            )
        cap = node.privacy_budget if node.privacy_budget is not None else spec.dp_epsilon
        dp = spec.dp_config(cap)
        return replace(
            dp, delta=spec.dp_delta or node.dp_delta, target_epsilon=min(spec.dp_epsilon, cap)
        )

    def _plan(self, site, configs, dp, histories, spec, server_round, noise) -> dict:
        """Plan every model's DP call; refuse the round if any cap would be passed."""
        node = self.settings
        remaining = max(1, spec.num_rounds - server_round + 1)
        which = "privacy-budget" if node.privacy_budget is not None else "the requested dp-epsilon"
        for t in configs:
            if dp.delta * site.examples(t) > 1:
                raise Refusal(
                    Code.POLICY,
                    f"round {server_round} refused: δ {dp.delta:g} is above 1/n for the {t}'s "
                    "examples here; lower dp-delta",
                )
        try:
            plans = plan_models(site, configs, dp, histories, remaining, noise)
        except PrivacyBudgetError as exc:
            raise Refusal(
                Code.BUDGET_EXCEEDED,
                f"round {server_round} refused: {exc.task} would pass {which} "
                f"({exc.budget:g} at δ {dp.delta:g}); {exc}",
            ) from exc
        composed = epsilon(
            [
                *(h for t in TASKS for h in (histories or {}).get(t, [])),
                *((p.noise_multiplier, p.sample_rate, p.steps) for p in plans.values()),
            ],
            dp.delta,
        )
        if composed > node.privacy_total_budget:
            raise Refusal(
                Code.BUDGET_EXCEEDED,
                f"round {server_round} refused: both models together would reach ε "
                f"{composed:.3f} > privacy-total-budget {node.privacy_total_budget:g} "
                f"(δ {dp.delta:g}, over every federation and run)",
            )
        return plans

    @staticmethod
    def _privacy_metrics(ledger, site, delta, after) -> dict:
        """δ, the composed ε over both models and its per-patient figure (group privacy)."""
        histories = [h for t in TASKS for h in (after[t] if t in after else ledger.history(t))]
        composed = epsilon(histories, delta)
        k = public_size(site.examples_per_patient(), up=True)
        patient_eps, patient_delta = group_privacy(composed, delta, k)
        return {
            P.DP_DELTA: delta,
            P.COMPOSED_EPSILON: composed,
            P.PATIENT_EXAMPLES: k,
            P.PATIENT_EPSILON: patient_eps,
            P.PATIENT_DELTA: patient_delta,
        }

    def evaluate(self, weights: dict[str, torch.Tensor], spec: RoundSpec) -> Outcome:
        """Run the cascade on the held-out images; summable statistics after release."""
        models = self.models(spec, weights)
        test = self.records(spec.seed).test
        if not test:
            raise Refusal(Code.NO_DATA, "no held-out images to evaluate")
        cascade = spec.models().cascade
        stats, breasts = evaluate_images(models, test, self.store(self.read_options(spec)), cascade)
        _remember(self._scores_key(spec, "test", weights_digest(weights)), lambda: breasts)
        stats, withheld = release_eval(stats, self.settings.min_cell)
        metrics = {P.NUM_EXAMPLES: len(test), P.WITHHELD: len(withheld)}
        return self._statistics(metrics, P.EVAL_STATS, stats.to_dict(), withheld, "evaluated")

    def calibrate_marks(self, weights: dict[str, torch.Tensor], spec: RoundSpec) -> Outcome:
        """Return detection statistics on the validation images (the marks' operating point).

        Only the FROC counts leave (false clusters by score, breast area searched), under
        the same release rule as an evaluation. The detector runs alone: no classifier.
        """
        records = self.records(spec.seed)
        val = validation_split(records.train, spec.val_fraction, spec.seed)["val"]
        if not val:
            raise Refusal(Code.NO_DATA, "no validation images to calibrate the marks on")
        models = self.models(spec, weights)
        store = self.store(self.read_options(spec))
        stats = detection_stats(models, val, store, spec.models().cascade)
        detection = EvalStats(froc=stats.froc, points=stats.points)
        stats, withheld = release_eval(detection, self.settings.min_cell)
        metrics = {P.NUM_EXAMPLES: len(val), P.WITHHELD: len(withheld)}
        payload = stats.to_dict()
        return self._statistics(metrics, P.EVAL_STATS, payload, withheld, "calibrated-marks")

    def study_config(self, requested: StudyConfig) -> StudyConfig:
        """Return the study a request asks for, under this hospital's policy (its min-cell wins)."""
        if not self.settings.reader_study:
            raise Refusal(Code.POLICY, "this hospital does not take part in reader studies")
        return replace(requested, min_cell=max(requested.min_cell, self.settings.min_cell))

    def calibrate(
        self, weights: dict[str, torch.Tensor], spec: RoundSpec, study: StudyConfig
    ) -> Outcome:
        """Reader study, step 1: the model's scores on validation breasts (ROC histograms)."""
        study = self.study_config(study)
        roc = scores_roc(self._scores(weights, spec, "val"), study.bins)
        withheld = []
        if any(0 < n < study.min_cell for n in (roc.n_pos, roc.n_neg)):
            roc, withheld = RocStats.empty(study.bins), ["validation"]
        metrics = {P.NUM_EXAMPLES: roc.n_pos + roc.n_neg}
        return self._statistics(metrics, P.VALIDATION_ROC, roc.to_dict(), withheld, "calibrated")

    def reader_study(
        self,
        weights: dict[str, torch.Tensor],
        spec: RoundSpec,
        study: StudyConfig,
        threshold: float,
    ) -> Outcome:
        """Reader study, step 2: this hospital's summable study statistics after release."""
        study = self.study_config(study)
        records = self.records(spec.seed)
        if not records.test:
            raise Refusal(Code.NO_DATA, "no held-out images for the reader study")
        scores = self._scores(weights, spec, "test")
        validation = None
        if study.assistance == "simulated-model":
            validation = self._scores(weights, spec, "val")
        store = self.store(self.read_options(spec))
        stats = self.assisted_study(
            scores, validation, records, study, threshold, spec.seed, stored_spacing(store)
        )
        cases = stats.strata["all"]["cases"] if "all" in stats.strata else 0
        metrics = {
            P.NUM_EXAMPLES: cases,
            P.WITHHELD: len(stats.withheld),
            P.EXCLUDED: sum(stats.excluded.values()),
        }
        return self._statistics(
            metrics, P.STUDY_STATS, stats.to_dict(), stats.withheld, "reader-study"
        )

    def assisted_study(
        self,
        scores: dict,
        validation: dict | None,
        records: SiteRecords,
        study: StudyConfig,
        threshold: float,
        seed: int,
        spacing: Callable | None = None,
    ) -> StudyStats:
        """Study statistics with the study's assistance and the reads' provenance.

        With ``simulated-model`` assistance (simulated readers only) the aided reads are
        simulated from the model's ``scores`` on the held-out breasts, its ``validation``
        scores setting the aid's scale. ``spacing`` (an image's stored pixel spacing, see
        :func:`stored_spacing`) lets readers' marks be localised on the findings.
        """
        try:
            simulated = load_simulated_readers(self.settings.data_dir)
        except ValueError as exc:
            raise Refusal(Code.NO_DATA, str(exc)) from exc
        assistance = "recorded"
        if study.assistance == "simulated-model":
            if simulated is None:
                raise Refusal(
                    Code.POLICY,
                    "assistance 'simulated-model' needs simulated readers (a synthetic "
                    "hospital folder); this hospital's readers are real",
                )
            scale = aid_scale(validation or {})
            profiles, perception = simulated
            names = {}
            if not self.settings.share_reader_ids:
                names = self.identity.readers((p.reader_id, p.role) for p in profiles.values())
            reads = model_assisted_reads(
                records.reads,
                records.test,
                scores,
                profiles,
                perception,
                scale,
                study.detection_threshold,
                seed,
                names,
            )
            records = replace(records, reads=reads)
            assistance = "simulated from the model"
        elif simulated is not None and any(r.aided for r in records.reads):
            assistance = "simulated CAD"
        stats = self.study_stats(scores, records, study, threshold, spacing)
        stats.provenance = {
            "readers": "simulated" if simulated is not None else "recorded",
            "assistance": assistance,
        }
        return stats

    @staticmethod
    def study_stats(
        scores: dict,
        records: SiteRecords,
        study: StudyConfig,
        threshold: float,
        spacing: Callable | None = None,
    ) -> StudyStats:
        """Study statistics of the held-out breasts' model ``scores``, after release."""
        try:
            return site_study(scores, records.test, records.reads, study, threshold, spacing)
        except ValueError as exc:
            raise Refusal(Code.NO_DATA, str(exc)) from exc

    # -- helpers ----------------------------------------------------------------------

    def _scores_key(self, spec: RoundSpec, which: str, digest: str) -> tuple:
        key = (*self._data_key(spec.seed), spec.val_fraction, spec.model_spec, digest)
        return ("scores", which, *key)

    def _scores(self, weights: dict[str, torch.Tensor], spec: RoundSpec, which: str) -> dict:
        """Return the model's breast scores on the held-out ("test") or validation images.

        Kept in memory by the weights' digest: the reader study after the last round
        reuses the scores that round's evaluation computed.
        """
        records = self.records(spec.seed)
        if which == "test":
            images = records.test
        else:
            images = validation_split(records.train, spec.val_fraction, spec.seed)["val"]

        def score() -> dict:
            models = self.models(spec, weights)
            cascade = spec.models().cascade
            return breast_scores(models, images, self.store(self.read_options(spec)), cascade)

        return _remember(self._scores_key(spec, which, weights_digest(weights)), score)

    def _statistics(
        self, metrics: dict, key: str, stats: dict, withheld: list[str], status: str
    ) -> Outcome:
        """Counts-only statistics (JSON in the "site" record), and what the audit records."""
        payload = json.dumps(stats)
        site = {key: payload, P.WITHHELD: ",".join(withheld)}
        audit = {
            "status": status,
            "metrics_sent": metrics,
            "withheld": ",".join(withheld),
            "stats_bytes": len(payload),
            "tables": released_tables(stats),
        }
        return Outcome(metrics, site=site, audit=audit)


def stored_spacing(store: ImageStore) -> Callable[[ImageRecord], tuple[float, float]]:
    """Return a function giving an image's stored pixel spacing (mm), through the cache."""
    return lambda record: tuple(store.get(record).source_spacing_mm)


@dataclass
class Refused:
    """A request refused: the code and the one-line reason that leave the hospital."""

    code: Code
    reason: str


def serve(
    kind: str,
    node_config: dict,
    run_config: dict,
    read_config: Callable[[], dict],
    work: Callable[[Hospital, RoundSpec, int], Outcome],
    audit: dict | None = None,
) -> tuple[Hospital | None, Outcome | Refused]:
    """Serve one request: open the hospital, read the round, run ``work``, audit it.

    Every failure becomes a :class:`Refused` naming the hospital, never a path or data
    (those stay in the hospital's log and audit line).

    Parameters
    ----------
    kind : str
        What is asked ("train", "evaluate", ...), for the audit log.
    node_config, run_config : dict
        The node's own configuration, and the run's (``data-root`` of local simulations).
    read_config : callable
        Returns the round configuration received (and may refuse a malformed message).
    work : callable
        ``work(hospital, spec, server_round)`` → :class:`Outcome`.
    audit : dict, optional
        Further fields of the audit line (e.g. a central-DP clipping norm).
    """
    started = time.perf_counter()
    event, hospital = {"message": kind}, None
    try:
        hospital = Hospital.from_config(node_config, run_config)
        spec, server_round = read_round(read_config())
        event.update(
            round=server_round,
            run=spec.run,
            federation=spec.federation,
            config_received=spec.to_config(),
        )
        result: Outcome | Refused = work(hospital, spec, server_round)
        event.update(result.audit)
        if "tables" in result.audit:  # statistics leave without DP noise: count them too
            PrivacyLedger(hospital.settings.ledger_path, hospital.name).record_evaluation(
                kind,
                spec.federation,
                spec.run,
                server_round,
                result.audit["tables"],
                [w for w in result.audit["withheld"].split(",") if w],
                sorted([*result.metrics, *result.site]),
            )
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reply, never a crash
        result = _refused(exc, event, hospital.name if hospital else None)
    event.update(audit or {})
    event["seconds"] = round(time.perf_counter() - started, 3)
    event["threads"] = torch.get_num_threads()
    (hospital.audit if hospital else AuditLog(None)).write(event)
    return hospital, result


def read_round(config: dict) -> tuple[RoundSpec, int]:
    """Return the round's :class:`RoundSpec` and number from a received configuration."""
    try:
        spec = RoundSpec.received(config)
        server_round = int(config.get(P.SERVER_ROUND, 0))
    except (ValueError, TypeError) as exc:
        raise Refusal(Code.BAD_REQUEST, str(exc)) from exc
    if P.PROXIMAL_MU in config:  # FedProx sends its own μ
        spec = replace(spec, proximal_mu=float(config[P.PROXIMAL_MU]))
    return spec, server_round


def _refused(exc: Exception, event: dict, site: str | None) -> Refused:
    if isinstance(exc, Refusal):
        code, reason = exc.code, exc.reason
    elif isinstance(exc, CalciflInputError):
        code, reason = Code.NO_DATA, f"data unusable at this hospital ({exc.kind}); see its log"
    else:
        code, reason = Code.FAILED, f"{type(exc).__name__} at this hospital; see its log"
    logger.warning("%s refused: %s", event.get("message"), exc, exc_info=code == Code.FAILED)
    event.update(status="refused", code=int(code), reason=reason, local_detail=str(exc))
    return Refused(code, P.refusal_reason(site, reason))

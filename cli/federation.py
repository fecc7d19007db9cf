"""``calcifl simulate`` and ``calcifl deploy``: simulated and real federations."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cli.options import (
    add_read_options,
    add_study_args,
    add_synth_options,
    node_reading,
    run_config,
    study_config,
    synth_choices,
)
from common.synth.generate import SynthConfig
from server.settings import STRATEGIES, RunSettings

logger = logging.getLogger("calcifl")

RUN = RunSettings()
SYNTH = SynthConfig()


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a consortium with Flower; optionally train and compare the baselines."""
    from simulations.simulate import (
        SimulationSetup,
        hospital_nodes,
        partition_nodes,
        run_simulation,
    )

    out = args.out.resolve()
    if args.synthetic and args.data:
        logger.error("--synthetic generates the hospitals: give it or --data, not both")
        return 2
    chosen = synth_choices(args)
    synthetic_only = (
        chosen["vendors"]
        or chosen["finding_rate"]
        or chosen["mimics"] is not None
        or chosen["ffdm_artifacts"]
    )
    if args.data and synthetic_only:
        logger.error(
            "--vendors, --finding-rate, --mimics and --ffdm-artifacts describe --synthetic "
            "hospitals"
        )
        return 2
    if args.resume and not (out / "checkpoints").is_dir():
        logger.error("%s: no checkpoints to resume from", out)
        return 2
    cache = args.cache or out / "cache"
    state = out / "hospital-state"
    extra = {} if args.min_cell is None else {"min-cell": args.min_cell}
    if args.privacy_budget:
        extra["privacy-budget"] = args.privacy_budget
    extra.update(node_reading(args))  # how every hospital reads its own files
    if args.data and len(args.data) == 1 and args.partition:
        nodes = partition_nodes(
            args.data[0], args.hospitals, args.partition, args.seed, state, cache, **extra
        )
    elif args.data:
        if args.partition:
            logger.error("--partition needs exactly one pooled --data folder")
            return 2
        nodes = hospital_nodes(args.data, state, cache, **extra)
    else:
        from common.synth.generate import consortium

        synth = SynthConfig(
            hospitals=args.hospitals, exams=args.exams, seed=args.seed + 1, **synth_choices(args)
        )
        try:
            dirs = consortium(out / "data", synth, progress=not args.quiet)
        except ValueError as exc:
            logger.error("%s", exc)
            return 2
        nodes = hospital_nodes(dirs, state, cache, **extra)
    config = {
        "num-server-rounds": args.rounds,
        "strategy": args.strategy,
        "detector-epochs": args.detector_epochs,
        "classifier-epochs": args.classifier_epochs,
        "out-dir": str(out),
        "resume": args.resume,
        "seed": args.seed,
        "min-available-nodes": len(nodes),
        # Flower samples from the nodes connected at that moment: without a minimum, a
        # hospital still starting up would silently miss round 1
        "min-train-nodes": args.min_nodes or max(1, round(args.fraction * len(nodes))),
        "min-evaluate-nodes": args.min_nodes or len(nodes),
        "fraction-train": args.fraction,
        "dp": args.dp,
        "dp-epsilon": args.epsilon,
        "central-dp": args.central_dp,
        "central-dp-clip": args.central_dp_clip,
        "central-dp-noise": args.central_dp_noise,
        "central-dp-epsilon": args.central_dp_epsilon,
        "central-dp-delta": args.central_dp_delta,
        "federation": args.federation or out.name,
        **({"spacing-mm": args.spacing} if args.spacing is not None else {}),
        **run_config(args.set or []),
    }
    if args.reader_study:
        if args.assistance is None and not args.data:
            # synthetic hospitals: the simulated readers read with the federated model
            args.assistance = "simulated-model"
        try:
            study = study_config(args)
        except ValueError as exc:
            logger.error("%s", exc)
            return 2
        config.update({"reader-study": True, "reader-study-config": study.to_json()})
    try:
        settings = RunSettings.from_config(config)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    setup = SimulationSetup(
        nodes, cpus_per_client=args.cpus_per_client, ray_address=args.ray_address
    )
    out.mkdir(parents=True, exist_ok=True)
    reading = {"target-spacing-mm": settings.spacing_mm, **node_reading(args)}
    (out / "reading.json").write_text(json.dumps(reading, indent=2))
    report = run_simulation(settings, setup, progress=not args.quiet, verbose=args.verbose)
    if args.baselines:
        from simulations.baselines import run_baselines
        from simulations.comparison import add_to_report, compare

        which = ("centralised", "local-only") if args.baselines == "all" else (args.baselines,)
        baselines = run_baselines(
            settings, nodes, out / "baselines", which, cache, progress=not args.quiet
        )
        add_to_report(out, compare(report, baselines))
    print((out / "report.md").read_text())
    print(f"run folder: {out} (report.md, report.json, PNG plots, final models)")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Make the certificates and keys of a real federation (offline)."""
    from common.federation.pki import init_ca, node_key, server_cert

    try:
        if args.action == "init-ca":
            paths = init_ca(args.out, args.name)
        elif args.action == "server-cert":
            paths = server_cert(args.ca, args.out, args.host)
        else:
            paths = node_key(args.out)
    except (FileExistsError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    for path in paths:
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the federation commands."""
    p = sub.add_parser(
        "simulate",
        help="simulate a federation of hospitals with Flower (+ baselines, report)",
        description=(
            "Run a federated training of the detector and classifier with Flower's simulation "
            "engine, one SuperNode per hospital: synthetic hospitals (default), one folder per "
            "hospital (--data A B C), or one pooled folder split by patient (--data POOL "
            "--partition dirichlet:0.5). Writes RUN_DIR: checkpoints every round, final models "
            "(usable by 'calcifl evaluate/predict'), report.json/.md and PNG plots."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument(
        "--data",
        nargs="+",
        type=Path,
        default=None,
        help="hospital folders, or one pooled folder with --partition",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="generate synthetic hospitals in RUN_DIR/data (the default without --data)",
    )
    p.add_argument(
        "--hospitals", type=int, default=SYNTH.hospitals, help="hospitals (default %(default)s)"
    )
    p.add_argument(
        "--exams",
        type=int,
        default=SYNTH.exams,
        help="synthetic exams per hospital (default %(default)s)",
    )
    add_synth_options(p)
    p.add_argument(
        "--partition",
        default=None,
        metavar="SCHEME",
        help="split a pooled folder: iid, dirichlet:ALPHA, sizes:W1,W2,... (joined by '+')",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=RUN.num_server_rounds,
        help="federated rounds (default %(default)s)",
    )
    p.add_argument(
        "--strategy",
        default=RUN.strategy,
        choices=STRATEGIES,
        help="aggregation (default %(default)s)",
    )
    for name, default in (("detector", RUN.detector_epochs), ("classifier", RUN.classifier_epochs)):
        p.add_argument(
            f"--{name}-epochs",
            type=int,
            default=default,
            help="local epochs per round (default %(default)s)",
        )
    p.add_argument(
        "--fraction",
        type=float,
        default=RUN.fraction_train,
        help="fraction of hospitals per round (default %(default)s)",
    )
    p.add_argument(
        "--min-nodes",
        type=int,
        default=None,
        help="fewest hospitals per round (default: fraction × hospitals; all for evaluation)",
    )
    p.add_argument("--seed", type=int, default=RUN.seed, help="run seed (default %(default)s)")
    p.add_argument(
        "--federation",
        default=None,
        help="federation name for the hospitals' privacy ledgers (default: RUN_DIR name)",
    )
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last checkpoint")
    p.add_argument(
        "--baselines",
        nargs="?",
        const="all",
        default=None,
        choices=("all", "centralised", "local-only"),
        help="also train the centralised and local-only baselines and compare",
    )
    p.add_argument(
        "--reader-study",
        action="store_true",
        help="after the last round, run the reader-assist study across the hospitals "
        "(reader_study.md/.json/_roc.png; study options below)",
    )
    g = p.add_argument_group("differential privacy (DP-SGD at each hospital)")
    g.add_argument(
        "--dp", action="store_true", help="local DP-SGD (Opacus), ε accounted per hospital"
    )
    g.add_argument(
        "--epsilon",
        type=float,
        default=RUN.dp_epsilon,
        help="target ε over the run (default %(default)s)",
    )
    g.add_argument(
        "--privacy-budget",
        type=float,
        default=None,
        help="every hospital's cap on cumulative ε per model (refuses rounds beyond)",
    )
    g = p.add_argument_group("central differential privacy (hospital-level)")
    g.add_argument(
        "--central-dp",
        action="store_true",
        help="hospitals clip their update, the server adds Gaussian noise to the average "
        "(Flower's client-side fixed clipping; fedavg/fedprox)",
    )
    g.add_argument(
        "--central-dp-clip",
        type=float,
        default=RUN.central_dp_clip,
        help="update clipping norm (default %(default)s)",
    )
    g.add_argument(
        "--central-dp-noise",
        type=float,
        default=RUN.central_dp_noise,
        help="noise multiplier (0: derived from --central-dp-epsilon)",
    )
    g.add_argument(
        "--central-dp-epsilon",
        type=float,
        default=RUN.central_dp_epsilon,
        help="ε budget of the run (0: none; needs --central-dp-noise)",
    )
    g.add_argument(
        "--central-dp-delta",
        type=float,
        default=RUN.central_dp_delta,
        help="δ (default %(default)s)",
    )
    p.add_argument(
        "--min-cell",
        type=int,
        default=None,
        help="hospitals withhold statistics of sets with fewer positives/negatives than this "
        "(default: none withheld; with --study FILE, the file's min_cell)",
    )
    p.add_argument(
        "--set",
        nargs="*",
        metavar="KEY=VALUE",
        help="any other run-config key (see server/settings.py), e.g. lr=5e-4",
    )
    g = p.add_argument_group("simulation engine (Ray)")
    g.add_argument(
        "--cpus-per-client",
        type=float,
        default=None,
        help="Ray CPUs (torch threads) per hospital process (default: the cores shared out, "
        "or all of them one hospital at a time when there are more hospitals than cores)",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="attach to an existing Ray cluster (e.g. 'auto' or 'HOST:6379')",
    )
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_study_args(p)
    add_read_options(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "deploy",
        help="certificates and keys for a real federation (CA, SuperLink, hospitals)",
        description=(
            "Offline, with the cryptography package: init-ca makes the consortium's CA "
            "(ca.crt, ca.key); server-cert makes the SuperLink's TLS certificate for its host "
            "names/addresses (server.pem, server.key); node-key makes a hospital's SuperNode "
            "key pair (OpenSSH ECDSA P-384: FILE and FILE.pub; send only the .pub). "
            "Private keys are mode 0600 and never overwritten."
        ),
    )
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = dsub.add_parser("init-ca", help="create the consortium CA")
    d.add_argument("--out", type=Path, required=True, help="folder for ca.crt and ca.key")
    d.add_argument("--name", default="calcifl consortium CA", help="CA common name")
    d = dsub.add_parser("server-cert", help="create the SuperLink's TLS certificate")
    d.add_argument("--ca", type=Path, required=True, help="folder holding ca.crt and ca.key")
    d.add_argument("--out", type=Path, required=True, help="folder for server.pem/.key")
    d.add_argument(
        "--host",
        action="append",
        required=True,
        help="host name or IP address clients use (repeat for several)",
    )
    d = dsub.add_parser("node-key", help="create a hospital's SuperNode key pair")
    d.add_argument("--out", type=Path, required=True, help="private key file (FILE.pub too)")
    p.set_defaults(func=cmd_deploy)

"""A consortium in one process: Flower's simulation engine over per-hospital data folders.

Each simulated hospital is a Flower SuperNode whose ClientApp reads its own folder (real
DICOM files) — or its share of one pooled folder split by :mod:`common.data.partition` — and
the ServerApp runs :class:`server.federation.Federation`, exactly as in a deployment.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from common.federation.environment import private_env
from server.settings import RunSettings

logger = logging.getLogger("calcifl")


@dataclass
class SimulationSetup:
    """Who takes part and how the engine runs them.

    Attributes
    ----------
    node_configs : list of dict
        One node configuration per hospital (see :mod:`common.hospital.settings`).
    cpus_per_client : float or None
        Ray CPUs (and torch threads) per ClientApp; None: :func:`auto_cpus`.
    ray_address : str or None
        Attach to an existing Ray cluster (``ray.init(address=...)``) instead of starting
        a local one.
    """

    node_configs: list[dict]
    cpus_per_client: float | None = None
    ray_address: str | None = None
    ray_init: dict = field(default_factory=dict)


def hospital_nodes(
    data_dirs: list[Path], state_root: Path, cache_dir: Path | None = None, **extra
) -> list[dict]:
    """Node configurations of hospitals given as separate folders.

    A synthetic hospital whose scanner writes no pixel spacing (film) is given its
    scanner's spacing as ``fallback-spacing``, as a real site states it in its node config.
    """
    nodes = []
    for d in data_dirs:
        d = Path(d).resolve()
        node = {"data-dir": str(d), "hospital-id": d.name, "state-dir": str(state_root / d.name)}
        if cache_dir:
            node["cache-dir"] = str(cache_dir)
        node.update(_scanner_spacing(d))
        nodes.append({**node, **extra})
    return nodes


def _scanner_spacing(folder: Path) -> dict:
    """``fallback-spacing`` of a synthetic hospital whose files carry no spacing."""
    info = folder / "synth.json"
    if not info.is_file():
        return {}
    vendor = json.loads(info.read_text()).get("vendor", {})
    if vendor.get("spacing_tag") != "none":
        return {}
    return {"fallback-spacing": float(vendor["spacing_mm"])}


def partition_nodes(
    data_dir: Path,
    hospitals: int,
    scheme: str,
    seed: int,
    state_root: Path,
    cache_dir: Path | None = None,
    **extra,
) -> list[dict]:
    """Node configurations of ``hospitals`` simulated sites sharing one pooled folder."""
    nodes = []
    for i in range(hospitals):
        name = f"site-{i + 1}"
        node = {
            "data-dir": str(Path(data_dir).resolve()),
            "hospital-id": name,
            "state-dir": str(state_root / name),
            "partition": f"{i}/{hospitals}",
            "partition-scheme": scheme,
            "partition-seed": seed,
        }
        if cache_dir:
            node["cache-dir"] = str(cache_dir)
        nodes.append({**node, **extra})
    return nodes


def auto_cpus(hospitals: int, cores: int | None = None) -> int:
    """CPUs per hospital: share the cores when they suffice, else run one at a time.

    Three hospitals on two cores train faster one after the other with two threads each
    than two at a time with the third waiting (``docs/results.md``, "Simulation engine").
    """
    cores = cores or os.cpu_count() or 1
    return cores if hospitals > cores else max(1, cores // hospitals)


def backend_config(setup: SimulationSetup) -> dict:
    """Flower's Ray backend configuration."""
    init = {"include_dashboard": False, "logging_level": "error", **setup.ray_init}
    if setup.ray_address:
        init["address"] = setup.ray_address
    else:
        # a local cluster on loopback only
        init.setdefault("_node_ip_address", "127.0.0.1")
    cpus = setup.cpus_per_client or auto_cpus(len(setup.node_configs))
    return {"client_resources": {"num_cpus": cpus, "num_gpus": 0.0}, "init_args": init}


def round_line(r: int, total: int, record: dict, hospitals: int) -> str:
    """One progress line for a finished round: hospitals that trained, pooled AUCs."""
    trained = len(record.get("trained", []))
    line = f"round {r}/{total} · {trained}/{hospitals} hospitals trained"
    missing = [x["site"] for x in record.get("refused", [])] + list(record.get("dropped", []))
    if missing:
        line += f" ({', '.join(missing)} did not)"
    line += f" · {record['seconds']:.0f} s"
    ev = (record.get("evaluation") or {}).get("pooled", {}).get("summary")
    if ev:
        line += (
            f" · breast AUC {ev['breast']['auc']:.3f}"
            f" · cluster AUC {ev['classification']['auc']:.3f}"
        )
    if r < total:
        line += f" · round {r + 1} training…"
    return line


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def run_simulation(
    settings: RunSettings, setup: SimulationSetup, progress: bool = True, verbose: bool = False
) -> dict:
    """Run the federation in-process; return its report (also written to its run folder).

    Without ``verbose``, Flower's per-round INFO lines give way to one progress bar.
    """
    private_env(Path(settings.run_dir("sim")) / ".flwr")
    from flwr.simulation import run_simulation as flwr_run_simulation

    from client.app import make_client_app
    from server.app import make_server_app

    run_dir = settings.run_dir("sim")
    run_dir.mkdir(parents=True, exist_ok=True)
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.propagate = False  # Flower prints through its own handler
    quiet = _BelowWarning()
    if not verbose:
        flwr_logger.addFilter(quiet)
    run_id = f"sim-{time.strftime('%Y%m%d-%H%M%S')}"
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]rounds"),
        BarColumn(bar_width=12),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not progress) as bar:
        hospitals = len(setup.node_configs)
        task = bar.add_task(
            "rounds",
            total=settings.num_server_rounds,
            info=f"round 1/{settings.num_server_rounds}: {hospitals} hospitals training…",
        )

        def on_round(r: int, total: int, record: dict) -> None:
            bar.update(task, completed=r, info=round_line(r, total, record, hospitals))

        server = make_server_app(settings, run_id, on_round)
        client = make_client_app(setup.node_configs)
        try:
            flwr_run_simulation(
                server_app=server,
                client_app=client,
                num_supernodes=len(setup.node_configs),
                backend_config=backend_config(setup),
            )
        finally:
            flwr_logger.removeFilter(quiet)
    report_file = run_dir / "report.json"
    if not report_file.is_file():
        raise RuntimeError(f"the simulation ended without a report in {run_dir}; see the log")
    return json.loads(report_file.read_text())

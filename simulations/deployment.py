"""A real federation on one machine: SuperLink + hospital SuperNodes on 127.0.0.1.

:class:`LocalFederation` starts Flower's own processes exactly as the README's "Running a
real federation" section documents them — ``flower-superlink`` with TLS and SuperNode
authentication, each hospital's public key registered with ``flwr supernode register``,
``flower-supernode`` per hospital with its own key, data and runtime port, and the run
launched with ``flwr run . deploy`` — with telemetry and update checks off and all Flower
state under one ``FLWR_HOME``. The integration tests drive it; it also serves as a script a
coordinator can read.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.federation.environment import PRIVATE_ENV
from common.federation.pki import init_ca, node_key, server_cert

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections (or the process exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def node_config(values: dict) -> str:
    """Format a ``--node-config`` / ``--run-config`` string (TOML values)."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        elif '"' in str(value) or "\\" in str(value):
            if "'" in str(value):
                raise ValueError(f"{key}: a value cannot hold both kinds of quote")
            text = f"'{value}'"  # TOML literal string: e.g. a JSON value
        else:
            text = f'"{value}"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def processes(name: str, marker: str) -> list[int]:
    """PIDs whose command line contains ``name`` and whose environment holds ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if name not in cmdline:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environ:
            pids.append(int(entry.name))
    return pids


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@dataclass
class Hospital:
    """One hospital of the local federation."""

    name: str
    data_dir: Path
    key: Path
    port: int
    process: subprocess.Popen | None = None
    log: Path | None = None


@dataclass
class LocalFederation:
    """SuperLink, SuperNodes and ``flwr run`` as real processes (see the module docstring).

    Parameters
    ----------
    root : Path
        Folder of everything: ``pki/``, ``keys/``, ``flwr-home/``, logs, hospital state.
    """

    root: Path
    port: int = field(default_factory=free_port)
    hospitals: dict[str, Hospital] = field(default_factory=dict)
    superlink: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        """Create the folders, the PKI and the CLI's SuperLink configuration."""
        self.root = Path(self.root)
        self.pki = self.root / "pki"
        self.keys = self.root / "keys"
        self.home = self.root / "flwr-home"
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.pki / "ca.crt").exists():
            init_ca(self.pki)
            server_cert(self.pki, self.pki, ["127.0.0.1", "localhost"])
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\n'
            f'address = "127.0.0.1:{self.port}"\n'
            f'root-certificates = "{(self.pki / "ca.crt").resolve()}"\n'
        )

    @property
    def env(self) -> dict[str, str]:
        """Environment of every process started: no telemetry, state under FLWR_HOME."""
        return {**os.environ, **PRIVATE_ENV, "FLWR_HOME": str(self.home)}

    def _start(self, args: list[str], log: Path) -> subprocess.Popen:
        handle = log.open("ab")
        return subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.root,
            start_new_session=True,
        )

    def start_superlink(self, timeout: float = 60) -> None:
        """Start ``flower-superlink`` with TLS and SuperNode authentication."""
        self.superlink = self._start(
            [
                "flower-superlink",
                "--ssl-ca-certfile",
                str(self.pki / "ca.crt"),
                "--ssl-certfile",
                str(self.pki / "server.pem"),
                "--ssl-keyfile",
                str(self.pki / "server.key"),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--database",
                str(self.root / "superlink.db"),
            ],
            self.root / "superlink.log",
        )
        wait_for_port(self.port, timeout, self.superlink)

    def flwr(self, *args: str, timeout: float = 120, cwd: Path | None = None):
        """Run the ``flwr`` CLI against this SuperLink; return the completed process."""
        return subprocess.run(
            ["flwr", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd or self.root,
            timeout=timeout,
        )

    def add_hospital(self, name: str, data_dir: Path, register: bool = True) -> Hospital:
        """Make a hospital's key pair and (unless told not to) register its public key."""
        key = self.keys / name
        if not key.exists():
            node_key(key)
        if register:
            done = self.flwr("supernode", "register", str(key) + ".pub", "deploy")
            if done.returncode != 0:
                raise RuntimeError(f"registering {name} failed: {done.stdout}{done.stderr}")
        hospital = Hospital(name, Path(data_dir), key, free_port())
        self.hospitals[name] = hospital
        return hospital

    def start_supernode(
        self, name: str, ca: bool = True, extra: dict | None = None, trusted: Path | None = None
    ) -> subprocess.Popen:
        """Start a hospital's ``flower-supernode`` (its own runtime port, key and data).

        ``trusted``: a YAML file of trusted entities (``--trusted-entities``); the SuperNode
        then runs only apps that one of them signed.
        """
        h = self.hospitals[name]
        config = {
            "data-dir": str(h.data_dir),
            "hospital-id": name,
            "state-dir": str(self.root / "state" / name),
            "cache-dir": str(self.root / "cache" / name),
            **(extra or {}),
        }
        args = [
            "flower-supernode",
            "--superlink",
            f"127.0.0.1:{self.port}",
            "--auth-supernode-private-key",
            str(h.key),
            "--node-config",
            node_config(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(h.port),
            "--max-retries",
            "3",
            "--max-wait-time",
            "30",
        ]
        if ca:
            args[3:3] = ["--root-certificates", str(self.pki / "ca.crt")]
        if trusted is not None:
            args += ["--trusted-entities", str(trusted)]
        h.log = self.root / f"supernode-{name}.log"
        h.process = self._start(args, h.log)
        return h.process

    def online(self) -> int:
        """Return how many SuperNodes the SuperLink lists as online."""
        done = self.flwr("supernode", "list", "deploy", "--format", "json")
        try:
            nodes = json.loads(done.stdout).get("nodes", [])
        except json.JSONDecodeError:
            return 0
        return sum(1 for n in nodes if n.get("status") == "online")

    def wait_online(self, count: int, timeout: float = 90) -> None:
        """Wait until ``count`` SuperNodes are online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.online() >= count:
                return
            time.sleep(1)
        raise TimeoutError(f"fewer than {count} SuperNodes online after {timeout:.0f} s")

    def launch(self, run_config: dict, app: Path = ROOT) -> subprocess.Popen:
        """Start ``flwr run <app> deploy --stream`` in the background (see :meth:`finish`)."""
        return subprocess.Popen(
            [
                "flwr",
                "run",
                str(app),
                "deploy",
                "--stream",
                "--run-config",
                node_config(run_config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=app,
        )

    def finish(self, launched: subprocess.Popen, timeout: float = 900) -> dict:
        """Wait for a launched run; return {"run_id", "status", "output"}.

        ``flwr run`` exits 0 even when the run failed, so the status comes from
        ``flwr ls``.
        """
        try:
            output, _ = launched.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            launched.kill()
            output, _ = launched.communicate()
            raise TimeoutError(
                f"flwr run still running after {timeout:.0f} s:\n{output[-3000:]}"
            ) from None
        match = re.search(r"Successfully started run (\d+)", output)
        if not match:
            raise RuntimeError(f"flwr run did not start a run:\n{output[-3000:]}")
        run_id = match.group(1)
        listing = self.flwr("ls", "--run-id", run_id, "deploy", "--format", "json")
        try:
            runs = json.loads(listing.stdout).get("runs", [])
            status = runs[0].get("status", "unknown") if runs else "unknown"
        except json.JSONDecodeError:
            status = "unknown"
        return {"run_id": run_id, "status": status, "output": output}

    def run(self, run_config: dict, timeout: float = 900, app: Path = ROOT) -> dict:
        """Launch the app with ``flwr run . deploy`` and wait for it (see :meth:`finish`)."""
        return self.finish(self.launch(run_config, app), timeout)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL a process we started, with its process group."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def processes(self, name: str, process: subprocess.Popen | None = None) -> list[int]:
        """PIDs of this federation's processes named ``name`` (in ``process``'s group)."""
        pids = processes(name, f"FLWR_HOME={self.home}")
        if process is not None:
            pids = [p for p in pids if _pgid(p) == process.pid]
        return pids

    def stop(self) -> None:
        """Terminate every process started (SIGTERM, then SIGKILL), process groups included."""
        procs = [h.process for h in self.hospitals.values() if h.process] + [self.superlink]
        for p in procs:
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            if p is None:
                continue
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=15)

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

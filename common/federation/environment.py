"""Environment that keeps every Flower/Ray process we start from phoning home."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}


def private_env(flwr_home: str | Path | None = None) -> dict[str, str]:
    """Set (in this process, inherited by children) the no-telemetry variables.

    Parameters
    ----------
    flwr_home : str or Path, optional
        Flower's state folder (else ``~/.flwr`` would be written).

    Returns
    -------
    dict
        The variables set.
    """
    env = dict(PRIVATE_ENV)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    os.environ.update(env)
    return env

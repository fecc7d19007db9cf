"""calcifl ServerApp: strategy, rounds, checkpoints, pooled evaluation and the report.

``flwr run .`` uses :data:`app`, configured by ``[tool.flwr.app.config]`` (and
``--run-config``); in-process simulations build theirs with :func:`make_server_app`.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.federation import RoundCallback, run_federation
from server.settings import RunSettings

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run configuration."""
    settings = RunSettings.from_config(dict(context.run_config))
    run_federation(grid, settings, f"run-{context.run_id}")


def make_server_app(
    settings: RunSettings, run_id: str | None = None, on_round: RoundCallback | None = None
) -> ServerApp:
    """Return a ServerApp bound to ``settings`` (simulations: Flower passes no run config)."""
    sim = ServerApp()

    @sim.main()
    def _main(grid: Grid, context: Context) -> None:
        run_federation(grid, settings, run_id or f"run-{context.run_id}", on_round)

    return sim

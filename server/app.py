"""calcifl ServerApp.

Federated rounds are not part of this version yet; the app object exists so
``[tool.flwr.app.components]`` resolves, and running it says so plainly.
"""

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Refuse to run: federated training is not available in this version."""
    raise RuntimeError("calcifl: federated training is not available in this version")

"""calcifl ClientApp.

The message handlers (local training and evaluation of the detector and classifier) are
not part of this version yet; the app object exists so ``[tool.flwr.app.components]``
resolves.
"""

from flwr.clientapp import ClientApp

app = ClientApp()

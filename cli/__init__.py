"""The ``calcifl`` command line (the outermost layer: it composes every other package)."""

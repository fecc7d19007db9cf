"""Flower server side of calcifl: a thin ServerApp over :mod:`common`."""

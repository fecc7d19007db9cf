"""Flower client side of calcifl: a thin ClientApp over :mod:`common`."""

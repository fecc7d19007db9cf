"""Compositions of calcifl: the command line, simulations, baselines and reports."""

"""Platform-neutral core of calcifl: data, models, training, privacy and statistics.

Nothing in this package imports Flower, so every piece can be used and tested alone.
"""

"""Models and their training: detector, classifier, samples, DP-SGD, the cascade."""

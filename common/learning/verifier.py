"""A cluster verifier: how likely a detected cluster is a finding, from its shape and pixels.

The detector scores points; a cluster's detection score is the mean of its three best.
A straight bright line (an emulsion scratch, a calcified vessel's tracks) strings many
high points together and so scores like a finding. The verifier looks at the cluster as
a whole — how many points, how long and how wide, how elongated and how straight, how
densely packed, and how bright they are against the crop around them — and gives the
probability that a cluster with these features is a finding. The cascade's detection
score of a cluster becomes the detector's score times that probability, so the
operating point is calibrated on the product, as before on the detector's score.

The model is a logistic regression on :data:`FEATURES` (standardised), fitted on the
clusters the trained detector finds on the training images
(:func:`common.learning.verification.fit_verifier`): it learns from the site's own
images, not from a rule set by hand. It is stored as a module like the other models
(its weights and standardisation in ``verifier.pt``), so a model folder stays loadable
without unpickling anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: What the verifier sees of a cluster, in this order.
FEATURES = (
    "detection_score",  # mean of the three best point scores
    "mean_point_score",
    "median_point_score",
    "log_points",
    "log_length_mm",  # extent along the points' principal axis
    "log_width_mm",  # extent across it
    "log_elongation",  # ratio of the principal axes' deviations
    "straightness",  # share of the points' variance along the principal axis
    "log_density",  # points per mm² of the length x width rectangle
    "point_intensity",  # mean pixel value at the points
    "crop_mean",  # pixel mean of the crop around the centre
    "crop_deviation",
    "contrast",  # (point intensity - crop mean) / crop deviation
)

#: Side of the crop around a cluster's centre, canonical pixels.
CROP = 64


@dataclass(frozen=True)
class VerifierConfig:
    """Architecture of :class:`Verifier` (what ``model.json`` records)."""

    features: int = len(FEATURES)

    def __post_init__(self) -> None:
        """Check the feature count against :data:`FEATURES`."""
        if self.features != len(FEATURES):
            raise ValueError(f"verifier: {self.features} features, expected {len(FEATURES)}")


def cluster_features(
    pixels: np.ndarray,
    spacing_mm: float,
    points: np.ndarray,
    point_scores: np.ndarray,
    members,
    detection_score: float,
    centre,
) -> np.ndarray:
    """Return the :data:`FEATURES` of one cluster (float64).

    Parameters
    ----------
    pixels : np.ndarray
        The canonical image.
    spacing_mm : float
        Its pixel spacing.
    points, point_scores : np.ndarray
        The image's points (N, 2) canonical (row, col) and their heatmap scores.
    members : sequence of int
        The cluster's indices into ``points``.
    detection_score : float
        The detector's score of the cluster.
    centre : (float, float)
        The cluster's centre (row, col).
    """
    idx = np.asarray(members, dtype=int)
    pts, sc = points[idx].astype(np.float64), point_scores[idx].astype(np.float64)
    centred = (pts - pts.mean(axis=0)) * spacing_mm
    cov = np.cov(centred.T) + 1e-6 * np.eye(2) if len(pts) > 1 else 1e-6 * np.eye(2)
    values, vectors = np.linalg.eigh(cov)  # ascending
    along = centred @ vectors[:, ::-1]
    length, width = np.ptp(along[:, 0]), np.ptp(along[:, 1])
    r = np.clip(pts[:, 0].astype(int), 0, pixels.shape[0] - 1)
    c = np.clip(pts[:, 1].astype(int), 0, pixels.shape[1] - 1)
    half = CROP // 2
    cr, cc = int(round(centre[0])), int(round(centre[1]))
    crop = pixels[max(cr - half, 0) : cr + half, max(cc - half, 0) : cc + half]
    at_points = float(pixels[r, c].mean())
    mean, deviation = float(crop.mean()), float(crop.std())
    return np.array(
        [
            detection_score,
            sc.mean(),
            np.median(sc),
            np.log1p(len(pts)),
            np.log1p(length),
            np.log1p(width),
            np.log1p(np.sqrt(values[1] / values[0])),
            values[1] / values.sum(),
            np.log1p(len(pts) / max(length * max(width, 0.5), 1.0)),
            at_points,
            mean,
            deviation,
            (at_points - mean) / (deviation + 1e-6),
        ],
        dtype=np.float64,
    )


class Verifier(nn.Module):
    """Logistic regression on standardised :data:`FEATURES`: P(finding) of a cluster."""

    def __init__(self, config: VerifierConfig = VerifierConfig()) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.features, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(config.features, dtype=torch.float64))
        self.head = nn.Linear(config.features, 1, dtype=torch.float64)
        # p = 0.5 for every cluster until fitted: no preference before any data
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return logits (N,) of (N, F) raw features."""
        return self.head((features.double() - self.mean) / self.scale).squeeze(1)

    @torch.no_grad()
    def probability(self, features: np.ndarray) -> np.ndarray:
        """Return P(finding) of (N, F) raw features."""
        if len(features) == 0:
            return np.zeros(0)
        x = torch.from_numpy(np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURES)))
        return torch.sigmoid(self(x)).numpy()

    @torch.no_grad()
    def set_from(self, mean, scale, weight, bias: float) -> None:
        """Load a fitted standardisation and logistic regression."""
        self.mean.copy_(torch.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.scale.copy_(torch.as_tensor(np.asarray(scale, dtype=np.float64)))
        self.head.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float64)).view(1, -1))
        self.head.bias.fill_(float(bias))

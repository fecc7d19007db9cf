"""Fitting the cluster verifier on a trained detector's own clusters.

The trained detector runs, as the cascade runs it, over the training images; each cluster
it finds is a *finding* when its centre lies in an annotated finding's ROI (the ROI grown
by 1 mm, the rule of :func:`common.evaluation.images.evaluate_images`), a *false cluster*
otherwise. A logistic regression (scikit-learn, L2, ``C = 1``) on the standardised
:data:`~common.learning.verifier.FEATURES` separates the two, and its coefficients are
copied into a :class:`~common.learning.verifier.Verifier`.

As with mined negatives (:mod:`common.learning.mining`), a calcification nobody annotated
counts as false, and the verifier is not fitted with DP-SGD: it would be a release of the
patients' images outside the privacy accounting.
"""

from __future__ import annotations

import numpy as np
from rich.progress import Progress
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from common.imaging.roi import in_roi
from common.learning.inference import DEFAULT_CASCADE, CascadeConfig, run_cascade
from common.learning.samples import ImageStore, PreparedImage
from common.learning.verifier import Verifier, VerifierConfig, cluster_features

#: Fewest clusters of each kind (findings, false) the fit needs.
MIN_EACH = 5


def labelled_clusters(
    detector: nn.Module,
    images: list[PreparedImage],
    store: ImageStore,
    cascade: CascadeConfig = DEFAULT_CASCADE,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the features (N, F) and labels (N,) of the detector's clusters on ``images``."""
    rows, labels = [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("verifier: clusters", total=len(images))
        for item in images:
            image = store.get(item.record)
            result = run_cascade({"detector": detector}, image, cascade)
            tolerance = 1.0 / image.spacing_mm[0]
            for c in result.clusters:
                rows.append(
                    cluster_features(
                        image.pixels,
                        image.spacing_mm[0],
                        result.points,
                        result.point_scores,
                        c.members,
                        c.detection_score,
                        c.centre,
                    )
                )
                labels.append(
                    any(in_roi(c.centre, f.box, f.centroid, tolerance) for f in item.findings)
                )
            bar.advance(task)
    features = np.stack(rows) if rows else np.zeros((0, VerifierConfig().features))
    return features, np.array(labels, dtype=bool)


def fit_verifier(
    detector: nn.Module,
    images: list[PreparedImage],
    store: ImageStore,
    cascade: CascadeConfig = DEFAULT_CASCADE,
    progress: bool = False,
) -> tuple[Verifier | None, dict]:
    """Fit a :class:`Verifier` on the clusters ``detector`` finds on ``images``.

    Returns
    -------
    verifier : Verifier or None
        None when the images give fewer than :data:`MIN_EACH` findings or false clusters.
    report : dict
        Clusters of each kind, and why no verifier was fitted (``skipped``) if none was.
    """
    features, labels = labelled_clusters(detector, images, store, cascade, progress)
    report = {"findings": int(labels.sum()), "false_clusters": int((~labels).sum())}
    if min(report["findings"], report["false_clusters"]) < MIN_EACH:
        report["skipped"] = (
            f"{report['findings']} finding and {report['false_clusters']} false clusters on "
            f"the training images: fewer than {MIN_EACH} of a kind"
        )
        return None, report
    scaler = StandardScaler().fit(features)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = LogisticRegression(C=1.0, max_iter=5000).fit((features - scaler.mean_) / scale, labels)
    verifier = Verifier(VerifierConfig())
    verifier.set_from(scaler.mean_, scale, model.coef_[0], model.intercept_[0])
    return verifier.eval(), report

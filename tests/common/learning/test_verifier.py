"""The cluster verifier: features of a cluster, the logistic model, its place in the cascade."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from common.learning.inference import ClusterResult, verify
from common.learning.models import build, load_models, save_models
from common.learning.verifier import FEATURES, Verifier, VerifierConfig, cluster_features


def _features(points, spacing=0.1, pixels=None):
    points = np.asarray(points, dtype=float)
    pixels = np.zeros((200, 200), np.float32) if pixels is None else pixels
    scores = np.linspace(0.9, 0.5, len(points))
    centre = points.mean(axis=0)
    f = cluster_features(pixels, spacing, points, scores, range(len(points)), 0.8, centre)
    return dict(zip(FEATURES, f, strict=True))


def test_a_line_is_long_straight_and_elongated_a_cluster_is_not():
    line = _features([[100, 20 + 8 * i] for i in range(20)])  # 15.2 mm along a row
    rng = np.random.default_rng(0)
    blob = _features(100 + rng.normal(0, 8, size=(20, 2)))
    assert len(line) == len(FEATURES)
    assert np.expm1(line["log_length_mm"]) == pytest.approx(15.2, abs=1e-6)
    assert np.expm1(line["log_width_mm"]) == pytest.approx(0.0, abs=1e-6)
    assert line["straightness"] > 0.999 > 0.9 > blob["straightness"]
    assert line["log_elongation"] > 3 * blob["log_elongation"]
    assert line["log_density"] < blob["log_density"]
    # lengths are in mm: the same points at twice the spacing are twice as long
    coarse = _features([[100, 20 + 8 * i] for i in range(20)], spacing=0.2)
    assert np.expm1(coarse["log_length_mm"]) == pytest.approx(30.4, abs=1e-6)


def test_contrast_is_the_points_brightness_against_their_crop():
    pixels = np.full((200, 200), 0.3, np.float32)
    pixels[100, 90:110:4] = 0.9
    f = _features([[100, c] for c in range(90, 110, 4)], pixels=pixels)
    assert f["point_intensity"] == pytest.approx(0.9)
    assert f["crop_mean"] == pytest.approx(0.3 + 0.6 * 5 / 64**2, abs=1e-6)
    assert f["contrast"] > 10


def test_the_module_is_the_fitted_logistic_regression():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(300, len(FEATURES)))
    y = x[:, 0] + 0.5 * x[:, 4] + rng.normal(0, 1, 300) > 4.5
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(x), y)
    verifier = Verifier()
    assert np.allclose(verifier.probability(x), 0.5)  # before fitting: no preference
    verifier.set_from(scaler.mean_, scaler.scale_, model.coef_[0], model.intercept_[0])
    expected = model.predict_proba(scaler.transform(x))[:, 1]
    assert np.allclose(verifier.probability(x), expected, atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        VerifierConfig(features=3)


def test_a_saved_verifier_loads_with_the_other_models(tmp_path):
    torch.manual_seed(0)
    models = {"detector": build("detector", {"width": 4}), "verifier": Verifier()}
    rng = np.random.default_rng(2)
    models["verifier"].set_from(
        rng.normal(size=len(FEATURES)), rng.uniform(1, 2, len(FEATURES)), rng.normal(size=13), 0.3
    )
    save_models(tmp_path, models, {})
    loaded, spec = load_models(tmp_path)  # weights only: nothing is unpickled
    assert spec["models"]["verifier"] == {"features": len(FEATURES)}
    x = rng.normal(size=(7, len(FEATURES)))
    assert np.array_equal(loaded["verifier"].probability(x), models["verifier"].probability(x))


class _Prefers:
    """A stand-in verifier that doubts straight lines and believes everything else."""

    def probability(self, features):
        return np.where(features[:, FEATURES.index("straightness")] > 0.99, 0.1, 0.9)


def test_verified_scores_weigh_the_detector_and_reorder_the_clusters():
    image = type("Image", (), {"pixels": np.zeros((200, 200), np.float32), "spacing_mm": (0.1,)})
    line = [[50, 20 + 8 * i] for i in range(10)]
    rng = np.random.default_rng(3)
    blob = (150 + rng.normal(0, 5, size=(10, 2))).tolist()
    points = np.array(line + blob)
    scores = np.full(len(points), 0.6)
    clusters = [
        ClusterResult((50.0, 56.0), (50, 20, 51, 93), 10, 0.9, members=tuple(range(10))),
        ClusterResult((150.0, 150.0), (140, 140, 160, 160), 10, 0.6, members=tuple(range(10, 20))),
    ]
    out = verify(_Prefers(), image, points, scores, clusters)
    assert [c.detector_score for c in out] == [0.6, 0.9]
    assert [c.verification for c in out] == [0.9, 0.1]
    assert [c.detection_score for c in out] == pytest.approx([0.54, 0.09])

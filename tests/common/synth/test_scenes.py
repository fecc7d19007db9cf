import numpy as np

from common.synth.calcs import Calc, Cluster
from common.synth.scenes import film_scene, with_rows_beside


def test_a_scene_holds_the_cluster_at_its_centre():
    speck = Cluster(
        "PUNCTATE", "CLUSTERED", False, 3, [Calc(0.0, 0.0, "ellipse", 0.3, 0.3, 0, 0.4)]
    )
    bare, at = film_scene(np.random.default_rng(0))
    drawn, centre = film_scene(np.random.default_rng(0), speck)
    assert np.array_equal(at, centre) and drawn.shape == (700, 560)
    r, c = np.round(centre).astype(int)
    added = drawn - bare
    assert added[r, c] > 0.3 and np.abs(added[r + 20 :, :]).max() < 1e-6


def test_rows_beside_lie_outward_of_the_tracks():
    rng = np.random.default_rng(1)
    x = np.arange(0.0, 20.0, 0.2)
    tracks = np.concatenate([np.stack([np.zeros_like(x), x], 1), np.stack([np.ones_like(x), x], 1)])
    out = with_rows_beside(tracks, rng)
    added = out[len(tracks) :]
    beside = np.isclose(np.abs(added[:, 0] - 0.5), 0.9)  # 0.4 mm beyond either track
    assert 0.3 * len(tracks) < beside.sum() < 0.5 * len(tracks)
    assert 2 <= (~beside).sum() <= 5 and beside[: beside.sum()].all()  # then the strays

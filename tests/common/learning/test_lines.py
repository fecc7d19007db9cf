import numpy as np

from common.learning.inference import ClusterResult, ImageResult, set_aside_lines
from common.learning.lines import line_artifact, line_shares
from common.synth.artifacts import _mimic
from common.synth.calcs import make_cluster

GRID_MM = 0.2  # the detector's peaks: every other 0.1 mm canonical pixel


def _peaks(calcs, rng, found=0.7):
    """Peaks a detector would give: along each rod, at each round calcification's centre,
    on the peak grid (at a random offset), ``found`` of them kept."""
    pts = []
    for c in calcs:
        if c.kind == "rod":
            for t in np.arange(-c.a, c.a + 1e-9, 0.4):
                pts.append((c.dy + t * np.sin(c.angle), c.dx + t * np.cos(c.angle)))
        else:
            pts.append((c.dy, c.dx))
    pts = np.asarray(pts) + rng.uniform(0, GRID_MM, 2)
    pts = np.unique(np.round(pts / GRID_MM) * GRID_MM, axis=0)
    return pts[rng.uniform(size=len(pts)) < found]


def test_the_phantoms_calcified_vessels_and_scratches_are_set_aside():
    rng = np.random.default_rng(0)
    vessels = [line_artifact(_peaks(_mimic("vascular", rng).calcs, rng)) for _ in range(60)]
    assert sum(v == "vessel" for v in vessels) >= 54, vessels  # 9 in 10
    scratches = []
    for _ in range(60):  # an emulsion scratch: a straight line 5-25 mm long
        length, angle = rng.uniform(5.0, 25.0), rng.uniform(0, np.pi)
        t = np.sort(rng.uniform(0, length, int(length / 0.5)))
        line = np.stack([t * np.sin(angle), t * np.cos(angle)], axis=1) + rng.uniform(0, 1, 2)
        scratches.append(line_artifact(np.round(line / GRID_MM) * GRID_MM))
    assert sum(s == "scratch" for s in scratches) >= 54, scratches


def test_hardly_a_drawn_finding_is_set_aside_linear_and_segmental_ones_included():
    rng = np.random.default_rng(1)
    flagged, along_lines, judged = [], 0, 0
    for i in range(600):
        cluster = make_cluster(malignant=i % 3 != 0, subtlety=int(rng.integers(1, 6)), rng=rng)
        pts = _peaks(cluster.calcs, rng, found=float(rng.uniform(0.5, 1.0)))
        if len(pts) >= 8:
            judged += 1
            along_lines += cluster.distribution in ("LINEAR", "SEGMENTAL")
        kind = line_artifact(pts)
        if kind is not None:
            flagged.append((cluster.calc_type, cluster.distribution, kind, len(pts)))
    assert judged > 300 and along_lines > 40
    # 2 of 2261 judged in a longer draw (docs/results.md, "Line artifacts")
    assert len(flagged) <= 2, flagged


def test_shares_of_a_line_and_of_two_tracks():
    t = np.arange(0, 10, 0.5)
    line = np.stack([t, np.zeros_like(t)], axis=1)
    one, two = line_shares(line)
    assert one == 1.0
    tracks = np.concatenate([line, line + [0.0, 1.0]])
    one, two = line_shares(tracks @ np.array([[0.8, 0.6], [-0.6, 0.8]]))  # turned by 37°
    assert one == 0.5 and two == 1.0
    spread = np.random.default_rng(2).normal(0, [3.0, 0.4], (40, 2))  # a cast duct's spread
    assert max(line_shares(spread)) < 0.7 and line_artifact(spread) is None
    assert line_artifact(line[:7]) is None  # too few points to judge
    assert line_artifact(line[:8] / 4) is None  # 0.9 mm: too short


def test_a_set_aside_cluster_keeps_its_score_but_is_never_a_mark():
    t = np.arange(0, 12, 0.4)
    points = np.concatenate([np.stack([t, t * 0], 1), [[50, 50], [51, 52], [52, 50]]]) / 0.1
    line = ClusterResult((60.0, 0.0), (0, 0, 120, 1), len(t), 0.9, 0.3, tuple(range(len(t))))
    spot = ClusterResult((510.0, 506.0), (500, 500, 521, 521), 3, 0.6, 0.8, (30, 31, 32))
    clusters = set_aside_lines([line, spot], points, 0.1)
    assert clusters[0] is spot and clusters[1] is line
    assert line.artifact == "scratch" and line.detection_score == 0.0
    assert line.detector_score == 0.9 and spot.artifact is None
    result = ImageResult(points, np.ones(len(points)), clusters, mark_threshold=None)
    assert result.marks == [spot]  # even with every cluster marked
    assert result.score == spot.suspicion

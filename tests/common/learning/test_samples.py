import numpy as np
import pytest

from common.data.cache import PreprocessCache
from common.data.folders import load_hospital
from common.learning.samples import (
    ClassifierCrops,
    ImageStore,
    detector_patches,
    heatmap_target,
    negative_patches,
    prepare,
)


def test_heatmap_target_peaks_at_points():
    t = heatmap_target(np.array([[10.0, 20.0], [50.0, 50.4]]), 64, 2, 1.0)
    assert t.shape == (32, 32) and t[5, 10] == 1.0 and t[25, 25] == 1.0
    assert t.max() == 1.0 and (t == 1.0).sum() == 2
    assert heatmap_target(np.zeros((0, 2)), 64, 2, 1.0).max() == 0.0


@pytest.fixture(scope="module")
def prepared(consortium, tmp_path_factory):
    store = ImageStore(PreprocessCache(tmp_path_factory.mktemp("cache")))
    records = load_hospital(consortium / "hospital-1", echo=False).images
    return store, prepare(records, store)


def test_findings_are_mapped_to_canonical_coordinates(prepared):
    store, images = prepared
    with_findings = [im for im in images if im.findings]
    assert with_findings
    for item in with_findings[:4]:
        m = store.get(item.record)
        for f in item.findings:
            r0, c0, r1, c1 = f.box
            assert r0 <= f.centroid[0] <= r1 and c0 <= f.centroid[1] <= c1
            assert m.mask[int(f.centroid[0]), int(f.centroid[1])]  # inside the breast
            assert len(f.points) > 1


def test_detector_patches_hold_positives_and_negatives(prepared):
    store, images = prepared
    ds = detector_patches(images, store, 96, 2, 1.0, np.random.default_rng(0))
    x, y = ds.tensors
    assert x.shape[1:] == (1, 96, 96) and y.shape[1:] == (1, 48, 48)
    peaks = (y == 1.0).flatten(1).sum(dim=1)
    assert (peaks > 0).sum() > 0 and (peaks == 0).sum() > 0  # both kinds present
    again = detector_patches(images, store, 96, 2, 1.0, np.random.default_rng(0))
    assert np.array_equal(again.tensors[0].numpy(), x.numpy())  # seeded


def test_negative_patches_keep_the_image_target(prepared):
    store, images = prepared
    item = next(im for im in images if im.findings)
    normal = next(im for im in images if not im.findings)
    at_finding = item.findings[0].points[:1]
    m = store.get(normal.record)
    r, c = np.argwhere(m.mask)[len(np.argwhere(m.mask)) // 2]
    spots = [at_finding, np.array([[r, c]], dtype=float), np.zeros((0, 2))]
    ds = negative_patches(
        [item, normal, normal], store, spots, 96, 2, 1.0, np.random.default_rng(0)
    )
    x, y = ds.tensors
    assert x.shape == (2, 1, 96, 96)  # an image without spots adds nothing
    assert y[0].max() == 1.0  # a spot on a calcification still teaches its peak
    assert y[1].max() == 0.0  # a normal image's patch is all background
    assert x[1].abs().sum() > 0


def test_classifier_crops_and_augmentation(prepared):
    store, images = prepared
    plain = ClassifierCrops(images, store, 64)
    aug = ClassifierCrops(images, store, 64, augment=True, seed=1, repeats=3)
    assert len(aug) == 3 * len(plain) and len(plain) > 0
    x, y = plain[0]
    assert x.shape == (1, 64, 64) and y.item() in (0.0, 1.0)
    assert not np.allclose(aug[0][0].numpy(), x.numpy())


def test_image_store_is_bounded_in_bytes(prepared, consortium):
    store, images = prepared
    small = ImageStore(store.cache, max_bytes=1)
    for item in images[:3]:
        small.get(item.record)
    assert len(small._lru) == 1


def test_findings_without_points_get_candidates_for_training_and_keep_centroids_for_scoring(
    consortium, tmp_path
):
    store = ImageStore(PreprocessCache(tmp_path / "cache"))
    site = consortium / "hospital-1"
    cbis = load_hospital(site, fmt="cbis-ddsm", echo=False).images  # ROI masks only
    assert all(f.points is None for im in cbis for f in im.findings)
    scoring = prepare(cbis, store)
    training = prepare(cbis, store, weak="candidates")
    assert all(len(f.points) == 1 for im in scoring for f in im.findings)
    counts = [len(f.points) for im in training for f in im.findings]
    assert counts and np.mean(counts) > 3
    for a, b in zip(scoring, training, strict=True):
        for fa, fb in zip(a.findings, b.findings, strict=True):
            np.testing.assert_array_equal(fa.centroid, fb.centroid)
    # annotated points are used as they are, whatever the rule
    manifest = load_hospital(site, echo=False).images
    with_points = prepare(manifest, store, weak="candidates")
    plain = prepare(manifest, store)
    for a, b in zip(with_points, plain, strict=True):
        for fa, fb in zip(a.findings, b.findings, strict=True):
            np.testing.assert_array_equal(fa.points, fb.points)


def test_mil_turns_each_region_into_a_bag_of_the_detector_targets(consortium, tmp_path):
    from common.learning.samples import BAG, detector_patches

    store = ImageStore(PreprocessCache(tmp_path / "cache"))
    cbis = load_hospital(consortium / "hospital-1", fmt="cbis-ddsm", echo=False).images
    images = prepare(cbis, store, weak="mil")
    findings = [f for im in images for f in im.findings]
    assert findings and all(f.bag is not None for f in findings)
    for f in findings:
        r0, c0, r1, c1 = f.bag
        box = f.box
        assert r0 < box[0] and c0 < box[1] and r1 > box[2] and c1 > box[3]
    assert all(len(im.peak_points) == 0 for im in images)
    data = detector_patches(images, store, 96, 2, 1.5, np.random.default_rng(0))
    y = data.tensors[1]
    assert (y == BAG).any() and not y.ge(0.999).any()  # bags, no peak anywhere

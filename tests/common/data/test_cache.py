"""The preprocessing cache: hits, invalidation, damage, and concurrent readers."""

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from common.data.cache import PreprocessCache
from common.imaging.reading import ReadOptions, read_mammogram
from common.imaging.writing import mammogram_dataset, save


def _write(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    stored = rng.integers(500, 3500, size=(80, 60)).astype(np.uint16)
    stored[:, 45:] = 10  # air on the right
    return save(mammogram_dataset(stored, WindowCenter=2000, WindowWidth=4000), path)


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.info() == b.info() and a.meta == b.meta


def test_hit_returns_identical_image(tmp_path):
    src = _write(tmp_path / "data" / "a.dcm")
    cache = PreprocessCache(tmp_path / "cache")
    first = cache.load(src)
    second = cache.load(src)
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    _same(first, second)
    _same(second, read_mammogram(src))
    # nothing is written next to the source data
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a.dcm"]


def test_changed_file_or_options_miss(tmp_path):
    src = _write(tmp_path / "a.dcm", seed=0)
    cache = PreprocessCache(tmp_path / "cache")
    old = cache.load(src)
    _write(src, seed=1)  # same path, new content
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    new = cache.load(src)
    assert cache.stats.misses == 2
    assert not np.array_equal(old.pixels, new.pixels)
    _same(new, read_mammogram(src))
    other = PreprocessCache(tmp_path / "cache", ReadOptions(target_spacing_mm=0.2))
    coarse = other.load(src)
    assert other.stats.misses == 1 and coarse.pixels.shape == (40, 30)
    # laterality hints change the canonical image, so they are part of the key
    assert cache.key(src, laterality="R") != cache.key(src)


def test_content_identity_survives_touch_and_copy(tmp_path):
    src = _write(tmp_path / "a.dcm")
    by_content = PreprocessCache(tmp_path / "cache", identity="content")
    by_stat = PreprocessCache(tmp_path / "cache")
    keys = by_content.key(src), by_stat.key(src)
    os.utime(src, ns=(1, 1))
    assert by_content.key(src) == keys[0]
    assert by_stat.key(src) != keys[1]  # stat identity sees the touch
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(src.read_bytes())
    assert by_content.key(copy) == keys[0] and by_stat.key(copy) != by_stat.key(src)


def test_damaged_entry_is_rebuilt(tmp_path):
    src = _write(tmp_path / "a.dcm")
    cache = PreprocessCache(tmp_path / "cache")
    cache.load(src)
    entry = cache.entry_path(cache.key(src))
    entry.write_bytes(entry.read_bytes()[:100])
    again = cache.load(src)
    assert cache.stats.damaged == 1 and cache.stats.misses == 2
    _same(again, read_mammogram(src))
    assert cache.clear() == 1


def _worker(args):
    cache_dir, paths = args
    cache = PreprocessCache(cache_dir)
    return [float(cache.load(p).pixels.sum()) for p in paths * 3]


def test_concurrent_readers_and_writers(tmp_path):
    paths = [_write(tmp_path / f"{i}.dcm", seed=i) for i in range(4)]
    expected = [float(read_mammogram(p).pixels.sum()) for p in paths] * 3
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_worker, [(tmp_path / "cache", paths)] * 8)
    for result in results:
        assert result == pytest.approx(expected, rel=0, abs=0)
    # no temporary files left behind
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 4

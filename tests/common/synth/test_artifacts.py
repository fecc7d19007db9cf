"""Film, digital units and calcification mimics: what real images hold besides the breast."""

import json
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from common.errors import CalciflInputError
from common.imaging.breast import search_region
from common.imaging.reading import ReadOptions, read_mammogram
from common.synth.artifacts import add_mimics, ffdm_artifacts, film_artifacts, lead_label
from common.synth.generate import SynthConfig, synthesize
from common.synth.phantom import render_breast


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    out = tmp_path_factory.mktemp("film")
    (site,) = synthesize(out, SynthConfig(hospitals=1, exams=3, seed=5, vendors=("halide",)))
    return site


def test_film_files_are_like_cbis_ddsm(film):
    files = sorted((film / "CBIS-DDSM").glob("*_CC/*/*/000000.dcm"))
    assert files
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == RLELossless
        assert ds.BitsStored == 16 and ds.PhotometricInterpretation == "MONOCHROME2"
        for tag in ("PixelSpacing", "ImagerPixelSpacing", "WindowCenter", "VOILUTSequence"):
            assert tag not in ds, tag
        values = ds.pixel_array
        assert values.max() > 4096 and not (values % 16).any()  # 12-bit content in 16 bits
    info = json.loads((film / "synth.json").read_text())
    assert info["vendor"]["spacing_mm"] == 0.05 and info["image_shape"] == [960, 768]
    counts = info["counts"]
    assert counts["artifact_label"] == counts["images"]  # every film carries its marker
    assert counts["artifact_dust"] > 0 and counts["artifact_noise_spikes"] > 0


def test_film_without_spacing_is_refused_in_one_line_and_read_when_told(film):
    path = next((film / "CBIS-DDSM").glob("*_MLO/*/*/000000.dcm"))
    with pytest.raises(CalciflInputError) as refused:
        read_mammogram(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and "--fallback-spacing" in message
    image = read_mammogram(path, ReadOptions(fallback_spacing_mm=0.05))
    assert image.spacing_mm == (0.1, 0.1) and image.pixels.shape == (480, 384)
    assert image.view == "MLO" and image.laterality in ("L", "R")


def test_borders_label_and_scanner_edge_are_outside_the_search_region(tmp_path):
    from common.imaging.writing import mammogram_dataset, save

    spacing = 0.1
    for seed in range(4):
        rng = np.random.default_rng(seed)
        p = render_breast((480, 384), "CC", 2, rng)
        image = p.attenuation.copy()
        counts = film_artifacts(image, p.mask, spacing, "LCC", rng)
        assert counts.get("label") == 1 and counts["tape"] in (0, 1)
        # what the film added outside the breast: borders, the label, the scanner edge
        added = (image > 0.85) & ~p.mask
        stored = (np.clip(image, 0, 1.2) / 1.2 * 4095).astype(np.uint16)
        ds = mammogram_dataset(stored, view="CC", WindowCenter=2048, WindowWidth=4096)
        m = read_mammogram(save(ds, tmp_path / f"film{seed}.dcm"))
        region = search_region(m.pixels, m.mask, m.view)
        assert not (region & added).any(), seed
        assert (region & p.mask).sum() > 0.9 * p.mask.sum()


def test_lead_label_spells_its_text():
    glyph = lead_label("LCC", 14)
    assert glyph.shape == (14, 2 * (3 * 5 + 2))
    assert glyph[:, :2].all()  # the L's upright


def test_mimics_stay_out_of_the_findings_and_leave_the_truth_unchanged(tmp_path):
    rng = np.random.default_rng(3)
    p = render_breast((480, 384), "CC", 2, rng)
    image = p.attenuation.copy()
    avoid = np.zeros(p.mask.shape, dtype=bool)
    avoid[200:260, 100:160] = True
    counts = add_mimics(image, p.mask, 0.1, np.random.default_rng(1), avoid)
    changed = image != p.attenuation
    assert counts["noise_spikes"] + counts["skin_specks"] > 0 and changed.any()
    assert not changed[avoid].any()
    # with or without mimics, a consortium has the same findings, points and reads
    plain = synthesize(tmp_path / "a", SynthConfig(hospitals=1, exams=3, seed=2), progress=False)
    mimic = synthesize(
        tmp_path / "b", SynthConfig(hospitals=1, exams=3, seed=2, mimics=True), progress=False
    )
    for name in ("calcifl_manifest.csv", "reader_reads.csv"):
        assert (plain[0] / name).read_text() == (mimic[0] / name).read_text(), name
    counts = json.loads((mimic[0] / "synth.json").read_text())["counts"]
    assert counts["artifact_noise_spikes"] > 0
    assert (
        "artifact_noise_spikes" not in json.loads((plain[0] / "synth.json").read_text())["counts"]
    )


def test_paddle_edge_and_skin_fold_are_drawn_where_a_digital_unit_shows_them(monkeypatch):
    from common.synth import artifacts

    monkeypatch.setattr(artifacts, "PADDLE_CHANCE", 1.0)
    monkeypatch.setattr(artifacts, "FOLD_CHANCE", 1.0)
    rng = np.random.default_rng(8)
    p = render_breast((600, 480), "MLO", 2, rng)
    image = p.attenuation.copy()
    counts = ffdm_artifacts(image, p.mask, 0.1, "MLO", np.random.default_rng(2))
    assert counts == {"paddle_edge": 1, "skin_fold": 1}
    change = image - p.attenuation
    rows = np.flatnonzero(p.mask.any(axis=1))
    # the paddle's wall: a line across the whole image, in the air too
    wall = np.flatnonzero(change[:, -5] > 0.02)
    assert wall.size and np.ptp(wall) < 20
    assert rows[0] <= wall.mean() <= rows[-1]
    # the fold: a bright band with a dark line beside it, in the breast's lower part
    darker = (change < -0.01) & p.mask
    assert darker.any() and (np.nonzero(darker)[0] > rows[0] + 0.5 * np.ptp(rows)).all()
    assert not (change[~p.mask] < 0).any()
    plain = p.attenuation.copy()
    assert ffdm_artifacts(plain, p.mask, 0.1, "CC", np.random.default_rng(2))["skin_fold"] == 0
    # the strength scales the contrasts of the same draws
    half = p.attenuation.copy()
    assert ffdm_artifacts(half, p.mask, 0.1, "MLO", np.random.default_rng(2), 0.5) == counts
    in_air = (half - p.attenuation)[~p.mask]  # the wall in the air adds, so halves exactly
    np.testing.assert_allclose(in_air, 0.5 * change[~p.mask], atol=1e-6)


def test_ffdm_artifacts_leave_every_other_draw_of_a_consortium_unchanged(tmp_path):
    config = SynthConfig(hospitals=1, exams=4, seed=3)
    (plain,) = synthesize(tmp_path / "a", config, progress=False)
    (ffdm,) = synthesize(tmp_path / "b", replace(config, ffdm_artifacts=True), progress=False)
    for name in ("calcifl_manifest.csv", "reader_reads.csv"):
        assert (plain / name).read_text() == (ffdm / name).read_text(), name
    counts = json.loads((ffdm / "synth.json").read_text())["counts"]
    assert counts["artifact_paddle_edge"] + counts["artifact_skin_fold"] > 0
    changed = same = 0
    for a in sorted(plain.rglob("000000.dcm")):
        b = ffdm / a.relative_to(plain)
        x, y = pydicom.dcmread(a).pixel_array, pydicom.dcmread(b).pixel_array
        if x.shape == y.shape and np.array_equal(x, y):
            same += 1
        else:
            changed += 1
    assert changed > 0 and same > 0  # some images have neither, and stay as they were

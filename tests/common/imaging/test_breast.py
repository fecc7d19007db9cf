import numpy as np
import pytest
from scipy import ndimage

from common.imaging.breast import (
    _refine_edge,
    bounding_box,
    breast_mask,
    otsu_threshold,
    pectoral_mask,
    search_region,
)
from common.imaging.reading import ReadOptions, read_mammogram
from common.synth.phantom import render_breast
from common.synth.scenes import SCENE_SPACING_MM, stored_scene
from common.synth.vendors import VENDORS


def test_otsu_separates_two_levels():
    values = np.concatenate([np.full(500, 0.1), np.full(500, 0.7)])
    assert 0.1 < otsu_threshold(values) < 0.7


def test_breast_mask_matches_phantom_outline():
    rng = np.random.default_rng(3)
    for view in ("CC", "MLO"):
        p = render_breast((480, 384), view, 2, rng)
        image = np.clip(p.attenuation, 0, 1) + 0.02 * rng.standard_normal(p.mask.shape)
        mask = breast_mask(np.clip(image, 0, 1).astype(np.float32))
        iou = (mask & p.mask).sum() / (mask | p.mask).sum()
        assert iou > 0.95, (view, iou)


def test_bounding_box_and_empty_mask():
    m = np.zeros((10, 12), bool)
    assert bounding_box(m) == (0, 0, 10, 12)
    m[2:5, 3:7] = True
    assert bounding_box(m) == (2, 3, 5, 7)
    assert not breast_mask(np.zeros((64, 64), np.float32)).any()


def test_breast_mask_with_bright_pectoral_and_noiseless_air():
    # A bright pectoral takes Otsu's upper class, leaving air (exactly 0) and a large
    # fatty breast in the lower one: the floor must still be the air
    rows, cols = np.mgrid[:240, :192]
    breast = ((rows - 120) / 118) ** 2 + (cols / 174) ** 2 < 1
    image = np.zeros((240, 192), np.float32)
    image[breast] = 0.3 + 0.1 * np.sin(rows[breast] / 7.0) * np.cos(cols[breast] / 9.0)
    image[breast & (cols < 100 - rows * 0.8)] = 0.9
    mask = breast_mask(image)
    assert (mask & breast).sum() / (mask | breast).sum() > 0.95


def _film(view="CC", seed=5, shape=(480, 384)):
    """A phantom breast on a digitised-film background: grainy air, returned with its truth."""
    rng = np.random.default_rng(seed)
    p = render_breast(shape, view, 2, rng)
    image = np.clip(p.attenuation, 0, 1) + 0.02 * rng.standard_normal(shape)
    return np.clip(image, 0, 1).astype(np.float32), p


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_film_borders_scanner_edges_and_white_frames_are_not_breast():
    image, p = _film()
    h, w = image.shape
    cases = {}
    border = image.copy()
    border[-12:, :] = 0.95  # bright strip along the film's bottom, touching the breast
    border[:, -8:] = 0.9  # and a scanner edge on the nipple side
    cases["border"] = border
    frame = image.copy()
    frame[:3, :] = frame[-3:, :] = frame[:, :3] = frame[:, -3:] = 1.0  # a white frame
    cases["frame"] = frame
    edge = image.copy()
    edge[6:9, :] = 0.97  # a bright scanner line a few pixels in from the top
    cases["scanner line"] = edge
    for name, picture in cases.items():
        mask = breast_mask(picture)
        assert _iou(mask, p.mask) > 0.93, name
        assert not mask[-5:, w // 2 :].any() and not mask[:, -3:].any(), name


def test_the_edge_of_a_large_image_is_found_pixel_by_pixel(monkeypatch):
    # the reduced copy's pixels stand for blocks 10 pixels wide here (1 mm at 0.1 mm):
    # its edge alone is out by up to a block, air beside the skin line searched
    from common.imaging import breast

    def edge_error(view, seed):
        image, p = _film(view, seed, shape=(1500, 1200))
        mask = breast_mask(image, spacing_mm=0.1)
        truth_edge = p.mask & ~ndimage.binary_erosion(p.mask)
        edge = mask & ~ndimage.binary_erosion(mask)
        off = ndimage.distance_transform_edt(~edge)[truth_edge]
        return np.percentile(off, 90), (mask & ~p.mask).sum() / p.mask.sum()

    cases = [(view, seed) for view in ("CC", "MLO") for seed in range(3)]
    refined = [edge_error(*case) for case in cases]
    monkeypatch.setattr(breast, "_refine_edge", lambda image, full, *args: full)
    blocks = [edge_error(*case) for case in cases]
    # 90th percentile 1.0–2.8 pixels and air of 0.1–0.5 % of the breast, against 6.0–8.0
    # and 1.0–1.7 %
    assert max(r[0] for r in refined) <= 3 and min(b[0] for b in blocks) >= 5
    assert all(r[1] < 0.4 * b[1] for r, b in zip(refined, blocks, strict=True))


def test_a_border_wider_than_the_band_goes_whole_with_a_margin_beyond_it():
    from common.imaging.breast import BORDER_MARGIN

    for view in ("MLO", "CC"):
        image, p = _film(view)
        framed = image.copy()
        framed[:34, :] = 0.95  # 3.4 mm of clear film along the top: over the 5 % band
        framed[-30:, :] = 1.0
        mask = breast_mask(framed)
        assert not mask[: 34 + BORDER_MARGIN].any() and not mask[-30 - BORDER_MARGIN :].any()
        inner = p.mask.copy()
        inner[: 34 + BORDER_MARGIN] = inner[-30 - BORDER_MARGIN :] = False
        assert _iou(mask, inner) > 0.93, view
        # no strip of the border's inner edge joins the breast
        assert (mask.mean(axis=1) < 0.9).all(), view


def test_generated_film_borders_leave_no_strip_in_the_mask():
    from common.synth.artifacts import film_artifacts

    for seed in range(6):
        image, p = _film("MLO", seed)
        film = image.copy()
        counts = film_artifacts(film, p.mask, 0.1, "LMLO", np.random.default_rng(seed))
        mask = breast_mask(np.clip(film, 0, 1))
        h, w = mask.shape
        outer = np.r_[0 : int(0.3 * h), int(0.7 * h) : h]
        assert (mask[outer].mean(axis=1) < 0.9).all(), (seed, counts)
        assert _iou(mask, p.mask) > 0.85, (seed, counts)


def test_tape_from_the_film_edge_across_the_skin_line_is_not_breast():
    # a hand-drawn strip: 15 mm wide, from the top edge in the air, over the skin line
    image, p = _film("CC", seed=2, shape=(1500, 1200))
    spacing = 0.2
    rr, cc = np.mgrid[: image.shape[0], : image.shape[1]]
    depth = 400
    edge = np.flatnonzero(p.mask[depth]).max()
    strip = (np.abs(cc - edge - 0.05 * rr) <= 37) & (rr <= depth + 100)
    taped = np.clip(image + 0.1 * strip, 0, 1).astype(np.float32)
    air = strip & ~p.mask
    assert air.sum() > 5000
    under = strip & ndimage.binary_erosion(p.mask, iterations=10)  # 2 mm inside the outline
    assert under.sum() > 5000
    mask = breast_mask(taped, spacing_mm=spacing)
    assert (mask & air).sum() < 0.05 * air.sum()
    assert mask[under].mean() > 0.995  # a finding under tape is still searched
    assert _iou(mask, p.mask) > 0.97
    bottom = breast_mask(taped[::-1], spacing_mm=spacing)[::-1]
    assert bottom[air].mean() < 0.05 and bottom[under].mean() > 0.995


def test_tape_meeting_the_breast_at_the_film_edge_is_cleared_where_it_lies_in_the_air():
    # an oblique view's breast reaches the top edge; the strip overlaps its outline there
    for seed in (2, 3, 5):
        image, p = _film("MLO", seed=seed, shape=(1500, 1200))
        rr, cc = np.mgrid[: image.shape[0], : image.shape[1]]
        edge = np.flatnonzero(p.mask[0]).max()
        strip = (np.abs(cc - edge - 10 - 0.03 * rr) <= 40) & (rr <= 500)
        assert p.mask[0][strip[0]].sum() > 20  # the strip and the breast meet in row 0
        taped = np.clip(image + 0.1 * strip, 0, 1).astype(np.float32)
        # the air under the tape beyond 3 mm of the outline (the mask's 2 mm reduced grid
        # leaves a staircase along it)
        far = strip & ~ndimage.binary_dilation(p.mask, iterations=15)
        assert far.sum() > 1000
        for flip in (False, True):  # tape from the top edge, then from the bottom
            mask = breast_mask(taped[::-1] if flip else taped, spacing_mm=0.2)
            mask = mask[::-1] if flip else mask
            assert not mask[far].any(), (seed, flip)
            assert _iou(mask, p.mask) > 0.98, (seed, flip)


def test_generated_tape_from_the_film_edge_is_cleared_where_it_lies_in_the_air():
    from common.synth.artifacts import add_tape

    for shape, spacing, seeds, cleared in (((1500, 1200), 0.2, 6, 12), ((480, 384), 0.1, 8, 14)):
        left, kept, lost = [], [], []
        for view in ("CC", "MLO"):
            for seed in range(seeds):
                image, p = _film(view, seed, shape=shape)
                strip = add_tape(image, p.mask, spacing, np.random.default_rng(seed + 100))
                mask = breast_mask(np.clip(image, 0, 1).astype(np.float32), spacing_mm=spacing)
                air = strip & ~p.mask
                left.append((mask & air).sum() / air.sum())
                assert _iou(mask, p.mask) > 0.9, (shape, view, seed)
                # the breast more than 2 mm inside the outline (the reduced grid's
                # staircase aside), under the tape and beside it: faint fat beside tape
                # that meets the breast is as dark as air under the tape
                inner = ndimage.binary_erosion(p.mask, iterations=round(2.0 / spacing))
                if (strip & inner).any():
                    kept.append(mask[strip & inner].mean())
                lost.append((inner & ~mask).sum() / inner.sum())
        # the strip's share still in the mask: in the air beside the breast or meeting it
        assert sum(v < 0.1 for v in left) >= cleared, (shape, np.round(left, 2))
        assert min(kept) > 0.98 and max(lost) < 0.0003, (shape, min(kept), max(lost))


def test_the_breast_beside_tape_and_past_its_end_is_kept():
    # oblique views whose faint rim is as dark as the air under the tape: beside a strip
    # that meets the breast at the film's edge (seed 4), and along the skin line past the
    # end of a strip over it (9: from the bottom, 14: from the top)
    from common.synth.artifacts import add_tape

    for seed in (4, 9, 14):
        image, p = _film("MLO", seed, shape=(1500, 1200))
        strip = add_tape(image, p.mask, 0.2, np.random.default_rng(seed + 100))
        mask = breast_mask(np.clip(image, 0, 1).astype(np.float32), spacing_mm=0.2)
        # the breast more than 2 mm inside its outline, within 30 mm of the tape
        inner = ndimage.binary_erosion(p.mask, iterations=10)
        around = ndimage.binary_dilation(strip, iterations=150) & inner
        assert (around & ~mask).sum() < 0.002 * around.sum(), seed
        air = strip & ~p.mask
        assert (mask & air).sum() < 0.1 * air.sum(), seed


def _label_over_tape(view, seed, shape=(480, 384), spacing=0.1, near_end=True):
    """A film with tape over the skin line and a lead label across the tape's far edge.

    The label lies 2 mm or more from the breast, in the rows nearest the tape's end over
    the skin line (``near_end``) or nearest the film's edge; returns the image, the
    phantom, the strip and the label's box, or None where no such place exists.
    """
    from common.synth.artifacts import add_tape, lead_label

    image, p = _film(view, seed, shape=shape)
    strip = add_tape(image, p.mask, spacing, np.random.default_rng(seed + 100))
    glyph = lead_label("RCC", round(4.0 / spacing))
    gh, gw = glyph.shape
    clear = ~ndimage.binary_dilation(p.mask, iterations=round(2.0 / spacing))
    rows = np.flatnonzero((strip & ~p.mask).any(axis=1))
    from_top = rows.mean() < shape[0] / 2
    for r in rows[::-1] if from_top == near_end else rows:
        r = int(r)
        if r + gh > shape[0]:
            continue
        c = np.flatnonzero(strip[r : r + gh].any(axis=0)).max() - gw // 4
        if c + gw < shape[1] and clear[r : r + gh, c : c + gw].all():
            image[r : r + gh, c : c + gw][glyph] = 1.0
            box = np.zeros(shape, dtype=bool)
            box[r : r + gh, c : c + gw] = True
            return np.clip(image, 0, 1).astype(np.float32), p, strip, box
    return None


def test_a_lead_label_across_the_far_edge_of_tape_is_cut_off_from_the_breast():
    # the label hides the tape's far edge for a few millimetres: the tape is followed
    # across it, so neither the air under the tape nor the label joins the breast
    for near_end in (True, False):
        results = []
        for view in ("CC", "MLO"):
            for seed in range(12):
                case = _label_over_tape(view, seed, near_end=near_end)
                if case is None:
                    continue
                image, p, strip, box = case
                mask = breast_mask(image, spacing_mm=0.1)
                air = strip & ~p.mask
                results.append((view, seed, (mask & box).sum(), (mask & air).sum() / air.sum()))
                assert _iou(mask, p.mask) > 0.9, (view, seed)
        assert len(results) >= 15
        cut = [r for r in results if r[2] == 0 and r[3] < 0.1]
        if near_end:  # 17 of 19 (5 before the tape was followed across labels)
            assert len(cut) >= len(results) - 2, results
        else:  # at the film's edge: 9 of 19 (5 before); the label cut off in 19 (16)
            assert len(cut) >= 8 and sum(r[2] == 0 for r in results) >= 18, results


def test_a_fatty_breast_rim_at_the_film_edge_is_not_taken_for_tape():
    # a breast's rim fades to the skin; tape over air ends in a step
    for view, seed in (("MLO", 9), ("MLO", 1), ("CC", 4)):
        image, p = _film(view, seed, shape=(1500, 1200))
        assert _iou(breast_mask(image, spacing_mm=0.2), p.mask) > 0.985, (view, seed)


def test_labels_and_lead_markers_apart_from_the_breast_are_not_breast():
    image, p = _film()
    labelled = image.copy()
    for k in range(3):  # "LCC": three bright letter blocks in the top-right corner
        labelled[20:44, 280 + 26 * k : 300 + 26 * k] = 1.0
    labelled[420:440, 330:360] = 0.85  # a lead marker near the bottom edge
    mask = breast_mask(labelled)
    assert _iou(mask, p.mask) > 0.95
    assert not mask[20:44, 280:360].any() and not mask[420:440, 330:360].any()


def test_search_region_leaves_out_the_pectoral_muscle_of_oblique_views():
    ious = []
    for seed in range(8):
        image, p = _film("MLO", seed)
        mask = breast_mask(image)
        muscle = pectoral_mask(image, mask)
        ious.append(_iou(muscle, p.muscle & mask))
        region = search_region(image, mask, "MLO")
        assert not (region & muscle).any() and (region | muscle).sum() == mask.sum()
    assert np.median(ious) > 0.85 and min(ious) > 0.5, ious
    for seed in range(4):  # a cranio-caudal view has none to find
        image, _ = _film("CC", seed)
        mask = breast_mask(image)
        assert not pectoral_mask(image, mask).any()
        assert (search_region(image, mask, "CC") == mask).all()


def test_a_breast_covering_the_whole_chest_wall_keeps_it():
    # the chest wall's side is never taken for a film border, however much it is covered
    rows, cols = np.mgrid[:240, :192]
    breast = ((rows - 120) / 150) ** 2 + (cols / 170) ** 2 < 1  # spans every row at col 0
    image = np.where(breast, 0.5 + 0.05 * np.sin(rows / 5.0), 0.02).astype(np.float32)
    mask = breast_mask(image)
    assert mask[:, :6].all() and _iou(mask, breast) > 0.97


def test_block_mean_is_the_strided_uniform_filter():
    from common.imaging.breast import _block_mean

    rng = np.random.default_rng(0)
    for shape, step in (((301, 240), 19), ((48, 38), 3), ((150, 120), 10), ((7, 9), 4)):
        image = rng.random(shape, dtype=np.float32)
        expected = ndimage.uniform_filter(image, step)[::step, ::step]
        np.testing.assert_allclose(_block_mean(image, step), expected, atol=1e-6)


def _refine_reference(image, fg, step, thr):
    """The edge refinement written plainly at full resolution, for comparison."""
    h, w = image.shape
    up = np.repeat(np.repeat(fg, step, 0), step, 1)[:h, :w]
    inner = fg & ~ndimage.binary_erosion(fg, border_value=1)
    outer = ndimage.binary_dilation(fg) & ~fg
    band = np.repeat(np.repeat(inner | outer, step, 0), step, 1)[:h, :w]
    mean = ndimage.uniform_filter(image.astype(np.float64), 3, mode="mirror")
    refined = up.copy()
    refined[band] = mean[band] > thr
    labels, n = ndimage.label(refined)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        refined = labels == np.argmax(sizes)
    return refined


def test_edge_blocks_joined_piecewise_match_labelling_the_whole_mask():
    # Blocks are decided and labelled one by one and joined across their sides; that must
    # give what labelling the whole refined mask does: islands in the air go, a neck the
    # refinement cuts leaves only the larger part, partial last blocks included
    rng = np.random.default_rng(5)
    step, thr = 6, 0.53
    for trial in range(12):
        h, w = 6 * 30 - int(rng.integers(0, 6)), 6 * 26 - int(rng.integers(0, 6))
        sh, sw = -(-h // step), -(-w // step)
        rows, cols = np.mgrid[:sh, :sw]
        fg = (rows - 10) ** 2 / 60 + (cols - 8) ** 2 / 30 < 1
        fg |= (rows - 20) ** 2 / 30 + (cols - 18) ** 2 / 40 < 1
        fg[14:17, 12:14] = True  # a neck of two blocks between the two parts
        if trial % 2:
            fg[rows + cols > sh + sw - 4] = True  # the breast meets the image's corner
        image = np.repeat(np.repeat(fg, step, 0), step, 1)[:h, :w].astype(np.float64)
        image = 0.75 * image + 0.15 + 0.3 * rng.standard_normal((h, w))
        image[14 * step : 17 * step, 12 * step : 14 * step] -= 0.2 * (trial % 3)
        image = (np.round(np.clip(image, 0, 1) * 16) / 16).astype(np.float32)  # exact sums
        up = np.repeat(np.repeat(fg, step, 0), step, 1)[:h, :w]
        got = _refine_edge(image, up, fg, fg.copy(), step, thr)
        want = _refine_reference(image, fg, step, thr)
        assert np.array_equal(got, want), (trial, int((got != want).sum()))


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda v: v.name)
def test_a_paddle_wall_across_the_air_and_a_skin_fold_leave_the_mask_as_it_was(
    tmp_path, monkeypatch, vendor
):
    # the paddle's wall is a bright line across the whole image, through the air too
    from common.synth import artifacts

    monkeypatch.setattr(artifacts, "PADDLE_CHANCE", 1.0)
    monkeypatch.setattr(artifacts, "FOLD_CHANCE", 1.0)
    options = ReadOptions(fallback_spacing_mm=SCENE_SPACING_MM)
    for k, view in enumerate(("CC", "MLO", "CC", "MLO")):
        phantom = render_breast((700, 560), view, 1 + k, np.random.default_rng(k))
        drawn = phantom.attenuation.copy()
        rng = np.random.default_rng(k)
        artifacts.ffdm_artifacts(drawn, phantom.mask, SCENE_SPACING_MM, view, rng)
        masks = []
        for name, image in (("plain", phantom.attenuation), ("ffdm", drawn)):
            rng = np.random.default_rng(k + 10)  # the same noise on both
            path = stored_scene(image, phantom.mask, vendor, rng, tmp_path / f"{name}{k}.dcm")
            masks.append(read_mammogram(path, options).mask)
        plain, ffdm = masks
        far = ~ndimage.binary_dilation(phantom.mask, iterations=20)
        assert (ffdm & far).sum() <= 50, (view, int((ffdm & far).sum()))
        assert (plain ^ ffdm).sum() <= 0.01 * phantom.mask.sum(), (view, int((plain ^ ffdm).sum()))

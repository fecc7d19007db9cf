import numpy as np
import pytest
from scipy import ndimage

from common.imaging.markers import MARKER_REACH_MM, marker_mask
from common.imaging.reading import ReadOptions, read_mammogram
from common.synth.artifacts import add_tape, film_artifacts, lead_label
from common.synth.calcs import Calc, Cluster, draw_cluster, drawn_peaks, make_cluster
from common.synth.phantom import render_breast
from common.synth.scenes import SCENE_SPACING_MM as SPACING
from common.synth.scenes import stored_scene
from common.synth.vendors import FILM, VENDORS


def _read(tmp_path, image, phantom, vendor, rng, name, letters=None):
    """Store ``image`` as ``vendor`` does, ``letters`` burned in, and read it back."""
    path = stored_scene(image, phantom.mask, vendor, rng, tmp_path / f"{name}.dcm", letters)
    read = read_mammogram(path, ReadOptions(fallback_spacing_mm=SPACING))
    assert read.pixels.shape == image.shape  # read at the scene's spacing, unflipped
    return read


def _over_the_skin(phantom, glyph, rng):
    """Return where ``glyph`` lies across the skin line on the nipple side, a fifth over it."""
    h, w = phantom.mask.shape
    gh, gw = glyph.shape
    for _ in range(100):
        r = int(rng.integers(h // 4, 3 * h // 4 - gh))
        edge = np.flatnonzero(phantom.mask[r + gh // 2])
        if not edge.size:
            continue
        c = int(edge.max()) - gw // 5
        if 0 <= c and c + gw < w:
            place = np.zeros((h, w), dtype=bool)
            place[r : r + gh, c : c + gw] = glyph
            return place
    raise AssertionError("no place across the skin line")


def _grown(mask, pixels):
    return ndimage.binary_dilation(mask, iterations=pixels)


def _without_markers(monkeypatch, path):
    """Read ``path`` again with no plateau taken out of the breast mask."""
    from common.imaging import breast

    with monkeypatch.context() as m:
        m.setattr(breast, "marker_mask", lambda image, spacing, **_: np.zeros(image.shape, bool))
        return read_mammogram(path, ReadOptions(fallback_spacing_mm=SPACING))


@pytest.mark.parametrize("vendor", [*VENDORS, FILM], ids=lambda v: v.name)
def test_letters_laid_over_the_skin_are_taken_out_of_the_breast(tmp_path, monkeypatch, vendor):
    # a lead marker on film, burned-in text on a digital unit: the mask holds them where
    # they lie over the breast, the plateaus take them out, and nothing else
    rng = np.random.default_rng(4)
    for k, text in enumerate(("RCC", "LMLO", "LCC")):
        phantom = render_breast((700, 560), "CC", k + 1, rng)
        image = phantom.attenuation.copy()
        glyph = lead_label(text, round(rng.uniform(3, 5) / SPACING))
        letters = _over_the_skin(phantom, glyph, rng)
        if vendor.film:
            image[letters] = 1.1  # the lead blocks the beam: clear film
            film_artifacts(image, phantom.mask & ~letters, SPACING, "LCC", rng)
            read = _read(tmp_path, image, phantom, vendor, rng, k)
        else:
            read = _read(tmp_path, image, phantom, vendor, rng, k, letters)
        without = _without_markers(monkeypatch, tmp_path / f"{k}.dcm")
        assert (without.mask & letters).sum() > 0.1 * letters.sum(), k  # held without
        assert not (read.mask & letters).any(), (k, (read.mask & letters).sum())
        # within the reach of the letters' plateau (a pixel wider than the letters, read)
        near = ndimage.distance_transform_edt(~letters) * SPACING <= MARKER_REACH_MM + SPACING
        assert not (without.mask & ~read.mask & ~near).any(), k


def _label_in_the_air(phantom, text, rng):
    """Return a lead label's letters in the air beside the breast, 3 mm or more from it."""
    glyph = lead_label(text, round(rng.uniform(3.0, 5.0) / SPACING))
    gh, gw = glyph.shape
    h, w = phantom.mask.shape
    near = _grown(phantom.mask, 30)
    for _ in range(200):  # clear of the film's borders, which would cover it
        r, c = int(rng.integers(40, h - gh - 40)), int(rng.integers(w // 2, w - gw - 40))
        if not near[r : r + gh, c : c + gw].any():
            letters = np.zeros((h, w), dtype=bool)
            letters[r : r + gh, c : c + gw] = glyph
            return letters
    raise AssertionError("no room in the air")


def test_every_lead_label_is_found_under_tape_too(tmp_path):
    rng = np.random.default_rng(8)
    found = []
    for k in range(8):
        phantom = render_breast((700, 560), ("CC", "MLO")[k % 2], int(rng.integers(1, 5)), rng)
        image = phantom.attenuation.copy()
        letters = _label_in_the_air(phantom, ("RCC", "LMLO")[k % 2], rng)
        image[letters] = 1.1
        # the film's own label elsewhere
        film_artifacts(image, phantom.mask | _grown(letters, 30), SPACING, "LCC", rng)
        if k >= 4:  # tape over the label, as on the films whose tape joins it to the breast
            rows, cols = np.nonzero(letters)
            image[: rows.max() + 80, max(cols.min() - 40, 0) : cols.max() + 40] += rng.uniform(
                0.08, 0.15
            )
        read = _read(tmp_path, image, phantom, FILM, rng, k)
        found.append(marker_mask(read.pixels, SPACING)[letters].mean())
    assert min(found) > 0.99, found


def _label_under_tape(rng, view):
    """A film whose tape from the film's edge covers a lead label across the tape's far edge.

    The label lies 2 mm or more from the breast, in the rows nearest the film's edge
    inside its border, and is drawn before the tape: tape over lead is clear film too.
    Returns the image, the phantom and the letters, or None where there is no room.
    """
    phantom = render_breast((700, 560), view, int(rng.integers(1, 5)), rng)
    image = phantom.attenuation.copy()
    strip = add_tape(np.zeros_like(image), phantom.mask, SPACING, rng)
    glyph = lead_label("RCC", round(rng.uniform(3.0, 5.0) / SPACING))
    gh, gw = glyph.shape
    clear = ~_grown(phantom.mask, 20)
    rows = np.flatnonzero((strip & ~phantom.mask).any(axis=1))
    if not rows.size:
        return None
    from_top = rows.mean() < image.shape[0] / 2
    for r in rows if from_top else rows[::-1] - gh + 1:
        r = int(r)
        if r < 40 or r + gh > image.shape[0] - 40:
            continue  # the film's border would cover it (a label merged with it is missed)
        c = int(np.flatnonzero(strip[r : r + gh].any(axis=0)).max()) - gw // 4
        if c + gw < image.shape[1] and clear[r : r + gh, c : c + gw].all():
            letters = np.zeros(image.shape, dtype=bool)
            letters[r : r + gh, c : c + gw] = glyph
            image[letters] = 1.1
            image[strip] += rng.uniform(0.08, 0.15)
            film_artifacts(image, phantom.mask | _grown(letters | strip, 20), SPACING, "LCC", rng)
            return image, phantom, letters
    return None


def test_a_label_under_tape_at_the_film_edge_is_not_breast(tmp_path, monkeypatch):
    # the films where the mask follows the tape to the film's edge and keeps the label
    rng = np.random.default_rng(2)
    held, held_without = [], []
    while len(held) < 16:
        case = _label_under_tape(rng, ("CC", "MLO")[len(held) % 2])
        if case is None:
            continue
        image, phantom, letters = case
        k = len(held)
        read = _read(tmp_path, image, phantom, FILM, rng, k)
        held.append(int((read.mask & letters).sum()))
        without = _without_markers(monkeypatch, tmp_path / f"{k}.dcm")
        held_without.append(int((without.mask & letters).sum()))
    assert not any(held), held
    assert sum(n > 0 for n in held_without) >= 6, held_without  # the case is the hard one


@pytest.mark.parametrize("vendor", [*VENDORS, FILM], ids=lambda v: v.name)
def test_no_drawn_finding_and_no_breast_is_taken_for_a_marker(tmp_path, vendor):
    # dense breasts, whose tissue and calcifications a unit's window may saturate
    # together, and every kind of finding: nothing of the breast is a plateau
    rng = np.random.default_rng(11)
    for k in range(4):
        view = ("CC", "MLO")[k % 2]
        phantom = render_breast((700, 560), view, 3 + k % 2, rng)
        image = phantom.attenuation.copy()
        peaks = []
        for i, centre in enumerate(((250.0, 200.0), (450.0, 200.0), (350.0, 330.0))):
            cluster = make_cluster(malignant=i != 1, subtlety=5, rng=rng)
            draw_cluster(image, cluster, centre, SPACING)
            peaks.append(np.array(centre) + drawn_peaks(cluster.calcs, rng, found=1.0) / SPACING)
        if vendor.film:
            film_artifacts(image, phantom.mask, SPACING, "LCC", rng)
        read = _read(tmp_path, image, phantom, vendor, rng, k)
        markers = marker_mask(read.pixels, SPACING)
        assert not (markers & ndimage.binary_erosion(phantom.mask, iterations=20)).any(), k
        points = np.concatenate(peaks).astype(int)
        assert not markers[points[:, 0], points[:, 1]].any(), k


def test_small_wide_or_faint_bright_things_are_no_marker():
    image = np.full((300, 300), 0.3, dtype=np.float32)
    image[100:104, 100:104] = 1.0  # a saturated calcification, 0.4 mm
    image[50:90, 200:202] = 1.0  # a 4-mm stroke, too thin for 1 mm²
    letter = np.zeros((300, 300), dtype=bool)
    letter[200:240, 40:46] = letter[234:240, 40:70] = True  # an "L" 4 mm tall
    image[letter] = 1.0
    assert not marker_mask(image, 0.1)[100:104, 100:104].any()
    assert not marker_mask(image, 0.1)[50:90, 200:202].any()
    assert marker_mask(image, 0.1)[letter].all()
    grainy = image.copy()
    grainy[letter] += 0.06 * np.random.default_rng(0).standard_normal(letter.sum())
    assert not marker_mask(np.clip(grainy, 0, 1.2), 0.1).any()  # not flat: tissue
    bright = image.copy()
    bright[180:260, 20:100] = 0.85  # in bright tissue: no step up to it
    bright[letter] = 1.0
    assert not marker_mask(bright, 0.1).any()
    wide = np.full((300, 300), 0.3, dtype=np.float32)
    wide[:150, :60] = 1.0  # a pectoral muscle saturated by the window beside fat
    assert not marker_mask(wide, 0.1).any()


def test_a_plateau_as_long_as_a_film_border_is_no_marker():
    # Borders and the scanner's edge run along a side and are cleared as borders; as
    # markers they would only cost time (the stroke and ring of a plateau spanning the
    # image are measured over the whole image)
    image = np.full((700, 700), 0.2, dtype=np.float32)
    image[100:110, 50:650] = 1.0  # 60 mm long, 1 mm wide
    image[300:310, 50:400] = 1.0  # 35 mm: as long as a word of letters may be
    mask = marker_mask(image, 0.1)
    assert not mask[100:110, 50:650].any()
    assert mask[300:310, 50:400].all()


@pytest.mark.parametrize("vendor", [*VENDORS, FILM], ids=lambda v: v.name)
def test_a_saturated_casting_calcification_in_the_breast_stays_searched(tmp_path, vendor):
    # A dense fine-linear (casting) fragment over fat, 4 x 0.5 mm, which the window
    # saturates, is a flat bright stroke like a letter's: only its place tells them apart
    rng = np.random.default_rng(6)
    plateaus = 0
    for k in range(6):
        phantom = render_breast((700, 560), "CC", 1, rng)
        image = phantom.attenuation.copy()
        rod = Calc(0.0, 0.0, "rod", 2.0, 0.25, float(rng.uniform(0, np.pi)), 1.0)
        finding = Cluster("FINE_LINEAR_BRANCHING", "LINEAR", True, 5, [rod])
        before = image.copy()
        draw_cluster(image, finding, (220.0 + 50 * k, 200.0), SPACING)
        drawn = image - before > 0.5
        assert not (_grown(drawn, 50) & ~phantom.mask).any()  # over 5 mm from the air
        read = _read(tmp_path, image, phantom, vendor, rng, k)
        plateaus += bool((marker_mask(read.pixels, SPACING) & drawn).any())
        assert read.mask[drawn].all(), k
    assert plateaus >= 3  # judged alone, without the breast, it passes for a marker (4 of 6)

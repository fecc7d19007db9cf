"""Simulated equipment vendors: how an attenuation map becomes stored DICOM values.

Each hospital of a synthetic consortium gets one vendor, so the federation sees the
heterogeneity real sites have: bit depth, MONOCHROME1/2, pixel spacing and the tag it is
stored in, noise, contrast curve, JPEG 2000, VOI by window (LINEAR, LINEAR_EXACT, SIGMOID,
several windows) or VOI LUT sequence, rescale slope/intercept, padding, and how the
orientation is recorded.

:data:`FILM` is a film digitiser like those of CBIS-DDSM (DESIGN.md, "Real mammograms"):
0.05 mm, 16-bit storage of 12-bit content, RLE Lossless, no spacing tag and no VOI, and
the film's own artifacts (:mod:`common.synth.artifacts`). It is chosen by name
(``SynthConfig.vendors``), never by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless


@dataclass(frozen=True)
class Vendor:
    """A simulated mammography unit.

    Attributes
    ----------
    voi : str
        'window' (two LINEAR windows), 'linear-exact', 'sigmoid', 'lut' or 'none'.
    spacing_tag : str
        'ImagerPixelSpacing', 'PixelSpacing' or 'none' (no spacing in the file).
    compressed : float
        Share of the images written compressed, in transfer syntax ``syntax`` (lossless).
    orientation : str
        'patient-orientation' (PatientOrientation set), 'image-laterality' (only
        ImageLaterality, standard display), 'series-laterality' (only series Laterality)
        or 'fov-flip' (right breasts stored chest wall left with FieldOfViewHorizontalFlip).
    content_bits : int or None
        Bits of real content, scaled up to ``bits_stored`` (a 12-bit scanner writing
        16-bit files); None: all ``bits_stored``.
    film : bool
        Digitised film: borders, lead label, grain, dust and scratches.
    """

    name: str
    manufacturer: str
    model: str
    bits_stored: int
    photometric: str
    spacing_mm: float
    spacing_tag: str
    voi: str
    gamma: float
    noise: float
    compressed: float
    syntax: str
    rescale: tuple[float, float]
    padding: bool
    orientation: str
    content_bits: int | None = None
    film: bool = False

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


VENDORS = (
    Vendor(
        "aurora",
        "Aurora Imaging",
        "AX-12",
        12,
        "MONOCHROME2",
        0.1,
        "ImagerPixelSpacing",
        "window",
        1.0,
        0.012,
        0.0,
        ExplicitVRLittleEndian,
        (1.0, 0.0),
        False,
        "patient-orientation",
    ),
    Vendor(
        "borealis",
        "Borealis Medical",
        "B-Vision 14",
        14,
        "MONOCHROME1",
        0.085,
        "ImagerPixelSpacing",
        "lut",
        0.85,
        0.010,
        1.0,
        JPEG2000Lossless,
        (1.0, 0.0),
        True,
        "image-laterality",
    ),
    Vendor(
        "cygnus",
        "Cygnus Systems",
        "Cyg-DR",
        16,
        "MONOCHROME2",
        0.07,
        "PixelSpacing",
        "sigmoid",
        1.15,
        0.008,
        0.5,
        JPEGLSLossless,
        (2.0, -1000.0),
        False,
        "fov-flip",
    ),
    Vendor(
        "deneb",
        "Deneb Healthcare",
        "D10",
        10,
        "MONOCHROME2",
        0.1,
        "ImagerPixelSpacing",
        "linear-exact",
        0.8,
        0.015,
        0.0,
        ExplicitVRLittleEndian,
        (1.0, 0.0),
        False,
        "series-laterality",
    ),
)


FILM = Vendor(
    "halide",
    "Halide Imaging",
    "FilmScan 50",
    16,
    "MONOCHROME2",
    0.05,
    "none",
    "none",
    1.0,
    0.006,
    1.0,
    RLELossless,
    (1.0, 0.0),
    False,
    "image-laterality",
    content_bits=12,
    film=True,
)

#: every vendor by name
BY_NAME = {v.name: v for v in (*VENDORS, FILM)}


def vendor_for(index: int, rng: np.random.Generator, names: tuple[str, ...] = ()) -> Vendor:
    """Return the vendor of hospital ``index`` (0-based) with per-site jitter.

    ``names`` (cycled over the hospitals) chooses the vendors; by default the four
    digital units of :data:`VENDORS` take turns.
    """
    pool = tuple(BY_NAME[n] for n in names) if names else VENDORS
    base = pool[index % len(pool)]
    if index < len(pool):
        return base
    # further hospitals reuse a template with their own noise and contrast
    return replace(
        base,
        name=f"{base.name}-{index // len(pool) + 1}",
        gamma=float(base.gamma * rng.uniform(0.9, 1.1)),
        noise=float(base.noise * rng.uniform(0.8, 1.25)),
    )


PATIENT_ORIENTATION = {
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
}


def stored_orientation(vendor: Vendor, laterality: str) -> bool:
    """Return whether the stored image is mirrored from the canonical one."""
    if vendor.orientation == "fov-flip":
        return False  # stored as canonical, flagged by FieldOfViewHorizontalFlip
    return laterality == "R"  # standard display: right chest wall on the right


def to_stored(
    attenuation: np.ndarray, inside: np.ndarray, vendor: Vendor, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """Map attenuation to stored integer values and the VOI attributes that display them.

    Returns
    -------
    stored : numpy.ndarray
        uint16 values within ``bits_stored``.
    attributes : dict
        DICOM keywords → values (window, LUT, rescale, padding...).
    """
    top = 2**vendor.bits_stored - 1
    signal = np.clip(attenuation / 1.15, 0.0, 1.0) ** vendor.gamma
    signal = signal + vendor.noise * np.sqrt(signal + 0.05) * rng.standard_normal(signal.shape)
    lo, hi = 0.06 * top, 0.92 * top  # modality values span most of the range
    value = lo + np.clip(signal, 0.0, 1.0) * (hi - lo)

    def modality(s: float) -> float:
        return lo + s * (hi - lo)

    w_lo, w_hi = modality(0.12**vendor.gamma), modality(1.0)
    if vendor.photometric == "MONOCHROME1":
        value = top - value
        w_lo, w_hi = top - w_hi, top - w_lo
    slope, intercept = vendor.rescale
    stored = np.rint((value - intercept) / slope)
    stored = np.clip(stored, 1, top).astype(np.uint16)
    if vendor.content_bits and vendor.content_bits < vendor.bits_stored:
        shift = vendor.bits_stored - vendor.content_bits
        stored = np.maximum((stored >> shift) << shift, 1 << shift).astype(np.uint16)
    attributes: dict = {}
    if slope != 1.0 or intercept != 0.0:
        attributes.update(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")
    center, width = (w_lo + w_hi) / 2, w_hi - w_lo
    if vendor.voi == "window":
        attributes.update(
            WindowCenter=[round(center, 1), round(center, 1)],
            WindowWidth=[round(width, 1), round(width * 1.4, 1)],
            WindowCenterWidthExplanation=["STANDARD", "WIDE"],
            VOILUTFunction="LINEAR",
        )
    elif vendor.voi == "linear-exact":
        attributes.update(
            WindowCenter=round(center, 2),
            WindowWidth=round(width, 2),
            VOILUTFunction="LINEAR_EXACT",
        )
    elif vendor.voi == "sigmoid":
        attributes.update(
            WindowCenter=round(center, 1),
            WindowWidth=round(width * 0.7, 1),
            VOILUTFunction="SIGMOID",
        )
    elif vendor.voi == "lut":
        attributes["VOILUTSequence"] = _voi_lut(center, width, top, slope, intercept)
    if vendor.padding:
        pad = top if vendor.photometric == "MONOCHROME1" else 0
        stored[~inside] = pad
        attributes["PixelPaddingValue"] = pad
    return stored, attributes


def _voi_lut(center: float, width: float, top: int, slope: float, intercept: float) -> Sequence:
    """Build a 12-bit S-shaped VOI LUT over the modality range."""
    first = int(intercept)
    n = int((top * slope + intercept) - first) + 1
    x = np.arange(first, first + n, dtype=np.float64)
    curve = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    curve = (curve - curve.min()) / max(1e-9, curve.max() - curve.min())
    item = Dataset()
    # both elements have ambiguous VRs (US or SS / US or OW): state them
    item.add_new("LUTDescriptor", "US" if first >= 0 else "SS", [n if n < 65536 else 0, first, 12])
    item.LUTExplanation = "SOFT S-CURVE"
    # OW: one block of 16-bit words (as many exports store it), not 4096 checked values
    item.add_new("LUTData", "OW", np.rint(curve * 4095).astype("<u2").tobytes())
    return Sequence([item])

"""Intensity transforms that turn modality values into display values in [0, 1].

These follow DICOM PS3.3 C.11.2 (VOI LUT module) but produce float32 in [0, 1] directly,
in place, instead of pydicom's float64 output range; ``tests/common/test_voi.py`` checks
them against :func:`pydicom.pixels.apply_voi_lut`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def first_value(value: object, index: int = 0) -> float:
    """Return element ``index`` of a possibly multi-valued DICOM number as float.

    Parameters
    ----------
    value : object
        A DICOM DS/IS value or MultiValue of them.
    index : int
        Which value to take when several are given (the first by default, as vendors
        list their preferred window first).
    """
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if not value:
            raise ValueError("empty multi-valued element")
        return float(value[min(index, len(value) - 1)])
    return float(value)  # type: ignore[arg-type]


def apply_window(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> None:
    """Window ``x`` into [0, 1] in place.

    Parameters
    ----------
    x : numpy.ndarray
        float32 modality values; overwritten.
    center, width : float
        Window Center and Window Width.
    function : {"LINEAR", "LINEAR_EXACT", "SIGMOID"}
        The VOI LUT Function.
    """
    function = (function or "LINEAR").upper()
    if function == "LINEAR":
        if width < 1:
            raise ValueError(f"window width {width} < 1 is invalid for LINEAR")
        # y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped: PS3.3 C.11.2.1.2.1
        if width == 1:
            np.greater(x, center - 0.5, out=x)
            return
        x -= center - 0.5
        x *= 1.0 / (width - 1)
        x += 0.5
        np.clip(x, 0.0, 1.0, out=x)
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"window width {width} <= 0 is invalid for LINEAR_EXACT")
        x -= center
        x *= 1.0 / width
        x += 0.5
        np.clip(x, 0.0, 1.0, out=x)
    elif function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"window width {width} <= 0 is invalid for SIGMOID")
        x -= center
        x *= -4.0 / width
        np.clip(x, -80.0, 80.0, out=x)  # exp overflows float32 past ~88; 1/(1+e^80) is 0
        np.exp(x, out=x)
        x += 1.0
        np.reciprocal(x, out=x)
    else:
        raise ValueError(f"unknown VOI LUT Function '{function}'")


def apply_lut(
    x: np.ndarray, descriptor: Sequence[int], data: np.ndarray, signed_input: bool
) -> np.ndarray:
    """Map ``x`` through a VOI LUT and scale the output to [0, 1].

    Parameters
    ----------
    x : numpy.ndarray
        Modality values (float32).
    descriptor : sequence of int
        LUT Descriptor: number of entries (0 means 65536), first value mapped, bits.
    data : numpy.ndarray
        LUT Data as integers.
    signed_input : bool
        Whether the first-mapped value is to be read as signed (Pixel Representation 1).

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1].
    """
    n_entries, first, bits = (int(v) for v in descriptor)
    n_entries = n_entries or 65536
    if signed_input and first >= 2**15:
        first -= 2**16
    data = np.asarray(data)[:n_entries]
    if data.size == 0:
        raise ValueError("VOI LUT holds no data")
    # Bits is the LUT's output depth; some writers put 8 with 16-bit data: use what is there
    top = max(2**bits - 1, int(data.max()))
    lut = data.astype(np.float32) / np.float32(top)
    idx = np.clip(np.rint(x) - first, 0, data.size - 1).astype(np.intp)
    return lut[idx]

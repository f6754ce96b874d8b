"""Arrays in `status.history` as packed strings: the wire format of the policy's profiles.

A learned profile is thousands of numbers; as JSON lists each costs ~40 bytes in Python
objects (and every copy of the fleet the operator holds has them), as float32 in one base64
string under 6. The policy holds its profiles in the dtype they are stored in, so a policy
restored from status decides exactly as the running one does.

An array that deflates well is stored deflated (`z:` before the base64): a weekly profile fills
over its first weeks, NaN until then, and its cycle numbers repeat bin after bin, so a young
fleet's profiles are a few hundred bytes, not ~20 KiB per pool, in its status and in every copy
of the fleet the operator holds. A dense learned profile barely deflates and stays plain.
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import Any

import numpy as np

FLOAT32 = "<f4"
FLOAT64 = "<f8"
INT32 = "<i4"
DEFLATED = "z:"  # not in the base64 alphabet: a plain string never starts with it
# Deflated only when that saves at least this share: a dense profile is left plain (cheaper
# to read back, and the prefix and zlib's framing would make it longer).
MIN_DEFLATE_SAVING = 0.25


def pack_array(values: Any, dtype: str = FLOAT32) -> str:
    """An array as one base64 string of its little-endian bytes in `dtype` (NaN kept),
    deflated when that makes it much shorter."""
    raw = np.ascontiguousarray(values, dtype=dtype).tobytes()
    deflated = zlib.compress(raw, 6)
    if len(deflated) <= (1 - MIN_DEFLATE_SAVING) * len(raw):
        return DEFLATED + base64.b64encode(deflated).decode("ascii")
    return base64.b64encode(raw).decode("ascii")


def unpacked_bytes(text: str, most: int) -> bytes:
    """The bytes behind a packed string, inflating at most `most` of them (a damaged or
    hostile status cannot make the operator inflate gigabytes)."""
    if not text.startswith(DEFLATED):
        return base64.b64decode(text, validate=True)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(base64.b64decode(text[len(DEFLATED) :], validate=True), most)
    except zlib.error as err:
        raise ValueError(f"not a deflated array: {err}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError(f"a deflated array of more than {most} bytes, or cut short")
    return raw


def unpack_array(text: str, shape: tuple[int, ...], dtype: str = FLOAT32) -> np.ndarray:
    """The array `pack_array` wrote, in `dtype` (native byte order); also the float64 strings
    of older releases (8 bytes a value). A ValueError says the text does not fit `shape`."""
    size = math.prod(shape)
    raw = unpacked_bytes(text, 8 * size)
    stored = "<f8" if len(raw) == 8 * size and np.dtype(dtype).itemsize != 8 else dtype
    if len(raw) != size * np.dtype(stored).itemsize:
        raise ValueError(f"{len(raw)} bytes do not hold {size} values for shape {shape}")
    values = np.frombuffer(raw, dtype=stored)
    return values.astype(np.dtype(dtype).newbyteorder("="), copy=True).reshape(shape)


def packed_from_lists(data: Any, dtype: str) -> Any:
    """What an older release wrote as (nested) lists, None for missing, packed the current way;
    anything else as it is (a string is already packed)."""
    if not isinstance(data, list):
        return data
    values = np.array(_nan_for_none(data), dtype=float)
    return pack_array(values.ravel(), dtype)


def _nan_for_none(data: Any) -> Any:
    if isinstance(data, list):
        return [_nan_for_none(v) for v in data]
    return math.nan if data is None else data

"""Packed arrays in status.history: exact round trips, deflated when sparse, damage refused."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from controllers.api.packed import DEFLATED, FLOAT32, FLOAT64, INT32, pack_array, unpack_array

_floats = st.floats(width=32, allow_nan=True, allow_infinity=False)


@given(arrays(np.float32, st.integers(1, 400), elements=_floats | st.just(np.nan)))
def test_float32_arrays_round_trip_exactly_nan_included(values):
    back = unpack_array(pack_array(values), values.shape)
    assert np.array_equal(back, values, equal_nan=True)


@given(arrays(np.int32, st.integers(1, 400), elements=st.integers(-(2**31), 2**31 - 1)))
def test_int32_arrays_round_trip_exactly(values):
    assert np.array_equal(unpack_array(pack_array(values, INT32), values.shape, INT32), values)


def test_an_unlearned_profile_is_stored_deflated_and_a_dense_one_plain():
    empty = np.full(3024, np.nan, dtype=np.float32)
    dense = np.random.default_rng(1).gamma(2.0, 3.0, 3024).astype(np.float32)
    sparse_text, dense_text = pack_array(empty), pack_array(dense)
    assert sparse_text.startswith(DEFLATED) and len(sparse_text) < 200
    assert not dense_text.startswith(DEFLATED)
    assert len(dense_text) == len(base64.b64encode(dense.tobytes()))


def test_plain_strings_of_earlier_releases_still_load():
    values = np.arange(12, dtype=np.float64)
    plain = base64.b64encode(values.astype("<f4").tobytes()).decode()
    assert np.array_equal(unpack_array(plain, (3, 4)), values.reshape(3, 4))
    wide = base64.b64encode(values.tobytes()).decode()  # float64, as before float32 packing
    assert np.array_equal(unpack_array(wide, (12,), FLOAT32), values)


@pytest.mark.parametrize(
    "text",
    [
        DEFLATED + base64.b64encode(zlib.compress(bytes(4 * 10_000))).decode(),  # too many
        DEFLATED + base64.b64encode(zlib.compress(bytes(4 * 100))[:-6]).decode(),  # cut short
        DEFLATED + base64.b64encode(b"not zlib at all").decode(),
        DEFLATED + "***",
    ],
)
def test_a_damaged_deflated_array_is_a_value_error(text):
    with pytest.raises(ValueError):
        unpack_array(text, (100,), FLOAT64)

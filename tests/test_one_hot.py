"""one_hot: values, dtype, axis, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import logitkit as lk
from _backends import name_of, to_numpy


def test_note_example(xp: Any) -> None:
    y = lk.one_hot(xp.asarray([2, 1, 3]), 5, dtype=xp.float32)
    assert y.dtype == xp.float32
    np.testing.assert_array_equal(to_numpy(y), np.eye(5, dtype=np.float32)[[2, 1, 3]])


def test_default_dtype_is_the_library_default_float(xp: Any) -> None:
    y = lk.one_hot(xp.asarray([0, 1]), 2)
    info = xp.__array_namespace_info__()
    assert y.dtype == info.default_dtypes()["real floating"]


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_axis(xp: Any, axis: int) -> None:
    labels = np.asarray([[0, 2], [1, 1], [2, 0]])
    y = to_numpy(lk.one_hot(xp.asarray(labels), 3, axis=axis))
    ref = np.moveaxis(np.eye(3)[labels], -1, axis)
    np.testing.assert_array_equal(y, ref)


def test_empty_and_zero_classes(xp: Any) -> None:
    assert tuple(lk.one_hot(xp.asarray(np.zeros(0, dtype=np.int64)), 4).shape) == (0, 4)
    assert tuple(lk.one_hot(xp.asarray(np.zeros(0, dtype=np.int64)), 0).shape) == (0, 0)


def test_out_of_range_is_an_error_on_eager_backends(xp: Any) -> None:
    if name_of(xp) == "dask":
        pytest.skip("dask is lazy: labels are not inspected (documented)")
    with pytest.raises(
        ValueError,
        match=r"`labels` must be in \[0, 3\); got 3 at "
        r"position \(1, 0\)",
    ):
        lk.one_hot(xp.asarray([[0, 1], [3, 2]]), 3)
    with pytest.raises(ValueError, match=r"got -1 at position 2"):
        lk.one_hot(xp.asarray([0, 1, -1]), 3)


def test_out_of_range_under_jit_gives_zeros() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    y = jax.jit(lambda v: lk.one_hot(v, 3))(jnp.asarray([1, 5]))
    np.testing.assert_array_equal(np.asarray(y), [[0, 1, 0], [0, 0, 0]])


def test_errors() -> None:
    with pytest.raises(
        TypeError, match="`labels` must have an integer dtype; got float64"
    ):
        lk.one_hot(np.asarray([0.0, 1.0]), 2)
    with pytest.raises(TypeError, match=r"`num_classes` must be an int; got 2\.5"):
        lk.one_hot(np.asarray([0, 1]), 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`num_classes` must be non-negative; got -1"):
        lk.one_hot(np.asarray([0]), -1)
    with pytest.raises(
        IndexError, match="axis 3 is out of bounds for array of dimension 2"
    ):
        lk.one_hot(np.asarray([0]), 2, axis=3)

"""lk.compat.tf / keras / torch against the real frameworks and their formulas.

compat.torch is checked against ``torch.nn.functional`` itself (a test
dependency) and compat.tf against optax, which implements the same losses.
TensorFlow and Keras are in the optional ``parity`` extra: their tests run
only where they are importable; elsewhere the Keras functions are checked
against float64 NumPy transcriptions of Keras 3's source (keras/src/losses/
losses.py and keras/src/backend/jax/nn.py, Keras 3.15.1), which were
themselves compared with Keras 3.15.1 (JAX backend) when these tests were
written (see ``TestKerasParity``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
from array_api_compat import is_array_api_strict_namespace, is_dask_namespace

from _backends import to_numpy
from logitkit.compat import keras as K
from logitkit.compat import tf
from logitkit.compat import torch as F

RNG_SEED = 1234
EPS = 1e-7  # keras.config.epsilon()


def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


# The compat wrappers translate arguments (reductions, weights, smoothing,
# shapes) in backend-neutral Array-API code: NumPy, array-api-strict and
# PyTorch run every combination; JAX (an XLA compilation per new shape) and
# Dask (a graph of hundreds of tasks per call) run the combination that goes
# through the most of that code (see ``backend_cases`` in tests/conftest.py).
SLOW = ("jax.numpy", "dask.array")


def test_import_loads_no_array_library() -> None:
    code = (
        "import sys, logitkit.compat; print([m for m in ('numpy', 'torch', 'jax', "
        "'dask', 'cupy', 'tensorflow', 'keras') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


# ------------------------------------------------- the study note (../seed)

# The note's 3 x 5 logits (printed with 8 decimals), the softmax TensorFlow
# printed for them, and the one-hot labels of its loss example. (The loss
# values the note prints, [2.01969494, 1.59450077, 1.80262151], come from
# logits the note does not show: these give [1.5686, 1.9341, 1.3290]. What the
# note demonstrates, the two ways agreeing, is what is tested.)
NOTE_X = [
    [0.66570611, 0.1626294, 0.36706266, 0.29843456, 0.01490628],
    [0.96794399, 0.33415951, 0.70469845, 0.93473211, 0.06132272],
    [0.1428281, 0.54365674, 0.05789707, 0.66223181, 0.37162914],
]
NOTE_SOFTMAX = [
    [0.2808404, 0.16981504, 0.20833411, 0.19451611, 0.14649433],
    [0.27245334, 0.1445583, 0.20939487, 0.26355326, 0.11004024],
    [0.15748642, 0.23513689, 0.14466319, 0.2647386, 0.1979749],
]
NOTE_LABELS = [2, 1, 3]


class TestStudyNote:
    def test_keras_from_probabilities_equals_tf_from_logits(self, xp: Any) -> None:
        x = xp.asarray(NOTE_X, dtype=xp.float64)
        y = tf.one_hot(xp.asarray(NOTE_LABELS), depth=5, dtype=xp.float64)
        way1 = to_numpy(K.categorical_crossentropy(y, tf.softmax(x)))
        way2 = to_numpy(tf.softmax_cross_entropy_with_logits(y, x))
        np.testing.assert_allclose(way1, way2, rtol=1e-15)
        p = to_numpy(tf.softmax(x))
        np.testing.assert_allclose(p, NOTE_SOFTMAX, rtol=0, atol=2e-8)
        expected = -np.log(np.asarray(NOTE_SOFTMAX)[[0, 1, 2], NOTE_LABELS])
        np.testing.assert_allclose(way2, expected, rtol=1e-7)

    def test_one_hot(self) -> None:
        y = tf.one_hot(np.asarray(NOTE_LABELS), depth=5, dtype=np.float32)
        expected = np.zeros((3, 5), dtype=np.float32)
        expected[[0, 1, 2], NOTE_LABELS] = 1
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, expected)

    def test_softmax_and_log_softmax_float32(self) -> None:
        p = tf.softmax(np.asarray([0, 3, 1]).astype(np.float32))
        e = np.exp([0.0, 3.0, 1.0])
        np.testing.assert_array_equal(p, (e / e.sum()).astype(np.float32))
        # What TensorFlow printed (to 8 digits; its last entry is 1 ulp off).
        tf_printed = np.asarray([0.04201007, 0.8437947, 0.11419519], dtype=np.float32)
        np.testing.assert_array_max_ulp(p, tf_printed, maxulp=1)
        lp = tf.log_softmax(np.asarray([3, 4, 0]).astype(np.float32))
        exact = np.asarray([3.0, 4.0, 0.0]) - np.log(np.exp([3.0, 4.0, 0.0]).sum())
        np.testing.assert_array_equal(lp, exact.astype(np.float32))


# ----------------------------------------------------------------- compat.tf


def _jax_x64() -> Any:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


class TestTF:
    def test_softmax_default_axis_is_last(self, xp: Any) -> None:
        x = rng().normal(size=(3, 4))
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        expected = e / e.sum(axis=-1, keepdims=True)
        got = to_numpy(tf.softmax(xp.asarray(x)))
        np.testing.assert_allclose(got, expected, rtol=1e-14)
        got0 = to_numpy(tf.log_softmax(xp.asarray(x), axis=0))
        lse0 = np.log(np.exp(x).sum(axis=0, keepdims=True))
        np.testing.assert_allclose(got0, x - lse0, rtol=1e-13, atol=1e-15)

    def test_sigmoid(self, xp: Any) -> None:
        x = np.asarray([-800.0, -3.0, 0.0, 2.0, 40.0])
        np.testing.assert_allclose(
            to_numpy(tf.sigmoid(xp.asarray(x))), 0.5 * (1 + np.tanh(x / 2)), rtol=1e-15
        )

    def test_one_hot_out_of_range_is_a_row_of_off_value(self, xp: Any) -> None:
        got = tf.one_hot(xp.asarray([0, -1, 3, 7]), 3)
        assert got.dtype == xp.float32  # TensorFlow's default
        expected = [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
        np.testing.assert_array_equal(to_numpy(got), expected)

    def test_one_hot_values_axis_and_dtype(self, xp: Any) -> None:
        idx = xp.asarray([[0, 2], [1, 5]])
        got = tf.one_hot(idx, 3, on_value=5.0, off_value=-1.0, axis=0)
        assert tuple(got.shape) == (3, 2, 2)
        assert got.dtype == xp.float32
        ref = np.where(
            np.asarray([[0, 2], [1, 5]])[None] == np.arange(3)[:, None, None], 5.0, -1.0
        )
        np.testing.assert_array_equal(to_numpy(got), ref)
        ints = tf.one_hot(idx, 3, on_value=7)
        assert ints.dtype == xp.int32
        np.testing.assert_array_equal(to_numpy(ints)[1, 0], [0, 7, 0])
        named = tf.one_hot(idx, 3, dtype="float64")
        assert named.dtype == xp.float64
        assert tf.one_hot(idx, 3, dtype=xp.bool).dtype == xp.bool

    def test_one_hot_errors(self) -> None:
        with pytest.raises(TypeError, match="`indices` must have an integer dtype"):
            tf.one_hot(np.asarray([0.0]), 2)
        with pytest.raises(ValueError, match="`depth` must be non-negative"):
            tf.one_hot(np.asarray([0]), -1)

    def test_reduce_logsumexp(self, xp: Any) -> None:
        from scipy.special import logsumexp

        x = rng().normal(size=(2, 3, 4)) * 10
        for axis, keepdims in [(None, False), (1, True), ([0, 2], False)]:
            ax = tuple(axis) if isinstance(axis, list) else axis
            expected = logsumexp(x, axis=ax, keepdims=keepdims)
            got = to_numpy(tf.reduce_logsumexp(xp.asarray(x), axis, keepdims))
            np.testing.assert_allclose(got, expected, rtol=1e-14)

    def test_softmax_cross_entropy_with_logits_vs_optax(self) -> None:
        _jax_x64()
        optax = pytest.importorskip("optax")
        x = rng().normal(size=(4, 6)) * 3
        y = rng().dirichlet(np.ones(6), size=4)
        expected = np.asarray(optax.softmax_cross_entropy(x, y))
        np.testing.assert_allclose(
            tf.softmax_cross_entropy_with_logits(y, x), expected, rtol=1e-13
        )
        # axis: the classes along axis 0
        got = tf.softmax_cross_entropy_with_logits(y.T, x.T, axis=0)
        np.testing.assert_allclose(got, expected, rtol=1e-13)

    def test_sparse_softmax_cross_entropy_with_logits_vs_optax(self) -> None:
        _jax_x64()
        optax = pytest.importorskip("optax")
        x = rng().normal(size=(2, 5, 7)) * 3
        labels = rng().integers(0, 7, size=(2, 5))
        expected = np.asarray(
            optax.softmax_cross_entropy_with_integer_labels(x, labels)
        )
        got = tf.sparse_softmax_cross_entropy_with_logits(labels, x)
        np.testing.assert_allclose(got, expected, rtol=1e-13)
        with pytest.raises(ValueError, match="must be in"):
            tf.sparse_softmax_cross_entropy_with_logits(np.asarray([7]), x[0, :1])

    def test_sigmoid_cross_entropy_with_logits_vs_optax(self) -> None:
        _jax_x64()
        optax = pytest.importorskip("optax")
        x = rng().normal(size=(3, 4)) * 5
        y = rng().uniform(size=(3, 4))
        expected = np.asarray(optax.sigmoid_binary_cross_entropy(x, y))
        got = tf.sigmoid_cross_entropy_with_logits(labels=y, logits=x)
        np.testing.assert_allclose(got, expected, rtol=1e-13)
        with pytest.raises(ValueError, match="Both `labels` and `logits`"):
            tf.sigmoid_cross_entropy_with_logits(logits=x)

    def test_cross_entropies_on_every_backend(self, xp: Any) -> None:
        x = rng().normal(size=(3, 4)) * 3
        y = rng().dirichlet(np.ones(4), size=3)
        lse = np.log(np.exp(x).sum(axis=-1))
        expected = -(y * (x - lse[:, None])).sum(axis=-1)
        got = tf.softmax_cross_entropy_with_logits(xp.asarray(y), xp.asarray(x))
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13)
        labels = np.asarray([0, 3, 1])
        got = tf.sparse_softmax_cross_entropy_with_logits(
            xp.asarray(labels), xp.asarray(x)
        )
        np.testing.assert_allclose(
            to_numpy(got), lse - x[np.arange(3), labels], rtol=1e-13
        )

    def test_weighted_cross_entropy_with_logits(self, xp: Any) -> None:
        x = rng().normal(size=(3, 4)) * 4
        z = rng().uniform(size=(3, 4))
        q = np.asarray([0.5, 1.0, 2.0, 3.0])
        # TensorFlow's documented formula.
        expected = (1 - z) * x + (1 + (q - 1) * z) * np.log1p(np.exp(-x))
        got = tf.weighted_cross_entropy_with_logits(
            xp.asarray(z), xp.asarray(x), xp.asarray(q)
        )
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13)
        got = tf.weighted_cross_entropy_with_logits(xp.asarray(z), xp.asarray(x), 2.0)
        expected = (1 - z) * x + (1 + z) * np.log1p(np.exp(-x))
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13)


class TestTFParity:
    """Against TensorFlow itself, where it is installed (the ``parity`` extra)."""

    def test_against_tensorflow(self) -> None:
        tensorflow = pytest.importorskip("tensorflow")
        x = rng().normal(size=(4, 5)).astype(np.float32) * 3
        y = rng().dirichlet(np.ones(5), size=4).astype(np.float32)
        labels = np.asarray([0, 4, 2, 1])
        z = (rng().uniform(size=(4, 5)) > 0.5).astype(np.float32)
        pairs = [
            (tf.softmax(x), tensorflow.nn.softmax(x)),
            (tf.log_softmax(x, axis=0), tensorflow.nn.log_softmax(x, axis=0)),
            (tf.sigmoid(x), tensorflow.math.sigmoid(x)),
            (
                tf.one_hot(np.asarray([1, -1, 9]), 4, on_value=3.0, axis=0),
                tensorflow.one_hot([1, -1, 9], 4, on_value=3.0, axis=0),
            ),
            (tf.reduce_logsumexp(x, [1]), tensorflow.math.reduce_logsumexp(x, [1])),
            (
                tf.softmax_cross_entropy_with_logits(y, x),
                tensorflow.nn.softmax_cross_entropy_with_logits(y, x),
            ),
            (
                tf.sparse_softmax_cross_entropy_with_logits(labels, x),
                tensorflow.nn.sparse_softmax_cross_entropy_with_logits(labels, x),
            ),
            (
                tf.sigmoid_cross_entropy_with_logits(z, x),
                tensorflow.nn.sigmoid_cross_entropy_with_logits(z, x),
            ),
            (
                tf.weighted_cross_entropy_with_logits(z, x, 2.5),
                tensorflow.nn.weighted_cross_entropy_with_logits(z, x, 2.5),
            ),
        ]
        for ours, theirs in pairs[:-1]:
            np.testing.assert_allclose(ours, np.asarray(theirs), rtol=2e-6, atol=1e-7)
        # TensorFlow's weighted_cross_entropy_with_logits cancels
        # ((1 - z) x + l (log1p(e^-|x|) + max(-x, 0)) with x < 0, z = 0): it
        # is within 1e-6 * |x| of the exact value logitkit returns.
        ours, theirs = pairs[-1]
        assert np.all(np.abs(ours - np.asarray(theirs)) <= 1e-6 * (1 + np.abs(x)))


# -------------------------------------------------------------- compat.keras
# Keras 3's formulas, transcribed in float64 NumPy (from_logits=False clips
# the probabilities to [epsilon, 1 - epsilon]; categorical losses divide by
# the sum along axis first).


def _bounds(dtype: Any) -> tuple[float, float]:
    return float(np.asarray(EPS, dtype=dtype)), float(np.asarray(1 - EPS, dtype=dtype))


def ref_cce(
    y: np.ndarray,
    p: np.ndarray,
    ls: float = 0.0,
    axis: int = -1,
    dtype: Any = np.float64,
    logits: bool = False,
) -> np.ndarray:
    y = y.astype(np.float64)
    if ls:
        y = y * (1 - ls) + ls / y.shape[-1]
    p = p.astype(np.float64)
    if logits:
        logp = p - np.log(np.exp(p).sum(axis=axis, keepdims=True))
        return -(y * logp).sum(axis=axis)
    lo, hi = _bounds(dtype)
    q = np.clip(p / p.sum(axis=axis, keepdims=True), lo, hi)
    return -(y * np.log(q)).sum(axis=axis)


def ref_bce(y: np.ndarray, p: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    lo, hi = _bounds(dtype)
    q = np.clip(p.astype(np.float64), lo, hi)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def ref_cfce(
    y: np.ndarray,
    p: np.ndarray,
    alpha: Any = 0.25,
    gamma: float = 2.0,
    logits: bool = False,
) -> np.ndarray:
    if logits:
        e = np.exp(p - p.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
    lo, hi = _bounds(np.float64)
    q = np.clip(p / p.sum(axis=-1, keepdims=True), lo, hi)
    return (alpha * (1 - q) ** gamma * (-y * np.log(q))).sum(axis=-1)


def ref_bfce(
    y: np.ndarray,
    p: np.ndarray,
    balance: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    ls: float = 0.0,
    logits: bool = False,
) -> np.ndarray:
    if ls:
        y = y * (1 - ls) + 0.5 * ls
    if logits:
        p = 1 / (1 + np.exp(-p))
    bce = ref_bce(y, p)
    p_t = y * p + (1 - y) * (1 - p)
    out = (1 - p_t) ** gamma * bce
    if balance:
        out = (y * alpha + (1 - y) * (1 - alpha)) * out
    return out.mean(axis=-1)


def _probs(shape: tuple[int, ...]) -> np.ndarray:
    p = rng().uniform(0.01, 1.0, size=shape)
    p[(0,) * len(shape)] = 0.0  # clipped to epsilon
    return p


class TestKeras:
    @pytest.mark.backend_cases(*SLOW, ls=[0.1])  # smoothing on: a superset of 0
    @pytest.mark.parametrize("ls", [0.0, 0.1])
    def test_categorical_crossentropy(self, xp: Any, ls: float) -> None:
        p = _probs((4, 5)) * 1.3  # not normalised: Keras divides by the sum
        y = np.eye(5)[[0, 1, 4, 2]]
        got = K.categorical_crossentropy(
            xp.asarray(y), xp.asarray(p), label_smoothing=ls
        )
        np.testing.assert_allclose(to_numpy(got), ref_cce(y, p, ls), rtol=1e-14)
        # the label's probability is 0: clipped to 1e-7
        assert to_numpy(got)[0] == pytest.approx(
            -math.log(EPS) * (1 - ls)
            + ref_cce(y, p, ls)[0]
            - (-math.log(EPS)) * (1 - ls),
            rel=1e-14,
        )

    def test_categorical_crossentropy_axis_and_logits(self, xp: Any) -> None:
        x = rng().normal(size=(3, 4)) * 5
        y = rng().dirichlet(np.ones(4), size=3)
        got = K.categorical_crossentropy(
            xp.asarray(y.T), xp.asarray(x.T), from_logits=True, axis=0
        )
        np.testing.assert_allclose(
            to_numpy(got), ref_cce(y, x, logits=True), rtol=1e-13
        )
        got = K.categorical_crossentropy(
            xp.asarray(y), xp.asarray(x), from_logits=True, label_smoothing=0.2
        )
        np.testing.assert_allclose(
            to_numpy(got), ref_cce(y, x, 0.2, logits=True), rtol=1e-13
        )
        p = _probs((3, 4))
        got = K.categorical_crossentropy(xp.asarray(y.T), xp.asarray(p.T), axis=0)
        np.testing.assert_allclose(to_numpy(got), ref_cce(y, p), rtol=1e-14)

    def test_label_smoothing_counts_the_last_axis(self) -> None:
        # Keras smooths with K = shape[-1] whatever `axis` is.
        p = _probs((3, 4))
        y = np.eye(3)[[0, 1, 2, 0]].T  # (3, 4), classes along axis 0
        got = K.categorical_crossentropy(y, p, label_smoothing=0.3, axis=0)
        ys = y * 0.7 + 0.3 / 4
        lo, hi = _bounds(np.float64)
        expected = -(ys * np.log(np.clip(p / p.sum(0), lo, hi))).sum(0)
        np.testing.assert_allclose(got, expected, rtol=1e-14)

    def test_float32_clip_bounds_are_float32(self) -> None:
        p = np.asarray([[1.0, 0.0]], dtype=np.float32)
        y = np.asarray([[0.0, 1.0]], dtype=np.float32)
        got = K.categorical_crossentropy(y, p)
        assert got.dtype == np.float32
        assert got[0] == np.float32(-math.log(float(np.float32(EPS))))
        got = K.categorical_crossentropy(1 - y, p)  # -log(float32(1 - 1e-7))
        assert got[0] == np.float32(-math.log(float(np.float32(1 - EPS))))

    def test_docstring_examples(self) -> None:
        # keras.losses docstrings (rounded there to 3-4 digits).
        y = np.asarray([[0, 1, 0], [0, 0, 1]])
        p = np.asarray([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], dtype=np.float32)
        np.testing.assert_allclose(
            K.categorical_crossentropy(y, p), [0.0513, 2.303], atol=5e-4
        )
        np.testing.assert_allclose(
            K.sparse_categorical_crossentropy(np.asarray([1, 2]), p),
            [0.0513, 2.303],
            atol=5e-4,
        )
        p2 = np.asarray([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]], dtype=np.float32)
        np.testing.assert_allclose(
            K.categorical_focal_crossentropy(y, p2),
            [2.63401289e-04, 6.75912094e-01],
            rtol=1e-6,
        )
        yb = np.asarray([[0, 1], [0, 0]])
        pb = np.asarray([[0.6, 0.4], [0.4, 0.6]], dtype=np.float32)
        np.testing.assert_allclose(
            K.binary_crossentropy(yb, pb), [0.916, 0.714], atol=1e-3
        )
        np.testing.assert_allclose(
            K.binary_focal_crossentropy(yb, pb, gamma=2), [0.330, 0.206], atol=1e-3
        )

    def test_sparse_categorical_crossentropy(self, xp: Any) -> None:
        p = _probs((4, 5))
        labels = np.asarray([0, 3, 4, 1])
        expected = ref_cce(np.eye(5)[labels], p)
        got = K.sparse_categorical_crossentropy(xp.asarray(labels), xp.asarray(p))
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-14)
        # (N, 1) labels are squeezed; floating labels are cast
        got = K.sparse_categorical_crossentropy(
            xp.asarray(labels[:, None] * 1.0), xp.asarray(p)
        )
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-14)
        # ignore_class: 0 there
        lab = np.asarray([0, -1, 4, -1])
        got = K.sparse_categorical_crossentropy(
            xp.asarray(lab), xp.asarray(p), ignore_class=-1
        )
        np.testing.assert_allclose(
            to_numpy(got),
            np.where(lab == -1, 0.0, ref_cce(np.eye(5)[np.maximum(lab, 0)], p)),
            rtol=1e-14,
        )
        x = rng().normal(size=(4, 5))
        got = K.sparse_categorical_crossentropy(
            xp.asarray(lab), xp.asarray(x), from_logits=True, ignore_class=-1
        )
        exp = ref_cce(np.eye(5)[np.maximum(lab, 0)], x, logits=True)
        np.testing.assert_allclose(
            to_numpy(got), np.where(lab == -1, 0.0, exp), rtol=1e-13
        )
        # class axis 1 of (N, C, d)
        p3 = np.moveaxis(_probs((4, 2, 5)), -1, 1)
        lab3 = rng().integers(0, 5, size=(4, 2))
        got = K.sparse_categorical_crossentropy(
            xp.asarray(lab3), xp.asarray(p3), axis=1
        )
        exp3 = ref_cce(np.moveaxis(np.eye(5)[lab3], -1, 1), p3, axis=1)
        np.testing.assert_allclose(to_numpy(got), exp3, rtol=1e-14)

    def test_sparse_out_of_range(self) -> None:
        with pytest.raises(ValueError, match=r"`y_true` must be in \[0, 3\); got 3"):
            K.sparse_categorical_crossentropy(np.asarray([3]), np.full((1, 3), 1 / 3))

    @pytest.mark.backend_cases(*SLOW, ls=[0.2])  # smoothing on: a superset of 0
    @pytest.mark.parametrize("ls", [0.0, 0.2])
    def test_binary_crossentropy(self, xp: Any, ls: float) -> None:
        p = _probs((3, 4))
        p[1, 1] = 1.0
        y = rng().uniform(size=(3, 4))
        ys = y * (1 - ls) + 0.5 * ls
        got = K.binary_crossentropy(xp.asarray(y), xp.asarray(p), label_smoothing=ls)
        np.testing.assert_allclose(to_numpy(got), ref_bce(ys, p).mean(-1), rtol=1e-14)
        got = K.binary_crossentropy(
            xp.asarray(y), xp.asarray(p), label_smoothing=ls, axis=0
        )
        np.testing.assert_allclose(to_numpy(got), ref_bce(ys, p).mean(0), rtol=1e-14)
        x = rng().normal(size=(3, 4)) * 4
        got = K.binary_crossentropy(
            xp.asarray(y), xp.asarray(x), from_logits=True, label_smoothing=ls
        )
        expected = (np.maximum(x, 0) - x * ys + np.log1p(np.exp(-np.abs(x)))).mean(-1)
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13)

    def test_binary_from_logits_is_exact(self) -> None:
        got = K.binary_crossentropy(
            np.asarray([[1.0, 0.0]]), np.asarray([[40.0, -40.0]]), from_logits=True
        )
        assert got[0] == pytest.approx(math.exp(-40), rel=1e-15)  # not 0

    def test_categorical_focal_crossentropy(self, xp: Any) -> None:
        p = _probs((4, 5))
        y = rng().dirichlet(np.ones(5), size=4)
        got = K.categorical_focal_crossentropy(xp.asarray(y), xp.asarray(p))
        np.testing.assert_allclose(to_numpy(got), ref_cfce(y, p), rtol=1e-13)
        alpha = [0.1, 0.2, 0.3, 0.2, 0.2]
        got = K.categorical_focal_crossentropy(
            xp.asarray(y), xp.asarray(p), alpha=alpha, gamma=1.5
        )
        np.testing.assert_allclose(
            to_numpy(got), ref_cfce(y, p, np.asarray(alpha), 1.5), rtol=1e-13
        )
        x = rng().normal(size=(4, 5)) * 3
        got = K.categorical_focal_crossentropy(
            xp.asarray(y), xp.asarray(x), from_logits=True
        )
        np.testing.assert_allclose(
            to_numpy(got), ref_cfce(y, x, logits=True), rtol=1e-12
        )

    # balancing and smoothing on: the unbalanced, unsmoothed path is a subset
    @pytest.mark.backend_cases(*SLOW, balance=[True])
    @pytest.mark.parametrize(("balance", "ls"), [(False, 0.0), (True, 0.1)])
    def test_binary_focal_crossentropy(self, xp: Any, balance: bool, ls: float) -> None:
        p = _probs((3, 4))
        y = (rng().uniform(size=(3, 4)) > 0.5).astype(np.float64)
        got = K.binary_focal_crossentropy(
            xp.asarray(y),
            xp.asarray(p),
            apply_class_balancing=balance,
            label_smoothing=ls,
        )
        np.testing.assert_allclose(
            to_numpy(got), ref_bfce(y, p, balance, ls=ls), rtol=1e-13
        )
        x = rng().normal(size=(3, 4)) * 3
        got = K.binary_focal_crossentropy(
            xp.asarray(y),
            xp.asarray(x),
            apply_class_balancing=balance,
            alpha=0.4,
            gamma=3.0,
            from_logits=True,
            label_smoothing=ls,
        )
        np.testing.assert_allclose(
            to_numpy(got),
            ref_bfce(y, x, balance, 0.4, 3.0, ls, logits=True),
            rtol=1e-12,
        )

    def test_float32_is_the_float64_value_rounded(self) -> None:
        p = _probs((6, 5)).astype(np.float32)
        y = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0]]
        got = K.categorical_crossentropy(y, p)
        assert got.dtype == np.float32
        expected = ref_cce(y, p, dtype=np.float32).astype(np.float32)
        np.testing.assert_array_max_ulp(got, expected, maxulp=1)

    def test_keras_warnings_and_errors(self) -> None:
        with pytest.warns(SyntaxWarning, match="num_classes > 1"):
            K.categorical_crossentropy(np.ones((2, 1)), np.ones((2, 1)))
        with pytest.raises(ValueError, match="`axis` must be of type `int`"):
            K.categorical_crossentropy(np.ones((2, 2)), np.ones((2, 2)), axis=True)
        with pytest.raises(ValueError, match="must have the same shape"):
            K.binary_crossentropy(np.ones((2, 2)), np.ones((2, 3)))


@pytest.fixture
def keras_mod() -> Any:
    """Keras 3, on TensorFlow if that is installed, else on JAX."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


class TestKerasParity:
    """Against Keras 3 itself (run with Keras 3.15.1, JAX backend, when written).

    Keras computes in float32 (sums and divisions rounded in float32); logitkit
    computes the same formula exactly: they agree to a few float32 ulps.
    """

    def test_against_keras(self, keras_mod: Any) -> None:
        losses = keras_mod.losses
        g = rng()
        p = g.uniform(0.0, 1.0, size=(6, 5)).astype(np.float32)
        p[0, 0] = 0.0
        x = (g.normal(size=(6, 5)) * 3).astype(np.float32)
        y = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0]]
        ys = g.dirichlet(np.ones(5), size=6).astype(np.float32)
        yb = (g.uniform(size=(6, 5)) > 0.5).astype(np.float32)
        lab = np.asarray([0, 1, 2, 3, 4, 0])
        cases = [
            ("categorical_crossentropy", (y, p), {}),
            ("categorical_crossentropy", (ys, p), {"label_smoothing": 0.1}),
            ("categorical_crossentropy", (ys, x), {"from_logits": True}),
            ("categorical_crossentropy", (ys.T, p.T), {"axis": 0}),
            ("sparse_categorical_crossentropy", (lab, p), {}),
            ("sparse_categorical_crossentropy", (lab, x), {"from_logits": True}),
            ("sparse_categorical_crossentropy", (lab, p), {"ignore_class": 2}),
            ("binary_crossentropy", (yb, p), {}),
            ("binary_crossentropy", (yb, p), {"label_smoothing": 0.2, "axis": 0}),
            ("binary_crossentropy", (yb, x), {"from_logits": True}),
            ("categorical_focal_crossentropy", (y, p), {}),
            (
                "categorical_focal_crossentropy",
                (ys, x),
                {"from_logits": True, "gamma": 1.5},
            ),
            ("binary_focal_crossentropy", (yb, p), {}),
            (
                "binary_focal_crossentropy",
                (yb, x),
                {
                    "apply_class_balancing": True,
                    "from_logits": True,
                    "label_smoothing": 0.1,
                },
            ),
        ]
        tf_backend = keras_mod.backend.backend() == "tensorflow"
        for name, args, kwargs in cases:
            ours = getattr(K, name)(*args, **kwargs)
            theirs = np.asarray(getattr(losses, name)(*args, **kwargs))
            assert ours.shape == theirs.shape, name
            if tf_backend and name.startswith("sparse") and "from_logits" not in kwargs:
                # Keras' TensorFlow backend feeds log(clip(p)) to a softmax, so
                # it renormalises by the sum of the *clipped* probabilities;
                # the JAX, NumPy and torch backends (and lk.compat.keras) clip
                # the normalised ones. They differ only where p is clipped.
                q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
                tf_ref = -np.log(q[np.arange(6), lab] / q.sum(axis=1))
                if "ignore_class" in kwargs:
                    tf_ref[lab == kwargs["ignore_class"]] = 0.0
                np.testing.assert_allclose(theirs, tf_ref, rtol=5e-6, atol=2e-7)
                clipped = p[np.arange(6), lab] < 1e-7
                ours, theirs = ours[~clipped], theirs[~clipped]
            np.testing.assert_allclose(
                ours, theirs, rtol=5e-6, atol=2e-7, err_msg=f"{name} {kwargs}"
            )


# -------------------------------------------------------------- compat.torch


@pytest.fixture
def torch_mod() -> Any:
    return pytest.importorskip("torch")


def _t(torch: Any, a: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(a))


CE_SHAPES = [((5, 4), (5,)), ((4,), ()), ((3, 4, 2, 3), (3, 2, 3))]


class TestTorch:
    # JAX and Dask: the weighted, smoothed mean (the sum and the per-example
    # losses are its numerator; the unweighted, unsmoothed variants differ
    # only in backend-neutral branches that NumPy, array-api-strict and
    # PyTorch run). Dask on every shape; JAX, which compiles each new shape,
    # on the (N, C, d1, d2) one, whose class axis the wrapper moves (the
    # shape handling is the same backend-neutral code for all three).
    @pytest.mark.backend_cases(*SLOW, reduction=["mean"], weighted=[True], ls=[0.15])
    @pytest.mark.backend_cases("jax.numpy", xshape=[(3, 4, 2, 3)])
    @pytest.mark.parametrize(("xshape", "tshape"), CE_SHAPES)
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("ls", [0.0, 0.15])
    def test_cross_entropy_class_indices(
        self,
        xp: Any,
        torch_mod: Any,
        xshape: Any,
        tshape: Any,
        reduction: str,
        weighted: bool,
        ls: float,
    ) -> None:
        torch = torch_mod
        g = rng()
        x = g.normal(size=xshape) * 3
        c = xshape[0] if len(xshape) == 1 else xshape[1]
        t = g.integers(0, c, size=tshape)
        if t.ndim:
            t.reshape(-1)[::3] = -100  # ignored
        w = g.uniform(0.5, 2.0, size=c) if weighted else None
        # torch 2.13 fails on an unbatched (C,) input with label smoothing
        # ("output with shape [] doesn't match the broadcast shape [1]"): its
        # batch of one gives the same numbers.
        unbatched = len(xshape) == 1
        expected = torch.nn.functional.cross_entropy(
            _t(torch, x[None] if unbatched else x),
            _t(torch, t[None] if unbatched else t),
            weight=None if w is None else _t(torch, w),
            reduction=reduction,
            label_smoothing=ls,
        ).numpy()
        if unbatched and reduction == "none":
            expected = expected[0]
        got = F.cross_entropy(
            xp.asarray(x),
            xp.asarray(t),
            weight=None if w is None else xp.asarray(w),
            reduction=reduction,
            label_smoothing=ls,
        )
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13, atol=1e-15)

    # JAX and Dask: the weighted, smoothed mean, as above
    @pytest.mark.backend_cases(*SLOW, reduction=["mean"], weighted=[True], ls=[0.1])
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("ls", [0.0, 0.1])
    def test_cross_entropy_probabilities(
        self, xp: Any, torch_mod: Any, reduction: str, weighted: bool, ls: float
    ) -> None:
        torch = torch_mod
        g = rng()
        x = g.normal(size=(3, 4, 2)) * 3
        t = np.moveaxis(g.dirichlet(np.ones(4), size=(3, 2)), -1, 1)
        w = g.uniform(0.5, 2.0, size=4) if weighted else None
        expected = torch.nn.functional.cross_entropy(
            _t(torch, x),
            _t(torch, t),
            weight=None if w is None else _t(torch, w),
            reduction=reduction,
            label_smoothing=ls,
        ).numpy()
        got = F.cross_entropy(
            xp.asarray(x),
            xp.asarray(t),
            weight=None if w is None else xp.asarray(w),
            reduction=reduction,
            label_smoothing=ls,
        )
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13, atol=1e-15)

    def test_all_ignored_mean_is_nan_as_in_torch(self, xp: Any, torch_mod: Any) -> None:
        x = np.zeros((2, 3))
        t = np.asarray([-100, -100])
        expected = torch_mod.nn.functional.cross_entropy(
            _t(torch_mod, x), _t(torch_mod, t)
        )
        assert math.isnan(float(expected))
        assert math.isnan(
            float(to_numpy(F.cross_entropy(xp.asarray(x), xp.asarray(t))))
        )
        assert math.isnan(float(to_numpy(F.nll_loss(xp.asarray(x), xp.asarray(t)))))
        assert (
            float(
                to_numpy(F.cross_entropy(xp.asarray(x), xp.asarray(t), reduction="sum"))
            )
            == 0.0
        )

    def test_cross_entropy_float32_is_exact(self, torch_mod: Any) -> None:
        torch = torch_mod
        x = (rng().normal(size=(64, 10)) * 5).astype(np.float32)
        x[0, 3] = 40.0
        t = rng().integers(0, 10, size=64)
        t[0] = 3
        got = F.cross_entropy(x, t, reduction="none")
        assert got.dtype == np.float32
        x64 = x.astype(np.float64)
        exact = torch.nn.functional.cross_entropy(
            _t(torch, x64), _t(torch, t), reduction="none"
        ).numpy()
        # torch's float64 is accurate but for the confident row 0 (it cancels)
        e = np.exp(x64[0] - 40.0)
        e[3] = 0.0
        exact[0] = np.log1p(e.sum())
        np.testing.assert_array_max_ulp(got, exact.astype(np.float32), maxulp=1)
        theirs = torch.nn.functional.cross_entropy(
            _t(torch, x), _t(torch, t), reduction="none"
        ).numpy()
        np.testing.assert_allclose(got, theirs, rtol=1e-5, atol=1e-6)
        # torch's float32 loses the confident answer; logitkit keeps it
        assert theirs[0] == 0.0
        assert got[0] > 0

    # JAX and Dask: the weighted mean; JAX on the (N, C, d1, d2) shape; as above
    @pytest.mark.backend_cases(*SLOW, reduction=["mean"], weighted=[True])
    @pytest.mark.backend_cases("jax.numpy", xshape=[(3, 4, 2, 3)])
    @pytest.mark.parametrize(("xshape", "tshape"), CE_SHAPES)
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    @pytest.mark.parametrize("weighted", [False, True])
    def test_nll_loss(
        self,
        xp: Any,
        torch_mod: Any,
        xshape: Any,
        tshape: Any,
        reduction: str,
        weighted: bool,
    ) -> None:
        torch = torch_mod
        g = rng()
        x = g.normal(size=xshape) * 3
        c = xshape[0] if len(xshape) == 1 else xshape[1]
        t = g.integers(0, c, size=tshape)
        if t.ndim:
            t.reshape(-1)[::4] = 7 if c != 7 else 8
        w = g.uniform(0.5, 2.0, size=c) if weighted else None
        ignore = 7 if c != 7 else 8
        expected = torch.nn.functional.nll_loss(
            _t(torch, x),
            _t(torch, t),
            weight=None if w is None else _t(torch, w),
            ignore_index=ignore,
            reduction=reduction,
        ).numpy()
        got = F.nll_loss(
            xp.asarray(x),
            xp.asarray(t),
            weight=None if w is None else xp.asarray(w),
            ignore_index=ignore,
            reduction=reduction,
        )
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-14, atol=1e-15)

    def test_out_of_range_target(self) -> None:
        with pytest.raises(
            ValueError,
            match=r"`target` must be in \[0, 3\) or ignore_index; got 3 at position 1",
        ):
            F.nll_loss(np.zeros((2, 3)), np.asarray([0, 3]))
        with pytest.raises(ValueError, match="must be in"):
            F.cross_entropy(np.zeros((2, 3)), np.asarray([0, 3]))

    # JAX and Dask: the mean (with and without weights, inside the test)
    @pytest.mark.backend_cases(*SLOW, reduction=["mean"])
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_binary_cross_entropy(
        self, xp: Any, torch_mod: Any, reduction: str
    ) -> None:
        torch = torch_mod
        g = rng()
        p = g.uniform(size=(3, 4))
        p[0, :3] = [0.0, 1.0, 1e-50]  # log clamped at -100
        y = g.uniform(size=(3, 4))
        w = g.uniform(0.5, 2.0, size=(4,))
        for weight in (None, w):
            expected = torch.nn.functional.binary_cross_entropy(
                _t(torch, p),
                _t(torch, y),
                weight=None if weight is None else _t(torch, weight),
                reduction=reduction,
            ).numpy()
            got = F.binary_cross_entropy(
                xp.asarray(p),
                xp.asarray(y),
                weight=None if weight is None else xp.asarray(weight),
                reduction=reduction,
            )
            np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-14)
        if not is_dask_namespace(xp):  # values are checked on eager arrays only
            with pytest.raises(ValueError, match="between 0 and 1"):
                F.binary_cross_entropy(xp.asarray([0.5, 1.5]), xp.asarray([1.0, 1.0]))

    # JAX and Dask: the mean (every weight and pos_weight, inside the test)
    @pytest.mark.backend_cases(*SLOW, reduction=["mean"])
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_binary_cross_entropy_with_logits(
        self, xp: Any, torch_mod: Any, reduction: str
    ) -> None:
        torch = torch_mod
        g = rng()
        x = g.normal(size=(3, 4)) * 5
        y = g.uniform(size=(3, 4))
        w = g.uniform(0.5, 2.0, size=(3, 1))
        pw = g.uniform(0.5, 3.0, size=(4,))
        for weight in (None, w):
            for pos in (None, pw):
                expected = torch.nn.functional.binary_cross_entropy_with_logits(
                    _t(torch, x),
                    _t(torch, y),
                    weight=None if weight is None else _t(torch, weight),
                    pos_weight=None if pos is None else _t(torch, pos),
                    reduction=reduction,
                ).numpy()
                got = F.binary_cross_entropy_with_logits(
                    xp.asarray(x),
                    xp.asarray(y),
                    weight=None if weight is None else xp.asarray(weight),
                    pos_weight=None if pos is None else xp.asarray(pos),
                    reduction=reduction,
                )
                np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13)
        with pytest.raises(ValueError, match="must be the same as input size"):
            F.binary_cross_entropy_with_logits(xp.asarray(x), xp.asarray(y[:, :2]))

    # JAX and Dask: batchmean, both kinds of target (the other reductions
    # divide the same sum differently, in backend-neutral code)
    @pytest.mark.backend_cases(*SLOW, reduction=["batchmean"])
    @pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
    @pytest.mark.parametrize("log_target", [False, True])
    def test_kl_div(
        self, xp: Any, torch_mod: Any, reduction: str, log_target: bool
    ) -> None:
        torch = torch_mod
        g = rng()
        logq = np.log(g.dirichlet(np.ones(5), size=4))
        p = g.dirichlet(np.ones(5), size=4)
        if not log_target:
            p[0, 1] = 0.0  # xlogy(0, 0) = 0
        t = np.log(p) if log_target else p
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's 'mean' warning
            expected = torch.nn.functional.kl_div(
                _t(torch, logq),
                _t(torch, t),
                reduction=reduction,
                log_target=log_target,
            ).numpy()
        if reduction == "mean":
            with pytest.warns(
                UserWarning, match="'batchmean' divides only by the batch size"
            ):
                got = F.kl_div(
                    xp.asarray(logq),
                    xp.asarray(t),
                    reduction=reduction,
                    log_target=log_target,
                )
        else:
            got = F.kl_div(
                xp.asarray(logq),
                xp.asarray(t),
                reduction=reduction,
                log_target=log_target,
            )
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13, atol=1e-16)

    def test_kl_div_zero_target(self, torch_mod: Any) -> None:
        logq = np.asarray([[-np.inf, 0.0], [np.log(0.5), np.log(0.5)]])
        p = np.asarray([[0.0, 1.0], [0.0, 1.0]])
        got = F.kl_div(logq, p, reduction="none")
        np.testing.assert_array_equal(got, [[0.0, 0.0], [0.0, math.log(2)]])
        # torch: NaN for 0 * inf; logitkit keeps 0 log 0 = 0
        theirs = torch_mod.nn.functional.kl_div(
            _t(torch_mod, logq), _t(torch_mod, p), reduction="none"
        )
        assert math.isnan(float(theirs[0, 0]))
        with np.errstate(divide="ignore"):
            logp = np.log(p)
        got = F.kl_div(logq, logp, reduction="none", log_target=True)
        np.testing.assert_array_equal(got, [[0.0, 0.0], [0.0, math.log(2)]])

    def test_legacy_size_average_and_reduce(self) -> None:
        x = rng().normal(size=(4, 3))
        t = np.asarray([0, 1, 2, 1])
        for sa, rd, red in [
            (False, None, "sum"),
            (None, False, "none"),
            (True, True, "mean"),
        ]:
            with pytest.warns(UserWarning, match=f"please use reduction='{red}'"):
                got = F.cross_entropy(x, t, size_average=sa, reduce=rd, reduction="sum")
            expected = F.cross_entropy(x, t, reduction=red)
            np.testing.assert_array_equal(got, expected)
        with pytest.raises(ValueError, match="not a valid value for reduction"):
            F.nll_loss(x, t, reduction="batchmean")

    @pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
    def test_softmax_implicit_dim(self, torch_mod: Any, ndim: int) -> None:
        x = rng().normal(size=(2, 3, 4, 5)[:ndim])
        with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
            got = F.softmax(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            expected = torch_mod.nn.functional.softmax(_t(torch_mod, x)).numpy()
            expected_log = torch_mod.nn.functional.log_softmax(_t(torch_mod, x)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-14)
        with pytest.warns(
            UserWarning, match="Implicit dimension choice for log_softmax"
        ):
            got_log = F.log_softmax(x)
        np.testing.assert_allclose(got_log, expected_log, rtol=1e-13, atol=1e-15)

    def test_softmax_dim_and_dtype(self, xp: Any, torch_mod: Any) -> None:
        x = rng().normal(size=(3, 4))
        expected = torch_mod.nn.functional.softmax(_t(torch_mod, x), dim=0).numpy()
        got = F.softmax(xp.asarray(x, dtype=xp.float32), dim=0, dtype=xp.float64)
        assert got.dtype == xp.float64
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-7)
        got = F.log_softmax(xp.asarray(x), 1, dtype="float32")
        assert got.dtype == xp.float32


def test_array_api_strict_inputs_stay_strict(xp: Any) -> None:
    if not is_array_api_strict_namespace(xp):
        pytest.skip("array-api-strict only")
    x = xp.asarray([[0.0, 1.0], [2.0, 3.0]])
    out = F.cross_entropy(x, xp.asarray([0, 1]))
    assert type(out).__module__.startswith("array_api_strict")
    out = K.binary_crossentropy(xp.asarray([[0.0, 1.0]]), xp.asarray([[0.3, 0.6]]))
    assert type(out).__module__.startswith("array_api_strict")


def test_under_jax_jit() -> None:
    jax = _jax_x64()
    jnp = jax.numpy
    x = jnp.asarray(rng().normal(size=(4, 3)))
    t = jnp.asarray([0, 2, -100, 1])
    eager = F.cross_entropy(x, t, label_smoothing=0.1)
    jitted = jax.jit(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1))(x, t)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-14)
    p = jax.nn.softmax(x)
    lab = jnp.asarray([0, 2, 1, 1])
    eager = K.sparse_categorical_crossentropy(lab, p, ignore_class=1)
    jitted = jax.jit(
        lambda a, b: K.sparse_categorical_crossentropy(a, b, ignore_class=1)
    )(lab, p)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-14)
    eager = F.kl_div(jnp.log(p), p[::-1], reduction="batchmean")
    jitted = jax.jit(lambda a, b: F.kl_div(a, b, reduction="batchmean"))(
        jnp.log(p), p[::-1]
    )
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-14)

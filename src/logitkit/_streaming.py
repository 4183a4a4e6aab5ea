r"""Streaming and sharded normalisation: the running ``logsumexp`` state.

A :class:`LogSumExp` holds, for each slice reduced so far, the running
maximum ``m = x_k`` and the sum of the *other* terms relative to it,

.. math:: S = \sum_{j \ne k} e^{x_j - m}, \qquad
          \operatorname{logsumexp}(x) = m + \operatorname{log1p}(S),

the form of :func:`logitkit._softmax._row_stats`. Two states merge with the
online-softmax rule, the larger maximum ``m_a >= m_b`` kept out of the sum:

.. math:: m = m_a, \qquad S = S_a + e^{m_b - m_a} (1 + S_b).

Every term is non-negative, so the merge never cancels, and a tiny ``S``
(a confident row) keeps its digits through ``log1p``. For float64 inputs
``m_b - m_a`` is carried exactly (TwoSum) and ``S`` as a double-double
(:mod:`logitkit._dd`), so any split and any merge order give the unsharded
value to within an ulp; float32 and narrower inputs are carried in float64.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from ._dd import add_dd, exp_dd, log1p_dd, mul_dd
from ._helpers import add_rounded, const, round_to, two_sum
from ._softmax import _prepare, _row_stats
from ._typing import Array, ArrayNamespace, Axis, DType

__all__ = ["LogSumExp"]


def _merge_arrays(
    m_a: Array,
    s_a: Array,
    lo_a: Array | None,
    m_b: Array,
    s_b: Array,
    lo_b: Array | None,
    /,
    *,
    xp: ArrayNamespace,
) -> tuple[Array, Array, Array | None]:
    r"""Merge two (max, rest-sum) states elementwise.

    ``(m, S)`` with ``m = max(m_a, m_b)`` and ``S = S_a + e^{m_b - m_a}
    (1 + S_b)`` (for ``m_a >= m_b``; symmetric otherwise). With low parts
    (`lo_a` and `lo_b` not None, float64) the sum is a double-double and
    ``m_b - m_a`` is exact. A ``-inf`` maximum (an empty or all ``-inf``
    shard) is the identity; a ``+inf`` maximum gives ``(+inf, 0)``; NaN in
    either state gives ``(nan, nan)``.
    """
    zero = const(0.0, m_a, xp=xp)
    nan = (xp.isnan(m_a) | xp.isnan(m_b)) | (xp.isnan(s_a) | xp.isnan(s_b))
    a_top = m_a >= m_b
    m_hi = xp.where(a_top, m_a, m_b)
    m_lo = xp.where(a_top, m_b, m_a)
    sh = xp.where(a_top, s_a, s_b)
    sl = xp.where(a_top, s_b, s_a)
    ok = xp.isfinite(m_hi) & xp.isfinite(m_lo)
    mh = xp.where(ok, m_hi, zero)
    ml = xp.where(ok, m_lo, zero)
    # m_lo - m_hi can overflow (-1.7e308 - 1.7e308): its exp is then 0.
    half = const(0.5, m_a, xp=xp)
    big = const(float(xp.finfo(m_a.dtype).max) * 0.5, m_a, xp=xp)
    ok = ok & ~((ml * half - mh * half) < -big)
    mh = xp.where(ok, mh, zero)
    ml = xp.where(ok, ml, zero)
    sh = xp.where(xp.isfinite(sh), sh, zero)
    sl = xp.where(xp.isfinite(sl), sl, zero)
    top_inf = m_hi == const(float("inf"), m_a, xp=xp)
    if lo_a is None or lo_b is None:
        e = xp.where(ok, xp.exp(ml - mh), zero)
        s = sh + e * (const(1.0, sl, xp=xp) + sl)
        s = xp.where(top_inf, zero, s)
        s_nan = xp.where(nan, const(float("nan"), s, xp=xp), s)
        m = xp.where(nan, const(float("nan"), m_hi, xp=xp), m_hi)
        return m, s_nan, None
    shl = xp.where(a_top, lo_a, lo_b)
    sll = xp.where(a_top, lo_b, lo_a)
    shl = xp.where(xp.isfinite(shl), shl, zero)
    sll = xp.where(xp.isfinite(sll), sll, zero)
    d_hi, d_lo = two_sum(ml, -mh)  # exact: m_b - m_a as a double-double
    e_hi, e_lo = exp_dd(d_hi, d_lo, xp=xp)
    e_hi = xp.where(ok, e_hi, zero)
    e_lo = xp.where(ok, e_lo, zero)
    o_hi, o_lo = add_dd(xp.ones_like(sl), xp.zeros_like(sl), sl, sll, xp=xp)
    t_hi, t_lo = mul_dd(e_hi, e_lo, o_hi, o_lo, xp=xp)
    s, lo = add_dd(sh, shl, t_hi, t_lo, xp=xp)
    s = xp.where(top_inf, zero, s)
    lo = xp.where(top_inf | nan, zero, lo)
    s = xp.where(nan, const(float("nan"), s, xp=xp), s)
    m = xp.where(nan, const(float("nan"), m_hi, xp=xp), m_hi)
    return m, s, lo


def _state_value(
    m: Array, s: Array, lo: Array | None, /, *, xp: ArrayNamespace
) -> Array:
    """``m + log1p(s + lo)`` in the work dtype, rounded once where refined."""
    if lo is None:
        return m + xp.log1p(s)
    big, small = log1p_dd(s, lo, xp=xp)
    return add_rounded(big, small, m, xp=xp)


class LogSumExp:
    r"""An immutable running ``logsumexp``: a (max, sum-of-the-rest) state.

    For the values seen so far along the reduced axis, with ``m = x_k``
    their maximum,

    .. math:: \operatorname{logsumexp}(x) = m + \operatorname{log1p}(S),
              \qquad S = \sum_{j \ne k} e^{x_j - m}.

    Build one with :meth:`of`, combine with :meth:`merge` or :meth:`update`
    (each returns a new state), read the result with :meth:`value`. Any
    split of the values into shards and any merge order give the
    ``logsumexp`` of the whole (within 1 ulp in float64): a softmax or a
    cross entropy can run over vocabulary shards or chunks that are never in
    memory together (the online-softmax rule).

    Attributes
    ----------
    max : array
        The running maximum ``m`` of each slice, in the state's dtype
        (``-inf`` for a slice with no value yet).
    sum : array
        ``S``, the sum of ``e^{x_j - m}`` over every value but one maximum,
        in the working dtype (float64 where the namespace has it). 0 for a
        single value, ``-inf`` or ``+inf`` maximum.
    shape : tuple of int
        The shape of the slices (the input's shape without the reduced axes).
    dtype : dtype
        The dtype of :meth:`value`: the (promoted) input dtype.
    axis : int or tuple of ints or None
        The axis given to :meth:`of`, used again by :meth:`update`.

    Notes
    -----
    A state holds plain arrays of its namespace (NumPy, PyTorch, JAX, Dask,
    array-api-strict, ...), so it works inside ``jax.jit`` but is not a JAX
    pytree: build and reduce it within one traced function. An empty shard
    or an all ``-inf`` one is the identity of :meth:`merge`; ``+inf``
    anywhere gives ``+inf``; NaN anywhere gives NaN.

    .. versionadded:: 0.2

    Examples
    --------
    >>> import numpy as np
    >>> from logitkit import LogSumExp
    >>> x = np.asarray([0.0, 3.0, -1.0, 700.0, 2.0])
    >>> state = LogSumExp.of(x[:2]).update(x[2:4]).merge(LogSumExp.of(x[4:]))
    >>> float(state.value()), float(state.max)  # = logsumexp(x); e**700 overflows
    (700.0, 700.0)
    >>> s = LogSumExp.of(np.asarray([40.0])).update(np.asarray([0.0]))
    >>> float(s.value() - 40.0), float(s.sum)  # log1p keeps e**-40
    (0.0, 4.248354255291589e-18)
    """

    __slots__ = ("_axis", "_dtype", "_lo", "_m", "_s", "_xp")

    _m: Array
    _s: Array
    _lo: Array | None
    _dtype: DType
    _axis: Axis
    _xp: ArrayNamespace

    def __init__(
        self,
        m: Array,
        s: Array,
        lo: Array | None,
        /,
        *,
        dtype: DType,
        axis: Axis,
        xp: ArrayNamespace,
    ) -> None:
        """Use :meth:`of`; the constructor takes already-computed statistics."""
        for name, value in (
            ("_m", m),
            ("_s", s),
            ("_lo", lo),
            ("_dtype", dtype),
            ("_axis", axis),
            ("_xp", xp),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        msg = f"LogSumExp is immutable; cannot set {name!r}."
        raise AttributeError(msg)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The namespace (a module) is not pickled: it is found again from the
        # arrays, so states can travel between processes (Dask, multiprocessing).
        return (_restore, (self._m, self._s, self._lo, self._dtype, self._axis))

    # ------------------------------------------------------------- building

    @classmethod
    def of(
        cls, x: Any, /, axis: Axis = -1, *, xp: ArrayNamespace | None = None
    ) -> LogSumExp:
        """The state of the values of `x` along `axis`.

        Parameters
        ----------
        x : array_like
            Values; integer input is promoted to the default float dtype.
        axis : int or tuple of ints or None, optional
            Axis or axes to reduce (``None``: all). Default: ``-1``.
        xp : array_namespace, optional
            The namespace of `x`. Default: inferred.

        Returns
        -------
        LogSumExp
            A state of shape ``x.shape`` without `axis`. An empty axis gives
            the identity (``max = -inf``, ``sum = 0``).

        Raises
        ------
        IndexError
            If an axis is out of bounds.
        TypeError
            If `x` is complex.
        """
        p = _prepare(x, axis, None, 1.0, xp=xp)
        xp = p.xp
        batch = tuple(p.x.shape[:-1])
        if p.x.shape[-1] == 0:
            m = xp.full(batch, -float("inf"), dtype=p.x.dtype, device=device(p.x))
            s = xp.zeros_like(m)
            lo = xp.zeros_like(m) if p.refine else None
        else:
            st = _row_stats(p.x, refine=p.refine, xp=xp)
            zero = const(0.0, st.s, xp=xp)
            top_inf = st.m == const(float("inf"), st.m, xp=xp)
            m = xp.where(xp.isnan(st.s), st.s, st.m)
            s = xp.where(top_inf & ~xp.isnan(st.s), zero, st.s)
            m, s = xp.reshape(m, batch), xp.reshape(s, batch)
            lo = None
            if st.s_lo is not None:
                lo = xp.reshape(xp.where(top_inf, zero, st.s_lo), batch)
        if p.scalar:
            m, s = xp.reshape(m, ()), xp.reshape(s, ())
            lo = None if lo is None else xp.reshape(lo, ())
        return cls(m, s, lo, dtype=p.out_dtype, axis=axis, xp=xp)

    def merge(self, other: LogSumExp, /) -> LogSumExp:
        """The state of the values of both `self` and `other`.

        Parameters
        ----------
        other : LogSumExp
            A state of the same shape and namespace.

        Returns
        -------
        LogSumExp
            A new state; its dtype is the promotion of both dtypes and its
            `axis` that of `self`.

        Raises
        ------
        TypeError
            If `other` is not a LogSumExp or holds arrays of another library.
        ValueError
            If the shapes differ (both are named).
        """
        if not isinstance(other, LogSumExp):
            msg = f"`other` must be a LogSumExp; got {type(other).__name__}."
            raise TypeError(msg)
        xp = self._xp
        if other._xp is not xp:
            msg = (
                "`other` must hold arrays of the same library; got "
                f"{other._xp.__name__} and {xp.__name__}."
            )
            raise TypeError(msg)
        if self.shape != other.shape:
            msg = (
                "`other` must have the shape of this state; got shapes "
                f"{other.shape} and {self.shape}."
            )
            raise ValueError(msg)
        dtype = xp.result_type(self._dtype, other._dtype)
        work = xp.result_type(self._m.dtype, other._m.dtype)
        refine = work == xp.float64 and dtype == xp.float64
        parts = []
        for st in (self, other):
            m, s, lo = st._m, st._s, st._lo
            if m.dtype != work:
                m, s = xp.astype(m, work), xp.astype(s, work)
                lo = None if lo is None else xp.astype(lo, work)
            if refine and lo is None:
                lo = xp.zeros_like(s)
            elif not refine and lo is not None:
                s, lo = s + lo, None
            parts.append((m, s, lo))
        (m_a, s_a, lo_a), (m_b, s_b, lo_b) = parts
        m, s, lo = _merge_arrays(m_a, s_a, lo_a, m_b, s_b, lo_b, xp=xp)
        return LogSumExp(m, s, lo, dtype=dtype, axis=self._axis, xp=xp)

    def update(self, x: Any, /) -> LogSumExp:
        """``self.merge(LogSumExp.of(x, axis=self.axis))``.

        Parameters
        ----------
        x : array_like
            More values, of the state's shape plus the reduced axes.

        Returns
        -------
        LogSumExp
            A new state.
        """
        return self.merge(LogSumExp.of(x, self._axis, xp=self._xp))

    # -------------------------------------------------------------- reading

    def value(self) -> Array:
        r"""The ``logsumexp`` of every value seen: ``m + log1p(S)``.

        Returns
        -------
        array
            Of the state's shape and dtype; ``-inf`` for a slice with no
            value (the identity).
        """
        xp = self._xp
        return round_to(
            _state_value(self._m, self._s, self._lo, xp=xp), self._dtype, xp=xp
        )

    @property
    def max(self) -> Array:
        """The running maximum of each slice (``-inf`` where empty)."""
        return round_to(self._m, self._dtype, xp=self._xp)

    @property
    def sum(self) -> Array:
        """``S``: the sum of ``exp(x - max)`` over all values but one maximum."""
        return self._s if self._lo is None else self._s + self._lo

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the state (the input's shape without the reduced axes)."""
        return tuple(self._m.shape)

    @property
    def dtype(self) -> DType:
        """The dtype of :meth:`value`."""
        return self._dtype

    @property
    def axis(self) -> Axis:
        """The reduced axis (or axes) given to :meth:`of`."""
        return self._axis

    def __repr__(self) -> str:
        return (
            f"LogSumExp(shape={self.shape}, dtype={self._dtype}, axis={self._axis!r})"
        )


def _restore(
    m: Array, s: Array, lo: Array | None, dtype: DType, axis: Axis
) -> LogSumExp:
    """Rebuild a pickled :class:`LogSumExp`."""
    from array_api_compat import array_namespace

    return LogSumExp(m, s, lo, dtype=dtype, axis=axis, xp=array_namespace(m))

"""``logitkit tour``: the study note on softmax, logits and cross entropy, redone.

The note (``softmax-logits-crossentropy-notes``) walks through sigmoid, logits,
softmax, log-softmax, one-hot labels and cross entropy with TensorFlow. Each
section here recomputes its examples live with logitkit and prints them beside
the exact value and the note's (or a naive formula's) value.

Exact values are computed in pure Python with :mod:`decimal` at 40 significant
digits; no value is hard-coded but the note's own printouts. NumPy and rich
are imported inside the functions that use them, so that ``logitkit --help``
and ``logitkit tour --list`` start fast.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

__all__ = ["DEFAULT_SEED", "SECTIONS", "WIDTH", "Out", "run"]

#: The seed of the random part (section ``float32-sums``) unless ``--seed``.
DEFAULT_SEED = 0
#: The widest line the tour prints.
WIDTH = 80
#: Significant digits of the exact reference values.
DIGITS = 40

# The note's printouts, verbatim.
NOTE_SOFTMAX = ("0.04201007", "0.8437947", "0.11419519")  # tf.nn.softmax([0, 3, 1])
NOTE_SOFTMAX_SUM = "0.99999994"
NOTE_X = (
    (0.66570611, 0.1626294, 0.36706266, 0.29843456, 0.01490628),
    (0.96794399, 0.33415951, 0.70469845, 0.93473211, 0.06132272),
    (0.1428281, 0.54365674, 0.05789707, 0.66223181, 0.37162914),
)
NOTE_SOFTMAX_2D = (
    "[[0.2808404 , 0.16981504, 0.20833411, 0.19451611, 0.14649433],",
    " [0.27245334, 0.1445583 , 0.20939487, 0.26355326, 0.11004024],",
    " [0.15748642, 0.23513689, 0.14466319, 0.2647386 , 0.1979749 ]]",
)
NOTE_LOG_SOFTMAX_WAY1 = ("-1.3265626", "-0.32656264", "-4.3265624")
NOTE_LOG_SOFTMAX_WAY2 = ("-1.3265626", "-0.32656264", "-4.326563")
NOTE_LABELS = (2, 1, 3)
NOTE_ONE_HOT = ((0, 0, 1, 0, 0), (0, 1, 0, 0, 0), (0, 0, 0, 1, 0))
NOTE_CROSS_ENTROPY = ("2.01969494", "1.59450077", "1.80262151")
#: The logit of the confident example: softmax([0, z])[1] = 1 - 1e-13.
CONFIDENT_LOGIT = 29.933606208922594

Cell = str | tuple[str, str]  # text, or (text, rich style)


# -- output ------------------------------------------------------------------


_NBSP = "\u00a0"


def _glue(text: str) -> str:
    """Join formulas with no-break spaces: around ``+ - * / **``, inside ``[]``.

    >>> _glue("p / (1 - p) = [0, 1]").replace(_NBSP, "~")
    'p~/~(1~-~p) = [0,~1]'
    """
    text = re.sub(r"\[[^\[\]]*\]", lambda m: m.group().replace(" ", _NBSP), text)
    return re.sub(r" (\*\*|[-+*/]) ", _NBSP + r"\1" + _NBSP, text)


class Out:
    """Headings, wrapped explanations, verbatim lines and aligned tables.

    Styled (bold headings, coloured cells) when `console` has a colour
    system, that is on a terminal without ``--no-color``; plain text with
    underlined headings otherwise.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.styled = console.color_system is not None

    def heading(self, title: str) -> None:
        """Start a section."""
        from rich.text import Text

        self.console.print()
        if self.styled:
            self.console.rule(Text(title, style="bold cyan"), align="left")
        else:
            self.console.print(title)
            self.console.print("=" * min(len(title), WIDTH))

    def say(self, text: str) -> None:
        """Print an explanation, wrapped to the console width."""
        wrapped = textwrap.fill(
            _glue(text),
            width=self.console.width,
            break_long_words=False,
            break_on_hyphens=False,
        )
        wrapped = wrapped.replace(_NBSP, " ")
        self.console.print(wrapped, highlight=self.styled, soft_wrap=True)

    def gap(self) -> None:
        """Print an empty line."""
        self.console.print()

    def line(self, text: str, style: str = "") -> None:
        """Print `text` as it is (indented by two spaces), never wrapped."""
        from rich.text import Text

        self.console.print(Text("  " + text, style=style), soft_wrap=True)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
        """Print `rows` in left-aligned columns separated by ``|``."""
        from rich.text import Text

        cells = [[c if isinstance(c, tuple) else (c, "") for c in r] for r in rows]
        widths = [len(h) for h in header]
        for r in cells:
            for j, (text, _) in enumerate(r):
                widths[j] = max(widths[j], len(text))
        head = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
        self.line(head.rstrip(), style="bold" if self.styled else "")
        self.line("-+-".join("-" * w for w in widths))
        for r in cells:
            t = Text("  ")
            for j, ((text, style), w) in enumerate(zip(r, widths, strict=True)):
                if j:
                    t.append(" | ")
                t.append(text, style=style if self.styled else "")
                t.append(" " * (w - len(text)))
            t.rstrip()
            self.console.print(t, soft_wrap=True)


# -- exact values ------------------------------------------------------------


@contextmanager
def _digits(n: int = DIGITS) -> Iterator[None]:
    with localcontext() as ctx:
        ctx.prec = n
        yield


def _log1p(s: Decimal) -> Decimal:
    """``log(1 + s)`` for ``s >= 0`` with `DIGITS` significant digits."""
    if s == 0:
        return Decimal(0)
    with _digits(DIGITS + max(0, -s.adjusted()) + 5):
        r = (1 + s).ln()
    with _digits():
        return +r


def exact_log_softmax(row: Sequence[float]) -> list[Decimal]:
    """The log-softmax of a row of floats, to `DIGITS` significant digits.

    The inputs are taken as the exact binary values they hold.

    >>> [f"{float(v):.10f}" for v in exact_log_softmax([0.0, 0.0])]
    ['-0.6931471806', '-0.6931471806']
    >>> float(-exact_log_softmax([0.0, 200.0])[1])  # exp(-200), not 0
    1.3838965267367376e-87
    """
    xs = [Decimal(float(v)) for v in row]
    with _digits():
        m = max(xs)
        k = xs.index(m)
        s = sum((x - m).exp() for j, x in enumerate(xs) if j != k)
        lse = _log1p(Decimal(s))
        return [(x - m) - lse for x in xs]


def exact_softmax(row: Sequence[float]) -> list[Decimal]:
    """The softmax of a row of floats, to `DIGITS` significant digits.

    >>> [f"{float(p):.12f}" for p in exact_softmax([0.0, 3.0, 1.0])]
    ['0.042010066134', '0.843794734481', '0.114195199385']
    """
    with _digits():
        return [v.exp() for v in exact_log_softmax(row)]


def round_f32(d: Decimal) -> np.float32:
    """`d` correctly rounded to float32 (no double rounding through float64)."""
    import numpy as np

    q = Fraction(d)
    f = np.float32(float(d))
    near = (
        np.nextafter(f, np.float32(-np.inf)),
        f,
        np.nextafter(f, np.float32(np.inf)),
    )
    return min(near, key=lambda c: abs(Fraction(float(c)) - q))


def ulp_error(value: Any, exact: Decimal, bits: int = 24) -> float:
    """The error of `value` in units of the last place of `exact`.

    `bits` is the precision of the format: 24 for float32, 53 for float64.

    >>> ulp_error(1.0 + 2.0**-52, Decimal(1), bits=53)
    1.0
    """
    if exact == 0:
        return 0.0 if float(value) == 0 else math.inf
    _, e = math.frexp(float(exact))  # |exact| in [2**(e-1), 2**e)
    ulp = Fraction(2) ** (e - bits)
    return float((Fraction(float(value)) - Fraction(exact)) / ulp)


# -- formatting --------------------------------------------------------------


def f32(v: Any) -> str:
    """The shortest repr of a float32 value, as NumPy prints a scalar."""
    import numpy as np

    return str(np.float32(v))


def f64(v: Any) -> str:
    """The shortest repr of a float64 value."""
    return repr(float(v))


def ex(d: Decimal, n: int = 12) -> str:
    """An exact value to `n` significant digits.

    >>> ex(Decimal("-4.326562641267470458"))
    '-4.32656264127'
    >>> ex(Decimal(-200))
    '-200'
    """
    return f"{float(d):.{n}g}"


def ulps(e: float, decimals: int = 2) -> str:
    """An ulp error as a signed number with two (or `decimals`) decimals.

    >>> ulps(-0.5037), ulps(-0.5037, 3)
    ('-0.50', '-0.504')
    """
    return f"{e:+.{decimals}f}"


def _good(text: str) -> tuple[str, str]:
    return text, "green"


def _bad(text: str) -> tuple[str, str]:
    return text, "red"


def _exact(text: str) -> tuple[str, str]:
    return text, "cyan"


def _listing(values: Sequence[str]) -> str:
    return "[" + ", ".join(values) + "]"


def _note_float32s(text: str) -> list[np.float32]:
    """The float32 values that NumPy prints as `text` in an array (8 decimals)."""
    import numpy as np

    bits = np.asarray(np.float32(text)).view(np.int32)
    found = []
    for k in range(-4, 5):
        c = np.float32((bits + np.int32(k)).view(np.float32).item())
        if np.format_float_positional(c, precision=8, unique=True) == text:
            found.append(c)
    return found


def _matrix_cells(lines: Sequence[str]) -> list[list[str]]:
    """The entries of a printed 2-D NumPy array, as strings.

    >>> _matrix_cells(["[[0.5 , 1.  ],", " [2.25, 3.  ]]"])
    [['0.5', '1.'], ['2.25', '3.']]
    """
    return [[c.strip(" []") for c in s.rstrip(",").split(",")] for s in lines]


def _ulp_steps(a: np.float32, b: np.float32) -> int:
    """How many float32 values `a` lies above `b` (both positive)."""
    import numpy as np

    return int(np.asarray(a).view(np.int32)) - int(np.asarray(b).view(np.int32))


# -- sections ----------------------------------------------------------------


def _sigmoid(out: Out, seed: int) -> None:  # noqa: ARG001
    import numpy as np

    import logitkit as lk

    out.say(
        'The note: "With only two classes, [sigmoid] performs exactly the same '
        'operation as softmax." Indeed sigmoid(x) = 1 / (1 + exp(-x)) = '
        "exp(x) / (exp(0) + exp(x)) = softmax([0, x])[1]: the probability of "
        "the second class when the first has logit 0."
    )
    all_same = True
    worst = {24: 0.0, 53: 0.0}
    for dtype, fmt, digits, bits in (
        (np.float32, f32, 12, 24),
        (np.float64, f64, 17, 53),
    ):
        rows: list[list[Cell]] = []
        for x in (-2.0, 0.0, 3.0):
            s = lk.sigmoid(np.asarray(x, dtype=dtype))
            p = lk.softmax(np.asarray([0.0, x], dtype=dtype))[1]
            same = bool(s == p)
            all_same = all_same and same
            exact = exact_softmax([0.0, x])[1]
            for v in (s, p):
                worst[bits] = max(worst[bits], abs(ulp_error(v, exact, bits)))
            rows.append(
                [
                    f"{x:g}",
                    _good(fmt(s)),
                    _good(fmt(p)),
                    _good("yes") if same else _bad("no"),
                    _exact(ex(exact, digits)),
                ]
            )
        out.gap()
        out.line(f"{np.dtype(dtype).name}:")
        out.table(
            ["x", "lk.sigmoid(x)", "lk.softmax([0, x])[1]", "same", "exact"], rows
        )
    out.gap()
    agree = "agree bit for bit" if all_same else "differ in places"
    out.say(
        f"The two {agree}. Largest error: {worst[24]:.2f} ulp in float32 "
        f"(correctly rounded), {worst[53]:.2f} ulp in float64. Sigmoid scores "
        "one yes/no class; softmax picks one class out of K. (The note's next "
        "line says softmax is 'for multi-label', where an object can have "
        "several classes at once: that is the other way round. Multi-label "
        "uses one sigmoid per class.)"
    )


def _logits(out: Out, seed: int) -> None:  # noqa: ARG001
    import numpy as np

    import logitkit as lk

    out.say(
        "Logits are the raw outputs of a model, before the final sigmoid or "
        "softmax: any real numbers, not probabilities. Softmax only looks at "
        "their differences, so adding the same constant c to every logit "
        "changes nothing: softmax(x + c) == softmax(x)."
    )
    x = np.asarray([-1.5, 0.25, 2.0], dtype=np.float32)
    base = lk.softmax(x)
    out.gap()
    out.line(f"x = {_listing([f32(v) for v in x])} (float32)")
    out.line(f"lk.softmax(x) = {_listing([f32(v) for v in base])}")
    rows: list[list[Cell]] = []
    for c in (1000.0, -1000.0):
        xc = x + np.float32(c)  # exact in float32 for these values
        p = lk.softmax(xc)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            e = np.exp(xc)
            naive = e / e.sum()
        same = bool(np.array_equal(p, base))
        rows.append(
            [
                f"x {'+' if c > 0 else '-'} {abs(c):g}",
                _good("same bits as for x") if same else _bad("differs"),
                _bad(_listing([f32(v) for v in naive])),
            ]
        )
    out.gap()
    out.table(["logits", "lk.softmax", "naive exp(x) / sum(exp(x))"], rows)
    out.gap()
    out.say(
        "The naive formula overflows (exp(1002) = inf, inf / inf = nan) or "
        "underflows (0 / 0 = nan). Subtracting the largest logit first, as "
        "logitkit does, is exactly this shift invariance put to use."
    )
    p = np.asarray([0.001, 0.5, 0.9, 0.999])
    out.gap()
    out.say(
        "The inverse of sigmoid maps a probability back to a logit, "
        "logit(p) = log(p / (1 - p)):"
    )
    out.line(f"p           = {_listing([f64(v) for v in p])}")
    out.line(f"lk.logit(p) = {_listing([f'{v:.6g}' for v in lk.logit(p)])}")


def _softmax(out: Out, seed: int) -> None:  # noqa: ARG001
    import numpy as np

    import logitkit as lk

    x = np.asarray([0, 3, 1], dtype=np.float32)
    y = lk.softmax(x)
    exact = exact_softmax([float(v) for v in x])
    out.say(
        "softmax(x)_j = exp(x_j) / sum_i exp(x_i): probabilities between 0 "
        "and 1 that sum to 1. The note's case 1, x = [0, 3, 1] in float32:"
    )
    out.gap()
    out.line(f"the note (tf.nn.softmax): {list(NOTE_SOFTMAX)!r}")
    out.line(f"logitkit (lk.softmax):    {[f32(v) for v in y]!r}")
    rows: list[list[Cell]] = []
    ambiguous = False
    note_errs: list[float] = []
    for j, (note, v, e) in enumerate(zip(NOTE_SOFTMAX, y, exact, strict=True)):
        err = ulp_error(v, e)
        cands = _note_float32s(note)
        steps = sorted(_ulp_steps(c, v) for c in cands)
        if len(steps) == 1:
            rel = f"{steps[0]:+d}" if steps[0] else "0"
            note_err = ulp_error(cands[0], e)
            note_errs.append(note_err)
            ncell: Cell = (
                _good(ulps(note_err)) if abs(note_err) <= 0.5 else _bad(ulps(note_err))
            )
        else:
            ambiguous = True
            rel = f"{steps[0]:+d} to {steps[-1]:+d}"
            ncell = "*"
        rows.append(
            [
                str(j),
                _exact(ex(e)),
                _good(f32(v)),
                _good(ulps(err)) if abs(err) <= 0.5 else _bad(ulps(err)),
                note,
                ncell,
                _good(rel) if 0 in steps else _bad(rel),
            ]
        )
    out.gap()
    out.line("errors in ulps of float32 (at most 0.5: correctly rounded):")
    out.table(["j", "exact", "logitkit", "err", "the note", "err", "note - lk"], rows)
    out.gap()
    out.say(
        "logitkit's values are within half an ulp of the exact ones: correctly "
        "rounded. The note's 0.8437947 and 0.11419519 are the float32 values "
        "one step (one ulp) below logitkit's, "
        f"{' and '.join(f'{abs(e):.2f}' for e in note_errs)} ulp from the exact "
        "values: tf.nn.softmax is not correctly rounded there."
    )
    if ambiguous:
        out.say(
            "* NumPy prints float32 arrays with at most 8 decimals, and several "
            "float32 values print as 0.04201007, logitkit's 0.042010065 among "
            "them; 0.8437947 and 0.11419519 each name one float32 value."
        )

    x2 = np.asarray(NOTE_X)
    y2 = lk.softmax(x2)
    out.gap()
    out.say(
        "Case 2, the note's 3x5 float64 matrix x (as printed, to 8 decimals); "
        "softmax along the last axis, printed the way NumPy prints it:"
    )
    out.gap()
    out.line("the note (tf.nn.softmax):")
    for s in NOTE_SOFTMAX_2D:
        out.line(s)
    out.line("logitkit (lk.softmax):")
    mine = np.array2string(y2, separator=", ").splitlines()
    for s in mine:
        out.line(s)
    note_cells = _matrix_cells(NOTE_SOFTMAX_2D)
    my_cells = _matrix_cells(mine)
    diff = [
        (i, j)
        for i, (nr, mr) in enumerate(zip(note_cells, my_cells, strict=True))
        for j, (n, m) in enumerate(zip(nr, mr, strict=True))
        if n != m
    ]
    out.gap()
    if not diff:
        out.say("All 15 printed values agree with the note.")
    for i, j in diff:
        e = exact_softmax([float(v) for v in x2[i]])[j]
        verdict = (
            "logitkit's is the exact value of the printed x rounded to 8 "
            "decimals: the note's real x had digits it did not print."
            if f"{float(e):.8f}" == f"{y2[i, j]:.8f}"
            else "logitkit's differs from the exact value rounded to 8 decimals!"
        )
        out.say(
            f"Row {i}, column {j}: logitkit {my_cells[i][j]}, the note "
            f"{note_cells[i][j]}, exact {ex(e)}. {verdict}"
        )
    sums = y2.sum(axis=1)
    out.gap()
    out.line(f"lk.softmax(x).sum(axis=1) = {np.array2string(sums, separator=', ')}")
    out.line(f"lk.softmax(x).sum()       = {f64(y2.sum())}")
    out.say(
        f"Each row sums to 1 within float64 rounding (largest |sum - 1|: "
        f"{float(np.max(np.abs(sums - 1))):.1e}); the note printed [1., 1., 1.] too."
    )


def _float32_sums(out: Out, seed: int) -> None:
    import numpy as np

    import logitkit as lk

    note = np.asarray(NOTE_SOFTMAX, dtype=np.float32)
    y = lk.softmax(np.asarray([0, 3, 1], dtype=np.float32))
    below = np.nextafter(np.float32(1), np.float32(0))
    out.say(
        f"The note: y.numpy().sum() gave {NOTE_SOFTMAX_SUM}, 'not exactly 1'. "
        f"That is the float32 just below 1.0 (1 - 2**-24 = {f32(below)}). "
        "Each probability is rounded to float32, then every addition of the "
        "sum is rounded again; the sum hits 1.0 only if the errors cancel."
    )
    rows: list[list[Cell]] = [
        [
            "the note's tf row",
            _bad(f32(note.sum(dtype=np.float32))),
            f64(math.fsum(note.tolist())),
        ],
        [
            "logitkit's row",
            _good(f32(y.sum(dtype=np.float32))),
            f64(math.fsum(y.tolist())),
        ],
    ]
    out.gap()
    out.table(["x = [0, 3, 1]", "sum in float32", "exact sum (math.fsum)"], rows)
    err64 = math.fsum([*y.tolist(), -1.0])
    out.gap()
    out.say(
        f"logitkit's three float32 values add up to 1 + {err64:.2e} exactly; "
        f"that is {err64 / 2**-23:.2f} ulp(1.0) with ulp(1.0) = 2**-23, so the "
        "float32 sum rounds to 1.0."
    )

    n_rows, n_cls = 10_000, 10
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n_rows, n_cls)) * 3).astype(np.float32)
    p_lk = lk.softmax(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    p_naive = e / e.sum(axis=-1, keepdims=True)
    out.gap()
    out.say(
        f"Now {n_rows:,} random rows of {n_cls} float32 logits (normal, "
        f"sd 3; seed {seed}). The first row:"
    )
    out.line(_listing([f"{v:.4g}" for v in x[0]]))
    rows = []
    for name, p in (
        ("lk.softmax(x)", p_lk),
        ("naive exp(x - max) / sum", p_naive),
    ):
        s32 = p.sum(axis=-1, dtype=np.float32)
        hits = int(np.count_nonzero(s32 == 1))
        worst = max(abs(math.fsum([*r, -1.0])) for r in p.tolist())
        good = name.startswith("lk")
        rows.append(
            [
                name,
                f"{hits:,} ({100 * hits / n_rows:.1f}%)",
                (_good if good else _bad)(f"{worst:.2e} = {worst / 2**-23:.2f} ulp"),
            ]
        )
    out.gap()
    out.table(["softmax", "float32 sum == 1.0", "max |exact sum - 1|"], rows)
    out.gap()
    out.say(
        "A correctly rounded probability p is off by at most half an ulp, at "
        "most 2**-24 * p, so the exact sum of a row of them is within 2**-24 "
        "= 0.5 ulp(1.0) of 1, however long the row. The float32 sum adds one "
        "more rounding per term, so no softmax can promise a float32 sum of "
        "exactly 1.0: compare sums to 1 with a tolerance, never with ==."
    )


def _log_softmax(out: Out, seed: int) -> None:  # noqa: ARG001
    import numpy as np

    import logitkit as lk

    x = np.asarray([3, 4, 0], dtype=np.float32)
    first = lk.log_softmax(np.asarray([0, 3, 1], dtype=np.float32))
    out.say(
        "log_softmax(x) = log(softmax(x)) = x - logsumexp(x). Careful: the "
        "note drew x again between its cells (np.random.randint). Its "
        f"log-softmax values {_listing(list(NOTE_LOG_SOFTMAX_WAY1))} are those "
        "of x = [3, 4, 0], not of the [0, 3, 1] above (whose log-softmax is "
        f"{_listing([f32(v) for v in first])}). So here x = [3, 4, 0], float32."
    )
    exact = exact_log_softmax([float(v) for v in x])
    way1 = np.log(lk.softmax(x))
    way2 = lk.log_softmax(x)
    note1 = [np.float32(s) for s in NOTE_LOG_SOFTMAX_WAY1]
    note2 = [np.float32(s) for s in NOTE_LOG_SOFTMAX_WAY2]
    header = ["", *(f"x = {f32(v).removesuffix('.0')}" for v in x)]
    methods: list[tuple[str, Sequence[Any], bool]] = [
        ("way 2: lk.log_softmax", way2, True),
        ("way 1: log(lk.softmax)", way1, False),
        ("the note, way 1", note1, False),
        ("the note, way 2", note2, False),
    ]
    rows: list[list[Cell]] = [["exact", *(_exact(ex(e)) for e in exact)]]
    errs: list[list[Cell]] = []
    for name, vals, ours in methods:
        cells: list[Cell] = [name]
        ecells: list[Cell] = [name]
        for v, e in zip(vals, exact, strict=True):
            err = ulp_error(v, e)
            ok = abs(err) <= 0.5
            cells.append(
                _good(f32(v)) if ok and ours else f32(v) if ok else _bad(f32(v))
            )
            ecells.append(_good(ulps(err, 3)) if ok else _bad(ulps(err, 3)))
        rows.append(cells)
        errs.append(ecells)
    out.gap()
    out.table(header, rows)
    out.gap()
    out.line("error in ulps (at most 0.5: correctly rounded):")
    out.table(header, errs)
    e2 = exact[2]
    near, far = sorted(
        (abs(ulp_error(np.float32(t), e2)), t)
        for t in {NOTE_LOG_SOFTMAX_WAY1[2], NOTE_LOG_SOFTMAX_WAY2[2]}
    )
    worst1 = max(abs(ulp_error(v, e)) for v, e in zip(way1, exact, strict=True))
    out.gap()
    out.say(
        "Way 1 is np.log of logitkit's float32 softmax, the note's way 1 "
        "tf.math.log(tf.nn.softmax(x)), its way 2 tf.nn.log_softmax(x). Way 1 "
        "rounds twice, softmax to float32 and then its log, so it can be off "
        f"by about an ulp (here up to {worst1:.2f}); way 2 rounds once. For "
        f"x = 0 the exact {ex(e2)} lies {near[0]:.3f} ulp from {near[1]} and "
        f"{far[0]:.3f} ulp from {far[1]}, nearly a tie: tf.nn.log_softmax "
        f"returned the farther one, {NOTE_LOG_SOFTMAX_WAY2[2]}."
    )

    big = np.asarray([0, 200], dtype=np.float32)
    exact_big = exact_log_softmax([0.0, 200.0])
    with np.errstate(divide="ignore"):
        naive = np.log(lk.softmax(big))
    out.gap()
    out.say(
        "Where log(softmax(x)) breaks: logits [0, 200] in float32. "
        "softmax(x)[0] = exp(-200) = 1.4e-87 is far below the smallest float32 "
        "(1.4e-45), so it rounds to 0 and log(0) = -inf. log_softmax never "
        "forms exp(-200): it is (x_j - max) - log1p(sum of the other terms)."
    )
    rows = [
        ["exact", *(_exact(ex(e)) for e in exact_big)],
        ["lk.log_softmax(x)", *(_good(f32(v)) for v in lk.log_softmax(big))],
        ["np.log(lk.softmax(x))", _bad(f32(naive[0])), f32(naive[1])],
    ]
    out.gap()
    out.table(["x = [0, 200]", "class 0", "class 1"], rows)
    out.gap()
    out.say(
        "(Class 1's exact value, -exp(-200), is below the smallest float32 too: "
        "-0.0 is its correct rounding.)"
    )


def _one_hot(out: Out, seed: int) -> None:  # noqa: ARG001
    import numpy as np

    import logitkit as lk

    labels = np.asarray(NOTE_LABELS)
    y = lk.one_hot(labels, 5, dtype=np.float32)
    out.say(
        "Cross entropy compares the predicted probabilities with the true "
        "class, written as a one-hot row: 1 at the label, 0 elsewhere. The "
        "note drew labels with np.random.randint(0, 5, (3,)); its one-hot rows "
        f"show they were {list(NOTE_LABELS)}. tf.one_hot(y, depth=5, "
        "dtype=tf.float32) becomes:"
    )
    out.gap()
    out.line(f"lk.one_hot(np.asarray({list(NOTE_LABELS)}), 5, dtype=np.float32)")
    for s in repr(y).splitlines():
        out.line(s)
    same = bool(np.array_equal(y, np.asarray(NOTE_ONE_HOT, dtype=np.float32)))
    out.say(f"Same as the note's tf.one_hot output: {'yes' if same else 'NO'}.")
    out.gap()
    out.say(
        "One difference: tf.one_hot turns a label outside [0, depth) into a "
        "row of zeros without a word, so its loss silently becomes 0. "
        "logitkit refuses it:"
    )
    out.gap()
    out.line("lk.one_hot(np.asarray([2, 1, 5]), 5)")
    try:
        lk.one_hot(np.asarray([2, 1, 5]), 5)
    except ValueError as exc:
        out.line(f"ValueError: {exc}", style="red" if out.styled else "")
    else:  # pragma: no cover - logitkit checks labels on NumPy
        out.line("(no error)")


def _cross_entropy(out: Out, seed: int) -> None:  # noqa: ARG001
    import numpy as np

    import logitkit as lk

    x = np.asarray(NOTE_X)
    labels = np.asarray(NOTE_LABELS)
    y = lk.one_hot(labels, 5)
    out.say(
        "Cross entropy of a one-hot y and probabilities p: -sum_j y_j log p_j "
        "= -log p[label]. The note computes it two ways, (a) from "
        "probabilities, categorical_crossentropy(y, softmax(x)), and (b) from "
        "logits, softmax_cross_entropy_with_logits(y, x) = logsumexp(x) - "
        "x[label]. With logitkit, on the note's 3x5 x and labels [2, 1, 3]:"
    )
    out.line("(a) -sum(y * np.log(lk.softmax(x)), axis=-1)")
    out.line(
        "(b) lk.softmax_cross_entropy(x, y)  # = sparse_softmax_cross_entropy(x, k)"
    )
    a = -np.sum(y * np.log(lk.softmax(x)), axis=-1)
    b = lk.softmax_cross_entropy(x, y)
    exact = [-exact_log_softmax(list(r))[k] for r, k in zip(x, labels, strict=True)]
    header = ["", *(f"row {i} (label {k})" for i, k in enumerate(labels))]
    rows: list[list[Cell]] = [
        ["exact (12 digits)", *(_exact(ex(e)) for e in exact)],
        ["(a) from probabilities", *(_good(ex(Decimal(float(v)))) for v in a)],
        ["(b) from logits", *(_good(ex(Decimal(float(v)))) for v in b)],
        ["the note (both ways)", *NOTE_CROSS_ENTROPY],
    ]
    out.gap()
    out.table(header, rows)
    worst_a = max(abs(ulp_error(v, e, 53)) for v, e in zip(a, exact, strict=True))
    worst_b = max(abs(ulp_error(v, e, 53)) for v, e in zip(b, exact, strict=True))
    out.gap()
    p0 = sorted(float(-v) for v in exact_log_softmax(list(x[0])))
    found = any(
        abs(float(-e) - float(t)) < 1e-6
        for r in x
        for e in exact_log_softmax(list(r))
        for t in NOTE_CROSS_ENTROPY
    )
    out.say(
        f"Here both ways agree: (a) is within {worst_a:.2f} ulp and (b) within "
        f"{worst_b:.2f} ulp of the exact float64 loss. The note's losses are "
        "different numbers: "
        + (
            "none of them is -log p of any class of the printed x (row 0 "
            f"offers {p0[0]:.3f} to {p0[-1]:.3f}), so x was drawn again before "
            "these cells, as before its log-softmax. Its two ways agree with "
            "each other, like ours."
            if not found
            else "some match a different label."
        )
    )

    z = np.asarray([0, CONFIDENT_LOGIT], dtype=np.float32)
    ex_loss = -exact_log_softmax([float(v) for v in z])[1]
    with _digits():
        ex_p = (-ex_loss).exp()
    p = lk.softmax(z)
    m = z.max()
    naive_lse = m + np.log(np.sum(np.exp(z - m)))
    unshifted = np.log(np.sum(np.exp(z)))
    exact_p1 = 1 - float(Decimal(1) - ex_p)
    out.gap()
    out.say(
        f"The confident case: logits [0, {CONFIDENT_LOGIT!r}] in float32, "
        f"label 1. The logit rounds to {f32(z[1])} in float32; the top "
        f"probability is 1 - {ex(1 - ex_p, 6)} (float64: {f64(exact_p1)}), and "
        f"the loss -log(p[1]) is about {ex(ex_loss, 6)}."
    )
    lk_loss = -lk.log_softmax(z)[1]
    cands: list[tuple[str, Any]] = [
        ("-np.log(lk.softmax(x)[1])", -np.log(p[1])),
        ("naive m + log(sum(exp(x - m))) - x[1]", naive_lse - z[1]),
        ("naive log(sum(exp(x))) - x[1]", unshifted - z[1]),
        ("lk.logsumexp(x) - x[1]", lk.logsumexp(z) - z[1]),
        ("-lk.log_softmax(x)[1]", lk_loss),
        (
            "lk.sparse_softmax_cross_entropy(x, 1)",
            lk.sparse_softmax_cross_entropy(z, 1),
        ),
    ]
    rows = [
        ["exact", _exact(ex(ex_loss)), ""],
        ["exact, rounded to float32", _exact(f32(round_f32(ex_loss))), ""],
    ]
    for name, v in cands:
        v32 = np.float32(v) + np.float32(0)  # -0.0 -> 0.0
        if v32 == 0:
            rows.append([name, _bad(f32(v32)), _bad("-100%")])
        else:
            err = ulp_error(v32, ex_loss)
            rows.append([name, _good(f32(v32)), _good(f"{ulps(err)} ulp")])
    out.gap()
    out.table(["loss, float32", "value", "error"], rows)
    out.gap()
    out.say(
        f"softmax(x)[1] rounds to {f32(p[1])} (the float32 values near 1 are "
        "6e-8 apart), so -log gives 0. logsumexp(x) = x[1] + 1e-13 rounds to "
        "x[1] as well, even when computed exactly, so subtracting x[1] gives 0. "
        "log_softmax keeps the 1e-13 because it never adds it to 30: "
        "-log_softmax(x)[1] = log1p(exp(-x[1])). So compute losses from "
        "logits with log_softmax, not from probabilities."
    )


class Section(NamedTuple):
    """One part of the tour: its name, a one-line summary and its printer."""

    name: str
    summary: str
    show: Callable[[Out, int], None]

    @property
    def title(self) -> str:
        """The heading: the name, then the summary."""
        return f"{self.name}: {self.summary}"


SECTIONS: tuple[Section, ...] = (
    Section("sigmoid", "sigmoid(x) is the 2-class softmax([0, x])[1]", _sigmoid),
    Section("logits", "raw model outputs, any real numbers, shift-invariant", _logits),
    Section("softmax", "softmax of [0, 3, 1] and of the note's 3x5 matrix", _softmax),
    Section(
        "float32-sums", "why a float32 softmax row sums to 0.99999994", _float32_sums
    ),
    Section(
        "log-softmax",
        "log(softmax(x)) vs log_softmax(x), and where it breaks",
        _log_softmax,
    ),
    Section("one-hot", "one-hot labels [2, 1, 3] with depth 5", _one_hot),
    Section("cross-entropy", "loss from probabilities vs from logits", _cross_entropy),
)


def run(
    console: Console, names: Sequence[str] | None = None, seed: int = DEFAULT_SEED
) -> None:
    """Print the sections called `names` (default: all, in order) to `console`."""
    out = Out(console)
    chosen = [s for s in SECTIONS if names is None or s.name in names]
    if names is None:
        out.say(
            "logitkit tour: the study note on softmax, logits and cross entropy, "
            "recomputed with logitkit beside exact values (40 digits) and the "
            f"note's or a naive formula's values. Random part: seed {seed}."
        )
    for s in chosen:
        out.heading(s.title)
        s.show(out, seed)

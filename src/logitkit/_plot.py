"""The reliability diagram of ``logitkit score --plot`` (matplotlib, optional).

matplotlib (the ``plot`` extra) is imported only here, and only when ``--plot``
is given; the figure is drawn with the Agg canvas directly (no pyplot, no global
backend switch) and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import UsageError, atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOT_FORMATS", "figure", "require_matplotlib", "title", "write_plot"]

#: The file types ``--plot`` writes, by extension.
PLOT_FORMATS = (".png", ".pdf", ".svg")


def require_matplotlib() -> None:
    """A :class:`UsageError` (exit 2) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        msg = "--plot needs matplotlib; install logitkit[plot]"
        raise UsageError(msg) from None


def title(result: dict[str, Any]) -> str:
    """The diagram's title: the ECE, the bins and the rows scored."""
    ece = result["metrics"]["ece"]
    shown = "n/a" if ece is None else f"{ece:.4f}"
    bins = len(result["calibration"])
    return f"Reliability diagram: ECE = {shown} ({bins} bins, {result['scored']} rows)"


def figure(result: dict[str, Any]) -> Figure:
    """The reliability diagram of a multi-class `result` of ``logitkit score``.

    Top: the accuracy of each bin of the top probability (bars), the mean
    confidence of the bin (markers) and the diagonal of perfect calibration;
    bottom: the number of rows of each bin.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cal = result["calibration"]
    lower = [c["lower"] for c in cal]
    width = [c["upper"] - c["lower"] for c in cal]
    centre = [lo + w / 2 for lo, w in zip(lower, width, strict=True)]
    acc = [c["accuracy"] or 0.0 for c in cal]
    counts = [c["count"] for c in cal]
    seen = [c["confidence"] is not None for c in cal]

    fig = Figure(figsize=(6.0, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(
        lower,
        acc,
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    top.plot(
        [c for c, s in zip(centre, seen, strict=True) if s],
        [c["confidence"] for c in cal if c["confidence"] is not None],
        "o",
        color="tab:red",
        markersize=4,
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left")
    top.set_title(title(result))
    bottom.bar(lower, counts, width=width, align="edge", edgecolor="black")
    for c, n in zip(centre, counts, strict=True):
        if n:
            bottom.annotate(
                str(n), (c, n), ha="center", va="bottom", fontsize=7, clip_on=False
            )
    bottom.set_ylim(0, max(1, max(counts, default=0)) * 1.25)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("rows")
    return fig


def write_plot(result: dict[str, Any], path: Path, /) -> None:
    """Draw :func:`figure` to `path` (format by extension), atomically."""
    fig = figure(result)
    fmt = path.suffix.lower().lstrip(".")
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata={"Title": title(result)})

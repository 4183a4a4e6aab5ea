"""``logitkit convert``: the note's transforms of logits, on files, streamed.

``--to probs`` (:func:`logitkit.softmax`), ``--to log-probs``
(:func:`logitkit.log_softmax`) or ``--to labels`` (the arg-max, the first on
ties) of every row of a predictions file, read and written a chunk of rows at a
time, and written atomically: to a temporary file beside the output, renamed
over it at the end; on any failure the temporary file is removed and the output
is left as it was. The inputs and their errors are those of ``logitkit score``
(``docs/score.md``).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy.typing as npt

    from ._io import Source

__all__ = ["OUTPUT_FORMATS", "TARGETS", "add_parser", "run", "transform"]

TARGETS = ("probs", "log-probs", "labels")
OUTPUT_FORMATS = (".npy", ".csv", ".parquet")


def add_parser(sub: Any) -> None:
    """Add the ``convert`` subcommand to the sub-parsers `sub`."""
    from ._score_cli import add_input_options

    p = sub.add_parser(
        "convert",
        help="logits to probabilities, log-probabilities or labels, on files",
        description=(
            "Convert a file of logits, a chunk of rows at a time: --to probs "
            "(softmax), log-probs (log_softmax) or labels (arg-max). The output "
            "(.npy, .csv or .parquet) is written atomically. Exit status 1 for "
            "bad data, 2 for bad usage."
        ),
    )
    p.add_argument(
        "predictions",
        metavar="PREDICTIONS",
        help="logits: .npy, .npz, .csv, .tsv, .parquet or a Zarr directory",
    )
    p.add_argument("--to", required=True, choices=TARGETS, help="what to write")
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="the output: .npy, .csv or .parquet (written atomically)",
    )
    add_input_options(p)
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")
    p.set_defaults(multilabel=False)


def transform(x: npt.NDArray[Any], to: str, /) -> npt.NDArray[Any]:
    """`x` ``(rows, classes)`` of logits as `to` says (see :data:`TARGETS`)."""
    import numpy as np

    from ._softmax import log_softmax, softmax

    if to == "labels":
        labels: npt.NDArray[Any] = np.argmax(x, axis=1).astype(np.int64)
        return labels
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    out: npt.NDArray[Any] = softmax(x) if to == "probs" else log_softmax(x)
    return out


def _count_rows(src: Source) -> int:
    """The rows of a text source, counted in one pass over a fresh reader."""
    from ._io import open_csv

    other = open_csv(src.path)
    try:
        n = 0
        while len(block := other.read(65_536)):
            n += len(block)
    finally:
        other.close()
    return n


class _Writer:
    """Rows of the output, written to `tmp` (the temporary file) in order."""

    def __init__(self, tmp: Path, fmt: str, to: str, n_rows: int, n_cols: int) -> None:
        self.tmp, self.fmt, self.to = tmp, fmt, to
        self.n_rows, self.n_cols = n_rows, n_cols
        self._pos = 0
        self._out: Any = None

    def _start(self, first: npt.NDArray[Any]) -> None:
        import numpy as np

        if self.fmt == "npy":
            shape = (self.n_rows,) if first.ndim == 1 else (self.n_rows, self.n_cols)
            self._out = np.lib.format.open_memmap(
                self.tmp, mode="w+", dtype=first.dtype, shape=shape
            )
        elif self.fmt == "csv":
            self._out = self.tmp.open("w", encoding="utf-8", newline="")
            if first.ndim == 1:
                self._out.write("label\n")
            else:
                self._out.write(",".join(f"c{j}" for j in range(self.n_cols)) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._schema = pa.schema([(self._name(), self._type(pa, first))])
            self._out = pq.ParquetWriter(self.tmp, self._schema)

    def _name(self) -> str:
        return {"probs": "probs", "log-probs": "log_probs", "labels": "label"}[self.to]

    def _type(self, pa: Any, first: npt.NDArray[Any]) -> Any:
        value = pa.from_numpy_dtype(first.dtype)
        return value if first.ndim == 1 else pa.list_(value, self.n_cols)

    def write(self, y: npt.NDArray[Any]) -> None:
        import numpy as np

        if self._out is None:
            self._start(y)
        if self.fmt == "npy":
            self._out[self._pos : self._pos + len(y)] = y
        elif self.fmt == "csv":
            if len(y):
                fmt = "%d" if y.ndim == 1 else "%r"
                rows = y[:, None] if y.ndim == 1 else y
                self._out.write(
                    "".join(
                        ",".join(fmt % v for v in row) + "\n" for row in rows.tolist()
                    )
                )
        elif len(y):
            import pyarrow as pa

            if y.ndim == 1:
                column = pa.array(y)
            else:
                flat = pa.array(np.ascontiguousarray(y).reshape(-1))
                column = pa.FixedSizeListArray.from_arrays(flat, self.n_cols)
            self._out.write_table(pa.Table.from_arrays([column], schema=self._schema))
        self._pos += len(y)

    def finish(self) -> None:
        if self.fmt == "npy":
            self._out.flush()
        self.close()

    def close(self) -> None:
        out, self._out = self._out, None
        if out is None:
            return
        if self.fmt == "npy":
            mm = getattr(out, "_mmap", None)
            del out
            if mm is not None:
                with contextlib.suppress(BufferError):  # a view still alive
                    mm.close()
        else:
            out.close()


def _check_usage(args: argparse.Namespace) -> str:
    from ._io import UsageError
    from ._score_cli import check_input_usage

    check_input_usage(args, [args.predictions])
    fmt = Path(args.output).suffix.lower()
    if fmt not in OUTPUT_FORMATS:
        msg = f"--output {args.output}: expected a .npy, .csv or .parquet file name"
        raise UsageError(msg)
    if fmt == ".parquet":
        from ._io_formats import _require

        _require("pyarrow.parquet", "parquet", Path(args.output))
    return fmt[1:]


def run(args: argparse.Namespace) -> int:
    """Convert as `args` say; errors are raised (see ``_cli.main``)."""
    import numpy as np

    from ._io import DataError, atomic_file
    from ._score import RowError, ScoreOptions, _Checker
    from ._score_cli import CHUNK_BYTES, open_predictions

    out_fmt = _check_usage(args)
    output = Path(args.output)
    checker = _Checker(ScoreOptions())
    with contextlib.ExitStack() as stack:
        pred, column = open_predictions(args, stack)
        k = pred.n_cols - (1 if column is not None else 0)
        if k < 1:
            msg = f"{pred.path}: no prediction columns"
            raise DataError(msg)
        n_rows = pred.n_rows if pred.n_rows is not None else _count_rows(pred)
        chunk = args.chunk_rows or max(1, CHUNK_BYTES // (8 * k))
        with atomic_file(output) as tmp:
            writer = _Writer(tmp, out_fmt, args.to, n_rows, k)
            try:
                row0 = 0
                while True:
                    x = pred.read(chunk)
                    if column is not None:
                        x = np.delete(x, column, axis=1)
                    if row0 and not len(x):
                        break
                    xf = x if x.dtype.kind == "f" else x.astype(np.float64)
                    try:
                        checker.predictions(xf, row0)
                    except RowError as exc:
                        msg = f"{pred.path}: {exc}"
                        raise DataError(msg) from exc
                    writer.write(transform(x, args.to))
                    row0 += len(x)
                    if not len(x):
                        break
                if row0 != n_rows:
                    msg = f"{pred.path}: {row0} rows read; expected {n_rows}"
                    raise DataError(msg)
                writer.finish()
            finally:
                writer.close()
    return 0

"""``logitkit score``: its options, the chunked loop, and the reports.

The parser is built with the rest of the CLI (cheap); NumPy, rich and the
readers are imported only in :func:`run`. Exit status: 0 on success, 1 for a
problem with the data (missing, corrupt, inconsistent or invalid files), 2 for
a problem with the command line. See ``docs/score.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from ._io import Source
    from ._score import MulticlassScorer, MultilabelScorer, ScoreOptions

    Scorer = MulticlassScorer | MultilabelScorer

__all__ = ["add_parser", "feed", "new_scorer", "run", "score_options"]

#: A chunk of rows in float64 (``--chunk-rows`` by default); the work on it
#: peaks at about 8 times this (temporaries of the softmax, the Brier score).
CHUNK_BYTES = 8 * 2**20
#: A chunk of float32 (float16) logits scored by the compiled kernel, which
#: needs no temporaries of the chunk's size: larger chunks, fewer launches.
KERNEL_CHUNK_BYTES = 64 * 2**20
#: Inputs at least this large get a progress bar (on a terminal).
PROGRESS_MIN_BYTES = 256 * 2**20
OUTPUT_FORMATS = (".json", ".csv")
ENGINES = ("memory", "dask")
#: Worker processes of ``--engine dask``'s local cluster by default.
WORKERS = 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"invalid int value: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be at least 1: {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"invalid float value: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not value >= 0.0:
        msg = f"must be a number >= 0: {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_parser(sub: Any) -> None:
    """Add the ``score`` subcommand to the sub-parsers `sub`."""
    p = sub.add_parser(
        "score",
        help="score a file of logits or probabilities against labels",
        description=(
            "Score predictions (logits by default) against labels: cross "
            "entropy, perplexity, accuracy, top-k accuracy, Brier score, "
            "calibration error, entropy. Sums are exact: the numbers do not "
            "depend on --chunk-rows. Exit status 1 for bad data, 2 for bad usage."
        ),
    )
    p.add_argument(
        "predictions",
        metavar="PREDICTIONS",
        help=".npy, .npz, .csv, .tsv, .parquet or a Zarr directory",
    )
    p.add_argument(
        "--labels",
        metavar="FILE",
        help="labels: .npy, .npz, .csv, .tsv, .parquet or a Zarr directory",
    )
    add_input_options(p)
    p.add_argument(
        "--labels-key",
        metavar="KEY",
        help=(
            "the labels' array in a .npz or Zarr group (the predictions' own "
            "without --labels)"
        ),
    )
    p.add_argument("--probs", action="store_true", help="predictions are probabilities")
    p.add_argument(
        "--multilabel",
        action="store_true",
        help="independent sigmoid outputs; labels 0/1 per class, same shape",
    )
    p.add_argument(
        "--ignore-index",
        type=int,
        metavar="INT",
        help="labels of this value are left out (rows; elements with --multilabel)",
    )
    p.add_argument(
        "--top-k",
        type=_positive,
        action="append",
        metavar="K",
        help="top-k accuracy (repeatable; default: 5 when there are more than 5 classes)",
    )
    p.add_argument(
        "--bins",
        type=_positive,
        default=15,
        metavar="N",
        help="equal-width bins of the expected calibration error (default: 15)",
    )
    p.add_argument(
        "--per-class", action="store_true", help="a table by true class (by label)"
    )
    p.add_argument(
        "--prob-tol",
        type=_tolerance,
        metavar="TOL",
        help="with --probs: |row sum - 1| allowed (default: 1e-4, 2 eps for float16)",
    )
    p.add_argument("--json", action="store_true", help="print JSON, not a table")
    p.add_argument(
        "--output",
        metavar="FILE",
        help="also write the results to FILE (.json or .csv), atomically",
    )
    p.add_argument(
        "--plot",
        metavar="FILE",
        help=(
            "also draw a reliability diagram to FILE (.png, .pdf or .svg), "
            "atomically; needs logitkit[plot]"
        ),
    )
    engine = p.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=ENGINES,
        help=(
            "memory: stream the rows through this process (the default); dask: "
            "score partitions in parallel on a Dask cluster (needs logitkit[dask]; "
            ".npy, .parquet and Zarr inputs). Same numbers, bit for bit"
        ),
    )
    engine.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help=f"--engine dask: worker processes of the local cluster (default: {WORKERS})",
    )
    engine.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help=(
            "score on the running Dask cluster at ADDRESS (e.g. tcp://host:8786), "
            "which must see the files at the same paths; implies --engine dask"
        ),
    )
    engine.add_argument(
        "--partition-rows",
        type=_positive,
        metavar="N",
        help=(
            "--engine dask: rows per task (default: 64 MiB of predictions, whole "
            "Zarr chunks, whole Parquet row groups)"
        ),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-color", action="store_true", help="plain text on a terminal")
    p.add_argument("--debug", action="store_true", help="tracebacks on errors")


def add_input_options(p: argparse.ArgumentParser) -> None:
    """The options that say how to read the predictions (score and convert)."""
    p.add_argument(
        "--key", metavar="KEY", help="the predictions' array in a .npz or Zarr group"
    )
    p.add_argument(
        "--column",
        metavar="NAME",
        help=(
            "the predictions are this list column of a .parquet (default: the "
            "only list column, else every numeric column, one per class)"
        ),
    )
    p.add_argument(
        "--label-column",
        metavar="NAME|INDEX",
        help="the labels are this column of the predictions' .csv/.tsv/.parquet",
    )
    p.add_argument(
        "--class-axis",
        type=int,
        default=-1,
        metavar="AXIS",
        help="the class axis of an .npy/.npz/Zarr array (default: -1)",
    )
    p.add_argument(
        "--chunk-rows",
        type=_positive,
        metavar="N",
        help=(
            "rows per chunk (default: 8 MiB of float64 per chunk, ~64 MiB of work; "
            "float32 logits scored by the compiled kernel: 64 MiB of float32)"
        ),
    )


# ------------------------------------------------------------------ inputs


def check_input_usage(args: argparse.Namespace, paths: list[str | None]) -> str | None:
    """Usage errors of the input options; the predictions' format."""
    from ._io import FORMATS, UsageError, input_format

    fmt = None
    for i, name in enumerate(paths):
        if name is None:
            continue
        path = Path(name)
        got = input_format(path)
        if got is None:
            known = ", ".join(FORMATS)
            ext = path.suffix or "(no extension)"
            msg = f"{path}: unknown format {ext!r}; expected {known} (or a Zarr directory)"
            raise UsageError(msg)
        if i == 0:
            fmt = got
    if args.label_column is not None and fmt not in ("csv", "parquet"):
        msg = "--label-column needs .csv, .tsv or .parquet predictions"
        raise UsageError(msg)
    if args.column is not None:
        if fmt != "parquet":
            msg = "--column needs .parquet predictions"
            raise UsageError(msg)
        if args.column == args.label_column:
            msg = f"--column and --label-column name the same column {args.column!r}"
            raise UsageError(msg)
    if args.key is not None and fmt not in ("npz", "zarr"):
        msg = "--key needs .npz or Zarr predictions"
        raise UsageError(msg)
    return fmt


def _check_usage(args: argparse.Namespace) -> None:
    from ._io import UsageError, input_format

    check_input_usage(args, [args.predictions, args.labels])
    if (
        args.output is not None
        and Path(args.output).suffix.lower() not in OUTPUT_FORMATS
    ):
        msg = f"--output {args.output}: expected a .json or .csv file name"
        raise UsageError(msg)
    if args.label_column is not None and args.labels is not None:
        msg = "--label-column and --labels exclude each other"
        raise UsageError(msg)
    if args.labels_key is not None:
        where = args.labels if args.labels is not None else args.predictions
        if input_format(Path(where)) not in ("npz", "zarr"):
            msg = f"--labels-key needs .npz or Zarr labels; {where} is not"
            raise UsageError(msg)
    if args.labels is None and args.label_column is None and args.labels_key is None:
        msg = (
            "no labels: give --labels FILE, --label-column (in a .csv or "
            ".parquet) or --labels-key (in the same .npz or Zarr group)"
        )
        raise UsageError(msg)
    if engine(args) == "dask":
        from ._score_dask import check_dask_usage

        check_dask_usage(args)
    elif args.workers is not None or args.partition_rows is not None:
        option = "--workers" if args.workers is not None else "--partition-rows"
        msg = f"{option} needs --engine dask"
        raise UsageError(msg)
    if args.plot is not None:
        from ._plot import PLOT_FORMATS, require_matplotlib

        if Path(args.plot).suffix.lower() not in PLOT_FORMATS:
            msg = f"--plot {args.plot}: expected a .png, .pdf or .svg file name"
            raise UsageError(msg)
        if args.multilabel:
            msg = (
                "--plot draws a multi-class reliability diagram; not with --multilabel"
            )
            raise UsageError(msg)
        require_matplotlib()


def engine(args: argparse.Namespace) -> str:
    """The engine `args` ask for: ``--scheduler`` means Dask."""
    from ._io import UsageError

    if args.scheduler is not None:
        if args.engine == "memory":
            msg = "--scheduler needs --engine dask (it is the default with --scheduler)"
            raise UsageError(msg)
        return "dask"
    return str(args.engine or "memory")


def _class_axis(args: argparse.Namespace, path: Path) -> Any:
    from ._io import DataError, UsageError

    def of(shape: tuple[int, ...]) -> int | None:
        if len(shape) == 0:
            msg = f"{path}: expected an array of (rows, classes); got a scalar"
            raise DataError(msg)
        if len(shape) == 1:
            if args.multilabel:
                return -1  # one label
            msg = (
                f"{path}: expected an array of (rows, classes); got shape {shape} "
                "(for one sigmoid output per row use --multilabel)"
            )
            raise DataError(msg)
        axis: int = args.class_axis
        if not -len(shape) <= axis < len(shape):
            msg = f"--class-axis {axis} is out of range for {path} of shape {shape}"
            raise UsageError(msg)
        return axis % len(shape)

    return of


def open_predictions(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> tuple[Source, int | None]:
    """The predictions and, for a CSV with ``--label-column``, the labels' column.

    The source is closed by `stack`.
    """
    from ._io import column_index, file_format, open_array, open_csv

    pred_path = Path(args.predictions)
    fmt = file_format(pred_path)
    column = None
    if fmt == "csv":
        pred: Source = open_csv(pred_path)
        stack.callback(pred.close)
        if args.label_column is not None:
            column = column_index(pred, args.label_column)  # type: ignore[arg-type]
    elif fmt == "parquet":
        from ._io_formats import open_parquet

        pred = open_parquet(pred_path, column=args.column, exclude=args.label_column)
        stack.callback(pred.close)
    else:
        pred = open_array(
            pred_path,
            key=args.key,
            class_axis_of=_class_axis(args, pred_path),
            what="predictions",
        )
        stack.callback(pred.close)
    return pred, column


def _open_inputs(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> tuple[Source, Source | None, int | None]:
    """The predictions, the labels (None: a column of the predictions), the column.

    Each source opened is closed by `stack`.
    """
    from ._io import DataError, file_format, open_array, open_csv

    pred_path = Path(args.predictions)
    if args.labels is not None:
        file_format(Path(args.labels))  # unknown format: a usage error first
    pred, column = open_predictions(args, stack)
    if column is not None:
        return pred, None, column
    lab_path = Path(args.labels) if args.labels is not None else pred_path
    lab_fmt = file_format(lab_path)
    if lab_fmt == "csv":
        lab: Source = open_csv(lab_path)
        stack.callback(lab.close)
        return pred, lab, None
    if lab_fmt == "parquet":
        from ._io_formats import open_parquet

        lab = open_parquet(lab_path, column=args.label_column, what="labels")
        stack.callback(lab.close)
        return pred, lab, None
    shape = pred.shape

    def label_axis(lshape: tuple[int, ...]) -> int | None:
        if shape is not None and len(shape) > 2 and len(lshape) == len(shape):
            axis: int = args.class_axis % len(shape)
            return axis  # dense labels laid out like the predictions
        if len(lshape) == 2 and (shape is None or len(shape) <= 2):
            return 1
        if len(lshape) == 0:
            msg = f"{lab_path}: expected labels of (rows,) or (rows, classes); got a scalar"
            raise DataError(msg)
        return None  # class ids: every axis a row axis

    lab = open_array(
        lab_path, key=args.labels_key, class_axis_of=label_axis, what="labels"
    )
    stack.callback(lab.close)
    return pred, lab, None


def _check_sizes(
    pred: Source, lab: Source | None, column: int | None, multilabel: bool
) -> int:
    """The number of classes; a DataError for labels that cannot match."""
    from ._io import DataError

    k = pred.n_cols - (1 if column is not None else 0)
    if k < 1:
        msg = f"{pred.path}: no prediction columns"
        raise DataError(msg)
    if lab is None:
        return k
    if pred.n_rows is not None and lab.n_rows is not None and pred.n_rows != lab.n_rows:
        msg = (
            f"{lab.path}: {lab.n_rows} rows of labels; expected {pred.n_rows}, "
            f"the rows of {pred.path}"
        )
        raise DataError(msg)
    expected = (k,) if multilabel else (1, k)
    if lab.n_cols not in expected:
        what = (
            f"{k} (0/1 per class)" if multilabel else f"1 (class ids) or {k} (one-hot)"
        )
        shape = f" (shape {lab.shape})" if lab.shape is not None else ""
        msg = f"{lab.path}: {lab.n_cols} label columns{shape}; expected {what}"
        raise DataError(msg)
    return k


# -------------------------------------------------------------------- loop


def _progress(args: argparse.Namespace, pred: Source) -> Any:
    """A rich progress bar on stderr, or None."""
    if args.no_progress or pred.bytes_total < PROGRESS_MIN_BYTES:
        return None
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        "scoring",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def score_options(args: argparse.Namespace, k: int) -> ScoreOptions:
    """What to compute, from the command line, for `k` classes."""
    from ._score import ScoreOptions

    top_k = args.top_k if args.top_k is not None else ([5] if k > 5 else [])
    return ScoreOptions(
        probs=args.probs,
        multilabel=args.multilabel,
        ignore_index=args.ignore_index,
        top_k=tuple(sorted(set(top_k))),
        bins=args.bins,
        per_class=args.per_class,
        prob_tol=args.prob_tol,
    )


def new_scorer(k: int, opts: ScoreOptions) -> Scorer:
    """An empty scorer of `k` classes (labels)."""
    from ._score import MulticlassScorer, MultilabelScorer

    return (MultilabelScorer if opts.multilabel else MulticlassScorer)(k, opts)


def chunk_rows(args: argparse.Namespace, k: int, pred: Source | None = None) -> int:
    """Rows per chunk: ``--chunk-rows``, or 8 MiB of float64.

    float32 and float16 logits stored as arrays, scored by the compiled
    kernel, take 64 MiB chunks of float32 instead (the numbers do not depend
    on the chunk size).
    """
    if args.chunk_rows:
        return int(args.chunk_rows)
    k = max(k, 1)
    if (
        pred is not None
        and not args.probs
        and not args.multilabel
        and pred.dtype is not None
        and pred.dtype.kind == "f"
        and pred.dtype.itemsize <= 4
    ):
        from . import _native

        if _native.available():
            return max(1, KERNEL_CHUNK_BYTES // (4 * k))
    return max(1, CHUNK_BYTES // (8 * k))


def feed(
    scorer: Scorer,
    pred: Source,
    lab: Source | None,
    column: int | None,
    *,
    chunk: int,
    row0: int = 0,
    stop: int | None = None,
    progress: Callable[[], None] | None = None,
) -> None:
    """Score the rows ``row0:stop`` (to the end) of `pred` and `lab`, in chunks.

    Both sources are read from where they stand; ``row0`` is the number of
    the first row, for messages. Bad data raises a one-line
    :class:`~logitkit._io.DataError` naming the file and the row.
    """
    import numpy as np

    from ._io import DataError
    from ._score import RowError

    while stop is None or row0 < stop:
        n = chunk if stop is None else min(chunk, stop - row0)
        p = pred.read(n)
        if column is not None:
            y = p[:, column : column + 1]
            p = np.delete(p, column, axis=1)
        else:
            assert lab is not None
            y = lab.read(n)
        if len(p) != len(y):
            short, other = (lab, pred) if len(y) < len(p) else (pred, lab)
            assert short is not None
            assert other is not None
            end = row0 + min(len(p), len(y))
            msg = f"{short.path}: ends after {end} rows; {other.path} has more"
            raise DataError(msg)
        if len(p) == 0:
            break
        try:
            scorer.update(p, y, row0)
        except RowError as exc:
            src = pred if exc.what == "predictions" or lab is None else lab
            msg = f"{src.path}: {exc}"
            raise DataError(msg) from exc
        row0 += len(p)
        if progress is not None:
            progress()


def _score(args: argparse.Namespace) -> dict[str, Any]:
    from . import __version__

    with contextlib.ExitStack() as stack:
        pred, lab, column = _open_inputs(args, stack)
        k = _check_sizes(pred, lab, column, args.multilabel)
        opts = score_options(args, k)
        chunk = chunk_rows(args, k, pred)
        if engine(args) == "dask":
            from ._score_dask import score_on_dask

            scorer = score_on_dask(args, pred, lab, k, opts, chunk)
        else:
            scorer = new_scorer(k, opts)
            bar = _progress(args, pred)
            task = (
                None if bar is None else bar.add_task("score", total=pred.bytes_total)
            )

            def progress() -> None:
                if bar is not None:
                    bar.update(task, completed=pred.bytes_done)

            with bar if bar is not None else _Null():
                feed(scorer, pred, lab, column, chunk=chunk, progress=progress)
    result = scorer.result()
    labels = None if lab is None else str(lab.path)
    head = {
        "schema": "logitkit.score/1",
        "logitkit": __version__,
        "predictions": str(pred.path),
        "labels": (
            labels if args.label_column is None else f"{pred.path}[{args.label_column}]"
        ),
    }
    return {**head, **result}


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ----------------------------------------------------------------- outputs


def _csv_rows(result: dict[str, Any]) -> list[list[Any]]:
    """``metric, class, value`` rows: the metrics, then the per-class table."""
    rows: list[list[Any]] = [["metric", "class", "value"]]
    for key in ("rows", "classes", "scored", "ignored"):
        rows.append([key, "", result[key]])
    for name, value in result["metrics"].items():
        if isinstance(value, dict):
            rows.extend([f"{name}@{k}", "", v] for k, v in value.items())
        else:
            rows.append([name, "", value])
    for entry in result["per_class"] or []:
        c = entry["class"]
        rows.extend([name, c, v] for name, v in entry.items() if name != "class")
    return [["" if v is None else v for v in row] for row in rows]


def write_csv(result: dict[str, Any], fh: IO[str]) -> None:
    """The results as CSV (see ``docs/score.md``)."""
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerows(_csv_rows(result))


def write_json(result: dict[str, Any], fh: IO[str]) -> None:
    """The results as JSON, indented, keys in schema order."""
    json.dump(result, fh, indent=2, allow_nan=False)
    fh.write("\n")


def _number(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.7g}"
    return str(v)


def _table(result: dict[str, Any], console: Console) -> None:
    from rich import box
    from rich.table import Table

    console.print(
        f"{result['predictions']}: {result['rows']} rows, {result['classes']} "
        f"{'labels' if result['task'] == 'multilabel' else 'classes'} "
        f"({result['input']}), {result['scored']} scored, {result['ignored']} ignored"
    )
    metrics = Table("metric", "value", box=box.SIMPLE, show_edge=False)
    for name, value in result["metrics"].items():
        if isinstance(value, dict):
            for k, v in value.items():
                metrics.add_row(f"top-{k} accuracy", _number(v))
        else:
            metrics.add_row(name, _number(value))
    console.print(metrics)
    if result["per_class"]:
        entries = [e for e in result["per_class"] if e["count"] > 0]
        cols = [c for c in entries[0] if c != "class"] if entries else []
        table = Table("class", *cols, box=box.SIMPLE, show_edge=False)
        for e in entries:
            table.add_row(str(e["class"]), *(_number(e[c]) for c in cols))
        console.print(table)


def run(args: argparse.Namespace, console: Console) -> int:
    """Score as `args` say and print; errors are raised (see ``_cli.main``)."""
    _check_usage(args)
    result = _score(args)
    if args.plot is not None:
        from ._plot import write_plot

        write_plot(result, Path(args.plot))
    if args.output is not None:
        from ._io import atomic_write

        out = Path(args.output)
        writer = write_csv if out.suffix.lower() == ".csv" else write_json
        try:
            atomic_write(out, lambda fh: writer(result, fh))
        except OSError as exc:
            from ._io import DataError

            msg = f"{out}: cannot be written ({exc.strerror or exc})"
            raise DataError(msg) from exc
    if args.json:
        buf = io.StringIO()
        write_json(result, buf)
        sys.stdout.write(buf.getvalue())
    else:
        _table(result, console)
    return 0

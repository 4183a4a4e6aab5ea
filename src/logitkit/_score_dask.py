"""The Dask engine of ``logitkit score`` (``--engine dask``, ``--scheduler``).

The rows are cut into **partitions**, ranges of rows: 64 MiB of an ``.npy``
file, whole chunks of a Zarr array, whole row groups of a Parquet file (or
``--partition-rows``). Each partition is one task, which opens the files
itself, on its worker (nothing is shipped from the client but file names),
moves the readers of the memory engine to its first row, and scores its rows a
chunk at a time with the scorer of the memory engine
(:func:`logitkit._score_cli.feed`). The scorers' totals are integers and exact
sums (:class:`logitkit._score.ExactSums`), so merging the partitions' scorers
in a tree reduction gives the numbers of the memory engine, bit for bit.

A partition with bad data does not raise: it returns its one-line message,
and each merge keeps the message of the earliest partition, so the error
reported is the first one in the file's order (with its global row number),
whatever the order in which the tasks ran. The client, and the local cluster
when it started one, are closed on every path.

dask and distributed are the ``dask`` extra, imported only here.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import DataError, UsageError, input_format

if TYPE_CHECKING:
    from ._io import Source
    from ._score import MulticlassScorer, MultilabelScorer, ScoreOptions

    Scorer = MulticlassScorer | MultilabelScorer

__all__ = ["check_dask_usage", "partitions", "score_on_dask"]

#: Predictions per task by default (``.npy``; Zarr and Parquet round it to
#: whole chunks and row groups).
PARTITION_BYTES = 64 * 2**20
#: Partial results merged by one task of the tree reduction.
SPLIT_EVERY = 8
#: Seconds to wait for ``--scheduler``.
CONNECT_TIMEOUT = 10
#: The formats a task can start reading at any row.
DASK_FORMATS = ("npy", "parquet", "zarr")
INSTALL = 'pip install "logitkit[dask]"'


def _require() -> Any:
    """The distributed module; a usage error naming the extra without it."""
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError:
        msg = f"--engine dask needs dask and distributed; {INSTALL}"
        raise UsageError(msg) from None
    return distributed


def check_dask_usage(args: argparse.Namespace) -> None:
    """Usage errors of ``--engine dask``: formats, options, the extra."""
    names = [args.predictions]
    if args.labels is not None:
        names.append(args.labels)
    for name in names:
        fmt = input_format(Path(name))
        if fmt is not None and fmt not in DASK_FORMATS:
            kind = {"csv": "a text", "npz": "an .npz"}.get(fmt, fmt)
            msg = (
                f"{name}: --engine dask reads .npy, .parquet and Zarr inputs; "
                f"{kind} file is a stream that only --engine memory (the default) "
                "reads"
            )
            raise UsageError(msg)
    if args.scheduler is not None and args.workers is not None:
        msg = "--workers starts a local cluster; not with --scheduler"
        raise UsageError(msg)
    _require()


# ------------------------------------------------------------- partitions


def _row_bytes(src: Source) -> int:
    return max(1, src.bytes_total // max(1, src.n_rows or 1))


def partitions(src: Source, rows: int | None = None) -> list[tuple[int, int]]:
    """The row ranges ``(start, stop)`` of the tasks that read `src`.

    `rows` rows each when given; else about :data:`PARTITION_BYTES` of
    `src`, rounded up to whole chunks of a Zarr array (along its slab axis)
    and to whole row groups of a Parquet file.
    """
    from ._io_formats import _ParquetSource, _ZarrSource

    n = int(src.n_rows or 0)
    target = max(1, PARTITION_BYTES // _row_bytes(src))
    if rows is None and isinstance(src, _ParquetSource):
        bounds: list[tuple[int, int]] = []
        start = stop = 0
        for size in src.row_group_sizes():
            stop += size
            if stop - start >= target:
                bounds.append((start, stop))
                start = stop
        if stop > start:
            bounds.append((start, stop))
        return bounds
    if rows is None and isinstance(src, _ZarrSource):
        per_chunk = src.chunk_rows()
        rows = -(-target // per_chunk) * per_chunk
    size = rows or target
    return [(a, min(a + size, n)) for a in range(0, n, size)]


# ------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class _Job:
    """What every task needs: the command line (absolute paths) and the sizes."""

    args: argparse.Namespace
    shown: dict[str, str]  # absolute path -> the path as given, for messages
    k: int
    opts: ScoreOptions
    chunk: int


@dataclass
class _Part:
    """A partition's scorer, or the first error in its rows."""

    index: int
    scorer: Scorer | None
    error: tuple[str, str] | None = None  # ("data" | "usage", message)


def _describe(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, UsageError):
        return "usage", str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, DataError):
        name = f"{exc.filename}: " if exc.filename else ""
        return "data", f"{name}{exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return "data", "out of memory; try a smaller --chunk-rows"
    return "data", str(exc)


def _score_part(job: _Job, index: int, start: int, stop: int) -> _Part:
    """Score rows ``start:stop`` on a worker: open, seek, read, score."""
    from ._score_cli import _open_inputs, feed, new_scorer

    try:
        with contextlib.ExitStack() as stack:
            pred, lab, column = _open_inputs(job.args, stack)
            for src in (pred, lab):
                if src is not None:
                    src.path = Path(job.shown.get(str(src.path), str(src.path)))
                    src.seek(start)
            scorer = new_scorer(job.k, job.opts)
            feed(scorer, pred, lab, column, chunk=job.chunk, row0=start, stop=stop)
    except (DataError, UsageError, OSError, MemoryError) as exc:
        return _Part(index, None, _describe(exc))
    return _Part(index, scorer)


def _merge(*parts: _Part) -> _Part:
    """The earliest partition's error, or the sum of the scorers."""
    errors = [p for p in parts if p.error is not None]
    if errors:
        return min(errors, key=lambda p: p.index)
    assert parts[0].scorer is not None
    total = copy.deepcopy(parts[0].scorer)  # inputs may be shared; never mutated
    for p in parts[1:]:
        assert p.scorer is not None
        total.merge(p.scorer)  # type: ignore[arg-type]
    return _Part(parts[0].index, total)


# ----------------------------------------------------------------- client


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    """A client of ``--scheduler``, or of a local cluster; closed on leaving."""
    from ._score_cli import WORKERS

    distributed = _require()
    with contextlib.ExitStack() as stack:
        if args.scheduler is not None:
            try:
                client = distributed.Client(
                    args.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False
                )
            except (OSError, TimeoutError, ValueError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                msg = f"--scheduler {args.scheduler}: cannot connect ({reason})"
                raise DataError(msg) from exc
            stack.callback(client.close)
        else:
            cluster = distributed.LocalCluster(
                n_workers=args.workers or WORKERS,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # no dashboard, and the scheduler's HTTP server (health
                # checks) on a free port rather than 8787
                scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
                silence_logs=logging.ERROR,
            )
            stack.callback(cluster.close)
            client = distributed.Client(cluster, set_as_default=False)
            stack.callback(client.close)
        yield client


def score_on_dask(
    args: argparse.Namespace,
    pred: Source,
    lab: Source | None,
    k: int,
    opts: ScoreOptions,
    chunk: int,
) -> Scorer:
    """Score `pred` against `lab` on a Dask cluster; the merged scorer.

    `pred` and `lab` are the sources opened (and checked) on the client;
    the tasks open their own.
    """
    from ._score_cli import new_scorer

    bounds = partitions(pred, args.partition_rows)
    if not bounds:
        return new_scorer(k, opts)
    shown = {os.path.abspath(args.predictions): str(pred.path)}
    absolute = {"predictions": os.path.abspath(args.predictions)}
    if args.labels is not None and lab is not None:
        absolute["labels"] = os.path.abspath(args.labels)
        shown[absolute["labels"]] = str(lab.path)
    job = _Job(argparse.Namespace(**{**vars(args), **absolute}), shown, k, opts, chunk)
    distributed = _require()
    with _client(args) as client:
        try:
            futures = [
                client.submit(_score_part, job, i, a, b, pure=False)
                for i, (a, b) in enumerate(bounds)
            ]
            while len(futures) > 1:
                futures = [
                    client.submit(_merge, *futures[i : i + SPLIT_EVERY], pure=False)
                    for i in range(0, len(futures), SPLIT_EVERY)
                ]
            part: _Part = futures[0].result()
        except distributed.KilledWorker as exc:
            msg = (
                f"a Dask worker died while scoring ({exc}); try a smaller --chunk-rows"
            )
            raise DataError(msg) from exc
    if part.error is not None:
        kind, text = part.error
        raise (UsageError if kind == "usage" else DataError)(text)
    assert part.scorer is not None
    return part.scorer

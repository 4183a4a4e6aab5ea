"""Parquet and Zarr readers of ``logitkit score`` and ``logitkit convert``.

Both are :class:`~logitkit._io.Source` objects, read a bounded number of rows
at a time:

- a ``.parquet`` file is read with :meth:`pyarrow.parquet.ParquetFile.iter_batches`
  (a batch of rows at a time, a row group decoded at most), its classes either
  wide (one numeric column per class) or one list / fixed-size-list column of
  length ``K``;
- a Zarr array (v2 or v3, or an array of a group) is read a slab of rows at a
  time (``zarr`` decodes the chunks that the slab touches).

pyarrow and zarr are optional (the ``parquet`` and ``zarr`` extras) and imported
only when such a file is opened; a missing one is a usage error naming the extra.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._io import DataError, Source, UsageError, check_dtype

__all__ = ["is_zarr_dir", "open_parquet", "open_zarr"]


def _require(module: str, extra: str, path: Path) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"{path}: reading it needs {module}; install logitkit[{extra}]"
        raise UsageError(msg) from None


# ------------------------------------------------------------------ parquet


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _ParquetSource(Source):
    """Rows of a Parquet file: wide numeric columns, or one list column.

    ``columns`` are the columns read, in order: one per class (wide), or a
    single list column (``listed``) whose every row holds ``n_cols`` numbers.
    """

    def __init__(
        self, pf: Any, path: Path, columns: list[str], listed: bool, n_cols: int
    ) -> None:
        import pyarrow as pa

        self._pa = pa
        self.path = path
        self.shape = None
        self._pf = pf
        self._columns = columns
        self._listed = listed
        self.n_cols = n_cols
        self.n_rows = int(pf.metadata.num_rows)
        schema = pf.schema_arrow
        types = [schema.field(c).type for c in columns]
        if listed:
            types = [types[0].value_type]
        self.dtype = np.result_type(*(t.to_pandas_dtype() for t in types))
        self._row_bytes = n_cols * self.dtype.itemsize
        self.bytes_total = self.n_rows * self._row_bytes
        self._batches: Any = None
        self._pending: list[npt.NDArray[Any]] = []
        self._buffered = 0
        self._pos = 0  # rows handed out
        self._decoded = 0  # rows decoded

    def _decode(self, batch: Any) -> npt.NDArray[Any]:
        """A record batch as a ``(rows, n_cols)`` array; nulls are errors."""
        m = batch.num_rows
        row0 = self._decoded
        out = np.empty((m, self.n_cols), dtype=self.dtype)
        for j, name in enumerate(self._columns):
            col = batch.column(j)
            if col.null_count:
                r = int(np.argmax(np.asarray(col.is_null())))
                where = f"row {row0 + r}, column {name!r}"
                msg = f"{self.path}: {where}: null; expected numbers"
                raise DataError(msg)
            if not self._listed:
                out[:, j] = col.to_numpy(zero_copy_only=False)
                continue
            if isinstance(col.type, self._pa.FixedSizeListType):
                values = col.flatten()
            else:
                offsets = np.asarray(col.offsets)
                lengths = np.diff(offsets)
                bad = lengths != self.n_cols
                if bad.any():
                    r = int(np.argmax(bad))
                    msg = (
                        f"{self.path}: row {row0 + r}, column {name!r}: a list of "
                        f"{int(lengths[r])} values; expected {self.n_cols} (the "
                        "length of the first row)"
                    )
                    raise DataError(msg)
                values = col.flatten()
            if values.null_count:
                flat = int(np.argmax(np.asarray(values.is_null())))
                r, c = divmod(flat, self.n_cols)
                msg = (
                    f"{self.path}: row {row0 + r}, column {name!r}[{c}]: null; "
                    "expected numbers"
                )
                raise DataError(msg)
            out[:] = values.to_numpy(zero_copy_only=False).reshape(m, self.n_cols)
        return out

    def read(self, n: int, /) -> npt.NDArray[Any]:
        if self._batches is None:
            self._batches = self._pf.iter_batches(
                batch_size=max(1, min(n, 65_536)), columns=self._columns
            )
        while self._buffered < n:
            try:
                batch = next(self._batches, None)
            except (self._pa.ArrowException, OSError, ValueError) as exc:
                msg = (
                    f"{self.path}: corrupt Parquet data after row {self._decoded} "
                    f"({_reason(exc)})"
                )
                raise DataError(msg) from exc
            if batch is None:
                break
            if batch.num_rows == 0:
                continue
            arr = self._decode(batch)
            self._decoded += len(arr)
            self._pending.append(arr)
            self._buffered += len(arr)
        if self._buffered == 0 and self._pos < int(self.n_rows or 0):
            msg = (
                f"{self.path}: truncated: {self.n_rows} rows expected, "
                f"{self._pos} found"
            )
            raise DataError(msg)
        if not self._pending:
            return np.empty((0, self.n_cols), dtype=self.dtype)
        rows = (
            self._pending[0]
            if len(self._pending) == 1
            else np.concatenate(self._pending)
        )
        take, rest = rows[:n], rows[n:]
        self._pending = [rest] if len(rest) else []
        self._buffered = len(rest)
        self._pos += len(take)
        return np.ascontiguousarray(take)

    @property
    def bytes_done(self) -> int:
        return self._pos * self._row_bytes

    def seek(self, row: int, /) -> None:
        """Make `row` the next row :meth:`read` returns.

        Reading starts again at the row group holding `row` (row groups before
        it are not decoded); the rows of that group before `row` are read and
        dropped.
        """
        md = self._pf.metadata
        first, g = 0, 0
        while g < md.num_row_groups and first + md.row_group(g).num_rows <= row:
            first += int(md.row_group(g).num_rows)
            g += 1
        batch = 65_536
        self._batches = self._pf.iter_batches(
            batch_size=batch,
            columns=self._columns,
            row_groups=list(range(g, md.num_row_groups)),
        )
        self._pending, self._buffered = [], 0
        self._decoded = self._pos = first
        while self._pos < row:  # the rows of the row group before `row`
            if len(self.read(min(batch, row - self._pos))) == 0:
                break

    def row_group_sizes(self) -> list[int]:
        """The number of rows of each row group of the file, in order."""
        md = self._pf.metadata
        return [int(md.row_group(g).num_rows) for g in range(md.num_row_groups)]

    def close(self) -> None:
        self._batches = None
        self._pending = []
        self._pf.close()


def _numeric(pa: Any, t: Any) -> bool:
    return bool(
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
    )


def _is_list(pa: Any, t: Any) -> bool:
    return bool(
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
    )


def _open_parquet_file(pq: Any, path: Path) -> Any:
    import pyarrow as pa

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        msg = f"{path}: not a valid Parquet file ({_reason(exc)})"
        raise DataError(msg) from exc


def open_parquet(
    path: Path,
    /,
    *,
    column: str | None = None,
    exclude: str | None = None,
    what: str = "predictions",
) -> Source:
    """A :class:`Source` of a ``.parquet`` file.

    Parameters
    ----------
    path : Path
        The file.
    column : str or None
        Read only this column: a list column (its values are the row) or a
        numeric one (one value per row). None: detect; the one list column
        if there is one (other columns are left alone), else every column
        but `exclude`, each of which must be numeric (one per class).
    exclude : str or None
        A column that is not part of the rows (the labels), when detecting.
    what : str
        "predictions" or "labels", for messages.
    """
    pq = _require("pyarrow.parquet", "parquet", path)
    import pyarrow as pa

    pf = _open_parquet_file(pq, path)
    try:
        return _parquet_source(pa, pf, path, column, exclude, what)
    except BaseException:
        pf.close()
        raise


def _parquet_source(
    pa: Any, pf: Any, path: Path, column: str | None, exclude: str | None, what: str
) -> Source:
    schema = pf.schema_arrow
    names = [f.name for f in schema]
    for given, option in ((column, "--column"), (exclude, "--label-column")):
        if given is not None and given not in names:
            msg = f"{path}: no column {given!r} ({option}; columns: {', '.join(names)})"
            raise UsageError(msg)
    if column is not None:
        chosen = [column]
    else:
        candidates = [n for n in names if n != exclude]
        lists = [n for n in candidates if _is_list(pa, schema.field(n).type)]
        if len(lists) > 1:
            msg = (
                f"{path}: several list columns ({', '.join(lists)}); choose the "
                f"{what} with --column"
            )
            raise UsageError(msg)
        chosen = lists or candidates
    if not chosen:
        msg = f"{path}: no {what} columns"
        raise DataError(msg)
    listed = len(chosen) == 1 and _is_list(pa, schema.field(chosen[0]).type)
    for name in chosen:
        t = schema.field(name).type
        inner = t.value_type if listed else t
        if not _numeric(pa, inner):
            kind = f"a list of {inner}" if listed else str(t)
            msg = (
                f"{path}: column {name!r} holds {kind}; expected numbers (one "
                "numeric column per class, or one list column of numbers)"
            )
            raise DataError(msg)
    if not listed:
        return _ParquetSource(pf, path, chosen, False, len(chosen))
    t = schema.field(chosen[0]).type
    if pa.types.is_fixed_size_list(t):
        k = int(t.list_size)
    else:
        k = _first_length(pa, pf, path, chosen[0])
    if k < 1:
        why = "has no rows" if pf.metadata.num_rows == 0 else "holds empty lists"
        msg = f"{path}: list column {chosen[0]!r} {why}; expected {what}"
        raise DataError(msg)
    return _ParquetSource(pf, path, chosen, True, k)


def _first_length(pa: Any, pf: Any, path: Path, name: str) -> int:
    """The length of the first list of column `name` (0 for an empty file)."""
    if pf.metadata.num_rows == 0:
        return 0
    try:
        batch = next(pf.iter_batches(batch_size=1, columns=[name]))
    except (pa.ArrowException, OSError, ValueError, StopIteration) as exc:
        msg = f"{path}: corrupt Parquet data at row 0 ({_reason(exc)})"
        raise DataError(msg) from exc
    first = batch.column(0)[0]
    if not first.is_valid:
        msg = f"{path}: row 0, column {name!r}: null; expected numbers"
        raise DataError(msg)
    length: int = len(first)
    return length


# --------------------------------------------------------------------- zarr


def is_zarr_dir(path: Path, /) -> bool:
    """Whether `path` is a directory holding Zarr v2 or v3 metadata."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup")
    )


class _ZarrSource(Source):
    """Rows of a Zarr array, its class axis moved last, read a slab at a time.

    The slab axis is the first axis other than the class axis; the rows are
    the other axes flattened in C order, as for ``.npy``.
    """

    def __init__(self, arr: Any, path: Path, class_axis: int | None) -> None:
        self.path = path
        self._arr = arr
        self.shape = tuple(int(s) for s in arr.shape)
        ndim = len(self.shape)
        self._class_axis = class_axis
        if class_axis is None:
            lead = list(range(ndim))
            self.n_cols = 1
        else:
            lead = [a for a in range(ndim) if a != class_axis]
            self.n_cols = self.shape[class_axis] if ndim > 1 else 1
        self._slab_axis = lead[0] if lead else 0
        lead_shape = [self.shape[a] for a in lead]
        self.n_rows = math.prod(lead_shape)
        self._per_slab = max(1, math.prod(lead_shape[1:]))
        self.dtype = np.dtype(arr.dtype)
        self._row_bytes: int = self.n_cols * self.dtype.itemsize
        self.bytes_total = self.n_rows * self._row_bytes
        self._pos = 0

    def read(self, n: int, /) -> npt.NDArray[Any]:
        assert self.n_rows is not None
        start, stop = self._pos, min(self._pos + n, self.n_rows)
        self._pos = stop
        if start >= stop:
            return np.empty((0, self.n_cols), dtype=self.dtype)
        per = self._per_slab
        first, last = start // per, -(-stop // per)
        index = (slice(None),) * self._slab_axis + (slice(first, last),)
        try:
            slab = np.asarray(self._arr[index])
        except Exception as exc:  # zarr's codecs and stores raise many kinds
            msg = (
                f"{self.path}: cannot read rows {start} to {stop - 1} ({_reason(exc)})"
            )
            raise DataError(msg) from exc
        if self._class_axis is not None and slab.ndim > 1:
            slab = np.moveaxis(slab, self._class_axis, -1)
        rows = slab.reshape(-1, self.n_cols)
        offset = first * per
        return np.ascontiguousarray(rows[start - offset : stop - offset])

    @property
    def bytes_done(self) -> int:
        return self._pos * self._row_bytes

    def seek(self, row: int, /) -> None:
        """Make `row` the next row :meth:`read` returns."""
        self._pos = row

    def chunk_rows(self) -> int:
        """The rows of one chunk along the slab axis (of one slab if unchunked)."""
        chunks = getattr(self._arr, "chunks", None)
        return self._per_slab * (int(chunks[self._slab_axis]) if chunks else 1)


def zarr_keys(group: Any) -> list[str]:
    """The names of the arrays directly in a Zarr group, sorted."""
    return sorted(str(k) for k in group.array_keys())


def open_zarr(
    path: Path,
    /,
    *,
    key: str | None,
    class_axis_of: Any,
    what: str,
) -> Source:
    """A :class:`Source` of a Zarr array directory, or of array `key` of a group.

    `class_axis_of` gives the class axis from the array's shape (None: no
    class axis, one column per row).
    """
    zarr = _require("zarr", "zarr", path)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises many kinds for bad metadata
        msg = f"{path}: not a valid Zarr array or group ({_reason(exc)})"
        raise DataError(msg) from exc
    option = "--key" if what == "predictions" else "--labels-key"
    if isinstance(node, zarr.Group):
        keys = zarr_keys(node)
        if key is None:
            if len(keys) != 1:
                msg = (
                    f"{path}: a Zarr group of {len(keys)} arrays "
                    f"({', '.join(keys) or 'none'}); choose the {what} with {option}"
                )
                raise UsageError(msg)
            key = keys[0]
        if key not in keys:
            msg = (
                f"{path}: no array {key!r}; the group holds {', '.join(keys) or 'none'}"
            )
            raise UsageError(msg)
        try:
            node = node[key]
        except Exception as exc:
            msg = f"{path}: array {key!r} cannot be opened ({_reason(exc)})"
            raise DataError(msg) from exc
    elif key is not None:
        msg = f"{path}: {option} {key!r} given, but this is a Zarr array, not a group"
        raise UsageError(msg)
    check_dtype(path, np.dtype(node.dtype), what)
    return _ZarrSource(node, path, class_axis_of(tuple(int(s) for s in node.shape)))

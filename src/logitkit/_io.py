"""Readers of prediction and label files for ``logitkit score``, and atomic writes.

Every reader is a :class:`Source`: a sequence of rows (examples) read in order,
``read(n)`` at a time, each row a vector of columns (the classes; one column for
integer labels). Memory is bounded by the rows asked for, never the file:

- ``.npy`` is memory-mapped; a C-ordered one with its class axis last is read
  in place (views, released page by page), others a copied slab at a time;
- a C-ordered array inside a ``.npz`` (stored or deflated) is decompressed as a
  stream; a Fortran-ordered one, or one whose class axis is not the last, is
  loaded whole (NumPy cannot map a zip member);
- ``.csv``/``.tsv`` are parsed a block of lines at a time;
- ``.parquet`` files and Zarr arrays are read by :mod:`logitkit._io_formats`
  (pyarrow and zarr, optional, imported only there).

An array of more than two dimensions has its class axis moved last; its rows are
all the other axes flattened in C order. Errors in the data raise
:class:`DataError`, errors of the command line :class:`UsageError`; both carry a
one-line message naming the file and, where there is one, the row or column.

NumPy is imported here at module level: this module is only imported by the
``score`` command, never by ``import logitkit``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import mmap
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORMATS",
    "DataError",
    "Source",
    "UsageError",
    "atomic_file",
    "atomic_write",
    "check_dtype",
    "input_format",
    "open_array",
    "open_csv",
]

#: File extensions ``logitkit score`` reads, by format.
FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".zarr": "zarr",
}


class DataError(Exception):
    """A file is missing, unreadable or holds data that cannot be scored (exit 1)."""


class UsageError(Exception):
    """The command line asks for something impossible (exit 2)."""


def input_format(path: Path, /) -> str | None:
    """The format of `path` by extension (a Zarr directory by its metadata too)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None and path.is_dir():
        from ._io_formats import is_zarr_dir

        if is_zarr_dir(path):
            return "zarr"
    return fmt


def file_format(path: Path, /) -> str:
    """The format of `path`, or a :class:`UsageError`; a missing file is a :class:`DataError`."""
    fmt = input_format(path)
    if fmt is None:
        known = ", ".join(FORMATS)
        msg = (
            f"{path}: unknown format {path.suffix or '(no extension)'!r}; "
            f"expected {known} (or a Zarr directory)"
        )
        raise UsageError(msg)
    if not path.exists():
        msg = f"{path}: no such file"
        raise DataError(msg)
    if fmt == "zarr":
        from ._io_formats import is_zarr_dir

        if not is_zarr_dir(path):
            msg = (
                f"{path}: not a Zarr array or group (a directory with zarr.json, "
                ".zarray or .zgroup)"
            )
            raise DataError(msg)
    elif path.is_dir():
        msg = f"{path}: is a directory, expected a {fmt} file"
        raise DataError(msg)
    return fmt


class Source:
    """Rows of a file, read in order.

    Attributes
    ----------
    path : Path
        The file (for messages).
    shape : tuple of int or None
        The array's shape as stored (None for text files).
    n_rows : int or None
        The number of rows, None where unknown before the end (text files).
    n_cols : int
        The number of columns of a row.
    bytes_total : int
        The size of the data, for progress reports.
    dtype : numpy.dtype or None
        The dtype of the stored values where the format fixes it (arrays),
        None for text files.
    """

    path: Path
    shape: tuple[int, ...] | None
    n_rows: int | None
    n_cols: int
    bytes_total: int
    dtype: np.dtype[Any] | None = None

    def read(self, n: int, /) -> npt.NDArray[Any]:
        """The next (at most) `n` rows, as a C-contiguous ``(rows, n_cols)`` array."""
        raise NotImplementedError

    @property
    def bytes_done(self) -> int:
        """How much of `bytes_total` has been read."""
        raise NotImplementedError

    def seek(self, row: int, /) -> None:
        """Make `row` the next row :meth:`read` returns (random-access sources)."""
        msg = f"{self.path}: cannot be read from row {row} on; it is a stream"
        raise UsageError(msg)

    def close(self) -> None:
        """Release the file."""


# ------------------------------------------------------------------ arrays


class _ArraySource(Source):
    """Rows of an in-memory or memory-mapped array, its class axis moved last.

    ``class_axis=None`` means every axis is a row axis (integer labels): each
    row has one column.
    """

    def __init__(
        self,
        arr: npt.NDArray[Any],
        path: Path,
        class_axis: int | None,
        closer: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.shape = tuple(arr.shape)
        if class_axis is None:
            moved = arr[..., np.newaxis]
        else:
            if arr.ndim == 0:
                msg = f"{path}: expected an array of (rows, classes); got a scalar"
                raise DataError(msg)
            if not -arr.ndim <= class_axis < arr.ndim:
                msg = (
                    f"{path}: --class-axis {class_axis} is out of range for an "
                    f"array of shape {self.shape}"
                )
                raise UsageError(msg)
            moved = arr[:, np.newaxis] if arr.ndim == 1 else arr
            moved = np.moveaxis(moved, class_axis if arr.ndim > 1 else -1, -1)
        self._moved = moved
        self.dtype = moved.dtype
        self.n_cols = int(moved.shape[-1])
        lead = moved.shape[:-1]
        self.n_rows = math.prod(lead)
        # rows per index of the first lead axis (a slab)
        self._per_slab = max(1, math.prod(lead[1:]))
        self._pos = 0
        self._row_bytes = self.n_cols * arr.dtype.itemsize
        self.bytes_total = self.n_rows * self._row_bytes
        self._closer = closer

    def read(self, n: int, /) -> npt.NDArray[Any]:
        assert self.n_rows is not None
        start, stop = self._pos, min(self._pos + n, self.n_rows)
        self._pos = stop
        if start >= stop:
            return np.empty((0, self.n_cols), dtype=self._moved.dtype)
        per = self._per_slab
        first, last = start // per, -(-stop // per)
        try:
            slab = np.ascontiguousarray(self._moved[first:last])
        except (OSError, ValueError) as exc:  # a file shrunk under the map
            msg = f"{self.path}: cannot read rows {start} to {stop - 1}: {exc}"
            raise DataError(msg) from exc
        rows = slab.reshape(-1, self.n_cols)
        offset = first * per
        return np.ascontiguousarray(rows[start - offset : stop - offset])

    @property
    def bytes_done(self) -> int:
        return self._pos * self._row_bytes

    def seek(self, row: int, /) -> None:
        self._pos = row

    def close(self) -> None:
        self._moved = np.empty((0, self.n_cols))
        if self._closer is not None:
            self._closer()
            self._closer = None


class _NpyFile(Source):
    """Rows of a C-ordered ``.npy`` file whose class axis is last, read in place.

    The file is memory-mapped read-only and each :meth:`read` returns a view of
    the rows asked for: the data are read once, by whoever computes on them,
    with no copy. The pages of the previous read are then released from the
    process (``madvise(MADV_DONTNEED)``; they stay in the page cache), so that
    resident memory is bounded by the rows asked for, whatever the file's
    size. Before each read the file's size is checked, so that a file that
    shrank between two reads gives an error, not a bus error (a file cut
    while a chunk is being scored, or a failing disk, still can: the price of
    reading in place). Where the file
    cannot be mapped (or ``madvise`` is missing), each read is a positioned
    read (seek and ``readinto``) into a new array.
    """

    def __init__(
        self,
        path: Path,
        offset: int,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        class_axis: int | None,
    ) -> None:
        self.path = path
        self.shape = shape
        self.dtype = self._dtype = dtype
        if class_axis is None or len(shape) <= 1:
            self.n_cols = 1
            self.n_rows = math.prod(shape)
        else:
            self.n_cols = shape[-1]
            self.n_rows = math.prod(shape[:-1])
        self._offset = offset
        self._pos = 0
        self._row_bytes = self.n_cols * dtype.itemsize
        self.bytes_total = self.n_rows * self._row_bytes
        self._fh: io.FileIO | None = io.FileIO(path, "rb")
        self._map: mmap.mmap | None = None
        self._mapped = (0, 0)  # the byte range of the last read, to release
        if hasattr(mmap.mmap, "madvise") and self.bytes_total > 0:
            with contextlib.suppress(OSError, ValueError):
                self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)

    def _truncated(self, start: int, found_bytes: int) -> DataError:
        msg = (
            f"{self.path}: truncated: {self.n_rows} rows expected, "
            f"{start + found_bytes // max(1, self._row_bytes)} found"
        )
        return DataError(msg)

    def _release(self) -> None:
        lo, hi = self._mapped
        if self._map is not None and hi > lo:
            page = mmap.PAGESIZE
            lo = lo // page * page
            with contextlib.suppress(OSError, ValueError):
                self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        self._mapped = (0, 0)

    def read(self, n: int, /) -> npt.NDArray[Any]:
        assert self.n_rows is not None
        assert self._fh is not None
        start, stop = self._pos, min(self._pos + n, self.n_rows)
        self._pos = max(start, stop)
        rows = max(0, stop - start)
        if rows == 0:
            self._release()
            return np.empty((0, self.n_cols), dtype=self._dtype)
        if self._map is not None:
            self._release()
            first = self._offset + start * self._row_bytes
            last = first + rows * self._row_bytes
            try:
                size = os.fstat(self._fh.fileno()).st_size
            except OSError as exc:
                msg = f"{self.path}: cannot read rows {start} to {stop - 1}: {exc}"
                raise DataError(msg) from exc
            if size < last:  # the file shrank after it was opened
                raise self._truncated(start, max(0, size - first))
            self._mapped = (first, last)
            flat = np.frombuffer(
                self._map, dtype=self._dtype, count=rows * self.n_cols, offset=first
            )
            return flat.reshape(rows, self.n_cols)
        out = np.empty((rows, self.n_cols), dtype=self._dtype)
        view = out.reshape(-1).view(np.uint8).data
        done = 0
        try:
            self._fh.seek(self._offset + start * self._row_bytes)
            while done < len(view):
                got = self._fh.readinto(view[done:])
                if not got:
                    break
                done += got
        except OSError as exc:
            msg = f"{self.path}: cannot read rows {start} to {stop - 1}: {exc}"
            raise DataError(msg) from exc
        if done < len(view):  # the file shrank after it was opened
            raise self._truncated(start, done)
        return out

    @property
    def bytes_done(self) -> int:
        return self._pos * self._row_bytes

    def seek(self, row: int, /) -> None:
        self._pos = row

    def close(self) -> None:
        self._release()
        # Views handed out by read() keep the map alive; it is unmapped when
        # the last of them goes (closing it now would fail while they exist).
        self._map = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _NpyStream(Source):
    """Rows of a C-ordered ``.npy`` stream (a member of a zip), read sequentially."""

    def __init__(
        self,
        fh: IO[bytes],
        path: Path,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        class_axis: int | None,
        closer: Callable[[], None],
    ) -> None:
        self.path = path
        self.shape = shape
        self._fh = fh
        self._dtype = dtype
        if class_axis is None or len(shape) <= 1:
            self.n_cols = 1
            self.n_rows = math.prod(shape)
        else:
            self.n_cols = shape[-1]
            self.n_rows = math.prod(shape[:-1])
        self._pos = 0
        self._row_bytes = self.n_cols * dtype.itemsize
        self.bytes_total = self.n_rows * self._row_bytes
        self._closer: Callable[[], None] | None = closer

    def read(self, n: int, /) -> npt.NDArray[Any]:
        assert self.n_rows is not None
        count = max(0, min(n, self.n_rows - self._pos))
        want = count * self._row_bytes
        try:
            buf = self._fh.read(want)
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
            msg = f"{self.path}: corrupt data after row {self._pos}: {exc}"
            raise DataError(msg) from exc
        if len(buf) != want:
            got = self._pos + len(buf) // max(1, self._row_bytes)
            msg = f"{self.path}: truncated: {self.n_rows} rows expected, {got} found"
            raise DataError(msg)
        self._pos += count
        flat = np.frombuffer(buf, dtype=self._dtype)
        return flat.reshape(count, self.n_cols).copy()

    @property
    def bytes_done(self) -> int:
        return self._pos * self._row_bytes

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None


def check_dtype(path: Path, dtype: np.dtype[Any], what: str) -> None:
    if dtype.kind not in "biuf" or dtype.fields is not None:
        msg = f"{path}: {what} must be a numeric array; got dtype {dtype}"
        raise DataError(msg)


def _open_npy(
    path: Path, class_axis_of: Callable[[tuple[int, ...]], int | None], what: str
) -> Source:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{path}: not a valid .npy file ({reason})"
        raise DataError(msg) from exc
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load of .npy
        msg = f"{path}: not a .npy array"
        raise DataError(msg)
    check_dtype(path, arr.dtype, what)
    mm = getattr(arr, "_mmap", None)
    closer = None if mm is None else mm.close
    shape = tuple(int(s) for s in arr.shape)
    class_axis = class_axis_of(shape)
    last = (
        class_axis is None
        or len(shape) <= 1
        or class_axis % len(shape) == len(shape) - 1
    )
    offset = getattr(arr, "offset", None)
    if last and arr.flags.c_contiguous and isinstance(offset, int) and mm is not None:
        # C order, classes last: read in place by _NpyFile, which releases the
        # pages it has handed out; this map only checked the header and size.
        dtype = arr.dtype
        del arr
        mm.close()
        try:
            return _NpyFile(path, offset, shape, dtype, class_axis)
        except OSError as exc:
            msg = f"{path}: cannot be read ({exc.strerror or exc})"
            raise DataError(msg) from exc
    return _ArraySource(arr, path, class_axis, closer)


def _read_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]] | None:
    """The header of a .npy stream; None for a version this reader does not know."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(fh)
    else:
        return None
    shape, fortran, dtype = header
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)


def npz_keys(path: Path, /) -> list[str]:
    """The names of the arrays in a ``.npz`` file."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        msg = f"{path}: not a valid .npz file ({exc})"
        raise DataError(msg) from exc
    return [n[: -len(".npy")] for n in names if n.endswith(".npy")]


def _open_npz(
    path: Path,
    key: str,
    class_axis_of: Callable[[tuple[int, ...]], int | None],
    what: str,
) -> Source:
    keys = npz_keys(path)
    if key not in keys:
        msg = f"{path}: no array {key!r}; it holds {', '.join(keys) or 'none'}"
        raise UsageError(msg)
    zf = zipfile.ZipFile(path)
    try:
        fh = zf.open(key + ".npy")
        header = _read_header(fh)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        zf.close()
        msg = f"{path}: array {key!r} is not a valid .npy member ({exc})"
        raise DataError(msg) from exc
    if header is not None:
        shape, fortran, dtype = header
        check_dtype(path, dtype, what)
        class_axis = class_axis_of(shape)
        last = (
            class_axis is None
            or len(shape) <= 1
            or class_axis % len(shape) == len(shape) - 1
        )
        if not fortran and last:

            def close() -> None:
                fh.close()
                zf.close()

            return _NpyStream(fh, path, shape, dtype, class_axis, close)
    fh.close()
    zf.close()
    # Fortran order, a class axis not last, or an unknown header version:
    # the member is loaded whole.
    try:
        with np.load(path, allow_pickle=False) as data:
            arr = data[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        msg = f"{path}: array {key!r} cannot be read ({exc})"
        raise DataError(msg) from exc
    check_dtype(path, arr.dtype, what)
    return _ArraySource(arr, path, class_axis_of(tuple(arr.shape)))


def open_array(
    path: Path,
    /,
    *,
    key: str | None,
    class_axis_of: Callable[[tuple[int, ...]], int | None],
    what: str,
) -> Source:
    """A :class:`Source` of an ``.npy`` file or an array of an ``.npz`` file or Zarr store.

    Parameters
    ----------
    path : Path
        The file.
    key : str or None
        The array inside a ``.npz`` or a Zarr group; None: its only array.
    class_axis_of : callable
        Given the array's shape, the class axis (None: no class axis, one
        column per row).
    what : str
        "predictions" or "labels", for messages.
    """
    fmt = file_format(path)
    if fmt == "npy":
        return _open_npy(path, class_axis_of, what)
    if fmt == "zarr":
        from ._io_formats import open_zarr

        return open_zarr(path, key=key, class_axis_of=class_axis_of, what=what)
    if fmt != "npz":
        msg = f"{path}: expected a .npy, .npz or Zarr array"
        raise UsageError(msg)
    if key is None:
        keys = npz_keys(path)
        if len(keys) != 1:
            msg = (
                f"{path}: holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                f"choose the {what} with --{'key' if what == 'predictions' else 'labels-key'}"
            )
            raise UsageError(msg)
        key = keys[0]
    return _open_npz(path, key, class_axis_of, what)


# -------------------------------------------------------------------- text


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


class _CsvSource(Source):
    """Numeric rows of a delimited text file, with an optional header line.

    A header is recognised by a field that is not a number. Blank lines are
    skipped; rows are counted from 0 over the data lines, and messages give
    the line number too.
    """

    def __init__(self, path: Path, delimiter: str) -> None:
        self.path = path
        self.shape = None
        self.n_rows = None
        self._delim = delimiter
        self._fh: IO[bytes] | None = path.open("rb")
        self.bytes_total = path.stat().st_size
        self._done = 0
        self._line = 0  # lines read so far
        self._row = 0  # data rows read so far
        self.header: list[str] | None = None
        self._pending: list[tuple[int, str]] = []
        try:
            first = self._next_lines(1)
        except BaseException:
            self.close()
            raise
        if first:
            fields = self._split(first[0][1])
            if any(not _is_number(f) for f in fields):
                self.header = [f.strip().strip('"') for f in fields]
            else:
                self._pending = first
        self.n_cols = (
            len(self.header)
            if self.header is not None
            else (len(self._split(first[0][1])) if first else 0)
        )

    def _split(self, line: str) -> list[str]:
        return line.rstrip("\r\n").split(self._delim)

    def _next_lines(self, n: int) -> list[tuple[int, str]]:
        """Up to `n` non-blank lines with their 1-based line numbers."""
        out: list[tuple[int, str]] = []
        assert self._fh is not None
        while len(out) < n:
            block = list(itertools.islice(self._fh, n - len(out)))
            if not block:
                break
            for raw in block:
                self._line += 1
                self._done += len(raw)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    msg = f"{self.path}: line {self._line} is not UTF-8 text"
                    raise DataError(msg) from exc
                if text.strip():
                    out.append((self._line, text))
        return out

    def _bad_row(self, row: int, line: int, text: str) -> DataError:
        fields = self._split(text)
        where = f"{self.path}: row {row} (line {line})"
        if len(fields) != self.n_cols:
            return DataError(
                f"{where} has {len(fields)} fields, expected {self.n_cols}"
            )
        for col, f in enumerate(fields):
            if not _is_number(f):
                name = f" ({self.header[col]!r})" if self.header else ""
                return DataError(
                    f"{where}, column {col}{name}: {f.strip()!r} is not a number"
                )
        return DataError(f"{where}: cannot be parsed as numbers")

    def read(self, n: int, /) -> npt.NDArray[Any]:
        lines = self._pending[:n]
        self._pending = self._pending[n:]
        if len(lines) < n:
            lines += self._next_lines(n - len(lines))
        first_row = self._row
        self._row += len(lines)
        if not lines:
            return np.empty((0, self.n_cols), dtype=np.float64)
        try:
            arr = np.loadtxt(
                [t for _, t in lines],
                delimiter=self._delim,
                dtype=np.float64,
                ndmin=2,
                comments=None,
            )
        except ValueError:
            arr = None
        if arr is None or arr.shape != (len(lines), self.n_cols):
            for i, (line, text) in enumerate(lines):
                fields = self._split(text)
                if len(fields) != self.n_cols or not all(map(_is_number, fields)):
                    raise self._bad_row(first_row + i, line, text) from None
            raise self._bad_row(first_row, lines[0][0], lines[0][1])
        return arr

    @property
    def bytes_done(self) -> int:
        return self._done

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def open_csv(path: Path, /) -> _CsvSource:
    """A :class:`Source` of a ``.csv`` (comma) or ``.tsv`` (tab) file."""
    file_format(path)
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        return _CsvSource(path, delim)
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc.strerror or exc})"
        raise DataError(msg) from exc


def column_index(src: _CsvSource, spec: str, /) -> int:
    """The index of the column `spec` (a header name or an integer) of `src`."""
    if src.header is not None and spec in src.header:
        return src.header.index(spec)
    try:
        index = int(spec)
    except ValueError:
        names = ", ".join(src.header) if src.header else "none: the file has no header"
        msg = f"{src.path}: no column {spec!r} (columns: {names})"
        raise UsageError(msg) from None
    if not -src.n_cols <= index < src.n_cols:
        msg = f"{src.path}: column {index} is out of range; the file has {src.n_cols}"
        raise UsageError(msg)
    return index % src.n_cols


# -------------------------------------------------------------------- output


def atomic_write(path: Path, write: Callable[[IO[str]], None], /) -> None:
    """Write `path` through `write` atomically: all of it or nothing.

    The text goes to a temporary file in the same directory, which is flushed
    to disk and renamed over `path` (:func:`os.replace`); on any failure the
    temporary file is removed and `path` is left as it was.
    """
    directory = path.parent if str(path.parent) else Path()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fh.fileno(), 0o666 & ~umask)  # not mkstemp's 0o600
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: Path, /) -> Iterator[Path]:
    """A temporary path beside `path`, renamed over it if the block succeeds.

    Write the temporary path (by name: a memory map, a Parquet writer, a
    figure) inside the ``with`` block; on leaving it the file is flushed to
    disk and renamed over `path` (:func:`os.replace`). On any failure the
    temporary file is removed and `path` is left as it was.
    """
    directory = path.parent if str(path.parent) else Path()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # not mkstemp's 0o600
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

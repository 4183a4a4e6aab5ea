"""``logitkit score`` on Parquet and Zarr, ``--plot``, and ``logitkit convert``.

pyarrow, zarr and matplotlib are the ``parquet``, ``zarr`` and ``plot`` extras:
the tests that need one are skipped without it, except on CI (``CI=true``),
which installs ``.[all]`` and must run them.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import logitkit as lk
from logitkit import _convert
from logitkit._cli import main

K = 6
N = 50
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _need(name: str) -> ModuleType:
    if ON_CI:
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not installed")


@pytest.fixture
def pa() -> ModuleType:
    return _need("pyarrow")


@pytest.fixture
def pq() -> ModuleType:
    return _need("pyarrow.parquet")


@pytest.fixture
def zarr() -> ModuleType:
    return _need("zarr")


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(var, raising=False)


def _data(n: int = N, k: int = K, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.standard_normal((n, k))).astype(np.float32)
    x[::4] *= 20.0  # confident rows beside uncertain ones
    return x, rng.integers(0, k, n)


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _score(capsys: pytest.CaptureFixture[str], *args: Any) -> dict[str, Any]:
    code, out, err = _run(capsys, "score", *args, "--json", "--per-class")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def _fail(
    capsys: pytest.CaptureFixture[str], *args: Any, status: int, expect: str
) -> str:
    """A failing run: its status, one line on stderr holding `expect`, no output."""
    code, out, err = _run(capsys, *args)
    assert code == status, err
    assert out == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or status == 2, err
    assert expect in err, (expect, err)
    return err


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def ref(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The result of scoring the .npy files p.npy and y.npy of `_data`."""
    x, y = _data()
    np.save(tmp_path / "p.npy", x)
    np.save(tmp_path / "y.npy", y)
    return _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.npy")


def _same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key in ("rows", "classes", "scored", "metrics", "calibration", "per_class"):
        assert got[key] == want[key], key


# ------------------------------------------------------------------ parquet


def _wide(pa: Any, x: np.ndarray, y: np.ndarray | None = None) -> Any:
    cols = {f"c{j}": x[:, j] for j in range(x.shape[1])}
    if y is not None:
        cols["label"] = y
    return pa.table(cols)


def _listed(pa: Any, x: np.ndarray, kind: str = "list") -> Any:
    flat = pa.array(x.reshape(-1))
    offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
    if kind == "fixed":
        return pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
    if kind == "large":
        offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int64))
        return pa.LargeListArray.from_arrays(offsets, flat)
    return pa.ListArray.from_arrays(offsets, flat)


class TestParquet:
    def test_wide_columns_with_a_label_column(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        ref: dict[str, Any],
        pa: Any,
        pq: Any,
    ) -> None:
        x, y = _data()
        path = tmp_path / "w.parquet"
        pq.write_table(_wide(pa, x, y), path, row_group_size=7)
        r = _score(capsys, path, "--label-column", "label")
        _same(r, ref)
        assert r["labels"] == f"{path}[label]"
        # labels in a separate file: class ids, or one-hot wide columns
        pq.write_table(_wide(pa, x), tmp_path / "x.parquet", row_group_size=9)
        pq.write_table(pa.table({"y": y}), tmp_path / "y.parquet")
        onehot = np.eye(K, dtype=np.int8)[y]
        pq.write_table(_wide(pa, onehot), tmp_path / "h.parquet", row_group_size=4)
        for labels in ("y.parquet", "h.parquet", "y.npy"):
            r = _score(capsys, tmp_path / "x.parquet", "--labels", tmp_path / labels)
            _same(r, ref)
        # parquet labels beside .npy predictions
        r = _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.parquet")
        _same(r, ref)

    @pytest.mark.parametrize("kind", ["list", "large", "fixed"])
    def test_one_list_column(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        ref: dict[str, Any],
        pa: Any,
        pq: Any,
        kind: str,
    ) -> None:
        x, y = _data()
        table = pa.table(
            {"id": np.arange(N), "logits": _listed(pa, x, kind), "label": y}
        )
        path = tmp_path / "l.parquet"
        pq.write_table(table, path, row_group_size=8)
        # detected: the only list column (the other columns are left alone)
        _same(_score(capsys, path, "--label-column", "label"), ref)
        _same(
            _score(capsys, path, "--column", "logits", "--label-column", "label"), ref
        )
        _same(_score(capsys, path, "--labels", tmp_path / "y.npy"), ref)

    def test_column_chooses_among_list_columns(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        ref: dict[str, Any],
        pa: Any,
        pq: Any,
    ) -> None:
        x, y = _data()
        onehot = np.eye(K, dtype=np.int64)[y]
        table = pa.table(
            {"a": _listed(pa, x), "b": _listed(pa, -x), "onehot": _listed(pa, onehot)}
        )
        path = tmp_path / "two.parquet"
        pq.write_table(table, path)
        _fail(
            capsys,
            "score",
            path,
            "--labels",
            tmp_path / "y.npy",
            status=2,
            expect="several list columns (a, b, onehot); choose the predictions with --column",
        )
        _same(_score(capsys, path, "--column", "a", "--label-column", "onehot"), ref)
        r = _score(capsys, path, "--column", "b", "--label-column", "onehot")
        assert r["metrics"]["accuracy"] != ref["metrics"]["accuracy"]

    @pytest.mark.parametrize("layout", ["wide", "list"])
    def test_same_json_for_any_chunk_size(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        pa: Any,
        pq: Any,
        layout: str,
    ) -> None:
        x, y = _data(n=120, k=8)
        path = tmp_path / "p.parquet"
        if layout == "wide":
            table = _wide(pa, x, y)
        else:
            table = pa.table({"logits": _listed(pa, x), "label": y})
        pq.write_table(table, path, row_group_size=13)
        outs = set()
        for chunk in ("1", "7", "120", "1000"):
            args = (path, "--label-column", "label", "--chunk-rows", chunk)
            code, out, err = _run(capsys, "score", *args, "--json", "--per-class")
            assert code == 0, err
            outs.add(out)
        assert len(outs) == 1

    def test_errors(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], pa: Any, pq: Any
    ) -> None:
        x, y = _data()
        good = tmp_path / "good.parquet"
        pq.write_table(_wide(pa, x, y), good, row_group_size=10)
        data = good.read_bytes()
        args = ("--label-column", "label")
        # not parquet, truncated, and a corrupt page after the first row groups
        for name, blob, expect in (
            ("junk.parquet", b"not parquet at all" * 10, "not a valid Parquet file"),
            ("half.parquet", data[: len(data) // 2], "not a valid Parquet file"),
            ("empty.parquet", b"", "not a valid Parquet file"),
        ):
            (tmp_path / name).write_bytes(blob)
            err = _fail(
                capsys, "score", tmp_path / name, *args, status=1, expect=expect
            )
            assert f"{tmp_path / name}: " in err
        bad = bytearray(data)
        bad[len(data) // 3 : len(data) // 3 + 200] = b"\xff" * 200
        (tmp_path / "bad.parquet").write_bytes(bytes(bad))
        code, out, err = _run(capsys, "score", tmp_path / "bad.parquet", *args)
        assert code == 1, err
        assert out == ""
        assert err.startswith(f"logitkit score: error: {tmp_path / 'bad.parquet'}: ")
        assert len(err.strip().splitlines()) == 1

        # nulls, lists of the wrong length, text columns
        nulls = pa.table({"a": pa.array([1.0, None, 2.0]), "label": [0, 0, 0]})
        pq.write_table(nulls, tmp_path / "null.parquet")
        _fail(
            capsys,
            "score",
            tmp_path / "null.parquet",
            *args,
            status=1,
            expect="null.parquet: row 1, column 'a': null; expected numbers",
        )
        ragged = pa.table({"l": [[1.0, 2.0], [1.0, 2.0], [3.0]], "label": [0, 1, 0]})
        pq.write_table(ragged, tmp_path / "ragged.parquet")
        _fail(
            capsys,
            "score",
            tmp_path / "ragged.parquet",
            *args,
            status=1,
            expect="row 2, column 'l': a list of 1 values; expected 2",
        )
        text = pa.table({"a": [1.0, 2.0], "name": ["x", "y"], "label": [0, 1]})
        pq.write_table(text, tmp_path / "text.parquet")
        _fail(
            capsys,
            "score",
            tmp_path / "text.parquet",
            *args,
            status=1,
            expect="column 'name' holds string; expected numbers",
        )
        # labels out of range in a label column
        pq.write_table(_wide(pa, x, y + K), tmp_path / "range.parquet")
        _fail(
            capsys,
            "score",
            tmp_path / "range.parquet",
            *args,
            status=1,
            expect="range.parquet: row 0: label",
        )
        # usage: unknown columns, --column without parquet, --key with parquet
        for extra, expect in (
            (("--label-column", "nope"), "no column 'nope' (--label-column"),
            (("--label-column", "label", "--column", "zz"), "no column 'zz' (--column"),
            (("--label-column", "label", "--key", "x"), "--key needs .npz or Zarr"),
        ):
            _fail(capsys, "score", good, *extra, status=2, expect=expect)
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        _fail(
            capsys,
            "score",
            tmp_path / "p.npy",
            "--labels",
            tmp_path / "y.npy",
            "--column",
            "a",
            status=2,
            expect="--column needs .parquet predictions",
        )
        # mismatched lengths between a parquet and its labels
        np.save(tmp_path / "short.npy", y[:-1])
        _fail(
            capsys,
            "score",
            good,
            "--labels",
            tmp_path / "short.npy",
            status=1,
            expect=f"{N - 1} rows of labels; expected {N}",
        )

    def test_without_pyarrow(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        (tmp_path / "p.parquet").write_bytes(b"")
        np.save(tmp_path / "y.npy", np.zeros(3, dtype=np.int64))
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
        _fail(
            capsys,
            "score",
            tmp_path / "p.parquet",
            "--labels",
            tmp_path / "y.npy",
            status=2,
            expect="install logitkit[parquet]",
        )


# --------------------------------------------------------------------- zarr


class TestZarr:
    @pytest.mark.parametrize("zarr_format", [2, 3])
    def test_array_and_group(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        ref: dict[str, Any],
        zarr: Any,
        zarr_format: int,
    ) -> None:
        x, y = _data()
        px = zarr.create_array(
            tmp_path / "x.zarr",
            shape=x.shape,
            chunks=(7, K),
            dtype=x.dtype,
            zarr_format=zarr_format,
        )
        px[:] = x
        py = zarr.create_array(
            tmp_path / "y.zarr",
            shape=y.shape,
            chunks=(9,),
            dtype=y.dtype,
            zarr_format=zarr_format,
        )
        py[:] = y
        _same(_score(capsys, tmp_path / "x.zarr", "--labels", tmp_path / "y.zarr"), ref)
        _same(_score(capsys, tmp_path / "x.zarr", "--labels", tmp_path / "y.npy"), ref)
        # a group: --key and --labels-key; a directory without the .zarr suffix
        g = zarr.open_group(tmp_path / "store", mode="w", zarr_format=zarr_format)
        g.create_array("logits", shape=x.shape, chunks=(11, K), dtype=x.dtype)[:] = x
        g.create_array("labels", shape=y.shape, dtype=y.dtype)[:] = y
        store = tmp_path / "store"
        r = _score(capsys, store, "--key", "logits", "--labels-key", "labels")
        _same(r, ref)
        _fail(
            capsys,
            "score",
            store,
            "--labels-key",
            "labels",
            status=2,
            expect="a Zarr group of 2 arrays (labels, logits); choose the predictions with --key",
        )
        _fail(
            capsys,
            "score",
            store,
            "--key",
            "nope",
            "--labels-key",
            "labels",
            status=2,
            expect="no array 'nope'; the group holds labels, logits",
        )
        _fail(
            capsys,
            "score",
            tmp_path / "x.zarr",
            "--key",
            "a",
            "--labels",
            tmp_path / "y.npy",
            status=2,
            expect="is a Zarr array, not a group",
        )

    def test_class_axis_and_chunk_independence(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        zarr: Any,
    ) -> None:
        rng = np.random.default_rng(3)
        x = rng.standard_normal((4, K, 15)).astype(np.float32)  # (batch, class, time)
        y = rng.integers(0, K, (4, 15))
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        z = zarr.create_array(
            tmp_path / "p.zarr", shape=x.shape, chunks=(3, 2, 4), dtype=x.dtype
        )
        z[:] = x
        want = _score(
            capsys,
            tmp_path / "p.npy",
            "--labels",
            tmp_path / "y.npy",
            "--class-axis",
            "1",
        )
        outs = set()
        for chunk in ("1", "7", "60", "100"):
            args = ("score", tmp_path / "p.zarr", "--labels", tmp_path / "y.npy")
            code, out, err = _run(
                capsys, *args, "--class-axis", "1", "--chunk-rows", chunk, "--json"
            )
            assert code == 0, err
            outs.add(out)
            _same(json.loads(out) | {"per_class": want["per_class"]}, want)
        assert len(outs) == 1

    def test_bad_stores(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], zarr: Any
    ) -> None:
        np.save(tmp_path / "y.npy", np.zeros(3, dtype=np.int64))
        labels = ("--labels", tmp_path / "y.npy")
        (tmp_path / "empty.zarr").mkdir()
        _fail(
            capsys,
            "score",
            tmp_path / "empty.zarr",
            *labels,
            status=1,
            expect="empty.zarr: not a Zarr array or group",
        )
        _fail(
            capsys,
            "score",
            tmp_path / "missing.zarr",
            *labels,
            status=1,
            expect="missing.zarr: no such file",
        )
        z = zarr.create_array(tmp_path / "bad.zarr", shape=(3, 2), dtype="f8")
        z[:] = 0.0
        (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
        _fail(
            capsys,
            "score",
            tmp_path / "bad.zarr",
            *labels,
            status=1,
            expect="bad.zarr: not a valid Zarr array or group",
        )
        # a chunk file that does not decode
        z = zarr.create_array(
            tmp_path / "c.zarr", shape=(3, 2), chunks=(3, 2), dtype="f8"
        )
        z[:] = 1.0
        chunk = next(
            p
            for p in (tmp_path / "c.zarr").rglob("*")
            if p.is_file() and p.name != "zarr.json"
        )
        chunk.write_bytes(b"\x00\x01garbage")
        _fail(
            capsys,
            "score",
            tmp_path / "c.zarr",
            *labels,
            status=1,
            expect="c.zarr: cannot read rows 0 to 2",
        )
        # a plain directory without the .zarr suffix is an unknown format
        (tmp_path / "plain").mkdir()
        _fail(
            capsys,
            "score",
            tmp_path / "plain",
            *labels,
            status=2,
            expect="unknown format '(no extension)'",
        )


# --------------------------------------------------------------------- plot


class TestPlot:
    def test_png_with_the_ece_in_its_title(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _need("matplotlib")
        from logitkit import _plot

        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        png = tmp_path / "rel.png"
        r = _score(
            capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.npy", "--plot", png
        )
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        ece = f"ECE = {r['metrics']['ece']:.4f}"
        assert b"Title\x00Reliability diagram: " + ece.encode() in data
        fig = _plot.figure(r)
        assert ece in fig.axes[0].get_title()
        assert _listing(tmp_path) == ["p.npy", "rel.png", "y.npy"]
        # .svg too; a failure while drawing leaves nothing
        _score(
            capsys,
            tmp_path / "p.npy",
            "--labels",
            tmp_path / "y.npy",
            "--plot",
            tmp_path / "rel.svg",
        )
        assert (tmp_path / "rel.svg").read_bytes().lstrip().startswith(b"<?xml")

    def test_a_failed_plot_leaves_nothing(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        _need("matplotlib")
        from matplotlib.figure import Figure

        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)

        def broken(_fig: Any, fname: Any, **_kwargs: Any) -> None:
            Path(fname).write_bytes(b"\x89PNG half")
            raise OSError(28, "No space left on device", str(fname))

        monkeypatch.setattr(Figure, "savefig", broken)
        args = ("score", tmp_path / "p.npy", "--labels", tmp_path / "y.npy")
        code, _, err = _run(
            capsys, *args, "--plot", tmp_path / "r.png", "--output", tmp_path / "r.json"
        )
        assert code == 1
        assert "No space left on device" in err
        assert _listing(tmp_path) == ["p.npy", "y.npy"]

    def test_usage_errors(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        args = ("score", tmp_path / "p.npy", "--labels", tmp_path / "y.npy")
        _fail(
            capsys,
            *args,
            "--plot",
            tmp_path / "r.gif",
            status=2,
            expect="expected a .png, .pdf or .svg",
        )
        _fail(
            capsys,
            *args,
            "--multilabel",
            "--plot",
            tmp_path / "r.png",
            status=2,
            expect="not with --multilabel",
        )
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        _fail(
            capsys,
            *args,
            "--plot",
            tmp_path / "r.png",
            status=2,
            expect="--plot needs matplotlib; install logitkit[plot]",
        )
        assert _listing(tmp_path) == ["p.npy", "y.npy"]


# ------------------------------------------------------------------ convert


def _want(x: np.ndarray, to: str) -> np.ndarray:
    if to == "labels":
        return np.argmax(x, axis=1)
    return np.asarray(lk.softmax(x) if to == "probs" else lk.log_softmax(x))


def _read(path: Path, pq: Any = None) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".csv":
        return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=1)
    table = pq.read_table(path)
    col = table.column(0).combine_chunks()
    if hasattr(col, "flatten"):
        flat = col.flatten().to_numpy()
        return flat.reshape(len(col), -1)
    return col.to_numpy()


class TestConvert:
    @pytest.mark.parametrize("to", ["probs", "log-probs", "labels"])
    @pytest.mark.parametrize("ext", [".npy", ".csv", ".parquet"])
    def test_against_the_functions(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], to: str, ext: str
    ) -> None:
        pq = _need("pyarrow.parquet") if ext == ".parquet" else None
        x, _ = _data()
        x[3, 2] = -np.inf  # a masked class: probability 0
        np.save(tmp_path / "p.npy", x)
        want = _want(x, to)
        out = tmp_path / f"out{ext}"
        for chunk in ("7", "1000"):
            code, stdout, err = _run(
                capsys,
                "convert",
                tmp_path / "p.npy",
                "--to",
                to,
                "--output",
                out,
                "--chunk-rows",
                chunk,
            )
            assert code == 0, err
            assert stdout == ""
            got = _read(out, pq)
            assert got.shape == want.shape
            if ext != ".csv":
                assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
        assert _listing(tmp_path) == ["out" + ext, "p.npy"]

    def test_every_input_format(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        pa, pq, zarr = _need("pyarrow"), _need("pyarrow.parquet"), _need("zarr")
        x, y = _data()
        want = _want(x, "probs")
        np.savez_compressed(tmp_path / "p.npz", logits=x)
        pq.write_table(
            pa.table({"logits": _listed(pa, x), "label": y}),
            tmp_path / "l.parquet",
            row_group_size=9,
        )
        pq.write_table(_wide(pa, x, y), tmp_path / "w.parquet", row_group_size=9)
        zarr.create_array(
            tmp_path / "p.zarr", shape=x.shape, chunks=(8, K), dtype=x.dtype
        )[:] = x
        lines = [
            ",".join([*map(repr, r.tolist()), str(t)])
            for r, t in zip(x, y, strict=True)
        ]
        head = ",".join([f"c{j}" for j in range(K)] + ["label"])
        (tmp_path / "p.csv").write_text(head + "\n" + "\n".join(lines) + "\n")
        for inp, extra in (
            ("p.npz", ()),
            ("l.parquet", ()),
            ("w.parquet", ("--label-column", "label")),
            ("p.zarr", ()),
            ("p.csv", ("--label-column", "label")),
        ):
            out = tmp_path / "o.npy"
            code, _, err = _run(
                capsys,
                "convert",
                tmp_path / inp,
                *extra,
                "--to",
                "probs",
                "--output",
                out,
                "--chunk-rows",
                "8",
            )
            assert code == 0, (inp, err)
            got = np.load(out)
            want_here = want if inp != "p.csv" else _want(x.astype(np.float64), "probs")
            np.testing.assert_array_equal(got, want_here, err_msg=inp)

    @pytest.mark.parametrize("ext", [".npy", ".csv", ".parquet"])
    def test_a_failure_midway_leaves_nothing(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        ext: str,
    ) -> None:
        if ext == ".parquet":
            _need("pyarrow")
        x, _ = _data()
        bad = x.copy()
        bad[40, 1] = np.nan  # found in the 6th chunk of 7 rows
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "bad.npy", bad)
        out = tmp_path / f"o{ext}"
        before = _listing(tmp_path)
        args = ("--to", "probs", "--output", out, "--chunk-rows", "7")
        _fail(
            capsys,
            "convert",
            tmp_path / "bad.npy",
            *args,
            status=1,
            expect="bad.npy: row 40, column 1: nan; expected finite numbers or -inf",
        )
        assert _listing(tmp_path) == before
        # an I/O error in the third chunk; an existing output is kept as it was
        out.write_bytes(b"old")
        calls = []
        real = _convert.transform

        def failing(chunk: np.ndarray, to: str) -> np.ndarray:
            calls.append(len(chunk))
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            return real(chunk, to)

        monkeypatch.setattr(_convert, "transform", failing)
        code, _, err = _run(capsys, "convert", tmp_path / "p.npy", *args)
        assert code == 1
        assert "No space left on device" in err
        assert out.read_bytes() == b"old"
        assert _listing(tmp_path) == sorted([*before, out.name])

    def test_errors(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        x, _ = _data()
        np.save(tmp_path / "p.npy", x)
        p = tmp_path / "p.npy"
        out = ("--output", tmp_path / "o.npy")
        _fail(
            capsys,
            "convert",
            tmp_path / "no.npy",
            "--to",
            "probs",
            *out,
            status=1,
            expect="no.npy: no such file",
        )
        _fail(
            capsys,
            "convert",
            p,
            "--to",
            "probs",
            "--output",
            tmp_path / "o.txt",
            status=2,
            expect="expected a .npy, .csv or .parquet",
        )
        _fail(
            capsys,
            "convert",
            p,
            "--to",
            "odds",
            *out,
            status=2,
            expect="invalid choice",
        )
        _fail(
            capsys,
            "convert",
            p,
            "--to",
            "probs",
            *out,
            "--key",
            "k",
            status=2,
            expect="--key needs .npz or Zarr",
        )
        _fail(
            capsys,
            "convert",
            p,
            "--to",
            "probs",
            *out,
            "--class-axis",
            "4",
            status=2,
            expect="--class-axis 4 is out of range",
        )
        np.save(tmp_path / "one.npy", x[:, 0])
        _fail(
            capsys,
            "convert",
            tmp_path / "one.npy",
            "--to",
            "probs",
            *out,
            status=1,
            expect="expected an array of (rows, classes)",
        )
        (tmp_path / "t.npy").write_bytes(p.read_bytes()[:-100])
        _fail(
            capsys,
            "convert",
            tmp_path / "t.npy",
            "--to",
            "probs",
            *out,
            status=1,
            expect="t.npy: not a valid .npy file",
        )
        rows = np.full((3, K), -np.inf, dtype=np.float32)
        rows[0] = 0.0
        np.save(tmp_path / "masked.npy", rows)
        _fail(
            capsys,
            "convert",
            tmp_path / "masked.npy",
            "--to",
            "labels",
            *out,
            status=1,
            expect="row 1: every logit is -inf",
        )
        assert _listing(tmp_path) == ["masked.npy", "one.npy", "p.npy", "t.npy"]

    def test_python_m_logitkit_convert(self, tmp_path: Path) -> None:
        x, _ = _data()
        np.save(tmp_path / "p.npy", x)
        cmd = [sys.executable, "-m", "logitkit", "convert", str(tmp_path / "p.npy")]
        out = tmp_path / "l.npy"
        res = subprocess.run(
            [*cmd, "--to", "log-probs", "--output", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        np.testing.assert_array_equal(np.load(out), _want(x, "log-probs"))
        res = subprocess.run(
            [*cmd, "--to", "probs", "--output", str(tmp_path / "o.json")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 2
        assert res.stderr.startswith("logitkit convert: error: ")
        assert "Traceback" not in res.stderr

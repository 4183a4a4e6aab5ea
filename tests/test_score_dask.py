"""``logitkit score --engine dask``: the numbers of the memory engine, bit for bit.

One local cluster (2 worker processes) serves the module through
``--scheduler``; one test starts its own with ``--workers``. dask and
distributed are the ``dask`` extra: without them the tests are skipped, except
on CI (``CI=true``), which installs ``.[all]`` and must run them.
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from logitkit import _score_dask
from logitkit._cli import main

K = 7
N = 300
PART = "20"  # --partition-rows: 15 tasks, two levels of merges
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _need(name: str) -> ModuleType:
    if ON_CI:
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not installed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a local cluster of 2 worker processes, for the module."""
    distributed = _need("distributed")
    _need("dask.array")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
        silence_logs=logging.ERROR,
    )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(var, raising=False)


def _data(n: int = N, k: int = K, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.standard_normal((n, k))).astype(np.float32)
    x[::5] *= 30.0  # confident rows: tiny losses beside large ones
    return x, rng.integers(0, k, n)


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    try:
        code = main(["score", *map(str, args)])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _same(capsys: pytest.CaptureFixture[str], scheduler: str, *args: Any) -> str:
    """The JSON of both engines, compared as text (every digit); returned."""
    code, memory, err = _run(capsys, *args, "--json")
    assert code == 0, err
    dask_args = ("--scheduler", scheduler, "--partition-rows", PART, "--json")
    code, dask, err = _run(capsys, *args, *dask_args, "--chunk-rows", "10")
    assert code == 0, err
    assert err == ""
    assert dask == memory
    return dask


def _fail_alike(capsys: pytest.CaptureFixture[str], scheduler: str, *args: Any) -> str:
    """Both engines fail with status 1 and the same one line; returned."""
    code, out, memory = _run(capsys, *args, "--chunk-rows", "10")
    assert code == 1
    dask_args = ("--scheduler", scheduler, "--partition-rows", PART)
    code, out, dask = _run(capsys, *args, *dask_args, "--chunk-rows", "10")
    assert code == 1
    assert out == ""
    assert dask == memory
    assert len(dask.strip().splitlines()) == 1
    assert "Traceback" not in dask
    return dask


class TestSameNumbers:
    def test_logits_probs_and_options(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
    ) -> None:
        x, y = _data()
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        args = (tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
        out = json.loads(_same(capsys, scheduler, *args, "--per-class"))
        assert out["rows"] == N
        assert out["per_class"] is not None
        _same(capsys, scheduler, *args, "--top-k", "1", "--top-k", "3", "--bins", "4")
        y_ign = y.copy()
        y_ign[::7] = -100
        np.save(tmp_path / "y_ign.npy", y_ign)
        ignored = json.loads(
            _same(
                capsys,
                scheduler,
                tmp_path / "x.npy",
                "--labels",
                tmp_path / "y_ign.npy",
                "--ignore-index",
                "-100",
                "--per-class",
            )
        )
        assert ignored["ignored"] == len(y[::7])
        p = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
        np.save(tmp_path / "p.npy", p / p.sum(axis=1, keepdims=True))
        np.save(tmp_path / "onehot.npy", np.eye(K, dtype=np.int8)[y])
        probs = (tmp_path / "p.npy", "--labels", tmp_path / "onehot.npy", "--probs")
        assert json.loads(_same(capsys, scheduler, *probs))["input"] == "probs"

    def test_multilabel_and_class_axis(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
    ) -> None:
        x, _ = _data()
        rng = np.random.default_rng(1)
        lab = rng.integers(0, 2, x.shape)
        lab[::11, 2] = -1
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", lab)
        out = _same(
            capsys,
            scheduler,
            tmp_path / "x.npy",
            "--labels",
            tmp_path / "y.npy",
            "--multilabel",
            "--ignore-index",
            "-1",
            "--per-class",
        )
        assert json.loads(out)["task"] == "multilabel"
        # (batch, classes, time) with the classes on axis 1
        x3 = np.moveaxis(x.reshape(30, 10, K), 2, 1).copy()
        np.save(tmp_path / "x3.npy", x3)
        np.save(tmp_path / "y3.npy", _data()[1].reshape(30, 10))
        args = (tmp_path / "x3.npy", "--labels", tmp_path / "y3.npy")
        _same(capsys, scheduler, *args, "--class-axis", "1")

    def test_zarr(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
    ) -> None:
        zarr = _need("zarr")
        x, y = _data()
        root = zarr.open_group(str(tmp_path / "run.zarr"), mode="w")
        root.create_array("logits", data=x, chunks=(40, K))
        root.create_array("labels", data=y, chunks=(25,))
        args = (tmp_path / "run.zarr", "--key", "logits", "--labels-key", "labels")
        _same(capsys, scheduler, *args)
        # default partitions: whole chunks of the predictions
        code, out, err = _run(capsys, *args, "--scheduler", scheduler, "--json")
        assert code == 0, err
        assert out == _run(capsys, *args, "--json")[1]

    def test_parquet(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], scheduler: str
    ) -> None:
        pa = _need("pyarrow")
        pq = _need("pyarrow.parquet")
        x, y = _data()
        listed = pa.array(list(x), type=pa.list_(pa.float32()))
        table = pa.table({"logits": listed, "label": pa.array(y)})
        pq.write_table(table, tmp_path / "p.parquet", row_group_size=45)
        pq.write_table(
            pa.table({"label": pa.array(y)}), tmp_path / "y.parquet", row_group_size=70
        )
        same = (tmp_path / "p.parquet", "--label-column", "label")
        _same(capsys, scheduler, *same)
        apart = (tmp_path / "p.parquet", "--labels", tmp_path / "y.parquet")
        _same(capsys, scheduler, *apart, "--column", "logits")
        code, out, err = _run(capsys, *same, "--scheduler", scheduler, "--json")
        assert code == 0, err
        assert out == _run(capsys, *same, "--json")[1]


class TestPartitions:
    def test_npy_zarr_and_parquet_bounds(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from logitkit._io import open_array
        from logitkit._io_formats import open_parquet

        x, _ = _data()
        np.save(tmp_path / "x.npy", x)
        src = open_array(
            tmp_path / "x.npy", key=None, class_axis_of=lambda _: 1, what="predictions"
        )
        try:
            assert _score_dask.partitions(src) == [(0, N)]
            assert _score_dask.partitions(src, 128) == [(0, 128), (128, 256), (256, N)]
            monkeypatch.setattr(_score_dask, "PARTITION_BYTES", 100 * K * 4)
            assert _score_dask.partitions(src)[:2] == [(0, 100), (100, 200)]
        finally:
            src.close()
        zarr = _need("zarr")
        zarr.create_array(str(tmp_path / "x.zarr"), data=x, chunks=(40, K))
        src = open_array(
            tmp_path / "x.zarr", key=None, class_axis_of=lambda _: 1, what="predictions"
        )
        assert _score_dask.partitions(src)[:2] == [(0, 120), (120, 240)]
        pa = _need("pyarrow")
        pq = _need("pyarrow.parquet")
        table = pa.table({f"c{i}": x[:, i] for i in range(K)})
        pq.write_table(table, tmp_path / "x.parquet", row_group_size=45)
        src = open_parquet(tmp_path / "x.parquet")
        try:
            assert _score_dask.partitions(src)[:2] == [(0, 135), (135, 270)]
            assert _score_dask.partitions(src)[-1] == (270, N)
        finally:
            src.close()


class TestErrors:
    @pytest.fixture
    def files(self, tmp_path: Path) -> dict[str, Path]:
        x, y = _data()
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        bad = y.copy()
        bad[271] = K  # in the last partition, and a later chunk of the memory engine
        bad[290] = K + 3
        np.save(tmp_path / "bad.npy", bad)
        nan = x.copy()
        nan[205, 4] = np.nan
        np.save(tmp_path / "nan.npy", nan)
        p = np.full((N, K), 1.0 / K)
        p[140, 0] += 0.01
        np.save(tmp_path / "p.npy", p)
        return {"x": x, "y": y, "dir": tmp_path}  # type: ignore[dict-item]

    def test_global_rows_and_status(
        self, files: dict[str, Any], capsys: pytest.CaptureFixture[str], scheduler: str
    ) -> None:
        d = files["dir"]
        err = _fail_alike(capsys, scheduler, d / "x.npy", "--labels", d / "bad.npy")
        assert "bad.npy: row 271: label 7; expected a class in [0, 7)" in err
        err = _fail_alike(capsys, scheduler, d / "nan.npy", "--labels", d / "bad.npy")
        assert "nan.npy: row 205, column 4: nan" in err  # the first error wins
        err = _fail_alike(
            capsys, scheduler, d / "p.npy", "--labels", d / "y.npy", "--probs"
        )
        assert "p.npy: row 140: probabilities sum to" in err

    def test_nothing_written_on_error(
        self, files: dict[str, Any], capsys: pytest.CaptureFixture[str], scheduler: str
    ) -> None:
        d = files["dir"]
        for name in ("out.json", "out.csv"):
            code, _, err = _run(
                capsys,
                d / "x.npy",
                "--labels",
                d / "bad.npy",
                "--scheduler",
                scheduler,
                "--output",
                d / name,
            )
            assert code == 1, err
            assert not (d / name).exists()
        assert sorted(p.name for p in d.iterdir()) == [
            "bad.npy",
            "nan.npy",
            "p.npy",
            "x.npy",
            "y.npy",
        ]

    def test_usage_errors(
        self,
        files: dict[str, Any],
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        d = files["dir"]
        x, y = files["x"], files["y"]
        rows = [
            ",".join([*map(repr, r.tolist()), str(t)])
            for r, t in zip(x, y, strict=True)
        ]
        (d / "p.csv").write_text("\n".join(rows) + "\n")
        np.savez(d / "p.npz", x=x, y=y)
        base = (d / "x.npy", "--labels", d / "y.npy")
        cases = [
            ((d / "p.csv", "--label-column", "-1", "--engine", "dask"), "p.csv"),
            (
                (d / "p.npz", "--key", "x", "--labels-key", "y", "--engine", "dask"),
                "npz",
            ),
            ((d / "x.npy", "--labels", d / "p.csv", "--engine", "dask"), "p.csv"),
            ((*base, "--workers", "2"), "--workers needs --engine dask"),
            ((*base, "--partition-rows", "9"), "--partition-rows needs --engine dask"),
            ((*base, "--scheduler", "tcp://x:1", "--workers", "2"), "not with"),
            ((*base, "--scheduler", "tcp://x:1", "--engine", "memory"), "--scheduler"),
        ]
        for args, text in cases:
            code, out, err = _run(capsys, *args)
            assert (code, out) == (2, ""), err
            assert text in err
            assert len(err.strip().splitlines()) == 1
        code, _, err = _run(capsys, *base, "--engine", "spark")
        assert code == 2
        assert "invalid choice" in err
        monkeypatch.setitem(sys.modules, "distributed", None)  # not installed
        code, _, err = _run(capsys, *base, "--engine", "dask")
        assert code == 2
        assert 'pip install "logitkit[dask]"' in err

    def test_unreachable_scheduler_and_debug(
        self,
        files: dict[str, Any],
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        scheduler: str,
    ) -> None:
        from logitkit._io import DataError

        d = files["dir"]
        monkeypatch.setattr(_score_dask, "CONNECT_TIMEOUT", 1)
        base = (d / "x.npy", "--labels", d / "y.npy")
        code, _, err = _run(capsys, *base, "--scheduler", "tcp://127.0.0.1:9")
        assert code == 1
        assert "--scheduler tcp://127.0.0.1:9: cannot connect" in err
        bad = (d / "x.npy", "--labels", d / "bad.npy", "--scheduler", scheduler)
        with pytest.raises(DataError, match="row 271: label 7"):
            main(["score", *map(str, bad), "--debug"])


def test_workers_start_and_close_a_local_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need("distributed")
    x, y = _data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    bad = y.copy()
    bad[250] = -3
    np.save(tmp_path / "bad.npy", bad)
    before = {p.pid for p in multiprocessing.active_children()}
    args = (tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--json")
    want = _run(capsys, *args)[1]
    dask = ("--engine", "dask", "--workers", "2", "--partition-rows", "100")
    code, out, err = _run(capsys, *args, *dask)
    assert (code, err) == (0, "")
    assert out == want
    code, out, err = _run(
        capsys, tmp_path / "x.npy", "--labels", tmp_path / "bad.npy", *dask
    )
    assert code == 1
    assert "bad.npy: row 250: label -3" in err
    assert {p.pid for p in multiprocessing.active_children()} <= before

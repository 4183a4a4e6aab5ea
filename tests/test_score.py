"""``logitkit score``: formats, metrics, chunking, outputs and errors."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logitkit import _score_cli
from logitkit._cli import main
from logitkit._score import ExactSums

K = 6
N = 50


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(var, raising=False)


def _data(
    n: int = N, k: int = K, seed: int = 0, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (3.0 * rng.standard_normal((n, k))).astype(dtype)
    y = rng.integers(0, k, n)
    return x, y


def _score(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["score", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    result: dict[str, Any] = json.loads(out)
    return result


def _fail(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    """Exit status and the stderr of a failing run; no traceback, one line."""
    try:
        code = main(["score", *map(str, args)])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert "Traceback" not in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1, err
    return code, err


# -------------------------------------------------------------- reference


def _reference(
    x: np.ndarray,
    y: np.ndarray,
    *,
    probs: bool = False,
    bins: int = 15,
    top_k: tuple[int, ...] = (5,),
) -> dict[str, Any]:
    """The metrics straight from their definitions, in float64 NumPy."""
    x = x.astype(np.float64)
    n, k = x.shape
    rows = np.arange(n)
    if probs:
        p = x
        logp = np.log(np.maximum(p, np.finfo(np.float64).tiny))
    else:
        m = x.max(axis=1, keepdims=True)
        logp = x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))
        p = np.exp(logp)
    nll = -logp[rows, y]
    correct = x.argmax(axis=1) == y
    order = np.argsort(-x, axis=1, kind="stable")
    onehot = np.eye(k)[y]
    conf = p.max(axis=1)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.sum() / n * abs(correct[sel].mean() - conf[sel].mean())
    ent = -np.where(p > 0, p * logp, 0.0).sum(axis=1)
    return {
        "nll_sum": nll.sum(),
        "nll_mean": nll.mean(),
        "perplexity": math.exp(nll.mean()),
        "accuracy": correct.mean(),
        "top_k_accuracy": {
            str(t): (order[:, :t] == y[:, None]).any(axis=1).mean() for t in top_k
        },
        "brier": ((p - onehot) ** 2).sum(axis=1).mean(),
        "ece": ece,
        "entropy_mean": ent.mean(),
    }


def _assert_metrics(got: dict[str, Any], want: dict[str, Any], rtol: float) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        if isinstance(value, dict):
            assert got[name] == pytest.approx(value, rel=rtol, abs=0), name
        else:
            assert got[name] == pytest.approx(value, rel=rtol, abs=1e-15), name


# ------------------------------------------------------------------ tests


class TestExactSums:
    def test_exact_where_float_sums_are_not(self) -> None:
        s = ExactSums()
        s.add(np.asarray([1e300, 1.0, -1e300, 2.0**-1074]))
        assert s.value() == 1.0
        assert s.fraction() == 1 + Fraction(2) ** -1074  # exact

    def test_any_split_gives_the_same_total(self) -> None:
        rng = np.random.default_rng(3)
        v = rng.standard_normal(1000) * 10.0 ** rng.integers(-30, 30, 1000)
        whole = ExactSums()
        whole.add(v)
        parts = ExactSums()
        for chunk in np.array_split(v[::-1], 13):
            parts.add(chunk)
        assert whole.fraction() == parts.fraction()
        assert whole.value() == math.fsum(v)

    def test_groups_and_merge(self) -> None:
        s, t = ExactSums(3), ExactSums(3)
        s.add([1.0, 2.0, 4.0], [0, 2, 2])
        t.add([0.5], [1])
        s.merge(t)
        assert [s.value(i) for i in range(3)] == [1.0, 0.5, 6.0]
        assert s.mean(2, group=2) == 3.0
        assert s.mean(0) is None

    def test_many_groups_use_the_sparse_path(self) -> None:
        s = ExactSums(100_000)
        s.add([1.5, 2.5, 1e-300], [99_999, 7, 99_999])
        assert s.value(99_999) == 1.5
        assert s.value(7) == 2.5

    def test_non_finite_is_refused(self) -> None:
        with pytest.raises(ValueError, match="finite"):
            ExactSums().add([1.0, math.nan])


class TestMetrics:
    def test_logits_npy_against_numpy(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        r = _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.npy")
        assert (r["task"], r["input"], r["rows"], r["classes"]) == (
            "multiclass",
            "logits",
            N,
            K,
        )
        assert (r["scored"], r["ignored"]) == (N, 0)
        _assert_metrics(r["metrics"], _reference(x, y), rtol=1e-12)
        assert sum(b["count"] for b in r["calibration"]) == N
        assert r["per_class"] is None

    def test_float32_logits(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, y = _data(dtype=np.float32)
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y.astype(np.int32))
        r = _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.npy")
        # per-example values are correctly rounded float32
        _assert_metrics(r["metrics"], _reference(x, y), rtol=2e-7)

    def test_probs_top_k_and_bins(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, y = _data()
        p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
        p[0] = np.eye(K)[(y[0] + 1) % K]  # a zero probability for the true class
        np.save(tmp_path / "p.npy", p)
        np.save(tmp_path / "y.npy", y)
        args = ("--probs", "--top-k", "2", "--top-k", "3", "--bins", "4")
        r = _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.npy", *args)
        want = _reference(p, y, probs=True, bins=4, top_k=(2, 3))
        _assert_metrics(r["metrics"], want, rtol=1e-12)
        assert len(r["calibration"]) == 4

    def test_per_class_and_ignore_index(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, y = _data()
        y[::5] = -100
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        r = _score(
            capsys,
            tmp_path / "p.npy",
            "--labels",
            tmp_path / "y.npy",
            "--ignore-index",
            "-100",
            "--per-class",
        )
        keep = y != -100
        assert (r["scored"], r["ignored"]) == (keep.sum(), N - keep.sum())
        _assert_metrics(r["metrics"], _reference(x[keep], y[keep]), rtol=1e-12)
        for entry in r["per_class"]:
            sel = keep & (y == entry["class"])
            ref = _reference(x[sel], y[sel])
            assert entry["count"] == sel.sum()
            assert entry["accuracy"] == pytest.approx(ref["accuracy"], rel=1e-15)
            assert entry["nll_mean"] == pytest.approx(ref["nll_mean"], rel=1e-12)

    def test_one_hot_labels_equal_class_ids(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        np.save(tmp_path / "h.npy", np.eye(K, dtype=np.uint8)[y])
        ids = _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.npy")
        hot = _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "h.npy")
        assert hot["metrics"] == ids["metrics"]

    def test_class_axis_of_a_3d_array(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, y = _data(n=4 * 5)
        # (batch 4, classes K, time 5): row (b, t) is x[b, :, t]
        x3 = np.ascontiguousarray(x.reshape(4, 5, K).transpose(0, 2, 1))
        np.save(tmp_path / "p.npy", x3)
        np.save(tmp_path / "y.npy", y.reshape(4, 5))
        np.save(tmp_path / "h.npy", np.eye(K)[y].reshape(4, 5, K).transpose(0, 2, 1))
        for labels in ("y.npy", "h.npy"):
            r = _score(
                capsys,
                tmp_path / "p.npy",
                "--labels",
                tmp_path / labels,
                "--class-axis",
                "1",
                "--chunk-rows",
                "3",
            )
            assert r["rows"] == 20
            _assert_metrics(r["metrics"], _reference(x, y), rtol=1e-12)

    def test_multilabel_against_numpy(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, _ = _data()
        rng = np.random.default_rng(5)
        y = rng.integers(0, 2, x.shape)
        y[1, 2] = y[3, 0] = -1
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        r = _score(
            capsys,
            tmp_path / "p.npy",
            "--labels",
            tmp_path / "y.npy",
            "--multilabel",
            "--ignore-index",
            "-1",
            "--per-class",
        )
        keep = y != -1
        bce = np.logaddexp(0.0, x) - x * y  # softplus(x) - x y
        right = (x > 0) == (y == 1)
        per_bce = [bce[keep[:, c], c].mean() for c in range(K)]
        per_acc = [right[keep[:, c], c].mean() for c in range(K)]
        m = r["metrics"]
        assert r["task"] == "multilabel"
        assert (r["scored"], r["ignored"]) == (keep.sum(), 2)
        assert m["bce_sum"] == pytest.approx(bce[keep].sum(), rel=1e-12)
        assert m["bce_mean"] == pytest.approx(bce[keep].mean(), rel=1e-12)
        assert m["bce_macro"] == pytest.approx(np.mean(per_bce), rel=1e-12)
        assert m["accuracy_micro"] == pytest.approx(right[keep].mean(), rel=1e-15)
        assert m["accuracy_macro"] == pytest.approx(np.mean(per_acc), rel=1e-15)
        subset = (right | ~keep).all(axis=1).mean()
        assert m["subset_accuracy"] == pytest.approx(subset, rel=1e-15)
        assert [e["bce_mean"] for e in r["per_class"]] == pytest.approx(
            per_bce, rel=1e-12
        )
        assert [e["positives"] for e in r["per_class"]] == list(
            ((y == 1) & keep).sum(axis=0)
        )

    def test_multilabel_probs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, _ = _data()
        p = 1.0 / (1.0 + np.exp(-x))
        y = (np.random.default_rng(2).random(x.shape) < p).astype(np.int64)
        np.save(tmp_path / "p.npy", p)
        np.save(tmp_path / "y.npy", y)
        r = _score(
            capsys,
            tmp_path / "p.npy",
            "--labels",
            tmp_path / "y.npy",
            "--multilabel",
            "--probs",
        )
        bce = -(y * np.log(p) + (1 - y) * np.log1p(-p))
        assert r["metrics"]["bce_mean"] == pytest.approx(bce.mean(), rel=1e-12)
        acc = ((p > 0.5) == (y == 1)).mean()
        assert r["metrics"]["accuracy_micro"] == pytest.approx(acc, rel=1e-15)

    def test_empty_after_ignoring_gives_nulls(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        x, _ = _data(n=3)
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", np.full(3, -1))
        r = _score(
            capsys,
            tmp_path / "p.npy",
            "--labels",
            tmp_path / "y.npy",
            "--ignore-index=-1",
        )
        assert r["scored"] == 0
        assert r["metrics"]["nll_mean"] is None
        assert r["metrics"]["nll_sum"] == 0.0


class TestFormats:
    def _reference_run(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> dict[str, Any]:
        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        r = _score(capsys, tmp_path / "p.npy", "--labels", tmp_path / "y.npy")
        return r["metrics"]  # type: ignore[no-any-return]

    def test_npz_keys(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        want = self._reference_run(tmp_path, capsys)
        x, y = _data()
        np.savez(tmp_path / "a.npz", logits=x, labels=y)
        np.savez_compressed(tmp_path / "c.npz", logits=x, labels=y)
        np.savez(tmp_path / "y.npz", y)
        for name in ("a.npz", "c.npz"):
            path = tmp_path / name
            r = _score(capsys, path, "--key", "logits", "--labels-key", "labels")
            assert r["metrics"] == want
        np.savez(tmp_path / "x.npz", x)
        r = _score(capsys, tmp_path / "x.npz", "--labels", tmp_path / "y.npz")
        assert r["metrics"] == want

    def test_npz_fortran_order_is_loaded_whole(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        want = self._reference_run(tmp_path, capsys)
        x, y = _data()
        np.savez(tmp_path / "f.npz", x=np.asfortranarray(x), y=y)
        r = _score(capsys, tmp_path / "f.npz", "--key", "x", "--labels-key", "y")
        assert r["metrics"] == want

    @pytest.mark.parametrize("sep", [",", "\t"])
    def test_csv_and_tsv(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], sep: str
    ) -> None:
        want = self._reference_run(tmp_path, capsys)
        x, y = _data()
        ext = ".csv" if sep == "," else ".tsv"
        header = sep.join([f"c{i}" for i in range(K)] + ["label"])
        lines = [
            sep.join([*map(repr, row.tolist()), str(t)])
            for row, t in zip(x, y, strict=True)
        ]
        text = header + "\n" + "\n".join(lines) + "\n\n"
        (tmp_path / f"p{ext}").write_text(text)
        for col in ("label", str(K), "-1"):
            r = _score(capsys, tmp_path / f"p{ext}", "--label-column", col)
            assert r["metrics"] == want
        # a separate labels file, no header, and predictions without a header
        (tmp_path / f"x{ext}").write_text(
            "\n".join(sep.join(map(repr, row.tolist())) for row in x) + "\n"
        )
        (tmp_path / f"y{ext}").write_text("label\n" + "\n".join(map(str, y)) + "\n")
        r = _score(
            capsys,
            tmp_path / f"x{ext}",
            "--labels",
            tmp_path / f"y{ext}",
            "--chunk-rows=7",
        )
        assert r["metrics"] == want
        # csv predictions, npy labels
        r = _score(capsys, tmp_path / f"x{ext}", "--labels", tmp_path / "y.npy")
        assert r["metrics"] == want


class TestChunking:
    @pytest.mark.parametrize("fmt", ["npy", "csv", "npz"])
    def test_bitwise_same_json_for_any_chunk_size(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
    ) -> None:
        x, y = _data(n=120, k=8, dtype=np.float32)
        x[::3] *= 40.0  # confident rows: tiny losses next to large ones
        if fmt == "npy":
            np.save(tmp_path / "p.npy", x)
            np.save(tmp_path / "y.npy", y)
            args: tuple[Any, ...] = (tmp_path / "p.npy", "--labels", tmp_path / "y.npy")
        elif fmt == "npz":
            np.savez_compressed(tmp_path / "p.npz", x=x, y=y)
            args = (tmp_path / "p.npz", "--key", "x", "--labels-key", "y")
        else:
            rows = [
                ",".join([*map(repr, r.tolist()), str(t)])
                for r, t in zip(x, y, strict=True)
            ]
            (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
            args = (tmp_path / "p.csv", "--label-column", "-1")
        outs = set()
        for chunk in ("1", "7", "120", "1000"):
            code = main(
                [
                    "score",
                    *map(str, args),
                    "--json",
                    "--per-class",
                    "--chunk-rows",
                    chunk,
                ]
            )
            assert code == 0
            outs.add(capsys.readouterr().out)
        assert len(outs) == 1

    def test_bounded_memory(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A ~50 MB .npy scored in 250-row chunks: the peak follows the chunk."""
        rows, k = 25_000, 512
        path = tmp_path / "big.npy"
        mm = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=(rows, k)
        )
        rng = np.random.default_rng(0)
        for start in range(0, rows, 5000):
            mm[start : start + 5000] = rng.standard_normal((5000, k), dtype=np.float32)
        mm.flush()
        del mm
        np.save(tmp_path / "y.npy", rng.integers(0, k, rows).astype(np.int32))
        size = path.stat().st_size
        assert size > 50e6
        args = ["score", str(path), "--labels", str(tmp_path / "y.npy"), "--json"]
        assert main([*args, "--chunk-rows", "10"]) == 0  # imports, tables: warm
        first = capsys.readouterr().out
        tracemalloc.start()
        try:
            code = main(
                [
                    "score",
                    str(path),
                    "--labels",
                    str(tmp_path / "y.npy"),
                    "--json",
                    "--chunk-rows",
                    "250",
                ]
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert code == 0
        assert capsys.readouterr().out == first
        assert json.loads(first)["rows"] == rows
        chunk_bytes = 250 * k * 8  # one chunk in float64: 1 MB
        assert peak < 16 * chunk_bytes
        assert peak < size / 3

    def test_progress_bar_on_a_terminal(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        monkeypatch.setattr(_score_cli, "PROGRESS_MIN_BYTES", 0)
        args = ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy")]
        assert main([*args, "--json"]) == 0  # not a terminal: silent
        quiet = capsys.readouterr()
        assert quiet.err == ""
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        assert main([*args, "--json", "--chunk-rows", "5"]) == 0
        loud = capsys.readouterr()
        assert loud.out == quiet.out


class TestOutput:
    def _files(self, tmp_path: Path) -> tuple[Path, Path]:
        x, y = _data()
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        return tmp_path / "p.npy", tmp_path / "y.npy"

    def test_table_on_stdout(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        p, y = self._files(tmp_path)
        assert main(["score", str(p), "--labels", str(y), "--per-class"]) == 0
        out = capsys.readouterr().out
        for word in ("nll_mean", "perplexity", "top-5 accuracy", "ece", "class"):
            assert word in out
        assert "\x1b[" not in out

    def test_json_and_csv_files(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        p, y = self._files(tmp_path)
        shown = _score(
            capsys, p, "--labels", y, "--per-class", "--output", tmp_path / "r.json"
        )
        assert json.loads((tmp_path / "r.json").read_text()) == shown
        assert list(shown)[:4] == ["schema", "logitkit", "predictions", "labels"]
        assert shown["schema"] == "logitkit.score/1"
        _score(capsys, p, "--labels", y, "--per-class", "--output", tmp_path / "r.csv")
        with (tmp_path / "r.csv").open() as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["metric", "class", "value"]
        table = {(m, c): v for m, c, v in rows[1:]}
        assert float(table["nll_mean", ""]) == shown["metrics"]["nll_mean"]
        assert (
            float(table["top_k_accuracy@5", ""])
            == shown["metrics"]["top_k_accuracy"]["5"]
        )
        assert int(table["count", "3"]) == shown["per_class"][3]["count"]
        assert sorted(q.name for q in tmp_path.iterdir()) == [
            "p.npy",
            "r.csv",
            "r.json",
            "y.npy",
        ]

    def test_a_failed_write_leaves_nothing(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        p, y = self._files(tmp_path)
        out = tmp_path / "r.json"

        def broken(_result: dict[str, Any], fh: Any) -> None:
            fh.write('{"schema": ')  # half written, then the disk fills up
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(_score_cli, "write_json", broken)
        code, err = _fail(capsys, p, "--labels", y, "--output", out)
        assert code == 1
        assert "r.json: cannot be written" in err
        assert sorted(q.name for q in tmp_path.iterdir()) == ["p.npy", "y.npy"]
        out.write_text("old")  # an existing file is kept as it was
        _fail(capsys, p, "--labels", y, "--output", out)
        assert out.read_text() == "old"
        assert sorted(q.name for q in tmp_path.iterdir()) == [
            "p.npy",
            "r.json",
            "y.npy",
        ]


class TestErrors:
    @pytest.fixture
    def files(self, tmp_path: Path) -> dict[str, Path]:
        x, y = _data(n=10)
        np.save(tmp_path / "p.npy", x)
        np.save(tmp_path / "y.npy", y)
        return {"p": tmp_path / "p.npy", "y": tmp_path / "y.npy", "dir": tmp_path}

    def _check(
        self,
        capsys: pytest.CaptureFixture[str],
        files: dict[str, Path],
        *args: Any,
        status: int,
        expect: tuple[str, ...],
    ) -> None:
        out = files["dir"] / "out.json"
        code, err = _fail(capsys, *args, "--output", out)
        assert code == status, err
        for part in expect:
            assert part in err, (part, err)
        assert not out.exists()
        assert not list(files["dir"].glob(".out.json*"))

    def test_missing_file(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        missing = files["dir"] / "nope.npy"
        self._check(
            capsys,
            files,
            missing,
            "--labels",
            files["y"],
            status=1,
            expect=(f"{missing}: no such file",),
        )
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            missing,
            status=1,
            expect=(f"{missing}: no such file",),
        )

    def test_corrupt_and_truncated_npy(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        bad = files["dir"] / "bad.npy"
        bad.write_bytes(b"this is not an npy file at all")
        self._check(
            capsys,
            files,
            bad,
            "--labels",
            files["y"],
            status=1,
            expect=(f"{bad}: not a valid .npy file",),
        )
        cut = files["dir"] / "cut.npy"
        cut.write_bytes(files["p"].read_bytes()[:-100])
        self._check(
            capsys,
            files,
            cut,
            "--labels",
            files["y"],
            status=1,
            expect=(f"{cut}: not a valid .npy file",),
        )

    def test_corrupt_and_truncated_npz(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        x, y = _data(n=10)
        good = files["dir"] / "g.npz"
        np.savez_compressed(good, x=x, y=y)
        cut = files["dir"] / "cut.npz"
        cut.write_bytes(good.read_bytes()[:-200])
        self._check(
            capsys,
            files,
            cut,
            "--key",
            "x",
            "--labels-key",
            "y",
            status=1,
            expect=(f"{cut}: not a valid .npz file",),
        )
        self._check(
            capsys,
            files,
            good,
            "--key",
            "nope",
            "--labels-key",
            "y",
            status=2,
            expect=(f"{good}: no array 'nope'", "x, y"),
        )
        self._check(
            capsys,
            files,
            good,
            "--labels-key",
            "y",
            status=2,
            expect=(f"{good}: holds 2 arrays", "--key"),
        )

    def test_mismatched_lengths(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        short = files["dir"] / "short.npy"
        np.save(short, np.zeros(9, dtype=np.int64))
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            short,
            status=1,
            expect=(f"{short}: 9 rows of labels; expected 10",),
        )
        csv_short = files["dir"] / "short.csv"
        csv_short.write_text("1\n2\n")
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            csv_short,
            status=1,
            expect=(f"{csv_short}: ends after 2 rows",),
        )
        wide = files["dir"] / "wide.npy"
        np.save(wide, np.zeros((10, K + 1)))
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            wide,
            status=1,
            expect=(f"{wide}: {K + 1} label columns", f"or {K} (one-hot)"),
        )

    def test_labels_out_of_range(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        y = np.load(files["y"])
        y[7] = K
        np.save(files["y"], y)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            status=1,
            expect=(f"{files['y']}: row 7: label {K}; expected a class in [0, {K})",),
        )
        y[7] = 0
        y[3] = -100
        np.save(files["y"], y)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            "--ignore-index",
            "-1",
            status=1,
            expect=("row 3: label -100", "or -1 (--ignore-index)"),
        )

    def test_bad_one_hot_and_non_integer_labels(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        h = np.eye(K)[np.load(files["y"])]
        h[4, 0] = 0.5
        np.save(files["y"], h)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            status=1,
            expect=("row 4, column 0: 0.5; expected an integer",),
        )
        h[4, 0] = 1.0
        h[4, 1] = 1.0
        np.save(files["y"], h)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            status=1,
            expect=("row 4: not one-hot",),
        )

    def test_neg_inf_logits_are_masked_classes(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        x = np.load(files["p"])
        y = np.load(files["y"]).reshape(-1)
        other = (int(y[6]) + 1) % x.shape[1]
        x[6, other] = -np.inf  # masked, not the label: scored as probability 0
        np.save(files["p"], x)
        assert (
            main(["score", str(files["p"]), "--labels", str(files["y"]), "--json"]) == 0
        )
        out = json.loads(capsys.readouterr().out)
        assert math.isfinite(out["metrics"]["nll_mean"])
        x[6, int(y[6])] = -np.inf  # the label's own probability is 0
        np.save(files["p"], x)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            status=1,
            expect=(f"{files['p']}: row 6: the logit of label", "infinite loss"),
        )
        x[6] = -np.inf
        np.save(files["p"], x)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            status=1,
            expect=("row 6: every logit is -inf",),
        )

    @pytest.mark.parametrize("value", [np.nan, np.inf])
    def test_non_finite_rows(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path], value: float
    ) -> None:
        x = np.load(files["p"])
        x[6, 2] = value
        np.save(files["p"], x)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            "--chunk-rows",
            "4",
            status=1,
            expect=(
                f"{files['p']}: row 6, column 2: {value!r}",
                "expected finite numbers or -inf",
            ),
        )

    def test_probabilities_that_do_not_sum_to_one(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        p = np.full((10, K), 1.0 / K)
        p[8, 0] += 0.01
        np.save(files["p"], p)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            "--probs",
            status=1,
            expect=(
                f"{files['p']}: row 8: probabilities sum to",
                "expected 1 within 0.0001",
            ),
        )
        # a looser tolerance accepts it
        assert (
            main(
                [
                    "score",
                    str(files["p"]),
                    "--labels",
                    str(files["y"]),
                    "--probs",
                    "--prob-tol",
                    "0.02",
                    "--json",
                ]
            )
            == 0
        )
        capsys.readouterr()
        p[8, 0] = 1.5
        np.save(files["p"], p)
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            "--probs",
            status=1,
            expect=("row 8, column 0: 1.5; expected a probability",),
        )

    def test_csv_errors(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        path = files["dir"] / "p.csv"
        path.write_text("a,b,label\n1,2,0\n\n3,x,1\n")
        self._check(
            capsys,
            files,
            path,
            "--label-column",
            "label",
            status=1,
            expect=(f"{path}: row 1 (line 4), column 1 ('b'): 'x' is not a number",),
        )
        path.write_text("a,b,label\n1,2,0\n3,4,1,5\n")
        self._check(
            capsys,
            files,
            path,
            "--label-column",
            "label",
            status=1,
            expect=("row 1 (line 3) has 4 fields, expected 3",),
        )
        path.write_text("a,b,label\n1,2,0\n")
        self._check(
            capsys,
            files,
            path,
            "--label-column",
            "nope",
            status=2,
            expect=(f"{path}: no column 'nope' (columns: a, b, label)",),
        )

    def test_unknown_format_and_usage(
        self, capsys: pytest.CaptureFixture[str], files: dict[str, Path]
    ) -> None:
        odd = files["dir"] / "p.feather"
        odd.write_bytes(b"")
        self._check(
            capsys,
            files,
            odd,
            "--labels",
            files["y"],
            status=2,
            expect=(
                f"{odd}: unknown format '.feather'",
                ".npy, .npz, .csv, .tsv, .parquet, .zarr",
            ),
        )
        self._check(capsys, files, files["p"], status=2, expect=("no labels",))
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            "--label-column",
            "0",
            status=2,
            expect=("--label-column needs .csv",),
        )
        self._check(
            capsys,
            files,
            files["p"],
            "--labels",
            files["y"],
            "--class-axis",
            "5",
            status=2,
            expect=("--class-axis 5 is out of range",),
        )
        code, err = _fail(
            capsys, files["p"], "--labels", files["y"], "--output", "r.txt"
        )
        assert code == 2
        assert "expected a .json or .csv" in err

    @pytest.mark.parametrize(
        "args", [["--chunk-rows", "0"], ["--bins", "x"], ["--top-k", "-1"], ["--nope"]]
    )
    def test_argparse_usage_errors(
        self,
        capsys: pytest.CaptureFixture[str],
        files: dict[str, Path],
        args: list[str],
    ) -> None:
        code, err = _fail(capsys, files["p"], "--labels", files["y"], *args)
        assert code == 2
        assert "usage: logitkit" in err

    def test_debug_shows_the_exception(self, files: dict[str, Path]) -> None:
        from logitkit._io import DataError

        with pytest.raises(DataError, match="no such file"):
            main(
                [
                    "score",
                    str(files["dir"] / "nope.npy"),
                    "--labels",
                    str(files["y"]),
                    "--debug",
                ]
            )


def test_python_m_logitkit_score(tmp_path: Path) -> None:
    x, y = _data()
    np.save(tmp_path / "p.npy", x)
    np.save(tmp_path / "y.npy", y)
    cmd = [sys.executable, "-m", "logitkit", "score", str(tmp_path / "p.npy")]
    res = subprocess.run(
        [*cmd, "--labels", str(tmp_path / "y.npy"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"] == N
    res = subprocess.run(
        [*cmd, "--labels", str(tmp_path / "no.npy")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1
    assert res.stderr.startswith("logitkit score: error: ")
    assert "Traceback" not in res.stderr

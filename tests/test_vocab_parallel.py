"""Vocabulary-parallel cross entropy on real gloo process groups (loopback).

One process group per world size runs every case of that world size in a row
(each spawned process imports torch once); the processes write their results
to files, and the checks run here, against the unsharded loss and gradient.
"""

from __future__ import annotations

import datetime
import math
import pickle
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest

import logitkit as lk
from _reference import log_softmax, ulp_error

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():  # pragma: no cover - builds without distributed
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from logitkit._vocab_parallel import vocab_parallel_cross_entropy

V = 10
#: rank -> (vocab_start, local_V): uneven, and not in rank order.
SHARDS = {
    2: [(4, 6), (0, 4)],
    3: [(6, 4), (0, 3), (3, 3)],
}
SUBGROUP = [1, 2]  # global ranks of the group that runs the world-size-2 cases
TIMEOUT_S = 30  # of every collective; a group as a whole gets a few times it
OPTIONS = {
    "plain": {},
    "ignore": {"ignore_index": -100},
    "smooth": {"label_smoothing": 0.3},
    "ignore_smooth": {"ignore_index": -100, "label_smoothing": 0.1},
}
REDUCTIONS = ("none", "mean", "sum")


# ------------------------------------------------------------------ problems


def _logits(batch: tuple[int, ...], seed: int) -> np.ndarray:
    """Random logits with confident rows (right and wrong) across the shards."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, V)) * 3.0
    flat = x.reshape(-1, V)
    flat[0] = 0.0
    flat[0, 1] = 30.0  # confident right answer (label 1): loss 9.4e-14
    flat[1] = rng.standard_normal(V)
    flat[1, 8] = 40.0  # confident, label in another shard than the argmax
    flat[2] = -2.0
    flat[2, 7] = 35.0  # confident right answer in the last columns
    return x


def _labels(batch: tuple[int, ...], seed: int, *, ignore: bool) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    y = rng.integers(0, V, batch)
    flat = y.reshape(-1)
    flat[0], flat[1], flat[2] = 1, 3, 7
    if ignore:
        flat[3::4] = -100
    return y


def _masked_logits(seed: int) -> np.ndarray:
    """-inf logits: single entries, a rank's whole shard, a label's own."""
    x = _logits((6,), seed)
    x[3, 2] = -np.inf
    x[3, 6:] = -np.inf  # the columns of a whole shard (world 3: rank 0)
    x[4, 0:3] = -np.inf
    x[5, 5] = -np.inf  # the label's own logit (label 5): loss +inf
    return x


def _case(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    dtype: str = "float64",
    upstream: Any = None,
    **opts: Any,
) -> dict[str, Any]:
    reduction = opts.get("reduction", "none")
    if upstream is None:
        if reduction == "none":
            upstream = np.random.default_rng(7).uniform(0.5, 2.0, y.shape)
        else:
            upstream = 1.75
    return {
        "name": name,
        "x": x,
        "labels": y,
        "dtype": dtype,
        "opts": opts,
        "upstream": upstream,
        "per_rank": {},
    }


def _value_cases(world: int) -> list[dict[str, Any]]:
    cases = []
    dtypes = ("float64", "float32") if world == 3 else ("float64",)
    for dtype in dtypes:
        for oname, opts in OPTIONS.items():
            for reduction in REDUCTIONS:
                batch = (2, 4) if reduction == "none" else (9,)
                seed = 11 * len(cases) + world
                x = _logits(batch, seed)
                y = _labels(batch, seed, ignore="ignore_index" in opts)
                cases.append(
                    _case(
                        f"{dtype}-{oname}-{reduction}",
                        x,
                        y,
                        dtype=dtype,
                        reduction=reduction,
                        **opts,
                    )
                )
    y6 = np.asarray([1, 3, 7, 0, 9, 5])
    for dtype in ("float64", "float32"):
        cases.append(_case(f"{dtype}-masked", _masked_logits(3), y6, dtype=dtype))
        cases.append(
            _case(
                f"{dtype}-masked-smooth",
                _masked_logits(3),
                y6,
                dtype=dtype,
                label_smoothing=0.2,
            )
        )
    return cases


def _special_cases() -> list[dict[str, Any]]:
    y = _labels((5,), 4, ignore=True)
    cases = [
        _case("bfloat16", _logits((5,), 4), y, dtype="bfloat16", ignore_index=-100),
        _case(
            "bfloat16-mean",
            _logits((5,), 4),
            y,
            dtype="bfloat16",
            ignore_index=-100,
            label_smoothing=0.1,
            reduction="mean",
        ),
        _case(
            "float16-sum",
            _logits((5,), 4),
            y,
            dtype="float16",
            ignore_index=-100,
            reduction="sum",
        ),
        _case(
            "all-ignored-mean",
            _logits((4,), 5),
            np.full(4, -100),
            ignore_index=-100,
            reduction="mean",
        ),
        _case("no-tokens-none", np.zeros((0, V)), np.zeros(0, dtype=np.int64)),
        _case(
            "no-tokens-mean",
            np.zeros((0, V)),
            np.zeros(0, dtype=np.int64),
            reduction="mean",
        ),
        _case("smoothing-one", _logits((5,), 6), y % V, label_smoothing=1.0),
        _case("ignore-index-is-a-class", _logits((5,), 6), y % V, ignore_index=3),
    ]
    empty = _case(
        "empty-shard", _logits((5,), 7), y % V, label_smoothing=0.2, reduction="sum"
    )
    empty["per_rank"] = {
        0: {"shard": (0, 7)},
        1: {"shard": (7, 0)},
        2: {"shard": (7, 3)},
    }
    cases.append(empty)
    # +inf logits in two shards share the mass; a NaN row stays NaN.
    x = _logits((4,), 8)
    x[0, 1] = x[0, 8] = np.inf
    x[1, 0] = np.inf
    x[2, 4] = np.nan
    cases.append(_case("inf-and-nan", x, np.asarray([1, 0, 4, 5])))
    return cases


def _error_cases(world: int) -> list[dict[str, Any]]:
    x = _logits((2, 3), 9)
    y = _labels((2, 3), 9, ignore=False)
    cases: list[dict[str, Any]] = []

    def err(name: str, per_rank: dict[int, dict[str, Any]], **opts: Any) -> None:
        c = _case(name, x, y, **opts)
        c["per_rank"] = per_rank
        cases.append(c)

    if world == 3:
        # [0, 3), [3, 3) empty, [5, 10) ... with [3, 5) missing: a gap.
        err("gap", {0: {"shard": (0, 3)}, 1: {"shard": (5, 2)}, 2: {"shard": (5, 3)}})
        cases.append(_case("after-errors", x, y, reduction="sum"))
        return cases
    bad = y.copy()
    bad[1, 2] = V
    other = y.copy()
    other[1, 1] = (other[1, 1] + 1) % V
    err("negative-start-one-rank", {1: {"vocab_start": -1}})
    err("start-not-int", {0: {"vocab_start": 2.0}, 1: {"vocab_start": 2.0}})
    err("overlap", {0: {"shard": (0, 6)}, 1: {"shard": (4, 4)}})
    err("past-the-end", {0: {"shard": (0, 5)}, 1: {"shard": (6, 4)}})
    err("labels-shape", {0: {"labels": y[:, :2]}, 1: {"labels": y[:, :2]}})
    err("labels-shape-one-rank", {0: {"labels": y.reshape(-1)}})
    err("label-out-of-range", {0: {"labels": bad}, 1: {"labels": bad}})
    neg = np.where(bad == V, -100, bad)
    err("label-negative", {0: {"labels": neg}, 1: {"labels": neg}})
    neg5 = np.where(bad == V, -5, bad)
    err(
        "label-negative-with-ignore",
        {0: {"labels": neg5}, 1: {"labels": neg5}},
        ignore_index=-100,
    )
    err("labels-differ", {1: {"labels": other}})
    err("labels-float", {0: {"labels": y * 1.0}, 1: {"labels": y * 1.0}})
    err("logits-int", {0: {"dtype": "int64"}, 1: {"dtype": "int64"}})
    err("dtype-differs", {1: {"dtype": "float32"}})
    err("reduction", {}, reduction="avg")
    err("smoothing-range", {}, label_smoothing=1.5)
    err("smoothing-differs", {1: {"opts": {"label_smoothing": 0.1}}})
    err("ignore-index-differs", {0: {"opts": {"ignore_index": -100}}})
    err("ignore-index-type", {}, ignore_index=1.0)
    err("no-classes", {0: {"shard": (0, 0)}, 1: {"shard": (0, 0)}})
    cases.append(_case("after-errors", x, y, reduction="sum"))
    return cases


def _cases(world: int) -> list[dict[str, Any]]:
    cases = _value_cases(world) + _error_cases(world)
    if world == 3:
        cases += _special_cases()
    return cases


# -------------------------------------------------------------------- worker


def _torch_dtype(name: str) -> Any:
    return getattr(torch, name)


def _to_numpy(t: Any) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return np.asarray(t.numpy())


def _shard(case: dict[str, Any], world: int, rank: int) -> tuple[int, int]:
    """``(vocab_start, local_V)`` of `rank` in `case`."""
    start, size = case["per_rank"].get(rank, {}).get("shard", SHARDS[world][rank])
    return int(start), int(size)


def _run_case(
    rank: int, world: int, case: dict[str, Any], group: Any
) -> dict[str, Any]:
    mine = case["per_rank"].get(rank, {})
    start, size = _shard(case, world, rank)
    dtype = _torch_dtype(mine.get("dtype", case["dtype"]))
    x = torch.tensor(case["x"])[..., start : start + size].to(dtype).contiguous()
    if dtype.is_floating_point:
        x.requires_grad_(True)
    labels = torch.tensor(mine.get("labels", case["labels"]))
    opts = {**case["opts"], **mine.get("opts", {})}
    try:
        loss = vocab_parallel_cross_entropy(
            x, labels, vocab_start=mine.get("vocab_start", start), group=group, **opts
        )
        up = torch.as_tensor(case["upstream"], dtype=loss.dtype)
        loss.backward(up)
    except Exception as e:  # noqa: BLE001 - every error goes back to the parent
        return {"error": (type(e).__name__, str(e), traceback.format_exc())}
    return {"loss": _to_numpy(loss), "grad": _to_numpy(x.grad)}


def _worker(rank: int, port: int, folder: str) -> None:
    """One rank of the group of 3: run every case, write the results to a file.

    The world-size-3 cases run on the default group (``group=None``), the
    world-size-2 ones on a subgroup of global ranks 1 and 2 (group ranks 0
    and 1), while rank 0 checks that it cannot use that group.
    """
    out = Path(folder)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=3,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        sub = dist.new_group(SUBGROUP)
        cases = pickle.loads((out / "cases.pkl").read_bytes())
        results: dict[Any, Any] = {3: [_run_case(rank, 3, c, None) for c in cases[3]]}
        if rank in SUBGROUP:
            r = dist.get_rank(sub)
            results[2] = [_run_case(r, 2, c, sub) for c in cases[2]]
        else:
            results["outsider"] = _run_case(0, 2, cases[2][0], sub)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    (out / f"rank{rank}.pkl").write_bytes(pickle.dumps(results))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_group(folder: Path) -> list[dict[Any, Any]]:
    """Start 3 ranks, run every case; the results of each rank."""
    cases = {w: _cases(w) for w in (2, 3)}
    (folder / "cases.pkl").write_bytes(pickle.dumps(cases))
    port = _free_port()
    code = (
        f"import sys; sys.path[:0] = {sys.path!r}; "
        "from test_vocab_parallel import _worker; "
        f"_worker(int(sys.argv[1]), {port}, {str(folder)!r})"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(3)
    ]
    logs = []
    try:
        for p in procs:
            # a deadlock would end in the collectives' timeout; this is the backstop
            logs.append(p.communicate(timeout=4 * TIMEOUT_S)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    codes = [p.returncode for p in procs]
    assert codes == [0, 0, 0], f"rank exit codes {codes}:\n" + "\n".join(logs)
    return [pickle.loads((folder / f"rank{r}.pkl").read_bytes()) for r in range(3)]


Results = dict[Any, Any]


@pytest.fixture(scope="module")
def group_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """``{world: {case name: (case, [result of each rank])}}``, run once.

    Also ``"outsider"``: global rank 0 calling with a group without it.
    """
    per_rank = _run_group(tmp_path_factory.mktemp("group"))
    out: Results = {"outsider": per_rank[0]["outsider"]}
    for world in (2, 3):
        ranks = per_rank if world == 3 else [per_rank[r] for r in SUBGROUP]
        out[world] = {
            c["name"]: (c, [rr[world][i] for rr in ranks])
            for i, c in enumerate(_cases(world))
        }
    return out


# ---------------------------------------------------------------- references


def _reference(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The unsharded loss and gradient (times the upstream gradient)."""
    x = torch.tensor(case["x"]).to(_torch_dtype(case["dtype"]))
    opts = case["opts"]
    loss, g = lk.grad.sparse_softmax_cross_entropy(
        x, torch.tensor(case["labels"]), **opts
    )
    up = torch.as_tensor(case["upstream"], dtype=torch.float64)
    if opts.get("reduction", "none") == "none":
        up = up[..., None]
    return _to_numpy(loss), _to_numpy(g) * np.asarray(up)


def _exact(case: dict[str, Any]) -> list[Any]:
    """mpmath per-token losses (50 digits) of the float64 logits."""
    eps = mpmath.mpf(case["opts"].get("label_smoothing", 0.0))
    x = case["x"].reshape(-1, V)
    out = []
    for row, label in zip(x, case["labels"].reshape(-1), strict=True):
        if label == case["opts"].get("ignore_index"):
            out.append(mpmath.mpf(0))
            continue
        lsm = log_softmax([float(v) for v in row])
        smooth = mpmath.fsum(lsm) / V if eps else 0
        out.append(-((1 - eps) * lsm[int(label)] + eps * smooth))
    return out


def _max_ulp(actual: np.ndarray, expected: np.ndarray, dtype: str) -> float:
    """Largest ``|actual - expected|`` in ulps of `expected` (in `dtype`)."""
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    e = np.asarray(expected, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return 0.0
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    spacing = np.spacing(np.abs(e).astype(dtype)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(a - e) / spacing)
    return float(np.max(np.where(np.isnan(err), np.inf, err)))


def _names(world: int, *, errors: bool = False) -> list[str]:
    cases = _error_cases(world) if errors else _value_cases(world)
    if world == 3 and not errors:
        cases += _special_cases()
    return [c["name"] for c in cases if c["name"] != "after-errors"]


def _ok(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in results:
        assert "error" not in r, r["error"][2]
    return results


# --------------------------------------------------------------------- tests


class TestValues:
    @pytest.mark.parametrize(
        ("world", "name"),
        [(w, n) for w in (2, 3) for n in _names(w)],
    )
    def test_loss_and_gradient(
        self, group_results: Results, world: int, name: str
    ) -> None:
        case, results = group_results[world][name]
        results = _ok(results)
        ref_loss, ref_grad = _reference(case)
        out = "float32" if case["dtype"] in ("bfloat16", "float16") else case["dtype"]
        for rank, r in enumerate(results):
            # Every rank has the same loss, to the last bit.
            np.testing.assert_array_equal(r["loss"], results[0]["loss"])
            assert r["loss"].dtype == np.dtype(out)
            assert _max_ulp(r["loss"], ref_loss, out) <= 1.0, (r["loss"], ref_loss)
            start, size = _shard(case, world, rank)
            expected = ref_grad[..., start : start + size]
            assert r["grad"].shape == expected.shape
            if case["dtype"] == "float64":
                tol = {"rtol": 1e-14, "atol": 1e-300}
            elif case["dtype"] == "float32":
                tol = {"rtol": 2.0**-22, "atol": 1e-44}
            else:  # the upstream gradient is applied before the rounding
                tol = {"rtol": 2.0**-7, "atol": 0.0}
            np.testing.assert_allclose(r["grad"], expected, **tol)

    @pytest.mark.parametrize("world", [2, 3])
    def test_float64_against_mpmath(self, group_results: Results, world: int) -> None:
        checked = 0
        for name in _names(world):
            case, results = group_results[world][name]
            opts = case["opts"]
            if case["dtype"] != "float64" or opts.get("reduction", "none") != "none":
                continue
            if name in ("inf-and-nan", "no-tokens-none"):
                continue
            loss = _ok(results)[0]["loss"]
            err = ulp_error(loss, _exact(case))
            assert float(np.max(err)) <= 1.0, (name, err)
            checked += 1
        assert checked >= (6 if world == 2 else 8)

    def test_confident_right_answer_keeps_its_digits(
        self, group_results: Results
    ) -> None:
        for dtype in ("float64", "float32"):
            _, results = group_results[3][f"{dtype}-plain-none"]
            loss = _ok(results)[0]["loss"].reshape(-1)
            # log1p(9 e**-30): logsumexp(x) - x_y would give 0.
            expected = math.log1p(9.0 * math.exp(-30.0))
            assert loss[0] == pytest.approx(expected, rel=1e-7)
            assert 0.0 < loss[2] < 1e-14
            grad = results[1]["grad"].reshape(-1, 3)  # rank 1: columns [0, 3)
            assert grad[0, 1] < 0.0  # p_y - 1 = -S / (1 + S), not 0

    def test_masked_logits(self, group_results: Results) -> None:
        _, results = group_results[3]["float64-masked"]
        loss = _ok(results)[0]["loss"]
        assert np.all(np.isfinite(loss[:5]))
        assert loss[5] == np.inf  # the label's own logit is -inf
        for r in results:  # and the -inf columns have zero gradient
            assert np.all(np.isfinite(r["grad"]))
        _, results = group_results[3]["float64-masked-smooth"]
        loss = _ok(results)[0]["loss"]
        assert np.isfinite(loss[0])
        assert np.all(np.isinf(loss[3:]))

    def test_all_ignored_mean_is_zero(self, group_results: Results) -> None:
        _, results = group_results[3]["all-ignored-mean"]
        for r in _ok(results):
            assert float(r["loss"]) == 0.0
            assert not np.any(r["grad"])

    def test_same_as_torch_autograd(self, group_results: Results) -> None:
        functional = pytest.importorskip("torch.nn.functional")
        checked = 0
        for world in (2, 3):
            for name in _names(world):
                case, results = group_results[world][name]
                if case["dtype"] not in ("float64", "float32"):
                    continue
                if not np.all(np.isfinite(case["x"])) or name.startswith("all-"):
                    continue
                if case["x"].size == 0:
                    continue
                opts = case["opts"]
                # the logits as the ranks had them, differentiated in float64
                x = torch.tensor(case["x"]).to(_torch_dtype(case["dtype"])).double()
                x.requires_grad_(True)
                labels = torch.tensor(case["labels"])
                loss = functional.cross_entropy(
                    x.reshape(-1, V),
                    labels.reshape(-1),
                    ignore_index=opts.get("ignore_index", -100),
                    label_smoothing=opts.get("label_smoothing", 0.0),
                    reduction=opts.get("reduction", "none"),
                )
                up = torch.as_tensor(case["upstream"], dtype=torch.float64)
                loss.backward(up.reshape(loss.shape))
                f64 = case["dtype"] == "float64"
                # torch forms p_y - 1 by cancellation: a few ulp of 1 (times the
                # upstream gradient) off for a confident row (1.1e-15 seen on an
                # AVX-512 machine); exactness is checked against mpmath elsewhere
                rtol, atol = (1e-12, 1e-14) if f64 else (1e-6, 1e-7)
                for rank, r in enumerate(_ok(results)):
                    start, size = _shard(case, world, rank)
                    g = x.grad.numpy()[..., start : start + size]
                    np.testing.assert_allclose(r["grad"], g, rtol=rtol, atol=atol)
                np.testing.assert_allclose(
                    results[0]["loss"].reshape(-1),
                    loss.detach().numpy().reshape(-1),
                    rtol=rtol,
                    atol=1e-12,
                )
                checked += 1
        assert checked >= 20


ERRORS = {
    "negative-start-one-rank": (
        "ValueError",
        (
            "`vocab_start` must be non-negative (the global index of this rank's first "
            "column); got -1 (on rank 1)."
        ),
    ),
    "start-not-int": ("TypeError", "`vocab_start` must be an int; got 2.0."),
    "overlap": ("ValueError", "got [0, 6) on rank 0, [4, 8) on rank 1 (overlap at 4)"),
    "past-the-end": (
        "ValueError",
        (
            "must be at most the global vocabulary size V = 9 (the sum of the ranks' "
            "local sizes); got columns [6, 10) on rank 1."
        ),
    ),
    "labels-shape": (
        "ValueError",
        "`labels` must have shape `local_logits.shape[:-1]` (2, 3); got shape (2, 2)",
    ),
    "labels-shape-one-rank": (
        "ValueError",
        "got shape (6,) for local_logits of shape (2, 3, 6) (on rank 0).",
    ),
    "label-out-of-range": (
        "ValueError",
        "`labels` must be in [0, 10); got 10 at position (1, 2).",
    ),
    "label-negative": (
        "ValueError",
        "`labels` must be in [0, 10); got -100 at position (1, 2).",
    ),
    "label-negative-with-ignore": (
        "ValueError",
        "`labels` must be in [0, 10) or ignore_index; got -5 at position (1, 2).",
    ),
    "labels-differ": ("ValueError", "`labels` must be the same on every rank; got"),
    "labels-float": ("TypeError", "`labels` must be integer class ids"),
    "logits-int": (
        "TypeError",
        "`local_logits` must be a floating tensor; got dtype torch.int64.",
    ),
    "dtype-differs": (
        "ValueError",
        (
            "`local_logits.dtype` must be the same on every rank; got torch.float64 on "
            "rank 0 and torch.float32 on rank 1."
        ),
    ),
    "reduction": (
        "ValueError",
        "Unknown reduction 'avg'. Expected 'none', 'mean' or 'sum'.",
    ),
    "smoothing-range": ("ValueError", "`label_smoothing` must be in [0, 1]; got 1.5."),
    "smoothing-differs": (
        "ValueError",
        (
            "`label_smoothing` must be the same on every rank; got 0.0 on rank 0 and "
            "0.1 on rank 1."
        ),
    ),
    "ignore-index-differs": (
        "ValueError",
        (
            "`ignore_index` must be the same on every rank; got -100 on rank 0 and "
            "None on rank 1."
        ),
    ),
    "ignore-index-type": (
        "TypeError",
        "`ignore_index` must be an int or None; got 1.0.",
    ),
    "gap": ("ValueError", "(gap [3, 5))."),
    "no-classes": (
        "ValueError",
        (
            "`local_logits` must have at least one class on some rank; got "
            "local_logits.shape[-1] = 0 on every rank."
        ),
    ),
}


class TestErrors:
    @pytest.mark.parametrize(
        ("world", "name"),
        [(w, n) for w in (2, 3) for n in _names(w, errors=True)],
    )
    def test_every_rank_raises_the_same_error(
        self, group_results: Results, world: int, name: str
    ) -> None:
        _, results = group_results[world][name]
        kind, text = ERRORS[name]
        for r in results:
            assert "error" in r, f"{name}: no error on some rank"
            assert r["error"][:2] == results[0]["error"][:2]
        assert results[0]["error"][0] == kind, results[0]["error"][2]
        assert text in results[0]["error"][1], results[0]["error"][1]

    @pytest.mark.parametrize("world", [2, 3])
    def test_the_group_works_after_errors(
        self, group_results: Results, world: int
    ) -> None:
        case, results = group_results[world]["after-errors"]
        ref_loss, _ = _reference(case)
        for r in _ok(results):
            assert _max_ulp(r["loss"], ref_loss, "float64") <= 1.0

    def test_group_without_this_rank(self, group_results: Results) -> None:
        kind, text, _ = group_results["outsider"]["error"]
        assert kind == "ValueError"
        assert "`group` must contain this process" in text

    def test_not_initialised(self) -> None:
        assert not dist.is_initialized()
        x = torch.zeros((2, 3))
        with pytest.raises(RuntimeError, match="init_process_group"):
            vocab_parallel_cross_entropy(
                x, torch.zeros(2, dtype=torch.int64), vocab_start=0
            )


@pytest.fixture
def group_of_one(tmp_path: Path) -> Any:
    """A gloo group of this process alone (it holds the whole vocabulary)."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield None
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("group_of_one")
class TestSingleProcess:
    @pytest.mark.parametrize(
        "opts",
        [
            {"ignore_index": -100},
            {"ignore_index": -100, "label_smoothing": 0.2, "reduction": "mean"},
            {"ignore_index": -100, "label_smoothing": 0.7, "reduction": "sum"},
        ],
    )
    def test_world_size_one_is_the_sparse_cross_entropy(
        self, opts: dict[str, Any]
    ) -> None:
        x = torch.tensor(_logits((3, 4), 2), requires_grad=True)
        y = torch.tensor(_labels((3, 4), 2, ignore=True))
        loss = vocab_parallel_cross_entropy(x, y, vocab_start=0, **opts)
        loss.sum().backward()
        ref, g = lk.grad.sparse_softmax_cross_entropy(x.detach(), y, **opts)
        assert _max_ulp(_to_numpy(loss), _to_numpy(ref), "float64") <= 1.0
        np.testing.assert_allclose(x.grad, g, rtol=1e-14, atol=1e-300)

    def test_row_blocks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Statistics and gradient taken a few rows at a time: the same numbers."""
        import logitkit._vocab_parallel as vp

        x = torch.tensor(_logits((7,), 3), requires_grad=True)
        y = torch.tensor(_labels((7,), 3, ignore=False))
        opts = {"label_smoothing": 0.1, "reduction": "sum"}
        whole = vocab_parallel_cross_entropy(x, y, vocab_start=0, **opts)
        whole.backward()
        g = x.grad.clone()
        x.grad = None
        monkeypatch.setattr(vp, "ROW_BLOCK_ELEMENTS", 2 * V + 1)  # 2 rows a block
        blocks = vocab_parallel_cross_entropy(x, y, vocab_start=0, **opts)
        blocks.backward()
        assert float(blocks.detach()) == float(whole.detach())
        torch.testing.assert_close(x.grad, g, rtol=0, atol=0)

    def test_one_token(self) -> None:
        x = torch.tensor([0.0, 30.0, -1.0], requires_grad=True)
        loss = vocab_parallel_cross_entropy(x, 1, vocab_start=np.int64(0))
        assert loss.shape == ()
        assert float(loss.detach()) == float(
            lk.sparse_softmax_cross_entropy(x.detach(), 1)
        )
        with pytest.raises(
            ValueError, match=r"or ignore_index; got 5 at position \(\)"
        ):
            vocab_parallel_cross_entropy(x, 5, vocab_start=0, ignore_index=-1)

    def test_label_out_of_range(self) -> None:
        x = torch.zeros((3, 4, V))
        y = torch.zeros((3, 4), dtype=torch.int64)
        y[0, 1] = V
        with pytest.raises(ValueError, match=r"got 10 at position \(0, 1\)\.$"):
            vocab_parallel_cross_entropy(x, y, vocab_start=0)

    def test_logits_not_a_tensor(self) -> None:
        with pytest.raises(TypeError, match=r"`local_logits` must be a torch\.Tensor"):
            vocab_parallel_cross_entropy(np.zeros((2, 3)), [0, 1], vocab_start=0)


def test_import_does_not_load_torch() -> None:
    code = "import sys, logitkit._vocab_parallel; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "False"

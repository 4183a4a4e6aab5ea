"""Speed of logitkit's NumPy kernels beside NumPy, SciPy, PyTorch and JAX.

Each library runs in its own subprocess on inputs already in its own array
type, warm (one call before timing; ``jax.jit`` compiled), and reports the
median of several samples. The parent process also measures ``np.copyto``
(read + write bandwidth) in the same run. Results go to
``benchmarks/results/speed.json`` and a markdown table is printed.

    python benchmarks/speed.py              # float32, every shape
    python benchmarks/speed.py --float64    # float64 as well
    python benchmarks/speed.py --quick      # small shapes, for a smoke test
    python benchmarks/speed.py --sigmoid    # the sigmoid family instead

Ops: softmax, log_softmax and the per-row sparse cross entropy (integer
labels, ``reduction="none"``). GB/s counts the bytes read plus written:
``x`` and the output for the normalisers, ``x`` and the labels read and one
float per row written for the cross entropy.

With ``--sigmoid``: sigmoid, softplus, log_sigmoid and the elementwise
sigmoid cross entropy (soft labels of the logits' dtype; ``"none"`` and
``"mean"``), against NumPy (naive formulas), SciPy (``expit``,
``log_expit``, ``logaddexp(0, x)``), torch (``torch.sigmoid``,
``F.softplus``, ``F.logsigmoid``, ``F.binary_cross_entropy_with_logits``)
and ``jax.jit`` of ``jax.nn``; ``logitkit_torch`` is logitkit called on
torch tensors (the zero-copy path). GB/s counts ``x`` (and the labels)
read and the output written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHAPES = [(4096, 32000), (1024, 128256), (65536, 1000), (64, 10)]
QUICK_SHAPES = [(256, 1000), (64, 10)]
OPS = ["softmax", "log_softmax", "sparse_ce"]
LIBS = ["logitkit", "logitkit_out", "numpy", "scipy", "torch", "jax"]
PEERS = ["numpy", "scipy", "torch", "jax"]
RESULTS = Path(__file__).resolve().parent / "results" / "speed.json"
SIG_SHAPES = [(4096, 8192), (64, 10)]
SIG_QUICK_SHAPES = [(256, 1000), (64, 10)]
SIG_OPS = ["sigmoid", "softplus", "log_sigmoid", "sigmoid_ce", "sigmoid_ce_mean"]
SIG_LIBS = ["logitkit", "logitkit_torch", "numpy", "scipy", "torch", "jax"]


# ---------------------------------------------------------------- workers


def _make_fns(lib: str, x_np: Any, y_np: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Inputs in `lib`'s array type and its three functions (each returns a result)."""
    import numpy as np

    if lib in ("logitkit", "logitkit_out"):
        import logitkit as lk
        from logitkit import _kernels

        assert _kernels.available(), "numba kernels are not in use"
        if lib == "logitkit_out":
            out = np.empty_like(x_np)
            return (
                x_np,
                y_np,
                {
                    "softmax": lambda x, _y: lk.softmax(x, out=out),
                    "log_softmax": lambda x, _y: lk.log_softmax(x, out=out),
                },
            )
        return (
            x_np,
            y_np,
            {
                "softmax": lambda x, _y: lk.softmax(x),
                "log_softmax": lambda x, _y: lk.log_softmax(x),
                "sparse_ce": lambda x, y: lk.sparse_softmax_cross_entropy(x, y),
            },
        )
    if lib == "numpy":
        rows = np.arange(x_np.shape[0])

        def np_softmax(x: Any, _y: Any) -> Any:
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        def np_log_softmax(x: Any, _y: Any) -> Any:
            d = x - x.max(axis=-1, keepdims=True)
            return d - np.log(np.exp(d).sum(axis=-1, keepdims=True))

        def np_ce(x: Any, y: Any) -> Any:
            m = x.max(axis=-1)
            lse = m + np.log(np.exp(x - m[:, None]).sum(axis=-1))
            return lse - x[rows, y]

        fns = {"softmax": np_softmax, "log_softmax": np_log_softmax, "sparse_ce": np_ce}
        return x_np, y_np, fns
    if lib == "scipy":
        from scipy import special

        rows = np.arange(x_np.shape[0])
        fns = {
            "softmax": lambda x, _y: special.softmax(x, axis=-1),
            "log_softmax": lambda x, _y: special.log_softmax(x, axis=-1),
            "sparse_ce": lambda x, y: special.logsumexp(x, axis=-1) - x[rows, y],
        }
        return x_np, y_np, fns
    if lib == "torch":
        import torch
        import torch.nn.functional as F

        xt, yt = torch.from_numpy(x_np), torch.from_numpy(y_np)
        fns = {
            "softmax": lambda x, _y: F.softmax(x, dim=-1),
            "log_softmax": lambda x, _y: F.log_softmax(x, dim=-1),
            "sparse_ce": lambda x, y: F.cross_entropy(x, y, reduction="none"),
        }
        return xt, yt, fns
    if lib == "jax":
        import jax
        import jax.numpy as jnp

        if x_np.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        xj, yj = jax.device_put(jnp.asarray(x_np)), jax.device_put(jnp.asarray(y_np))

        def jax_ce(x: Any, y: Any) -> Any:
            lse = jax.nn.logsumexp(x, axis=-1)
            return lse - jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0]

        sm = jax.jit(lambda x, _y: jax.nn.softmax(x, axis=-1))
        lsm = jax.jit(lambda x, _y: jax.nn.log_softmax(x, axis=-1))
        ce = jax.jit(jax_ce)
        fns = {
            "softmax": lambda x, y: sm(x, y).block_until_ready(),
            "log_softmax": lambda x, y: lsm(x, y).block_until_ready(),
            "sparse_ce": lambda x, y: ce(x, y).block_until_ready(),
        }
        return xj, yj, fns
    msg = f"unknown library {lib!r}"
    raise ValueError(msg)


def _make_sigmoid_fns(
    lib: str, x_np: Any, y_np: Any
) -> tuple[Any, Any, dict[str, Any]]:
    """Inputs in `lib`'s array type and its sigmoid-family functions."""
    import numpy as np

    if lib in ("logitkit", "logitkit_torch"):
        import logitkit as lk
        from logitkit import _kernels

        assert _kernels.available(), "numba kernels are not in use"
        x, y = x_np, y_np
        if lib == "logitkit_torch":
            import torch

            x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        ce = lk.sigmoid_cross_entropy
        fns = {
            "sigmoid": lambda x, _y: lk.sigmoid(x),
            "softplus": lambda x, _y: lk.softplus(x),
            "log_sigmoid": lambda x, _y: lk.log_sigmoid(x),
            "sigmoid_ce": lambda x, y: ce(x, y),
            "sigmoid_ce_mean": lambda x, y: ce(x, y, reduction="mean"),
        }
        return x, y, fns
    if lib == "numpy":

        def np_ce(x: Any, y: Any) -> Any:
            return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))

        with np.errstate(over="ignore"):
            fns = {
                "sigmoid": lambda x, _y: 1 / (1 + np.exp(-x)),
                "softplus": lambda x, _y: np.logaddexp(0, x),
                "log_sigmoid": lambda x, _y: -np.logaddexp(0, -x),
                "sigmoid_ce": np_ce,
                "sigmoid_ce_mean": lambda x, y: np_ce(x, y).mean(),
            }
        return x_np, y_np, fns
    if lib == "scipy":
        from scipy import special

        def sc_ce(x: Any, y: Any) -> Any:
            return -(y * special.log_expit(x) + (1 - y) * special.log_expit(-x))

        fns = {
            "sigmoid": lambda x, _y: special.expit(x),
            "softplus": lambda x, _y: -special.log_expit(-x),
            "log_sigmoid": lambda x, _y: special.log_expit(x),
            "sigmoid_ce": sc_ce,
            "sigmoid_ce_mean": lambda x, y: sc_ce(x, y).mean(),
        }
        return x_np, y_np, fns
    if lib == "torch":
        import torch
        import torch.nn.functional as F

        bce = F.binary_cross_entropy_with_logits
        fns = {
            "sigmoid": lambda x, _y: torch.sigmoid(x),
            "softplus": lambda x, _y: F.softplus(x),
            "log_sigmoid": lambda x, _y: F.logsigmoid(x),
            "sigmoid_ce": lambda x, y: bce(x, y, reduction="none"),
            "sigmoid_ce_mean": lambda x, y: bce(x, y),
        }
        return torch.from_numpy(x_np), torch.from_numpy(y_np), fns
    if lib == "jax":
        import jax
        import jax.numpy as jnp

        if x_np.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        xj, yj = jax.device_put(jnp.asarray(x_np)), jax.device_put(jnp.asarray(y_np))

        def jax_ce(x: Any, y: Any) -> Any:  # optax.sigmoid_binary_cross_entropy
            return -(y * jax.nn.log_sigmoid(x) + (1 - y) * jax.nn.log_sigmoid(-x))

        jitted = {
            "sigmoid": jax.jit(lambda x, _y: jax.nn.sigmoid(x)),
            "softplus": jax.jit(lambda x, _y: jax.nn.softplus(x)),
            "log_sigmoid": jax.jit(lambda x, _y: jax.nn.log_sigmoid(x)),
            "sigmoid_ce": jax.jit(jax_ce),
            "sigmoid_ce_mean": jax.jit(lambda x, y: jax_ce(x, y).mean()),
        }

        def ready(f: Any) -> Any:
            return lambda x, y: f(x, y).block_until_ready()

        return xj, yj, {op: ready(f) for op, f in jitted.items()}
    msg = f"unknown library {lib!r}"
    raise ValueError(msg)


def _samples(shape: tuple[int, int]) -> tuple[int, int]:
    """(samples, calls per sample): fewer samples for the biggest shapes."""
    size = shape[0] * shape[1]
    if size >= 50_000_000:
        return 5, 1
    if size >= 1_000_000:
        return 7, 1
    return 7, max(1, 2_000_000 // max(size, 1) // 20)


def worker(
    lib: str, dtype: str, shapes: list[tuple[int, int]], sigmoid: bool = False
) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    for shape in shapes:
        rng = np.random.default_rng(0)
        x_np = rng.standard_normal(shape, dtype=np.float64).astype(dtype) * 3
        if sigmoid:
            y_np = rng.random(shape).astype(dtype)
            x, y, fns = _make_sigmoid_fns(lib, x_np, y_np)
        else:
            y_np = rng.integers(0, shape[1], shape[0])
            x, y, fns = _make_fns(lib, x_np, y_np)
        nsamples, calls = _samples(shape)
        for op, fn in fns.items():
            fn(x, y)  # warm: compile, caches, first-touch of reused buffers
            times = []
            for _ in range(nsamples):
                t = time.perf_counter()
                for _ in range(calls):
                    fn(x, y)
                times.append((time.perf_counter() - t) / calls)
            out[f"{shape[0]}x{shape[1]}/{op}"] = statistics.median(times)
        del x, y, fns
    return out


# ---------------------------------------------------------------- parent


def _copy_bandwidth(dtype: str) -> float:
    """Bytes per second of ``np.copyto`` on a 4096 x 32000 array (read + write)."""
    import numpy as np

    src = np.ones((4096, 32000), dtype=dtype)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return 2 * src.nbytes / statistics.median(times)


def _bytes(shape: tuple[int, int], op: str, itemsize: int) -> int:
    n = shape[0] * shape[1] * itemsize
    if op == "sparse_ce":
        return n + shape[0] * (8 + itemsize)
    if op == "sigmoid_ce":
        return 3 * n
    return 2 * n


def _versions() -> dict[str, str]:
    import importlib

    v = {"python": platform.python_version()}
    for name in ["numpy", "numba", "scipy", "torch", "jax"]:
        try:
            v[name] = importlib.import_module(name).__version__
        except ImportError:
            v[name] = "-"
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    v["cpu"] = f"{cpu}, {os.cpu_count()} cores"
    return v


def _table(
    res: dict[str, Any], dtype: str, shapes: list[tuple[int, int]], sigmoid: bool
) -> str:
    import numpy as np

    libs, ops = (SIG_LIBS, SIG_OPS) if sigmoid else (LIBS, OPS)
    item = np.dtype(dtype).itemsize
    bw = res["copyto_bytes_per_s"][dtype]
    head = "| shape | op | " + " | ".join(libs) + " | logitkit GB/s | vs best peer |"
    lines = [
        f"float{item * 8}; time in ms (median); np.copyto: {bw / 1e9:.1f} GB/s",
        "",
        head,
        "|---|---|" + "--:|" * (len(libs) + 2),
    ]
    for shape in shapes:
        for op in ops:
            key = f"{shape[0]}x{shape[1]}/{op}"
            t = {lib: res["times"][dtype].get(lib, {}).get(key) for lib in libs}
            cells = []
            for lib in libs:
                v = t[lib]
                if v is None:
                    cells.append("—")
                elif v < 1e-3:
                    cells.append(f"{v * 1e3:.4f}")
                else:
                    cells.append(f"{v * 1e3:.1f}")
            peers = [t[p] for p in PEERS if t[p] is not None]
            lk_t = t["logitkit"]
            gbs = _bytes(shape, op, item) / lk_t / 1e9 if lk_t else float("nan")
            ratio = lk_t / min(peers) if lk_t and peers else float("nan")
            lines.append(
                f"| {shape[0]}x{shape[1]} | {op} | "
                + " | ".join(cells)
                + f" | {gbs:.1f} | {ratio:.2f}x |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--float64", action="store_true", help="also float64")
    ap.add_argument("--quick", action="store_true", help="small shapes only")
    ap.add_argument("--sigmoid", action="store_true", help="the sigmoid family")
    ap.add_argument("--libs", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sigmoid:
        shapes = SIG_QUICK_SHAPES if args.quick else SIG_SHAPES
        libs = args.libs or ",".join(SIG_LIBS)
        path = args.json or RESULTS.with_name("speed_sigmoid.json")
    else:
        shapes = QUICK_SHAPES if args.quick else SHAPES
        libs = args.libs or ",".join(LIBS)
        path = args.json or RESULTS
    if args.worker:
        json.dump(worker(args.worker, args.dtype, shapes, args.sigmoid), sys.stdout)
        return 0
    dtypes = ["float32", "float64"] if args.float64 else ["float32"]
    res: dict[str, Any] = {
        "machine": _versions(),
        "shapes": [list(s) for s in shapes],
        "copyto_bytes_per_s": {},
        "times": {},
    }
    for dtype in dtypes:
        res["copyto_bytes_per_s"][dtype] = _copy_bandwidth(dtype)
        res["times"][dtype] = {}
        for lib in libs.split(","):
            cmd = [sys.executable, __file__, "--worker", lib, "--dtype", dtype]
            if args.quick:
                cmd.append("--quick")
            if args.sigmoid:
                cmd.append("--sigmoid")
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                print(f"{lib} {dtype}: failed\n{p.stderr[-2000:]}", file=sys.stderr)
                continue
            res["times"][dtype][lib] = json.loads(p.stdout)
            print(f"{lib} {dtype}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    for k, v in res["machine"].items():
        print(f"- {k}: {v}")
    for dtype in dtypes:
        print()
        print(_table(res, dtype, shapes, args.sigmoid))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of each kernel-backed logitkit call on a ~4 GiB input, and start-up.

**Memory** (issue 5: "extra memory beyond the output <= 64 MiB on a 4 GB input,
no temporaries of the input's size"). Each op runs in a fresh subprocess of
this script (one at a time: at most one big process is alive), which

1. creates the input, C-contiguous, ``rows x cols`` (``--cols`` 32768 by
   default, rows so that the input is ``--gb`` GiB: 32768 x 32768 float32 or
   16384 x 32768 float64 for 4 GiB), filled chunk by chunk with standard
   normal values times 3 (no temporary of the input's size), and its labels:
   int64 class indices (one per row) for the sparse cross entropy, 0/1 values
   of the logits' dtype (the logits' shape) for the sigmoid cross entropy;
   for an ``out=`` variant also the output array, written once so that its
   pages are resident before the measurement;
2. warms the op up on a tiny input (4 x 10) *and* on a 256 x 4096 one of the
   same dtype and call form: the kernels run serially below 2**20 elements and
   in parallel above, each is a numba function of its own, loaded from the
   cache (or compiled) on its first call; so neither the cache load, the
   compile nor numba's thread pool start is counted below;
3. reads the resident set size ``VmRSS`` of ``/proc/self/status`` and resets
   the high-water mark by writing ``5`` to ``/proc/self/clear_refs``
   (``VmHWM`` restarts from the current RSS; if that write fails, the
   lifetime peak ``ru_maxrss`` is used instead, which the JSON records as
   ``"hwm_method": "ru_maxrss"``: an upper bound then);
4. calls the op once (timed) and reads ``VmHWM``:
   ``extra = VmHWM - VmRSS before - output bytes`` (the output of an
   ``out=`` call was allocated before: its extra is ``VmHWM - VmRSS before``).

Whether the compiled kernel ran is checked by counting the calls to
``logitkit._kernels._run`` during the measured call (as
``tests/test_kernels_interop.py`` does), besides ``_kernels.available()``.
Page granularity: ``VmHWM`` is in KiB; numba's own allocations during a
parallel launch and the small arrays of the Python glue are part of "extra".

**Start-up** (``--startup``; "first call of a kernel in a fresh process
<= 1 s with a warm cache; report the cold compile time"):

(a) ``python -c "import logitkit"`` wall time, best of ``--repeat`` (and
    ``python -c "pass"`` for reference);
(b) the first ``lk.softmax`` / ``lk.sparse_softmax_cross_entropy`` /
    ``lk.sigmoid`` call on a (64, 10) float32 array (int64 labels) in a fresh
    process with a warm numba cache: that call alone is timed
    (``perf_counter`` around it; it imports numba and loads the serial
    kernel's cache entry), best of ``--repeat`` processes; also the second
    call, and, in separate processes, ``import numba`` alone and the first
    call after it (how much of the first call is numba's import);
(c) cold: the same first call with ``NUMBA_CACHE_DIR`` set to a fresh
    temporary directory (``--cold-runs`` runs, 2 by default, each directory
    new), as ``tests/test_kernels.py::test_cold_cache_first_call`` does.

The warm cache of (b) is a private temporary ``NUMBA_CACHE_DIR`` filled by
one unmeasured run of each call first (not the ``__pycache__`` of the
checkout, which other edits of ``_kernels`` would invalidate)::

    python benchmarks/kernel_memory.py --json benchmarks/results/kernel_memory.json
    python benchmarks/kernel_memory.py --float64 --startup   # + float64, start-up
    python benchmarks/kernel_memory.py --gb 0.25 --ops softmax,sigmoid  # quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

MIB = 2**20
GIB = 2**30
#: The issue's targets.
TARGET_EXTRA_MIB = 64.0
TARGET_FIRST_CALL_S = 1.0

#: op key -> (description, function family, reduction/variant)
OPS: dict[str, str] = {
    "softmax": "lk.softmax(x)",
    "softmax_out": "lk.softmax(x, out=o)",
    "log_softmax": "lk.log_softmax(x)",
    "log_softmax_out": "lk.log_softmax(x, out=o)",
    "logsumexp": "lk.logsumexp(x, axis=-1)",
    "sparse_ce_none": "lk.sparse_softmax_cross_entropy(x, y)",
    "sparse_ce_mean": 'lk.sparse_softmax_cross_entropy(x, y, reduction="mean")',
    "sigmoid": "lk.sigmoid(x)",
    "sigmoid_out": "lk.sigmoid(x, out=o)",
    "softplus": "lk.softplus(x)",
    "softplus_out": "lk.softplus(x, out=o)",
    "log_sigmoid": "lk.log_sigmoid(x)",
    "log_sigmoid_out": "lk.log_sigmoid(x, out=o)",
    "sigmoid_ce_none": "lk.sigmoid_cross_entropy(x, y)",
    "sigmoid_ce_mean": 'lk.sigmoid_cross_entropy(x, y, reduction="mean")',
}
#: Not run by default: bool labels (an astype to float64 of the labels) and
#: layouts other than C-contiguous with the classes last (copies of the input).
EXTRA_OPS: dict[str, str] = {
    "sigmoid_ce_none_bool": "lk.sigmoid_cross_entropy(x, y_bool)",
    "sigmoid_ce_mean_bool": 'lk.sigmoid_cross_entropy(x, y_bool, reduction="mean")',
    "softmax_axis0": "lk.softmax(x, axis=0)",
    "softmax_T": "lk.softmax(x.T)",
    "sparse_ce_mean_axis0": (
        'lk.sparse_softmax_cross_entropy(x, y0, axis=0, reduction="mean")'
    ),
    "sigmoid_out_T": "lk.sigmoid(x.T, out=o)  # o C-contiguous",
    "sigmoid_ce_mean_T": 'lk.sigmoid_cross_entropy(x.T, y, reduction="mean")',
    "dense_ce_mean": 'lk.softmax_cross_entropy(x, y_onehot_int8, reduction="mean")',
}


# ----------------------------------------------------------- the subprocess


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    got: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                got[key] = int(line.split()[1]) * 1024
    return got


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _call(lk: Any, op: str, x: Any, y: Any, o: Any) -> Any:
    if op in ("softmax", "log_softmax", "sigmoid", "softplus", "log_sigmoid"):
        return getattr(lk, op)(x)
    if op.endswith("_out"):
        return getattr(lk, op[: -len("_out")])(x, out=o)
    if op == "softmax_axis0":
        return lk.softmax(x, axis=0)
    if op == "softmax_T":
        return lk.softmax(x.T)
    if op == "sparse_ce_mean_axis0":
        return lk.sparse_softmax_cross_entropy(x, y, axis=0, reduction="mean")
    if op == "sigmoid_out_T":
        return lk.sigmoid(x.T, out=o)
    if op == "sigmoid_ce_mean_T":  # labels C-contiguous in the shape of x.T
        return lk.sigmoid_cross_entropy(x.T, y, reduction="mean")
    if op == "logsumexp":
        return lk.logsumexp(x, axis=-1)
    reduction = "mean" if "_mean" in op else "none"
    if op.startswith("dense_ce"):
        return lk.softmax_cross_entropy(x, y, reduction=reduction)
    if op.startswith("sparse_ce"):
        return lk.sparse_softmax_cross_entropy(x, y, reduction=reduction)
    return lk.sigmoid_cross_entropy(x, y, reduction=reduction)


def _make(np: Any, op: str, dtype: Any, rows: int, cols: int, seed: int) -> tuple:
    """The input, its labels (or None) and the `out=` array (or None)."""
    rng = np.random.default_rng(seed)
    x = np.empty((rows, cols), dtype=dtype)
    step = max(1, (16 * MIB) // (cols * x.itemsize))
    for r in range(0, rows, step):
        rng.standard_normal(out=x[r : r + step], dtype=dtype)
        x[r : r + step] *= 3
    y = o = None
    if op == "sparse_ce_mean_axis0":
        y = rng.integers(0, rows, size=cols, dtype=np.int64)
    elif op.startswith("sparse_ce"):
        y = rng.integers(0, cols, size=rows, dtype=np.int64)
    elif op.startswith("dense_ce"):  # one-hot int8 labels of the logits' shape
        y = np.zeros((rows, cols), dtype=np.int8)
        y[np.arange(rows), rng.integers(0, cols, size=rows)] = 1
    elif op == "sigmoid_ce_mean_T":
        y = np.empty((cols, rows), dtype=dtype)
        y[...] = rng.random((cols, rows)) < 0.5
    elif op.startswith("sigmoid_ce"):
        ydt = np.bool_ if op.endswith("_bool") else dtype
        y = np.empty((rows, cols), dtype=ydt)
        for r in range(0, rows, step):
            y[r : r + step] = rng.random((min(step, rows - r), cols)) < 0.5
    if op == "sigmoid_out_T":
        o = np.empty((cols, rows), dtype=dtype)
        o.fill(0)
    elif op.endswith("_out"):
        o = np.empty((rows, cols), dtype=dtype)
        o.fill(0)  # resident before the measurement
    return x, y, o


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    import gc
    import resource

    import numpy as np

    import logitkit as lk
    from logitkit import _kernels

    op, dtype = spec["op"], np.dtype(spec["dtype"])
    x, y, o = _make(np, op, dtype, spec["rows"], spec["cols"], 0)
    # warm-up: serial (tiny) and parallel (>= 2**20 elements) kernels
    for shape in ((4, 10), (256, 4096)):
        wx, wy, wo = _make(np, op, dtype, *shape, 1)
        _call(lk, op, wx, wy, wo)
        del wx, wy, wo
    gc.collect()

    calls: list[str] = []
    run = _kernels._run

    def counting(kernels: Any, rows: int, n: int, *args: Any) -> None:
        # the serial/parallel choice of ``_kernels._run``
        par = rows > 1 and rows * n >= _kernels._PARALLEL_MIN
        name = kernels[0].__name__.rsplit("_", 1)[0]
        calls.append(f"{name}_{'parallel' if par else 'serial'}")
        run(kernels, rows, n, *args)

    _kernels._run = counting
    before = _status()
    method = "clear_refs" if _reset_hwm() else "ru_maxrss"
    reset = _status()
    t = time.perf_counter()
    r = _call(lk, op, x, y, o)
    wall = time.perf_counter() - t
    after = _status()
    if method == "clear_refs":
        hwm = after["VmHWM"]
    else:  # KiB on Linux: the lifetime peak, an upper bound
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _kernels._run = run
    new_out = 0 if o is not None else int(np.asarray(r).nbytes)
    extra = hwm - before["VmRSS"] - new_out
    import numba

    return {
        "op": op,
        "call": {**OPS, **EXTRA_OPS}[op],
        "dtype": dtype.name,
        "shape": [spec["rows"], spec["cols"]],
        "input_bytes": int(x.nbytes),
        "labels_bytes": 0 if y is None else int(y.nbytes),
        "labels_dtype": None if y is None else y.dtype.name,
        "out_preallocated_bytes": 0 if o is None else int(o.nbytes),
        "output_bytes": int(np.asarray(r).nbytes),
        "new_output_bytes": new_out,
        "rss_before": before["VmRSS"],
        "hwm_after_reset": reset["VmHWM"],
        "hwm": hwm,
        "rss_after": after["VmRSS"],
        "hwm_method": method,
        "extra_bytes": extra,
        "extra_mib": extra / MIB,
        "meets_target": extra / MIB <= TARGET_EXTRA_MIB,
        "wall_s": wall,
        "kernels_available": _kernels.available(),
        "kernel_calls": calls,
        "kernel_path": bool(calls),
        "numba_threads": numba.get_num_threads(),
    }


# ------------------------------------------------------------- the runner


def _run_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        msg = f"{spec} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LOGITKIT_DISABLE_KERNELS"}
    env.update(extra)
    return env


def memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    ops = args.ops.split(",") if args.ops else list(OPS)
    unknown = [op for op in ops if op not in OPS and op not in EXTRA_OPS]
    if unknown:
        msg = f"unknown ops {unknown}; choose from {[*OPS, *EXTRA_OPS]}"
        raise SystemExit(msg)
    dtypes = ["float32", "float64"] if args.float64 else ["float32"]
    env = _env(**({"LOGITKIT_DISABLE_KERNELS": "1"} if args.portable else {}))
    results = []
    for dtype in dtypes:
        item = 4 if dtype == "float32" else 8
        rows = max(1, round(args.gb * GIB / (item * args.cols)))
        for op in ops:
            spec = {"op": op, "dtype": dtype, "rows": rows, "cols": args.cols}
            r = _run_child(spec, env)
            results.append(r)
            print(
                f"{dtype:8s} {op:22s} in {r['input_bytes'] / MIB:7.0f} MiB  "
                f"out {r['output_bytes'] / MIB:7.0f} MiB  "
                f"extra {r['extra_mib']:8.1f} MiB  "
                f"{'ok' if r['meets_target'] else 'MISS'}  "
                f"kernel {'+'.join(r['kernel_calls']) or 'NO'}  {r['wall_s']:.2f} s",
                flush=True,
            )
    return results


_FIRST_CALL = textwrap.dedent(
    """
    import json, sys, time
    op, dtype, pre = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    t = time.perf_counter()
    import numpy as np
    import logitkit as lk
    from logitkit import _kernels
    t_import = time.perf_counter() - t
    t_numba = None
    if pre:
        t = time.perf_counter()
        import numba
        t_numba = time.perf_counter() - t
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10)).astype(dtype)
    y = rng.integers(0, 10, size=64)
    calls = []
    run = _kernels._run
    def counting(kernels, *args):
        calls.append(kernels[0].__name__)
        run(kernels, *args)
    _kernels._run = counting
    def call():
        if op == "softmax":
            return lk.softmax(x)
        if op == "sparse_ce":
            return lk.sparse_softmax_cross_entropy(x, y)
        return lk.sigmoid(x)
    t = time.perf_counter(); call(); first = time.perf_counter() - t
    t = time.perf_counter(); call(); second = time.perf_counter() - t
    print(json.dumps({"import_logitkit_s": t_import, "numba_import_s": t_numba,
                      "first_s": first, "second_s": second, "calls": calls,
                      "available": _kernels.available()}))
    """
)


def _first_call(op: str, dtype: str, cache: str, pre: bool = False) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, op, dtype, "1" if pre else "0"],
        capture_output=True,
        text=True,
        env=_env(NUMBA_CACHE_DIR=cache),
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _wall(code: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=_env())
        times.append(time.perf_counter() - t)
    return times


def startup(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    res["python_pass_s"] = _wall("pass", args.repeat)
    res["import_logitkit_s"] = _wall("import logitkit", args.repeat)
    print(
        f"python -c pass: {min(res['python_pass_s']):.3f} s, "
        f"import logitkit: {min(res['import_logitkit_s']):.3f} s (best of "
        f"{args.repeat})",
        flush=True,
    )
    dtypes = ["float32", "float64"] if args.float64 else ["float32"]
    warm_dir = tempfile.mkdtemp(prefix="lk-numba-warm-")
    res["first_call"] = []
    try:
        for dtype in dtypes:
            for op in ("softmax", "sparse_ce", "sigmoid"):
                _first_call(op, dtype, warm_dir)  # fills the warm cache
                warm = [_first_call(op, dtype, warm_dir) for _ in range(args.repeat)]
                pre = [
                    _first_call(op, dtype, warm_dir, pre=True)
                    for _ in range(args.repeat)
                ]
                cold = []
                for _ in range(args.cold_runs):
                    d = tempfile.mkdtemp(prefix="lk-numba-cold-")
                    try:
                        cold.append(_first_call(op, dtype, d))
                    finally:
                        shutil.rmtree(d, ignore_errors=True)
                entry = {
                    "op": op,
                    "dtype": dtype,
                    "shape": [64, 10],
                    "kernel_calls": warm[0]["calls"],
                    "warm_first_s": [w["first_s"] for w in warm],
                    "warm_second_s": [w["second_s"] for w in warm],
                    "numba_import_s": [p["numba_import_s"] for p in pre],
                    "first_after_numba_import_s": [p["first_s"] for p in pre],
                    "cold_first_s": [c["first_s"] for c in cold],
                    "cold_kernel_calls": cold[0]["calls"] if cold else None,
                }
                entry["warm_first_best_s"] = min(entry["warm_first_s"])
                entry["meets_target"] = entry["warm_first_best_s"] <= (
                    TARGET_FIRST_CALL_S
                )
                res["first_call"].append(entry)
                print(
                    f"{dtype:8s} {op:10s} first call warm "
                    f"{entry['warm_first_best_s']:.3f} s (best of {args.repeat}; "
                    f"import numba {min(entry['numba_import_s']):.3f} s + "
                    f"{min(entry['first_after_numba_import_s']):.3f} s), "
                    f"second {min(entry['warm_second_s']) * 1e6:.0f} us, cold "
                    + ", ".join(f"{c:.2f}" for c in entry["cold_first_s"])
                    + f" s  kernel {'+'.join(entry['kernel_calls']) or 'NO'}",
                    flush=True,
                )
    finally:
        shutil.rmtree(warm_dir, ignore_errors=True)
    return res


def _machine() -> dict[str, Any]:
    import numba
    import numpy as np

    model = platform.processor() or ""
    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512f": "avx512f" in flags,
        "avx512_flags": sorted(f for f in flags if f.startswith("avx512")),
        "memory_gib": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1
        ),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
    }


def _source() -> dict[str, Any]:
    """The commit measured and the files of ``src/logitkit`` edited since."""
    root = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=root, capture_output=True, text=True, check=True
            ).stdout.rstrip("\n")
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--", "src/logitkit").splitlines()
    return {"git_head": git("rev-parse", "HEAD"), "src_uncommitted": dirty}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--gb", type=float, default=4.0, help="input size in GiB (4)")
    p.add_argument("--cols", type=int, default=32768, help="classes per row (32768)")
    p.add_argument(
        "--ops",
        help="comma-separated ops (default: all of "
        + ", ".join(OPS)
        + "; also "
        + ", ".join(EXTRA_OPS)
        + "); an empty string skips the memory part",
    )
    p.add_argument("--float64", action="store_true", help="also float64 inputs")
    p.add_argument("--startup", action="store_true", help="also the start-up part")
    p.add_argument("--startup-only", action="store_true", help="only start-up")
    p.add_argument("--repeat", type=int, default=5, help="start-up repeats (5)")
    p.add_argument("--cold-runs", type=int, default=2, help="cold compiles (2)")
    p.add_argument(
        "--portable",
        action="store_true",
        help="LOGITKIT_DISABLE_KERNELS=1 (the portable path, for comparison; "
        "its temporaries are many times the input: use a small --gb)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    out: dict[str, Any] = {
        "machine": _machine(),
        "targets": {
            "extra_mib": TARGET_EXTRA_MIB,
            "first_call_warm_s": TARGET_FIRST_CALL_S,
        },
        "settings": {
            "gb": args.gb,
            "cols": args.cols,
            "portable": args.portable,
            "repeat": args.repeat,
            "cold_runs": args.cold_runs,
        },
    }
    out["source"] = _source()
    print(json.dumps(out["machine"]), json.dumps(out["source"]), flush=True)
    if not args.startup_only and args.ops != "":
        out["memory"] = memory(args)
    if args.startup or args.startup_only:
        out["startup"] = startup(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

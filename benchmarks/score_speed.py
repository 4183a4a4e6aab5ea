"""Throughput and peak memory of ``logitkit score`` beside reading the file alone.

(a) and (b) run ``--repeat`` times (3 by default), interleaved, and the
fastest run of each is reported (the machine is shared: the slow runs measure
the neighbours).

Writes a float32 ``.npy`` of logits (2,000,000 x 256 by default: 2.05 GB) and
int64 labels in a temporary directory, then measures, each in a fresh
subprocess and in this order:

(a) **read**: ``numpy.load(mmap_mode="r")`` and one ``sum`` per chunk of 4096
    rows, over the whole file (every byte read once);
(b) **memory**: ``logitkit score X --labels Y --json`` (the default engine);
(c) **dask**: ``logitkit score X --labels Y --json --scheduler ADDRESS`` on a
    ``LocalCluster`` of ``--workers`` processes (1 thread each), set up as
    ``--engine dask --workers N`` sets it up; the cluster's start is timed
    apart and added to the wall time.

Wall time is that of the whole subprocess (interpreter start and imports
included) as seen by a runner process; rows/s and GB/s divide the file's rows
and bytes by it, and "vs read" is the ratio of throughputs. Peak memory is the
maximum resident set size (``ru_maxrss``) of the measured process, read by the
runner with ``getrusage(RUSAGE_CHILDREN)`` after waiting for it; for (c), it is
the client's, and each worker's own ``getrusage(RUSAGE_SELF)`` peak is asked
from the worker (``Client.run``) before the cluster closes. The file is read
from the page cache (it was just written; the machine has room for it): the
read is a memory-bandwidth read, not a disk read.

The JSON outputs of (b) and (c) are compared byte for byte::

    python benchmarks/score_speed.py                  # the full size (~2 GB)
    python benchmarks/score_speed.py --rows 100000    # a quick run
    python benchmarks/score_speed.py --json out.json  # also the numbers as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

MIB = 2**20
#: The issue's targets: score at >= 50 % of the read's throughput, <= 512 MiB.
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 512

_RUNNER = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    argv = json.loads(sys.argv[1])
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(json.dumps({"wall": wall, "rc": done.returncode, "rss_kib": rss,
                      "out": done.stdout.decode(), "err": done.stderr.decode()}))
    """
)

_READ = textwrap.dedent(
    """
    import sys
    import numpy as np
    a = np.load(sys.argv[1], mmap_mode="r")
    total = 0.0
    for start in range(0, len(a), 4096):
        total += float(np.sum(a[start : start + 4096]))
    print(total)
    """
)

_DASK = textwrap.dedent(
    """
    import json, logging, resource, subprocess, sys, time
    import distributed
    workers, argv = int(sys.argv[1]), json.loads(sys.argv[2])
    t = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster, set_as_default=False)
    start = time.perf_counter() - t
    try:
        runner = [sys.executable, "-c", sys.argv[3], json.dumps(
            [*argv, "--scheduler", cluster.scheduler_address])]
        run = json.loads(subprocess.run(runner, check=True, capture_output=True,
                                        text=True).stdout)
        peaks = client.run(
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    finally:
        client.close()
        cluster.close()
    run["start"] = start
    run["workers_rss_kib"] = sorted(peaks.values())
    print(json.dumps(run))
    """
)


def _measure(argv: list[str]) -> dict[str, Any]:
    """Run `argv` under a fresh runner: wall time, status, peak RSS, output."""
    out = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(argv)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    if result["rc"] != 0:
        msg = f"{argv} failed ({result['rc']}): {result['err']}"
        raise RuntimeError(msg)
    return result


def _measure_dask(argv: list[str], workers: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _DASK, str(workers), json.dumps(argv), _RUNNER],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    if result["rc"] != 0:
        msg = f"{argv} failed ({result['rc']}): {result['err']}"
        raise RuntimeError(msg)
    return result


def make_files(directory: Path, rows: int, classes: int, seed: int = 0) -> Path:
    """Write ``x.npy`` (float32 logits, the label's class raised by 3) and ``y.npy``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    np.save(directory / "y.npy", y)
    x = np.lib.format.open_memmap(
        directory / "x.npy", mode="w+", dtype=np.float32, shape=(rows, classes)
    )
    step = max(1, (64 * MIB) // (4 * classes))
    for a in range(0, rows, step):
        b = min(a + step, rows)
        block = rng.standard_normal((b - a, classes), dtype=np.float32)
        block[np.arange(b - a), y[a:b]] += 3.0
        x[a:b] = block
    x.flush()
    del x
    return directory / "x.npy"


def _machine() -> dict[str, Any]:
    import dask

    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(
            ["lscpu"], check=False, capture_output=True, text=True
        ).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import numba

    import logitkit

    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split()
    except (OSError, IndexError):
        flags = []
    return {
        "cpu": model,
        "avx512f": "avx512f" in flags,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "dask": dask.__version__,
        "logitkit": logitkit.__version__,
    }


def _byte_compile() -> None:
    """Byte-compile logitkit as ``pip install`` does.

    An editable install under ``PYTHONDONTWRITEBYTECODE`` (as on our machines)
    would otherwise compile every module from source in each measured process
    (0.13 s of a score run here).
    """
    import compileall

    import logitkit

    compileall.compile_dir(str(Path(logitkit.__file__).parent), quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--classes", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="where to write the files (temp)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of read and memory, interleaved; the fastest of each is kept",
    )
    args = parser.parse_args(argv)
    _byte_compile()

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="score_speed.") as tmp:
        x = make_files(Path(tmp), args.rows, args.classes)
        y = Path(tmp) / "y.npy"
        size = x.stat().st_size
        score = [sys.executable, "-m", "logitkit", "score", str(x), "--labels", str(y)]
        tries: dict[str, list[dict[str, Any]]] = {"read": [], "memory": []}
        for _ in range(max(1, args.repeat)):
            tries["read"].append(_measure([sys.executable, "-c", _READ, str(x)]))
            tries["memory"].append(_measure([*score, "--json"]))
        runs = {name: min(t, key=lambda r: r["wall"]) for name, t in tries.items()}
        runs["dask"] = _measure_dask([*score, "--json"], args.workers)
    if runs["memory"]["out"] != runs["dask"]["out"]:
        sys.stderr.write("the engines' JSON differ\n")
        return 1
    runs["dask"]["wall"] += runs["dask"]["start"]
    read_rate = args.rows / runs["read"]["wall"]
    rows = []
    for name, r in runs.items():
        rate = args.rows / r["wall"]
        row = {
            "run": name,
            "wall_s": round(r["wall"], 2),
            "rows_per_s": round(rate),
            "gb_per_s": round(size / r["wall"] / 1e9, 3),
            "vs_read": round(rate / read_rate, 4),
            "peak_rss_mib": round(r["rss_kib"] / 1024),
        }
        if "workers_rss_kib" in r:
            row["workers_peak_rss_mib"] = [
                round(k / 1024) for k in r["workers_rss_kib"]
            ]
            row["cluster_start_s"] = round(r["start"], 2)
        rows.append(row)
    info = {
        "machine": _machine(),
        "rows": args.rows,
        "classes": args.classes,
        "file_bytes": size,
        "runs": rows,
    }
    print(f"{args.rows} x {args.classes} float32 logits: {size / 1e9:.2f} GB")
    print(
        "| run | wall (s) | rows/s | GB/s | vs read | peak RSS (MiB) |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for row in rows:
        rss = str(row["peak_rss_mib"])
        if "workers_peak_rss_mib" in row:
            rss += " (client); workers " + ", ".join(
                map(str, row["workers_peak_rss_mib"])
            )
        print(
            f"| {row['run']} | {row['wall_s']:.2f} | {row['rows_per_s']:,} | "
            f"{row['gb_per_s']:.3f} | {row['vs_read']:.1%} | {rss} |"
        )
    print(json.dumps(info["machine"]))
    if args.json is not None:
        args.json.write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time and peak memory of the fused linear cross entropy against PyTorch's naive one.

Forward + backward of the mean cross entropy of ``hidden @ weight.T`` against
integer labels, float32, at N tokens x D features x V classes (default the
issue's 2048 x 1024 x 128,256), each variant in a fresh subprocess:

- ``bare``: the three GEMMs the loss needs (logits, dhidden, dweight), by
  PyTorch's BLAS, nothing else (the floor of any implementation);
- ``torch-naive``: ``F.cross_entropy(F.linear(h, w), y)`` and ``backward()``;
- ``lk.torch``: ``lk.torch.linear_cross_entropy(h, w, y)`` and ``backward()``
  (whole-vocabulary token tiles, gradient formed in the forward pass);
- ``lk.torch-recompute``: the same kernels with ``reduction="none"`` and ``.mean()``:
  the forward pass only takes the statistics and the backward recomputes the
  tiles (the other strategy, four GEMMs);
- ``lk-numpy``: ``lk.grad.linear_cross_entropy`` on NumPy arrays (the portable
  code: two passes over tiles, float64 statistics).

Time: the best of ``--repeat`` runs after one warm-up run of the same size.
Memory: the child's max RSS (``ru_maxrss``) minus that of a child that only
allocates and touches the inputs and buffers the size of the gradients
(``baseline``): the extra memory beyond inputs, outputs and gradients.

Run ``python benchmarks/linear_ce_speed.py`` (add ``--markdown`` for the table
of docs/performance.md); ``--n/--d/--v`` change the shape.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from typing import Any

VARIANTS = [
    "baseline", "bare", "torch-naive", "lk.torch", "lk.torch-recompute", "lk-numpy"
]  # fmt: skip


def _child(variant: str, n: int, d: int, v: int, repeat: int) -> dict[str, Any]:
    import numpy as np
    import torch

    import logitkit as lk

    torch.manual_seed(0)
    h = torch.randn(n, d) * 0.05
    w = torch.randn(v, d) * 0.05
    y = torch.randint(0, v, (n,))
    times: list[float] = []

    def timed(step: Any) -> None:
        step()  # warm-up at full size: first-touch page faults, thread pools
        for _ in range(repeat):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)

    if variant == "baseline":
        gh, gw = torch.ones_like(h), torch.ones_like(w)  # the gradients' room
        assert float(gh[0, 0] + gw[0, 0]) == 2.0
    elif variant == "bare":

        def bare() -> None:
            x = h @ w.T
            _ = x @ w
            _ = x.T @ h

        timed(bare)
    elif variant in ("torch-naive", "lk.torch", "lk.torch-recompute"):
        hh, ww = h.requires_grad_(), w.requires_grad_()

        def loss(a: Any, b: Any, c: Any) -> Any:
            if variant == "torch-naive":
                return torch.nn.functional.cross_entropy(a @ b.T, c)
            if variant == "lk.torch-recompute":
                return lk.torch.linear_cross_entropy(a, b, c, reduction="none").mean()
            return lk.torch.linear_cross_entropy(a, b, c)

        loss(hh[:4], ww[:50], y[:4] % 50).backward()  # warm-up
        hh.grad = ww.grad = None

        def step() -> None:
            hh.grad = ww.grad = None
            loss(hh, ww, y).backward()

        timed(step)
    elif variant == "lk-numpy":
        hn, wn, yn = h.numpy(), w.numpy(), y.numpy()
        lk.grad.linear_cross_entropy(hn[:4], wn[:50], yn[:4] % 50)  # warm-up
        out: list[Any] = []

        def numpy_step() -> None:
            out[:] = lk.grad.linear_cross_entropy(hn, wn, yn)

        timed(numpy_step)
        assert np.isfinite(out[0])
    else:
        msg = f"unknown variant {variant!r}"
        raise ValueError(msg)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"variant": variant, "time": min(times) if times else None, "rss": rss}


def _versions() -> dict[str, str]:
    import numpy as np
    import torch

    import logitkit

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "logitkit": logitkit.__version__,
        "cpu": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--v", type=int, default=128_256)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.n, a.d, a.v, a.repeat)))
        return 0
    rows = {}
    for variant in a.variants.split(","):
        cmd = [sys.executable, __file__, "--child", variant, "--n", str(a.n),
               "--d", str(a.d), "--v", str(a.v), "--repeat", str(a.repeat)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
        print(f"# {variant}: {rows[variant]}", file=sys.stderr)
    base = rows.get("baseline", {}).get("rss")
    t_bare = rows.get("bare", {}).get("time")
    t_naive = rows.get("torch-naive", {}).get("time")
    mib = 2**20
    logits = a.n * a.v * 4
    print(f"Shape: N={a.n}, D={a.d}, V={a.v}, float32; the logits alone are "
          f"{logits / mib:,.0f} MiB.\n")  # fmt: skip
    for k, val in _versions().items():
        print(f"- {k}: {val}")
    print()
    print("| variant | time (s) | / bare GEMMs | / torch naive | max RSS (MiB) | "
          "extra beyond inputs+grads (MiB) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for variant, r in rows.items():
        t = r["time"]
        cells = [
            variant,
            "-" if t is None else f"{t:.2f}",
            "-" if t is None or not t_bare else f"{t / t_bare:.2f}",
            "-" if t is None or not t_naive else f"{t / t_naive:.2f}",
            f"{r['rss'] / mib:,.0f}",
            "-" if base is None or variant == "baseline"
            else f"{(r['rss'] - base) / mib:,.0f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The losses' accuracy script runs, and logitkit meets its targets there.

Runs ``benchmarks/accuracy_losses.py --quick`` (logitkit only, so no JAX
compilation: about 10 s) into a temporary directory, never over the docs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

for _name in ("mpmath", "scipy", "torch", "jax"):
    pytest.importorskip(_name, reason=f"the accuracy scripts need {_name}")


def _script() -> object:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import accuracy_losses
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return accuracy_losses


def test_losses_quick_meets_targets(tmp_path: Path) -> None:
    script = _script()
    assert script.main(["--quick", "--impls", "logitkit", "--out", str(tmp_path)]) == 0  # type: ignore[attr-defined]
    md = (tmp_path / "accuracy-losses.md").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "accuracy_losses.json").read_text(encoding="utf-8"))
    assert md.startswith("# Accuracy of logitkit's losses")
    measured = {r["loss"] for r in data["results"]}
    core = {
        "sparse_softmax_cross_entropy",
        "sparse_softmax_cross_entropy, mean",
        "sparse_softmax_cross_entropy, sum",
        "softmax_cross_entropy",
        "softmax_entropy",
        "kl_divergence",
    }
    assert core <= measured
    for r in data["results"]:
        assert set(r["impls"]) >= {"logitkit", "torch"}
        assert r["impls"]["torch"] is None  # --impls logitkit
    # every logitkit value within its target: report the exact inputs if not
    misses = [
        f"{m['loss']} {m['dtype']} [{m['case']}]: {m['max']} ulp at {m['worst']}"
        f"{' ' + m['error'] if m['error'] else ''}"
        for m in data["misses"]
    ]
    assert not misses, "\n".join(misses)
    for r in data["results"]:
        c = r["impls"]["logitkit"]
        if c is not None:
            assert c["max"] <= c["target"], r

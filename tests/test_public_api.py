"""The public surface: names, import cost, no array library imported."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import logitkit as lk

PUBLIC = {
    "sigmoid",
    "log_sigmoid",
    "softplus",
    "logit",
    "logsumexp",
    "softmax",
    "log_softmax",
    "one_hot",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
    "softmax_entropy",
    "kl_divergence",
    "sigmoid_cross_entropy",
    "sigmoid_focal_loss",
    "categorical_cross_entropy",
    "binary_cross_entropy",
    "linear_cross_entropy",
    "LogSumExp",
    "__version__",
    "compat",
    "grad",
    "vjp",
    "show_config",
    "set_num_threads",
    "get_num_threads",
}


def test_all_is_sorted_and_complete() -> None:
    assert set(lk.__all__) == PUBLIC
    assert list(lk.__all__) == sorted(lk.__all__)
    for name in lk.__all__:
        assert getattr(lk, name) is not None


def test_import_loads_no_array_library_but_numpy_on_use() -> None:
    code = (
        "import sys, logitkit; print([m for m in ('torch', 'jax', 'dask', 'cupy', "
        "'scipy', 'array_api_strict') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_readme_examples() -> None:
    import doctest
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    result = doctest.testfile(
        str(readme),
        module_relative=False,
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
    )
    assert result.attempted > 0
    assert result.failed == 0


def test_lk_torch_is_loaded_on_first_use() -> None:
    code = (
        "import sys, logitkit as lk; before = 'torch' in sys.modules; "
        "f = lk.torch.linear_cross_entropy; print(before, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.split() == ["False", "True"]
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lk.nope  # noqa: B018


def test_show_config_and_threads(monkeypatch: Any, capsys: Any) -> None:
    info = lk.show_config(mode="dicts")
    assert info is not None
    assert info["packages"]["numpy"] is not None
    kernels = info["kernels"]
    assert kernels["active"] is lk._kernels.available()
    assert lk.show_config() is None
    out = capsys.readouterr().out
    assert "NumPy float32/float64: " in out
    assert ("compiled kernels" in out) is kernels["active"]
    with pytest.raises(ValueError, match="`mode`"):
        lk.show_config(mode="json")  # type: ignore[arg-type]
    monkeypatch.setenv("LOGITKIT_DISABLE_KERNELS", "1")
    off = lk.show_config(mode="dicts")
    assert off is not None
    assert off["kernels"] == {
        "active": False,
        "reason": "LOGITKIT_DISABLE_KERNELS is set",
    }
    monkeypatch.delenv("LOGITKIT_DISABLE_KERNELS")
    if not kernels["active"]:
        assert lk.get_num_threads() == 1
        with pytest.raises(ValueError, match="not available"):
            lk.set_num_threads(1)
        return
    before = lk.get_num_threads()
    try:
        lk.set_num_threads(1)
        assert lk.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((1100, 1000))  # parallel size
        assert np.array_equal(lk.softmax(x), lk.softmax(x.copy()))
        import numba

        assert numba.get_num_threads() == 1  # set by the parallel kernel's call
        top = kernels["max_threads"]
        for bad in (0, top + 1, 1.0, True, "2"):
            with pytest.raises(ValueError, match="`n` must be an int from 1 to"):
                lk.set_num_threads(bad)  # type: ignore[arg-type]
    finally:
        lk.set_num_threads(before)
    assert lk.get_num_threads() == before

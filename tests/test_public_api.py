"""The public surface: names, import cost, no array library imported."""

from __future__ import annotations

import subprocess
import sys

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

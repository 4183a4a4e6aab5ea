"""Backend fixture: every array test runs on each installed array library.

``LOGITKIT_REQUIRE_BACKENDS=numpy,torch,...`` (or ``all``) turns a backend that
fails to import into an error instead of a skip. CI (``CI=true``) requires all
of them, so a broken install cannot hide behind skipped tests.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest
from array_api_compat import array_namespace

BACKENDS = ["numpy", "array_api_strict", "torch", "jax.numpy", "dask.array"]
_env = os.environ.get("LOGITKIT_REQUIRE_BACKENDS")
if _env is None and os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    _env = "all"
REQUIRED = (
    set(BACKENDS) if _env == "all" else set(filter(None, (_env or "").split(",")))
)


def import_backend(name: str) -> ModuleType:
    """Import a backend, skipping the test (or failing, if required) without it."""
    if name in REQUIRED:
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is not installed")


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> Any:
    """The (array-api-compat wrapped) namespace under test, in float64 mode."""
    name = request.param
    module = import_backend(name)
    if name == "jax.numpy":
        import jax

        jax.config.update("jax_enable_x64", True)
    return array_namespace(module.empty(0))


@pytest.fixture
def np_xp() -> Any:
    """NumPy's namespace, for tests that are about values rather than backends."""
    import numpy as np

    return array_namespace(np.empty(0))


# ------------------------------------------------- narrowed backend cases
#
# JAX compiles every new (operation, shape) pair on first use (eager) or every
# new function and shape (jit): a double-double loss costs 5-30 s of XLA
# compilation per case on a 2-core machine, and a Dask case rebuilds a graph
# of hundreds of tasks per call. Where a test crosses the backends with other
# parameters (dtypes, options, shapes) whose code is the same array-API code
# on every backend, ``@pytest.mark.backend_cases("jax.numpy", dtype=["float64"])``
# runs the named backends on the listed parameter values only; every other
# combination still runs on NumPy, array-api-strict and PyTorch (and on the
# backends not named). The narrowed-away cases are reported as deselected;
# one named by its full node id on the command line still runs. Each use
# says, in a comment, why the kept case is enough.


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backend_cases(*backends, **values): run the named backends (of the `xp` "
        "fixture) only on the listed values of the other parameters",
    )


def _parametrized_values(item: pytest.Item, name: str) -> list[Any] | None:
    """The values `name` is parametrized over on `item`'s function, or None."""
    for mark in item.iter_markers("parametrize"):
        names = mark.args[0]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name not in names:
            continue
        i = list(names).index(name)
        out = []
        for v in mark.args[1]:
            v = v.values if hasattr(v, "values") and hasattr(v, "marks") else v
            out.append(v if len(names) == 1 else v[i])
        return out
    return None


def _narrowed_away(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    for mark in item.iter_markers("backend_cases"):
        unknown = set(mark.args) - set(BACKENDS)
        if not mark.args or unknown:
            msg = f"{item.nodeid}: backend_cases names no known backend {unknown}"
            raise pytest.UsageError(msg)
        for key, allowed in mark.kwargs.items():
            values = _parametrized_values(item, key)
            if values is None or not allowed or any(a not in values for a in allowed):
                msg = (
                    f"{item.nodeid}: backend_cases({key}={allowed!r}) is not a "
                    f"subset of the parametrized values {values!r}"
                )
                raise pytest.UsageError(msg)
        if callspec is None or callspec.params.get("xp") not in mark.args:
            continue
        if any(callspec.params[k] not in v for k, v in mark.kwargs.items()):
            return True
    return False


def _named(item: pytest.Item, args: list[str]) -> bool:
    """Whether `item` is named by its node id among the command-line `args`."""
    path, _, name = item.nodeid.partition("::")
    for a in args:
        a_path, _, a_name = a.partition("::")
        a_path = a_path.replace("\\", "/")
        if a_name == name and (a_path.endswith(path) or path.endswith(a_path)):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    args = [str(a) for a in config.invocation_params.args]
    keep, drop = [], []
    for item in items:
        narrowed = _narrowed_away(item) and not _named(item, args)
        (drop if narrowed else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

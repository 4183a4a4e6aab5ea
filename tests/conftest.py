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

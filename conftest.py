"""Repository-wide pytest hooks: the ``gpu`` marker.

A test marked ``@pytest.mark.gpu`` runs only when a GPU is visible to JAX or
torch (whichever is installed); otherwise it is skipped, or, when the
environment variable ``REQUIRE_GPU=1`` is set (the GPU workflow), it fails so
a misconfigured runner cannot pass silently. The check imports jax/torch only
when a gpu-marked test is about to run, so packages that must not import one of
them are unaffected.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def _gpu_visible() -> bool:
    if importlib.util.find_spec("jax") is not None:
        import jax

        try:
            if jax.devices("gpu"):
                return True
        except RuntimeError:
            pass
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True
    return False


_GPU: dict[str, bool] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None:
        return
    if "visible" not in _GPU:
        _GPU["visible"] = _gpu_visible()
    if _GPU["visible"]:
        return
    if os.environ.get("REQUIRE_GPU", "") not in ("", "0"):
        pytest.fail("REQUIRE_GPU=1 but no GPU is visible to jax or torch", pytrace=False)
    pytest.skip("no GPU visible to jax or torch")

"""The federation itself: every package imports together, and the torch side stays JAX-free."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["interface", "parax", "lux", "ensemble", "sbi", "polymix"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_imports_in_one_environment(name):
    module = importlib.import_module(f"orrery.{name}")
    assert isinstance(module.__version__, str)


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("orrery.interface", ("jax", "torch")),
        ("orrery.polymix", ("jax", "equinox", "numpyro", "flowjax")),
        ("orrery.parax", ("torch",)),
        ("orrery.lux", ("torch",)),
        ("orrery.ensemble", ("torch",)),
        ("orrery.sbi", ("torch",)),
    ],
)
def test_import_does_not_pull_in_the_other_framework(module, forbidden):
    code = f"import {module}, sys; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Shared helpers: the pipelines live in docs/examples/ and are imported from there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``docs/examples/<name>.py`` as a module (cached in ``sys.modules``)."""
    key = f"orrery_examples.{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses resolve their module while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def example():
    """The loader of ``docs/examples`` scripts, as a fixture."""
    return load_example

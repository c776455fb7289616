"""Repository-wide pytest hooks: the ``gpu`` marker and executed Markdown examples.

Markdown files named on the pytest command line (a package's README.md, the
top-level README.md, docs pages) are collected by Sybil: every fenced
```python block runs, and every block whose code starts with ``>>>`` (fenced as
```pycon or ```python) runs as a doctest whose shown output is checked with
ELLIPSIS, NUMBER and NORMALIZE_WHITESPACE (the same flags as the docstring
doctests, configured in pyproject.toml). Blocks of one file share a namespace,
top to bottom, and run in a throw-away working directory. A block that is not
meant to run is preceded by ``<!-- skip: next -->`` (Sybil's skip directive).

A test marked ``@pytest.mark.gpu`` runs only when a GPU is visible to JAX or
torch (whichever is installed); otherwise it is skipped, or, when the
environment variable ``REQUIRE_GPU=1`` is set (the GPU workflow), it fails so
a misconfigured runner cannot pass silently. The check imports jax/torch only
when a gpu-marked test is about to run, so packages that must not import one of
them are unaffected.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import shutil
import tempfile
from typing import Any

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


_DOCTEST_FLAGS = (
    doctest.ELLIPSIS
    | doctest.NORMALIZE_WHITESPACE
    | doctest.register_optionflag("NUMBER")  # Sybil and pytest both implement NUMBER
)


def _markdown_collector() -> Any:
    try:
        from sybil import Sybil
        from sybil.evaluators.python import PythonEvaluator
        from sybil.parsers.markdown import (
            ClearNamespaceParser,
            CodeBlockParser,
            PythonCodeBlockParser,
            SkipParser,
        )
    except ImportError:  # a bare test environment without the dev group: no Markdown examples
        return None

    class PyconBlockParser(PythonCodeBlockParser):
        """```pycon blocks: interactive sessions, run as doctests."""

        def __init__(self, doctest_optionflags: int) -> None:
            super().__init__(doctest_optionflags=doctest_optionflags)
            self.codeblock_parser = CodeBlockParser("pycon", PythonEvaluator())

    def setup(namespace: dict[str, Any]) -> None:
        namespace["__orrery_cwd__"] = os.getcwd()
        namespace["__orrery_tmp__"] = tempfile.mkdtemp(prefix="orrery-md-")
        os.chdir(namespace["__orrery_tmp__"])

    def teardown(namespace: dict[str, Any]) -> None:
        os.chdir(namespace["__orrery_cwd__"])
        shutil.rmtree(namespace["__orrery_tmp__"], ignore_errors=True)

    return Sybil(
        parsers=[
            PythonCodeBlockParser(doctest_optionflags=_DOCTEST_FLAGS),
            PyconBlockParser(_DOCTEST_FLAGS),
            SkipParser(),
            ClearNamespaceParser(),
        ],
        patterns=["*.md"],
        setup=setup,
        teardown=teardown,
    ).pytest()


_collect_markdown = _markdown_collector()


def pytest_collect_file(file_path, parent):
    """Collect Markdown files given on the command line (or under a given folder)."""
    if _collect_markdown is None or file_path.suffix != ".md":
        return None
    return _collect_markdown(file_path, parent)

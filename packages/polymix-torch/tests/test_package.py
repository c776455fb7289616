"""The distribution installs as a subpackage of the implicit `orrery` namespace."""

import importlib.metadata

import orrery
import orrery.polymix as pkg


def test_version_matches_distribution_metadata():
    assert pkg.__version__ == importlib.metadata.version("polymix-torch")


def test_orrery_is_an_implicit_namespace_package():
    assert getattr(orrery, "__file__", None) is None
    assert not hasattr(orrery, "__all__")


def test_public_api_is_declared():
    assert "__version__" in pkg.__all__
    for name in pkg.__all__:
        assert hasattr(pkg, name), name


def test_importing_polymix_does_not_import_jax():
    import subprocess
    import sys

    code = "import orrery.polymix, sys; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

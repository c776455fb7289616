import jax
import pytest


@pytest.fixture
def x64():
    """Run one test in double precision and restore the default afterwards."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)

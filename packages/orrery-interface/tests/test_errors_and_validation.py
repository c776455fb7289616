"""Error classes, validation messages, seeds and protocols."""

import numpy as np
import pytest

from orrery import interface as oi
from orrery.interface import (
    ArtifactError,
    ConfigError,
    ConfigTypeError,
    MissingDependencyError,
    NotFittedError,
    OrreryError,
    ShapeError,
    ValueDomainError,
)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ShapeError, ValueError),
        (ValueDomainError, ValueError),
        (NotFittedError, RuntimeError),
        (ArtifactError, ValueError),
        (ConfigError, ValueError),
        (ConfigTypeError, TypeError),
        (ConfigTypeError, ConfigError),
        (MissingDependencyError, ImportError),
    ],
)
def test_errors_subclass_orrery_and_builtin(cls, builtin):
    assert issubclass(cls, OrreryError) and issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls("x")


def test_check_shape_messages_name_argument_expected_and_actual():
    x = np.zeros((5, 2))
    assert oi.check_shape(x, (None, 2), "x") is x
    with pytest.raises(ShapeError, match=r"^x: expected shape \(\*, 3\), got \(5, 2\)$"):
        oi.check_shape(x, (None, 3), "x")
    with pytest.raises(
        ShapeError, match=r"^theta: expected 1 dimension\(s\) with shape \(4,\), got 2"
    ):
        oi.check_shape(x, (4,), "theta")
    with pytest.raises(ShapeError, match=r"^cov: expected shape \(n, n\) with equal sizes for 'n'"):
        oi.check_shape(np.zeros((3, 4)), ("n", "n"), "cov")
    assert oi.check_shape([[1, 2]], (1, 2), "lst").shape == (1, 2)


def test_check_ndim():
    with pytest.raises(ShapeError, match=r"^y: expected 1 or 2 dimension\(s\), got 3"):
        oi.check_ndim(np.zeros((1, 1, 1)), (1, 2), "y")


def test_check_finite_and_nonnegative():
    oi.check_finite(np.arange(3), "ints")
    with pytest.raises(
        ValueDomainError, match=r"^flux: expected finite values, got 2 non-finite.*index \(1,\)"
    ):
        oi.check_finite([1.0, np.nan, np.inf], "flux")
    with pytest.raises(
        ValueDomainError, match=r"^ivar: expected non-negative values.*index \(0, 1\)"
    ):
        oi.check_nonnegative([[1.0, -2.0]], "ivar")


def test_check_positive_int():
    assert oi.check_positive_int(np.int64(3), "n") == 3
    with pytest.raises(ConfigError, match=r"^num_samples: expected an integer >= 1, got 0$"):
        oi.check_positive_int(0, "num_samples")
    with pytest.raises(ConfigError, match="batch_size: expected an integer >= 1, got 2.5"):
        oi.check_positive_int(2.5, "batch_size")
    with pytest.raises(ConfigError, match="flag"):
        oi.check_positive_int(True, "flag")


def test_check_choice_suggests_close_matches():
    assert oi.check_choice("spline", ["spline", "affine"], "flow_family") == "spline"
    with pytest.raises(
        ConfigError, match=r"^flow_family: expected one of .*got 'splin'; did you mean 'spline'\?"
    ):
        oi.check_choice("splin", ["spline", "affine"], "flow_family")
    assert oi.close_matches("teff", ["teff_k", "logg"]) == ["teff_k"]


def test_require_names_the_extra():
    assert oi.require("json", extra="x", feature="y").dumps
    with pytest.raises(
        MissingDependencyError, match=r"plots needs .*'no_such_mod'.*pip install 'pkg\[plot\]'"
    ):
        oi.require("no_such_mod.sub", extra="pkg[plot]", feature="plots")


def test_seeds():
    assert oi.as_int_seed(7) == 7
    g = np.random.default_rng(0)
    assert oi.as_numpy_rng(g) is g
    a, b = oi.as_int_seed(np.random.default_rng(1)), oi.as_int_seed(np.random.default_rng(1))
    assert a == b and 0 <= a < 2**31
    assert oi.as_numpy_rng(5).integers(1000) == np.random.default_rng(5).integers(1000)
    assert isinstance(oi.as_int_seed(None), int)
    with pytest.raises(ConfigError, match="seed: expected a non-negative integer, got -1"):
        oi.as_int_seed(-1)
    with pytest.raises(ConfigError, match="seed: expected an int.*got str"):
        oi.as_numpy_rng("0")


def test_protocols_are_structural():
    class Post:
        def sample(self, condition, n, seed=None):
            return None

        def log_prob(self, condition, theta):
            return None

        def save(self, path):
            return None

        @classmethod
        def load(cls, path):
            return cls()

    p = Post()
    assert isinstance(p, oi.ConditionalDensity)
    assert isinstance(p, oi.Sampler) and isinstance(p, oi.Density)
    assert isinstance(p, oi.Persistable)
    assert not isinstance(p, oi.Fittable)
    assert isinstance(lambda theta: theta, oi.Simulator)
    assert isinstance(oi.Draws({"x": np.zeros((1, 2))}), oi.Persistable)


def test_interface_imports_no_heavy_framework():
    import subprocess
    import sys

    code = "import orrery.interface, sys; print([m for m in ('jax', 'torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""`import orrery.lux` for a Cannon fit loads only what The Cannon needs.

numpyro, optax and tqdm (about 1.4 s of a cold process) serve only the Lux
side (`Lux`, `LVM`, the optimisers, `transforms`), which the package loads on
first use; the names stay in ``__all__`` and in ``dir()``.
"""

import subprocess
import sys

import pytest

import orrery.lux as pkg

LUX_ONLY = ("numpyro", "optax", "tqdm")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_the_cannon_does_not_import_the_lux_side():
    code = "import orrery.lux\norrery.lux.Cannon(2, 5)\norrery.lux.datasets.synthetic_survey"
    loaded = _loaded_after(code)
    assert "jax" in loaded  # the probe sees what was imported
    assert not loaded & set(LUX_ONLY), sorted(loaded & set(LUX_ONLY))


#: heavy packages a Cannon fit never needs: SciPy (0.3-0.4 CPU s, pulled in by lowering
#: LAPACK's solves), Matplotlib (`orrery.lux.plot` imports it on first use), and the Lux side
CANNON_NEVER = ("scipy", "matplotlib", *LUX_ONLY)


def test_a_first_cannon_fit_imports_nothing_heavy():
    code = (
        "import numpy as np\nimport orrery.lux\n"
        "rng = np.random.default_rng(0)\n"
        "labels = rng.normal(size=(40, 2)).astype(np.float32)\n"
        "flux = (1 + 0.1 * labels[:, :1] + 0.01 * rng.normal(size=(40, 6))).astype(np.float32)\n"
        "orrery.lux.Cannon(2, 6).fit(labels, flux, np.full_like(flux, 1e4))"
    )
    loaded = _loaded_after(code)
    assert "jaxlib" in loaded  # the fit ran (compiled) in the probe
    assert not loaded & set(CANNON_NEVER), sorted(loaded & set(CANNON_NEVER))


def test_lazy_names_resolve_to_their_modules():
    from orrery.lux import lux, optimize, transforms

    assert pkg.Lux is lux.Lux
    assert pkg.optimize_iterative is optimize.optimize_iterative
    assert pkg.transforms is transforms
    assert pkg.PolyFeatureTransform is transforms.PolyFeatureTransform
    assert set(LUX_ONLY) <= set(sys.modules)  # the Lux side does need them


def test_dir_lists_every_public_name():
    assert set(pkg.__all__) <= set(dir(pkg))


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = pkg.NoSuchThing

"""The two parax generations in one distribution: the three shared names (issue 38).

`orrery.parax` keeps parax 0.4's meanings; `orrery.parax.v011` has parax 0.11's. Where a
call to a 0.4 name can only be 0.11 code it raises naming the import; never a number
from the other generation.
"""

import jax
import jax.numpy as jnp
import pytest

import orrery.parax as px04
import orrery.parax.v011 as px11
from orrery.interface import ConfigError


def test_fixed_under_each_generation():
    # parax 0.11: Fixed stops the gradient.
    assert jax.grad(lambda x: px11.Fixed(x).value ** 2)(3.0) == 0.0
    assert jax.grad(lambda x: px11.Fixed(x) * x)(3.0) == 3.0
    # parax 0.4: Fixed is a non-trainable Parameter; built outside a gradient it works.
    p = px04.Fixed(3.0)
    assert isinstance(p, px04.Parameter) and p.fixed and float(p.value) == 3.0
    assert float(jax.jit(lambda x: px04.Fixed(x).value)(2.0)) == 2.0
    # Built inside jax.grad the generations disagree (6.0 vs 0.0): refused, not guessed.
    with pytest.raises(ConfigError, match=r"orrery\.parax\.v011"):
        jax.grad(lambda x: px04.Fixed(x).value ** 2)(3.0)
    with pytest.raises(ConfigError, match=r"orrery\.parax\.v011"):
        jax.jacfwd(lambda x: px04.Fixed(x) * x)(3.0)
    with pytest.raises(ConfigError, match=r"orrery\.parax\.v011"):
        px04.Fixed(px11.Real(1.0))


def test_is_param_under_each_generation():
    assert px11.is_param(jnp.array(1.0)) and px11.is_param(px11.Real(1.0))
    assert not px04.is_param(jnp.array(1.0))  # parax 0.4: Parameter objects only
    assert px04.is_param(px04.Parameter(1.0))
    with pytest.raises(ConfigError, match=r"orrery\.parax\.v011"):
        px04.is_param(px11.Constrained(value=1.0))


def test_as_param_under_each_generation():
    one = px11.as_param([1.0, 2.0])
    assert isinstance(one, jax.Array) and one.shape == (2,)
    many = px04.as_param([1.0, 2.0])
    assert isinstance(many, list) and all(isinstance(p, px04.Parameter) for p in many)
    with pytest.raises(ConfigError, match=r"orrery\.parax\.v011"):
        px04.as_param(px11.Fixed(1.0))


def test_011_only_names_on_the_04_module_point_to_v011():
    for name in ("Constrained", "Random", "unwrap", "Tie", "tree_bounds", "constraints"):
        with pytest.raises(AttributeError, match=r"import orrery\.parax\.v011 as parax"):
            getattr(px04, name)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        px04.nonsense
    assert px04.v011 is px11


def test_every_011_only_name_is_listed():
    from orrery.parax._generations import V011_ONLY_NAMES

    only_011 = set(px11.__all__) - set(px04.__all__)
    assert only_011 <= V011_ONLY_NAMES
    assert not V011_ONLY_NAMES & set(px04.__all__)
    assert {"Fixed", "is_param", "as_param"} <= set(px04.__all__) & set(px11.__all__)

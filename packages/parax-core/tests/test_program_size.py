"""The size of parax's compiled programs: pinned, and independent of the problem's size.

Compile time follows program size, so these tests guard a first call's cost
without timing anything. ``with_params`` on a large module once compiled a
program with a slice per parameter (2,002 StableHLO ops and 13 s of XLA CPU for
1,000 parameters, 72 s for 4,000); its program now follows the number of
distinct transforms. Only tracing and lowering run here (no XLA compilation).

When a deliberate change moves a pin, update it (with the new count in the
commit message); the margin absorbs JAX-version noise, not a new design.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orrery.parax as px
from orrery.parax import _batch, sampling
from orrery.parax.bijectors import Exp, Softplus

#: relative margin around each pin
MARGIN = 0.25
#: StableHLO ops (jax 0.10)
PINS = {"with_params": 9, "draws_from": 259, "grad_step": 38}


def _ops(lowered) -> int:
    return sum(1 for line in lowered.as_text().splitlines() if " = " in line)


def _within(count: int, pin: int) -> bool:
    return abs(count - pin) <= MARGIN * pin


class Many(px.Module):
    params: list


def _with_params_ops(n: int) -> tuple[int, int]:
    """Ops of the inverse-transform program that ``with_params`` runs on ``n`` parameters."""
    transforms = [None, Exp(), Softplus()]
    params = [px.Parameter(1.0 + i, name=f"p{i}", transform=transforms[i % 3]) for i in range(n)]
    groups: dict = {}
    for i, p in enumerate(params):
        if p.transform is not None:
            groups.setdefault(_batch._group_key(p.transform, np.float32, i), []).append(i)
    static = tuple(params[m[0]].transform for m in groups.values())
    inputs = [np.ones(len(m), np.float32) for m in groups.values()]
    return len(groups), _ops(_batch._inverse.lower(static, inputs))


def test_with_params_program_does_not_grow_with_the_parameters():
    small, large = _with_params_ops(90), _with_params_ops(3000)
    assert small == large
    assert large[0] == 2  # one group per distinct transform
    assert _within(large[1], PINS["with_params"]), large


def test_with_params_on_many_parameters_keeps_values():
    # the host path: values cut per parameter, one inverse per transform
    n = 300
    module = Many([px.Parameter(1.0 + i, name=f"p{i}", transform=Exp()) for i in range(n)])
    values = np.linspace(0.5, 3.0, n, dtype=np.float32)
    out = module.with_params(values)
    np.testing.assert_allclose(out.flat_param_values(), values, rtol=1e-6)
    np.testing.assert_array_equal(out.params[7].latent_value, jnp.log(values[7]))


class Line(px.Module):
    a: px.Parameter
    b: px.Parameter


def _draws_ops(num_samples: int) -> int:
    module = Line(px.Normal(1.0, 0.5), px.Uniform(0.0, 2.0))
    keys = jax.random.split(jax.random.key(0), num_samples)
    return _ops(sampling._func_samples.lower(module, sampling._flat_values, None, keys))


def test_draws_program_is_pinned_and_does_not_grow_with_samples():
    small, large = _draws_ops(3), _draws_ops(10_000)
    assert small == large
    assert _within(large, PINS["draws_from"]), large


class ParaxMLP(px.Module):
    w1: px.Parameter
    w2: px.Parameter

    def __call__(self, x):
        return jnp.tanh(x @ jnp.asarray(self.w1)) @ jnp.asarray(self.w2)


class PlainMLP(eqx.Module):
    w1: jax.Array
    w2: jax.Array

    def __call__(self, x):
        return jnp.tanh(x @ self.w1) @ self.w2


def _step_ops(model, batch: int) -> int:
    dyn, static = eqx.partition(model, eqx.is_array)
    x = jnp.ones((batch, 4))

    def step(dyn):
        def loss(d):
            return jnp.mean(eqx.combine(d, static)(x) ** 2)

        value, grads = jax.value_and_grad(loss)(dyn)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, dyn, grads), value

    return _ops(jax.jit(step).lower(dyn))


@pytest.mark.parametrize("batch", [8, 4096])
def test_parameters_add_nothing_to_a_gradient_step(batch):
    w1, w2 = jnp.ones((4, 16)), jnp.ones((16, 1))
    parax = _step_ops(ParaxMLP(px.Parameter(w1), px.Parameter(w2)), batch)
    plain = _step_ops(PlainMLP(w1, w2), batch)
    assert parax == plain
    assert _within(parax, PINS["grad_step"]), parax

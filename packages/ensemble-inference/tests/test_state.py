import copy
import pickle

import jax
import jax.numpy as jnp

from orrery.ensemble import EnsembleResult, EnsembleState


def test_result_unpacks_as_two_fields_and_keeps_extras():
    r = EnsembleResult({"w": jnp.ones((3, 2))}, jnp.zeros((3, 5)), jnp.array([0, 1, 0]), None, 5)
    params, losses = r
    assert losses.shape == (3, 5) and params["w"].shape == (3, 2)
    assert r.skipped_steps.tolist() == [0, 1, 0] and r.num_steps == 5
    assert r[0] is r.params and r[1] is r.losses


def test_result_defaults_match_upstream_two_field_constructor():
    r = EnsembleResult(jnp.ones(2), jnp.zeros((2, 3)))
    assert r.skipped_steps is None and r.state is None and r.num_steps is None


def test_result_is_a_pytree_with_num_steps_as_metadata():
    state = EnsembleState({"w": jnp.ones((2, 1))}, ())
    r = EnsembleResult(state.params, jnp.ones((2, 4)), jnp.zeros(2, jnp.int32), state, 4)
    doubled = jax.tree.map(lambda a: a * 2, r)
    assert isinstance(doubled, EnsembleResult)
    assert doubled.num_steps == 4
    assert float(doubled.losses[0, 0]) == 2.0
    out = jax.jit(lambda res: res)(r)
    assert out.num_steps == 4 and isinstance(out.state, EnsembleState)


def test_result_copy_pickle_replace_keep_every_field():
    r = EnsembleResult(jnp.ones(2), jnp.zeros((2, 3)), jnp.array([1, 2]), None, 3)
    for other in (copy.deepcopy(r), pickle.loads(pickle.dumps(r))):
        assert other.num_steps == 3 and other.skipped_steps.tolist() == [1, 2]
    assert r._replace(num_steps=9).skipped_steps.tolist() == [1, 2]
    assert set(r._asdict()) == {"params", "losses", "skipped_steps", "state", "num_steps"}

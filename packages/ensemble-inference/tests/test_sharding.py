"""The member axis sharded over 4 (forced) host devices equals the single-device result."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from orrery.ensemble import EnsembleMAP, EnsembleVI
from orrery.interface import ConfigError

_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax, numpyro, numpyro.distributions as dist
    from orrery.ensemble import EnsembleMAP, EnsembleVI
    assert jax.device_count() == 4, jax.devices()

    t = jnp.linspace(-1, 1, 32)
    x = jnp.stack([jnp.ones_like(t), t], 1)
    y = x @ jnp.array([0.7, -1.3]) + 0.3 * jnp.sin(7 * t)

    def log_joint(p, xb, yb):
        return -0.5 * jnp.sum((yb - xb @ p["w"]) ** 2), -0.5 * jnp.sum(p["w"] ** 2)

    def init(k):
        return {"w": jax.random.normal(k, (2,))}

    opt = optax.adam(0.05)
    key = jax.random.PRNGKey(0)

    def check(sharded, single):
        for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
            if a.ndim == 0:
                continue
            assert len(a.sharding.device_set) == 4, a.sharding
            assert {s.data.shape[0] for s in a.addressable_shards} == {a.shape[0] // 4}, a.shape
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    res4 = EnsembleMAP(log_joint, init, opt, ensemble_size=8, devices="all").run(
        key, 20, x, y, batch_size=8)
    res1 = EnsembleMAP(log_joint, init, opt, ensemble_size=8).run(key, 20, x, y, batch_size=8)
    check(res4.params, res1.params)
    check(res4.state.opt_state, res1.state.opt_state)
    check(res4.losses, res1.losses)
    from orrery.ensemble import ensemble_predict
    predict = lambda p, xn: xn @ p["w"]
    check(ensemble_predict(res4.params, predict, x, devices="all"),
          ensemble_predict(res1.params, predict, x))

    def model(x, y=None):
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    guide = numpyro.infer.autoguide.AutoNormal(model)
    vi4 = EnsembleVI(model, guide, opt, ensemble_size=4, devices=jax.devices()).run(key, 10, x, y)
    vi1 = EnsembleVI(model, guide, opt, ensemble_size=4).run(key, 10, x, y)
    check(vi4.params, vi1.params)
    check(vi4.losses, vi1.losses)
    from orrery.interface import ConfigError
    try:
        EnsembleMAP(log_joint, init, opt, ensemble_size=6, devices="all")
    except ConfigError as err:
        assert "ensemble_size" in str(err) and "4 devices" in str(err), err
    else:
        raise AssertionError("6 members over 4 devices was accepted")
    print("SHARDING-OK")
    """
)


def test_members_sharded_over_four_host_devices_equal_single_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "SHARDING-OK" in proc.stdout


def _log_joint(p, x, y):
    return 0.0, 0.0


def test_devices_argument_is_validated():
    import optax

    with pytest.raises(ConfigError, match="devices"):
        EnsembleMAP(_log_joint, lambda k: k, optax.sgd(1.0), devices="gpu")
    with pytest.raises(ConfigError, match="devices"):
        EnsembleMAP(_log_joint, lambda k: k, optax.sgd(1.0), devices=[])
    with pytest.raises(ConfigError, match="devices"):
        EnsembleVI(lambda: None, lambda: None, optax.sgd(1.0), devices=["cpu:0"])
    with pytest.raises(ConfigError, match="devices"):
        EnsembleMAP(_log_joint, lambda k: k, optax.sgd(1.0), devices=jax.devices() * 2)
    runner = EnsembleMAP(_log_joint, lambda k: k, optax.sgd(1.0), ensemble_size=3, devices="all")
    assert runner.shardings is not None and len(runner.shardings.members.device_set) == 1

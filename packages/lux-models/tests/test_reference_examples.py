"""The `>>>` examples of the pollux.models reference, with `pollux.models` -> `orrery.lux`.

Each block is the reference's text with only the import swapped; where the
reference leaves names undefined (`model`, `data`, `trained_pars` ...) a small
setup defines them, and an example that shows no output assigns its result.
`xmmutablemap.ImmutableMap` (an upstream dependency, not ours) is stood in for
by `dict`.
"""

import doctest
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from orrery.lux import AffineTransform, LinearTransform, Lux, LuxData, OutputData

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _run(text: str, globs: dict | None = None) -> None:
    test = doctest.DocTestParser().get_doctest(text, dict(globs or {}), "reference", None, 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} reference example(s) failed (see stdout)"


@pytest.fixture
def immutablemap(monkeypatch):
    mod = types.ModuleType("xmmutablemap")
    mod.ImmutableMap = dict
    monkeypatch.setitem(sys.modules, "xmmutablemap", mod)


def _setup():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 2))
    flux = z @ rng.normal(size=(2, 8)) + 0.01 * rng.normal(size=(30, 8))
    label = z @ rng.normal(size=(2, 2))
    model = Lux(latent_size=2)
    model.register_output("flux", AffineTransform(output_size=8))
    model.register_output("label", LinearTransform(output_size=2))
    data = LuxData(flux=OutputData(flux, err=0.01), label=OutputData(label, err=0.1))
    trained = model.optimize_iterative(data, max_cycles=3, progress=False).params
    trained_pars = {k: v for k, v in trained.items() if k != "latents"}
    return {
        "model": model,
        "data": data,
        "test_data": data[:10],
        "trained_pars": trained_pars,
    }


def test_cannon_examples():
    _run(
        """
>>> import jax.numpy as jnp
>>> from orrery.lux import Cannon
>>> cannon = Cannon(label_size=3, output_size=100, poly_degree=2)
>>> cannon.n_features  # 1 + 3 + 6 = 10 for degree 2 with 3 labels
10
>>> labels = jnp.array([[5000., 4.0], [5500., 3.5], [6000., 4.5]])
>>> spectra = jnp.array([[1.0, 2.0], [1.5, 2.5], [2.0, 3.0]])
>>> cannon = Cannon(label_size=2, output_size=2, poly_degree=1)
>>> cannon = cannon.fit(labels, spectra)
>>> cannon.is_fitted
True
>>> import orrery.lux as plx
>>> model = plx.Lux(latent_size=2)
>>> model.register_output("flux", cannon.to_transform_sequence())
>>> cannon = cannon.fit(labels, spectra)
>>> pars = cannon.get_coeffs_as_transform_pars()
>>> # Use with LuxModel
>>> out = model.predict_outputs(labels, {"flux": pars})
>>> out["flux"].shape
(3, 2)
>>> labels = jnp.array([[1.0, 2.0]])  # 1 star, 2 labels
>>> cannon = Cannon(label_size=2, output_size=10, poly_degree=2)
>>> features = cannon.get_features(labels)
>>> features.shape
(1, 6)
>>> features
Array([[1., 1., 2., 1., 2., 4.]], dtype=float...)
>>> cannon = Cannon(label_size=3, output_size=128, poly_degree=2)
>>> transform = cannon.to_transform_sequence()
>>> model = plx.LuxModel(latent_size=3)  # latent_size = label_size
>>> model.register_output("flux", transform)
"""
    )


def test_optimize_iterative_examples():
    globs = _setup()
    _run(
        """
>>> result = model.optimize_iterative(data, max_cycles=20, progress=False)
>>> opt_params = result.params
>>> from orrery.lux import ParameterBlock
>>> blocks = [
...     ParameterBlock("latents", "latents", optimizer="least_squares"),
...     ParameterBlock("flux", "flux:data", optimizer="least_squares"),
... ]
>>> result = model.optimize_iterative(data, blocks=blocks, progress=False)
>>> result = model.optimize_iterative(
...     test_data, blocks=["latents"], fixed_pars=trained_pars, progress=False
... )
>>> test_opt_pars = result.params  # contains fixed + optimized params
>>> from orrery.lux import optimize_iterative
>>> result = optimize_iterative(model, data, max_cycles=20, progress=False)
>>> blocks = [
...     ParameterBlock("latents", "latents", optimizer="least_squares"),
...     ParameterBlock("flux", "flux:data", optimizer="least_squares"),
...     ParameterBlock("labels", "label:data", num_steps=500),
... ]
>>> result = optimize_iterative(model, data, blocks=blocks, max_cycles=2, progress=False)
>>> result = optimize_iterative(
...     model, test_data, blocks=["latents"], fixed_pars=trained_pars, progress=False
... )
>>> test_opt_pars = result.params  # already contains fixed + optimized
>>> sorted(test_opt_pars), test_opt_pars["latents"].shape
(['flux', 'label', 'latents'], (10, 2))
""",
        globs,
    )


def test_transform_examples(immutablemap):
    _run(
        """
>>> from orrery.lux.transforms import ShapeSpec
>>> shape = ShapeSpec(("output_size", "latent_size"))
>>> shape.resolve({"output_size": 128, "latent_size": 8})
(128, 8)
>>> bias_shape = ShapeSpec(("output_size", "one"))
>>> bias_shape.resolve({"output_size": 128})
(128, 1)
>>> from xmmutablemap import ImmutableMap
>>> import numpyro.distributions as dist
>>> shapes = ImmutableMap({"A": ShapeSpec(("output_size", "latent_size"))})
>>> priors = ImmutableMap({"A": dist.Normal(0, 1)})
>>> import jax.numpy as jnp
>>> from orrery.lux.transforms import PolyFeatureTransform, LinearTransform
>>> from orrery.lux.transforms import TransformSequence
>>> cannon = TransformSequence((
...     PolyFeatureTransform(degree=2),
...     LinearTransform(output_size=128),
... ))
>>> cannon.output_size_for(3)
128
>>> import jax
>>> import equinox as eqx
>>> from orrery.lux.transforms import EquinoxNNTransform
>>> nn_trans = EquinoxNNTransform(
...     output_size=128,
...     nn_factory=lambda in_size, out_size, key: eqx.nn.MLP(
...         in_size=in_size,
...         out_size=out_size,
...         width_size=64,
...         depth=2,
...         key=key,
...     ),
...     weight_prior=dist.Normal(0, 0.1),
...     bias_prior=dist.Normal(0, 0.01),
... )
>>> import orrery.lux as plx
>>> model = plx.LuxModel(latent_size=8)
>>> model.register_output("flux", nn_trans)
>>> from orrery.lux.transforms import AdditiveOffsetTransform, LinearTransform
>>> phot_trans = AdditiveOffsetTransform(
...     base_transform=LinearTransform(output_size=3),  # 3 photometric bands
...     offset_prior=dist.Normal(11.0, 3.0),  # Distance modulus prior
... )
>>> model = plx.Lux(latent_size=8)
>>> model.register_output("phot", phot_trans)
>>> phot_trans.get_expanded_priors(8, data_size=1000)["offset"].batch_shape
(1000,)
>>> from orrery.lux.transforms import FunctionTransform, ShapeSpec
>>>
>>> def my_transform(z, A):
...     return jnp.dot(A, z)
>>>
>>> custom = FunctionTransform(
...     output_size=128,
...     transform=my_transform,
...     priors=ImmutableMap({"A": dist.Normal(0, 1)}),
...     shapes=ImmutableMap({"A": ShapeSpec(("output_size", "latent_size"))}),
... )
>>> custom.get_expanded_priors(latent_size=8)["A"].batch_shape
(128, 8)
"""
    )


def test_bridge_form_predicts_through_the_sequence():
    """What `Cannon.get_coeffs_as_transform_pars` hands over is accepted in every list form."""
    from orrery.lux import PolyFeatureTransform, TransformSequence

    seq = TransformSequence((PolyFeatureTransform(degree=1), LinearTransform(output_size=2)))
    m = Lux(latent_size=2)
    m.register_output("flux", seq)
    a = jnp.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    z = jnp.array([[1.0, 1.0]])
    # features [1, 1, 1]: A @ f = [6, 1]
    for data in ([{"A": a}], [{}, {"A": a}], ({}, {"A": a})):
        assert m.predict_outputs(z, {"flux": {"data": data}})["flux"].tolist() == [[6.0, 1.0]]

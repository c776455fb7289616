"""orrery extras for parax 0.11-style models (not part of parax 0.11's own surface).

`draws_from` turns the random variables of a model into `orrery.interface.Draws`; models
save and load with `orrery.parax.save` / `orrery.parax.load` (the classes of
`orrery.parax.v011` are on the loader's allow-list; functions held by `Derived`,
`Parameterize` or `Tie` must be allow-listed or registered with
`orrery.parax.register_loadable`).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jaxtyping import PRNGKeyArray, PyTree

from orrery.interface import ConfigError, Draws, check_positive_int

from ._base import as_unwrapped
from .probability import AbstractProbabilistic, is_probabilistic
from .variables import is_param

__all__ = ["draws_from", "random_variable_names"]


def _name(path: Any) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="_")


def random_variable_names(model: PyTree) -> dict[str, AbstractProbabilistic]:
    """``{name: variable}`` for the probabilistic variables of `model`.

    Names are the attribute path joined by ``_`` (``model.layer.w`` is ``layer_w``).
    """
    leaves, _ = jax.tree.flatten_with_path(model, is_leaf=is_param)
    return {_name(p): leaf for p, leaf in leaves if is_probabilistic(leaf)}


def draws_from(model: PyTree, key: PRNGKeyArray, num_samples: int = 1000) -> Draws:
    """Independent draws of each random variable from its distribution (one chain).

    Args:
        model: a pytree holding `Random` (or other probabilistic) variables.
        key: PRNG key (split once per variable).
        num_samples: draws per variable.

    Returns:
        `Draws` with one variable per random variable, shaped ``(1, num_samples, *shape)``.

    Raises:
        ConfigError: the model holds no random variable.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    named = random_variable_names(model)
    if not named:
        raise ConfigError("draws_from: the model holds no random (probabilistic) variable")
    keys = jax.random.split(key, len(named))
    out = {}
    for k, (name, var) in zip(keys, named.items(), strict=True):
        dist = as_unwrapped(var.distribution)
        out[name] = np.asarray(jax.vmap(dist.sample)(jax.random.split(k, num_samples)))
    return Draws.from_dict(out, has_chains=False)

"""What `Lux` and `optimize_iterative` both need to read data into a likelihood.

The data checks, the observation noise and the latent prior live here so that
`optimize` can use them without importing `lux` (which calls `optimize_iterative`),
so the two modules import each other in one direction only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jaxtyping import Array

from orrery.interface import ConfigError, ConfigTypeError, ValueDomainError

from ._names import closest_hint
from .data import LuxData, OutputData
from .transforms import AbstractTransform

if TYPE_CHECKING:
    from .lux import Lux

__all__ = [
    "as_lux_data",
    "check_errors",
    "check_infinite_data",
    "effective_err",
    "latents_prior_distribution",
    "output_names",
]


def as_lux_data(data: Any) -> LuxData:
    """Accept a `LuxData` or a mapping of names to `OutputData` or arrays."""
    if isinstance(data, LuxData):
        return data
    if isinstance(data, Mapping):
        return LuxData(**dict(data))
    raise ConfigTypeError(
        f"data: expected LuxData or a mapping of outputs, got {type(data).__name__}"
    )


def effective_err(od: OutputData, err_transform: AbstractTransform | None, err_pars) -> Array:
    """The likelihood's standard deviation of one output.

    With an `err_transform` it is `err_transform(err)`, where a missing
    `err` is 0 (no measurement error, as upstream) and masked entries (inf)
    enter as 0. Without one it is the observed `err`; data without `err`
    get unit weights (upstream would put a zero standard deviation there).
    """
    if err_transform is None:
        return od.err if od.has_err else jnp.ones_like(od.data)
    err = jnp.broadcast_to(od.err, od.data.shape)
    err = jnp.where(jnp.isfinite(err), err, 0.0)
    return err_transform.apply(err, **err_pars)


def output_names(model: Lux, data: LuxData, names=None) -> list[str]:
    """The outputs a fit models: `names`, or every registered output the data hold.

    As upstream, a registered output the data do not hold is skipped (e.g.
    labels when predicting from flux alone). Refused: an explicit name the
    data do not hold, data holding none of the registered outputs, and a data
    name that is not registered but is close to a registered output the data
    lack (a misspelling that would silently drop that output).
    """
    if names is not None:
        chosen = model._names(names)
        for n in chosen:
            if n not in data:
                raise ConfigError(f"data: no output named {n!r}; data has {list(data)}")
        return chosen
    chosen = [n for n in model.outputs if n in data]
    absent = [n for n in model.outputs if n not in data]
    for key in data:
        if key not in model.outputs and absent and closest_hint(key, absent):
            raise ConfigError(
                f"data: output {key!r} is not registered{closest_hint(key, absent)}; "
                f"registered outputs: {list(model.outputs)}"
            )
    if not chosen:
        raise ConfigError(
            f"data: holds none of the registered outputs {list(model.outputs)}; it has {list(data)}"
        )
    return chosen


def check_errors(model: Lux, data: LuxData, names) -> None:
    """Refuse, before numpyro runs, an output whose likelihood would have zero width."""
    for name in output_names(model, data, names):
        od = data[name]
        if model.outputs[name][1] is None and od.has_err:
            zero = np.asarray(od.mask & (od.err == 0))
            if zero.any():
                raise ValueDomainError(
                    f"data[{name!r}].err: {int(zero.sum())} value(s) have err = 0 and output "
                    f"{name!r} has no err_transform, so the likelihood is undefined there; give "
                    "positive errors, inf to ignore a value, or register an err_transform"
                )


def check_infinite_data(model: Lux, data: LuxData, names) -> None:
    """Refuse `+inf`/`-inf` data values: the mask would drop them as missing, silently.

    A missing value is NaN (or `err = inf`); an infinite measurement is an
    error upstream of the fit (an overflow, a log of zero) that must not be
    mistaken for one.
    """
    for name in output_names(model, data, names):
        bad = np.isinf(np.asarray(data[name].data))
        if bad.any():
            raise ValueDomainError(
                f"data[{name!r}]: {int(bad.sum())} value(s) are +inf or -inf; mark missing "
                "values with NaN (or err = inf) and fix or drop infinite measurements"
            )


def latents_prior_distribution(latents_prior, n: int, latent_size: int) -> dist.Distribution:
    shape = (n, latent_size)
    if latents_prior is None:
        return dist.Normal(0.0, 1.0).expand(shape).to_event(2)
    if latents_prior is False:
        # improper flat prior: contributes nothing to the log density
        return dist.ImproperUniform(dist.constraints.real, (), event_shape=shape)
    if isinstance(latents_prior, dist.Distribution):
        full = tuple(latents_prior.batch_shape) + tuple(latents_prior.event_shape)
        if full == shape:
            return latents_prior.to_event(len(latents_prior.batch_shape))
        base = latents_prior.expand(shape[: 2 - len(latents_prior.event_shape)] or ())
        return base.to_event(len(base.batch_shape))
    raise ConfigError(
        "latents_prior: expected None (unit Normal), False (flat) or a numpyro Distribution, "
        f"got {latents_prior!r}"
    )

"""`ConcatenateTransform`: several transforms of the same input, side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from orrery.interface import ConfigError

from .transforms import AbstractTransform, _IndexedTransforms

__all__ = ["ConcatenateTransform"]


class ConcatenateTransform(_IndexedTransforms):
    """Apply several transforms to the same input and concatenate their outputs.

    The output is `[t0(z), t1(z), ...]` along the output axis. Parameters are
    named as in a `TransformSequence`, `"{i}:{name}"`; the nested form is a
    tuple with one dict per transform.

    Args:
        transforms: the transforms (at least one).

    Raises:
        ConfigError: when `transforms` is empty or holds something else.

    Example:
        >>> import numpy as np
        >>> from orrery.lux import ConcatenateTransform, LinearTransform, NoOpTransform
        >>> t = ConcatenateTransform((LinearTransform(output_size=2), NoOpTransform()))
        >>> t.output_size_for(3), t.param_names()
        (5, ('0:A',))
        >>> y = t.apply(np.ones((4, 3)), **{"0:A": np.ones((2, 3))})
        >>> y.shape, y[0].tolist()
        ((4, 5), [3.0, 3.0, 1.0, 1.0, 1.0])
    """

    def __init__(self, transforms):
        transforms = tuple(transforms)
        if not transforms:
            raise ConfigError("transforms: expected at least one transform")
        for i, t in enumerate(transforms):
            if not isinstance(t, AbstractTransform):
                raise ConfigError(f"transforms[{i}]: expected a transform, got {type(t).__name__}")
        self.transforms = transforms
        self.output_size = sum(int(t.output_size) for t in transforms)

    def output_size_for(self, latent_size: int) -> int:
        return sum(t.output_size_for(int(latent_size)) for t in self.transforms)

    def get_expanded_priors(self, latent_size, data_size=None):
        """Flat priors `"{i}:{name}"`; every transform sees the same input size."""
        return {
            f"{i}:{name}": prior
            for i, t in enumerate(self.transforms)
            for name, prior in t.get_expanded_priors(latent_size, data_size).items()
        }

    def apply(self, latents, **pars: Any):
        """Apply every transform to `latents` and concatenate along the last axis."""
        nested = self.unpack_pars(pars, ignore_missing=True)
        outs = [
            t.apply(latents, **t.pack_pars(p)) for t, p in zip(self.transforms, nested, strict=True)
        ]
        return jnp.concatenate(outs, axis=-1)

    def pack_pars(self, nested_pars, ignore_missing=False):
        """Nested `({"A": a}, {...})` (or already flat `{"0:A": a}`) -> flat `{"0:A": a}`."""
        if isinstance(nested_pars, Mapping):
            flat = dict(nested_pars)
            self.unpack_pars(flat, ignore_missing)
            return flat
        nested = list(nested_pars or ())
        if len(nested) != len(self.transforms) and not ignore_missing:
            raise ConfigError(
                f"nested_pars: expected {len(self.transforms)} parameter dicts, got {len(nested)}"
            )
        return {
            f"{i}:{name}": val
            for i, (t, p) in enumerate(zip(self.transforms, nested, strict=False))
            for name, val in t.pack_pars(p or {}, ignore_missing).items()
        }

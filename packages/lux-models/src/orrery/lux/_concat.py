"""`ConcatenateTransform`: the input split in pieces, one transform per piece, side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from orrery.interface import ConfigError

from ._transform_base import AbstractMultiTransform, AbstractTransform

__all__ = ["ConcatenateTransform"]


class ConcatenateTransform(AbstractMultiTransform):
    """Split the input by `input_sizes`, apply one transform per piece, concatenate.

    As upstream: the input vector `z` (of size `sum(input_sizes)`) is cut into
    consecutive pieces `z[:s0]`, `z[s0:s0+s1]`, ...; transform `i` maps piece
    `i`; the outputs are concatenated. Parameters are named `"{i}:{name}"`; the
    nested form is a tuple with one dict per transform. It nests inside a
    `TransformSequence` (names `"0:{i}:{name}"`) and serves as a `Lux` output.

    Args:
        transforms: the transforms, at least one.
        input_sizes: how many input values each transform receives (one
            positive int per transform).

    Raises:
        ConfigError: (a `ValueError`) for no transforms, a length mismatch
            between `transforms` and `input_sizes`, a non-positive size, or
            something that is not a transform.

    Example:
        >>> import numpy as np
        >>> from orrery.lux import ConcatenateTransform, LinearTransform, NoOpTransform
        >>> t = ConcatenateTransform(
        ...     transforms=(LinearTransform(output_size=2), NoOpTransform()), input_sizes=(2, 1)
        ... )
        >>> t.output_size, t.names_flat
        (3, ('0:A',))
        >>> y = t.apply(np.ones((4, 3)), **{"0:A": np.ones((2, 2))})
        >>> y.shape, y[0].tolist()
        ((4, 3), [2.0, 2.0, 1.0])
    """

    input_sizes: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, transforms, input_sizes):
        transforms = tuple(transforms)
        sizes = tuple(input_sizes)
        if not transforms:
            raise ConfigError("transforms: expected at least one transform")
        if len(sizes) != len(transforms):
            raise ConfigError(
                f"input_sizes: expected one size per transform ({len(transforms)}), "
                f"got {len(sizes)}"
            )
        for i, (t, s) in enumerate(zip(transforms, sizes, strict=True)):
            if not isinstance(t, AbstractTransform):
                raise ConfigError(f"transforms[{i}]: expected a transform, got {type(t).__name__}")
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ConfigError(f"input_sizes[{i}]: expected a positive int, got {s!r}")
        self.transforms = transforms
        self.input_sizes = tuple(int(s) for s in sizes)
        self.output_size = sum(
            t.output_size_for(s) for t, s in zip(transforms, self.input_sizes, strict=True)
        )

    def _check_input(self, size: int, what: str) -> None:
        if int(size) != sum(self.input_sizes):
            raise ConfigError(
                f"{what}: {int(size)} does not match sum(input_sizes) = {sum(self.input_sizes)}"
            )

    def output_size_for(self, latent_size: int) -> int:
        self._check_input(latent_size, "input size")
        return self.output_size

    def get_output_size(self, input_size: int) -> int:
        """The total output size, after checking `input_size` (upstream's name)."""
        return self.output_size_for(input_size)

    def get_expanded_priors(self, latent_size, data_size=None):
        """Flat priors `"{i}:{name}"`; transform `i` sees an input of `input_sizes[i]`.

        Raises:
            ConfigError: when `latent_size` is not `sum(input_sizes)`.
        """
        self._check_input(latent_size, "latent_size")
        return {
            f"{i}:{name}": prior
            for i, (t, s) in enumerate(zip(self.transforms, self.input_sizes, strict=True))
            for name, prior in t.get_expanded_priors(s, data_size).items()
        }

    def apply(self, latents, *args, **kwargs: Any):
        """Apply each transform to its piece of `latents` and concatenate the outputs.

        Parameters: one dict per transform (positional, or one tuple/list), or
        flat `"{i}:{name}"` keywords.

        Raises:
            ConfigError: for mixed or miscounted parameter dicts, a flat name
                without a valid transform index, or an input of the wrong size.
        """
        latents = jnp.asarray(latents)
        self._check_input(latents.shape[-1], "latents")
        nested = self._nested_from_call(args, kwargs)
        edges = [0]
        for s in self.input_sizes:
            edges.append(edges[-1] + s)
        outs = [
            t.apply(latents[..., lo:hi], **t.pack_pars(p))
            for t, p, lo, hi in zip(self.transforms, nested, edges[:-1], edges[1:], strict=True)
        ]
        return jnp.concatenate(outs, axis=-1)

    def pack_pars(self, nested_pars, ignore_missing=False):
        """Nested `({"A": a}, {...})` (or already flat `{"0:A": a}`) -> flat `{"0:A": a}`."""
        if isinstance(nested_pars, Mapping):
            flat = dict(nested_pars)
            self._group(flat, strict=True)
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

"""Transforms: parameterised maps from latent vectors to outputs.

A transform knows its parameters (names, priors and shapes) and how to apply
itself to a batch of latents. Parameter names come from the signature of the
transform function (everything after the latent argument); shapes may use the
named dimensions of `ShapeSpec`; a missing prior defaults to `Normal(0, 1)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpyro.distributions as dist

from orrery.interface import ConfigError

from ._concat import ConcatenateTransform
from ._nn import EquinoxNNTransform
from ._poly import n_poly_features, poly_features
from ._transform_base import (
    AbstractMultiTransform,
    AbstractSingleTransform,
    AbstractTransform,
    ParamPriorsT,
    ParamShapesT,
    ShapeSpec,
    affine_transform,
    default_prior,
    expand,
    linear_transform,
    noop_transform,
    offset_transform,
    quadratic_transform,
    scatter_transform,
)
from ._transform_base import (
    check_output_shape as check_output_shape,  # re-exported: lux.py imports it from here
)

__all__ = [
    "AbstractMultiTransform",
    "AbstractSingleTransform",
    "AbstractTransform",
    "AdditiveOffsetTransform",
    "AffineTransform",
    "ConcatenateTransform",
    "EquinoxNNTransform",
    "FunctionTransform",
    "LinearTransform",
    "NoOpTransform",
    "OffsetTransform",
    "ParamPriorsT",
    "ParamShapesT",
    "PolyFeatureTransform",
    "QuadraticTransform",
    "ScatterTransform",
    "ShapeSpec",
    "TransformSequence",
]


_A = ShapeSpec(("output_size", "latent_size"))
# Affine and quadratic biases are plain vectors (as upstream since its bias-shape
# fix); an offset's is upstream's (output_size, 1) column, which is what makes the
# per-object `vmap=False` recipe return one row per object. Both layouts are
# accepted everywhere (see `add_bias`).
_B = ShapeSpec(("output_size",))
_B_COLUMN = ShapeSpec(("output_size", "one"))


class LinearTransform(AbstractSingleTransform):
    """``y = A z`` with ``A`` of shape ``(output_size, latent_size)``."""

    def __init__(
        self,
        output_size,
        transform=linear_transform,
        priors=None,
        shapes=None,
        vmap=True,
        param_priors=None,
        param_shapes=None,
    ):
        super().__init__(
            output_size,
            transform,
            priors,
            shapes,
            vmap,
            param_priors,
            param_shapes,
            _default_shapes={"A": _A},
        )


class AffineTransform(AbstractSingleTransform):
    """``y = A z + b`` with ``b`` of shape ``(output_size,)``."""

    def __init__(
        self,
        output_size,
        transform=affine_transform,
        priors=None,
        shapes=None,
        vmap=True,
        param_priors=None,
        param_shapes=None,
    ):
        super().__init__(
            output_size,
            transform,
            priors,
            shapes,
            vmap,
            param_priors,
            param_shapes,
            _default_shapes={"A": _A, "b": _B},
        )


class QuadraticTransform(AbstractSingleTransform):
    """``y_o = zᵀ Q_o z + (A z)_o + b_o``."""

    def __init__(
        self,
        output_size,
        transform=quadratic_transform,
        priors=None,
        shapes=None,
        vmap=True,
        param_priors=None,
        param_shapes=None,
    ):
        q = ShapeSpec(("output_size", "latent_size", "latent_size"))
        super().__init__(
            output_size,
            transform,
            priors,
            shapes,
            vmap,
            param_priors,
            param_shapes,
            _default_shapes={"Q": q, "A": _A, "b": _B},
        )


class OffsetTransform(AbstractSingleTransform):
    """``y = z + b``; ``b`` has upstream's shape ``(output_size, 1)``.

    With ``vmap=True`` (shared offsets) ``output_size`` is the input size and
    the column acts as one offset per feature. With ``vmap=False`` and
    ``output_size=n_objects`` it is upstream's per-object recipe: row ``n`` of
    ``b`` shifts every feature of object ``n``, and a fitted ``b`` comes back
    as an ``(n_objects, 1)`` column, so ``b - truth[:, None]`` is elementwise.
    """

    def __init__(
        self,
        output_size,
        transform=offset_transform,
        priors=None,
        shapes=None,
        vmap=True,
        param_priors=None,
        param_shapes=None,
    ):
        super().__init__(
            output_size,
            transform,
            priors,
            shapes,
            vmap,
            param_priors,
            param_shapes,
            _default_shapes={"b": _B_COLUMN},
        )


class NoOpTransform(AbstractSingleTransform):
    """``y = z``; no parameters. ``output_size=0`` means "same as the input"."""

    def __init__(
        self,
        output_size=0,
        transform=noop_transform,
        priors=None,
        shapes=None,
        vmap=True,
        param_priors=None,
        param_shapes=None,
    ):
        super().__init__(output_size, transform, priors, shapes, vmap, param_priors, param_shapes)

    def output_size_for(self, latent_size: int) -> int:
        return self.output_size or int(latent_size)


class ScatterTransform(AbstractSingleTransform):
    """``sqrt(err² + s²)``: an intrinsic scatter ``s`` per output element, added in
    quadrature to the reported errors; an ``err_transform`` (pollux 0.1.0's class).

    ``s`` has shape ``(output_size,)`` and prior ``HalfNormal(1)`` unless given.

    Example:
        >>> import numpy as np
        >>> t = ScatterTransform(output_size=2)
        >>> t.apply(np.full((1, 2), 3.0), s=np.array([4.0, 0.0])).tolist()
        [[5.0, 3.0]]
    """

    def __init__(
        self,
        output_size,
        transform=scatter_transform,
        priors=None,
        shapes=None,
        vmap=True,
        param_priors=None,
        param_shapes=None,
    ):
        super().__init__(
            output_size,
            transform,
            priors,
            shapes,
            vmap,
            param_priors,
            param_shapes,
            _default_priors={"s": dist.HalfNormal(1.0)},
            _default_shapes={"s": ShapeSpec(("output_size",))},
        )


class FunctionTransform(AbstractSingleTransform):
    """A user function ``transform(z, p1, p2, ...)`` with priors and shapes per parameter.

    Example:
        >>> import numpyro.distributions as dist
        >>> t = FunctionTransform(
        ...     output_size=4,
        ...     transform=lambda z, A: A @ z,
        ...     priors={"A": dist.Normal(0, 1)},
        ...     shapes={"A": ShapeSpec(("output_size", "latent_size"))},
        ... )
        >>> t.get_expanded_priors(latent_size=2)["A"].batch_shape
        (4, 2)
    """


# --------------------------------------------------------------------- composite
class PolyFeatureTransform(AbstractTransform):
    """Polynomial feature expansion (no parameters): bias, degree 1, degree 2 … terms."""

    degree: int = eqx.field(static=True)
    include_bias: bool = eqx.field(static=True)

    def __init__(
        self,
        output_size: int = 0,
        degree: int = 2,
        include_bias: bool = True,
        priors=None,
        shapes=None,
    ):
        self.output_size = int(output_size)
        self.degree = int(degree)
        self.include_bias = bool(include_bias)

    def output_size_for(self, latent_size: int) -> int:
        return n_poly_features(int(latent_size), self.degree, self.include_bias)

    def get_output_size(self, input_size: int) -> int:
        """The number of features for `input_size` inputs (upstream's name).

        Example:
            >>> PolyFeatureTransform(degree=2).get_output_size(3)
            10
        """
        return self.output_size_for(input_size)

    def apply(self, latents, **_pars):
        return poly_features(jnp.asarray(latents), self.degree, self.include_bias)

    def get_expanded_priors(self, latent_size, data_size=None):
        return {}

    def pack_pars(self, _nested_pars=None, _ignore_missing=False):
        return {}

    def unpack_pars(self, flat_pars=None, ignore_missing=False):
        return {}


class TransformSequence(AbstractMultiTransform):
    """Transforms applied one after the other; parameters named ``"{i}:{name}"``.

    The nested parameter structure is a tuple with one dict per transform.
    """

    def __init__(self, transforms):
        transforms = tuple(transforms)
        if not transforms:
            raise ConfigError("transforms: expected at least one transform")
        for i, t in enumerate(transforms):
            if not isinstance(t, AbstractTransform) or isinstance(t, TransformSequence):
                raise ConfigError(
                    f"transforms[{i}]: expected a single transform, got {type(t).__name__}"
                )
        self.transforms = transforms
        self.output_size = transforms[-1].output_size

    def output_size_for(self, latent_size: int) -> int:
        size = int(latent_size)
        for t in self.transforms:
            size = t.output_size_for(size)
        return size

    def get_expanded_priors(self, latent_size, data_size=None):
        """Flat priors ``"{i}:{name}"``; each transform's input is the previous output."""
        out = {}
        size = int(latent_size)
        for i, t in enumerate(self.transforms):
            for name, prior in t.get_expanded_priors(size, data_size).items():
                out[f"{i}:{name}"] = prior
            size = t.output_size_for(size)
        return out

    def apply(self, latents, *args, **kwargs):
        """Apply in order; parameters as one dict per transform, or flat ``"i:name"``."""
        nested = self._nested_from_call(args, kwargs)
        out = latents
        for t, p in zip(self.transforms, nested, strict=True):
            out = t.apply(out, **t.pack_pars(p))
        return out

    def pack_pars(self, nested_pars, ignore_missing=False):
        """Nested `({"A": a}, {"b": b})` (or a list) -> flat `{"0:A": a, "1:b": b}`.

        Also accepted, as upstream tolerates them: a dict already in the flat
        `"i:name"` form; trailing empty entries; and a shorter list with one
        dict per transform that has parameters (e.g. `[{"A": a}]` for
        `PolyFeature -> Linear`), which is matched to those transforms in order.

        Raises:
            ConfigError: for a missing entry (unless `ignore_missing`) or a
                non-empty entry beyond the last transform.
        """
        if isinstance(nested_pars, Mapping):
            flat = dict(nested_pars)
            self._group(flat, strict=True)  # checks the names
            return flat
        nested = list(nested_pars or ())
        n_t = len(self.transforms)
        extra = [i for i, p in enumerate(nested[n_t:], start=n_t) if p]
        if extra:
            raise ConfigError(
                f"nested_pars: entries {extra} are beyond the {n_t} transforms of the sequence"
            )
        nested = nested[:n_t]
        with_pars = [i for i, t in enumerate(self.transforms) if t.param_names()]
        if len(nested) < n_t and len(nested) == len(with_pars) and nested:
            aligned: list[Any] = [{} for _ in self.transforms]
            for i, p in zip(with_pars, nested, strict=True):
                aligned[i] = p
            nested = aligned
        elif len(nested) < n_t:
            if not ignore_missing and any(
                self.transforms[i].param_names() for i in range(len(nested), n_t)
            ):
                raise ConfigError(
                    f"nested_pars: expected {n_t} parameter dicts (one per transform), "
                    f"got {len(nested)}"
                )
            nested = nested + [{}] * (n_t - len(nested))
        flat = {}
        for i, (t, p) in enumerate(zip(self.transforms, nested, strict=True)):
            for name, val in t.pack_pars(p or {}, ignore_missing).items():
                flat[f"{i}:{name}"] = val
        return flat


class AdditiveOffsetTransform(AbstractTransform):
    """A base transform plus one scalar offset per object (e.g. a distance modulus).

    Parameters: the base's, prefixed ``"base:"``, and ``"offset"`` of shape
    ``(data_size,)``, broadcast over all outputs. Nested form:
    ``{"base": <base nested pars>, "offset": array}``.
    """

    base_transform: AbstractTransform
    offset_prior: dist.Distribution = eqx.field(static=True)

    def __init__(self, base_transform, offset_prior=None):
        if not isinstance(base_transform, AbstractTransform):
            raise ConfigError(
                f"base_transform: expected a transform, got {type(base_transform).__name__}"
            )
        self.base_transform = base_transform
        self.offset_prior = offset_prior if offset_prior is not None else default_prior()
        self.output_size = base_transform.output_size

    def output_size_for(self, latent_size):
        return self.base_transform.output_size_for(latent_size)

    @property
    def priors(self):
        return {"base": self.base_transform.priors, "offset": self.offset_prior}

    def param_names(self):
        return (*(f"base:{n}" for n in self.base_transform.param_names()), "offset")

    def get_expanded_priors(self, latent_size, data_size=None):
        if data_size is None:
            raise ConfigError(
                "data_size: AdditiveOffsetTransform requires data_size (one offset per object)"
            )
        out = {
            f"base:{k}": v
            for k, v in self.base_transform.get_expanded_priors(latent_size, data_size).items()
        }
        out["offset"] = expand(self.offset_prior, (int(data_size),))
        return out

    def apply(self, latents, **params):
        if "offset" not in params:
            raise ConfigError("AdditiveOffsetTransform.apply: missing parameter 'offset'")
        base = {k[5:]: v for k, v in params.items() if k.startswith("base:")}
        if isinstance(self.base_transform, TransformSequence):
            y = self.base_transform.apply(latents, **base)
        else:
            y = self.base_transform.apply(latents, **base)
        return y + jnp.asarray(params["offset"])[:, None]

    def pack_pars(self, nested_pars, ignore_missing=False):
        """`{"base": ..., "offset": o}` (or flat `{"base:A": ..., "offset": o}`) -> flat."""
        nested = dict(nested_pars or {})
        base = nested.get("base", {})
        flat_base = {k[5:]: v for k, v in nested.items() if str(k).startswith("base:")}
        if flat_base:
            base = self.base_transform.unpack_pars(flat_base, ignore_missing)
        flat = {
            f"base:{k}": v for k, v in self.base_transform.pack_pars(base, ignore_missing).items()
        }
        if "offset" in nested:
            flat["offset"] = nested["offset"]
        elif not ignore_missing:
            raise ConfigError("AdditiveOffsetTransform: missing parameter 'offset'")
        return flat

    def unpack_pars(self, flat_pars, ignore_missing=False):
        base = {k[5:]: v for k, v in flat_pars.items() if k.startswith("base:")}
        out = {"base": self.base_transform.unpack_pars(base, ignore_missing)}
        if "offset" in flat_pars:
            out["offset"] = flat_pars["offset"]
        elif not ignore_missing:
            raise ConfigError("AdditiveOffsetTransform: missing parameter 'offset'")
        return out

"""Transforms: parameterised maps from latent vectors to outputs.

A transform knows its parameters (names, priors and shapes) and how to apply
itself to a batch of latents. Parameter names come from the signature of the
transform function (everything after the latent argument); shapes may use the
named dimensions of `ShapeSpec`; a missing prior defaults to `Normal(0, 1)`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jaxtyping import Array, Float

from orrery.interface import ConfigError, ShapeError

from ._poly import n_poly_features, poly_features

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


@dataclass(frozen=True)
class ShapeSpec:
    """A parameter shape written with named dimensions.

    Names: ``"output_size"``, ``"latent_size"``, ``"data_size"`` (number of
    objects, for per-object parameters) and ``"one"`` (always 1); integers are
    taken as they are.

    Example:
        >>> ShapeSpec(("output_size", "latent_size")).resolve({"output_size": 4, "latent_size": 2})
        (4, 2)
    """

    dims: tuple[str | int, ...]

    def __post_init__(self):
        if isinstance(self.dims, (str, int)):
            object.__setattr__(self, "dims", (self.dims,))
        else:
            object.__setattr__(self, "dims", tuple(self.dims))

    def resolve(self, sizes: Mapping[str, int | None]) -> tuple[int, ...]:
        """Replace every name by its size from ``sizes`` (``"one"`` is always 1)."""
        out = []
        for d in self.dims:
            if isinstance(d, int):
                out.append(int(d))
            elif d == "one":
                out.append(1)
            elif sizes.get(d) is None:
                raise ConfigError(
                    f"ShapeSpec{self.dims}: dimension {d!r} is unknown here "
                    f"(known: {', '.join(k for k, v in sizes.items() if v is not None)})"
                )
            else:
                out.append(int(sizes[d]))
        return tuple(out)


ParamPriorsT: TypeAlias = Mapping[str, dist.Distribution]
ParamShapesT: TypeAlias = Mapping[str, ShapeSpec | tuple[int, ...]]


def _default_prior() -> dist.Distribution:
    return dist.Normal(0.0, 1.0)


def _expand(prior: dist.Distribution, shape: tuple[int, ...]) -> dist.Distribution:
    """`prior.expand(...)` to a parameter of `shape` (batch shape = the parameter's shape).

    As upstream: elementwise `log_prob`, and the user's prior stays reachable
    (returned as is when it already has the shape, else as `.base_dist`).
    """
    extra = len(prior.event_shape)
    batch = tuple(shape[: len(shape) - extra]) if extra else tuple(shape)
    return prior.expand(batch)


def _warn_deprecated(old: str, new: str) -> None:
    warnings.warn(f"`{old}` is deprecated; use `{new}` instead", DeprecationWarning, stacklevel=3)


class AbstractTransform(eqx.Module):
    """Interface of every transform: ``apply``, priors, and parameter packing.

    ``pack_pars`` turns the nested parameter structure users see into the flat
    ``{name: array}`` mapping ``apply`` takes; ``unpack_pars`` is its inverse.
    """

    output_size: int = eqx.field(static=True)

    def apply(self, latents: Float[Array, "n latents"], **pars: Any) -> Float[Array, "n out"]:
        raise NotImplementedError

    def get_expanded_priors(
        self, latent_size: int, data_size: int | None = None
    ) -> dict[str, dist.Distribution]:
        raise NotImplementedError

    def output_size_for(self, latent_size: int) -> int:
        """The output size given the input size (most transforms: ``output_size``)."""
        return self.output_size

    def param_names(self) -> tuple[str, ...]:
        """Flat parameter names (as used by ``apply``)."""
        return ()

    def pack_pars(self, nested_pars: Any, ignore_missing: bool = False) -> dict[str, Any]:
        return dict(nested_pars or {})

    def unpack_pars(self, flat_pars: Mapping[str, Any], ignore_missing: bool = False) -> Any:
        return dict(flat_pars)

    @property
    def param_priors(self):
        """Deprecated: use ``priors``."""
        _warn_deprecated("param_priors", "priors")
        return self.priors

    @property
    def param_shapes(self):
        """Deprecated: use ``shapes``."""
        _warn_deprecated("param_shapes", "shapes")
        return self.shapes

    @property
    def priors(self) -> Any:
        return {}

    @property
    def shapes(self) -> Any:
        return {}


def _check_flat(transform, flat: Mapping[str, Any], ignore_missing: bool) -> dict[str, Any]:
    """Upstream's identity packing: extra entries pass through, missing ones raise."""
    names = transform.param_names()
    missing = [k for k in names if k not in flat]
    if missing and not ignore_missing:
        raise ConfigError(f"{type(transform).__name__}: missing parameter(s) {missing}")
    return dict(flat)


class AbstractSingleTransform(AbstractTransform):
    """A transform given by one function ``transform(z, *params) -> y``.

    Args:
        output_size: size of the output vector.
        transform: the function; its arguments after the first name the parameters.
        priors: prior per parameter (default ``Normal(0, 1)``).
        shapes: shape per parameter (`ShapeSpec` or a tuple; default the
            prior's own shape).
        vmap: True (default): ``transform`` is written for one object and the
            parameters are shared; False: it receives the whole batch (use this
            for per-object parameters shaped with ``"data_size"``).
        param_priors, param_shapes: deprecated spellings of ``priors`` / ``shapes``.
    """

    transform: Callable[..., Any] = eqx.field(static=True)
    _priors: dict = eqx.field(static=True)
    _shapes: dict = eqx.field(static=True)
    vmap: bool = eqx.field(static=True)
    _kwonly: tuple = eqx.field(static=True)

    def __init__(
        self,
        output_size: int,
        transform: Callable[..., Any],
        priors: ParamPriorsT | None = None,
        shapes: ParamShapesT | None = None,
        vmap: bool = True,
        param_priors: ParamPriorsT | None = None,
        param_shapes: ParamShapesT | None = None,
        *,
        _default_priors: ParamPriorsT | None = None,
        _default_shapes: ParamShapesT | None = None,
    ):
        if param_priors is not None:
            _warn_deprecated("param_priors", "priors")
            priors = {**(param_priors or {}), **(priors or {})}
        if param_shapes is not None:
            _warn_deprecated("param_shapes", "shapes")
            shapes = {**(param_shapes or {}), **(shapes or {})}
        if not callable(transform):
            raise ConfigError(f"transform: expected a callable, got {type(transform).__name__}")
        self.output_size = int(output_size)
        self.transform = transform
        self.vmap = bool(vmap)
        names = _signature_params(transform)
        self._kwonly = _keyword_only(transform)
        pri = {**(_default_priors or {}), **dict(priors or {})}
        shp = {**(_default_shapes or {}), **dict(shapes or {})}
        for k in list(pri) + list(shp):
            if k not in names:
                raise ConfigError(
                    f"{type(self).__name__}: parameter {k!r} is not an argument of the "
                    f"transform function (its parameters: {list(names)})"
                )
            if ":" in k:
                raise ConfigError(f"parameter name {k!r}: ':' is reserved")
        self._priors = {n: pri.get(n, _default_prior()) for n in names}
        self._shapes = {n: (s if isinstance(s, ShapeSpec) else tuple(s)) for n, s in shp.items()}

    @property
    def priors(self) -> dict[str, dist.Distribution]:
        return dict(self._priors)

    @property
    def shapes(self) -> dict[str, ShapeSpec | tuple[int, ...]]:
        return dict(self._shapes)

    def param_names(self) -> tuple[str, ...]:
        return tuple(self._priors)

    def get_expanded_priors(
        self, latent_size: int, data_size: int | None = None
    ) -> dict[str, dist.Distribution]:
        """Priors with concrete shapes for ``latent_size`` (and ``data_size`` objects)."""
        sizes = {
            "output_size": self.output_size,
            "latent_size": int(latent_size),
            "data_size": None if data_size is None else int(data_size),
        }
        out = {}
        for name, prior in self._priors.items():
            spec = self._shapes.get(name)
            if spec is None:
                shape = tuple(prior.batch_shape) + tuple(prior.event_shape)
            elif isinstance(spec, ShapeSpec):
                shape = spec.resolve(sizes)
            else:
                shape = tuple(int(s) for s in spec)
            out[name] = _expand(prior, shape)
        return out

    def apply(self, latents: Float[Array, "n latents"], **pars: Any) -> Float[Array, "n out"]:
        """Apply to a batch `(n, latent_size)` -> `(n, output_size)`.

        The function is called positionally, `transform(z, p1, p2, ...)`, in
        the order of its parameter names (as upstream), so positional-only
        callables and `jax.vmap`-wrapped functions work. Extra entries in
        `pars` are ignored.

        Raises:
            ConfigError: when a parameter is missing.
        """
        missing = [n for n in self._priors if n not in pars]
        if missing:
            raise ConfigError(f"{type(self).__name__}.apply: missing parameter(s) {missing}")
        args = [pars[n] for n in self._priors if n not in self._kwonly]
        kw = {n: pars[n] for n in self._kwonly}
        latents = jnp.asarray(latents)
        if self.vmap:
            return jax.vmap(lambda z: self.transform(z, *args, **kw))(latents)
        return self.transform(latents, *args, **kw)

    def pack_pars(self, nested_pars: Any, ignore_missing: bool = False) -> dict[str, Any]:
        """Identity for single transforms (missing names raise unless `ignore_missing`)."""
        return _check_flat(self, dict(nested_pars or {}), ignore_missing)

    def unpack_pars(self, flat_pars: Mapping[str, Any], ignore_missing: bool = False) -> Any:
        """Identity for single transforms (missing names raise unless `ignore_missing`)."""
        return _check_flat(self, dict(flat_pars or {}), ignore_missing)


def _keyword_only(fn: Callable[..., Any]) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


def _signature_params(fn: Callable[..., Any]) -> tuple[str, ...]:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise ConfigError("transform: the function must take the latent vector first")
    return tuple(p.name for p in params[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


# --------------------------------------------------------------------- built-in maps
def _bias(b, z):
    """The bias as it adds to `z`.

    For one object (the vmapped case) upstream's `(output_size, 1)` column
    is the vector `(output_size,)`. For a whole batch (`vmap=False`) the rows
    of `b` belong to the objects, as in upstream's per-object recipe
    `OffsetTransform(output_size=n_objects, vmap=False)`.
    """
    b = jnp.asarray(b)
    if jnp.ndim(z) <= 1:
        return b[:, 0] if b.ndim == 2 and b.shape[-1] == 1 else b
    return b[:, None] if b.ndim == 1 else b


def _linear_transform(z, A):
    return A @ z


def _affine_transform(z, A, b):
    return A @ z + _bias(b, z)


def _quadratic_transform(z, Q, A, b):
    return jnp.einsum("oij,i,j->o", Q, z, z) + A @ z + _bias(b, z)


def _offset_transform(z, b):
    return z + _bias(b, z)


def _noop_transform(z):
    return z


def _scatter_transform(err, s):
    return jnp.sqrt(err**2 + s**2)


_A = ShapeSpec(("output_size", "latent_size"))
# Affine and quadratic biases are plain vectors (as upstream since its bias-shape
# fix); an offset's is upstream's (output_size, 1) column, which is what makes the
# per-object `vmap=False` recipe return one row per object. Both layouts are
# accepted everywhere (see `_bias`).
_B = ShapeSpec(("output_size",))
_B_COLUMN = ShapeSpec(("output_size", "one"))


class LinearTransform(AbstractSingleTransform):
    """``y = A z`` with ``A`` of shape ``(output_size, latent_size)``."""

    def __init__(
        self,
        output_size,
        transform=_linear_transform,
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
        transform=_affine_transform,
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
        transform=_quadratic_transform,
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
        transform=_offset_transform,
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
        transform=_noop_transform,
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
        transform=_scatter_transform,
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


class AbstractMultiTransform(AbstractTransform):
    """Several transforms whose parameters are named ``"{i}:{name}"`` (pollux 0.1.0's base
    of `TransformSequence` and `ConcatenateTransform`).

    The nested parameter structure is a tuple with one dict per transform; the
    subclasses decide how the transforms combine.
    """

    transforms: tuple[AbstractTransform, ...]

    @property
    def priors(self):
        return tuple(t.priors for t in self.transforms)

    @property
    def shapes(self):
        return tuple(t.shapes for t in self.transforms)

    def param_names(self) -> tuple[str, ...]:
        return tuple(f"{i}:{n}" for i, t in enumerate(self.transforms) for n in t.param_names())

    @property
    def names_nested(self) -> tuple[tuple[str, ...], ...]:
        """Parameter names per transform, e.g. `((), ("A",))` for `PolyFeature -> Linear`."""
        return tuple(tuple(t.param_names()) for t in self.transforms)

    @property
    def names_flat(self) -> tuple[str, ...]:
        """Flat parameter names `"{i}:{name}"` (the same as `param_names()`)."""
        return self.param_names()

    def _group(self, flat_pars, strict: bool) -> list[dict[str, Any]]:
        """Flat `"{i}:{name}"` entries grouped per transform.

        A name that is not `"{i}:{name}"` with `i` a transform index raises
        `ConfigError` when `strict`, and is skipped otherwise.
        """
        groups: list[dict[str, Any]] = [{} for _ in self.transforms]
        for key, val in dict(flat_pars or {}).items():
            idx, _, name = str(key).partition(":")
            if not idx.isdigit() or int(idx) >= len(self.transforms) or not name:
                if not strict:
                    continue
                raise ConfigError(
                    f"bad parameter name {key!r}; expected '<index>:<name>' with "
                    f"index < {len(self.transforms)}"
                )
            groups[int(idx)][name] = val
        return groups

    def _nested_from_call(self, args, kwargs) -> tuple:
        """`apply`'s parameters as one dict per transform (positional dicts or flat keywords)."""
        if args and kwargs:
            raise ConfigError(
                f"{type(self).__name__}.apply: pass positional dicts or flat keywords, not both"
            )
        if len(args) == 1 and isinstance(args[0], (tuple, list)):
            args = tuple(args[0])
        if args:
            if len(args) != len(self.transforms):
                raise ConfigError(
                    f"{type(self).__name__}.apply: expected {len(self.transforms)} parameter "
                    f"dicts, got {len(args)}"
                )
            return tuple(args)
        groups = self._group(kwargs, strict=True)
        return tuple(t.unpack_pars(g, True) for t, g in zip(self.transforms, groups, strict=True))

    def unpack_pars(self, flat_pars, ignore_missing=False):
        """Flat `{"0:A": a, "1:b": b}` -> nested `({"A": a}, {"b": b})`.

        As upstream, a name without a valid transform index is skipped (the
        user-facing entry points, `fixed_pars` and `predict_outputs`, refuse
        unknown names before they get here).

        Raises:
            ConfigError: for a missing parameter (unless `ignore_missing`).
        """
        groups = self._group(flat_pars, strict=False)
        return tuple(
            t.unpack_pars(g, ignore_missing) for t, g in zip(self.transforms, groups, strict=True)
        )


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
        self.offset_prior = offset_prior if offset_prior is not None else _default_prior()
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
        out["offset"] = _expand(self.offset_prior, (int(data_size),))
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


def check_output_shape(name: str, pred, expected: int) -> None:
    """Raise a clear error when a transform's output has the wrong size."""
    if pred.ndim != 2 or pred.shape[1] != expected:
        raise ShapeError(
            f"output {name!r}: the transform produced shape {tuple(pred.shape)}, "
            f"expected (n, {expected})"
        )


# Defined in their own modules (they build on the classes above); public here.
from ._concat import ConcatenateTransform  # noqa: E402
from ._nn import EquinoxNNTransform  # noqa: E402

"""The transform base classes and the helpers every transform module shares.

`transforms` (the built-in transforms), `_concat` and `_nn` all build on the
classes here, so none of them imports another to reach a base class; the public
names are re-exported by `orrery.lux.transforms`.
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

__all__ = [
    "AbstractMultiTransform",
    "AbstractSingleTransform",
    "AbstractTransform",
    "ParamPriorsT",
    "ParamShapesT",
    "ShapeSpec",
    "check_output_shape",
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
            elif (size := sizes.get(d)) is None:
                raise ConfigError(
                    f"ShapeSpec{self.dims}: dimension {d!r} is unknown here "
                    f"(known: {', '.join(k for k, v in sizes.items() if v is not None)})"
                )
            else:
                out.append(int(size))
        return tuple(out)


ParamPriorsT: TypeAlias = Mapping[str, dist.Distribution]
ParamShapesT: TypeAlias = Mapping[str, ShapeSpec | tuple[int, ...]]


def default_prior() -> dist.Distribution:
    return dist.Normal(0.0, 1.0)


def expand(prior: dist.Distribution, shape: tuple[int, ...]) -> dist.Distribution:
    """`prior.expand(...)` to a parameter of `shape` (batch shape = the parameter's shape).

    As upstream: elementwise `log_prob`, and the user's prior stays reachable
    (returned as is when it already has the shape, else as `.base_dist`).
    """
    extra = len(prior.event_shape)
    batch = tuple(shape[: len(shape) - extra]) if extra else tuple(shape)
    return prior.expand(batch)


def warn_deprecated(old: str, new: str) -> None:
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
        warn_deprecated("param_priors", "priors")
        return self.priors

    @property
    def param_shapes(self):
        """Deprecated: use ``shapes``."""
        warn_deprecated("param_shapes", "shapes")
        return self.shapes

    @property
    def priors(self) -> Any:
        return {}

    @property
    def shapes(self) -> Any:
        return {}


def check_flat(transform, flat: Mapping[str, Any], ignore_missing: bool) -> dict[str, Any]:
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
            warn_deprecated("param_priors", "priors")
            priors = {**(param_priors or {}), **(priors or {})}
        if param_shapes is not None:
            warn_deprecated("param_shapes", "shapes")
            shapes = {**(param_shapes or {}), **(shapes or {})}
        if not callable(transform):
            raise ConfigError(f"transform: expected a callable, got {type(transform).__name__}")
        self.output_size = int(output_size)
        self.transform = transform
        self.vmap = bool(vmap)
        names = signature_params(transform)
        self._kwonly = keyword_only(transform)
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
        self._priors = {n: pri.get(n, default_prior()) for n in names}
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
            out[name] = expand(prior, shape)
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
        return check_flat(self, dict(nested_pars or {}), ignore_missing)

    def unpack_pars(self, flat_pars: Mapping[str, Any], ignore_missing: bool = False) -> Any:
        """Identity for single transforms (missing names raise unless `ignore_missing`)."""
        return check_flat(self, dict(flat_pars or {}), ignore_missing)


def keyword_only(fn: Callable[..., Any]) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


def signature_params(fn: Callable[..., Any]) -> tuple[str, ...]:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise ConfigError("transform: the function must take the latent vector first")
    return tuple(p.name for p in params[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


# --------------------------------------------------------------------- built-in maps
def add_bias(b, z):
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


def linear_transform(z, A):
    return A @ z


def affine_transform(z, A, b):
    return A @ z + add_bias(b, z)


def quadratic_transform(z, Q, A, b):
    return jnp.einsum("oij,i,j->o", Q, z, z) + A @ z + add_bias(b, z)


def offset_transform(z, b):
    return z + add_bias(b, z)


def noop_transform(z):
    return z


def scatter_transform(err, s):
    return jnp.sqrt(err**2 + s**2)


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


def check_output_shape(name: str, pred, expected: int) -> None:
    """Raise a clear error when a transform's output has the wrong size."""
    if pred.ndim != 2 or pred.shape[1] != expected:
        raise ShapeError(
            f"output {name!r}: the transform produced shape {tuple(pred.shape)}, "
            f"expected (n, {expected})"
        )

"""`Parameter`: a latent array with a `fixed` flag and `ParameterMetadata`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, TypeAlias, TypeGuard

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from distreqx.bijectors import AbstractBijector, Chain
from distreqx.distributions import AbstractDistribution, Transformed
from jaxtyping import Array, ArrayLike

from orrery.interface import ConfigError, ShapeError, ValueDomainError, close_matches

from ._codec import describe_plain, rebuild_plain
from ._errors import ConfigTypeError
from ._flat import flat_element, flat_names_of
from ._generations import refuse_v011_variable
from ._json04 import is_parax04_node, rebuild_parax04
from ._util import as_float_array, fast_set, is_concrete, plain_method_names, static_event_shape
from .bijectors import Inverse
from .metadata import Info, ParameterMetadata, as_name

__all__ = [
    "Parameter",
    "as_param",
    "is_fixed_param",
    "is_free_param",
    "is_param",
    "is_valid_param",
]

ValueLike = ArrayLike | Sequence[float] | Sequence[Sequence[float]]
"""A parameter value: a number, an array, or a (nested) list of numbers."""

BoundsLike = ArrayLike | Sequence[float] | Sequence[Sequence[float]]
"""``(low, high)``, or pairs of them broadcastable to ``(*shape, 2)``."""

ParamInput: TypeAlias = "Parameter | ValueLike | list[ParamInput] | dict[str, ParamInput]"
"""What `as_param` converts: parameters, values, and lists or dicts of them."""

ParamTree: TypeAlias = "Parameter | list[ParamTree] | dict[str, ParamTree]"
"""What `as_param` returns: a `Parameter`, or a list or dict of them (nested as given)."""

_CORE = ("name", "distribution", "transform", "bounds", "scale", "info")
# Keywords people plausibly mean as a core field; they must raise rather than go to `info`.
_ALIASES = {
    "bijector": "transform",
    "transformation": "transform",
    "transforms": "transform",
    "dist": "distribution",
    "distr": "distribution",
    "prior": "distribution",
    "bound": "bounds",
    "limits": "bounds",
    "names": "name",
    "label": "name",
    "scaling": "scale",
    "metadata_info": "info",
}


def _check_type(value: object, cls: type, arg: str) -> None:
    if value is not None and not isinstance(value, cls):
        raise ConfigTypeError(
            f"{arg}: expected a distreqx {cls.__name__} or None, got {type(value).__name__}"
        )


def _prepare_bounds(bounds: BoundsLike | None, shape: tuple[int, ...]) -> Array | None:
    if bounds is None:
        return None
    try:
        b = as_float_array(bounds)
    except TypeError:
        raise ConfigTypeError(
            f"bounds: expected an array of (low, high) pairs, got {type(bounds).__name__}"
        ) from None
    if b.shape[-1:] != (2,):
        if b.ndim >= 1 and b.shape[0] == 2:
            b = jnp.moveaxis(b, 0, -1)  # accept (low, high) given as two arrays
        else:
            raise ShapeError(f"bounds: expected shape (..., 2) of (low, high), got {b.shape}")
    try:
        b = jnp.broadcast_to(b, (*shape, 2))
    except ValueError:
        raise ShapeError(
            f"bounds: shape {b.shape} does not broadcast to the parameter shape {(*shape, 2)}"
        ) from None
    if is_concrete(b):
        arr = np.asarray(b)
        if np.isnan(arr).any():
            raise ValueDomainError(f"bounds: NaN in bounds {arr.tolist()}")
        if (arr[..., 0] > arr[..., 1]).any():
            raise ValueDomainError(f"bounds: need low <= high, got {arr.tolist()}")
    return b


def check_in_bounds(value: ArrayLike, meta: ParameterMetadata) -> None:
    """Refuse a concrete physical value outside the declared bounds (NaN included)."""
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if np.isnan(v).any():
        raise ValueDomainError(f"value: parameter {meta.name!r} got NaN in {v.tolist()}")
    if meta.bounds is None or not is_concrete(meta.bounds):
        return
    b = np.asarray(meta.bounds)
    if ((v < b[..., 0]) | (v > b[..., 1])).any():
        raise ValueDomainError(
            f"value: parameter {meta.name!r} value {v.tolist()} is outside its bounds {b.tolist()}"
        )


def _physical_to_latent(value: Array, meta: ParameterMetadata) -> Array:
    check_in_bounds(value, meta)
    if meta.transform is None:
        return value
    latent = meta.transform.inverse(value)
    if is_concrete(latent) and is_concrete(value):
        bad = ~np.isfinite(np.asarray(latent)) & np.isfinite(np.asarray(value))
        if bad.any():
            bounds = None if meta.bounds is None else np.asarray(meta.bounds).tolist()
            raise ValueDomainError(
                f"value: parameter {meta.name!r} value {np.asarray(value).tolist()} is outside "
                f"the domain of its transform {type(meta.transform).__name__} "
                f"(inverse gave {np.asarray(latent).tolist()}; bounds={bounds})"
            )
    return latent


def _defers(other: object) -> bool:
    """Modules that are not arrays (e.g. an ``Operator``) implement the reflected operation."""
    return isinstance(other, eqx.Module) and not hasattr(other, "__jax_array__")


def _check_distribution_shape(dist: object, shape: tuple[int, ...]) -> None:
    """A distribution is shared by every element (event shape ``()``) or matches the value."""
    event = static_event_shape(dist)
    if event is not None and event not in ((), tuple(shape)):
        raise ShapeError(
            f"distribution: event shape {event} is neither () (shared by every element) nor "
            f"the parameter's shape {tuple(shape)}"
        )


def _operand(other: Any) -> Any:
    """parax 0.4's ``jnp.array(other)`` for +, -, *, /: a list or tuple becomes an array."""
    return jnp.asarray(other) if isinstance(other, (list, tuple)) else other


def _split_kwargs(kwargs: dict[str, object], info: dict[str, object]) -> dict[str, Any]:
    """Core keywords by field name; other keywords go to `info`, near-misses raise."""
    core: dict[str, Any] = {}
    for key, val in kwargs.items():
        if key in _CORE:
            core[key] = val
        elif key in _ALIASES or close_matches(key, _CORE):
            hint = _ALIASES.get(key) or close_matches(key, _CORE)[0]
            raise ConfigError(
                f"Parameter got keyword {key!r}; did you mean {hint!r}? "
                f"(core keywords: {', '.join(_CORE)}; put custom metadata in info={{...}})"
            )
        else:
            info[key] = val
    return core


class Parameter(eqx.Module):
    """A named, optionally constrained and distribution-carrying array.

    The stored `latent_value` array lives in unconstrained space; `value` maps it
    through `transform` (physical, unscaled); using the parameter as an array gives
    ``value * scale``. A physical `value` given to the constructor is mapped through
    the inverse of `transform`; ``latent_value=`` sets the latent array directly.

    Args:
        value: physical value (scalar or array). Defaults to the distribution mean, else 0.
        fixed: whether `partition` treats it as constant.
        metadata: a `ParameterMetadata` to start from.
        n: vectorise a scalar value, bounds and names to length `n`.
        **kwargs: ``latent_value`` (alias ``latent``), ``name``, ``distribution``,
            ``transform``, ``bounds``, ``scale``, ``info``; any other keyword goes into
            `info` (misspelt core keywords raise `ConfigError`).

    Raises:
        ConfigError: a misspelt core keyword, or both `value` and `latent_value`.
        ValueDomainError: a value outside its bounds or the domain of its transform.
        ShapeError: `bounds`, names or `n` that do not match the value's shape.

    Example:
        >>> from orrery.parax.bijectors import Exp
        >>> p = Parameter(2.0, name="k", transform=Exp())
        >>> round(float(p.value), 4), round(float(p.latent_value), 4)
        (2.0, 0.6931)
    """

    latent_value: Array
    fixed: bool = eqx.field(static=True)
    metadata: ParameterMetadata

    def __init__(
        self,
        value: ValueLike | None = None,
        fixed: bool = False,
        metadata: ParameterMetadata | None = None,
        n: int | None = None,
        **kwargs: object,
    ):
        latent = _pop_latent(kwargs)
        if latent is not None and value is not None:
            raise ConfigError(
                "Parameter: give either value (physical) or latent_value (latent), not both"
            )
        if metadata is not None and not isinstance(metadata, ParameterMetadata):
            raise ConfigTypeError(
                f"metadata: expected ParameterMetadata, got {type(metadata).__name__}"
            )
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"n: expected a positive int or None, got {n!r}")
        info = dict(metadata.info) if metadata is not None else {}
        core = _split_kwargs(kwargs, info)
        user_info = core.pop("info", None)
        if user_info is not None and not isinstance(user_info, dict):
            raise ConfigTypeError(f"info: expected a dict, got {type(user_info).__name__}")
        info.update(user_info or {})
        base = metadata if metadata is not None else ParameterMetadata()
        dist = core.get("distribution", base.distribution)
        transform = core.get("transform", base.transform)
        _check_type(dist, AbstractDistribution, "distribution")
        _check_type(transform, AbstractBijector, "transform")
        name = core.get("name", base.name)
        scale = core.get("scale", base.scale)
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
            raise ConfigTypeError(f"scale: expected a number, got {type(scale).__name__}")
        if not math.isfinite(float(scale)):
            raise ValueDomainError(f"scale: expected a finite number, got {scale!r}")

        # dataclasses.replace(p, transform=...) keeps the physical value, not the latent one.
        replacing = metadata is not None and transform is not base.transform
        start, is_latent = _initial_array(value, latent, n, dist, base.transform, replacing)
        shape = tuple(start.shape)
        if n is not None and isinstance(name, (list, tuple)) and len(name) == 1:
            name = [f"{name[0]}_{i}" for i in range(n)]
        meta = ParameterMetadata(
            name=name,
            distribution=dist,
            transform=transform,
            bounds=_prepare_bounds(core.get("bounds", base.bounds), shape),
            scale=scale,
            info=Info(info),
        )
        _check_names(meta.name, shape)
        _check_distribution_shape(dist, shape)
        if is_latent:
            check_in_bounds(start if transform is None else transform.forward(start), meta)
            self.latent_value = start
        else:
            self.latent_value = _physical_to_latent(start, meta)
        self.fixed = bool(fixed)
        self.metadata = meta

    def __getattribute__(self, name: str):
        # Skip equinox's per-access `BoundMethod` pytree wrapping for our own methods.
        d = object.__getattribute__(self, "__dict__")
        if name in d:  # dataclass fields: plain attribute lookup
            return d[name]
        if name in _DIRECT_METHODS or name.startswith("__"):
            return object.__getattribute__(self, name)
        return eqx.Module.__getattribute__(self, name)

    # -- properties -----------------------------------------------------------------------
    @property
    def latent(self) -> Array:
        """Alias of `latent_value` (the unconstrained array)."""
        return self.latent_value

    @property
    def value(self) -> Array:
        """Physical, unscaled value (`transform(latent)`)."""
        t = self.metadata.transform
        return self.latent_value if t is None else t.forward(self.latent_value)

    @property
    def bounds(self) -> Array | None:
        """Physical bounds, shape ``(*shape, 2)``, or None."""
        return self.metadata.bounds

    @property
    def distribution(self) -> AbstractDistribution | None:
        """Distribution of the physical, unscaled value."""
        return self.metadata.distribution

    @property
    def latent_distribution(self) -> AbstractDistribution | None:
        """The physical distribution pulled back to latent space through the transform."""
        d, t = self.metadata.distribution, self.metadata.transform
        if d is None or t is None:
            return d
        return Transformed(d, Inverse(t))

    @property
    def transform(self) -> AbstractBijector | None:
        return self.metadata.transform

    @property
    def name(self) -> str | list[str] | None:
        n = self.metadata.name
        return list(n) if isinstance(n, tuple) else n

    @property
    def scale(self) -> float:
        return self.metadata.scale

    @property
    def info(self) -> dict:
        return dict(self.metadata.info)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.latent_value.shape)

    @property
    def size(self) -> int:
        return math.prod(self.latent_value.shape)

    # -- array behaviour ----------------------------------------------------------------------
    def __jax_array__(self, dtype=None) -> Array:
        v = self.value
        if self.metadata.scale != 1.0:
            v = v * self.metadata.scale
        return v if dtype is None else v.astype(dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.__jax_array__(), dtype=dtype)

    def __len__(self) -> int:
        """1 for a scalar parameter (as upstream parax), else the leading length."""
        return 1 if not self.shape else self.shape[0]

    def _scalar(self, kind: type) -> Any:
        if self.size != 1:
            raise ShapeError(
                f"parameter {self.metadata.name!r}: {kind.__name__}() needs a size-1 "
                f"parameter, got shape {self.shape}"
            )
        return kind(np.asarray(self.__jax_array__()).reshape(()))

    def __float__(self) -> float:
        return self._scalar(float)

    def __int__(self) -> int:
        return self._scalar(int)

    def __bool__(self) -> bool:
        return self._scalar(bool)

    def __complex__(self) -> complex:
        return self._scalar(complex)

    def __getitem__(self, idx):
        return self.__jax_array__()[idx]

    def __add__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.add(self.__jax_array__(), _operand(other))

    def __radd__(self, other):
        return jnp.add(_operand(other), self.__jax_array__())

    def __sub__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.subtract(self.__jax_array__(), _operand(other))

    def __rsub__(self, other):
        return jnp.subtract(_operand(other), self.__jax_array__())

    def __mul__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.multiply(self.__jax_array__(), _operand(other))

    def __rmul__(self, other):
        return jnp.multiply(_operand(other), self.__jax_array__())

    def __truediv__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.true_divide(self.__jax_array__(), _operand(other))

    def __rtruediv__(self, other):
        return jnp.true_divide(_operand(other), self.__jax_array__())

    def __pow__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.power(self.__jax_array__(), other)

    def __rpow__(self, other):
        return jnp.power(other, self.__jax_array__())

    def __matmul__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.matmul(self.__jax_array__(), other)

    def __rmatmul__(self, other):
        return jnp.matmul(other, self.__jax_array__())

    def __lt__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.less(self.__jax_array__(), other)

    def __le__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.less_equal(self.__jax_array__(), other)

    def __gt__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.greater(self.__jax_array__(), other)

    def __ge__(self, other):
        if _defers(other):
            return NotImplemented
        return jnp.greater_equal(self.__jax_array__(), other)

    def __neg__(self):
        return jnp.negative(self.__jax_array__())

    def __pos__(self):
        return self.__jax_array__()

    def __abs__(self):
        return jnp.abs(self.__jax_array__())

    # -- copies -------------------------------------------------------------------------------
    def as_fixed(self) -> Parameter:
        """A copy with ``fixed=True``."""
        return self if self.fixed else fast_set(self, fixed=True)

    def as_free(self) -> Parameter:
        """A copy with ``fixed=False``."""
        return fast_set(self, fixed=False) if self.fixed else self

    def copy(self) -> Parameter:
        """A shallow copy."""
        return fast_set(self)

    def _with_meta(self, **changes: Any) -> Parameter:
        return fast_set(self, metadata=fast_set(self.metadata, **changes))

    def with_value(self, value: ValueLike, *, latent: bool = False) -> Parameter:
        """A copy with a new physical (or, with ``latent=True``, latent) value.

        Args:
            value: the new value, broadcastable to the parameter's shape.
            latent: `value` is the latent (unconstrained) array.

        Returns:
            The updated copy.

        Raises:
            ShapeError: a value that does not broadcast to the parameter's shape.
            ValueDomainError: a value outside the bounds or the transform's domain.

        Example:
            >>> float(Parameter(1.0).with_value(3.0).value)
            3.0
        """
        value = _as_array(value, "value")
        if value.shape != self.shape:
            try:
                value = jnp.broadcast_to(value, self.shape)
            except ValueError:
                raise ShapeError(
                    f"parameter {self.metadata.name!r}: value shape {value.shape} does not "
                    f"match parameter shape {self.shape}"
                ) from None
        if latent:
            t = self.metadata.transform
            check_in_bounds(value if t is None else t.forward(value), self.metadata)
            new = value
        else:
            new = _physical_to_latent(value, self.metadata)
        return fast_set(self, latent_value=new)

    def with_name(self, name: str | Sequence[str] | None) -> Parameter:
        """A copy with a new name.

        Args:
            name: a str, a list of str matching the size, or None.

        Returns:
            The updated copy.

        Raises:
            ShapeError: a list of names of the wrong length.
        """
        name = as_name(name)
        _check_names(name, self.shape)
        return self._with_meta(name=name)

    def with_distribution(self, distribution: AbstractDistribution | None) -> Parameter:
        """A copy with a new physical-space distribution.

        Args:
            distribution: a distreqx distribution of the physical value, or None.

        Returns:
            The updated copy.

        Raises:
            ConfigError: not a distreqx distribution (also a `TypeError`).
            ShapeError: its event shape is neither ``()`` nor the parameter's shape.
        """
        _check_type(distribution, AbstractDistribution, "distribution")
        _check_distribution_shape(distribution, self.shape)
        return self._with_meta(distribution=distribution)

    def with_transform(self, transform: AbstractBijector | None) -> Parameter:
        """A copy with a new transform; the physical value is kept (the latent is recomputed).

        Args:
            transform: a distreqx bijector from latent to physical space, or None.

        Returns:
            The updated copy.

        Raises:
            ConfigError: not a distreqx bijector (also a `TypeError`).
            ValueDomainError: the value is outside the new transform's domain.
        """
        _check_type(transform, AbstractBijector, "transform")
        value = self.value
        meta = fast_set(self.metadata, transform=transform)
        return fast_set(self, metadata=meta, latent_value=_physical_to_latent(value, meta))

    def with_bounds(self, bounds: BoundsLike | None) -> Parameter:
        """A copy with new physical bounds.

        Args:
            bounds: ``(low, high)`` pairs broadcastable to ``(*shape, 2)``, or None.

        Returns:
            The updated copy.

        Raises:
            ShapeError: bounds of the wrong shape.
            ValueDomainError: NaN or inverted bounds, or the value outside the new bounds.
        """
        new = self._with_meta(bounds=_prepare_bounds(bounds, self.shape))
        check_in_bounds(new.value, new.metadata)
        return new

    def transformed(self, transform: AbstractBijector) -> Parameter:
        """Push the physical space through one more bijector.

        The latent value is kept; the transform becomes ``transform ∘ old``, the
        distribution its push-forward and the bounds are mapped (and re-sorted).

        Args:
            transform: a distreqx bijector applied to the physical value.

        Returns:
            The transformed copy.

        Raises:
            ConfigError: not a distreqx bijector (also a `TypeError`).
        """
        if not isinstance(transform, AbstractBijector):
            raise ConfigTypeError(
                f"transform: expected a distreqx AbstractBijector, got {type(transform).__name__}"
            )
        meta = self.metadata
        new_t = transform if meta.transform is None else Chain([transform, meta.transform])
        dist = None if meta.distribution is None else Transformed(meta.distribution, transform)
        bounds = meta.bounds
        if bounds is not None:
            lo, hi = transform.forward(bounds[..., 0]), transform.forward(bounds[..., 1])
            bounds = jnp.stack([jnp.minimum(lo, hi), jnp.maximum(lo, hi)], axis=-1)
        return self._with_meta(transform=new_t, distribution=dist, bounds=bounds)

    def flattened(self, separator: str = "_") -> list[Parameter]:
        """Split into scalar parameters (a scalar parameter gives ``[self]``).

        Names: a list of names of matching size is used as given, a str name ``v``
        becomes ``v_0, v_1, ...``.

        Args:
            separator: joins a str name and the element index.

        Returns:
            The scalar parameters.

        Raises:
            ShapeError: if a list of names does not match the size (a ValueError).
        """
        if self.shape == ():
            return [self]
        size = self.size
        names = flat_names_of(self.metadata.name, size, separator)
        return [flat_element(self, i, names[i]) for i in range(size)]

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        """Serialise to JSON, omitting empty fields (distreqx objects by constructor args)."""
        meta = self.metadata
        d: dict[str, Any] = {"value": np.asarray(self.value).tolist()}
        if self.fixed:
            d["fixed"] = True
        if meta.name is not None:
            d["name"] = self.name
        for key in ("distribution", "transform"):
            obj = getattr(meta, key)
            if obj is not None:
                d[key] = describe_plain(obj)
        if meta.bounds is not None:
            d["bounds"] = np.asarray(meta.bounds).tolist()
        if meta.scale != 1.0:
            d["scale"] = meta.scale
        if meta.info:
            d["info"] = dict(meta.info)
        return json.dumps(d)

    @classmethod
    def from_json(cls, s: str) -> Parameter:
        """Rebuild a parameter written by `to_json` (or by parax 0.4's `to_json`).

        Args:
            s: the JSON text.

        Returns:
            The `Parameter`.

        Example:
            >>> p = Parameter(2.0, name="k", units="s")
            >>> q = Parameter.from_json(p.to_json())
            >>> float(q.value), q.name, q.info
            (2.0, 'k', {'units': 's'})
        """
        d = json.loads(s)
        kwargs: dict[str, Any] = {}
        for key in ("name", "bounds", "scale", "info", "latent_value"):
            if key in d:
                kwargs[key] = d[key]
        for key in ("distribution", "transform"):
            if key in d:  # parax 0.4's layout, or orrery's own
                node = d[key]
                kwargs[key] = (
                    rebuild_parax04(node, key) if is_parax04_node(node) else rebuild_plain(node)
                )
        return cls(d.get("value"), fixed=d.get("fixed", False), **kwargs)


_DIRECT_METHODS = plain_method_names(Parameter)


def _pop_latent(kwargs: dict[str, object]) -> object:
    if "latent_value" in kwargs and "latent" in kwargs:
        raise ConfigError("Parameter: give latent_value or its alias latent, not both")
    if "latent" in kwargs:
        return kwargs.pop("latent")
    return kwargs.pop("latent_value", None)


def _initial_array(
    value: object,
    latent: object,
    n: int | None,
    dist: AbstractDistribution | None,
    old_transform: AbstractBijector | None,
    replacing: bool,
) -> tuple[Array, bool]:
    """The array a new `Parameter` starts from, and whether it is the latent one."""
    if latent is not None:
        lat = _as_array(latent, "latent_value")
        if not replacing:
            return (lat if n is None else _vectorise(lat, n, "latent_value")), True
        value = lat if old_transform is None else old_transform.forward(lat)
    elif value is None:
        value = _default_value(dist)
    physical = _as_array(value, "value")
    return (physical if n is None else _vectorise(physical, n, "value")), False


def _default_value(dist: AbstractDistribution | None) -> ArrayLike:
    if dist is None:
        return 0.0
    try:
        return dist.mean()
    except Exception:  # distributions without a mean fall back to 0
        return 0.0


def _as_array(value: object, arg: str) -> Array:
    try:
        return as_float_array(value)
    except TypeError:
        raise ConfigTypeError(
            f"{arg}: expected a number or an array, got {type(value).__name__}"
        ) from None


def _vectorise(value: Array, n: int, arg: str) -> Array:
    if value.ndim == 0:
        return jnp.full((n,), value)
    if value.shape[0] != n:
        raise ShapeError(f"{arg}: expected leading length n={n}, got shape {value.shape}")
    return value


def is_param(x: object) -> TypeGuard[Parameter]:
    """True for `Parameter` instances (parax 0.4's meaning: a plain array is not one).

    parax 0.11's `is_param` (True for arrays too) is `orrery.parax.v011.is_param`.

    Args:
        x: any object.

    Returns:
        Whether `x` is a `Parameter`.

    Raises:
        ConfigError: `x` is a parax 0.11 variable (use `orrery.parax.v011`).

    Example:
        >>> is_param(Parameter(1.0)), is_param(1.0)
        (True, False)
    """
    if isinstance(x, Parameter):
        return True
    refuse_v011_variable(x, "is_param")  # parax 0.11's is_param has another meaning
    return False


def is_valid_param(x: object) -> TypeGuard[Parameter]:
    """True for a `Parameter` that holds a latent array (not a `partition` placeholder).

    Args:
        x: any object.

    Returns:
        Whether it is one.
    """
    return isinstance(x, Parameter) and x.latent_value is not None


def is_free_param(x: object) -> TypeGuard[Parameter]:
    """True for a valid `Parameter` that is not fixed.

    Args:
        x: any object.

    Returns:
        Whether it is one.
    """
    return is_valid_param(x) and not x.fixed


def is_fixed_param(x: object) -> TypeGuard[Parameter]:
    """True for a valid `Parameter` that is fixed.

    Args:
        x: any object.

    Returns:
        Whether it is one.
    """
    return is_valid_param(x) and x.fixed


def as_param(x: ParamInput, **kwargs: Any) -> ParamTree:
    """`x` as a `Parameter`: parameters pass through, lists and dicts are converted itemwise.

    Args:
        x: a `Parameter`, a value, or a list or dict of them.
        **kwargs: passed to `Parameter` for converted values (``fixed=True`` included).

    Returns:
        A `Parameter`, or a list or dict of them (parax 0.4's meaning; parax 0.11's
        `as_param`, one array, is `orrery.parax.v011.as_param`).

    Raises:
        ConfigError: `x` is a parax 0.11 variable (use `orrery.parax.v011`).

    Example:
        >>> as_param([1.0, Parameter(2.0, name="b")], fixed=True)[0].fixed
        True
    """
    if isinstance(x, Parameter):
        return x
    refuse_v011_variable(x, "as_param")
    if isinstance(x, list):
        return [as_param(v, **kwargs) for v in x]
    if isinstance(x, dict):
        return {k: as_param(v, **kwargs) for k, v in x.items()}
    return Parameter(x, **kwargs)


def _check_names(name: object, shape: tuple[int, ...]) -> None:
    if isinstance(name, tuple):
        size = int(np.prod(shape, dtype=int))
        if len(name) != size:
            raise ShapeError(f"name: got {len(name)} names for a parameter of size {size}")

"""`Module`: an `equinox.Module` with named, string-addressable parameters.

The latent/physical rule used everywhere: values handed to, or returned to, the user
are *physical* (``transform(latent)``, unscaled unless ``scaled=True``); optimisation
works on the latent arrays that `partition` exposes; ``latent=True`` gives the latent
view where it is offered.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self, Unpack

import equinox as eqx
import jax
from distreqx.bijectors import AbstractBijector
from distreqx.distributions import AbstractDistribution
from jaxtyping import ArrayLike, PRNGKeyArray, PyTree

from orrery.interface import Draws

from . import _groups, _modtools
from ._converters import inject_converters, to_parameter
from ._field import ModuleMeta, field
from ._naming import ParamIndex, is_module, named_submodules
from ._selection import (
    ParamFilter,
    SubmoduleFilter,
    _DrawKeywords,
    _FlatSelection,
    _MapAllKeywords,
    _MapKeywords,
    _Selection,
)
from ._updates import value_of, with_params
from ._util import fast_set, plain_method_names
from .group import ParameterGroup
from .parameter import Parameter
from .sampling import draws_from, func_samples, sampled
from .uncertainty import func_jacobian, func_sensitivity, summary

__all__ = ["Module", "to_parameter"]


class Module(eqx.Module, metaclass=ModuleMeta):
    """An `equinox.Module` whose parameters can be listed and replaced by name.

    Fields annotated `Parameter` convert whatever they are given into a `Parameter`.
    Parameter names are built from attribute paths (see `orrery.parax._naming`).

    Attributes:
        name: optional name; replaces this module's segment in its parent's names.

    Example:
        >>> class Line(Module):
        ...     slope: Parameter
        ...     offset: Parameter
        ...     def __call__(self, x):
        ...         return self.slope * x + self.offset
        >>> line = Line(slope=2.0, offset=1.0)
        >>> line.param_names()
        ['slope', 'offset']
    """

    name: str | None = field(default=None, static=True, kw_only=True)
    _param_groups: tuple = field(default=(), kw_only=True, converter=tuple)
    _transparent: bool | None = field(default=None, static=True, kw_only=True)

    _parax_module: ClassVar[bool] = True
    __parax_transparent__: ClassVar[bool] = False

    def __getattribute__(self, name: str) -> Any:
        # equinox wraps every bound method in a pytree `BoundMethod`, which flattens the
        # whole module on each access; parax's own API methods skip that (they are not
        # meant to be passed through jit as pytrees), keeping big modules fast.
        d = object.__getattribute__(self, "__dict__")
        if name in d:  # dataclass fields: plain attribute lookup
            return d[name]
        if name in _DIRECT_METHODS or name.startswith("__"):
            return object.__getattribute__(self, name)
        return eqx.Module.__getattribute__(self, name)

    def __init_subclass__(cls, transparent: bool | None = None, **kwargs: Any):
        inject_converters(cls)
        super().__init_subclass__(**kwargs)
        if transparent is not None:
            cls.__parax_transparent__ = bool(transparent)

    # ``m[path]`` is a lookup by name; keep the legacy iteration protocol away from it.
    __iter__ = None

    def __getitem__(self, path: str) -> Any:
        """A parameter by name or flat name, else an attribute by dotted path.

        Args:
            path: a parameter name (``"slope"``, ``"head_w"``), a flat name of a vector
                parameter (``"w_1"``), or a dotted attribute path (``"head.w"``).

        Returns:
            The `Parameter` (a scalar one for a flat name) or the attribute.

        Raises:
            ConfigError: an unknown name, listing close matches (also a `KeyError`).

        Example:
            >>> class Line(Module):
            ...     slope: Parameter
            >>> float(Line(slope=2.0)["slope"].value)
            2.0
        """
        return _modtools.lookup(self, path)

    @property
    def saveable(self) -> Module:
        """A copy as `orrery.parax.load` would rebuild it: ``field(save=False)`` fields reset."""
        return _modtools.saveable(self)

    def validate_params(self, include_fixed: bool = True) -> Module:
        """Check every parameter's value; return the module unchanged if all are valid.

        A value is valid when it is finite, inside its bounds and inside the support of its
        distribution (a finite log-density).

        Args:
            include_fixed: check fixed parameters too.

        Returns:
            `self`.

        Raises:
            ValueDomainError: naming the first parameter with an invalid value.
        """
        return _modtools.validate_all(self, include_fixed)

    # -- traversal ------------------------------------------------------------------------
    def _index(self) -> ParamIndex:
        return ParamIndex(self)

    def path_to_param_name(self, path: Sequence[object]) -> str:
        """Fully qualified name of the parameter at a jax key path.

        Args:
            path: a key path from ``jax.tree_util.tree_flatten_with_path`` that leads to a
                `Parameter` (or into one).

        Returns:
            The parameter's name, as in `param_names`.
        """
        return _modtools.path_to_param_name(self, path)

    def iter_params(
        self,
        param_filter: ParamFilter = None,
        *,
        include_fixed: bool = False,
        flatten: bool = False,
        submodules: SubmoduleFilter = None,
    ) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(name, Parameter)`` pairs in flattening order.

        Args:
            param_filter: a name, names, `Parameter` object(s) or a predicate on names.
            include_fixed: include fixed parameters.
            flatten: split vector parameters into scalar ones named ``name_i``.
            submodules: restrict to parameters inside these submodules (objects or names).

        Yields:
            ``(name, Parameter)`` pairs.

        Raises:
            ConfigError: unknown names (listing close matches), or duplicate flat names.
        """
        yield from _modtools.iter_params(self, param_filter, include_fixed, flatten, submodules)

    def children(self) -> list[Module]:
        """The immediate parax submodules."""
        return _modtools.children(self)

    def submodules(self) -> list[Module]:
        """All nested parax submodules, depth first, excluding self."""
        return [m for _, _, m in named_submodules(self)]

    def copy(self) -> Module:
        """A deep copy."""
        return _copy.deepcopy(self)

    # -- inspection ---------------------------------------------------------------------------
    def named_params(
        self,
        param_filter: ParamFilter = None,
        *,
        include_fixed: bool = False,
        submodules: SubmoduleFilter = None,
    ) -> dict[str, Parameter]:
        """Parameters by fully qualified name, in flattening order (free ones by default).

        Args:
            param_filter: a name, names, Parameter object(s) or a predicate on names.
            include_fixed: include fixed parameters.
            submodules: restrict to parameters inside these submodules (objects or names).
        """
        return dict(
            self.iter_params(param_filter, include_fixed=include_fixed, submodules=submodules)
        )

    def named_param_values(
        self,
        *args: ParamFilter,
        scaled: bool = False,
        latent: bool = False,
        **kwargs: Unpack[_Selection],
    ) -> dict[str, jax.Array]:
        """Physical (unscaled) values by name.

        Args:
            scaled: multiply each value by its parameter's `scale`.
            latent: return the latent (unconstrained) arrays instead.

        Returns:
            ``{name: array}`` in flattening order.
        """
        return {n: value_of(p, scaled, latent) for n, p in self.iter_params(*args, **kwargs)}

    def param_names(self, *args: ParamFilter, **kwargs: Unpack[_Selection]) -> list[str]:
        """Parameter names in flattening order.

        Returns:
            The names (free parameters only unless ``include_fixed=True``).
        """
        return list(self.named_params(*args, **kwargs))

    def param(self, name: str, *args: ParamFilter, **kwargs: Unpack[_Selection]) -> Parameter:
        """One parameter by name (fixed ones included).

        Args:
            name: the parameter's name.

        Returns:
            The `Parameter`.

        Raises:
            ConfigError: an unknown name, listing close matches.
        """
        kwargs.setdefault("include_fixed", True)
        found = self.named_params([name], *args, **kwargs)
        return found[name]

    def params(self, *args: ParamFilter, **kwargs: Unpack[_Selection]) -> list[Parameter]:
        """Parameters as a list, in flattening order.

        Returns:
            The `Parameter` objects.
        """
        return list(self.named_params(*args, **kwargs).values())

    def param_value(self, name: str, *args: ParamFilter, **kwargs: Unpack[_Selection]) -> jax.Array:
        """One physical parameter value by name (fixed ones included).

        Args:
            name: the parameter's name.

        Returns:
            The physical (unscaled) value.
        """
        kwargs.setdefault("include_fixed", True)
        return self.named_param_values([name], *args, **kwargs)[name]

    def param_values(self, *args: ParamFilter, **kwargs: Unpack[_Selection]) -> list[jax.Array]:
        """Physical parameter values as a list, in flattening order.

        Returns:
            The physical (unscaled) values.
        """
        return list(self.named_param_values(*args, **kwargs).values())

    def named_flat_params(
        self,
        include_fixed: bool = False,
        submodules: SubmoduleFilter = None,
        *,
        param_filter: ParamFilter = None,
    ) -> dict[str, Parameter]:
        """Scalar parameters by flat name (vector parameters split into ``name_i``).

        Args:
            include_fixed: include fixed parameters.
            submodules: restrict to parameters inside these submodules.
            param_filter: a name, names, `Parameter` object(s) or a predicate on names.

        Returns:
            ``{flat name: scalar Parameter}``.
        """
        return dict(
            self.iter_params(
                param_filter, include_fixed=include_fixed, flatten=True, submodules=submodules
            )
        )

    def named_flat_param_values(
        self,
        scaled: bool = False,
        return_floats: bool = False,
        *,
        latent: bool = False,
        **kw: Unpack[_FlatSelection],
    ) -> dict[str, jax.Array] | dict[str, float]:
        """Scalar physical values by flat name.

        Args:
            scaled: multiply each value by its parameter's `scale`.
            return_floats: return Python floats instead of 0-d arrays.
            latent: return latent values instead.
            **kw: ``param_filter``, ``include_fixed``, ``submodules``.

        Returns:
            ``{flat name: value}``.
        """
        return _modtools.named_flat_values(self, scaled, return_floats, latent, kw)

    def flat_param_names(self, *args: Any, **kwargs: Any) -> list[str]:
        """Flat parameter names (vector parameters split into ``name_i``).

        Returns:
            The flat names, in the order of `flat_param_values`.
        """
        return list(self.named_flat_params(*args, **kwargs))

    def flat_params(self, *args: Any, **kwargs: Any) -> list[Parameter]:
        """Flat (scalar) parameters as a list.

        Returns:
            The scalar `Parameter` objects.
        """
        return list(self.named_flat_params(*args, **kwargs).values())

    def flat_param_values(
        self,
        include_fixed: bool = False,
        submodules: SubmoduleFilter = None,
        *,
        scaled: bool = False,
        latent: bool = False,
        param_filter: ParamFilter = None,
    ) -> jax.Array:
        """All selected physical values raveled into one 1-D array (flat-name order).

        Args:
            include_fixed: include fixed parameters.
            submodules: restrict to parameters inside these submodules.
            scaled: multiply each value by its parameter's `scale`.
            latent: return latent values instead.
            param_filter: a name, names, `Parameter` object(s) or a predicate on names.

        Returns:
            A 1-D array, the inverse of `with_params` given an array.
        """
        return _modtools.flat_values(self, include_fixed, submodules, scaled, latent, param_filter)

    @property
    def num_params(self) -> int:
        """Number of free parameters."""
        return _modtools.count_free(self, flat=False)

    @property
    def num_flat_params(self) -> int:
        """Number of free scalar (flattened) parameters."""
        return _modtools.count_free(self, flat=True)

    # -- parameter updates --------------------------------------------------------------------
    def with_params(
        self,
        params: Mapping[str, Parameter | ArrayLike] | ArrayLike | None = None,
        check_missing: bool = False,
        check_unknown: bool = True,
        fix_others: bool = False,
        include_fixed: bool = False,
        *,
        latent: bool = False,
        **param_kwargs: Parameter | ArrayLike,
    ) -> Self:
        """A copy with parameters replaced.

        Args:
            params: ``{name: Parameter}`` (replaces the object), ``{name: value}``
                (physical values; flat names like ``w_1`` set single elements), or a
                1-D array of every selected flat value in `flat_param_names` order.
            check_missing: require every selected parameter to be given.
            check_unknown: raise on unknown names (listing close matches).
            fix_others: fix the parameters that were not given.
            include_fixed: let an array cover fixed parameters too.
            latent: values are latent rather than physical.
            **param_kwargs: more ``name=value`` updates.


        Raises:
            ConfigError: unknown or missing names.
            ShapeError: an array of the wrong size.
            ValueDomainError: a value outside its bounds or its transform's domain.

        Example:
            >>> class Line(Module):
            ...     slope: Parameter
            ...     offset: Parameter
            >>> Line(slope=2.0, offset=1.0).with_params({"slope": 3.0}).param_values()
            [Array(3., dtype=float32), Array(1., dtype=float32)]
        """
        return with_params(
            self,
            params,
            check_missing,
            check_unknown,
            fix_others,
            include_fixed,
            latent,
            param_kwargs,
        )

    def with_mapped_params(
        self,
        mapper: Callable[[Parameter], Parameter],
        param_filter: ParamFilter = None,
        *,
        map_others: Callable[[Parameter], Parameter] | None = None,
        prefixes: bool = False,
        include_fixed: bool = False,
        ignore_unknown: bool = False,
    ) -> Self:
        """A copy with `mapper` applied to the selected parameters.

        Args:
            mapper: ``Parameter -> Parameter`` for the selected parameters.
            param_filter: a name, names, `Parameter` object(s) or a predicate; None selects all.
            map_others: ``Parameter -> Parameter`` for the parameters not selected.
            prefixes: names in `param_filter` also select every name they prefix.
            include_fixed: select fixed parameters too.
            ignore_unknown: skip unknown names instead of raising.
        """
        return _modtools.mapped_params(
            self, mapper, param_filter, map_others, prefixes, include_fixed, ignore_unknown
        )

    def with_transformed_params(
        self,
        bijector: AbstractBijector,
        param_filter: ParamFilter = None,
        **kwargs: Unpack[_MapAllKeywords],
    ) -> Self:
        """Apply `Parameter.transformed` with `bijector` to the selected parameters.

        Args:
            bijector: the distreqx bijector to push the physical space through.
            param_filter: the parameters to transform; None selects all.
        """
        return self.with_mapped_params(lambda p: p.transformed(bijector), param_filter, **kwargs)

    def with_fixed_params(
        self, param_filter: ParamFilter, free_others: bool = False, **kwargs: Unpack[_MapKeywords]
    ) -> Self:
        """Fix the selected parameters.

        Args:
            param_filter: the parameters to fix.
            free_others: free every other parameter.
        """
        return _modtools.fix_or_free(self, param_filter, True, free_others, kwargs)

    def with_free_params(
        self,
        param_filter: ParamFilter,
        *,
        fix_others: bool = False,
        **kwargs: Unpack[_MapKeywords],
    ) -> Self:
        """Free the selected parameters.

        Args:
            param_filter: the parameters to free.
            fix_others: fix every other parameter.
        """
        return _modtools.fix_or_free(self, param_filter, False, fix_others, kwargs)

    def with_free_params_only(
        self, param_filter: ParamFilter, **kwargs: Unpack[_MapKeywords]
    ) -> Self:
        """Free only the selected parameters; fix all others.

        Args:
            param_filter: the parameters to free.
        """
        return self.with_free_params(param_filter, fix_others=True, **kwargs)

    def with_all_params_fixed(self, **kwargs: bool) -> Self:
        """Fix every parameter.

        Args:
            **kwargs: as parax 0.4, the keywords of `with_free_params`: `fix_others` (True,
                the default; False would fix nothing and raises), `include_fixed`,
                `prefixes` and `ignore_unknown` (no effect when every parameter is selected).

        Raises:
            ConfigError: `fix_others=False`, or any other keyword (also a `TypeError`).
        """
        mapping = _modtools.all_params_keywords(kwargs, "fix_others", "with_all_params_fixed")
        return self.with_mapped_params(lambda p: p.as_fixed(), None, **mapping)

    def with_all_params_free(self, **kwargs: bool) -> Self:
        """Free every parameter.

        Args:
            **kwargs: as parax 0.4, the keywords of `with_free_params`: `include_fixed`
                (True, the default; False would free nothing and raises), `fix_others`,
                `prefixes` and `ignore_unknown` (no effect when every parameter is selected).

        Raises:
            ConfigError: `include_fixed=False`, or any other keyword (also a `TypeError`).
        """
        mapping = _modtools.all_params_keywords(kwargs, "include_fixed", "with_all_params_free")
        return self.with_mapped_params(lambda p: p.as_free(), None, **mapping)

    # -- parameter groups ---------------------------------------------------------------------
    def param_groups(
        self, include_fixed: bool = False, explicit_only: bool = False
    ) -> list[ParameterGroup]:
        """Parameter groups of this module and its submodules, names in this module's scope.

        Groups declared higher up win: a parameter claimed by a parent group is removed from
        submodule groups. Without `explicit_only`, every ungrouped flat parameter gets a
        singleton group carrying its own distribution.

        Args:
            include_fixed: keep groups that contain fixed parameters.
            explicit_only: only the groups added with `with_param_groups`.

        Returns:
            The `ParameterGroup` objects.
        """
        return _groups.param_groups(self, include_fixed, explicit_only)

    def with_param_groups(self, param_groups: ParameterGroup | Iterable[ParameterGroup]) -> Self:
        """Add group(s); an existing group sharing any parameter is dropped whole.

        Args:
            param_groups: a `ParameterGroup` or a sequence of them, naming flat parameters.


        Raises:
            ConfigError: a group names an unknown flat parameter.
        """
        return _groups.with_param_groups(self, param_groups)

    def with_demoted_param_groups(self) -> Self:
        """Move each group to the deepest submodule that holds all its parameters."""
        return _groups.demoted(self)

    def with_no_param_groups(self) -> Self:
        """Remove every parameter group, recursively."""
        return _groups.without_groups(self)

    # -- distributions ------------------------------------------------------------------------
    def with_mapped_distributions(
        self,
        mapper: Callable[[AbstractDistribution | None], AbstractDistribution | None],
        dist_filter: Callable[[AbstractDistribution], bool] | None = None,
        *,
        map_others: Callable[[AbstractDistribution], AbstractDistribution | None] | None = None,
        param_groups: bool = False,
    ) -> Self:
        """Map parameter distributions (or, with ``param_groups=True``, group distributions).

        Args:
            mapper: ``distribution -> distribution``. Without `dist_filter` it is called for
                every parameter, with None for those without a distribution.
            dist_filter: a predicate on distributions (None for a parameter without one)
                selecting those to map.
            map_others: applied to the distributions `dist_filter` rejects.
            param_groups: map the distributions of explicit parameter groups instead.
        """
        return _groups.mapped_distributions(self, mapper, dist_filter, map_others, param_groups)

    def with_uniform_distributions(
        self,
        percentage: float,
        param_filter: ParamFilter = None,
        *,
        respect_bounds: bool = False,
        remove_param_groups: bool = True,
        zero_values: str = "keep",
        **kwargs: Unpack[_MapAllKeywords],
    ) -> Self:
        """Uniform distributions ``value * (1 ± percentage)`` on the selected parameters.

        Args:
            percentage: the fractional half-width (0.1 gives ±10%), positive.
            param_filter: the parameters to change; None selects every free parameter.
            respect_bounds: clip the uniform ranges to the parameters' bounds.
            remove_param_groups: drop every parameter group first, recursively.
            zero_values: ``"keep"``: all-zero parameters keep their distribution and bounds.


        Raises:
            ValueDomainError: a non-positive `percentage`, or a vector parameter with some
                (not all) zero elements.
        """
        return _groups.uniform_distributions(
            self, percentage, param_filter, respect_bounds, remove_param_groups, zero_values, kwargs
        )

    # -- fields and submodules ----------------------------------------------------------------
    @classmethod
    def with_defaults(cls, *args: object, **kwargs: object) -> type:
        """A subclass of this type whose constructor defaults to the given arguments.

        Returns:
            The new class.
        """
        return _modtools.with_defaults(cls, args, kwargs)

    def merged(self, modules: Module | Iterable[Module]) -> Self:
        """Take the free parameters and explicit groups of other module(s) into this one.

        Args:
            modules: a module or a sequence of modules with parameters of the same names.
        """
        return _modtools.merged(self, modules)

    def with_modules(self, modules: Module | Iterable[Module]) -> Self:
        """Alias of `merged`.

        Args:
            modules: a module or a sequence of modules.
        """
        return _modtools.merged(self, modules)

    def with_fields(self, *args: Mapping[str, object], **kwargs: object) -> Self:
        """A copy with fields replaced (converters applied)."""
        return _modtools.with_fields(self, *args, **kwargs)

    def with_name(self, name: str | None) -> Self:
        """A copy with a different name.

        Args:
            name: the new name, or None.
        """
        return fast_set(self, name=name)

    def with_attrs(self, *args: object, **kwargs: object) -> Self:
        """A copy with attributes replaced by dotted path."""
        return _modtools.with_attrs(self, args, kwargs)

    def with_submodules(self, *args: object, **kwargs: object) -> Self:
        """Replace submodules addressed by their parameter-style names."""
        return _modtools.with_submodules(self, args, kwargs)

    def with_submodule_fields(
        self, submodule: str | Sequence[str], *args: Mapping[str, object], **kwargs: object
    ) -> Self:
        """Field replacements on a nested submodule addressed by dotted attribute path.

        Args:
            submodule: the dotted path (or its parts) of the submodule.
            *args: mappings of field names to values.
            **kwargs: field names and values.
        """
        return _modtools.with_submodule_fields(self, submodule, args, kwargs)

    def with_free_submodules(
        self, submodules: SubmoduleFilter, fix_others: bool = False, include_fixed: bool = True
    ) -> Self:
        """Free every parameter inside the given submodules.

        Args:
            submodules: submodule objects or names.
            fix_others: fix every other parameter.
            include_fixed: also free parameters that are fixed now.
        """
        names = self.param_names(include_fixed=include_fixed, submodules=submodules)
        return self.with_free_params(names, fix_others=fix_others)

    def with_free_submodules_only(
        self, *args: Any, include_fixed: bool = False, **kwargs: Any
    ) -> Self:
        """Free only the parameters of the given submodules; fix everything else.

        Args:
            include_fixed: also free parameters that are fixed now.
        """
        kwargs.setdefault("fix_others", True)
        return self.with_free_submodules(*args, include_fixed=include_fixed, **kwargs)

    def with_fixed_submodules(self, submodules: SubmoduleFilter) -> Self:
        """Fix every parameter inside the given submodules.

        Args:
            submodules: submodule objects or names.
        """
        names = self.param_names(include_fixed=True, submodules=submodules)
        return self.with_fixed_params(names)

    # -- sampling and uncertainty ---------------------------------------------------------------
    def sampled(self, key: PRNGKeyArray | None = None, **kwargs: object) -> Self:
        """`orrery.parax.sampled` of this module: free parameters drawn from their priors.

        Args:
            key: a JAX PRNG key (a fixed default key when None).
        """
        return sampled(self, key, **kwargs)

    def func_samples(
        self,
        func: Callable[[Self, PyTree], PyTree],
        args: PyTree,
        *,
        key: PRNGKeyArray,
        num_samples: int = 1000,
    ) -> PyTree:
        """`orrery.parax.func_samples` of this module: ``func(sample, args)``, vmapped.

        Args:
            func: ``func(module, args) -> pytree``; `args` is passed to it.
            key: a JAX PRNG key; `num_samples` sets how many samples.
        """
        return func_samples(self, func, args, key=key, num_samples=num_samples)

    def func_jacobian(
        self, func: Callable[[Self, PyTree], ArrayLike], args: PyTree
    ) -> dict[str, jax.Array]:
        """`orrery.parax.func_jacobian` of this module: ``{flat name: d func / d value}``.

        Args:
            func: ``func(module, args) -> array``; `args` is passed to it.
        """
        return func_jacobian(self, func, args)

    def func_sensitivity(
        self,
        func: Callable[[Self, PyTree], ArrayLike],
        args: PyTree,
        kind: str = "relative",
        norm: float | str | None = None,
    ) -> dict[str, jax.Array] | jax.Array:
        """`orrery.parax.func_sensitivity` of this module.

        Args:
            func: ``func(module, args) -> array``; `args` is passed to it.
            kind: ``"relative"``, ``"semi-relative"`` or ``"absolute"``; `norm` combines them.
        """
        return func_sensitivity(self, func, args, kind, norm)

    def summary(self, covariance: ArrayLike | None = None) -> str:
        """A text table: name, value, stderr, fixed, bounds, distribution.

        Args:
            covariance: from `orrery.parax.covariance`, for the stderr column.

        Raises:
            ShapeError: a covariance of the wrong shape.
            ValueDomainError: negative or non-finite variances.
        """
        return summary(self, covariance)

    def to_draws(
        self,
        key: PRNGKeyArray | None = None,
        num_samples: int = 1000,
        **kwargs: Unpack[_DrawKeywords],
    ) -> Draws:
        """`orrery.parax.draws_from` of this module: `orrery.interface.Draws` by flat name.

        Args:
            key: a JAX PRNG key; `num_samples` sets how many samples.
        """
        return draws_from(self, key=key, num_samples=num_samples, **kwargs)


_DIRECT_METHODS = plain_method_names(Module) - {"__call__"}


def _is_parax_module(x: object) -> bool:
    return is_module(x)

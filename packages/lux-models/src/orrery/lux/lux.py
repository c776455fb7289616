"""Lux: a latent-variable model in which every output is a transform of a latent vector."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
from jaxtyping import Array, Float
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta, AutoGuide
from numpyro.infer.initialization import init_to_value

from orrery.interface import (
    ConfigError,
    ConfigTypeError,
    ShapeError,
    check_positive_int,
)

from ._likelihood import (
    as_lux_data,
    check_errors,
    check_infinite_data,
    effective_err,
    latents_prior_distribution,
    output_names,
)
from ._names import check_known, closest_hint, transform_names
from .data import LuxData, OutputData
from .optimize import optimize_iterative
from .transforms import AbstractTransform, check_output_shape

__all__ = ["LVM", "Lux", "LuxModel", "as_lux_data", "effective_err", "output_names"]


def _latents_and_pars(first, second, latents, pars):
    """`(latents, pars)` from either argument order of `predict_outputs`, read from types."""
    given = [a for a in (first, second) if a is not None]
    maps = [a for a in given if isinstance(a, Mapping)]
    arrays = [a for a in given if not isinstance(a, Mapping)]
    if len(maps) > 1 or len(arrays) > 1:
        raise ConfigTypeError(
            "predict_outputs: pass one parameter dict and at most one latents array, as "
            "(latents, pars) or (pars, latents=None); got "
            f"{[type(a).__name__ for a in given]}"
        )
    if (maps and pars is not None) or (arrays and latents is not None):
        raise ConfigTypeError("predict_outputs: latents or pars given twice")
    pars = maps[0] if maps else pars
    latents = arrays[0] if arrays else latents
    if not isinstance(pars, Mapping):
        raise ConfigTypeError(f"pars: expected a dict of parameters, got {type(pars).__name__}")
    if latents is None:
        if "latents" not in pars:
            raise ConfigError("latents: not given, and pars has no 'latents' entry")
        latents = pars["latents"]
    return latents, pars


class Lux(eqx.Module):
    """A generative latent-variable model with several outputs.

    Every object `n` has a latent vector `z_n` (`latent_size`); each
    registered output is `y = data_transform(z) + noise` with the noise
    standard deviation `err_transform(err)` (the observed `err` when no
    error transform is given; see `effective_err`).

    numpyro site names: `latents`; `<out>:<param>` (`<out>:<i>:<param>`
    inside a `TransformSequence`); `<out>:err:<param>`; observed
    `obs:<out>`. Parameters are handed around nested:
    `{"flux": {"data": {...} or (...), "err": {...}}, "latents": array}`.

    Args:
        latent_size: the size of every object's latent vector.

    Raises:
        ConfigError: when `latent_size` is not a positive int.

    Example:
        >>> import jax, numpy as np
        >>> from orrery.lux import Lux, LuxData, OutputData, LinearTransform
        >>> model = Lux(latent_size=2)
        >>> model.register_output("flux", LinearTransform(output_size=8))
        >>> data = LuxData(flux=OutputData(np.zeros((20, 8)), err=0.1))
        >>> params, _ = model.optimize(data, num_steps=10, rng_key=jax.random.key(0))
        >>> params["latents"].shape
        (20, 2)
    """

    latent_size: int = eqx.field(static=True)
    outputs: dict = eqx.field(static=True)

    def __init__(self, latent_size: int):
        if isinstance(latent_size, bool) or not isinstance(latent_size, int) or latent_size < 1:
            raise ConfigError(f"latent_size: expected a positive int, got {latent_size!r}")
        self.latent_size = int(latent_size)
        self.outputs = {}

    # ------------------------------------------------------------------ outputs
    def register_output(
        self,
        name: str,
        data_transform: AbstractTransform,
        err_transform: AbstractTransform | None = None,
    ) -> None:
        """Register an output ``name`` predicted by ``data_transform`` from the latents.

        Args:
            name: the output's name (the key of its data in `LuxData`).
            data_transform: maps latents to the output.
            err_transform: optional; maps the observed `err` (0 when the data
                have none) to the likelihood's standard deviation.

        Raises:
            ConfigError: (a `ValueError`) when `name` is empty, contains `':'`
                (reserved for site names) or is already registered.
            ConfigTypeError: (a `TypeError`) when `name` is not a str or a
                transform is not a transform.
        """
        if not isinstance(name, str):
            raise ConfigTypeError(f"name: expected a str, got {type(name).__name__}")
        if not name:
            raise ConfigError("name: expected a non-empty str")
        if ":" in name:
            raise ConfigError(f"name: {name!r} contains ':', which is reserved for site names")
        if name in ("latents", "obs") or name in self.outputs:
            raise ConfigError(f"name: {name!r} is already in use")
        for arg, t in (("data_transform", data_transform), ("err_transform", err_transform)):
            if (t is not None or arg == "data_transform") and not isinstance(t, AbstractTransform):
                raise ConfigTypeError(f"{arg}: expected a transform, got {type(t).__name__}")
        self.outputs[name] = (data_transform, err_transform)

    def _names(self, names) -> list[str]:
        if names is None:
            return list(self.outputs)
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            if n not in self.outputs:
                raise ConfigError(f"names: no output {n!r}; registered: {list(self.outputs)}")
        return names

    # ------------------------------------------------------------------ numpyro
    def setup_numpyro(
        self,
        latents: Float[Array, "n latents"],
        data: LuxData,
        names: list[str] | None = None,
    ) -> dict[str, Any]:
        """Sample every output's parameters, predict, and observe the data.

        Returns:
            The sampled parameters as upstream, ``{name: {param: value}}``: the
            data transform's names (``"i:name"`` in a sequence) with the err
            transform's merged in. `custom_model` receives this.
        """
        data = as_lux_data(data)
        n = latents.shape[0]
        pars: dict[str, Any] = {}
        for name in output_names(self, data, names):
            dt, et = self.outputs[name]
            od: OutputData = data[name]
            dflat = {
                p: numpyro.sample(f"{name}:{p}", prior)
                for p, prior in dt.get_expanded_priors(self.latent_size, n).items()
            }
            pred = dt.apply(latents, **dflat)
            check_output_shape(name, pred, od.size)
            eflat = {}
            if et is not None:
                eflat = {
                    p: numpyro.sample(f"{name}:err:{p}", prior)
                    for p, prior in et.get_expanded_priors(od.size, n).items()
                }
            err = effective_err(od, et, eflat)
            mask = od.mask
            y = jnp.where(mask, od.data, 0.0)
            sd = jnp.where(mask, err, 1.0)
            numpyro.sample(f"obs:{name}", dist.Normal(pred, sd).mask(mask).to_event(2), obs=y)
            # upstream's layout: the output's site names (a sequence's "i:name"),
            # its err-transform's merged in (they win a clash, as upstream)
            pars[name] = {**dflat, **eflat}
        return pars

    def default_numpyro_model(
        self,
        data: LuxData,
        latents_prior: dist.Distribution | bool | None = None,
        fixed_pars: dict[str, Any] | None = None,
        names: list[str] | None = None,
        custom_model: Callable[[Array, dict[str, Any], LuxData], None] | None = None,
    ) -> None:
        """The default numpyro model: latent prior, output priors, Gaussian likelihood.

        Args:
            data: observed outputs.
            latents_prior: None (unit Normal), False (improper flat prior) or a
                Distribution (broadcast to ``(n, latent_size)``).
            fixed_pars: parameters to condition on (nested or flat site names).
            names: outputs to include (default all).
            custom_model: ``f(latents, pars, data)`` adding further sites.
        """
        data = as_lux_data(data)
        flat_fixed = self._flat_fixed(fixed_pars, data.data_size)

        def body():
            prior = latents_prior_distribution(latents_prior, data.data_size, self.latent_size)
            latents = jnp.asarray(numpyro.sample("latents", prior))
            pars = self.setup_numpyro(latents, data, names=names)
            if custom_model is not None:
                custom_model(latents, pars, data)

        if flat_fixed:
            with numpyro.handlers.condition(data=flat_fixed):
                body()
        else:
            body()

    def _flat_fixed(
        self, fixed_pars, data_size: int | None = None, what: str = "fixed_pars"
    ) -> dict[str, Any]:
        """`fixed_pars` (nested or flat site names) as flat site names, every name checked.

        Raises:
            ConfigError: for a name that is no parameter of the model (a
                misspelt output or parameter would otherwise be ignored), naming
                the closest valid name.
            ShapeError: for `latents` that are not `(data_size, latent_size)`
                (numpyro would broadcast e.g. one row over every object).
        """
        if not fixed_pars:
            return {}
        if not isinstance(fixed_pars, Mapping):
            raise ConfigTypeError(
                f"{what}: expected a dict of parameters, got {type(fixed_pars).__name__}"
            )
        if data_size is not None and "latents" in fixed_pars:
            shape = tuple(jnp.shape(fixed_pars["latents"]))
            if shape != (data_size, self.latent_size):
                raise ShapeError(
                    f"{what}['latents']: expected shape ({data_size}, {self.latent_size}) "
                    f"(objects in the data, latent_size), got {shape}"
                )
        if all(":" in k or k == "latents" for k in fixed_pars) and not any(
            k in self.outputs for k in fixed_pars
        ):
            flat = dict(fixed_pars)
        else:
            check_known(
                [k for k in fixed_pars if ":" not in k], (*self.outputs, "latents"), "fixed_pars"
            )
            for key, val in fixed_pars.items():
                if key in self.outputs and isinstance(val, Mapping):
                    check_known(val, ("data", "err"), f"fixed_pars[{key!r}]")
            flat = self.pack_numpyro_pars(fixed_pars, ignore_missing=True)
        check_known(flat, self._site_names(data_size), "fixed_pars")
        return flat

    def _site_names(self, data_size: int | None = None) -> tuple[str, ...]:
        """Every numpyro parameter site: `latents`, `<out>:<p>`, `<out>:err:<p>`."""
        names = ["latents"]
        for name, (dt, et) in self.outputs.items():
            names += [f"{name}:{p}" for p in transform_names(dt, self.latent_size, data_size)]
            if et is not None:
                size = dt.output_size_for(self.latent_size)
                names += [f"{name}:err:{p}" for p in transform_names(et, size, data_size)]
        return tuple(names)

    def optimize(
        self,
        data: LuxData,
        num_steps: int,
        rng_key: Array,
        optimizer: Any = None,
        latents_prior: dist.Distribution | bool | None = None,
        custom_model: Callable[[Array, dict[str, Any], LuxData], None] | None = None,
        fixed_pars: dict[str, Any] | None = None,
        names: list[str] | None = None,
        svi_run_kwargs: dict[str, Any] | None = None,
        guide: type[AutoGuide] | AutoGuide | None = None,
        progress: bool = False,
        initial_params: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], Any]:
        """Fit by stochastic variational inference (MAP with the default ``AutoDelta`` guide).

        Args:
            data: observed outputs.
            num_steps: SVI steps.
            rng_key: JAX key.
            optimizer: a numpyro optimizer or an optax transformation; default
                `numpyro.optim.Adam(step_size=1e-2)`.
            latents_prior: see `default_numpyro_model`.
            custom_model: see `default_numpyro_model`.
            fixed_pars: see `default_numpyro_model`.
            names: see `default_numpyro_model`.
            svi_run_kwargs: extra keywords for `SVI.run` (default
                `progress_bar=False`).
            guide: None (`AutoDelta`), a guide class (instantiated with the
                model) or a ready guide instance (used as is).
            progress: show numpyro's progress bar (pollux 0.1.0's argument;
                `svi_run_kwargs={"progress_bar": ...}` still wins).
            initial_params: nested or flat starting values for the default
                `AutoDelta` guide (pollux 0.1.0's argument); names are checked.

        Returns:
            `(params, svi_result)`: `params` nested, holding only what was
            optimised (the guide's medians; as upstream, `fixed_pars` are not
            repeated: merge them with `{**fixed_pars, **params}`), and
            `svi_result` from numpyro.

        Registered outputs the data do not hold are left out of the fit (as
        upstream), so a model trained on flux and labels predicts labels from
        flux alone.

        Raises:
            ConfigTypeError: (a `TypeError`) for a `guide` that is none of the above.
            ConfigError: for `num_steps` < 1, data holding no registered output,
                or a `fixed_pars` name that is no parameter of the model.
            ValueDomainError: for zero `err` on an output without `err_transform`,
                or `+inf`/`-inf` data values (missing values are NaN).
        """
        if not (
            guide is None
            or isinstance(guide, AutoGuide)
            or (isinstance(guide, type) and issubclass(guide, AutoGuide))
        ):
            raise ConfigTypeError(
                f"guide must be None, an AutoGuide subclass or an AutoGuide instance, got {guide!r}"
            )
        check_positive_int(num_steps, "num_steps")
        data = as_lux_data(data)
        check_errors(self, data, names)
        check_infinite_data(self, data, names)
        n = data.data_size
        self._flat_fixed(fixed_pars, n)  # fail on a misspelt name before SVI
        if optimizer is None:
            optimizer = numpyro.optim.Adam(step_size=1e-2)
        elif isinstance(optimizer, optax.GradientTransformation):
            optimizer = numpyro.optim.optax_to_numpyro(optimizer)
        model = self.default_numpyro_model
        if guide is None and initial_params:
            init = {
                k: jnp.asarray(v)
                for k, v in self._flat_fixed(initial_params, n, "initial_params").items()
            }
            guide = AutoDelta(model, init_loc_fn=init_to_value(values=init))
        elif guide is None:
            guide = AutoDelta(model)
        elif isinstance(guide, type):
            guide = guide(model)
        svi = SVI(model, guide, optimizer, Trace_ELBO())
        run_kw = {"progress_bar": bool(progress), **(svi_run_kwargs or {})}
        # as upstream: SVI (and AutoDelta's initial point) on the first half of a split
        svi_key = jax.random.split(rng_key, 2)[0]
        result = svi.run(
            svi_key,
            int(num_steps),
            data,
            latents_prior=latents_prior,
            fixed_pars=fixed_pars,
            names=names,
            custom_model=custom_model,
            **run_kw,
        )
        if hasattr(guide, "median"):
            flat = guide.median(result.params)
        else:
            flat = dict(result.params)
        return self.unpack_numpyro_pars(flat, ignore_missing=True), result

    def optimize_iterative(
        self,
        data: LuxData,
        blocks=None,
        fixed_pars=None,
        max_cycles: int = 10,
        tol: float = 1e-4,
        rng_key=None,
        initial_params=None,
        latents_prior=None,
        progress: bool = True,
        record_history: bool = False,
        block_options: dict[str, dict[str, Any]] | None = None,
    ):
        """Block coordinate descent; see [optimize_iterative][orrery.lux.optimize_iterative]."""
        return optimize_iterative(
            self,
            data,
            blocks=blocks,
            fixed_pars=fixed_pars,
            max_cycles=max_cycles,
            tol=tol,
            rng_key=rng_key,
            initial_params=initial_params,
            latents_prior=latents_prior,
            progress=progress,
            record_history=record_history,
            block_options=block_options,
        )

    # ------------------------------------------------------------------ parameters
    def predict_outputs(
        self,
        first: Any = None,
        second: Any = None,
        names: list[str] | str | None = None,
        *,
        latents: Any = None,
        pars: Any = None,
    ) -> dict[str, Array]:
        """Predict outputs `{name: (n, output_size)}` from latents and parameters.

        Both argument orders work: the mirrored commit's
        `predict_outputs(latents, pars, names)` and pollux 0.1.0's
        `predict_outputs(pars, latents=None, names=...)` (latents default to
        `pars["latents"]`). The order is read from the types (parameters are a
        dict, latents an array), never guessed: two dicts, two arrays, or a
        keyword that repeats a positional argument raise `ConfigTypeError`.

        Args:
            first, second: `latents, pars` or `pars, latents` (see above).
            names: the outputs to predict (default all).
            latents: `(n, latent_size)`.
            pars: nested as `optimize` returns them, `{name: {"data": ...,
                "err": ...}}`; `"data"` may be a dict, a tuple or list of dicts
                (sequences) or a dict in the flat `"0:A"` / `"base:A"` form.
                Flat numpyro names (`{"flux:A": ...}`) are accepted too.

        Returns:
            The predictions.

        Raises:
            ConfigTypeError: when the arguments cannot be told apart (see above).
            ShapeError: for latents of the wrong shape.
            ConfigError: when an output's parameters are missing, or for a
                name that is no output or parameter of the model (named with
                the closest valid name); upstream ignored such names.

        Example:
            >>> import numpy as np
            >>> from orrery.lux import Lux, LinearTransform
            >>> m = Lux(latent_size=2)
            >>> m.register_output("flux", LinearTransform(output_size=3))
            >>> out = m.predict_outputs(np.ones((4, 2)), {"flux": {"data": {"A": np.ones((3, 2))}}})
            >>> out["flux"].shape
            (4, 3)
        """
        latents, pars = _latents_and_pars(first, second, latents, pars)
        latents = jnp.asarray(latents)
        if latents.ndim != 2 or latents.shape[1] != self.latent_size:
            raise ShapeError(
                f"latents: expected shape (n, {self.latent_size}), got {tuple(latents.shape)}"
            )
        if any(":" in str(k) for k in pars) and not any(k in self.outputs for k in pars):
            check_known(pars, self._site_names(latents.shape[0]), "pars")
            pars = self.unpack_numpyro_pars(dict(pars), ignore_missing=True)
        check_known(pars, (*self.outputs, "latents"), "pars")
        out = {}
        for name in self._names(names):
            dt, _ = self.outputs[name]
            if name not in pars:
                raise ConfigError(
                    f"pars: no parameters for output {name!r}{closest_hint(name, pars)}"
                )
            p = pars[name]
            if isinstance(p, Mapping) and set(p) <= {"data", "err"} and p:
                dp = p.get("data", {})
            else:
                warnings.warn(
                    "passing output parameters without the {'data': ..., 'err': ...} wrapper "
                    "is deprecated",
                    DeprecationWarning,
                    stacklevel=2,
                )
                dp = p
            flat = dt.pack_pars(dp)
            check_known(
                flat,
                transform_names(dt, self.latent_size, latents.shape[0]),
                f"pars[{name!r}]['data']",
            )
            out[name] = dt.apply(latents, **flat)
        return out

    def per_object_param_names(self) -> set[str]:
        """Site names of the per-object parameters: `latents`, and any whose shape follows
        the number of objects (e.g. a `vmap=False` offset), found by expanding the priors
        at two data sizes (pollux 0.1.0's method)."""
        names = {"latents"}
        for name, (dt, et) in self.outputs.items():
            parts = [("", dt, self.latent_size)]
            if et is not None:
                parts.append(("err:", et, dt.output_size_for(self.latent_size)))
            for kind, t, size in parts:
                two, three = t.get_expanded_priors(size, 2), t.get_expanded_priors(size, 3)
                names |= {
                    f"{name}:{kind}{p}"
                    for p, prior in two.items()
                    if prior.batch_shape != three[p].batch_shape
                }
        return names

    def output_pars(self, pars: dict[str, Any]) -> dict[str, Any]:
        """`pars` without the per-object parameters: what carries over to new objects.

        The `fixed_pars` to pass when applying a trained model to other objects
        (pollux 0.1.0's method; see `per_object_param_names`).

        Example:
            >>> import numpy as np
            >>> from orrery.lux import Lux, LinearTransform
            >>> m = Lux(latent_size=2)
            >>> m.register_output("flux", LinearTransform(output_size=3))
            >>> p = {"latents": np.zeros((1, 2)), "flux": {"data": {"A": np.ones((3, 2))}}}
            >>> sorted(m.output_pars(p)), sorted(m.output_pars(p)["flux"]["data"])
            (['flux'], ['A'])
        """
        drop = self.per_object_param_names()
        flat = self.pack_numpyro_pars(pars, ignore_missing=True)
        kept = {k: v for k, v in flat.items() if k not in drop}
        return self.unpack_numpyro_pars(kept, ignore_missing=True)

    @property
    def names_flat(self) -> tuple[str, ...]:
        """The numpyro site names of every parameter: `latents`, `<out>:<p>`, `<out>:err:<p>`.

        Example:
            >>> from orrery.lux import Lux, AffineTransform
            >>> m = Lux(latent_size=2)
            >>> m.register_output("flux", AffineTransform(output_size=3))
            >>> m.names_flat
            ('latents', 'flux:A', 'flux:b')
        """
        names = ["latents"]
        for name, (dt, et) in self.outputs.items():
            names += [f"{name}:{p}" for p in dt.param_names()]
            if et is not None:
                names += [f"{name}:err:{p}" for p in et.param_names()]
        return tuple(names)

    @property
    def names_nested(self) -> dict[str, Any]:
        """Parameter names in the nested layout: `{out: {"data": (...), "err": (...)}}`.

        Example:
            >>> from orrery.lux import Lux, AffineTransform
            >>> m = Lux(latent_size=2)
            >>> m.register_output("flux", AffineTransform(output_size=3))
            >>> m.names_nested
            {'flux': {'data': ('A', 'b'), 'err': ()}, 'latents': 'latents'}
        """
        out: dict[str, Any] = {
            name: {"data": dt.param_names(), "err": et.param_names() if et is not None else ()}
            for name, (dt, et) in self.outputs.items()
        }
        out["latents"] = "latents"
        return out

    def pack_numpyro_pars(self, pars: Mapping[str, Any], ignore_missing: bool = False):
        """Nested parameters -> flat ``{"flux:A": ..., "flux:err:s": ..., "latents": ...}``."""
        flat: dict[str, Any] = {}
        for key, val in pars.items():
            if key not in self.outputs:
                flat[key] = val
                continue
            dt, et = self.outputs[key]
            if not isinstance(val, Mapping):
                raise ConfigError(f"pars[{key!r}]: expected {{'data': ..., 'err': ...}}")
            if val.get("data") is not None:
                for p, v in dt.pack_pars(val["data"], ignore_missing).items():
                    flat[f"{key}:{p}"] = v
            elif not ignore_missing and dt.param_names():
                raise ConfigError(f"pars[{key!r}]: missing 'data' parameters")
            if et is not None and val.get("err"):
                for p, v in et.pack_pars(val["err"], ignore_missing).items():
                    flat[f"{key}:err:{p}"] = v
        return flat

    def unpack_numpyro_pars(self, pars: dict[str, Any], ignore_missing: bool = False):
        """Flat numpyro names -> nested ``{name: {"data": ..., "err": ...}, "latents": ...}``."""
        grouped: dict[str, tuple[dict, dict]] = {}
        out: dict[str, Any] = {}
        for key, val in pars.items():
            head, sep, rest = key.partition(":")
            if sep and head in self.outputs:
                d, e = grouped.setdefault(head, ({}, {}))
                if rest.startswith("err:"):
                    e[rest[4:]] = val
                else:
                    d[rest] = val
            elif head == "obs" and sep:
                continue
            else:
                out[key] = val
        for name, (dt, et) in self.outputs.items():
            if name not in grouped:
                if ignore_missing or not (dt.param_names() or (et and et.param_names())):
                    if not dt.param_names():
                        out[name] = {"data": dt.unpack_pars({}, True), "err": {}}
                    continue
                raise ConfigError(f"pars: no parameters for output {name!r}")
            d, e = grouped[name]
            out[name] = {
                "data": dt.unpack_pars(d, ignore_missing),
                "err": et.unpack_pars(e, ignore_missing) if et is not None else {},
            }
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path, params: dict[str, Any] | None = None, metadata=None):
        """Save the model configuration and (optionally) fitted parameters as an artifact."""
        from ._serialize import save_lux

        return save_lux(self, path, params, metadata)

    @classmethod
    def load(cls, path) -> tuple[Lux, dict[str, Any] | None]:
        """Load `(model, params)` written by `save`.

        Raises:
            ArtifactError: for a missing, corrupt or incomplete artifact.
        """
        from ._serialize import load_lux

        return load_lux(cls, path)


class LuxModel(Lux):
    """Deprecated alias of `Lux`."""

    def __init__(self, *args: Any, **kwargs: Any):
        warnings.warn("LuxModel is deprecated; use Lux", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)


class LVM(Lux):
    """pollux 0.1.0's name of the general latent-variable model (its `pollux.models.LVM`).

    The same model as `Lux` here: register any outputs, fit with `optimize` or
    `optimize_iterative`, predict with `predict_outputs(pars, latents=None)`.
    pollux 0.1.0's `Lux` became an architecture with fixed "label"/"flux"
    outputs; orrery's `Lux` keeps the mirrored commit's general model.

    Example:
        >>> from orrery.lux import LVM, LinearTransform
        >>> m = LVM(latent_size=2)
        >>> m.register_output("flux", LinearTransform(output_size=3))
        >>> m.names_flat
        ('latents', 'flux:A')
    """

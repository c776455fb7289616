"""Block coordinate descent for `Lux` models.

Each cycle visits parameter blocks in turn, holding every other parameter
exactly fixed. Blocks that are linear in their parameters (the latents when
every output is Linear/Affine/Offset, and the data parameters of such an
output) are solved exactly by weighted least squares, vmapped over pixels or
objects, with the ridge and prior mean taken from Normal priors; this is the
exact MAP update of that block. Other blocks take SVI steps (AutoDelta, Adam)
warm-started from the current values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jaxtyping import Array
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.initialization import init_to_value
from numpyro.infer.util import log_density
from numpyro.optim import _NumPyroOptim
from tqdm.auto import tqdm

from orrery.interface import ConfigError, ConfigTypeError, check_positive_int

from ._cannon.fit import normal_equations
from ._likelihood import (
    as_lux_data,
    check_errors,
    check_infinite_data,
    effective_err,
    output_names,
)
from ._names import closest_hint
from ._transform_base import (
    AbstractSingleTransform,
    AbstractTransform,
    affine_transform,
    linear_transform,
    offset_transform,
)
from .transforms import TransformSequence

if TYPE_CHECKING:  # lux imports optimize (Lux.optimize_iterative), not the other way
    from .lux import Lux

__all__ = ["IterativeOptimizationResult", "ParameterBlock", "default_blocks", "optimize_iterative"]

_LINEAR_FUNCS = (linear_transform, affine_transform, offset_transform)


@dataclass(frozen=True)
class ParameterBlock:
    """One group of parameters optimised together in `optimize_iterative`.

    Fields in upstream's order.

    Args:
        name: a label for progress and history.
        params: `"latents"`, `"<output>:data"`, `"<output>:err"` or
            `"<output>"` (all of its parameters, as upstream; a least-squares
            block solves only the data parameters), or a list of these.
        optimizer: `"least_squares"` (exact; linear blocks only); None (SVI
            with `numpyro.optim.Adam`, as upstream); a numpyro optimizer or
            optax transformation instance; or an optimizer class or factory
            (e.g. `numpyro.optim.Adam`, `optax.adam`) called with
            `optimizer_kwargs`.
        optimizer_kwargs: keywords for the optimizer (for None: `Adam`, default
            `{"step_size": 1e-3}`).
        num_steps: SVI steps per visit.

    Example:
        >>> ParameterBlock("latents", "latents", optimizer="least_squares").num_steps
        1000
    """

    name: str
    params: str | list[str]
    optimizer: Any = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    num_steps: int = 1000


@dataclass
class IterativeOptimizationResult:
    """What `optimize_iterative` returns.

    Attributes:
        params: nested parameters (fixed ones included).
        losses_per_cycle: upstream's loss after each cycle: half the χ² of the
            outputs the data hold, `½ Σ ((pred - y) / err)²`, with the observed
            `err` (unit weights for an output without errors; an
            `err_transform` does not enter, as upstream).
        n_cycles: cycles run.
        converged: whether the relative change of `losses_per_cycle` fell below ``tol``.
        history: per-block records ``{"cycle", "block", "loss", "neg_log_joint"}``
            when requested.
        neg_log_joint_per_cycle: the objective the blocks descend (negative log
            joint density: likelihood with `err_transform`, and priors) after
            each cycle.
        blocks: the blocks as they were run (pollux 0.1.0's field).
    """

    params: dict[str, Any]
    losses_per_cycle: list[float]
    n_cycles: int
    converged: bool
    history: list[dict[str, Any]] | None = None
    neg_log_joint_per_cycle: list[float] = field(default_factory=list)
    blocks: list[ParameterBlock] = field(default_factory=list)


def _is_linear(t) -> bool:
    # vmap=False offsets are per object (upstream's recipe), not a shared linear map
    return getattr(t, "transform", None) in _LINEAR_FUNCS and getattr(t, "vmap", True)


def _linear_head(
    t: AbstractTransform,
) -> tuple[Callable[[Array], Array], AbstractSingleTransform, str] | None:
    """``(prefix, head, name_prefix)`` when ``t`` is linear in its parameters, else None.

    A single Linear/Affine/Offset transform is its own head; a sequence whose
    last element is Linear/Affine and whose earlier elements have no parameters
    (e.g. the Cannon's PolyFeature -> Linear) is linear in the head's parameters
    with the earlier transforms as a fixed feature map.
    """
    if isinstance(t, AbstractSingleTransform) and _is_linear(t):
        return (lambda z: z), t, ""
    if isinstance(t, TransformSequence):
        *pre, head = t.transforms
        if (
            isinstance(head, AbstractSingleTransform)
            and head.transform in (linear_transform, affine_transform)
            and head.vmap
            and not any(p.param_names() for p in pre)
        ):

            def prefix(z):
                for p in pre:
                    z = p.apply(z)
                return z

            return prefix, head, f"{len(pre)}:"
    return None


# ---------------------------------------------------------------- exact kernels
@jax.jit
def _solve_rows(design, weights, target, ridge, mean):
    """Per-pixel ridge regression: ``(XᵀWX + diag ρ) θ = XᵀWy + ρ μ``."""
    gram, rhs = normal_equations(design, weights, target)
    gram = gram + jax.vmap(jnp.diag)(ridge)
    return jnp.linalg.solve(gram, (rhs + ridge * mean)[..., None])[..., 0]


@jax.jit
def _solve_latents(mats, offsets, weights, targets, ridge, mean):
    """Per-object ridge regression of the latents on every linear output."""
    n, latent = ridge.shape
    gram = jnp.zeros((n, latent, latent), ridge.dtype)
    rhs = jnp.zeros((n, latent), ridge.dtype)
    for a, b, w, y in zip(mats, offsets, weights, targets, strict=True):
        outer = (a[:, :, None] * a[:, None, :]).reshape(a.shape[0], latent * latent)
        gram = gram + (w @ outer).reshape(n, latent, latent)
        rhs = rhs + (w * (y - b[None, :])) @ a
    gram = gram + jax.vmap(jnp.diag)(ridge)
    return jnp.linalg.solve(gram, (rhs + ridge * mean)[..., None])[..., 0]


def _normal_ridge(prior, shape):
    """Ridge (1/σ²) and mean from a Normal prior; a non-Normal prior acts as flat."""
    base = prior
    while isinstance(base, (dist.ExpandedDistribution, dist.Independent)):
        base = base.base_dist
    if isinstance(base, dist.Normal):
        full = tuple(prior.batch_shape) + tuple(prior.event_shape)

        def fit(x):
            x = jnp.asarray(x, float)
            try:
                return jnp.broadcast_to(x, shape)
            except ValueError:  # e.g. a (size, 1) bias prior for a (size,) block
                return jnp.reshape(jnp.broadcast_to(x, full), shape)

        return 1.0 / fit(base.scale) ** 2, fit(base.loc)
    return jnp.zeros(shape), jnp.zeros(shape)


# ---------------------------------------------------------------- the driver
class _State:
    """Flat parameter dict plus everything the block updates need."""

    def __init__(self, model: Lux, data, latents_prior, fixed_flat):
        self.model = model
        self.data = data
        self.latents_prior = latents_prior
        self.fixed = fixed_flat
        self.n = data.data_size
        self.names = output_names(model, data)
        kwargs = {"latents_prior": latents_prior}
        self._loss = jax.jit(
            lambda flat: -log_density(model.default_numpyro_model, (data,), kwargs, flat)[0]
        )
        self._chi2_arrays = {}
        for name in self.names:
            od = data[name]
            mask = np.asarray(od.mask)
            err = np.asarray(od.err)
            # as upstream: unit weights when no error is positive (or none was given)
            weighted = od.has_err and bool(np.any(err[mask] > 0))
            inv = np.where(mask, 1.0 / np.where(mask, err, 1.0), 0.0) if weighted else 1.0
            y = np.where(mask, np.asarray(od.data), 0.0)
            self._chi2_arrays[name] = (jnp.asarray(y), jnp.asarray(inv), jnp.asarray(mask))
        self._chi2 = jax.jit(self._half_chi2)

    def loss(self, flat) -> float:
        """The negative log joint density (what the blocks descend)."""
        return float(self._loss(flat))

    def half_chi2(self, flat) -> float:
        """Upstream's loss: ½χ² of the outputs the data hold, observed `err` as weights."""
        return float(self._chi2(flat))

    def _half_chi2(self, flat):
        total = 0.0
        for name, (y, inv_err, mask) in self._chi2_arrays.items():
            dt, _ = self.model.outputs[name]
            head = f"{name}:"
            pars = {
                k[len(head) :]: v
                for k, v in flat.items()
                if k.startswith(head) and not k.startswith(f"{name}:err:")
            }
            pred = dt.apply(flat["latents"], **pars)
            r = jnp.where(mask, (pred - y) * inv_err, 0.0)
            total = total + 0.5 * jnp.sum(r**2)
        return total

    def output_arrays(self, name, flat):
        """Observed values (NaN -> 0) and weights `mask / err_eff²` of one output."""
        od = self.data[name]
        _, et = self.model.outputs[name]
        epars = {} if et is None else {p: flat[f"{name}:err:{p}"] for p in et.param_names()}
        err = effective_err(od, et, epars)
        mask = od.mask
        w = jnp.where(mask, 1.0 / jnp.where(mask, err, 1.0) ** 2, 0.0)
        return jnp.where(mask, od.data, 0.0), w

    def linear_parts(self, name, flat):
        dt, _ = self.model.outputs[name]
        size = dt.output_size
        if dt.transform is offset_transform:
            return jnp.eye(size), jnp.reshape(flat[f"{name}:b"], (size,))
        a = flat[f"{name}:A"]
        if dt.transform is affine_transform:
            return a, jnp.reshape(flat[f"{name}:b"], (size,))
        return a, jnp.zeros(size)


def _solve_output_block(state: _State, name: str, flat: dict) -> dict:
    dt, _ = state.model.outputs[name]
    found = _linear_head(dt)
    if found is None:  # _linear_ok admitted only linear outputs to a solved block
        raise ConfigError(f"blocks: output {name!r} is not linear in its parameters")
    prefix, head, pre = found
    y, w = state.output_arrays(name, flat)
    z = prefix(flat["latents"])
    key = lambda p: f"{name}:{pre}{p}"
    free = [p for p in head.param_names() if key(p) not in state.fixed]
    if not free:
        return flat
    priors = dt.get_expanded_priors(state.model.latent_size, state.n)
    size = head.output_size
    if head.transform is offset_transform:
        target = y - z
    elif "A" not in free:
        target = y - z @ flat[key("A")].T
    elif head.transform is affine_transform and "b" not in free:
        target = y - jnp.reshape(flat[key("b")], (1, size))
    else:
        target = y
    cols, ridges, means = [], [], []
    if "A" in free:
        cols.append(z)
        r, m = _normal_ridge(priors[f"{pre}A"], (size, z.shape[1]))
        ridges.append(r)
        means.append(m)
    if "b" in free:
        cols.append(jnp.ones((z.shape[0], 1), z.dtype))
        r, m = _normal_ridge(priors[f"{pre}b"], (size,))
        ridges.append(r[:, None])
        means.append(m[:, None])
    theta = _solve_rows(
        jnp.concatenate(cols, axis=1),
        w,
        target,
        jnp.concatenate(ridges, axis=1),
        jnp.concatenate(means, axis=1),
    )
    new = dict(flat)
    k = 0
    if "A" in free:
        new[key("A")] = theta[:, : z.shape[1]]
        k = z.shape[1]
    if "b" in free:  # keep the parameter's own shape ((size,) or upstream's (size, 1))
        new[key("b")] = jnp.reshape(theta[:, k], jnp.shape(flat[key("b")]))
    return new


def _solve_latent_block(state: _State, flat: dict) -> dict:
    mats, offs, ws, ys = [], [], [], []
    for name in state.names:
        y, w = state.output_arrays(name, flat)
        a, b = state.linear_parts(name, flat)
        mats.append(a)
        offs.append(b)
        ws.append(w)
        ys.append(y)
    shape = (state.n, state.model.latent_size)
    lp = state.latents_prior
    if lp is False:
        ridge, mean = jnp.zeros(shape), jnp.zeros(shape)
    else:
        ridge, mean = _normal_ridge(lp if lp is not None else dist.Normal(0.0, 1.0), shape)
    return {**flat, "latents": _solve_latents(mats, offs, ws, ys, ridge, mean)}


def _svi_optimizer(block: ParameterBlock):
    """The numpyro optimizer of an SVI block (see `ParameterBlock.optimizer`)."""
    opt = block.optimizer
    kwargs = dict(block.optimizer_kwargs or {})
    if opt is None:
        return numpyro.optim.Adam(**{"step_size": 1e-3, **kwargs})
    if isinstance(opt, type) or (
        callable(opt) and not isinstance(opt, (_NumPyroOptim, optax.GradientTransformation))
    ):
        opt = opt(**kwargs)
    if isinstance(opt, optax.GradientTransformation):
        return numpyro.optim.optax_to_numpyro(opt)
    if isinstance(opt, _NumPyroOptim):
        return opt
    raise ConfigTypeError(
        f"ParameterBlock {block.name!r}: optimizer must be 'least_squares', None, a numpyro "
        f"optimizer or optax transformation, or a class/factory of one; got {block.optimizer!r}"
    )


def _svi_block(state: _State, block: ParameterBlock, sites: list[str], flat, key) -> dict:
    held = {k: v for k, v in flat.items() if k not in sites}
    guide = AutoDelta(
        state.model.default_numpyro_model,
        init_loc_fn=init_to_value(values={k: flat[k] for k in sites}),
    )
    opt = _svi_optimizer(block)
    svi = SVI(state.model.default_numpyro_model, guide, opt, Trace_ELBO())
    res = svi.run(
        key,
        int(block.num_steps),
        state.data,
        latents_prior=state.latents_prior,
        fixed_pars=held,
        progress_bar=False,
    )
    med = guide.median(res.params)
    return {**flat, **{k: med[k] for k in sites if k in med}}


def _specs(params) -> list[str]:
    """A block's groups: upstream's `params` is one group or a list of them."""
    if isinstance(params, str):
        return [params]
    if isinstance(params, (list, tuple)) and params and all(isinstance(p, str) for p in params):
        return list(params)
    raise ConfigTypeError(
        f"ParameterBlock params: expected a group name or a list of them, got {params!r}"
    )


def _block_sites(model: Lux, params) -> list[str]:
    if not isinstance(params, str):
        return [s for spec in _specs(params) for s in _block_sites(model, spec)]
    if params == "latents":
        return ["latents"]
    name, _, part = params.partition(":")
    if name not in model.outputs or part not in ("", "data", "err"):
        raise ConfigError(
            f"blocks: unknown parameter group {params!r}; use 'latents', '<output>', "
            f"'<output>:data' or '<output>:err' with outputs {list(model.outputs)}"
        )
    dt, et = model.outputs[name]
    data_sites = [f"{name}:{p}" for p in dt.param_names()]
    err_sites = [f"{name}:err:{p}" for p in (et.param_names() if et is not None else ())]
    # as upstream, the bare output name means all of its parameters
    return {"": data_sites + err_sites, "data": data_sites, "err": err_sites}[part]


def _optimised_sites(model: Lux, block: ParameterBlock) -> list[str]:
    """The sites a block changes: a least-squares block solves data parameters only."""
    sites = _block_sites(model, block.params)
    if block.optimizer == "least_squares":
        sites = [s for s in sites if ":err:" not in s]
    return sites


def _warn_unoptimised_err(model: Lux, blocks: list[ParameterBlock], names, fixed_flat) -> None:
    """Warn, as upstream, about err-transform parameters no block optimises.

    They would keep their starting value (a prior draw) as the fitted one. A
    least-squares block solves only data parameters, so it covers no err site.
    """
    covered = {s for b in blocks for s in _optimised_sites(model, b)}
    for name in names:
        left = [
            s
            for s in _block_sites(model, f"{name}:err")
            if s not in covered and s not in fixed_flat
        ]
        if left:
            warnings.warn(
                f"output {name!r}: err_transform parameter(s) {left} are in no optimisation "
                f"block and not fixed, so they keep their starting values; add a block with "
                f"params='{name}:err' or give them in fixed_pars",
                UserWarning,
                stacklevel=3,
            )


def _linear_ok(model: Lux, params, names=None) -> bool:
    if not isinstance(params, str):
        return all(_linear_ok(model, spec, names) for spec in _specs(params))
    if params == "latents":
        names = list(model.outputs) if names is None else names
        return all(_is_linear(model.outputs[n][0]) for n in names)
    name, _, part = params.partition(":")
    return (part or "data") == "data" and _linear_head(model.outputs[name][0]) is not None


def _default_specs(model: Lux, names: list[str]) -> list[str]:
    specs = ["latents"] + [f"{n}:data" for n in names if _block_sites(model, f"{n}:data")]
    specs += [f"{n}:err" for n in names if _block_sites(model, f"{n}:err")]
    return specs


def default_blocks(model: Lux, data) -> list[ParameterBlock]:
    """The blocks `optimize_iterative` runs when given none (pollux 0.1.0's function).

    The latents, then the data parameters of every output the data hold, then
    their error-transform parameters; a transform without parameters gets no
    block. Each block's optimizer is `"least_squares"` where the block is
    linear, else SVI. Adjust one and pass the list back as `blocks`, or use
    `optimize_iterative(block_options=...)`.

    Example:
        >>> import numpy as np
        >>> from orrery.lux import LinearTransform, Lux, LuxData, default_blocks
        >>> m = Lux(latent_size=2)
        >>> m.register_output("flux", LinearTransform(output_size=3))
        >>> [(b.name, b.optimizer) for b in default_blocks(m, LuxData(flux=np.zeros((4, 3))))]
        [('latents', 'least_squares'), ('flux:data', 'least_squares')]
    """
    data = as_lux_data(data)
    names = output_names(model, data)
    return _resolve_blocks(model, None, names)


def _resolve_blocks(model: Lux, blocks, names: list[str]) -> list[ParameterBlock]:
    """Blocks as `ParameterBlock`s; `names` are the outputs the data hold."""
    if blocks is None:
        blocks = _default_specs(model, names)
    out = []
    for b in blocks:
        if isinstance(b, str):
            _block_sites(model, b)
            opt = "least_squares" if _linear_ok(model, b, names) else None
            out.append(ParameterBlock(b, b, opt))
        elif isinstance(b, ParameterBlock):
            check_positive_int(b.num_steps, f"ParameterBlock {b.name!r}: num_steps")
            if isinstance(b.optimizer, str) and b.optimizer != "least_squares":
                raise ConfigError(
                    f"ParameterBlock {b.name!r}: the only optimizer given by name is "
                    f"'least_squares', got {b.optimizer!r}"
                )
            if b.optimizer != "least_squares":
                _svi_optimizer(b)  # fail now, not after the first blocks ran
            if b.optimizer == "least_squares" and not _linear_ok(model, b.params, names):
                raise ConfigError(
                    f"ParameterBlock {b.name!r}: {b.params!r} is not linear in its parameters "
                    "(Linear/Affine/Offset outputs only); use optimizer=None for SVI"
                )
            out.append(b)
        else:
            raise ConfigTypeError(f"blocks: expected str or ParameterBlock, got {type(b).__name__}")
    for b in out:
        for spec in _specs(b.params):
            _block_sites(model, spec)
            head = spec.partition(":")[0]
            if spec != "latents" and head not in names:
                raise ConfigError(
                    f"blocks: {spec!r} optimises output {head!r}, which the data do not "
                    f"hold (data outputs: {names})"
                )
    return out


def _initial_flat(model: Lux, data, latents_prior, key, zero_latents: bool, names) -> dict:
    """Prior draws for the latents and for the outputs the data hold (`names`).

    Drawn as upstream does, one `Predictive` sample of the model on `key`, so
    the same key starts from upstream's point (and gives upstream's fit).
    """
    lp = None if latents_prior is False else latents_prior
    draws = Predictive(model.default_numpyro_model, num_samples=1)(
        key, data, latents_prior=lp, names=names
    )
    flat = {k: v[0] for k, v in draws.items() if not k.startswith("obs:")}
    if zero_latents:
        flat["latents"] = jnp.zeros((data.data_size, model.latent_size))
    return flat


def optimize_iterative(
    model: Lux,
    data,
    blocks=None,
    fixed_pars=None,
    max_cycles: int = 100,
    tol: float = 1e-4,
    rng_key=None,
    initial_params=None,
    latents_prior=None,
    progress: bool = True,
    record_history: bool = False,
    block_options: dict[str, dict[str, Any]] | None = None,
) -> IterativeOptimizationResult:
    """Optimise a `Lux` model by cycling over parameter blocks.

    Args:
        model: the model.
        data: `LuxData` (or a mapping of outputs).
        blocks: `ParameterBlock` list, or strings (``"latents"``,
            ``"flux"``, ``"flux:err"``) whose optimizer is inferred; default:
            the latents, then every output's data (then err) parameters.
        fixed_pars: nested parameters held exactly fixed throughout.
        max_cycles: maximum number of cycles.
        tol: stop when the relative change of the loss (`losses_per_cycle`, half
            the χ², as upstream) over a cycle is below this; never after the
            first cycle.
        rng_key: JAX key for prior initialisation and SVI blocks (default key 0).
        initial_params: nested starting values (merged over the defaults).
        latents_prior: None (unit Normal), a Distribution, or False (flat).
        progress: show a tqdm progress bar.
        record_history: keep the loss after every block.
        block_options: `{block name: {field: value}}` replacing fields of the
            resolved blocks (pollux 0.1.0's argument), e.g.
            `{"flux:err": {"num_steps": 100}}`; a name that is no block raises.

    Registered outputs the data do not hold are skipped, as upstream: with
    `blocks=["latents"]` and the trained parameters in `fixed_pars`, the
    latents of new objects are found from the outputs they have (e.g. flux
    alone) and the others are predicted from them.

    Returns:
        `IterativeOptimizationResult` with nested `params` (fixed included).

    Raises:
        ConfigError: for an unknown block, a block on an output the data do
            not hold, a least-squares block that is not linear, a misspelt
            `fixed_pars` name, or `max_cycles` < 1.
        ValueDomainError: for zero `err` on an output without `err_transform`,
            or infinite data values.
    """
    check_positive_int(max_cycles, "max_cycles")
    data = as_lux_data(data)
    check_errors(model, data, None)
    check_infinite_data(model, data, None)
    names = output_names(model, data)
    key = jax.random.key(0) if rng_key is None else rng_key
    resolved = _resolve_blocks(model, blocks, names)
    if block_options:  # re-checked after the change
        resolved = _resolve_blocks(model, _apply_block_options(resolved, block_options), names)
    fixed_flat = model._flat_fixed(fixed_pars, data.data_size)
    _warn_unoptimised_err(model, resolved, names, fixed_flat)
    key, init_key = jax.random.split(key)
    flat = _initial_flat(
        model,
        data,
        latents_prior,
        init_key,
        zero_latents=fixed_pars is not None and initial_params is None,
        names=names,
    )
    if initial_params is not None:
        flat.update(model._flat_fixed(initial_params, data.data_size, "initial_params"))
    flat.update(fixed_flat)
    flat = {k: jnp.asarray(v) for k, v in flat.items()}
    state = _State(model, data, latents_prior, fixed_flat)

    losses: list[float] = []
    joint: list[float] = []
    history: list[dict[str, Any]] | None = [] if record_history else None
    converged = False
    prev = float("inf")  # as upstream: the first cycle is never the converged one
    bar = tqdm(range(max_cycles), disable=not progress, desc="optimize_iterative")
    cycle = 0
    for cycle in bar:
        for block in resolved:
            sites = [s for s in _optimised_sites(model, block) if s not in fixed_flat]
            if not sites:
                continue
            flat, key = _run_block(state, block, sites, flat, key)
            flat.update(fixed_flat)
            if history is not None:
                history.append(
                    {
                        "cycle": cycle,
                        "block": block.name,
                        "loss": state.half_chi2(flat),
                        "neg_log_joint": state.loss(flat),
                    }
                )
        loss = state.half_chi2(flat)
        losses.append(loss)
        joint.append(state.loss(flat))
        bar.set_postfix(loss=f"{loss:.6g}")
        # upstream's rule on upstream's quantity: |Δ| / (|previous| + 1e-8) < tol
        if np.isfinite(loss) and abs(prev - loss) / (abs(prev) + 1e-8) < tol:
            converged = True
            break
        prev = loss
    bar.close()
    params = model.unpack_numpyro_pars(flat, ignore_missing=True)
    return IterativeOptimizationResult(
        params, losses, cycle + 1, converged, history, joint, list(resolved)
    )


def _run_block(state: _State, block: ParameterBlock, sites, flat, key):
    """One block's update of the flat parameters; returns them and the next key.

    Least-squares blocks are solved exactly (no randomness); any other block runs
    SVI on a key split off ``key``.
    """
    if block.optimizer == "least_squares":
        # as upstream, each group of a list is solved from the block's starting values
        new = dict(flat)
        for spec in _specs(block.params):
            if spec == "latents":
                new["latents"] = _solve_latent_block(state, flat)["latents"]
                continue
            name = spec.partition(":")[0]
            solved = _solve_output_block(state, name, flat)
            new.update({s: solved[s] for s in _block_sites(state.model, f"{name}:data")})
        return new, key
    key, sub = jax.random.split(key)
    return _svi_block(state, block, sites, flat, sub), key


def _apply_block_options(blocks: list[ParameterBlock], options) -> list[ParameterBlock]:
    if not options:
        return blocks
    have = [b.name for b in blocks]
    for name in options:
        if name not in have:
            raise ConfigError(
                f"block_options: {name!r} is not a block of this fit"
                f"{closest_hint(name, have)}; blocks: {have}"
            )
    out = []
    for b in blocks:
        fields = dict(options.get(b.name, {}))
        if "name" in fields or "params" in fields:
            raise ConfigError(f"block_options[{b.name!r}]: 'name' and 'params' cannot be changed")
        try:
            out.append(replace(b, **fields) if fields else b)
        except TypeError as err:
            raise ConfigError(f"block_options[{b.name!r}]: {err}") from err
    return out

"""Layer 2: `EnsembleVI`, numpyro SVI vmapped over ensemble members."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Protocol, TypeGuard

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.svi import SVI, SVIState

from orrery.interface import ConfigError, check_positive_int

from . import _loop
from ._checks import (
    as_key,
    check_all_finite,
    check_member_count,
    check_on_nonfinite,
    check_weight,
)
from ._kernels import all_finite, select
from ._sharding import (
    Devices,
    MemberShardings,
    constrain_members,
    normalize_devices,
    put_members,
    put_replicated,
    resolve_shardings,
)
from .elbo import TemperedELBO
from .state import EnsembleResult

__all__ = ["EnsembleVI", "NumpyroOptimizer", "as_numpyro_optimizer"]


class NumpyroOptimizer(Protocol):
    """A numpyro optimizer (``numpyro.optim.Adam(...)``, ``optax_to_numpyro(...)``).

    Recognised by its callable ``init_fn``, ``update_fn`` and ``get_params``.
    """

    @property
    def init_fn(self) -> Callable[..., object]: ...

    @property
    def update_fn(self) -> Callable[..., object]: ...

    def get_params(self, state: PyTree, /) -> PyTree: ...


def _is_numpyro_optimizer(opt: object) -> TypeGuard[NumpyroOptimizer]:
    return all(
        callable(getattr(opt, name, None)) for name in ("init_fn", "update_fn", "get_params")
    )


def as_numpyro_optimizer(
    optimizer: NumpyroOptimizer | optax.GradientTransformation,
) -> NumpyroOptimizer:
    """Return a numpyro optimizer, wrapping an optax transform with ``optax_to_numpyro``.

    A numpyro optimizer is recognised by duck typing (callable ``init_fn``,
    ``update_fn`` and ``get_params``).
    """
    if _is_numpyro_optimizer(optimizer):
        return optimizer
    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        from numpyro.optim import optax_to_numpyro

        return optax_to_numpyro(optimizer)
    raise ConfigError(
        "optimizer: expected a numpyro optimizer or an optax.GradientTransformation, "
        f"got {type(optimizer).__name__}"
    )


class _AutoGuide(Protocol):
    """A numpyro autoguide, as far as the runner touches it: a guide with a cached trace."""

    prototype_trace: object

    def __call__(self, *args: PyTree, **kwargs: PyTree) -> object: ...


def _is_autoguide(guide: object) -> TypeGuard[_AutoGuide]:
    return hasattr(guide, "prototype_trace") and hasattr(guide, "_setup_prototype")


def _prepare_guide(
    guide: Callable[..., object], args: tuple[PyTree, ...], kwargs: dict[str, PyTree]
) -> None:
    """Let a numpyro autoguide build its prototype eagerly, outside every transformation.

    Autoguides cache their prototype trace on first call; built inside ``jit``
    or ``vmap`` it would store tracers on the guide object and break later calls.
    """
    if _is_autoguide(guide) and guide.prototype_trace is None:
        from numpyro.handlers import seed, trace

        trace(seed(guide, jr.PRNGKey(0))).get_trace(*args, **kwargs)


def _member_init_guide(guide: Callable[..., object]) -> Callable[..., object]:
    """A throw-away copy of an autoguide whose prototype is rebuilt from each member's key.

    Otherwise every member would start from the one set of initial locations
    cached on the shared guide.
    """
    if not _is_autoguide(guide):
        return guide
    fresh = copy.copy(guide)
    fresh.prototype_trace = None
    if isinstance(fresh, AutoContinuous) and isinstance(guide, AutoContinuous):
        _pack_in_shared_layout(fresh, guide)
    return fresh


def _pack_in_shared_layout(fresh: AutoContinuous, shared: AutoContinuous) -> None:
    """Make ``fresh`` pack its initial latent vector in the layout of ``shared``.

    A flat-latent guide packs its sites into one vector in the order of ``_init_locs``.
    Built inside vmap that order is sorted by name; built eagerly (the shared guide, which
    every update uses) it is the model's. Without this each member's initial values would
    land on other sites.
    """
    order = list(getattr(shared, "_init_locs", None) or ())
    if not order:
        return
    build = type(fresh)._setup_prototype

    def setup_in_shared_layout(*args: PyTree, **kwargs: PyTree) -> None:
        build(fresh, *args, **kwargs)
        locs = {name: fresh._init_locs[name] for name in order}
        fresh._init_locs = locs
        fresh._init_latent = jnp.concatenate([jnp.reshape(v, -1) for v in locs.values()])
        fresh._unpack_latent = shared._unpack_latent

    vars(fresh)["_setup_prototype"] = setup_in_shared_layout  # an instance override


def _kl_weight(value: float | Float[ArrayLike, ""]) -> float:
    return check_weight(value, "kl_weight")


class EnsembleVI(eqx.Module):
    r"""An ensemble of numpyro SVI fits, one per member, advanced together under ``vmap``.

    Member ``e`` maximises the tempered ELBO
    `E_{q_e}[log p(y | x, θ)] - β KL(q_e || p)`
    with ``β = kl_weight``: ``Trace_ELBO(num_particles)`` when ``β == 1``,
    otherwise `TemperedELBO` (closed-form KL where
    numpyro registers one, Monte Carlo otherwise).

    Args:
        model_fn: a numpyro model.
        guide_fn: a numpyro guide (an autoguide works too).
        optimizer: a numpyro optimizer, or an optax transform (wrapped with
            ``numpyro.optim.optax_to_numpyro``).
        ensemble_size: the number of members ``E``.
        kl_weight: the KL weight ``β``.
        num_particles: Monte Carlo particles per ELBO estimate.
        on_nonfinite: ``"skip"`` (keep a member's previous state when its loss
            or new parameters are not finite; its random key still advances),
            ``"ignore"`` or ``"raise"``.
        devices: ``None``, ``"all"`` or a sequence of ``jax.Device`` to split
            the members over (see `EnsembleMAP`).

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> def model(x, y=None):
        ...     w = numpyro.sample("w", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(w * x, 0.5), obs=y)
        >>> def guide(x, y=None):
        ...     loc = numpyro.param("w_loc", 0.0)
        ...     numpyro.sample("w", dist.Normal(loc, 0.1))
        >>> x = jnp.linspace(-1.0, 1.0, 16)
        >>> vi = EnsembleVI(model, guide, numpyro.optim.Adam(1e-2), ensemble_size=8)
        >>> result = vi.run(jax.random.key(0), 50, x, 2.0 * x)
        >>> result.params["w_loc"].shape, result.losses.shape
        ((8,), (8, 50))
    """

    model_fn: Callable[..., object]
    guide_fn: Callable[..., object]
    optimizer: NumpyroOptimizer | optax.GradientTransformation
    ensemble_size: int = eqx.field(static=True, default=16)
    kl_weight: float = eqx.field(static=True, default=1.0, converter=_kl_weight)
    num_particles: int = eqx.field(static=True, default=1)
    on_nonfinite: str = eqx.field(static=True, default="skip")
    devices: Devices = eqx.field(static=True, default=None, converter=normalize_devices)

    def __check_init__(self):
        check_member_count(self.ensemble_size)
        check_positive_int(self.num_particles, "num_particles")
        check_on_nonfinite(self.on_nonfinite)
        for name in ("model_fn", "guide_fn"):
            if not callable(getattr(self, name)):
                raise ConfigError(f"{name}: expected a callable numpyro model/guide")
        as_numpyro_optimizer(self.optimizer)
        resolve_shardings(self.devices, self.ensemble_size)

    @property
    def shardings(self) -> MemberShardings | None:
        """The member and replicated shardings, or ``None`` without ``devices``."""
        return resolve_shardings(self.devices, self.ensemble_size)

    def svi(self, guide: Callable[..., object] | None = None) -> SVI:
        """The single-member ``numpyro.infer.SVI`` that every member runs."""
        from numpyro.infer import SVI, Trace_ELBO

        if self.kl_weight == 1:
            loss = Trace_ELBO(num_particles=self.num_particles)
        else:
            loss = TemperedELBO(self.kl_weight, num_particles=self.num_particles)
        guide = self.guide_fn if guide is None else guide
        return SVI(self.model_fn, guide, as_numpyro_optimizer(self.optimizer), loss)

    def init(self, seed: PRNGKeyArray | int, *args: PyTree, **kwargs: PyTree) -> SVIState:
        """Initialise every member with ``SVI.init`` on its own key (``split(seed, E)``).

        Returns:
            A ``numpyro.infer.svi.SVIState`` whose leaves are stacked on ``(E,)``.
        """
        shardings = self.shardings
        args, kwargs = put_replicated((args, kwargs), shardings)
        _prepare_guide(self.guide_fn, args, kwargs)
        return _vi_init(self, as_key(seed), args, kwargs, shardings)

    def update(
        self, state: SVIState, *args: PyTree, **kwargs: PyTree
    ) -> tuple[SVIState, Float[Array, " E"]]:
        """One ``SVI.update`` for every member.

        Returns:
            ``(new_state, losses)`` with losses ``(E,)``.

        The model arguments are not checked (one step, as ``SVI.update``; `run`
        checks them once, up front): NaN in them gives NaN losses, and under
        ``on_nonfinite="skip"`` every member keeps its state.
        """
        _prepare_guide(self.guide_fn, args, kwargs)
        new_state, losses, ok = _vi_update(self, state, args, kwargs)
        if self.on_nonfinite == "raise":
            _loop.raise_if_concrete_nonfinite(ok)
        return new_state, losses

    def get_params(self, state: SVIState, *args: PyTree, **kwargs: PyTree) -> dict[str, Array]:
        """The constrained parameters of every member, stacked on ``(E,)``.

        The model arguments are needed (as for ``SVI.init``) to find each
        parameter's constraint.
        """
        _prepare_guide(self.guide_fn, args, kwargs)
        return _vi_params(self, state, args, kwargs)

    def run(
        self,
        seed: PRNGKeyArray | int,
        num_epochs: int,
        *args: PyTree,
        init_state: SVIState | EnsembleResult | None = None,
        progress: bool | None = False,
        **kwargs: PyTree,
    ) -> EnsembleResult:
        """Fit every member for ``num_epochs`` SVI steps (vmapped ``SVI.run``).

        Member ``e`` follows exactly what ``SVI.run(split(seed, E)[e], num_epochs,
        *args, **kwargs)`` would do; all members run in one ``lax.scan``.

        Args:
            seed: a PRNG key or an int seed.
            num_epochs: the number of SVI steps.
            *args: positional arguments of the model and guide (e.g. ``x, y``).
            init_state: continue from a stacked ``SVIState`` or an
                `EnsembleResult` (its ``state``); the random keys live in
                the state, so a split run equals one long run.
            progress: show a tqdm bar (the scan is then chunked).
            **kwargs: keyword arguments of the model and guide.

        Returns:
            An `EnsembleResult` with the constrained guide parameters and
            losses ``(E, num_epochs)``.
        """
        num_epochs = check_positive_int(num_epochs, "num_epochs")
        check_all_finite(args, "args")
        check_all_finite(kwargs, "kwargs")
        shardings = self.shardings
        start = 0
        if init_state is None:
            state = self.init(seed, *args, **kwargs)
        elif isinstance(init_state, EnsembleResult):
            if init_state.state is None:
                raise ConfigError("init_state: this EnsembleResult carries no SVI state")
            state, start = init_state.state, init_state.num_steps or 0
        else:
            state = init_state
        if not hasattr(state, "optim_state") or not hasattr(state, "rng_key"):
            raise ConfigError(
                "init_state: expected a stacked SVIState or an EnsembleResult, "
                f"got {type(state).__name__}"
            )
        state = put_members(state, shardings)
        args, kwargs = put_replicated((args, kwargs), shardings)
        _prepare_guide(self.guide_fn, args, kwargs)

        def run_chunk(st, step, length):
            return _vi_chunk(self, st, args, kwargs, length, shardings)

        state, losses, bad = _loop.drive(
            run_chunk,
            state,
            num_steps=num_epochs,
            start_step=start,
            progress=progress,
            on_nonfinite=self.on_nonfinite,
            desc="EnsembleVI",
            members=self.ensemble_size,
        )
        skipped = _loop.previous_skips(init_state, self.ensemble_size) + bad
        return EnsembleResult(
            self.get_params(state, *args, **kwargs), losses, skipped, state, start + num_epochs
        )


def _ready_svi(runner: EnsembleVI, args: tuple[PyTree, ...], kwargs: dict[str, PyTree]) -> SVI:
    """A single-member SVI whose parameter transforms are set up.

    ``SVI.init`` records the constraint transforms on the SVI object, so a
    fresh one is initialised here on a dummy key; XLA drops the unused work.
    """
    svi = runner.svi()
    svi.init(jr.PRNGKey(0), *args, **kwargs)
    return svi


def _member_update(
    runner: EnsembleVI,
    svi: SVI,
    state: SVIState,
    args: tuple[PyTree, ...],
    kwargs: dict[str, PyTree],
) -> tuple[SVIState, Float[Array, ""], Bool[Array, ""]]:
    new, loss = svi.update(state, *args, **kwargs)
    ok = jnp.isfinite(loss) & all_finite(new.optim_state)
    if runner.on_nonfinite == "skip":
        # keep the old parameters but take the new key, so the next try draws fresh noise
        kept = select(
            ok, (new.optim_state, new.mutable_state), (state.optim_state, state.mutable_state)
        )
        new = new._replace(optim_state=kept[0], mutable_state=kept[1])
    return new, loss, ok


@eqx.filter_jit
def _vi_init(runner: EnsembleVI, key, args, kwargs, shardings):
    svi = runner.svi(_member_init_guide(runner.guide_fn))
    keys = jr.split(key, runner.ensemble_size)
    state = jax.vmap(lambda k: svi.init(k, *args, **kwargs))(keys)
    return constrain_members(state, shardings)


@eqx.filter_jit
def _vi_update(runner: EnsembleVI, state, args, kwargs):
    svi = _ready_svi(runner, args, kwargs)
    return jax.vmap(lambda s: _member_update(runner, svi, s, args, kwargs))(state)


@eqx.filter_jit
def _vi_params(runner: EnsembleVI, state, args, kwargs):
    svi = _ready_svi(runner, args, kwargs)
    return jax.vmap(svi.get_params)(state)


@eqx.filter_jit
def _vi_chunk(runner: EnsembleVI, state, args, kwargs, length, shardings):
    svi = _ready_svi(runner, args, kwargs)

    def body(state, _):
        new, losses, ok = jax.vmap(lambda s: _member_update(runner, svi, s, args, kwargs))(state)
        return constrain_members(new, shardings), (losses, ok)

    state, (losses, ok) = jax.lax.scan(
        body, constrain_members(state, shardings), None, length=length
    )
    return state, losses.T, ok.T

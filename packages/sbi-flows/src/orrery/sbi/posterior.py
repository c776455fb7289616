"""Amortized conditional normalizing-flow posteriors (neural posterior estimation)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from orrery.interface import (
    ConfigError,
    ShapeError,
    as_int_seed,
    check_choice,
    check_finite,
    check_float,
    check_nonnegative,
    check_positive_int,
)

from . import _model
from ._aux import unwrap as unwrap_aux
from ._aux import with_aux_heads
from ._build import compiled_build
from ._fit_checks import warn_preparation_and_fit
from ._fit_report import warn_after_fit
from ._flow_names import BASE_DISTRIBUTIONS, FLOW_FAMILIES
from ._inference import PosteriorInference
from ._linear_start import MAX_ROWS as START_ROWS
from ._linear_start import linear_gaussian_start
from ._noise import make_batch_transform, make_elbo_loss
from ._posterior_io import FlowPosteriorPersistence
from ._precision import in_float32
from ._preprocess import OBSERVATION_TRANSFORMS, prepare_dataset
from ._recipe import recommended_config
from ._regularizers import regularized_loss
from ._sharding import resolve_devices
from ._splits import BOUNDS_MARGIN, PosteriorBatch
from ._training_plots import merge_hooks, plot_hook, write_final_plots
from .encoders import SPECTRUM_ENCODER_TYPES, build_observation_encoder
from .persistence import PersistentPosteriorEstimator
from .spaces import (
    PARAMETER_SPACES,
    PARAMETER_TRANSFORMS,
    ParameterSpace,
    choose_log_dims,
    log_dim_moments,
)
from .training._optim import check_lr_decay
from .training._streaming import SplitStream

__all__ = [
    "ConditionalAutoregressiveFlowPosterior",
    "ConditionalFlowPosterior",
    "ConditionalNeuralAutoregressiveFlowPosterior",
    "ConditionalSplineFlowPosterior",
]

TRAINING_OBJECTIVES = ("npe", "elbo")
CHECKPOINT_BACKENDS = ("auto", "orbax", "equinox")
_DIAGNOSTIC_ROWS = 128
_THRESHOLD_METRICS = {
    "stable_inverse_forward_max_abs_error_threshold": "inverse_forward_max_abs_error",
    "stable_inverse_forward_logdet_closure_max_abs_error_threshold": (
        "inverse_forward_logdet_closure_max_abs_error"
    ),
    "stable_cube_edge_hit_rate_threshold": "cube_edge_hit_rate",
}


def _check_linear_start(config: Mapping[str, Any]) -> None:
    """What ``linear_gaussian_start=True`` needs from the rest of the configuration."""
    if not config["encoder_linear_skip"]:
        raise ConfigError(
            "linear_gaussian_start=True needs encoder_linear_skip=True (the regression "
            "is carried by the encoder's linear skip)"
        )
    if config["embedding_dim"] < config["parameter_dim"]:
        raise ConfigError(
            f"linear_gaussian_start=True needs embedding_dim >= parameter_dim, got "
            f"embedding_dim={config['embedding_dim']} < parameter_dim={config['parameter_dim']}"
        )
    if config["flow_family"] == "neural_autoregressive":
        raise ConfigError(
            "linear_gaussian_start=True: flow_family='neural_autoregressive' cannot start "
            "as the identity; use 'spline', 'affine', 'autoregressive' or 'spline_affine'"
        )


def _check_observations(batch: PosteriorBatch, split: str) -> None:
    """Finite values and finite non-negative uncertainties in every block of a split."""
    for name, block in batch.observations.items():
        check_finite(block["values"], f"dataset {split} observations[{name!r}]")
        if "uncertainties" in block:
            check_nonnegative(
                block["uncertainties"], f"dataset {split} observations[{name!r}] uncertainties"
            )


class ConditionalFlowPosterior(
    PosteriorInference, FlowPosteriorPersistence, PersistentPosteriorEstimator
):
    """Amortized posterior ``q(theta | x)``: observation encoders and a conditional flow.

    ``fit(dataset)`` trains encoder and flow together by maximum likelihood of the
    simulated parameters given their observations (NPE), with
    `orrery.sbi.training.SBITrainer`. The density is learned in
    ``parameter_space`` (``"physical"``, ``"cube"`` or ``"unconstrained"``), and
    samples and log-densities are reported in that space.

    Every constructor argument is stored as an attribute of the same name. The
    architecture arguments (``embedding_dim`` ... ``use_base_affine``, encoder
    sizes) set the networks; the training arguments go to ``SBITrainer``;
    ``embedding_noise_*`` and ``parameter_noise_floor`` inject training-only noise;
    ``training_objective="elbo"`` trains by amortized variational inference
    (``parameter_space="cube"`` only); the ``stable_*_threshold`` arguments mark
    epochs whose validation closure diagnostics exceed them as unstable, and the
    best stable epoch is kept.

    Off at weight 0: ``spline_*_regularization_weight`` (spline family) add
    penalties on the spline parameters to the training loss (``_regularizers``);
    ``aux_*_loss_weight`` train linear heads on the embedding, dropped after
    training (``_aux``). ``verbose_diagnostics`` writes corner plots and loss curves
    to ``diagnostics_output_directory`` (``_training_plots``; extra ``[plot]``).

    Args:
        parameter_dim: number of inferred parameters.
        embedding_dim: size of the observation embedding the flow conditions on.
        num_coupling_layers: number of flow layers.
        hidden_dim: hidden width of the flow conditioners (and default encoder width).
        conditioner_depth: hidden layers of each flow conditioner.
        autoregressive_transform_units: hidden units per parameter of the masked
            autoregressive network; block size of the neural autoregressive flow.
        neural_autoregressive_min_slope: minimum slope of the NAF activation.
        neural_autoregressive_min_residual: residual share ``r`` of each NAF layer
            (``y = r x + (1 - r) f(x)``); bounds the slope of the numerical inverse.
        neural_autoregressive_inverse_bisection_steps: bisection halvings per
            coordinate when sampling a NAF.
        learning_rate: Adam step size (the peak of the cosine schedule).
        batch_size: simulations per optimiser step.
        num_epochs: passes over the training split.
        gradient_clip_norm: global-norm clipping (``None``: off).
        weight_decay: AdamW decoupled weight decay (0: plain Adam).
        early_stopping_patience: epochs without validation improvement before
            stopping (``None``: never); the best state is restored.
        early_stopping_min_delta: improvement that resets the patience.
        use_cosine_schedule: cosine decay with linear warm-up instead of a constant rate.
        warmup_fraction: warm-up length as a fraction of the schedule horizon.
        warmup_epochs: warm-up length in epochs (overrides ``warmup_fraction``).
        min_learning_rate: floor of the cosine schedule.
        lr_schedule_total_epochs: schedule horizon (default ``num_epochs``).
        lr_decay_patience: epochs of a validation plateau after which the best state
            is restored and the learning rate multiplied by ``lr_decay_factor`` (at
            most ``lr_decay_max`` times; ``None``: off). Not in the upstream estimator.
        lr_decay_factor: multiplier of each plateau decay.
        lr_decay_max: most plateau decays; early stopping counts after the last.
        encoder_linear_skip: add a zero-initialised linear map of the raw observation
            to the encoder's context vector (not upstream; changes the state layout).
        linear_gaussian_start: give the flow a conditional linear-Gaussian layer (in
            the spline families, half the couplings follow it) and start `fit` from the
            ridge-regression posterior ``N(A r + b, Σ)`` of the raw observation ``r``
            (conditioners start as the identity; see ``orrery.sbi._linear_start``). Needs
            ``encoder_linear_skip``, ``embedding_dim >= parameter_dim`` and a family other
            than ``"neural_autoregressive"``. Not upstream.
        observation_transform: observation preprocessing chosen from the training data at
            `fit` and recorded with the posterior: ``"none"`` (mean and standard deviation),
            ``"auto"`` (log / asinh of positive or multi-decade features, robust centre and
            scale where outliers dominate; the recipe's), ``"robust"``, ``"log"``,
            ``"asinh"`` (see ``orrery.sbi._preprocess``). Not upstream.
        parameter_transform: in ``"physical"`` space, model positive parameters in log
            space (exact map back; densities carry the Jacobian): ``"none"``, ``"log"``
            (all) or ``"auto"`` (the recipe's: positive, right-skewed parameters without a
            prior box, see ``orrery.sbi.spaces.choose_log_dims``). Not upstream.
        checkpoint_directory: where epoch-end checkpoints go (``None``: none).
        checkpoint_backend: ``"auto"``, ``"orbax"`` or ``"equinox"``.
        resume_from_checkpoint: continue from the checkpoint in ``checkpoint_directory``.
            All training options are handed to `SBITrainer`.
        parameter_space: ``"physical"``, ``"cube"`` or ``"unconstrained"``.
        flow_family: ``"spline"``, ``"affine"``, ``"autoregressive"``,
            ``"neural_autoregressive"`` or ``"spline_affine"`` (spline couplings, then a
            masked autoregressive affine layer given the observation; not upstream).
        num_spline_bins: knots of each rational-quadratic spline.
        spline_bound: spline interval ``[-spline_bound, spline_bound]`` (identity outside).
        base_distribution: ``"gaussian"`` or ``"student_t"`` (df = 5).
        use_base_affine: add a trainable elementwise affine to the base.
        training_objective: ``"npe"`` or ``"elbo"``.
        embedding_noise_std: multiple of each block's uncertainties added as Gaussian
            noise to training observations (flat noise of this size without uncertainties).
        embedding_noise_min_scale: floor of that noise, as a fraction of the block's
            mean uncertainty.
        parameter_noise_floor: std of Gaussian jitter added to training targets in
            unconstrained (flow) coordinates.
        stable_inverse_forward_max_abs_error_threshold: largest inverse-forward
            closure error of a stable epoch (``None``: unchecked).
        stable_inverse_forward_logdet_closure_max_abs_error_threshold: largest
            log-determinant closure error of a stable epoch (``None``: unchecked).
        stable_cube_edge_hit_rate_threshold: largest share of validation draws on
            the cube's edge for a stable epoch (``None``: unchecked).
        spectrum_encoder_type: ``"conv1d"``, ``"patch"`` or ``"mlp"``.
        n_wavelengths: length every ``"spectrum"`` block must have.
        spectrum_embedding_dim: output size of each spectrum/time-series encoder.
        photometry_embedding_dim: output size of each photometry/auxiliary encoder.
        encoder_hidden_dim: encoder width (default ``hidden_dim``).
        encoder_patch_size: patch length of the ``"patch"`` encoder.
        seed: seed of the initialisation, the training and default sampling.
        task_metadata: JSON-safe user metadata saved with the posterior.

    Example:
        >>> import numpy as np
        >>> from orrery.sbi import ConditionalFlowPosterior, SimulationDataset
        >>> theta = np.random.default_rng(0).normal(size=(512, 2))
        >>> ds = SimulationDataset.from_arrays(theta, theta + 0.1)
        >>> post = ConditionalFlowPosterior(2, embedding_dim=8, hidden_dim=16, num_epochs=2)
        >>> artifacts = post.fit(ds)  # doctest: +SKIP
    """

    estimator_family: ClassVar[str] = "conditional_flow"
    _forced_flow_family: ClassVar[str | None] = None

    def __init__(
        self,
        parameter_dim: int,
        embedding_dim: int = 128,
        num_coupling_layers: int = 4,
        hidden_dim: int = 128,
        conditioner_depth: int = 2,
        autoregressive_transform_units: int = 16,
        neural_autoregressive_min_slope: float = 0.001,
        neural_autoregressive_min_residual: float = 0.05,
        neural_autoregressive_inverse_bisection_steps: int = 48,
        learning_rate: float = 0.001,
        batch_size: int = 32,
        num_epochs: int = 5,
        parameter_space: str = "unconstrained",
        flow_family: str = "spline",
        num_spline_bins: int = 8,
        spline_bound: float = 10.0,
        base_distribution: str = "gaussian",
        use_base_affine: bool = False,
        training_objective: str = "npe",
        early_stopping_patience: int | None = None,
        early_stopping_min_delta: float = 0.0,
        checkpoint_directory: str | None = None,
        checkpoint_backend: str = "auto",
        resume_from_checkpoint: bool = False,
        gradient_clip_norm: float | None = 1.0,
        embedding_noise_std: float = 0.0,
        embedding_noise_min_scale: float = 0.0,
        aux_scale_loss_weight: float = 0.0,
        aux_parameter_loss_weight: float = 0.0,
        parameter_noise_floor: float = 0.0,
        spline_small_bin_regularization_weight: float | None = None,
        spline_min_bin_ratio_target: float = 0.2,
        spline_entropy_regularization_weight: float = 0.0,
        spline_derivative_regularization_weight: float = 0.0,
        spline_entropy_floor: float = 0.6,
        spline_min_derivative_target: float = 0.25,
        spline_max_derivative_target: float = 5.0,
        weight_decay: float = 0.0,
        use_cosine_schedule: bool = False,
        warmup_fraction: float = 0.02,
        warmup_epochs: float | None = None,
        min_learning_rate: float = 1e-06,
        lr_schedule_total_epochs: float | None = None,
        stable_inverse_forward_max_abs_error_threshold: float | None = 0.0001,
        stable_inverse_forward_logdet_closure_max_abs_error_threshold: float | None = 0.0001,
        stable_cube_edge_hit_rate_threshold: float | None = 0.0,
        spectrum_encoder_type: str = "conv1d",
        n_wavelengths: int = 233,
        spectrum_embedding_dim: int = 64,
        photometry_embedding_dim: int = 64,
        encoder_hidden_dim: int | None = None,
        encoder_patch_size: int = 32,
        seed: int = 0,
        task_metadata: Mapping[str, Any] | None = None,
        verbose_diagnostics: bool = False,
        diagnostics_output_directory: str | None = None,
        diagnostics_plot_interval: int = 1,
        lr_decay_patience: int | None = None,
        lr_decay_factor: float = 0.3,
        lr_decay_max: int = 3,
        encoder_linear_skip: bool = False,
        linear_gaussian_start: bool = False,
        observation_transform: str = "none",
        parameter_transform: str = "none",
    ) -> None:
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if self._forced_flow_family is not None:
            config["flow_family"] = self._forced_flow_family
        for name in (
            "parameter_dim",
            "embedding_dim",
            "num_coupling_layers",
            "hidden_dim",
            "autoregressive_transform_units",
            "batch_size",
            "num_epochs",
            "num_spline_bins",
            "n_wavelengths",
            "spectrum_embedding_dim",
            "photometry_embedding_dim",
            "encoder_patch_size",
            "neural_autoregressive_inverse_bisection_steps",
            "diagnostics_plot_interval",
        ):
            check_positive_int(config[name], name)
        check_positive_int(config["conditioner_depth"], "conditioner_depth", minimum=0)
        if config["encoder_hidden_dim"] is not None:
            check_positive_int(config["encoder_hidden_dim"], "encoder_hidden_dim")
        check_choice(config["flow_family"], FLOW_FAMILIES, "flow_family")
        check_choice(config["parameter_space"], PARAMETER_SPACES, "parameter_space")
        check_choice(config["base_distribution"], BASE_DISTRIBUTIONS, "base_distribution")
        check_choice(config["training_objective"], TRAINING_OBJECTIVES, "training_objective")
        check_choice(config["checkpoint_backend"], CHECKPOINT_BACKENDS, "checkpoint_backend")
        check_choice(
            config["spectrum_encoder_type"], SPECTRUM_ENCODER_TYPES, "spectrum_encoder_type"
        )
        for name, arg in inspect.signature(ConditionalFlowPosterior.__init__).parameters.items():
            if "float" in str(arg.annotation) and config[name] is not None:
                check_float(config[name], name)  # NaN or inf: NaN losses, silently
        if not config["spline_bound"] > 0:
            raise ConfigError(f"spline_bound: expected a positive value, got {spline_bound}")
        if not config["learning_rate"] > 0:
            raise ConfigError(f"learning_rate: expected a positive value, got {learning_rate}")
        check_lr_decay(lr_decay_patience, lr_decay_factor, lr_decay_max)
        if linear_gaussian_start:
            _check_linear_start(config)
        for name in ("embedding_noise_std", "embedding_noise_min_scale", "parameter_noise_floor"):
            if not config[name] >= 0:
                raise ConfigError(f"{name}: expected a non-negative value, got {config[name]}")
        config["seed"] = as_int_seed(seed)
        config["task_metadata"] = dict(task_metadata or {})
        self._config = config
        for name, value in config.items():
            setattr(self, name, value)
        self.effective_flow_family = config["flow_family"]
        self.model: _model.PosteriorModel | None = None
        self.parameter_names: list[str] = [f"theta[{i}]" for i in range(parameter_dim)]
        self.space: ParameterSpace | None = None
        self.observation_schema: dict[str, dict[str, Any]] | None = None
        self.preprocessing_metadata: dict[str, dict[str, Any]] | None = None
        self.dataset_manifest: dict[str, Any] | None = None
        self.dataset_fingerprint: str | None = None
        self.support_bounded = False
        self.training_history: dict[str, list[float]] | None = None
        self._flow_shift = np.zeros(parameter_dim)
        self._flow_scale = np.ones(parameter_dim)
        self._from_recipe = False  # set by `recommended`: the fit warnings' advice differs
        self.observation_transform = check_choice(
            observation_transform, OBSERVATION_TRANSFORMS, "observation_transform"
        )
        self.parameter_transform = check_choice(
            parameter_transform, PARAMETER_TRANSFORMS, "parameter_transform"
        )
        if parameter_transform == "log" and parameter_space != "physical":
            raise ConfigError(
                "parameter_transform='log' needs parameter_space='physical' (the cube and "
                f"unconstrained spaces already map a bounded prior), got {parameter_space!r}"
            )

    @classmethod
    def recommended(
        cls, parameter_dim: int, num_simulations: int, **overrides: Any
    ) -> ConditionalFlowPosterior:
        """A configured, unfitted posterior for users who do not want to tune.

        The general-purpose recipe: training starts from the ridge-regression
        (linear-Gaussian) posterior of the raw observation (``linear_gaussian_start``),
        neural spline couplings then an affine autoregressive layer
        (``"spline_affine"``) in z-scored physical coordinates (draws outside a
        bounded prior rejected), an encoder with a linear skip, width and batch size
        adapted to ``num_simulations``, a cosine learning-rate schedule over about
        8,000 optimiser steps and at least 60 epochs, lowered on validation plateaus,
        and early stopping that restores the best state (see ``orrery.sbi._recipe``
        for each choice).

        Args:
            parameter_dim: number of inferred parameters.
            num_simulations: simulations the posterior will be trained on.
            **overrides: any constructor argument, replacing the recipe's value.

        Returns:
            An unfitted posterior of this class.

        Raises:
            ConfigError: an override that is not a constructor argument.

        Example:
            >>> post = ConditionalFlowPosterior.recommended(2, 10_000, seed=1)
            >>> post.flow_family, post.batch_size, post.early_stopping_patience
            ('spline_affine', 256, 12)
        """
        config = recommended_config(parameter_dim, num_simulations)
        known = inspect.signature(cls.__init__).parameters
        unknown = sorted(k for k in overrides if k not in known or k == "parameter_dim")
        if unknown:
            raise ConfigError(
                f"overrides: {unknown} are not constructor arguments of {cls.__name__}"
            )
        config.update(overrides)
        posterior = cls(parameter_dim, **config)
        posterior._from_recipe = True
        return posterior

    def __repr__(self) -> str:
        state = "fitted" if self.model is not None else "not fitted"
        return (
            f"{type(self).__name__}(parameter_dim={self.parameter_dim}, "
            f"flow_family={self.flow_family!r}, parameter_space={self.parameter_space!r}, {state})"
        )

    # ------------------------------------------------------------------ building
    @property
    def resolved_encoder_hidden_dim(self) -> int:
        return self.encoder_hidden_dim or self.hidden_dim

    def _flow_kwargs(self) -> dict[str, Any]:
        """Every argument of ``build_flow`` but the key."""
        return dict(
            flow_family=self.flow_family,
            dim=self.parameter_dim,
            cond_dim=self.embedding_dim,
            num_layers=self.num_coupling_layers,
            hidden_dim=self.hidden_dim,
            depth=self.conditioner_depth,
            base_distribution=self.base_distribution,
            use_base_affine=self.use_base_affine,
            num_spline_bins=self.num_spline_bins,
            spline_bound=self.spline_bound,
            autoregressive_transform_units=self.autoregressive_transform_units,
            neural_autoregressive_min_slope=self.neural_autoregressive_min_slope,
            neural_autoregressive_min_residual=self.neural_autoregressive_min_residual,
            neural_autoregressive_inverse_bisection_steps=(
                self.neural_autoregressive_inverse_bisection_steps
            ),
            linear_gaussian_end=self.linear_gaussian_start,
        )

    def _encoder_kwargs(self) -> dict[str, Any]:
        """Every argument of ``build_observation_encoder`` but the schema and the key."""
        return dict(
            embedding_dim=self.embedding_dim,
            spectrum_encoder_type=self.spectrum_encoder_type,
            spectrum_embedding_dim=self.spectrum_embedding_dim,
            photometry_embedding_dim=self.photometry_embedding_dim,
            encoder_hidden_dim=self.resolved_encoder_hidden_dim,
            encoder_patch_size=self.encoder_patch_size,
            n_wavelengths=self.n_wavelengths,
            linear_skip=self.encoder_linear_skip,
        )

    @in_float32
    def _build_model(self) -> _model.PosteriorModel:
        # Always float32 (also under ``jax_enable_x64``): the weights' layout, the
        # cached build program and a saved posterior's byte count depend on it.
        # The key is made of exactly what `_build_networks` passes on, so a fit that
        # changes only training settings reuses the program, and no build input is missed.
        schema = tuple((k, tuple(sorted(v.items()))) for k, v in self.observation_schema.items())
        architecture = (
            type(self).__name__,
            repr(sorted(self._flow_kwargs().items())),
            repr(sorted(self._encoder_kwargs().items())),
            schema,
        )
        encoder, flow = compiled_build(self._build_networks, jr.key(self.seed), architecture)
        coords = _model._Coordinates(
            self.parameter_space,
            jnp.asarray(self._flow_shift, jnp.float32),
            jnp.asarray(self._flow_scale, jnp.float32),
            log_dims=self.space.log_dims if self.space is not None else (),
        )
        return _model.PosteriorModel(encoder, flow, coords)

    def _build_networks(self, key: jax.Array) -> tuple[Any, Any]:
        """Encoder and flow from a key; a function of the architecture config only."""
        from ._flows import build_flow  # flowjax's flows load on first build

        k_enc, k_flow = jr.split(key)
        encoder = build_observation_encoder(
            self.observation_schema, key=k_enc, **self._encoder_kwargs()
        )
        return encoder, build_flow(k_flow, **self._flow_kwargs())

    # ------------------------------------------------------------------ training
    def _read_split(self, dataset: Any, split: str) -> PosteriorBatch | None:
        if getattr(dataset, "streaming", False):  # first rows only: training streams
            n = dataset.split_size(split)
            return dataset.read_rows(split, 0, min(n, _DIAGNOSTIC_ROWS)) if n else None
        if hasattr(dataset, "split_arrays"):
            batch = dataset.split_arrays(split)
            return batch if np.shape(batch.parameters)[0] else None
        batches = list(dataset.iter_batches(split, 4096, seed=self.seed, shuffle=False))
        if not batches:
            return None
        return jax.tree.map(lambda *xs: np.concatenate(xs), *batches)

    def _adopt_dataset_metadata(self, dataset: Any, train: PosteriorBatch) -> None:
        theta = np.asarray(train.parameters, np.float64)
        names = getattr(dataset, "parameter_names", None)
        self.parameter_names = list(names) if names else self.parameter_names
        bounds = getattr(dataset, "parameter_bounds", None)
        # Bounds given by the user are the prior's support; bounds derived from the
        # data's range (with a margin) are only a coordinate box.
        self.support_bounded = bounds is not None and (
            getattr(dataset, "bounds_source", "given") == "given"
        )
        if bounds is None:
            lo, hi = theta.min(0), theta.max(0)
            pad = BOUNDS_MARGIN * np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
            bounds = np.stack([lo - pad, hi + pad], axis=1)
        bounds = np.asarray(bounds, np.float64)
        self.space = ParameterSpace(self.parameter_space, bounds[:, 0], bounds[:, 1])
        if self.parameter_space == "physical":  # a positive prior's parameters: log space
            log_dims = choose_log_dims(
                theta, self.parameter_transform, bounded=self.support_bounded
            )
            self.space = ParameterSpace("physical", bounds[:, 0], bounds[:, 1], log_dims)
        schema = getattr(dataset, "observation_schema", None)
        if schema is None:
            schema = {
                name: {
                    "modality": "auxiliary",
                    "size": int(np.shape(block["values"])[1]),
                    "has_uncertainties": "uncertainties" in block,
                }
                for name, block in train.observations.items()
            }
        self.observation_schema = {k: dict(v) for k, v in schema.items()}
        prep = getattr(dataset, "preprocessing_metadata", None)
        self.preprocessing_metadata = (
            None if prep is None else {k: dict(v) for k, v in prep.items()}
        )
        manifest = getattr(dataset, "manifest", None)
        self.dataset_manifest = None if manifest is None else dict(manifest)
        self.dataset_fingerprint = getattr(dataset, "fingerprint", None) or (
            (manifest or {}).get("fingerprint")
        )
        if self.parameter_space == "physical":
            moments = getattr(dataset, "parameter_moments", None)  # streaming readers
            self._flow_shift, std = moments() if moments else (theta.mean(0), theta.std(0))
            self._flow_scale = np.where(std > 0, std, 1.0)
            self._flow_shift, self._flow_scale = log_dim_moments(
                self.space, theta, self._flow_shift, self._flow_scale
            )
        else:
            self._flow_shift = np.zeros(self.parameter_dim)
            self._flow_scale = np.ones(self.parameter_dim)

    def _as_flow_batch(self, batch: PosteriorBatch) -> PosteriorBatch:
        theta = np.asarray(batch.parameters, np.float64)
        check_finite(theta, "dataset parameters")
        z = _model.flow_targets(self.space, self._flow_shift, self._flow_scale, theta)
        obs = jax.tree.map(lambda a: np.asarray(a, np.float32), batch.observations)
        return PosteriorBatch(z.astype(np.float32), obs)

    def _make_trainer(self) -> Any:
        from .training import SBITrainer

        return SBITrainer(
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            num_epochs=self.num_epochs,
            gradient_clip_norm=self.gradient_clip_norm,
            weight_decay=self.weight_decay,
            early_stopping_patience=self.early_stopping_patience,
            early_stopping_min_delta=self.early_stopping_min_delta,
            use_cosine_schedule=self.use_cosine_schedule,
            warmup_fraction=self.warmup_fraction,
            warmup_epochs=self.warmup_epochs,
            min_learning_rate=self.min_learning_rate,
            lr_schedule_total_epochs=self.lr_schedule_total_epochs,
            lr_decay_patience=self.lr_decay_patience,
            lr_decay_factor=self.lr_decay_factor,
            lr_decay_max=self.lr_decay_max,
            checkpoint_directory=self.checkpoint_directory,
            checkpoint_backend=self.checkpoint_backend,
            resume_from_checkpoint=self.resume_from_checkpoint,
            seed=self.seed,
            progress=True,
        )

    @in_float32
    def fit(
        self,
        dataset: Any,
        *,
        elbo_log_likelihood_fn: Callable[[jax.Array, Any], jax.Array] | None = None,
        elbo_num_samples: int = 1,
        devices: Any = None,
    ) -> Any:
        """Train encoder and flow on a simulation dataset.

        Args:
            dataset: a `SimulationDataset` or any reader with
                ``iter_batches(split, batch_size, *, seed, shuffle)`` yielding
                `PosteriorBatch` (and optionally its metadata attributes).
            elbo_log_likelihood_fn: for ``training_objective="elbo"``:
                ``(theta_cube (b, d), observations) -> (b,)`` differentiable
                log-likelihood of the batch's observations.
            elbo_num_samples: reparameterised draws per observation for the ELBO.
            devices: ``None`` (one device), ``"all"`` (every device of every
                process) or a sequence of devices: data-parallel training, each
                minibatch split over the devices with the model replicated;
                ``batch_size`` is the global batch and must divide by the device
                count. The same seed gives the same history and model as one
                device, up to float round-off. Under ``jax.distributed`` every
                process calls ``fit`` with the same dataset; each feeds only its
                own devices' rows, and every process ends with the same model.

        Returns:
            ``TrainingArtifacts`` (history with ``train_loss``, ``val_loss``,
            ``learning_rate`` per epoch, validation metrics, trainer metadata).

        Raises:
            ShapeError: the dataset's parameters do not have ``parameter_dim`` columns.
            ConfigError: ELBO without a cube space or a log-likelihood function; bad
                ``devices`` or a batch size that does not divide by their number.
        """
        if not hasattr(dataset, "iter_batches"):
            raise ConfigError(
                f"dataset: expected a reader with iter_batches(...), got {type(dataset).__name__}"
            )
        if devices is not None:
            resolve_devices(devices)  # a bad value fails before any data is read
        if self.training_objective == "elbo":
            if self.parameter_space != "cube":
                raise ConfigError(
                    "training_objective='elbo' needs parameter_space='cube' (uniform prior), "
                    f"got parameter_space={self.parameter_space!r}"
                )
            if elbo_log_likelihood_fn is None:
                raise ConfigError("training_objective='elbo' needs elbo_log_likelihood_fn")
        dataset, prep_notes = prepare_dataset(dataset, self.observation_transform)
        train = self._read_split(dataset, "train")
        if train is None:
            raise ConfigError("dataset: the training split is empty")
        dim = np.shape(train.parameters)[-1]
        if np.ndim(train.parameters) != 2 or dim != self.parameter_dim:
            raise ShapeError(
                f"dataset parameters: expected shape (n, {self.parameter_dim}) for "
                f"parameter_dim={self.parameter_dim}, got {np.shape(train.parameters)}"
            )
        _check_observations(train, "train")
        val = self._read_split(dataset, "validation")
        if val is not None:
            _check_observations(val, "validation")
        self._adopt_dataset_metadata(dataset, train)
        train_z = self._as_flow_batch(train)
        val_z = None if val is None else self._as_flow_batch(val)
        train_data, val_data = train_z, val_z
        if getattr(dataset, "streaming", False):
            train_data = SplitStream(dataset, "train", self._as_flow_batch)
            if val_z is not None:
                val_data = SplitStream(dataset, "validation", self._as_flow_batch)
        model = self._build_model()
        start_info = None
        if self.linear_gaussian_start:
            rows = train_z
            if getattr(dataset, "streaming", False):  # train_z holds only the first rows
                n = dataset.split_size("train")
                rows = self._as_flow_batch(dataset.read_rows("train", 0, min(n, START_ROWS)))
            model, start_info = linear_gaussian_start(
                model, rows.parameters, rows.observations, seed=self.seed
            )
        loss_fn, val_loss_fn = _model.npe_loss, None
        if self.training_objective == "elbo":
            num = check_positive_int(elbo_num_samples, "elbo_num_samples")
            loss_fn = val_loss_fn = make_elbo_loss(elbo_log_likelihood_fn, num)
        if self.effective_flow_family == "spline":
            val_loss_fn = val_loss_fn or loss_fn
            loss_fn = self._regularized(loss_fn)
        model, loss_fn, val_loss_fn = with_aux_heads(
            model,
            loss_fn,
            val_loss_fn,
            parameter_weight=self.aux_parameter_loss_weight,
            scale_weight=self.aux_scale_loss_weight,
            key=jr.key(self.seed + 2),
        )
        batch_transform = make_batch_transform(
            embedding_noise_std=self.embedding_noise_std,
            embedding_noise_min_scale=self.embedding_noise_min_scale,
            parameter_noise_floor=self.parameter_noise_floor,
            flow_scale=self._flow_scale,
        )
        extra: dict[str, Any] = {}
        thresholds = {
            metric: getattr(self, arg)
            for arg, metric in _THRESHOLD_METRICS.items()
            if getattr(self, arg) is not None
        }
        trainer = self._make_trainer()
        diag_data = val_z if val_z is not None else train_z
        if thresholds:
            extra["epoch_metrics_fn"] = self._epoch_metrics_fn(diag_data)
            if "stability_thresholds" in inspect.signature(trainer.fit).parameters:
                extra["stability_thresholds"] = thresholds
        plot_obs = jax.tree.map(lambda a: a[:1], diag_data.observations)
        if self.verbose_diagnostics:
            hook = plot_hook(
                plot_obs,
                self.diagnostics_output_directory,
                self.diagnostics_plot_interval,
                labels=self.parameter_names,
                seed=self.seed,
            )
            extra["epoch_metrics_fn"] = merge_hooks(extra.get("epoch_metrics_fn"), hook)
        model, artifacts = trainer.fit(
            model,
            loss_fn,
            train_data,
            val_data,
            val_loss_fn=val_loss_fn,
            batch_transform=batch_transform,
            devices=devices,
            **extra,
        )
        self.model = unwrap_aux(model)
        if start_info is not None:
            artifacts.trainer_metadata["linear_gaussian_start"] = start_info
        self.training_history = {k: list(v) for k, v in artifacts.history.items()}
        warn_after_fit(
            artifacts,
            self.model,
            artifacts.trainer_metadata["n_train"],
            from_recipe=self._from_recipe,
        )
        warn_preparation_and_fit(artifacts, dataset, train, prep_notes)
        if self.verbose_diagnostics:
            write_final_plots(
                model,
                self.training_history,
                plot_obs,
                self.diagnostics_output_directory,
                labels=self.parameter_names,
                seed=self.seed,
            )
        return artifacts

    def _regularized(self, loss_fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        return regularized_loss(
            loss_fn,
            small_bin_weight=self.spline_small_bin_regularization_weight or 0.0,
            entropy_weight=self.spline_entropy_regularization_weight,
            derivative_weight=self.spline_derivative_regularization_weight,
            min_bin_ratio_target=self.spline_min_bin_ratio_target,
            entropy_floor=self.spline_entropy_floor,
            min_derivative_target=self.spline_min_derivative_target,
            max_derivative_target=self.spline_max_derivative_target,
        )

    def _epoch_metrics_fn(self, data: PosteriorBatch) -> Callable[[Any], dict[str, float]]:
        rows = min(_DIAGNOSTIC_ROWS, np.shape(data.parameters)[0])
        subset = jax.tree.map(lambda a: jnp.asarray(a[:rows]), data)
        key = jr.key(self.seed + 1)

        def metrics(model: Any) -> dict[str, float]:
            out = _model.closure_metrics(
                unwrap_aux(model), subset.parameters, subset.observations, key
            )
            return {k: float(v) for k, v in out.items()}

        return metrics

    def _validation_diagnostics(self, model: Any, batch: PosteriorBatch) -> dict[str, float]:
        """Closure errors and cube-edge hit rate of ``model`` on a batch in flow coordinates."""
        return self._epoch_metrics_fn(batch)(model)

    @staticmethod
    def _batch_embeddings(model: Any, observations: Any) -> jax.Array:
        """Context vectors of a batch of normalised observations."""
        return _model.embed_batch(model, observations)

    @staticmethod
    def _loss(model: Any, batch: PosteriorBatch) -> jax.Array:
        """NPE loss of a batch whose parameters are in flow coordinates."""
        return _model.npe_loss(model, batch)

    @staticmethod
    def _training_loss(model: Any, batch: PosteriorBatch, key: Any = None) -> jax.Array:
        """The NPE training loss (noise, when configured, enters through the batch transform)."""
        return _model.npe_loss(model, batch, key)

    @staticmethod
    def _make_elbo_loss(
        log_likelihood_fn: Callable[[jax.Array, Any], jax.Array],
        parameter_space: str,
        *,
        num_samples: int = 1,
    ) -> Callable[[Any, PosteriorBatch, jax.Array], jax.Array]:
        """Negative amortized ELBO ``-E_q[log p(x|u) - log q(u|x)]`` for a cube-space posterior."""
        if parameter_space != "cube":
            raise ConfigError(
                f"the ELBO objective needs parameter_space='cube', got {parameter_space!r}"
            )
        return make_elbo_loss(log_likelihood_fn, check_positive_int(num_samples, "num_samples"))


class ConditionalSplineFlowPosterior(ConditionalFlowPosterior):
    """`ConditionalFlowPosterior` with ``flow_family="spline"``."""

    _forced_flow_family: ClassVar[str | None] = "spline"


class ConditionalAutoregressiveFlowPosterior(ConditionalFlowPosterior):
    """`ConditionalFlowPosterior` with ``flow_family="autoregressive"``."""

    _forced_flow_family: ClassVar[str | None] = "autoregressive"


class ConditionalNeuralAutoregressiveFlowPosterior(ConditionalFlowPosterior):
    """`ConditionalFlowPosterior` with ``flow_family="neural_autoregressive"``."""

    _forced_flow_family: ClassVar[str | None] = "neural_autoregressive"

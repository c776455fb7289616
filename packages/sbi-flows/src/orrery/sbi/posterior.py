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
    NotFittedError,
    ShapeError,
    check_choice,
    check_finite,
    check_float,
    check_nonnegative,
    check_positive_int,
)

from ._config import PosteriorConfig, posterior_specs
from ._fit_checks import warn_preparation_and_fit
from ._flows.linear_start import MAX_ROWS as START_ROWS
from ._flows.linear_start import linear_gaussian_start
from ._host_keys import split_seed
from ._posterior import model as _model
from ._posterior.aux import unwrap as unwrap_aux
from ._posterior.aux import with_aux_heads
from ._posterior.build import compiled_build
from ._posterior.fit_report import warn_after_fit
from ._posterior.inference import PosteriorInference
from ._posterior.io import FlowPosteriorPersistence
from ._posterior.objectives import make_batch_transform, make_elbo_loss
from ._posterior.recipe import recommended_config
from ._posterior.training_plots import merge_hooks, plot_hook, write_final_plots
from ._precision import in_float32
from ._preprocess import OBSERVATION_TRANSFORMS, prepare_dataset
from ._sharding import resolve_devices
from ._splits import (
    BatchReader,
    PosteriorBatch,
    SimulationSource,
    as_source,
    derived_bounds,
)
from .persistence import PersistentPosteriorEstimator
from .spaces import (
    PARAMETER_SPACES,
    PARAMETER_TRANSFORMS,
    ParameterSpace,
    choose_log_dims,
    log_dim_moments,
)
from .training import SBITrainer, TrainingArtifacts
from .training._streaming import SplitStream
from .training.trainer import LossFn

__all__ = [
    "ConditionalAutoregressiveFlowPosterior",
    "ConditionalFlowPosterior",
    "ConditionalNeuralAutoregressiveFlowPosterior",
    "ConditionalSplineFlowPosterior",
]

TRAINING_OBJECTIVES = ("npe", "elbo")
_DIAGNOSTIC_ROWS = 128
_THRESHOLD_METRICS = {
    "stable_inverse_forward_max_abs_error_threshold": "inverse_forward_max_abs_error",
    "stable_inverse_forward_logdet_closure_max_abs_error_threshold": (
        "inverse_forward_logdet_closure_max_abs_error"
    ),
    "stable_cube_edge_hit_rate_threshold": "cube_edge_hit_rate",
}


def _check_observations(batch: PosteriorBatch, split: str) -> None:
    """Finite values and finite non-negative uncertainties in every block of a split."""
    for name, block in batch.observations.items():
        check_finite(block["values"], f"dataset {split} observations[{name!r}]")
        if "uncertainties" in block:
            check_nonnegative(
                block["uncertainties"], f"dataset {split} observations[{name!r}] uncertainties"
            )


class ConditionalFlowPosterior(
    PosteriorInference, FlowPosteriorPersistence, PersistentPosteriorEstimator, PosteriorConfig
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
            (conditioners start as the identity; see ``orrery.sbi._flows.linear_start``). Needs
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
        specs = posterior_specs(config)
        self.flow_spec, self.encoder_spec, self.training_spec, self.regularizer_spec = specs
        check_choice(parameter_space, PARAMETER_SPACES, "parameter_space")
        check_choice(training_objective, TRAINING_OBJECTIVES, "training_objective")
        for name in _THRESHOLD_METRICS:
            if config[name] is not None:
                check_float(config[name], name)  # NaN or inf: NaN losses, silently
        config["seed"] = self.seed
        config["task_metadata"] = dict(task_metadata or {})
        self._config = config
        self.parameter_space = parameter_space
        self.training_objective = training_objective
        self.stable_inverse_forward_max_abs_error_threshold = (
            stable_inverse_forward_max_abs_error_threshold
        )
        self.stable_inverse_forward_logdet_closure_max_abs_error_threshold = (
            stable_inverse_forward_logdet_closure_max_abs_error_threshold
        )
        self.stable_cube_edge_hit_rate_threshold = stable_cube_edge_hit_rate_threshold
        self.encoder_hidden_dim = encoder_hidden_dim
        self.task_metadata = config["task_metadata"]
        self.verbose_diagnostics = bool(verbose_diagnostics)
        self.diagnostics_output_directory = diagnostics_output_directory
        self.diagnostics_plot_interval = check_positive_int(
            diagnostics_plot_interval, "diagnostics_plot_interval"
        )
        self.effective_flow_family = self.flow_spec.flow_family
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
        and early stopping that restores the best state (see ``orrery.sbi._posterior.recipe``
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
        return self.encoder_spec.hidden_dim

    def _root_keys(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(build, auxiliary heads, epoch metrics)`` keys, split from ``seed``'s key.

        ``jr.split(jr.key(seed), 3)``'s values, computed on the host (eagerly, JAX
        compiles four small programs for them).
        """
        k_build, k_aux, k_metrics = split_seed(self.seed, 3)
        return k_build, k_aux, k_metrics

    @in_float32
    def _build_model(self) -> _model.PosteriorModel:
        # Always float32 (also under ``jax_enable_x64``): the weights' layout, the
        # cached build program and a saved posterior's byte count depend on it.
        # The key is made of exactly what `_build_networks` reads, so a fit that
        # changes only training settings reuses the program, and no build input is missed.
        schema = self._schema()
        frozen = tuple((k, tuple(sorted(v.items()))) for k, v in schema.items())
        architecture = (type(self).__name__, self.flow_spec, self.encoder_spec, frozen)
        key = self._root_keys()[0]
        encoder, flow = compiled_build(self._build_networks, key, architecture)
        coords = _model._Coordinates(
            self.parameter_space,
            # cast by NumPy: a device-side cast would be a program of its own
            jax.device_put(np.asarray(self._flow_shift, np.float32)),
            jax.device_put(np.asarray(self._flow_scale, np.float32)),
            log_dims=self.space.log_dims if self.space is not None else (),
        )
        return _model.PosteriorModel(encoder, flow, coords)

    def _build_networks(self, key: jax.Array) -> tuple[Any, Any]:
        """Encoder and flow from a key; a function of the architecture specs only."""
        k_enc, k_flow = jr.split(key)
        return self.encoder_spec.build(self._schema(), k_enc), self.flow_spec.build(k_flow)

    def _schema(self) -> dict[str, dict[str, Any]]:
        if self.observation_schema is None:
            raise NotFittedError("the posterior has no observation schema before fit or load")
        return self.observation_schema

    # ------------------------------------------------------------------ training
    def _read_split(self, dataset: SimulationSource, split: str) -> PosteriorBatch | None:
        """A split's rows (of a streaming source the first rows only: training streams)."""
        n = dataset.split_size(split)
        if dataset.streaming:
            n = min(n, _DIAGNOSTIC_ROWS)
        return dataset.read_rows(split, 0, n) if n else None

    def _adopt_dataset_metadata(self, dataset: SimulationSource, train: PosteriorBatch) -> None:
        theta = np.asarray(train.parameters, np.float64)
        names = dataset.parameter_names
        self.parameter_names = list(names) if names else self.parameter_names
        bounds = dataset.parameter_bounds
        # Bounds given by the user are the prior's support; bounds derived from the
        # data's range (with a margin) are only a coordinate box.
        self.support_bounded = bounds is not None and dataset.bounds_source == "given"
        if bounds is None:
            bounds = derived_bounds(theta.min(0), theta.max(0))
        bounds = np.asarray(bounds, np.float64)
        self.space = ParameterSpace(self.parameter_space, bounds[:, 0], bounds[:, 1])
        if self.parameter_space == "physical":  # a positive prior's parameters: log space
            log_dims = choose_log_dims(
                theta, self.parameter_transform, bounded=self.support_bounded
            )
            self.space = ParameterSpace("physical", bounds[:, 0], bounds[:, 1], log_dims)
        schema = dataset.observation_schema
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
        prep = dataset.preprocessing_metadata
        self.preprocessing_metadata = (
            None if prep is None else {k: dict(v) for k, v in prep.items()}
        )
        manifest = dataset.manifest
        self.dataset_manifest = None if manifest is None else dict(manifest)
        self.dataset_fingerprint = dataset.fingerprint
        if self.parameter_space == "physical":
            self._flow_shift, std = dataset.parameter_moments()
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

    def _make_trainer(self) -> SBITrainer:
        return SBITrainer.from_spec(self.training_spec)

    @in_float32
    def _elbo_loss(
        self,
        elbo_log_likelihood_fn: Callable[[jax.Array, Any], jax.Array] | None,
        elbo_num_samples: int,
    ) -> Callable[..., jax.Array] | None:
        """The ELBO loss for ``training_objective="elbo"`` (checked), else None."""
        if self.training_objective != "elbo":
            return None
        if self.parameter_space != "cube":
            raise ConfigError(
                "training_objective='elbo' needs parameter_space='cube' (uniform prior), "
                f"got parameter_space={self.parameter_space!r}"
            )
        if elbo_log_likelihood_fn is None:
            raise ConfigError("training_objective='elbo' needs elbo_log_likelihood_fn")
        num = check_positive_int(elbo_num_samples, "elbo_num_samples")
        return make_elbo_loss(elbo_log_likelihood_fn, num)

    def fit(
        self,
        dataset: SimulationSource | BatchReader,
        *,
        elbo_log_likelihood_fn: Callable[[jax.Array, Any], jax.Array] | None = None,
        elbo_num_samples: int = 1,
        devices: Any = None,
    ) -> TrainingArtifacts:
        """Train encoder and flow on a simulation dataset.

        Args:
            dataset: a `SimulationDataset`, a `StreamingSimulationDataset` (any
                ``orrery.sbi._splits.SimulationSource``), or a bare reader with
                ``iter_batches(split, batch_size, *, seed, shuffle)`` yielding
                `PosteriorBatch` (its metadata is then derived from the rows).
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
        if devices is not None:
            resolve_devices(devices)  # a bad value fails before any data is read
        elbo_loss = self._elbo_loss(elbo_log_likelihood_fn, elbo_num_samples)
        dataset, prep_notes = prepare_dataset(dataset, self.observation_transform)
        source = as_source(dataset, seed=self.seed)
        train, val = self._checked_splits(source)
        self._adopt_dataset_metadata(source, train)
        train_z = self._as_flow_batch(train)
        val_z = None if val is None else self._as_flow_batch(val)
        train_data: PosteriorBatch | SplitStream = train_z
        val_data: PosteriorBatch | SplitStream | None = val_z
        if source.streaming:
            train_data = SplitStream(source, "train", self._as_flow_batch)
            if val_z is not None:
                val_data = SplitStream(source, "validation", self._as_flow_batch)
        _, k_aux, k_metrics = self._root_keys()
        model = self._build_model()
        start_info = None
        if self.linear_gaussian_start:
            rows = train_z
            if source.streaming:  # train_z holds only the first rows
                n = source.split_size("train")
                rows = self._as_flow_batch(source.read_rows("train", 0, min(n, START_ROWS)))
            model, start_info = linear_gaussian_start(
                model, rows.parameters, rows.observations, seed=self.seed
            )
        model, loss_fn, val_loss_fn = self._losses(model, elbo_loss, k_aux)
        diag_data = val_z if val_z is not None else train_z
        thresholds, metrics_fn = self._stability(diag_data, k_metrics)
        plot_obs = jax.tree.map(lambda a: a[:1], diag_data.observations)
        if self.verbose_diagnostics:
            hook = plot_hook(
                plot_obs,
                self.diagnostics_output_directory,
                self.diagnostics_plot_interval,
                labels=self.parameter_names,
                seed=self.seed,
            )
            metrics_fn = merge_hooks(metrics_fn, hook)
        model, artifacts = self._make_trainer().fit(
            model,
            loss_fn,
            train_data,
            val_data,
            val_loss_fn=val_loss_fn,
            epoch_metrics_fn=metrics_fn,
            batch_transform=make_batch_transform(
                embedding_noise_std=self.embedding_noise_std,
                embedding_noise_min_scale=self.embedding_noise_min_scale,
                parameter_noise_floor=self.parameter_noise_floor,
                flow_scale=self._flow_scale,
            ),
            stability_thresholds=thresholds or None,
            devices=devices,
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
        warn_preparation_and_fit(artifacts, source, train, prep_notes)
        directory = self.diagnostics_output_directory
        if self.verbose_diagnostics and directory is not None:  # plot_hook checked it
            write_final_plots(
                model,
                self.training_history,
                plot_obs,
                directory,
                labels=self.parameter_names,
                seed=self.seed,
            )
        return artifacts

    def _checked_splits(
        self, source: SimulationSource
    ) -> tuple[PosteriorBatch, PosteriorBatch | None]:
        """The (first rows of the) training and validation splits, checked."""
        train = self._read_split(source, "train")
        if train is None:
            raise ConfigError("dataset: the training split is empty")
        dim = np.shape(train.parameters)[-1]
        if np.ndim(train.parameters) != 2 or dim != self.parameter_dim:
            raise ShapeError(
                f"dataset parameters: expected shape (n, {self.parameter_dim}) for "
                f"parameter_dim={self.parameter_dim}, got {np.shape(train.parameters)}"
            )
        _check_observations(train, "train")
        val = self._read_split(source, "validation")
        if val is not None:
            _check_observations(val, "validation")
        return train, val

    def _losses(
        self, model: _model.PosteriorModel, elbo_loss: LossFn | None, key: jax.Array
    ) -> tuple[Any, LossFn, LossFn | None]:
        """``(train_model, loss_fn, val_loss_fn)``: objective, penalties, auxiliary heads."""
        loss_fn: LossFn = _model.npe_loss
        val_loss_fn: LossFn | None = None
        if elbo_loss is not None:
            loss_fn = val_loss_fn = elbo_loss
        if self.effective_flow_family == "spline":
            val_loss_fn = val_loss_fn or loss_fn
            loss_fn = self._regularized(loss_fn)
        return with_aux_heads(
            model,
            loss_fn,
            val_loss_fn,
            parameter_weight=self.aux_parameter_loss_weight,
            scale_weight=self.aux_scale_loss_weight,
            key=key,
        )

    def _stability(
        self, data: PosteriorBatch, key: jax.Array
    ) -> tuple[dict[str, float], Callable[[Any], dict[str, float]] | None]:
        """The stability thresholds set, and the epoch metrics they are checked on."""
        thresholds: dict[str, float] = {}
        for arg, metric in _THRESHOLD_METRICS.items():
            limit = getattr(self, arg)
            if limit is not None:
                thresholds[metric] = limit
        return thresholds, (self._epoch_metrics_fn(data, key) if thresholds else None)

    def _regularized(self, loss_fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        return self.regularizer_spec.regularized(loss_fn)

    def _epoch_metrics_fn(
        self, data: PosteriorBatch, key: jax.Array
    ) -> Callable[[Any], dict[str, float]]:
        rows = min(_DIAGNOSTIC_ROWS, np.shape(data.parameters)[0])
        subset = jax.tree.map(lambda a: jnp.asarray(a[:rows]), data)

        def metrics(model: Any) -> dict[str, float]:
            out = _model.closure_metrics(
                unwrap_aux(model), subset.parameters, subset.observations, key
            )
            return {k: float(v) for k, v in out.items()}

        return metrics


class ConditionalSplineFlowPosterior(ConditionalFlowPosterior):
    """`ConditionalFlowPosterior` with ``flow_family="spline"``."""

    _forced_flow_family: ClassVar[str | None] = "spline"


class ConditionalAutoregressiveFlowPosterior(ConditionalFlowPosterior):
    """`ConditionalFlowPosterior` with ``flow_family="autoregressive"``."""

    _forced_flow_family: ClassVar[str | None] = "autoregressive"


class ConditionalNeuralAutoregressiveFlowPosterior(ConditionalFlowPosterior):
    """`ConditionalFlowPosterior` with ``flow_family="neural_autoregressive"``."""

    _forced_flow_family: ClassVar[str | None] = "neural_autoregressive"

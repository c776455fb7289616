"""The posterior's configuration as four frozen specs, each validated once.

`ConditionalFlowPosterior` keeps upstream's flat constructor keywords; its first act
is `posterior_specs`, which sorts them into a `FlowSpec` (the conditional flow), an
`EncoderSpec` (the observation encoder), a `TrainingSpec` (what `SBITrainer` runs)
and a `RegularizerSpec` (training-only penalties, noise and auxiliary heads). Each
spec checks its own fields in ``__post_init__``, with the `orrery.interface`
helpers, so a setting is checked in one place and worded one way. The builders
and the trainer take a spec instead of a score of forwarded keywords.

`SpecField` exposes a spec field under its flat constructor name (``posterior.
learning_rate``): reading returns the spec's value; writing replaces the spec by a
re-validated copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from orrery.interface import (
    ConfigError,
    as_int_seed,
    check_choice,
    check_float,
    check_fraction,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)

from ._flows.names import BASE_DISTRIBUTIONS, FLOW_FAMILIES
from .encoders import SPECTRUM_ENCODER_TYPES

if TYPE_CHECKING:
    import jax

__all__ = [
    "CHECKPOINT_BACKENDS",
    "EncoderSpec",
    "FlowSpec",
    "PosteriorConfig",
    "RegularizerSpec",
    "SpecField",
    "TrainingSpec",
    "posterior_specs",
]

CHECKPOINT_BACKENDS = ("auto", "orbax", "equinox")

T = TypeVar("T")


def _optional(check: Callable[[Any, str], T], value: Any, name: str) -> T | None:
    return None if value is None else check(value, name)


def _set(spec: Any, **values: Any) -> None:
    """Write checked values into a frozen spec (from its ``__post_init__`` only)."""
    for name, value in values.items():
        object.__setattr__(spec, name, value)


@dataclass(frozen=True)
class FlowSpec:
    """Architecture of the conditional flow (the arguments of ``build_flow``).

    The names are the posterior's constructor keywords; ``linear_gaussian_start``
    gives the flow its linear-Gaussian layer.
    """

    flow_family: str
    parameter_dim: int
    embedding_dim: int
    num_coupling_layers: int = 4
    hidden_dim: int = 128
    conditioner_depth: int = 2
    base_distribution: str = "gaussian"
    use_base_affine: bool = False
    num_spline_bins: int = 8
    spline_bound: float = 10.0
    autoregressive_transform_units: int = 16
    neural_autoregressive_min_slope: float = 0.001
    neural_autoregressive_min_residual: float = 0.05
    neural_autoregressive_inverse_bisection_steps: int = 48
    linear_gaussian_start: bool = False

    def __post_init__(self) -> None:
        check_choice(self.flow_family, FLOW_FAMILIES, "flow_family")
        check_choice(self.base_distribution, BASE_DISTRIBUTIONS, "base_distribution")
        for name in (
            "parameter_dim",
            "embedding_dim",
            "num_coupling_layers",
            "hidden_dim",
            "num_spline_bins",
            "autoregressive_transform_units",
            "neural_autoregressive_inverse_bisection_steps",
        ):
            _set(self, **{name: check_positive_int(getattr(self, name), name)})
        _set(
            self,
            conditioner_depth=check_positive_int(
                self.conditioner_depth, "conditioner_depth", minimum=0
            ),
            spline_bound=check_positive_float(self.spline_bound, "spline_bound"),
            neural_autoregressive_min_slope=check_float(
                self.neural_autoregressive_min_slope, "neural_autoregressive_min_slope"
            ),
            neural_autoregressive_min_residual=check_float(
                self.neural_autoregressive_min_residual, "neural_autoregressive_min_residual"
            ),
        )

    def build(self, key: jax.Array) -> Any:
        """The flow (a flowjax ``Transformed``) initialised from ``key``."""
        from ._flows.flows import build_flow  # flowjax's flows load on first build

        return build_flow(
            key,
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


@dataclass(frozen=True)
class EncoderSpec:
    """Architecture of the observation encoder (``hidden_dim`` already resolved)."""

    embedding_dim: int
    hidden_dim: int
    spectrum_encoder_type: str = "conv1d"
    spectrum_embedding_dim: int = 64
    photometry_embedding_dim: int = 64
    patch_size: int = 32
    n_wavelengths: int = 233
    linear_skip: bool = False

    def __post_init__(self) -> None:
        check_choice(self.spectrum_encoder_type, SPECTRUM_ENCODER_TYPES, "spectrum_encoder_type")
        for name, label in (
            ("embedding_dim", "embedding_dim"),
            ("hidden_dim", "encoder_hidden_dim"),
            ("spectrum_embedding_dim", "spectrum_embedding_dim"),
            ("photometry_embedding_dim", "photometry_embedding_dim"),
            ("patch_size", "encoder_patch_size"),
            ("n_wavelengths", "n_wavelengths"),
        ):
            _set(self, **{name: check_positive_int(getattr(self, name), label)})

    def build(self, schema: Mapping[str, Mapping[str, Any]], key: jax.Array) -> Any:
        """The encoder of an observation schema, initialised from ``key``."""
        from .encoders import build_observation_encoder

        return build_observation_encoder(
            schema,
            key=key,
            embedding_dim=self.embedding_dim,
            spectrum_encoder_type=self.spectrum_encoder_type,
            spectrum_embedding_dim=self.spectrum_embedding_dim,
            photometry_embedding_dim=self.photometry_embedding_dim,
            encoder_hidden_dim=self.hidden_dim,
            encoder_patch_size=self.patch_size,
            n_wavelengths=self.n_wavelengths,
            linear_skip=self.linear_skip,
        )


@dataclass(frozen=True)
class TrainingSpec:
    """What `SBITrainer` runs: optimiser, schedule, stopping, checkpoints and seed.

    The defaults are `SBITrainer`'s; see its docstring for each field.
    """

    learning_rate: float = 1e-3
    batch_size: int = 256
    num_epochs: int = 100
    gradient_clip_norm: float | None = None
    weight_decay: float = 0.0
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    use_cosine_schedule: bool = False
    warmup_fraction: float = 0.0
    warmup_epochs: float | None = None
    min_learning_rate: float = 0.0
    lr_schedule_total_epochs: float | None = None
    checkpoint_directory: str | None = None
    checkpoint_backend: str = "auto"
    resume_from_checkpoint: bool = False
    seed: int = 0
    progress: bool = True
    lr_decay_patience: int | None = None
    lr_decay_factor: float = 0.3
    lr_decay_max: int = 3

    def __post_init__(self) -> None:
        lr = check_positive_float(self.learning_rate, "learning_rate")
        floor = check_nonnegative_float(self.min_learning_rate, "min_learning_rate")
        # the floor only shapes the cosine schedule; a constant rate may lie below it
        if self.use_cosine_schedule:
            check_float(floor, "min_learning_rate", minimum=0, maximum=lr)
        if self.resume_from_checkpoint and self.checkpoint_directory is None:
            raise ConfigError("resume_from_checkpoint: True needs a checkpoint_directory, got None")
        check_choice(self.checkpoint_backend, CHECKPOINT_BACKENDS, "checkpoint_backend")
        _set(
            self,
            learning_rate=lr,
            min_learning_rate=floor,
            batch_size=check_positive_int(self.batch_size, "batch_size"),
            num_epochs=check_positive_int(self.num_epochs, "num_epochs"),
            gradient_clip_norm=_optional(
                check_positive_float, self.gradient_clip_norm, "gradient_clip_norm"
            ),
            weight_decay=check_nonnegative_float(self.weight_decay, "weight_decay"),
            early_stopping_patience=_optional(
                check_positive_int, self.early_stopping_patience, "early_stopping_patience"
            ),
            early_stopping_min_delta=check_nonnegative_float(
                self.early_stopping_min_delta, "early_stopping_min_delta"
            ),
            warmup_fraction=check_fraction(
                self.warmup_fraction, "warmup_fraction", include_zero=True, include_one=False
            ),
            warmup_epochs=_optional(check_nonnegative_float, self.warmup_epochs, "warmup_epochs"),
            lr_schedule_total_epochs=_optional(
                check_positive_float, self.lr_schedule_total_epochs, "lr_schedule_total_epochs"
            ),
            seed=as_int_seed(self.seed),
            lr_decay_patience=_optional(
                check_positive_int, self.lr_decay_patience, "lr_decay_patience"
            ),
            lr_decay_factor=check_fraction(
                self.lr_decay_factor, "lr_decay_factor", include_one=False
            ),
            lr_decay_max=check_positive_int(self.lr_decay_max, "lr_decay_max", minimum=0),
            use_cosine_schedule=bool(self.use_cosine_schedule),
            resume_from_checkpoint=bool(self.resume_from_checkpoint),
            progress=bool(self.progress),
        )

    @property
    def horizon_epochs(self) -> float:
        """The schedule's horizon: ``lr_schedule_total_epochs``, else ``num_epochs``."""
        return self.lr_schedule_total_epochs or self.num_epochs


@dataclass(frozen=True)
class RegularizerSpec:
    """Training-only additions to the loss: spline penalties, noise, auxiliary heads.

    All off at their defaults (weights 0, noise 0).
    """

    spline_small_bin_regularization_weight: float | None = None
    spline_min_bin_ratio_target: float = 0.2
    spline_entropy_regularization_weight: float = 0.0
    spline_derivative_regularization_weight: float = 0.0
    spline_entropy_floor: float = 0.6
    spline_min_derivative_target: float = 0.25
    spline_max_derivative_target: float = 5.0
    embedding_noise_std: float = 0.0
    embedding_noise_min_scale: float = 0.0
    parameter_noise_floor: float = 0.0
    aux_scale_loss_weight: float = 0.0
    aux_parameter_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("embedding_noise_std", "embedding_noise_min_scale") or (
                field.name == "parameter_noise_floor"
            ):
                _set(self, **{field.name: check_nonnegative_float(value, field.name)})
            elif value is not None:
                _set(self, **{field.name: check_float(value, field.name)})

    def regularized(self, loss_fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        """``loss_fn`` plus the weighted spline penalties (``loss_fn`` itself when all are 0)."""
        from ._flows.regularizers import regularized_loss

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


def _fields(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in config.items() if k in names}


def _check_linear_start(flow: FlowSpec, encoder: EncoderSpec) -> None:
    """What ``linear_gaussian_start=True`` needs from the rest of the configuration."""
    if not encoder.linear_skip:
        raise ConfigError(
            "linear_gaussian_start=True needs encoder_linear_skip=True (the regression "
            "is carried by the encoder's linear skip)"
        )
    if flow.embedding_dim < flow.parameter_dim:
        raise ConfigError(
            f"linear_gaussian_start=True needs embedding_dim >= parameter_dim, got "
            f"embedding_dim={flow.embedding_dim} < parameter_dim={flow.parameter_dim}"
        )
    if flow.flow_family == "neural_autoregressive":
        raise ConfigError(
            "linear_gaussian_start=True: flow_family='neural_autoregressive' cannot start "
            "as the identity; use 'spline', 'affine', 'autoregressive' or 'spline_affine'"
        )


def posterior_specs(
    config: Mapping[str, Any],
) -> tuple[FlowSpec, EncoderSpec, TrainingSpec, RegularizerSpec]:
    """The four specs of a posterior's flat constructor keywords, each validated once."""
    flow = FlowSpec(**_fields(FlowSpec, config))
    hidden = config["encoder_hidden_dim"]
    encoder = EncoderSpec(
        embedding_dim=config["embedding_dim"],
        hidden_dim=config["hidden_dim"] if hidden is None else hidden,
        spectrum_encoder_type=config["spectrum_encoder_type"],
        spectrum_embedding_dim=config["spectrum_embedding_dim"],
        photometry_embedding_dim=config["photometry_embedding_dim"],
        patch_size=config["encoder_patch_size"],
        n_wavelengths=config["n_wavelengths"],
        linear_skip=config["encoder_linear_skip"],
    )
    training = TrainingSpec(**_fields(TrainingSpec, config), progress=True)
    regularizer = RegularizerSpec(**_fields(RegularizerSpec, config))
    if flow.linear_gaussian_start:
        _check_linear_start(flow, encoder)
    return flow, encoder, training, regularizer


class SpecField(Generic[T]):
    """A constructor argument of the posterior, held by one or more of its specs.

    Declared in the class body as ``learning_rate = SpecField[float]("training")``:
    reading returns ``self.training.learning_rate``; writing replaces each named
    spec by a copy with the new value (validated again).
    """

    def __init__(self, *specs: str, field: str | None = None) -> None:
        self.specs = specs
        self.field = field or ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = self.field or name

    @overload
    def __get__(self, obj: None, owner: type) -> SpecField[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object | None, owner: type) -> SpecField[T] | T:
        if obj is None:
            return self
        return getattr(getattr(obj, self.specs[0]), self.field)

    def __set__(self, obj: object, value: T) -> None:
        for spec in self.specs:
            current = getattr(obj, spec)
            setattr(obj, spec, dataclasses.replace(current, **{self.field: value}))


class PosteriorConfig:
    """The configuration attributes of `ConditionalFlowPosterior`, declared once.

    The four specs, and each constructor argument under its own name: a
    `SpecField` for those a spec holds, a plain attribute for the rest (set by
    the constructor). A mixin of the posterior that reads its configuration can
    derive from this class so that the type checker sees the attributes.
    """

    parameter_space: str
    training_objective: str
    stable_inverse_forward_max_abs_error_threshold: float | None
    stable_inverse_forward_logdet_closure_max_abs_error_threshold: float | None
    stable_cube_edge_hit_rate_threshold: float | None
    encoder_hidden_dim: int | None
    task_metadata: dict[str, Any]
    verbose_diagnostics: bool
    diagnostics_output_directory: str | None
    diagnostics_plot_interval: int
    flow_spec: FlowSpec
    encoder_spec: EncoderSpec
    training_spec: TrainingSpec
    regularizer_spec: RegularizerSpec
    # The constructor arguments under their own names, read from (and written
    # through) the spec that holds them.
    parameter_dim = SpecField[int]("flow_spec")
    embedding_dim = SpecField[int]("flow_spec", "encoder_spec")
    num_coupling_layers = SpecField[int]("flow_spec")
    hidden_dim = SpecField[int]("flow_spec")
    conditioner_depth = SpecField[int]("flow_spec")
    autoregressive_transform_units = SpecField[int]("flow_spec")
    neural_autoregressive_min_slope = SpecField[float]("flow_spec")
    neural_autoregressive_min_residual = SpecField[float]("flow_spec")
    neural_autoregressive_inverse_bisection_steps = SpecField[int]("flow_spec")
    flow_family = SpecField[str]("flow_spec")
    num_spline_bins = SpecField[int]("flow_spec")
    spline_bound = SpecField[float]("flow_spec")
    base_distribution = SpecField[str]("flow_spec")
    use_base_affine = SpecField[bool]("flow_spec")
    linear_gaussian_start = SpecField[bool]("flow_spec")
    spectrum_encoder_type = SpecField[str]("encoder_spec")
    n_wavelengths = SpecField[int]("encoder_spec")
    spectrum_embedding_dim = SpecField[int]("encoder_spec")
    photometry_embedding_dim = SpecField[int]("encoder_spec")
    encoder_patch_size = SpecField[int]("encoder_spec", field="patch_size")
    encoder_linear_skip = SpecField[bool]("encoder_spec", field="linear_skip")
    learning_rate = SpecField[float]("training_spec")
    batch_size = SpecField[int]("training_spec")
    num_epochs = SpecField[int]("training_spec")
    gradient_clip_norm = SpecField[float | None]("training_spec")
    weight_decay = SpecField[float]("training_spec")
    early_stopping_patience = SpecField[int | None]("training_spec")
    early_stopping_min_delta = SpecField[float]("training_spec")
    use_cosine_schedule = SpecField[bool]("training_spec")
    warmup_fraction = SpecField[float]("training_spec")
    warmup_epochs = SpecField[float | None]("training_spec")
    min_learning_rate = SpecField[float]("training_spec")
    lr_schedule_total_epochs = SpecField[float | None]("training_spec")
    lr_decay_patience = SpecField[int | None]("training_spec")
    lr_decay_factor = SpecField[float]("training_spec")
    lr_decay_max = SpecField[int]("training_spec")
    checkpoint_directory = SpecField[str | None]("training_spec")
    checkpoint_backend = SpecField[str]("training_spec")
    resume_from_checkpoint = SpecField[bool]("training_spec")
    seed = SpecField[int]("training_spec")
    embedding_noise_std = SpecField[float]("regularizer_spec")
    embedding_noise_min_scale = SpecField[float]("regularizer_spec")
    parameter_noise_floor = SpecField[float]("regularizer_spec")
    aux_scale_loss_weight = SpecField[float]("regularizer_spec")
    aux_parameter_loss_weight = SpecField[float]("regularizer_spec")
    spline_small_bin_regularization_weight = SpecField[float | None]("regularizer_spec")
    spline_min_bin_ratio_target = SpecField[float]("regularizer_spec")
    spline_entropy_regularization_weight = SpecField[float]("regularizer_spec")
    spline_derivative_regularization_weight = SpecField[float]("regularizer_spec")
    spline_entropy_floor = SpecField[float]("regularizer_spec")
    spline_min_derivative_target = SpecField[float]("regularizer_spec")
    spline_max_derivative_target = SpecField[float]("regularizer_spec")

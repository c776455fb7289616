"""ConditionalFlowPosterior: configuration, training, encoding, sampling, log_prob, errors."""

import inspect

import numpy as np
import pytest

from orrery.interface import ConfigError, Draws, NotFittedError, ShapeError, ValueDomainError
from orrery.sbi import (
    ConditionalAutoregressiveFlowPosterior,
    ConditionalFlowPosterior,
    ConditionalNeuralAutoregressiveFlowPosterior,
    ConditionalSplineFlowPosterior,
    EncodedObservation,
    ObservationBlock,
    ParameterSpace,
    PersistentPosteriorEstimator,
    PosteriorBatch,
    PosteriorSamples,
    SimulationDataset,
)

TINY = dict(
    embedding_dim=8,
    hidden_dim=16,
    num_coupling_layers=2,
    conditioner_depth=1,
    autoregressive_transform_units=4,
    spectrum_embedding_dim=8,
    photometry_embedding_dim=4,
    spectrum_encoder_type="mlp",
)
N_WAVE = 16


def simulate(n, seed=0):
    """theta ~ U(0,1)^2; a noisy 16-pixel spectrum of a line and two noisy magnitudes."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 1, size=(n, 2))
    grid = np.linspace(0, 1, N_WAVE)
    line = np.exp(-0.5 * ((grid - theta[:, :1]) / 0.1) ** 2) * (1 + theta[:, 1:])
    unc = np.full((n, N_WAVE), 0.05)
    spec = line + unc * rng.normal(size=line.shape)
    phot = theta + 0.05 * rng.normal(size=theta.shape)
    return theta, {"spec": spec, "photometry": phot}, {"spec": unc}


def blocks_of(obs, unc, i):
    return [
        ObservationBlock("spectrum", obs["spec"][i], unc["spec"][i], name="spec"),
        ObservationBlock("photometry", obs["photometry"][i]),
    ]


@pytest.fixture(scope="module")
def problem():
    theta, obs, unc = simulate(512)
    ds = SimulationDataset.from_arrays(
        theta,
        obs,
        modalities={"spec": "spectrum"},
        uncertainties=unc,
        bounds=[[0, 1], [0, 1]],
        parameter_names=["center", "depth"],
        seed=0,
    )
    return ds, simulate(3, seed=1)


def line_posterior(**overrides):
    """The small posterior of the line problem, trained briefly in unconstrained space."""
    config = dict(
        n_wavelengths=N_WAVE,
        num_epochs=3,
        batch_size=64,
        learning_rate=3e-3,
        parameter_space="unconstrained",
        seed=1,
    )
    return ConditionalFlowPosterior(2, **TINY, **{**config, **overrides})


@pytest.fixture(scope="module")
def fitted(problem):
    ds, _ = problem
    post = line_posterior(task_metadata={"task": "line"})
    artifacts = post.fit(ds)
    return post, artifacts


def untrained(dim, family, space, schema_size=3):
    """A posterior with an untrained flow, built from metadata (no training compile)."""
    post = ConditionalFlowPosterior(dim, **TINY, flow_family=family, parameter_space=space)
    space_obj = ParameterSpace(space, [-1.0] * dim, [2.0] * dim)
    post.hydrate_loaded_metadata(
        {
            "parameter_names": [f"p{i}" for i in range(dim)],
            "parameter_space": space_obj.to_config(),
            "flow_shift": [0.0] * dim,
            "flow_scale": [1.0] * dim,
            "observation_schema": {
                "auxiliary": {
                    "modality": "auxiliary",
                    "size": schema_size,
                    "has_uncertainties": False,
                }
            },
        }
    )
    return post


# ---------------------------------------------------------------- configuration
REFERENCE_DEFAULTS = {
    "embedding_dim": 128,
    "num_coupling_layers": 4,
    "hidden_dim": 128,
    "conditioner_depth": 2,
    "autoregressive_transform_units": 16,
    "neural_autoregressive_min_slope": 0.001,
    "neural_autoregressive_min_residual": 0.05,
    "neural_autoregressive_inverse_bisection_steps": 48,
    "learning_rate": 0.001,
    "batch_size": 32,
    "num_epochs": 5,
    "parameter_space": "unconstrained",
    "flow_family": "spline",
    "num_spline_bins": 8,
    "spline_bound": 10.0,
    "base_distribution": "gaussian",
    "use_base_affine": False,
    "training_objective": "npe",
    "early_stopping_patience": None,
    "early_stopping_min_delta": 0.0,
    "checkpoint_directory": None,
    "checkpoint_backend": "auto",
    "resume_from_checkpoint": False,
    "gradient_clip_norm": 1.0,
    "embedding_noise_std": 0.0,
    "embedding_noise_min_scale": 0.0,
    "aux_scale_loss_weight": 0.0,
    "aux_parameter_loss_weight": 0.0,
    "parameter_noise_floor": 0.0,
    "spline_small_bin_regularization_weight": None,
    "spline_min_bin_ratio_target": 0.2,
    "spline_entropy_regularization_weight": 0.0,
    "spline_derivative_regularization_weight": 0.0,
    "spline_entropy_floor": 0.6,
    "spline_min_derivative_target": 0.25,
    "spline_max_derivative_target": 5.0,
    "weight_decay": 0.0,
    "use_cosine_schedule": False,
    "warmup_fraction": 0.02,
    "warmup_epochs": None,
    "min_learning_rate": 1e-06,
    "lr_schedule_total_epochs": None,
    "stable_inverse_forward_max_abs_error_threshold": 0.0001,
    "stable_inverse_forward_logdet_closure_max_abs_error_threshold": 0.0001,
    "stable_cube_edge_hit_rate_threshold": 0.0,
    "spectrum_encoder_type": "conv1d",
    "n_wavelengths": 233,
    "spectrum_embedding_dim": 64,
    "photometry_embedding_dim": 64,
    "encoder_hidden_dim": None,
    "encoder_patch_size": 32,
    "seed": 0,
    "task_metadata": None,
    "verbose_diagnostics": False,
    "diagnostics_output_directory": None,
    "diagnostics_plot_interval": 1,
}


#: our keyword-only-by-position additions, after every reference argument, off by default
EXTENSION_DEFAULTS = {
    "lr_decay_patience": None,
    "lr_decay_factor": 0.3,
    "lr_decay_max": 3,
    "encoder_linear_skip": False,
    "linear_gaussian_start": False,
    "observation_transform": "none",
    "parameter_transform": "none",
}


def test_constructor_has_every_reference_argument_and_default():
    params = inspect.signature(ConditionalFlowPosterior.__init__).parameters
    assert list(params)[1] == "parameter_dim"
    got = {k: p.default for k, p in params.items() if k not in ("self", "parameter_dim")}
    assert got == {**REFERENCE_DEFAULTS, **EXTENSION_DEFAULTS}
    # the reference's positional order is kept: the additions come last
    assert list(got)[: len(REFERENCE_DEFAULTS)] == list(REFERENCE_DEFAULTS)
    post = ConditionalFlowPosterior(3)
    for name, default in REFERENCE_DEFAULTS.items():
        if name != "task_metadata":
            assert getattr(post, name) == default, name
    assert post.estimator_family == "conditional_flow"
    assert isinstance(post, PersistentPosteriorEstimator)


def test_subclasses_force_their_family():
    assert ConditionalSplineFlowPosterior(2, flow_family="affine").flow_family == "spline"
    assert ConditionalAutoregressiveFlowPosterior(2).effective_flow_family == "autoregressive"
    assert ConditionalNeuralAutoregressiveFlowPosterior(2).flow_family == "neural_autoregressive"


def test_bad_configuration_is_rejected():
    with pytest.raises(ConfigError, match="flow_family.*spline"):
        ConditionalFlowPosterior(2, flow_family="splines")
    with pytest.raises(ConfigError, match="parameter_space"):
        ConditionalFlowPosterior(2, parameter_space="box")
    with pytest.raises(ConfigError, match="parameter_dim"):
        ConditionalFlowPosterior(0)
    with pytest.raises(ConfigError, match="base_distribution"):
        ConditionalFlowPosterior(2, base_distribution="laplace")
    with pytest.raises(ConfigError, match="spectrum_encoder_type"):
        ConditionalFlowPosterior(2, spectrum_encoder_type="transformer")


def test_unfitted_posterior_refuses_to_sample():
    with pytest.raises(NotFittedError, match="fit"):
        ConditionalFlowPosterior(2).sample_posterior(EncodedObservation(np.zeros(128)), 3)


def test_wrong_parameter_dim_is_rejected_before_training(problem):
    ds, _ = problem
    with pytest.raises(ShapeError, match="parameter_dim=3"):
        ConditionalFlowPosterior(3, **TINY, n_wavelengths=N_WAVE).fit(ds)


def test_elbo_needs_cube_space_and_a_likelihood(problem):
    ds, _ = problem
    with pytest.raises(ConfigError, match="cube"):
        ConditionalFlowPosterior(
            2, **TINY, n_wavelengths=N_WAVE, training_objective="elbo", parameter_space="physical"
        ).fit(ds)
    with pytest.raises(ConfigError, match="elbo_log_likelihood_fn"):
        ConditionalFlowPosterior(
            2, **TINY, n_wavelengths=N_WAVE, training_objective="elbo", parameter_space="cube"
        ).fit(ds)


# ---------------------------------------------------------------- trained posterior
def test_fit_records_history_and_dataset_metadata(problem, fitted):
    ds, _ = problem
    post, artifacts = fitted
    for key in ("train_loss", "val_loss", "learning_rate"):
        assert len(artifacts.history[key]) == 3
    assert artifacts.history["val_loss"][-1] < artifacts.history["val_loss"][0]
    assert max(artifacts.history["inverse_forward_max_abs_error"]) < 1e-4
    assert post.dataset_fingerprint == ds.fingerprint
    assert post.preprocessing_metadata == ds.preprocessing_metadata
    assert post.parameter_names == ["center", "depth"]


def test_encoding_single_and_batched_agree(problem, fitted):
    _, (_, obs, unc) = problem
    post, _ = fitted
    single = post.encode_observation(blocks_of(obs, unc, 0))
    batch = post.batch_encode_observation([blocks_of(obs, unc, i) for i in range(3)])
    assert single.embedding.shape == (8,)
    assert single.metadata["block_names"] == ["spec", "photometry"]
    assert single.metadata["modalities"] == ["spectrum", "photometry"]
    np.testing.assert_allclose(batch[0].embedding, single.embedding, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batch[1].embedding, batch[0].embedding)


def test_encoding_rejects_mismatched_blocks(problem, fitted):
    _, (_, obs, unc) = problem
    post, _ = fitted
    good = blocks_of(obs, unc, 0)
    with pytest.raises(ConfigError, match="missing"):
        post.encode_observation(good[:1])
    with pytest.raises(ShapeError, match="16 values"):
        post.encode_observation(
            [ObservationBlock("spectrum", np.ones(5), np.ones(5), name="spec"), good[1]]
        )
    with pytest.raises(ConfigError, match="modality"):
        post.encode_observation(
            [ObservationBlock("time_series", obs["spec"][0], unc["spec"][0], name="spec"), good[1]]
        )
    with pytest.raises(ConfigError, match="uncertainties"):
        post.encode_observation(
            [ObservationBlock("spectrum", obs["spec"][0], name="spec"), good[1]]
        )
    with pytest.raises(ValueDomainError, match="non-finite"):
        ObservationBlock("spectrum", np.full(N_WAVE, np.nan), name="spec")


def test_sampling_shapes_spaces_and_determinism(problem, fitted):
    _, (_, obs, unc) = problem
    post, _ = fitted
    enc = post.encode_observation(blocks_of(obs, unc, 0))
    draws = post.sample_posterior(enc, 400, seed=5)
    assert isinstance(draws, PosteriorSamples)
    assert draws.samples.shape == (400, 2) and draws.parameter_space == "unconstrained"
    assert draws.num_nonfinite == 0 and draws.parameter_names == ["center", "depth"]
    physical = draws.to_physical()
    assert np.all((physical > 0) & (physical < 1))
    np.testing.assert_array_equal(post.sample_posterior(enc, 400, seed=5).samples, draws.samples)
    assert not np.array_equal(post.sample_posterior(enc, 400, seed=6).samples, draws.samples)
    as_draws = draws.to_draws()
    assert isinstance(as_draws, Draws) and as_draws.n_draws == 400
    np.testing.assert_allclose(as_draws["center"][0], physical[:, 0])
    # Blocks are accepted directly and encoded on the fly.
    np.testing.assert_array_equal(
        post.sample_posterior(blocks_of(obs, unc, 0), 400, seed=5).samples, draws.samples
    )


def test_batch_sampling_matches_the_single_observation_distribution(problem, fitted):
    _, (_, obs, unc) = problem
    post, _ = fitted
    encoded = post.batch_encode_observation([blocks_of(obs, unc, i) for i in range(3)])
    emb = np.stack([e.embedding for e in encoded])
    batch = post.batch_sample_posterior(emb, 2000, base_seed=3)
    assert batch.shape == (3, 2000, 2)
    np.testing.assert_array_equal(post.batch_sample_posterior(emb, 2000, base_seed=3), batch)
    for i in range(3):
        single = post.sample_posterior(encoded[i], 2000, seed=i).samples
        np.testing.assert_allclose(batch[i].mean(0), single.mean(0), atol=0.15)
        np.testing.assert_allclose(batch[i].std(0), single.std(0), rtol=0.15)
    with pytest.raises(ShapeError, match="embeddings"):
        post.batch_sample_posterior(emb[:, :3], 10)


def test_log_prob_single_and_batched(problem, fitted):
    _, (_, obs, unc) = problem
    post, _ = fitted
    enc = post.encode_observation(blocks_of(obs, unc, 0))
    draws = post.sample_posterior(enc, 50, seed=0).samples
    many = post.log_prob(enc, draws)
    assert many.shape == (50,) and np.all(np.isfinite(many))
    assert post.log_prob(enc, draws[0]) == pytest.approx(float(many[0]), rel=1e-5, abs=1e-5)
    with pytest.raises(ShapeError, match="parameters"):
        post.log_prob(enc, np.zeros((4, 3)))
    with pytest.raises(ShapeError, match="embedding"):
        post.log_prob(EncodedObservation(np.zeros(5)), draws)
    with pytest.raises(ConfigError, match="never taken as an embedding"):
        post.log_prob(np.zeros(post.embedding_dim), draws)


# ---------------------------------------------------------------- families and spaces
@pytest.mark.parametrize(
    ("family", "space", "grid"),
    [
        ("spline", "cube", (1e-7, 1 - 1e-7)),
        ("affine", "physical", (-12.0, 12.0)),
        ("autoregressive", "unconstrained", (-12.0, 12.0)),
        ("neural_autoregressive", "unconstrained", (-2000.0, 2000.0)),
    ],
)
def test_families_sample_in_their_space_and_densities_integrate_to_one(family, space, grid):
    post = untrained(1, family, space)
    enc = EncodedObservation(np.linspace(-1, 1, 8).astype(np.float32))
    draws = post.sample_posterior(enc, 300, seed=0)
    assert draws.samples.shape == (300, 1)
    assert np.all(post.space.contains(draws.samples))
    physical = draws.to_physical()
    if space != "physical":
        assert np.all((physical >= -1) & (physical <= 2))
    points = np.linspace(*grid, 40001)
    density = np.exp(post.log_prob(enc, points[:, None]))
    assert np.trapezoid(density, points) == pytest.approx(1.0, abs=3e-3)
    batch = post.batch_sample_posterior(np.stack([enc.embedding] * 2), 7)
    assert batch.shape == (2, 7, 1)


def test_duck_typed_reader_works_with_fit():
    theta, obs, _ = simulate(96, seed=4)

    class Reader:
        def iter_batches(self, split, batch_size, *, seed=0, shuffle=True):
            if split != "train":
                return
            for start in range(0, 96, batch_size):
                yield PosteriorBatch(
                    theta[start : start + batch_size],
                    {"photometry": {"values": obs["photometry"][start : start + batch_size]}},
                )

    post = ConditionalFlowPosterior(
        2,
        **TINY,
        num_epochs=1,
        batch_size=32,
        parameter_space="cube",
        stable_inverse_forward_max_abs_error_threshold=None,
        stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
        stable_cube_edge_hit_rate_threshold=None,
    )
    artifacts = post.fit(Reader())
    assert len(artifacts.history["train_loss"]) == 1
    assert post.observation_schema["photometry"]["modality"] == "auxiliary"
    assert np.all(post.space.lower < theta.min(0)) and post.dataset_fingerprint is None
    draws = post.sample_posterior(
        [ObservationBlock("auxiliary", obs["photometry"][0], name="photometry")], 20
    )
    assert np.all((draws.samples >= 0) & (draws.samples <= 1))


# ---------------------------------------------------------------- accuracy (sbibm gaussian_linear)
GL_DIM = 3  # the task at a smaller size; benchmarks/gaussian_linear.py runs the 10-D task


def gaussian_linear(n, seed, dim=GL_DIM):
    """sbibm's gaussian_linear: prior N(0, 0.1 I), likelihood N(theta, 0.1 I)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, np.sqrt(0.1), size=(n, dim))
    return theta, theta + rng.normal(0, np.sqrt(0.1), size=(n, dim))


@pytest.fixture(scope="module")
def gaussian_linear_posterior():
    theta, x = gaussian_linear(2_000, seed=0)
    post = ConditionalFlowPosterior(
        GL_DIM,
        embedding_dim=32,
        hidden_dim=32,
        num_coupling_layers=3,
        conditioner_depth=1,
        photometry_embedding_dim=32,
        parameter_space="physical",
        learning_rate=2e-3,
        batch_size=64,
        num_epochs=10,
        stable_inverse_forward_max_abs_error_threshold=None,
        stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
        stable_cube_edge_hit_rate_threshold=None,
    )
    post.fit(SimulationDataset.from_arrays(theta, x, seed=0))
    return post


def test_gaussian_linear_posterior_matches_the_closed_form(gaussian_linear_posterior):
    # Exact posterior N(x / 2, 0.05 I): KL from the Gaussian fitted to the draws.
    _, x_obs = gaussian_linear(2, seed=123)
    for i, xo in enumerate(x_obs):
        block = [ObservationBlock("auxiliary", xo)]
        draws = gaussian_linear_posterior.sample_posterior(block, 4_000, seed=i).to_physical()
        mean, cov = draws.mean(0), np.cov(draws.T)
        diff = mean - xo / 2
        kl = 0.5 * (
            np.trace(cov) / 0.05
            + diff @ diff / 0.05
            - GL_DIM
            - np.linalg.slogdet(cov)[1]
            + GL_DIM * np.log(0.05)
        )
        assert kl < 0.15, (i, kl)
        np.testing.assert_allclose(mean, xo / 2, atol=0.06)


@pytest.mark.slow
def test_gaussian_linear_c2st_small(gaussian_linear_posterior):
    # sbibm's C2ST (slow: its MLP classifier trains up to 10^4 iterations per fold).
    from orrery.sbi.diagnostics import c2st

    _, x_obs = gaussian_linear(1, seed=123)
    draws = gaussian_linear_posterior.sample_posterior(
        [ObservationBlock("auxiliary", x_obs[0])], 1_000, seed=0
    ).to_physical()
    exact = np.random.default_rng(7).normal(x_obs[0] / 2, np.sqrt(0.05), size=(1_000, GL_DIM))
    assert c2st(exact, draws, seed=0) < 0.6


# ---------------------------------------------------------------- ELBO and training-only noise
ELBO_SIGMA = 0.05


def test_elbo_training_recovers_a_gaussian_posterior_inside_the_cube():
    # theta ~ U(0,1)^2, x ~ N(theta, 0.05^2 I): well inside the cube the exact
    # posterior is N(x, 0.05^2 I), so the amortized-VI flow must match its moments.
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.2, 0.8, size=(256, 2))
    x = theta + ELBO_SIGMA * rng.normal(size=theta.shape)
    ds = SimulationDataset.from_arrays(theta, x, bounds=[[0, 1], [0, 1]], seed=0)
    (name,) = ds.preprocessing_metadata
    prep = ds.preprocessing_metadata[name]
    mean, scale = jnp.asarray(prep["value_mean"]), jnp.asarray(prep["value_scale"])

    def log_likelihood(u, observations):
        x_raw = observations[name]["values"] * scale + mean
        return -0.5 * jnp.sum(((x_raw - u) / ELBO_SIGMA) ** 2, axis=-1)

    post = ConditionalFlowPosterior(
        2,
        embedding_dim=8,
        hidden_dim=16,
        num_coupling_layers=2,
        conditioner_depth=1,
        photometry_embedding_dim=8,
        parameter_space="cube",
        training_objective="elbo",
        num_epochs=25,
        batch_size=64,
        learning_rate=1e-2,
        seed=0,
        stable_inverse_forward_max_abs_error_threshold=None,
        stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
        stable_cube_edge_hit_rate_threshold=None,
    )
    artifacts = post.fit(ds, elbo_log_likelihood_fn=log_likelihood, elbo_num_samples=2)
    assert artifacts.history["train_loss"][-1] < artifacts.history["train_loss"][0]
    for i, xo in enumerate([np.array([0.4, 0.6]), np.array([0.55, 0.35])]):
        block = [ObservationBlock("auxiliary", xo, name=name)]
        draws = post.sample_posterior(block, 2_000, seed=i).to_physical()
        np.testing.assert_allclose(draws.mean(0), xo, atol=0.04)
        np.testing.assert_allclose(draws.std(0), ELBO_SIGMA, rtol=0.3)


def test_noise_injection_only_touches_training_batches(problem, fitted):
    from orrery.sbi._posterior.objectives import make_batch_transform

    _, (_, obs, unc) = problem
    post, _ = fitted
    blocks = blocks_of(obs, unc, 0)
    enc = post.encode_observation(blocks)
    draws = post.sample_posterior(enc, 20, seed=0).samples
    before = post.log_prob(enc, draws)
    post.embedding_noise_std, post.parameter_noise_floor = 1.0, 0.5
    try:
        again = post.encode_observation(blocks)
        np.testing.assert_array_equal(again.embedding, enc.embedding)
        np.testing.assert_array_equal(post.log_prob(again, draws), before)
    finally:
        post.embedding_noise_std, post.parameter_noise_floor = 0.0, 0.0
    # ... while the training transform with those settings does perturb a batch.
    jr = pytest.importorskip("jax.random")
    batch = PosteriorBatch(
        np.zeros((4, 2), np.float32), {"photometry": {"values": np.zeros((4, 2), np.float32)}}
    )
    noisy = make_batch_transform(
        embedding_noise_std=1.0,
        embedding_noise_min_scale=0.0,
        parameter_noise_floor=0.5,
        flow_scale=np.ones(2),
    )(batch, jr.key(0))
    assert np.all(np.asarray(noisy.parameters) != 0)
    assert np.all(np.asarray(noisy.observations["photometry"]["values"]) != 0)
    assert (
        make_batch_transform(
            embedding_noise_std=0.0,
            embedding_noise_min_scale=0.0,
            parameter_noise_floor=0.0,
            flow_scale=np.ones(2),
        )
        is None
    )


def test_weight_decay_leaves_the_flow_coordinates_alone(problem, fitted):
    ds, _ = problem
    post, _ = fitted
    decayed = line_posterior(num_epochs=1, weight_decay=0.5)
    decayed.fit(ds)
    # the shift and scale are the data's, not parameters: AdamW must not shrink them
    for name in ("shift", "scale"):
        want = np.asarray(getattr(post.model.coords, name))
        np.testing.assert_array_equal(np.asarray(getattr(decayed.model.coords, name)), want)

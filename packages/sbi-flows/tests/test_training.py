"""SBITrainer: optimisation, schedules, early stopping, stability, exact resume, checkpoints."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from orrery.interface import ConfigError, ShapeError
from orrery.sbi.training import (
    SBITrainer,
    TrainingArtifacts,
    _checkpoint,
    list_checkpoints,
    load_latest_checkpoint,
)


class Scalar(eqx.Module):
    w: jax.Array


def scalar_loss(model, batch, key):
    return jnp.mean((model.w - batch["t"]) ** 2)


def targets(value, n=64):
    return {"t": jnp.full((n,), value, dtype=jnp.float32)}


def regression_problem():
    x = jax.random.normal(jax.random.key(0), (300, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.1 * jax.random.normal(jax.random.key(1), (300,))
    model = eqx.nn.MLP(3, "scalar", 8, 1, key=jax.random.key(2))
    return model, {"x": x[:240], "y": y[:240]}, {"x": x[240:], "y": y[240:]}


def mlp_loss(model, batch, key):
    pred = jax.vmap(model)(batch["x"])
    # The key enters the loss so that the resume test also checks RNG continuity.
    jitter = 1.0 + 0.1 * jax.random.uniform(key, ())
    return jitter * jnp.mean((pred - batch["y"]) ** 2)


def noisy_inputs(batch, key):
    return {**batch, "x": batch["x"] + 0.05 * jax.random.normal(key, batch["x"].shape)}


def leaves(model):
    return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


def test_fit_reduces_loss_and_records_history():
    model, train, val = regression_problem()
    trainer = SBITrainer(learning_rate=1e-2, batch_size=32, num_epochs=15, progress=False)
    fitted, artifacts = trainer.fit(model, mlp_loss, train, val)
    assert isinstance(artifacts, TrainingArtifacts)
    history = artifacts.history
    assert all(len(history[k]) == 15 for k in ("train_loss", "val_loss", "learning_rate"))
    assert history["val_loss"][-1] < 0.2 * history["val_loss"][0]
    assert history["learning_rate"] == [pytest.approx(1e-2)] * 15
    best = int(np.argmin(history["val_loss"]))
    assert artifacts.validation_metrics["best_epoch"] == best + 1
    assert artifacts.trainer_metadata["steps_per_epoch"] == 240 // 32
    assert artifacts.trainer_metadata["optimizer"] == "adam"
    # The returned model is the best epoch's model: its validation loss matches the history.
    pred = jax.vmap(fitted)(val["x"])
    val_loss = float(jnp.mean((pred - val["y"]) ** 2))
    fixed = mlp_loss(fitted, val, jax.random.fold_in(jax.random.key(0), 0x7FFFFFFF))
    assert float(fixed) == pytest.approx(history["val_loss"][best], rel=1e-5)
    assert val_loss < history["val_loss"][0]


def test_kept_train_loss_is_the_validation_loss_on_as_many_training_rows():
    model, train, val = regression_problem()
    trainer = SBITrainer(learning_rate=1e-2, batch_size=32, num_epochs=6, progress=False, seed=3)
    fitted, artifacts = trainer.fit(model, mlp_loss, train, val, batch_transform=noisy_inputs)
    vm = artifacts.validation_metrics
    # The kept parameters, the fixed validation key, the first n_val = 60 training rows
    # and no training-only noise: not the epoch's running mean.
    key = jax.random.fold_in(jax.random.key(3), 0x7FFFFFFF)
    rows = jax.tree.map(lambda a: a[:60], train)
    assert vm["kept_train_loss"] == pytest.approx(float(mlp_loss(fitted, rows, key)), rel=1e-5)
    kept = vm["best_epoch"] - 1
    assert vm["kept_train_loss"] != pytest.approx(artifacts.history["train_loss"][kept], rel=1e-3)
    _, no_val = trainer.fit(model, mlp_loss, train)
    assert math.isnan(no_val.validation_metrics["kept_train_loss"])


def test_weight_decay_and_clipping_change_the_optimiser():
    trainer = SBITrainer(
        learning_rate=0.1, batch_size=64, num_epochs=3, weight_decay=0.5, progress=False
    )
    _, artifacts = trainer.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    assert artifacts.trainer_metadata["optimizer"] == "adamw"
    # Adam's step is ~lr while the gradient is steady; clipping to a tiny norm makes every
    # clipped gradient identical, so each of the three steps is exactly lr.
    base = SBITrainer(learning_rate=0.1, batch_size=64, num_epochs=3, progress=False)
    clipped = SBITrainer(
        learning_rate=0.1, batch_size=64, num_epochs=3, gradient_clip_norm=1e-3, progress=False
    )
    m_base, _ = base.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    m_clip, _ = clipped.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    m_decay, _ = trainer.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    assert float(m_base.w) == pytest.approx(0.3, abs=0.01)
    assert abs(float(m_base.w) - 0.3) > 1e-3
    assert float(m_clip.w) == pytest.approx(0.3, abs=1e-5)
    assert float(m_decay.w) < float(m_base.w)  # decoupled decay pulls toward 0


class ScalarWithConstant(eqx.Module):
    fixed_fields = ("offset",)
    w: jax.Array
    offset: jax.Array


def offset_loss(model, batch, key):
    return jnp.mean((model.w + model.offset - batch["t"]) ** 2)


def test_fixed_fields_are_neither_trained_nor_decayed():
    trainer = SBITrainer(
        learning_rate=0.1, batch_size=64, num_epochs=3, weight_decay=0.5, progress=False
    )
    model = ScalarWithConstant(jnp.array(0.0), jnp.array(2.0))
    fitted, _ = trainer.fit(model, offset_loss, targets(1.0))
    # the loss has a gradient in offset and weight decay pulls every trained array to 0;
    # a fixed field must come back bit for bit
    assert float(fitted.offset) == 2.0
    assert float(fitted.w) != 0.0


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    trainer = SBITrainer(
        learning_rate=1e-2,
        batch_size=16,
        num_epochs=20,
        use_cosine_schedule=True,
        warmup_epochs=4,
        min_learning_rate=1e-4,
        progress=False,
    )
    _, artifacts = trainer.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    lr = np.array(artifacts.history["learning_rate"])
    assert np.all(np.diff(lr[:4]) > 0)  # linear warm-up
    assert lr[3] == pytest.approx(1e-2, rel=0.1)  # near the peak at the end of the warm-up
    assert lr.max() <= 1e-2
    assert np.all(np.diff(lr[4:]) < 0)  # cosine decay
    assert lr[-1] == pytest.approx(1e-4, rel=0.1)  # reaches the floor at the horizon
    # With a longer horizon the same 20 epochs end far above the floor.
    longer = SBITrainer(
        learning_rate=1e-2,
        batch_size=16,
        num_epochs=20,
        use_cosine_schedule=True,
        warmup_fraction=0.1,
        min_learning_rate=1e-4,
        lr_schedule_total_epochs=40,
        progress=False,
    )
    _, art2 = longer.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    # 4 steps per epoch, 160-step horizon, 16 warm-up steps; epoch 20 ends at step 79.
    progress = (79 - 16) / (160 - 16)
    expected = 1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress))
    assert art2.history["learning_rate"][-1] == pytest.approx(expected, rel=1e-5)


def _fit_past_the_validation_optimum(**settings):
    """Training pulls w from 0 to 1; validation prefers w = 0.3, so it worsens past 0.3."""
    trainer = SBITrainer(
        learning_rate=0.05, batch_size=64, num_epochs=200, progress=False, **settings
    )
    return trainer.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0), targets(0.3))


def test_early_stopping_stops_and_restores_the_best_state():
    fitted, artifacts = _fit_past_the_validation_optimum(early_stopping_patience=3)
    val = artifacts.history["val_loss"]
    best = int(np.argmin(val))
    assert artifacts.trainer_metadata["stopped_early"]
    assert len(val) == best + 1 + 3 < 200
    assert artifacts.validation_metrics["best_epoch"] == best + 1
    assert float((fitted.w - 0.3) ** 2) == pytest.approx(val[best], rel=1e-5)
    assert abs(float(fitted.w) - 0.3) < 0.05


def test_plateau_decay_restores_the_best_state_and_lowers_the_rate():
    fitted, artifacts = _fit_past_the_validation_optimum(
        early_stopping_patience=2, lr_decay_patience=2, lr_decay_factor=0.3, lr_decay_max=2
    )
    lrs = np.asarray(artifacts.history["learning_rate"])
    val = np.asarray(artifacts.history["val_loss"])
    rates = sorted(set(np.round(lrs, 8)), reverse=True)
    np.testing.assert_allclose(rates, [0.05, 0.015, 0.0045], rtol=1e-6)
    assert np.all(np.diff(lrs) <= 0)  # the factor only falls
    assert artifacts.trainer_metadata["stopped_early"]
    for rate in (0.015, 0.0045):
        first = int(np.argmax(np.isclose(lrs, rate)))
        # the first epoch after a decay starts from the best state, not the drifted one
        assert val[first] < val[first - 1]
        assert val[first] < 0.02**2
    # the last decay, then early stopping's patience
    assert len(val) - int(np.argmax(np.isclose(lrs, 0.0045))) == 2 + 1
    best = int(np.argmin(val))
    assert artifacts.validation_metrics["best_epoch"] == best + 1
    assert float((fitted.w - 0.3) ** 2) == pytest.approx(val[best], rel=1e-5)
    # the decayed rate does reach the updates: steps shrink with it
    assert abs(float(fitted.w) - 0.3) < 0.01


def test_plateau_decay_settings_are_checked():
    with pytest.raises(ConfigError, match="lr_decay_factor"):
        SBITrainer(lr_decay_patience=2, lr_decay_factor=1.5)
    with pytest.raises(ConfigError, match="lr_decay_patience"):
        SBITrainer(lr_decay_patience=0)


def test_min_delta_requires_a_real_improvement():
    trainer = SBITrainer(
        learning_rate=1e-4,
        batch_size=64,
        num_epochs=50,
        early_stopping_patience=2,
        early_stopping_min_delta=1.0,
        progress=False,
    )
    _, artifacts = trainer.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0), targets(1.0))
    assert artifacts.trainer_metadata["epochs_run"] == 3  # epoch 1 sets the bar, 2 misses


def test_batch_transform_only_touches_training_batches():
    def to_one(batch, key):
        return {"t": jnp.ones_like(batch["t"])}

    trainer = SBITrainer(learning_rate=0.1, batch_size=64, num_epochs=40, progress=False)
    _, artifacts = trainer.fit(
        Scalar(jnp.array(0.0)), scalar_loss, targets(0.0), targets(0.0), batch_transform=to_one
    )
    assert artifacts.history["train_loss"][-1] < 0.05  # trained on the transformed targets
    assert artifacts.history["val_loss"][-1] > 0.5  # evaluated on the clean ones
    assert artifacts.validation_metrics["best_epoch"] == 1


def test_stability_thresholds_flag_epochs_and_keep_the_best_stable_one():
    trainer = SBITrainer(learning_rate=0.05, batch_size=64, num_epochs=20, progress=False)
    fitted, artifacts = trainer.fit(
        Scalar(jnp.array(0.0)),
        scalar_loss,
        targets(1.0),
        targets(1.0),
        epoch_metrics_fn=lambda m: {"w": float(m.w)},
        stability_thresholds={"w": 0.4},
    )
    w = np.array(artifacts.history["w"])
    stable = np.array(artifacts.history["stable"])
    np.testing.assert_array_equal(stable, (w <= 0.4).astype(float))
    assert 0 < stable.sum() < len(stable)
    kept = artifacts.validation_metrics["best_epoch"]
    assert kept == int(np.flatnonzero(stable)[-1]) + 1  # val loss falls monotonically
    assert float(fitted.w) == pytest.approx(w[kept - 1])
    assert artifacts.trainer_metadata["unstable_epochs"] == [
        i + 1 for i in np.flatnonzero(stable == 0)
    ]
    with pytest.raises(ConfigError, match="epoch_metrics_fn"):
        trainer.fit(
            Scalar(jnp.array(0.0)), scalar_loss, targets(1.0), stability_thresholds={"w": 1}
        )


BACKENDS = ["equinox"]
try:  # orbax is an optional extra
    import orbax.checkpoint  # noqa: F401

    BACKENDS.append("orbax")
except ImportError:
    pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_after_k_of_n_epochs_equals_an_uninterrupted_run(tmp_path, backend):
    model, train, val = regression_problem()
    common = dict(
        learning_rate=1e-2,
        batch_size=32,
        num_epochs=6,
        use_cosine_schedule=True,
        warmup_epochs=1,
        min_learning_rate=1e-4,
        seed=3,
        progress=False,
        checkpoint_backend=backend,
    )
    full, full_art = SBITrainer(**common).fit(
        model, mlp_loss, train, val, batch_transform=noisy_inputs
    )
    first = SBITrainer(
        **common
        | {"num_epochs": 2, "lr_schedule_total_epochs": 6, "checkpoint_directory": str(tmp_path)}
    )
    first.fit(model, mlp_loss, train, val, batch_transform=noisy_inputs)
    resumed, art = SBITrainer(
        **common | {"checkpoint_directory": str(tmp_path), "resume_from_checkpoint": True}
    ).fit(model, mlp_loss, train, val, batch_transform=noisy_inputs)
    assert art.trainer_metadata["resumed_from_epoch"] == 2
    for a, b in zip(leaves(full), leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for key in ("train_loss", "val_loss", "learning_rate"):
        np.testing.assert_allclose(art.history[key], full_art.history[key], rtol=1e-7)
    assert art.validation_metrics["best_epoch"] == full_art.validation_metrics["best_epoch"]


def test_killed_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    model, train, val = regression_problem()
    common = dict(
        learning_rate=1e-2,
        batch_size=32,
        num_epochs=4,
        seed=1,
        progress=False,
        checkpoint_backend="equinox",
        checkpoint_directory=str(tmp_path),
    )
    real_write = _checkpoint._write_arrays
    calls = {"n": 0}

    def dying_write(backend, directory, tree):
        calls["n"] += 1
        if calls["n"] == 3:
            real_write(backend, directory, tree)  # half the work is on disk ...
            raise KeyboardInterrupt("killed")  # ... when the process dies
        real_write(backend, directory, tree)

    monkeypatch.setattr(_checkpoint, "_write_arrays", dying_write)
    with pytest.raises(KeyboardInterrupt):
        SBITrainer(**common).fit(model, mlp_loss, train, val)
    monkeypatch.setattr(_checkpoint, "_write_arrays", real_write)
    # A hard kill would also leave a stray temporary directory behind: it must be ignored.
    (tmp_path / ".tmp-stray").mkdir()
    (tmp_path / ".tmp-stray" / "state.eqx").write_bytes(b"\x00garbage")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint_000001",
        "checkpoint_000002",
    ]
    params = eqx.filter(model, eqx.is_inexact_array)
    like = {"params": params, "opt": _opt_like(params), "best": params}
    _, state = load_latest_checkpoint(tmp_path, like)
    assert state["epoch"] == 2 and len(state["history"]["train_loss"]) == 2
    resumed, art = SBITrainer(**common | {"resume_from_checkpoint": True}).fit(
        model, mlp_loss, train, val
    )
    full, _ = SBITrainer(**common | {"checkpoint_directory": None}).fit(model, mlp_loss, train, val)
    assert art.trainer_metadata["resumed_from_epoch"] == 2
    for a, b in zip(leaves(full), leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Only the newest two checkpoints are kept.
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint_000003",
        "checkpoint_000004",
    ]


def _opt_like(params):
    from orrery.sbi.training._optim import make_optimizer, make_schedule

    schedule = make_schedule(
        learning_rate=1e-2,
        use_cosine_schedule=False,
        steps_per_epoch=1,
        horizon_epochs=1,
        warmup_fraction=0.0,
        warmup_epochs=None,
        min_learning_rate=0.0,
    )
    return make_optimizer(schedule, weight_decay=0.0, gradient_clip_norm=None).init(params)


def test_resume_refuses_a_checkpoint_from_a_different_run(tmp_path):
    common = dict(
        learning_rate=0.1,
        num_epochs=2,
        progress=False,
        checkpoint_backend="equinox",
        checkpoint_directory=str(tmp_path),
    )
    SBITrainer(batch_size=64, **common).fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    with pytest.raises(ConfigError, match="batch_size"):
        SBITrainer(batch_size=32, resume_from_checkpoint=True, **common).fit(
            Scalar(jnp.array(0.0)), scalar_loss, targets(1.0)
        )


def test_bad_configuration_and_data_raise_clear_errors():
    with pytest.raises(ConfigError, match="learning_rate"):
        SBITrainer(learning_rate=-1.0)
    with pytest.raises(ConfigError, match="checkpoint_directory"):
        SBITrainer(resume_from_checkpoint=True)
    # the floor bounds the cosine schedule only; a constant rate below it is allowed
    with pytest.raises(ConfigError, match="min_learning_rate"):
        SBITrainer(learning_rate=1e-8, min_learning_rate=1e-6, use_cosine_schedule=True)
    SBITrainer(learning_rate=1e-8, min_learning_rate=1e-6)
    with pytest.raises(ValueError, match="checkpoint_backend"):
        SBITrainer(checkpoint_backend="pickle")
    with pytest.raises(ShapeError, match="leading"):
        SBITrainer(progress=False).fit(
            Scalar(jnp.array(0.0)), scalar_loss, {"t": jnp.zeros(4), "u": jnp.zeros(5)}
        )
    trainer = SBITrainer(num_epochs=2, progress=False)
    _, artifacts = trainer.fit(Scalar(jnp.array(0.0)), scalar_loss, targets(1.0))
    assert all(math.isnan(v) for v in artifacts.history["val_loss"])


def test_jit_cache_keeps_the_entries_a_fit_just_used():
    from orrery.sbi.training import _programs

    saved = dict(_programs.JIT_CACHE)
    _programs.JIT_CACHE.clear()
    try:
        for i in range(_programs.JIT_CACHE_SIZE):
            _programs.cached(("entry", i), lambda i=i: i)
        assert _programs.cached(("entry", 0), lambda: "rebuilt") == 0  # a hit, now most recent
        _programs.cached(("new",), lambda: "new")  # evicts the least recently used: entry 1
        assert ("entry", 0) in _programs.JIT_CACHE and ("entry", 1) not in _programs.JIT_CACHE
    finally:
        _programs.JIT_CACHE.clear()
        _programs.JIT_CACHE.update(saved)

"""The parts `SBITrainer.fit` orchestrates, each on its own (issue 34).

`KeptState` is pure Python: these tests run no JAX program.
"""

import math

import numpy as np
import pytest

from orrery.interface import ConfigError
from orrery.sbi.training._selection import Decision, KeptState, is_stable


def run(kept, losses, stable=None):
    stable = stable or [True] * len(losses)
    pairs = enumerate(zip(losses, stable, strict=True))
    return [kept.update(i + 1, loss, stable=s) for i, (loss, s) in pairs]


def test_the_lowest_validation_loss_is_kept():
    kept = KeptState(has_val=True)
    decisions = run(kept, [3.0, 1.0, 2.0, 1.5])
    assert [d.keep for d in decisions] == [True, True, False, False]
    assert (kept.best_epoch, kept.best_loss) == (2, 1.0)


def test_without_validation_the_last_epoch_is_kept():
    kept = KeptState(has_val=False)
    run(kept, [1.0, 5.0, 9.0])
    assert kept.best_epoch == 3


def test_a_stable_epoch_beats_any_unstable_one_and_unstable_ones_compete_only_until_then():
    kept = KeptState(has_val=True)
    decisions = run(kept, [1.0, 0.5, 3.0, 0.1], stable=[False, False, True, False])
    assert [d.keep for d in decisions] == [True, True, True, False]
    assert (kept.best_epoch, kept.best_stable) == (3, True)


def test_a_non_finite_loss_is_never_an_improvement():
    kept = KeptState(has_val=True, early_stopping_patience=2)
    decisions = run(kept, [1.0, math.nan, math.inf])
    assert kept.best_epoch == 1 and kept.since_improved == 2
    assert decisions[-1] == Decision(keep=False, decay=False, stop=True)


def test_early_stopping_counts_epochs_without_an_improvement_larger_than_min_delta():
    kept = KeptState(has_val=True, min_delta=0.1, early_stopping_patience=2)
    decisions = run(kept, [1.0, 0.95, 0.92])  # better, but by less than min_delta
    assert [d.stop for d in decisions] == [False, False, True]
    assert kept.best_epoch == 3  # the kept epoch is still the lowest loss


def test_plateau_decays_come_first_then_early_stopping_counts():
    kept = KeptState(
        has_val=True, early_stopping_patience=1, decay_patience=2, decay_factor=0.5, decay_max=2
    )
    decisions = run(kept, [1.0] + [2.0] * 5)
    assert [d.decay for d in decisions] == [False, False, True, False, True, False]
    assert [d.stop for d in decisions] == [False] * 5 + [True]
    assert kept.lr_factor == 0.25 and kept.n_decays == 2


def test_the_checkpointed_counters_restore_the_same_decisions():
    settings = dict(has_val=True, early_stopping_patience=3, decay_patience=1, decay_max=1)
    losses = [1.0, 0.8, 0.9, 0.95, 0.7, 0.99, 0.98, 0.97]
    whole = KeptState(**settings)
    expected = run(whole, losses)
    first = KeptState(**settings)
    run(first, losses[:4])
    state = first.as_state()
    assert set(state) >= {"best_epoch", "since_improved", "lr_factor", "n_decays"}
    resumed = KeptState(**settings).restored(state)
    rest = [resumed.update(i + 5, loss) for i, loss in enumerate(losses[4:])]
    assert rest == expected[4:] and resumed == whole


def test_stability_needs_every_thresholded_metric_finite_and_below_its_limit():
    assert is_stable({"a": 0.1, "b": 5.0}, {"a": 0.2})
    assert not is_stable({"a": 0.3}, {"a": 0.2})
    assert not is_stable({"a": math.nan}, {"a": 0.2})
    with pytest.raises(ConfigError, match="'c'"):
        is_stable({"a": 0.1}, {"c": 1.0})


def test_a_checkpoint_snapshot_resumes_only_the_same_run(tmp_path):
    jax = pytest.importorskip("jax")
    from orrery.sbi.training._checkpoint import resume, save_checkpoint, snapshot

    arrays = {"params": np.ones(3, np.float32), "opt": np.zeros(2), "best": np.ones(3, np.float32)}
    history = {"train_loss": [1.0], "val_loss": [0.5], "learning_rate": [1e-3]}
    kept = KeptState(has_val=True)
    kept.update(1, 0.5)
    facts = {"n_train": 10, "seed": 0, "data_fingerprint": "abc"}
    state = snapshot(history, kept.as_state(), facts, seed=0, key=jax.random.key(0))
    save_checkpoint(tmp_path, backend="equinox", epoch=1, arrays=arrays, state=state)
    assert resume(tmp_path / "none", arrays, facts) is None
    loaded, got = resume(tmp_path, arrays, facts)
    np.testing.assert_array_equal(loaded["params"], arrays["params"])
    assert got["history"] == history and KeptState(has_val=True).restored(got) == kept
    with pytest.raises(ConfigError, match="different training data"):
        resume(tmp_path, arrays, {**facts, "data_fingerprint": "other"})


def test_the_program_cache_builds_once_per_key_and_skips_unhashable_keys():
    from orrery.sbi.training import _programs

    saved = dict(_programs.JIT_CACHE)
    builds = []
    try:
        for _ in range(2):
            _programs.cached(("parts-test",), lambda: builds.append(1) or "program")
        assert builds == [1]
        _programs.cached(("parts-test", []), lambda: builds.append(2))  # unhashable: built
        assert builds == [1, 2]
    finally:
        _programs.JIT_CACHE.clear()
        _programs.JIT_CACHE.update(saved)

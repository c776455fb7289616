"""Training sets read from disk: a campaign store and memory-mapped .npy files."""

import concurrent.futures as cf
import json
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import numpy as np
import pytest

from orrery.sbi import ConditionalFlowPosterior, SimulationDataset, simulate

pytest.importorskip("zarr")

from orrery.sbi.streaming import _WINDOW_COPIES as COPIES

# the store's chunk (64 rows x 11 float64 columns) plus 40-row windows of 10 float32 columns
STORE_BUDGET_40_ROWS = 8 * 11 * 64 + COPIES * 4 * 10 * 40

BOX = [[0.0, 1.0], [-1.0, 1.0]]
TINY = dict(
    embedding_dim=8,
    hidden_dim=16,
    num_coupling_layers=2,
    conditioner_depth=1,
    photometry_embedding_dim=4,
    stable_inverse_forward_max_abs_error_threshold=None,
    stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
    stable_cube_edge_hit_rate_threshold=None,
)


def toy_simulator(theta):
    return {
        "auxiliary": np.sin(3 * theta[:, :1] + np.linspace(0, 1, 6)) + theta[:, 1:],
        "photometry": theta**2,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "campaign"
    return simulate(
        toy_simulator, BOX, 300, path, chunk_size=64, seed=1, executor=cf.ThreadPoolExecutor(2)
    )


def memory_twin(store, **kwargs):
    from orrery.sbi._store.row_sources import StoreSource

    src = StoreSource(store)
    theta = src.read("parameters", 0, src.n_rows)
    obs = {k: src.read(f"obs:{k}", 0, src.n_rows) for k in src.blocks}
    return SimulationDataset.from_arrays(theta, obs, bounds=BOX, **kwargs), theta, obs


def test_store_dataset_has_the_in_memory_metadata(store):
    streamed = SimulationDataset.from_store(store, validation_fraction=0.2, seed=5)
    mem, _, _ = memory_twin(store, validation_fraction=0.2, seed=5)
    assert streamed.fingerprint == mem.fingerprint
    extra = {"excluded_failed", "source"}
    assert {k: v for k, v in streamed.manifest.items() if k not in extra} == mem.manifest
    assert streamed.manifest["excluded_failed"] == 0
    assert streamed.preprocessing_metadata == mem.preprocessing_metadata
    assert streamed.observation_schema == mem.observation_schema
    np.testing.assert_array_equal(streamed.validation_indices, mem.validation_indices)
    # one window: the same shuffled batches as in memory
    a = list(streamed.iter_batches("train", 50, seed=3))
    b = list(mem.iter_batches("train", 50, seed=3))
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        jax.tree.map(np.testing.assert_array_equal, x, y)


def test_small_windows_visit_every_row_once(store):
    mem, _, _ = memory_twin(store)
    streamed = SimulationDataset.from_store(store, memory_budget=STORE_BUDGET_40_ROWS)
    assert streamed.window_rows == 40
    seen = np.concatenate([b.parameters for b in streamed.iter_batches("train", 32, seed=0)])
    expected = mem.split_arrays("train").parameters
    assert seen.shape == expected.shape
    assert not np.array_equal(seen, expected)  # shuffled
    np.testing.assert_array_equal(np.unique(seen, axis=0), np.unique(expected, axis=0))
    ordered = list(streamed.iter_batches("validation", 7, shuffle=False))
    got = jax.tree.map(lambda *xs: np.concatenate(xs), *ordered)
    jax.tree.map(np.testing.assert_array_equal, got, mem.split_arrays("validation"))


def test_npy_reader_matches_memory(tmp_path):
    rng = np.random.default_rng(0)
    theta = rng.uniform(size=(120, 3))
    x = (theta @ rng.normal(size=(3, 8))).astype(np.float32)
    err = np.full_like(x, 0.1)
    np.save(tmp_path / "theta.npy", theta)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "err.npy", err)
    streamed = SimulationDataset.from_npy(
        tmp_path / "theta.npy",
        {"spectrum": tmp_path / "x.npy"},
        uncertainties={"spectrum": tmp_path / "err.npy"},
        memory_budget=COPIES * 4 * 19 * 25,
    )
    mem = SimulationDataset.from_arrays(theta, {"spectrum": x}, uncertainties={"spectrum": err})
    assert streamed.window_rows == 25
    assert streamed.fingerprint == mem.fingerprint
    assert streamed.parameter_bounds.tolist() == mem.parameter_bounds.tolist()
    assert streamed.bounds_source == "derived"
    for k, v in mem.preprocessing_metadata.items():
        np.testing.assert_allclose(
            streamed.preprocessing_metadata[k]["value_mean"], v["value_mean"]
        )
        np.testing.assert_allclose(
            streamed.preprocessing_metadata[k]["value_scale"], v["value_scale"]
        )
    ordered = list(streamed.iter_batches("train", 16, shuffle=False))
    got = jax.tree.map(lambda *xs: np.concatenate(xs), *ordered)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
        got,
        mem.split_arrays("train"),
    )
    bad = x.copy()
    bad[3, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"observations\['spectrum'\]: contains NaN"):
        SimulationDataset.from_npy(tmp_path / "theta.npy", {"spectrum": tmp_path / "bad.npy"})


def test_training_from_store_equals_training_from_memory(store, tmp_path):
    streamed = SimulationDataset.from_store(store, seed=2)
    mem, _, _ = memory_twin(store, seed=2)
    kwargs = dict(**TINY, num_epochs=2, batch_size=64, seed=0, parameter_space="physical")
    a = ConditionalFlowPosterior(2, **kwargs)
    hist_a = a.fit(mem).history
    b = ConditionalFlowPosterior(2, **kwargs)
    hist_b = b.fit(streamed).history
    np.testing.assert_allclose(hist_b["train_loss"], hist_a["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(hist_b["val_loss"], hist_a["val_loss"], rtol=1e-6)
    leaves_a = jax.tree.leaves(eqx.filter(a.model, eqx.is_inexact_array))
    leaves_b = jax.tree.leaves(eqx.filter(b.model, eqx.is_inexact_array))
    assert len(leaves_a) == len(leaves_b) > 0
    for u, v in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    meta_a = json.loads((tmp_path / "a" / "metadata.json").read_text())
    meta_b = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert json.dumps(meta_a["config"]["dataset_fingerprint"]) == json.dumps(
        meta_b["config"]["dataset_fingerprint"]
    )


def test_a_streamed_fit_starts_from_the_regression_on_all_its_rows(store):
    streamed = SimulationDataset.from_store(store, seed=2)
    mem, _, _ = memory_twin(store, seed=2)
    kwargs = dict(**TINY, num_epochs=1, batch_size=64, seed=0, parameter_space="physical")
    kwargs.update(encoder_linear_skip=True, linear_gaussian_start=True)
    a = ConditionalFlowPosterior(2, **kwargs).fit(mem)
    b = ConditionalFlowPosterior(2, **kwargs).fit(streamed)
    start_a = a.trainer_metadata["linear_gaussian_start"]
    start_b = b.trainer_metadata["linear_gaussian_start"]
    assert start_b["rows"] == start_a["rows"] == streamed.split_size("train")
    np.testing.assert_allclose(start_b["explained_variance"], start_a["explained_variance"])
    np.testing.assert_allclose(b.history["val_loss"], a.history["val_loss"], rtol=1e-5)


_RSS_SCRIPT = """
import concurrent.futures as cf, json, sys, threading, time
import numpy as np
from orrery.sbi import ConditionalFlowPosterior, SimulationDataset, simulate
from orrery.sbi.training import _streaming

K = 1000

def sim(theta):
    grid = np.linspace(0.0, 1.0, K)
    return {"auxiliary": (np.sin(7 * grid * theta[:, :1]) + theta[:, 1:]).astype(np.float32)}

def rss():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

# The first epoch compiles (XLA's memory does not depend on the data): the baseline
# is taken when the second epoch starts; the peak is watched until the fit ends.
epochs, peak, stop = [], [0], threading.Event()
original = _streaming.SplitStream.epoch_groups

def epoch_groups(self, *args, **kwargs):
    epochs.append(rss())
    if len(epochs) == 2:
        peak[0] = epochs[1]
    return original(self, *args, **kwargs)

_streaming.SplitStream.epoch_groups = epoch_groups

def watch():
    while not stop.is_set():
        if len(epochs) >= 2:
            peak[0] = max(peak[0], rss())
        time.sleep(0.002)

path, budget, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
simulate(sim, [[0.0, 1.0], [0.0, 1.0]], n, path, chunk_size=250,
         executor=cf.ThreadPoolExecutor(1))
ds = SimulationDataset.from_store(path, memory_budget=budget)
tiny = dict(embedding_dim=8, hidden_dim=16, num_coupling_layers=2, conditioner_depth=1,
            num_epochs=3, batch_size=64, seed=0,
            stable_inverse_forward_max_abs_error_threshold=None,
            stable_inverse_forward_logdet_closure_max_abs_error_threshold=None,
            stable_cube_edge_hit_rate_threshold=None)
watcher = threading.Thread(target=watch)
watcher.start()
try:
    ConditionalFlowPosterior(2, **tiny).fit(ds)
finally:
    stop.set()
    watcher.join()
growth = max(peak[0], rss()) - epochs[1]
print(json.dumps({"growth": growth, "data": n * K * 4, "window": ds.window_rows,
                  "epochs": len(epochs)}))
"""


def test_fit_from_store_keeps_memory_within_budget(tmp_path):
    budget, n = 16 * 2**20, 20000
    script = tmp_path / "rss.py"
    script.write_text(textwrap.dedent(_RSS_SCRIPT))
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "big"), str(budget), str(n)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["data"] >= 4 * budget
    assert result["window"] < n and result["epochs"] == 3
    assert result["growth"] <= budget, result


def test_epoch_parts_read_only_their_columns_and_make_up_the_batches(store):
    from orrery.interface import ConfigError
    from orrery.sbi.training._streaming import SplitStream

    ds = SimulationDataset.from_store(store, memory_budget=STORE_BUDGET_40_ROWS)
    stream = SplitStream(ds, "train", lambda batch: batch)
    key, batch, n_batches = jax.random.key(4), 16, stream.n_rows // 16
    assert stream.resident() is None and stream.window_rows < stream.n_rows
    full = list(stream.epoch_groups(key, batch, n_batches))
    assert sum(g.parameters.shape[0] for g in full) == n_batches
    assert {g.parameters.shape[0] for g in full} <= {2, 1}  # windows of 32 rows, one shorter
    seen = np.concatenate([g.parameters.reshape(-1, 2) for g in full])
    assert np.unique(seen, axis=0).shape[0] == n_batches * batch  # every row at most once
    parts = [list(stream.epoch_groups(key, batch, n_batches, part=(i, 4))) for i in range(4)]
    for j, group in enumerate(full):
        assert parts[0][j].parameters.shape == (group.parameters.shape[0], 4, 2)
        joined = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *(p[j] for p in parts))
        jax.tree.map(np.testing.assert_array_equal, joined, group)
    read = []
    original = ds.read_positions
    ds.read_positions = lambda split, positions: (
        read.append(len(positions)) or original(split, positions)
    )
    list(stream.epoch_groups(key, batch, n_batches, part=(1, 4)))
    assert sum(read) == n_batches * batch // 4  # only this part's rows are read
    with pytest.raises(ConfigError, match="batch_size"):
        next(stream.epoch_groups(key, 18, 10, part=(0, 4)))
    with pytest.raises(ConfigError, match="part"):
        next(stream.epoch_groups(key, 16, 10, part=(4, 4)))


def zero_block_simulator(theta):
    return {"auxiliary": theta.astype(np.float32) * 2.0, "flat": np.zeros((theta.shape[0], 3))}


def test_store_arrays_zarr_left_out_are_read_through_zarr(tmp_path):
    # Zarr writes no chunk file for an all-fill array: such reads go through Zarr
    path = simulate(
        zero_block_simulator, BOX, 50, tmp_path / "s", chunk_size=20,
        executor=cf.ThreadPoolExecutor(1),
    )  # fmt: skip
    assert not (tmp_path / "s" / "chunks" / "c00000000" / "obs" / "flat" / "c").exists()
    streamed = SimulationDataset.from_store(path, memory_budget=STORE_BUDGET_40_ROWS)
    theta = np.concatenate([b.parameters for b in streamed.iter_batches("train", 8, shuffle=False)])
    mem, _, obs = memory_twin(path)
    np.testing.assert_array_equal(obs["flat"], 0.0)
    assert streamed.fingerprint == mem.fingerprint
    np.testing.assert_array_equal(theta, mem.split_arrays("train").parameters)


def test_a_repeat_streamed_fit_with_another_seed_compiles_nothing(tmp_path, caplog):
    import logging

    from orrery.sbi import ConditionalFlowPosterior

    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(300, 3))
    np.save(tmp_path / "theta.npy", theta)
    np.save(tmp_path / "x.npy", theta + 0.1 * rng.normal(size=theta.shape))
    streamed = SimulationDataset.from_npy(
        tmp_path / "theta.npy", {"auxiliary": tmp_path / "x.npy"}, memory_budget=COPIES * 4 * 6 * 64
    )
    assert streamed.streaming and streamed.window_rows < 240  # several windows per epoch
    tiny = dict(hidden_dim=8, embedding_dim=4, photometry_embedding_dim=4, num_epochs=2)
    first = ConditionalFlowPosterior.recommended(3, 300, seed=0, **tiny)
    first.fit(streamed)
    caplog.clear()
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger="jax"):
        second = ConditionalFlowPosterior.recommended(3, 300, seed=1, **tiny)
        second.fit(streamed)
    compiled = [r.getMessage() for r in caplog.records if "XLA compilation" in r.getMessage()]
    assert compiled == []
    assert second.training_history["train_loss"] != first.training_history["train_loss"]

"""Campaign stores never destroy or corrupt data, and every chunk is verified on read.

One test per case of issue 32's store/campaign half: what a campaign may overwrite,
one writer at a time (two real processes), kill -9 at random points, tampered
stores refused with `ArtifactError` naming the chunk, a truncated .npy source, and
simulators that edit their input, return complex or empty blocks, or hang.
"""

import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from orrery.interface import ArtifactError, ConfigError
from orrery.sbi import SimulationDataset, simulate
from orrery.sbi._store import read as _store_read
from orrery.sbi._store.read import ChunkReader
from orrery.sbi._store.write import chunk_path, read_config

pytest.importorskip("zarr")

BOX = [[0.0, 1.0], [-1.0, 1.0]]


def tiny(theta):
    return {"x": np.sin(theta[:, :1] * np.arange(3)) + theta[:, 1:], "y": theta**2}


def run(path, sim=tiny, num=24, **kwargs):
    kwargs = {"chunk_size": 4, "seed": 7, "executor": cf.ThreadPoolExecutor(1), **kwargs}
    return simulate(sim, BOX, num, path, **kwargs)


def contents(path):
    reader = ChunkReader(path)
    cfg = reader.config
    arrays = {
        (i, name): reader.array(i, name)
        for i in range(cfg["n_chunks"])
        for name in ("parameters", "ok", "obs/x", "obs/y")
    }
    return cfg["fingerprint"], arrays


def assert_same_store(a, b):
    fa, aa = contents(a)
    fb, ab = contents(b)
    assert fa == fb and aa.keys() == ab.keys()
    for key, value in aa.items():
        np.testing.assert_array_equal(value, ab[key], err_msg=str(key))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return Path(run(tmp_path_factory.mktemp("made") / "store"))


@pytest.fixture
def copy(made, tmp_path):
    """A fresh copy of the module's finished store, to tamper with."""
    out = tmp_path / "copy"
    shutil.copytree(made, out, symlinks=True)
    return out


def edit_json(file, change):
    meta = json.loads(file.read_text())
    change(meta)
    file.write_text(json.dumps(meta))


# ---------------------------------------------------------------- nothing deleted
def test_a_folder_with_other_files_is_refused_and_left_alone(tmp_path):
    target = tmp_path / "results"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="never deletes") as info:
            run(target, overwrite=overwrite)
        assert str(target) in str(info.value)
    assert sorted(p.name for p in target.iterdir()) == ["thesis.tex"]
    assert (target / "thesis.tex").read_text() == "years of work"
    afile = tmp_path / "data.csv"
    afile.write_text("1,2")
    with pytest.raises(ConfigError, match="never deletes"):
        run(afile)
    assert afile.read_text() == "1,2"


def test_an_empty_folder_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    path = run(tmp_path / "empty")
    assert read_config(Path(path))["complete"]


def test_overwrite_replaces_only_a_recognised_store(made, tmp_path):
    store = tmp_path / "s"
    shutil.copytree(made, store)
    with pytest.raises(ConfigError, match="seed=7"):
        run(store, seed=8)
    assert read_config(store)["seed"] == 7  # untouched
    run(store, seed=8, overwrite=True)
    assert read_config(store)["seed"] == 8 and read_config(store)["complete"]
    (store / "notes.txt").write_text("mine")  # a user's file inside a store
    with pytest.raises(ConfigError, match="notes.txt"):
        run(store, seed=9, overwrite=True)
    assert (store / "notes.txt").read_text() == "mine" and read_config(store)["seed"] == 8


# ---------------------------------------------------------------- one writer at a time
_HOLDER = """
import sys, time
import numpy as np
import concurrent.futures as cf
from orrery.sbi import simulate

def slow(theta):
    time.sleep(0.1)
    return {"x": np.sin(theta[:, :1] * np.arange(3)) + theta[:, 1:], "y": theta**2}

simulate(slow, [[0.0, 1.0], [-1.0, 1.0]], 24, sys.argv[1], chunk_size=4, seed=7,
         executor=cf.ThreadPoolExecutor(1))
"""


def test_a_second_campaign_on_a_store_being_written_fails_at_once_or_waits(made, tmp_path):
    store = tmp_path / "shared"
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(_HOLDER))
    holder = subprocess.Popen([sys.executable, str(script), str(store)])
    try:
        deadline = time.monotonic() + 180
        while not (store / "chunks" / "c00000000").exists():  # it holds the lock by now
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(ConfigError, match="being written by another campaign"):
            run(store)
        assert time.monotonic() - started < 2.0  # at once, not after the other finished
        assert holder.poll() is None, "the holder finished before the second campaign ran"
        run(store, wait=True)  # waits, then finds every chunk done
        assert holder.wait(timeout=120) == 0  # its work was never removed
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert read_config(store)["complete"]
    assert_same_store(store, made)


_KILL_TRIALS = """
import json, os, random, signal, sys, time, traceback
import concurrent.futures as cf
import numpy as np
from orrery.interface import ArtifactError
from orrery.sbi import SimulationDataset, simulate

def tiny(theta):
    return {"x": np.sin(theta[:, :1] * np.arange(3)) + theta[:, 1:], "y": theta**2}

def campaign(path):
    simulate(tiny, [[0.0, 1.0], [-1.0, 1.0]], 48, path, chunk_size=4, seed=7,
             executor=cf.ThreadPoolExecutor(2))

def check(path, fingerprint):  # what a reader makes of the killed store
    try:
        ds = SimulationDataset.from_store(path)
    except ArtifactError:
        return 10
    return 11 if ds.manifest["source"]["campaign_fingerprint"] == fingerprint else 12

def child(fn, *args):  # forked: the campaign's zarr threads start in the child only
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = fn(*args) or 0
        except BaseException:
            traceback.print_exc()
        os._exit(code)
    return pid

def finish(pid):
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

root, trials, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.monotonic()
assert finish(child(campaign, os.path.join(root, "reference"))) == 0
duration = time.monotonic() - t0
meta = json.load(open(os.path.join(root, "reference", "zarr.json")))
ref = meta["attributes"]["orrery_campaign"]["fingerprint"]
rng = random.Random(seed)
report = []
for trial in range(trials):
    path = os.path.join(root, f"trial{trial}")
    delay = rng.uniform(0.0, 1.1 * duration)
    pid = child(campaign, path)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    finish(pid)
    killed = finish(child(check, path, ref))
    report.append({"path": path, "delay": delay, "killed": killed,
                   "resumed": finish(child(campaign, path))})
with open(os.path.join(root, "report.json"), "w") as fh:
    json.dump({"duration": duration, "trials": report}, fh)
"""


def kill_trials(tmp_path, trials, seed):
    script = tmp_path / "trials.py"
    script.write_text(textwrap.dedent(_KILL_TRIALS))
    subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(trials), str(seed)],
        check=True,
        timeout=600,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    for trial in report["trials"]:
        # killed: refused (ArtifactError) or, killed after it finished, the same store
        assert trial["killed"] in (10, 11), trial
        assert trial["resumed"] == 0, trial  # resumable...
        assert_same_store(trial["path"], tmp_path / "reference")  # ...to the same store
    return report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill_minus_9_at_random_points_then_resume_gives_the_same_store(tmp_path):
    report = kill_trials(tmp_path, trials=4, seed=11)
    assert len(report["trials"]) == 4


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_kill_minus_9_twenty_times(tmp_path):
    report = kill_trials(tmp_path, trials=20, seed=12)
    states = [t["killed"] for t in report["trials"]]
    assert 10 in states  # some kills landed before the campaign finished


# ---------------------------------------------------------------- integrity on read
def chunk_file(store, index, name):
    return chunk_path(store, index) / name / "c" / ("0/0" if name != "ok" else "0")


def refuses(store, match="chunk 1"):
    with pytest.raises(ArtifactError, match=match):
        SimulationDataset.from_store(store)


def test_an_edited_finite_value_is_refused(copy):
    file = chunk_file(copy, 1, "obs/x")
    data = bytearray(file.read_bytes())
    data[:8] = np.float64(0.123).tobytes()
    file.write_bytes(bytes(data))
    refuses(copy)


def test_a_relabelled_data_type_is_refused(copy):
    edit_json(
        chunk_path(copy, 1) / "obs" / "x" / "zarr.json", lambda m: m.update(data_type="int64")
    )
    refuses(copy)


def test_a_chunk_linked_to_another_campaigns_chunk_is_refused(copy, tmp_path):
    other = Path(run(tmp_path / "other", seed=99))
    shutil.rmtree(chunk_path(copy, 1))
    os.symlink(chunk_path(other, 1), chunk_path(copy, 1))
    refuses(copy, match="chunk 1.*leaves the store")


def test_a_chunk_linked_to_another_chunk_of_the_store_is_refused(copy):
    shutil.rmtree(chunk_path(copy, 1))
    os.symlink(chunk_path(copy, 2), chunk_path(copy, 1))
    refuses(copy)


def test_a_flipped_ok_flag_is_refused(copy):
    file = chunk_file(copy, 1, "ok")
    data = bytearray(file.read_bytes())
    data[2] = 0
    file.write_bytes(bytes(data))
    refuses(copy)


def test_a_lowered_chunk_count_is_refused(copy):
    def lower(meta):
        attrs = meta["attributes"]["orrery_campaign"]
        attrs["n_chunks"] -= 1

    edit_json(copy / "zarr.json", lower)
    refuses(copy, match="n_chunks")

    def lower_both(meta):  # num_simulations lowered to agree: the left-over chunk shows
        meta["attributes"]["orrery_campaign"]["num_simulations"] -= 4

    edit_json(copy / "zarr.json", lower_both)
    refuses(copy, match="chunk 5 beyond")


def test_a_missing_chunk_is_refused(copy):
    shutil.rmtree(chunk_path(copy, 1))
    refuses(copy, match="chunk 1 is missing")


def test_a_deleted_data_file_is_refused(copy):
    chunk_file(copy, 1, "parameters").unlink()
    refuses(copy)


def test_a_changed_shape_is_refused(copy):
    edit_json(chunk_path(copy, 1) / "obs" / "x" / "zarr.json", lambda m: m.update(shape=[2, 6]))
    refuses(copy)


def test_a_compressed_codec_label_is_refused(copy):
    def gzip(meta):
        meta["codecs"].append({"name": "gzip", "configuration": {"level": 1}})

    edit_json(chunk_path(copy, 1) / "obs" / "x" / "zarr.json", gzip)
    refuses(copy, match="chunk 1 block 'x' is not in the layout")


def test_a_missing_metadata_key_is_refused(copy):
    edit_json(chunk_path(copy, 1) / "zarr.json", lambda m: m["attributes"]["chunk"].pop("digest"))
    refuses(copy, match="chunk 1 has malformed attributes")


def test_deeply_nested_metadata_is_refused(copy):
    (chunk_path(copy, 1) / "zarr.json").write_text("[" * 200_000 + "]" * 200_000)
    refuses(copy, match="chunk 1 metadata")


def test_oversized_metadata_is_refused_without_reading_it(copy, monkeypatch):
    monkeypatch.setattr(_store_read, "MAX_METADATA_BYTES", 1000)
    with open(chunk_path(copy, 1) / "zarr.json", "a") as fh:
        fh.write(" " * 2000)
    refuses(copy, match="chunk 1 metadata.*more than")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_data_file_linked_to_dev_zero_is_refused(copy):
    file = chunk_file(copy, 1, "obs/y")
    file.unlink()
    os.symlink("/dev/zero", file)
    refuses(copy, match="chunk 1 block 'y' data.*leaves the store")


def test_a_store_is_hashed_once_per_process_and_checked_again_when_a_file_changes(
    copy, monkeypatch
):
    calls = []
    verify = _store_read.verify_chunk
    monkeypatch.setattr(
        _store_read, "verify_chunk", lambda *a, **k: calls.append(a[1]) or verify(*a, **k)
    )
    ds = SimulationDataset.from_store(copy, memory_budget=2**16)
    assert sorted(calls) == list(range(6))  # each chunk once
    for _ in range(2):  # two epochs: nothing hashed again
        assert sum(b.parameters.shape[0] for b in ds.iter_batches("train", 8)) == ds.n_train
    SimulationDataset.from_store(copy)
    assert sorted(calls) == list(range(6))
    file = chunk_file(copy, 3, "obs/x")
    data = bytearray(file.read_bytes())
    data[-1] ^= 1
    file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="chunk 3"):
        next(ds.iter_batches("train", 8))  # the next pass checks the changed chunk


def test_complete_means_every_chunk_verified(copy):
    from orrery.sbi._store.write import update_config

    update_config(copy, {"complete": False})
    file = chunk_file(copy, 2, "obs/y")
    data = bytearray(file.read_bytes())
    data[0] ^= 1
    file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="chunk 2"):
        run(copy)  # nothing to simulate, but the damaged chunk is found
    assert read_config(copy)["complete"] is False


def test_a_truncated_npy_source_is_an_error_not_a_crash(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "theta.npy", rng.uniform(size=(400, 2)))
    np.save(tmp_path / "x.npy", rng.normal(size=(400, 5)))
    ds = SimulationDataset.from_npy(tmp_path / "theta.npy", {"x": tmp_path / "x.npy"})
    os.truncate(tmp_path / "x.npy", 1000)
    with pytest.raises(ArtifactError, match="truncated"):
        next(ds.iter_batches("train", 16))
    with pytest.raises(ArtifactError, match="truncated"):
        ds.read_rows("train", 0, 10)


# ---------------------------------------------------------------- what the simulator returns
def test_a_simulator_that_edits_theta_does_not_change_the_stored_draws(made, tmp_path):
    def halving(theta):
        theta *= 0.5  # in place
        return tiny(theta)

    path = run(tmp_path / "halved", sim=halving)
    reader, clean = ChunkReader(path), ChunkReader(made)
    for i in range(6):
        np.testing.assert_array_equal(reader.array(i, "parameters"), clean.array(i, "parameters"))
    theta = np.concatenate([reader.array(i, "parameters") for i in range(6)])
    assert theta[:, 0].max() > 0.5  # the prior draws, not the edited values


@pytest.mark.parametrize(
    "block, match",
    [
        (lambda t: t[:, :1] + 1j, "output\\['bad'\\]: complex"),
        (lambda t: np.zeros((t.shape[0], 0)), "output\\['bad'\\]: a zero-width block"),
    ],
    ids=["complex", "zero-width"],
)
def test_complex_and_zero_width_blocks_are_refused(tmp_path, block, match):
    def sim(theta):
        return {**tiny(theta), "bad": block(theta)}

    with pytest.raises(ConfigError, match=match):
        run(tmp_path / "s", sim=sim)


def test_a_hanging_chunk_times_out_is_retried_and_counted(tmp_path):
    release = threading.Event()

    def hangs(theta):
        if (theta[:, 0] > 0.95).any():
            release.wait(60)  # hangs until the test ends
        return tiny(theta)

    try:
        with pytest.warns(UserWarning, match="ran past timeout"):
            path = run(tmp_path / "s", sim=hangs, num=12, timeout=0.3, retries=1)
    finally:
        release.set()
    cfg = read_config(Path(path))
    reader = ChunkReader(path)
    theta = np.concatenate([reader.array(i, "parameters") for i in range(3)])
    hung = [i for i in range(3) if (theta[4 * i : 4 * i + 4, 0] > 0.95).any()]
    assert hung == [1]
    assert cfg["n_timeouts"] == 2 * len(hung)  # the first attempt and its retry
    assert cfg["n_failed"] == 4 * len(hung)
    for i in hung:
        assert reader.attrs(i)["timeouts"] == 2
        assert all("TimeoutError" in f["error"] for f in reader.attrs(i)["failures"])
    assert SimulationDataset.from_store(path).n_simulations == 12 - 4 * len(hung)


def test_a_chunk_that_hangs_once_succeeds_on_its_retry(tmp_path):
    first = threading.Event()
    release = threading.Event()

    def hangs_once(theta):
        if not first.is_set():
            first.set()
            release.wait(60)
        return tiny(theta)

    try:
        with pytest.warns(UserWarning, match="1 chunk attempt"):
            path = run(tmp_path / "s", sim=hangs_once, num=8, timeout=0.3, retries=1)
    finally:
        release.set()
    cfg = read_config(Path(path))
    assert cfg["n_timeouts"] == 1 and cfg["n_failed"] == 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"overwrite": "yes"}, "overwrite"),
        ({"wait": 1}, "wait"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"retries": -1}, "retries"),
    ],
)
def test_bad_store_options_are_refused_before_anything_is_written(tmp_path, kwargs, name):
    with pytest.raises(ConfigError, match=name):
        run(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()

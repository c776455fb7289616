"""Labelling a survey on an executor into a resumable catalogue (issue 36)."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import jax
import numpy as np
import pytest

from orrery.interface import ConfigError, OrreryError, ShapeError
from orrery.lux import Cannon, LabelInference
from orrery.lux._survey import workers as _workers
from orrery.lux.datasets import synthetic_survey
from orrery.lux.survey import (
    ArraySource,
    LabelStore,
    limit_threads,
    process_pool,
    write_spectra,
)

N_TEST, P = 60, 30
COLUMNS = ("labels", "covariance", "chi2", "converged", "usable", "n_pixels_used")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A fitted float64 Cannon, its test spectra in a store, and the in-memory labels."""
    jax.config.update("jax_enable_x64", True)
    s = synthetic_survey(200 + N_TEST, P, seed=1)
    cannon = Cannon(3, P).fit(s.labels[:200], s.spectra[:200], s.ivar[:200])
    flux, ivar = s.spectra[200:].copy(), s.ivar[200:].copy()
    flux[40:45] = np.nan  # five stars without data: one whole chunk of 5
    ids = np.arange(1000, 1000 + N_TEST)
    root = tmp_path_factory.mktemp("survey")
    store = write_spectra(
        root / "spectra", ArraySource(flux, ivar, ids=ids), chunk_stars=5, progress=False
    )
    ref = cannon.infer_labels(flux, ivar)
    yield cannon, store, ref, root
    jax.config.update("jax_enable_x64", False)


@pytest.fixture(autouse=True)
def _x64(survey):
    jax.config.update("jax_enable_x64", True)


def _same(a: LabelStore, b: LabelStore):
    ca, cb = a.columns(), b.columns()
    for name in (*COLUMNS, "ids"):
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)


def test_equals_the_in_memory_call_whatever_the_chunks(survey, tmp_path):
    cannon, store, ref, _ = survey
    with pytest.warns(UserWarning, match="5 spectra"):
        cat = cannon.infer_labels(store, catalogue=tmp_path / "a", progress=False)
    got = cat.columns()
    np.testing.assert_array_equal(got["labels"], ref.labels)
    np.testing.assert_array_equal(got["covariance"], ref.covariance)
    np.testing.assert_array_equal(got["chi2"], ref.chi2)
    np.testing.assert_array_equal(got["converged"], ref.converged)
    assert got["ids"].tolist() == list(range(1000, 1000 + N_TEST))
    back = cat.read()  # the in-memory call's own type, equal field by field
    assert isinstance(back, LabelInference)
    for name in ("labels", "covariance", "chi2", "converged"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(cat.read(12, 31).uncertainties, ref.uncertainties[12:31])
    # the NaN-only chunk: flagged, never answered with certainty
    assert not got["usable"][40:45].any() and got["usable"][:40].all()
    assert np.isnan(got["labels"][40:45]).all() and (got["n_pixels_used"][40:45] == 0).all()
    with pytest.warns(UserWarning):
        other = cannon.infer_labels(store, catalogue=tmp_path / "b", chunk_stars=7, progress=False)
    np.testing.assert_allclose(other["labels"][:40], got["labels"][:40], rtol=1e-12)
    np.testing.assert_array_equal(other["usable"], got["usable"])
    assert json.loads((tmp_path / "a" / "store.json").read_text())["complete"]


class _FailingOnce(Executor):
    """Runs tasks in this thread; chunk ``bad`` fails its first ``times`` attempts."""

    def __init__(self, bad, times):
        self.bad, self.left = bad, times

    def submit(self, fn, /, *args, **kwargs):
        fut: Future = Future()
        if args[1] == self.bad and self.left > 0:
            self.left -= 1
            fut.set_exception(OSError("disk hiccup"))
            return fut
        fut.set_result(fn(*args, **kwargs))
        return fut


@pytest.mark.filterwarnings("ignore:Cannon.infer_labels")
def test_a_failed_chunk_is_recorded_retried_and_never_dropped(survey, tmp_path):
    cannon, store, _, _ = survey
    cat = cannon.infer_labels(
        store, catalogue=tmp_path / "c", executor=_FailingOnce(3, 1), progress=False
    )
    meta = json.loads((tmp_path / "c" / "store.json").read_text())
    assert meta["failures"] == {"3": ["OSError: disk hiccup"]}
    with pytest.raises(OrreryError, match=r"chunk\(s\) \[3\].*failed 2 time"):
        cannon.infer_labels(
            store, catalogue=tmp_path / "d", executor=_FailingOnce(3, 5), progress=False
        )
    assert not json.loads((tmp_path / "d" / "store.json").read_text())["complete"]
    again = cannon.infer_labels(store, catalogue=tmp_path / "d", progress=False)  # resumes
    _same(again, cat)


@pytest.mark.filterwarnings("ignore:Cannon.infer_labels")
def test_dask_and_a_process_pool_label_alike(survey, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    cannon, store, _, _ = survey
    # spawned workers cannot import this test module (pytest's importlib mode): the probe
    # lives in a module of its own on the path the workers inherit
    (tmp_path / "where_probe.py").write_text(_WHERE_PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    where = importlib.import_module("where_probe").where
    local = cannon.infer_labels(store, catalogue=tmp_path / "local", progress=False)
    with (
        distributed.LocalCluster(
            processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask = cannon.infer_labels(
            store, catalogue=tmp_path / "dask", executor=client.get_executor(), progress=False
        )
    _same(dask, local)
    pin = hasattr(os, "sched_setaffinity")
    with process_pool(2, threads=1, pin=pin) as pool:
        procs = cannon.infer_labels(
            store, catalogue=tmp_path / "pool", executor=pool, progress=False
        )
        flags = pool.submit(os.getenv, "XLA_FLAGS").result()
        seen = dict(pool.map(where, [0.2] * 6))
    _same(procs, local)
    assert "--xla_cpu_multi_thread_eigen=false" in flags.split()
    assert "intra_op_parallelism_threads=1" in flags.split()
    if pin:  # each worker on one core of this process's, different ones where there are two
        cores = sorted(os.sched_getaffinity(0))
        assert all(len(c) == 1 and c[0] in cores for c in seen.values()), seen
        if len(seen) == 2 and len(cores) >= 2:
            assert len({c[0] for c in seen.values()}) == 2, seen


_WHERE_PROBE = """
import os, time


def where(delay):
    \"\"\"A worker's process id and the cores it may run on.\"\"\"
    time.sleep(delay)
    return os.getpid(), sorted(os.sched_getaffinity(0))
"""


def test_limit_threads_refuses_what_cannot_take_effect(monkeypatch):
    jax.numpy.zeros(1).block_until_ready()  # this process's backend has started
    with pytest.raises(ConfigError, match="already started"):
        limit_threads(1)
    with pytest.raises(ConfigError, match="n"):
        limit_threads(0)
    with pytest.raises(ConfigError, match="workers"):
        process_pool(0)
    with pytest.raises(ConfigError, match="threads"):
        process_pool(1, threads=0)
    if hasattr(os, "sched_setaffinity"):
        before = os.sched_getaffinity(0)
        for bad in ([-1], [True], [], [10**6]):
            with pytest.raises(ConfigError, match="cores"):
                _workers._pin(bad)
        assert os.sched_getaffinity(0) == before  # nothing changed
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    with pytest.raises(ConfigError, match="Linux"):
        process_pool(2, pin=True)
    with pytest.raises(ConfigError, match="Linux"):
        _workers._pin([0])


class Slow:
    """A store read slowly, so a run can be killed half-way (a `SpectraSource`)."""

    def __init__(self, store, delay):
        self.store, self.delay = store, delay
        self.n_stars, self.n_pixels = store.n_stars, store.n_pixels
        self.fingerprint = store.fingerprint

    def read(self, start, stop):
        time.sleep(self.delay)
        return self.store.read(start, stop)


_CHILD = """
import sys, jax
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[4])
from orrery.lux import Cannon, LabelInference
from orrery.lux.survey import SpectraStore
from test_survey_label import Slow

cannon = Cannon.load(sys.argv[1])
source = Slow(SpectraStore(sys.argv[2]), 0.3)
cannon.infer_labels(source, catalogue=sys.argv[3], chunk_stars=5, progress=False)
"""


@pytest.mark.filterwarnings("ignore:Cannon.infer_labels")
def test_resume_after_kill_9_is_bit_identical(survey, tmp_path):
    cannon, store, _, _ = survey
    cannon.save(tmp_path / "model")
    killed = tmp_path / "killed"
    here = os.path.dirname(__file__)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "model"), str(store.path), str(killed), here]
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if (killed / "chunks").is_dir() and len(os.listdir(killed / "chunks")) >= 3:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the child finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert 3 <= len(os.listdir(killed / "chunks")) < 12
    # resumed here (the model travelled through its artifact: the same digest)
    resumed = cannon.infer_labels(Slow(store, 0.0), catalogue=killed, chunk_stars=5, progress=False)
    clean = cannon.infer_labels(store, catalogue=tmp_path / "clean", progress=False)
    _same(resumed, clean)


def test_bad_calls(survey, tmp_path):
    cannon, store, _, _ = survey
    with pytest.raises(ConfigError, match="catalogue"):
        cannon.infer_labels(store)
    with pytest.raises(ConfigError, match="output_ivar"):
        cannon.infer_labels(store, np.ones((N_TEST, P)), catalogue=tmp_path / "x")
    with pytest.raises(ConfigError, match="only for a survey"):
        cannon.infer_labels(np.ones((2, P)), executor=ThreadPoolExecutor(1))
    narrow = ArraySource(np.ones((3, P - 1)), np.ones((3, P - 1)))
    with pytest.raises(ShapeError, match="pixels"):
        cannon.infer_labels(narrow, catalogue=tmp_path / "y")
    with pytest.warns(UserWarning):
        cannon.infer_labels(store, catalogue=tmp_path / "z", progress=False)
    with pytest.raises(ConfigError, match="settings"):
        cannon.infer_labels(store, catalogue=tmp_path / "z", n_starts=2, progress=False)

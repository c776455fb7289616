"""Simulation campaigns on any `concurrent.futures.Executor`: `simulate`.

The campaign cuts ``num_simulations`` into chunks of ``chunk_size``; chunk ``i``
draws its parameters from a generator seeded by ``(seed, i)`` only, so the store
is bit-identical whatever executor, number of workers or completion order ran it.
Each worker writes its finished chunk into the store itself (see `_store`), so a
campaign killed at any moment restarts with only the missing chunks.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from orrery.interface import (
    ArtifactError,
    ConfigError,
    ShapeError,
    check_finite,
    check_positive_int,
)

from ._splits import resolve_parameter_names
from ._store import write as _store
from .observations import MODALITIES

__all__ = ["simulate"]


def _chunk_parameters(prior: Any, bounds: np.ndarray | None, seed: int, index: int, n: int):
    sequence = np.random.SeedSequence([seed, index])
    if bounds is not None:
        rng = np.random.default_rng(sequence)
        return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * rng.random((n, bounds.shape[0]))
    chunk_seed = int(sequence.generate_state(1, dtype=np.uint32)[0] >> 1)
    return np.asarray(prior.sample(n, chunk_seed), dtype=np.float64)


def _as_output(out: Any, n: int) -> dict[str, np.ndarray]:
    if not isinstance(out, Mapping) or not out:
        raise ShapeError(
            f"simulator: expected a non-empty mapping {{block name: (n, k) array}}, "
            f"got {type(out).__name__}"
        )
    blocks = {}
    for key, value in out.items():
        name = _store.check_block_name(key)
        arr = np.asarray(value)
        if np.iscomplexobj(arr):
            raise ConfigError(
                f"simulator output[{name!r}]: complex values (dtype {arr.dtype}) cannot be "
                "stored; return real arrays (e.g. the real and imaginary parts as two blocks)"
            )
        if arr.dtype.kind not in "biuf":
            raise ConfigError(
                f"simulator output[{name!r}]: expected real numbers, got dtype {arr.dtype}"
            )
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ShapeError(
                f"simulator output[{name!r}]: expected shape ({n}, k) for {n} parameter rows, "
                f"got {arr.shape}"
            )
        if arr.shape[1] == 0:
            raise ConfigError(
                f"simulator output[{name!r}]: a zero-width block {arr.shape} holds no data; "
                "leave it out or return at least one column"
            )
        blocks[name] = arr
    return blocks


class _ChunkTimeout(BaseException):
    """A chunk's simulations ran past the campaign's ``timeout`` (not an ``Exception``:
    the row-by-row isolation of failures must not catch it)."""


def _call(simulator: Callable, theta: np.ndarray, deadline: float | None) -> Any:
    """``simulator`` on a copy of ``theta`` (it may edit it); `_ChunkTimeout` past ``deadline``.

    With a deadline the call runs in a daemon thread that is abandoned when it runs
    late (a thread cannot be stopped): its result, if it ever comes, is dropped.
    """
    arg = theta.copy()
    if deadline is None:
        return simulator(arg)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = simulator(arg)
        except BaseException as err:  # handed to the caller
            box["err"] = err

    thread = threading.Thread(target=run, daemon=True, name="orrery-simulator")
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise _ChunkTimeout
    if "err" in box:
        raise box["err"]
    return box["out"]


def _error_text(err: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(err), err)).strip()


def _simulate_rows(simulator: Callable, theta: np.ndarray, deadline: float | None = None):
    """Run the simulator on a batch; isolate failing rows one by one if the batch raises."""
    n = theta.shape[0]
    errors: dict[int, str] = {}
    try:
        out, failed = _call(simulator, theta, deadline), False
    except Exception:  # the batch failed: find the rows that fail
        out, failed = None, True
    if not failed:
        return _as_output(out, n), errors
    rows: list[dict[str, np.ndarray] | None] = []
    for j in range(n):
        try:
            out = _call(simulator, theta[j : j + 1], deadline)
        except Exception as err:
            rows.append(None)
            errors[j] = _error_text(err)
            continue
        rows.append(_as_output(out, 1))
    good = [r for r in rows if r is not None]
    if not good:
        return {}, errors
    blocks = {}
    for name, first in good[0].items():
        filled = np.full((n, first.shape[1]), np.nan, dtype=first.dtype)
        for j, r in enumerate(rows):
            if r is not None:
                if name not in r or r[name].shape != first.shape:
                    raise ShapeError(
                        f"simulator output[{name!r}]: rows disagree on blocks or sizes "
                        f"(row {j} differs from the first successful row)"
                    )
                filled[j] = r[name][0]
        blocks[name] = filled
    return blocks, errors


def _run_chunk(
    simulator: Callable,
    store: str,
    index: int,
    start: int,
    theta: np.ndarray,
    timeout: float | None = None,
    retries: int = 0,
) -> dict[str, Any]:
    """Worker side: simulate one chunk (retried if it times out) and write it into the store."""
    t0 = time.perf_counter()
    n = theta.shape[0]
    timeouts = 0
    for _ in range(retries + 1):
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            obs, errors = _simulate_rows(simulator, theta, deadline)
            break
        except _ChunkTimeout:
            timeouts += 1
    else:
        text = (
            f"TimeoutError: the chunk's simulations did not finish within {timeout} s "
            f"({timeouts} attempt(s))"
        )
        obs, errors = {}, dict.fromkeys(range(n), text)
    ok = np.ones(n, dtype=bool)
    for j in errors:
        ok[j] = False
    for name, arr in obs.items():
        bad = ~np.isfinite(arr).all(axis=1) & ok
        for j in np.flatnonzero(bad):
            errors[int(j)] = f"non-finite values in block {name!r}"
        ok &= ~bad
    failures = [
        {"row": start + j, "parameters": theta[j].tolist(), "error": errors[j]}
        for j in sorted(errors)
    ]
    _store.write_chunk(Path(store), index, start, theta, ok, obs, failures, timeouts)
    return {
        "index": index,
        "n": n,
        "n_failed": len(failures),
        "timeouts": timeouts,
        "seconds": time.perf_counter() - t0,
    }


def _prior_config(prior: Any, d_hint: int | None) -> tuple[np.ndarray | None, dict[str, Any]]:
    if hasattr(prior, "sample") and callable(prior.sample):
        bounds = getattr(prior, "bounds", None)
        desc = f"{type(prior).__module__}.{type(prior).__qualname__}"
        if bounds is not None:
            bounds = np.asarray(bounds, dtype=np.float64)
        return None, {
            "prior": desc,
            "parameter_bounds": None if bounds is None else bounds.tolist(),
        }
    bounds = check_finite(np.asarray(prior, dtype=np.float64), "prior")
    if bounds.ndim != 2 or bounds.shape[1] != 2 or bounds.shape[0] < 1:
        raise ShapeError(
            f"prior: expected (d, 2) box bounds or an object with sample(num, seed), "
            f"got shape {bounds.shape}"
        )
    if np.any(bounds[:, 1] <= bounds[:, 0]):
        raise ConfigError("prior: every upper bound must exceed its lower bound")
    return bounds, {"prior": "uniform box", "parameter_bounds": bounds.tolist()}


def _check_store_options(overwrite: Any, wait: Any, timeout: Any, retries: Any) -> None:
    for flag, value in (("overwrite", overwrite), ("wait", wait)):
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{flag}: expected a bool, got {value!r}")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float, np.integer, np.floating))
        or not timeout > 0
        or not math.isfinite(timeout)
    ):
        raise ConfigError(
            f"timeout: expected None or a positive number of seconds, got {timeout!r}"
        )
    if not isinstance(retries, (int, np.integer)) or isinstance(retries, bool) or retries < 0:
        raise ConfigError(f"retries: expected a non-negative int, got {retries!r}")


def _campaign_config(
    prior: Any,
    num_simulations: int,
    chunk_size: int,
    seed: int,
    parameter_names: Sequence[str] | None,
    modalities: Mapping[str, str] | None,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Checked campaign arguments: the prior's bounds and the config the store records."""
    num = check_positive_int(num_simulations, "num_simulations")
    chunk = check_positive_int(chunk_size, "chunk_size")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative int, got {seed!r}")
    seed = int(seed)
    bounds, prior_cfg = _prior_config(prior, None)
    n_chunks = math.ceil(num / chunk)
    first = _chunk_parameters(prior, bounds, seed, 0, min(chunk, num))
    if first.ndim != 2 or first.shape[0] != min(chunk, num):
        raise ShapeError(f"prior.sample: expected shape ({min(chunk, num)}, d), got {first.shape}")
    d = first.shape[1]
    if prior_cfg["parameter_bounds"] is not None and len(prior_cfg["parameter_bounds"]) != d:
        raise ShapeError(f"prior.bounds: expected shape ({d}, 2)")
    names = resolve_parameter_names(parameter_names, d)
    mods = {str(k): str(v) for k, v in (modalities or {}).items()}
    for name, mod in mods.items():
        if mod not in MODALITIES:
            raise ConfigError(
                f"modalities[{name!r}]: expected one of {list(MODALITIES)}, got {mod!r}"
            )
    config = {
        **prior_cfg,
        "parameter_names": names,
        "num_simulations": num,
        "chunk_size": chunk,
        "n_chunks": n_chunks,
        "seed": seed,
        "modalities": mods,
    }
    return bounds, config


def simulate(
    simulator: Callable[[np.ndarray], Mapping[str, Any]],
    prior: Any,
    num_simulations: int,
    store: str | os.PathLike[str],
    *,
    executor: Executor | None = None,
    chunk_size: int = 1000,
    seed: int = 0,
    parameter_names: Sequence[str] | None = None,
    modalities: Mapping[str, str] | None = None,
    overwrite: bool = False,
    wait: bool = False,
    timeout: float | None = None,
    retries: int = 0,
) -> str:
    """Run a simulation campaign into an on-disk store (resumable, any executor).

    Args:
        simulator: a picklable function ``theta (n, d) -> {block name: (n, k) array}``
            (plain NumPy; it runs in the executor's workers). A row for which it
            raises, or returns non-finite values, is recorded as failed (with its
            parameters and the exception text) and excluded from training.
        prior: ``(d, 2)`` box bounds (uniform prior), or an object with
            ``sample(num, seed) -> (num, d)``; an optional ``bounds`` attribute
            ``(d, 2)`` of such an object is stored as the parameter bounds.
        num_simulations: total number of simulations.
        store: directory of the Zarr v3 store; created when missing or empty,
            resumed (only missing chunks run) when it holds a campaign with the same
            arguments. Anything else is refused: a campaign never deletes or
            overwrites what it did not create.
        executor: any `concurrent.futures.Executor` (a Dask client's
            ``get_executor()``, Ray's or MPI's executors...). Default: a
            ``ProcessPoolExecutor`` with one worker per CPU, started with "spawn".
        chunk_size: simulations per chunk (the unit of work, of writing and of resuming).
        seed: campaign seed; chunk ``i`` uses a generator seeded by ``(seed, i)``.
        parameter_names: defaults to ``theta[0]`` ... ``theta[d-1]``.
        modalities: ``{block name: modality}`` recorded for the dataset.
        overwrite: replace an orrery campaign store made with other arguments (only
            such a store is removed; any other non-empty folder is refused).
        wait: when another campaign is writing the store, wait for it to finish
            (then resume or check its work) instead of raising at once.
        timeout: seconds a chunk's simulations may take (``None``: no limit). A chunk
            that runs past it is abandoned (its thread cannot be stopped and keeps
            its worker busy until the call returns) and run again up to ``retries``
            times; then its rows are recorded as failed ("TimeoutError: ..."), and
            the store's ``n_timeouts`` and a warning count the timed-out attempts.
        retries: extra attempts for a chunk that times out.

    Returns:
        The store's path, for ``SimulationDataset.from_store``.

    Raises:
        ConfigError: bad arguments; a target that is neither empty nor an orrery
            campaign store; a store made with other arguments (without
            ``overwrite=True``); a store another campaign is writing (without ``wait``);
            a simulator output that is complex or has zero columns.
        ArtifactError: a finished chunk that fails its checks (edited or damaged).
        ShapeError: the prior or the simulator returns arrays of the wrong shape.
        MissingDependencyError: zarr is not installed (``pip install 'sbi-flows[store]'``).

    Example:
        >>> import tempfile, concurrent.futures as cf
        >>> from orrery.sbi import SimulationDataset
        >>> def sim(theta):
        ...     return {"auxiliary": 2.0 * theta}
        >>> path = simulate(sim, [[0.0, 1.0]], 10, tempfile.mkdtemp() + "/s", chunk_size=4,
        ...                 executor=cf.ThreadPoolExecutor(1))
        >>> SimulationDataset.from_store(path, validation_fraction=0.2).n_train
        8
    """
    if not callable(simulator):
        raise ConfigError(f"simulator: expected a callable, got {type(simulator).__name__}")
    _check_store_options(overwrite, wait, timeout, retries)
    bounds, config = _campaign_config(
        prior, num_simulations, chunk_size, seed, parameter_names, modalities
    )
    n_chunks = config["n_chunks"]
    path = Path(store).expanduser().absolute()
    _store.refuse_foreign(path)  # before anything is written there
    path.mkdir(parents=True, exist_ok=True)
    with _store.locked(path, bool(wait)):
        _store.refuse_foreign(path)  # again, now that no campaign can change it
        if overwrite and _store.kind_of(path) == "orrery":
            _store.remove_store(path)
        _store.create_or_check(path, config)
        _store.clear_incomplete(path)  # ours: no other campaign holds the lock
        pending = sorted(set(range(n_chunks)) - _store.finished_chunks(path))
        if pending:
            limits = (None if timeout is None else float(timeout), int(retries))
            _run_pending(simulator, prior, bounds, path, pending, config, executor, limits)
        summary = _finalize(path, config)
    if summary["n_timeouts"]:
        warnings.warn(
            f"simulate: {summary['n_timeouts']} chunk attempt(s) ran past timeout={timeout} s; "
            f"{summary['n_failed']} simulation(s) are recorded as failed in {str(path)!r}",
            UserWarning,
            stacklevel=2,
        )
    return str(path)


def _run_pending(simulator, prior, bounds, path, pending, config, executor, limits) -> None:
    from tqdm.auto import tqdm

    num, chunk, n_chunks = config["num_simulations"], config["chunk_size"], config["n_chunks"]
    own = executor is None
    if own:
        import multiprocessing

        executor = ProcessPoolExecutor(
            max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")
        )
    bar = tqdm(total=n_chunks, initial=n_chunks - len(pending), desc="simulating", unit="chunk")
    futures: list[Future] = []
    try:
        for index in pending:
            start = index * chunk
            n = min(chunk, num - start)
            theta = _chunk_parameters(prior, bounds, config["seed"], index, n)
            if theta.shape != (n, len(config["parameter_names"])):
                raise ShapeError(f"prior.sample: expected shape ({n}, d), got {theta.shape}")
            futures.append(
                executor.submit(_run_chunk, simulator, str(path), index, start, theta, *limits)
            )
        t0, done, failed, late = time.perf_counter(), 0, 0, 0
        for fut in as_completed(futures):
            result = fut.result()
            done += result["n"]
            failed += result["n_failed"]
            late += result["timeouts"]
            rate = done / max(time.perf_counter() - t0, 1e-9)
            bar.update(1)
            extra = {"timeouts": late} if late else {}
            bar.set_postfix(sims_per_s=f"{rate:.3g}", failed=failed, **extra)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        bar.close()
        if own:
            executor.shutdown(wait=True, cancel_futures=True)


def _finalize(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Verify every chunk and that they agree on the schema; record summary and fingerprint.

    "complete" is recorded only when every chunk passed its checks (digest, layout,
    counts): a store marked complete holds every simulation of the campaign.
    """
    from ._store.read import check_campaign, fingerprint, verify_chunk

    check_campaign(path, config)
    missing = sorted(set(range(config["n_chunks"])) - _store.finished_chunks(path))
    if missing:
        raise ConfigError(f"store {str(path)!r}: chunks {missing[:10]} are missing")
    schema: dict[str, tuple[int, str]] | None = None
    infos = []
    for index in range(config["n_chunks"]):
        info = verify_chunk(path, index, config)
        infos.append(info)
        if not info.blocks:
            continue  # every row of this chunk failed
        if schema is None:
            schema = info.blocks
        elif info.blocks != schema:
            raise ShapeError(
                f"store {str(path)!r}: chunk {index} has blocks {info.blocks}, chunk 0.. had "
                f"{schema}"
            )
    if schema is None:
        raise ConfigError(f"store {str(path)!r}: every simulation failed")
    for name in config["modalities"]:
        if name not in schema:
            raise ConfigError(
                f"modalities: block {name!r} is not a simulator output block "
                f"(blocks: {sorted(schema)})"
            )
    digest = fingerprint(config, [info.digest for info in infos])
    found = _store.read_config(path)
    if found.get("complete") and found.get("fingerprint") != digest:
        raise ArtifactError(
            f"store {str(path)!r}: its chunks do not match the campaign fingerprint recorded "
            "when it finished (edited?); run the campaign into a new store"
        )
    summary = {
        "complete": True,
        "blocks": {k: {"size": v[0], "dtype": v[1]} for k, v in schema.items()},
        "n_failed": sum(info.n_failed for info in infos),
        "n_timeouts": sum(info.timeouts for info in infos),
        "fingerprint": digest,
    }
    _store.update_config(path, summary)
    return summary

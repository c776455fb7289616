"""Labelling a survey: `Cannon.infer_labels` over a `SpectraSource`, chunk by chunk, on an executor.

The driver writes the label catalogue's layout and the model (its test-step arrays, an
``orrery.interface`` artifact in ``<catalogue>/model``, no pickle), then hands out one
task per chunk of stars: a worker (a process of a pool, a Dask worker, or one of two
threads of this process when there is no executor, so that one chunk's reading and
writing overlap the other's test step) loads the model once per process from the
artifact, checks its digest, reads its rows (from the store itself when the source is a
`SpectraStore`, so only a path travels; otherwise the rows), runs
`_cannon_label.label_rows` and writes its chunk of the catalogue atomically. A chunk's
result depends only on its rows and the settings, so a catalogue resumed after
``kill -9`` equals an uninterrupted one bit for bit. A failed task is recorded in the
catalogue and run again up to ``retries`` times; a chunk that still fails makes the
call raise naming it, never a silent gap.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import jax
import numpy as np

from orrery.interface import (
    ArtifactError,
    ConfigError,
    OrreryError,
    ShapeError,
    check_positive_int,
    load_artifact,
    save_artifact,
)

from .._cannon import label as _label
from .._cannon import validate as _validate
from .._source import SpectraSource
from .chunkstore import ChunkStore, aligned_bytes
from .spectra import LABELS, LabelStore, SpectraStore

_MODEL_KIND = "orrery.lux.CannonTestStep"
_MODELS: dict[tuple[str, str], _label.ModelArrays] = {}
_MODELS_LOCK = threading.Lock()
#: chunks labelled at once in this process when no executor is given
_THREADS = 2
#: one chunk's device computation at a time in a process (its threads overlap the rest):
#: XLA's CPU runtime deadlocked with two test steps run at once from two threads (every
#: thread idle, each waiting for its result), and two would only share the same cores
COMPUTE_LOCK = threading.Lock()


def _model_payload(model: _label.ModelArrays) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {
        "coeffs": np.asarray(model.coeffs),
        "s2": np.asarray(model.s2),
        "usable": np.asarray(model.usable, bool),
        "offset": np.asarray(model.offset),
        "scale": np.asarray(model.scale),
    }
    config = {
        "label_size": int(model.label_size),
        "poly_degree": int(model.poly_degree),
        "include_bias": bool(model.include_bias),
    }
    return arrays, config


def _model_digest(arrays: dict[str, np.ndarray], config: dict[str, Any]) -> str:
    h = hashlib.sha256(repr(sorted(config.items())).encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _load_model(folder: Path, digest: str) -> _label.ModelArrays:
    """The model a catalogue was made with, loaded once per process and checked."""
    key = (str(folder), digest)
    with _MODELS_LOCK:
        hit = _MODELS.get(key)
    if hit is not None:
        return hit
    art = load_artifact(folder, kind=_MODEL_KIND)
    config = {
        "label_size": art.config_value("label_size", int),
        "poly_degree": art.config_value("poly_degree", int),
        "include_bias": art.config_value("include_bias", bool),
    }
    arrays = {
        name: art.array(name, kind="b" if name == "usable" else "f")
        for name in ("coeffs", "s2", "usable", "offset", "scale")
    }
    if _model_digest(arrays, config) != digest:
        raise ArtifactError(
            f"{folder}: the model is not the one the catalogue was made with (edited?)"
        )
    model = _label.ModelArrays(
        arrays["coeffs"],
        arrays["s2"],
        arrays["usable"],
        arrays["offset"],
        arrays["scale"],
        config["label_size"],
        config["poly_degree"],
        config["include_bias"],
    )
    with _MODELS_LOCK:
        _MODELS[key] = model
    return model


def _padded(arr: np.ndarray, rows: int, fill: float) -> np.ndarray:
    """``arr`` with ``fill`` rows below it up to ``rows``, in a buffer JAX shares (no copy)."""
    shape = (rows, *arr.shape[1:])
    out = aligned_bytes(arr.dtype.itemsize * int(np.prod(shape))).view(arr.dtype).reshape(shape)
    out[: len(arr)] = arr
    out[len(arr) :] = fill
    return out


def label_chunk(catalogue: str, index: int, rows: Any, x64: bool) -> dict[str, Any]:
    """Worker side: label chunk ``index`` and write it into the catalogue.

    ``rows``: ``("store", path, fingerprint)`` or ``("arrays", flux, ivar, ids)``.
    """
    t0 = time.perf_counter()
    if bool(jax.config.read("jax_enable_x64")) != x64:
        jax.config.update("jax_enable_x64", x64)
    out = ChunkStore.open(catalogue, kind=LABELS)
    attrs = out.meta["attrs"]
    model = _load_model(out.path / "model", attrs["model_digest"])
    start, stop = out.rows_of(index)
    if rows[0] == "store":
        source = SpectraStore(rows[1])
        if source.fingerprint != rows[2]:
            raise ArtifactError(f"{rows[1]}: the spectra store changed since labelling began")
        got = source.read(start, stop)
        flux, ivar, ids = got.flux, got.ivar, got.ids
    else:
        flux, ivar, ids = rows[1:]
    n = stop - start
    if len(flux) != n:
        raise ShapeError(f"chunk {index}: got {len(flux)} rows, expected {n}")
    flux, ivar = np.asarray(flux), np.asarray(ivar)
    if n < out.chunk_rows:  # the last chunk, padded with empty rows: one compiled shape
        flux = _padded(flux, out.chunk_rows, np.nan)
        ivar = _padded(ivar, out.chunk_rows, 0.0)
    with COMPUTE_LOCK:
        flux, ivar = _validate.checked_output(flux, ivar, int(np.asarray(model.coeffs).shape[0]))
        res = _label.Rows(
            *(a[:n] for a in _label.label_rows(model, flux, ivar, None, **attrs["settings"]))
        )
    diag = np.diagonal(res.covariance, axis1=-2, axis2=-1)
    columns = {
        "labels": res.labels,
        "covariance": res.covariance,
        "chi2": res.chi2,
        "converged": res.converged,
        "usable": np.all(np.isfinite(diag), axis=1) & np.all(np.isfinite(res.labels), axis=1),
        "n_pixels_used": res.n_used.astype(np.int32),
    }
    if "ids" in out.meta["arrays"]:
        columns["ids"] = np.asarray(ids)
    out.write_chunk(index, columns)
    return {
        "index": index,
        "n": stop - start,
        "n_unusable": int(np.sum(~columns["usable"])),
        "seconds": time.perf_counter() - t0,
    }


def _layout(cannon: Any, source: SpectraSource, settings: dict[str, Any], x64: bool):
    dtype = "<f8" if x64 else "<f4"
    size = cannon.label_size
    first = source.read(0, 1)
    arrays: dict[str, Any] = {
        "labels": {"dtype": dtype, "shape": [size]},
        "covariance": {"dtype": dtype, "shape": [size, size]},
        "chi2": {"dtype": dtype, "shape": []},
        "converged": {"dtype": "|b1", "shape": []},
        "usable": {"dtype": "|b1", "shape": []},
        "n_pixels_used": {"dtype": "<i4", "shape": []},
    }
    if first.ids is not None:
        ids = np.asarray(first.ids)
        arrays["ids"] = {"dtype": "<i8" if ids.dtype.kind in "iu" else "<U64", "shape": []}
    model_arrays, model_config = _model_payload(cannon._model_arrays())
    names = getattr(source, "label_names", None)
    attrs = {
        "settings": settings,
        "x64": x64,
        "model_digest": _model_digest(model_arrays, model_config),
        "source": getattr(source, "fingerprint", None),
        "n_pixels": int(source.n_pixels),
        "label_names": None if names is None or len(names) != size else list(names),
    }
    return arrays, attrs, (model_arrays, model_config)


def label_survey(
    cannon: Any,
    source: SpectraSource,
    output_ivar: Any,
    initial_labels: Any,
    settings: dict[str, Any],
    *,
    executor: Executor | None,
    catalogue: str | os.PathLike[str] | None,
    chunk_stars: int | None,
    retries: int,
    progress: bool,
) -> LabelStore:
    """`Cannon.infer_labels` for a `SpectraSource`; see its docstring."""
    if output_ivar is not None or initial_labels is not None:
        raise ConfigError(
            "output_ivar, initial_labels: a SpectraSource carries its own ivar and a survey "
            "starts from the linear-algebra guess; pass None"
        )
    if catalogue is None:
        raise ConfigError("catalogue: labelling a SpectraSource needs a path to write labels to")
    if source.n_pixels != cannon.output_size:
        raise ShapeError(
            f"output: the source has {source.n_pixels} pixels, the model {cannon.output_size}"
        )
    if source.n_stars < 1:
        raise ShapeError("output: the source holds no stars")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries: expected a non-negative int, got {retries!r}")
    default = getattr(source, "chunk_stars", 1024)  # a store's own chunks by default
    chunk = check_positive_int(default if chunk_stars is None else chunk_stars, "chunk_stars")
    x64 = bool(jax.config.read("jax_enable_x64"))
    arrays, attrs, model = _layout(cannon, source, settings, x64)
    root = Path(catalogue).expanduser().absolute()
    store = ChunkStore.create_or_resume(root, LABELS, source.n_stars, chunk, arrays, attrs)
    with store.locked():
        if not (root / "model" / "metadata.json").exists():
            save_artifact(root / "model", kind=_MODEL_KIND, config=model[1], arrays=model[0])
        pending = sorted(set(range(store.n_chunks)) - store.finished())
        unusable = _run(store, source, pending, executor, x64, retries, progress)
        store.finalize()
    if unusable:
        warnings.warn(
            f"Cannon.infer_labels: {unusable} spectra labelled in this call have too few "
            "usable pixels (or a singular Hessian) to pin their labels: usable=False, "
            "infinite uncertainties",
            UserWarning,
            stacklevel=3,
        )
    return LabelStore(root)


def _task(store: ChunkStore, source: SpectraSource, index: int) -> Any:
    if isinstance(source, SpectraStore):
        return ("store", str(source.path), source.fingerprint)
    got = source.read(*store.rows_of(index))
    return ("arrays", got.flux, got.ivar, got.ids)


def _run(
    store,
    source,
    pending,
    executor,
    x64,
    retries,
    progress,
    worker=None,
    what="Cannon.infer_labels",
) -> int:
    """Run the pending chunks (a bounded window in flight), retrying failures; unusable count."""
    from tqdm.auto import tqdm

    worker = label_chunk if worker is None else worker
    own = None
    if executor is None:  # this process: two chunks at a time, so that one's reading and
        # writing overlap the other's test step (JAX, hashing and file I/O release the GIL)
        own = executor = ThreadPoolExecutor(_THREADS, thread_name_prefix="orrery-survey")
    done_rows = store.n_rows - sum(b - a for a, b in map(store.rows_of, pending))
    bar = tqdm(total=store.n_rows, initial=done_rows, unit="star", desc=what, disable=not progress)
    attempts: dict[int, list[str]] = {}
    failed: list[int] = []
    queue = list(pending)
    window = 2 * (os.cpu_count() or 1)
    running: dict[Future, int] = {}
    unusable, labelled, t0 = 0, 0, time.perf_counter()

    def submit(index: int) -> Future:
        task = (str(store.path), index, _task(store, source, index), x64)
        return executor.submit(worker, *task)

    try:
        while queue or running:
            while queue and len(running) < window:
                index = queue.pop(0)
                running[submit(index)] = index
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                index = running.pop(fut)
                err = fut.exception()
                if err is None:
                    result = fut.result()
                    unusable += result["n_unusable"]
                    labelled += result["n"]
                    bar.update(result["n"])
                    rate = labelled / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(stars_per_s=f"{rate:.3g}", failed=len(failed))
                    continue
                attempts.setdefault(index, []).append(f"{type(err).__name__}: {err}")
                store.update(
                    failures={**store.meta.get("failures", {}), str(index): attempts[index]}
                )
                if len(attempts[index]) <= retries:
                    queue.append(index)
                else:
                    failed.append(index)
    except BaseException:
        for fut in running:
            fut.cancel()
        raise
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if failed:
        first = attempts[failed[0]][-1]
        raise OrreryError(
            f"{what}: chunk(s) {sorted(failed)[:10]} of {str(store.path)!r} failed "
            f"{retries + 1} time(s) (first: {first}); every other chunk is written, and "
            "running the same call again retries only these"
        )
    return unusable

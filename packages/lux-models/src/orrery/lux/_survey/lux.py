"""Lux for new objects over a survey: latents (with uncertainties) and predicted outputs.

With every output parameter of a trained `Lux` fixed, each object's latents minimise
its own ``χ² + |z|²`` (the unit-Normal latent prior; ``latents_prior=False`` drops the
prior term), where χ² compares one observed output (the source's flux, weighted by its
inverse variance) with the output's transform of the latents. Gauss–Newton with
Levenberg damping runs vmapped per object from ``z = 0`` (exact after one step for a
linear or affine output), so an object's answer does not depend on the others in its
chunk; the covariance is ``(JᵀWJ + I)⁻¹`` at the solution. Chunks run on any executor
exactly as `Cannon.infer_labels` over a survey (`_survey_label`): the model travels as
its own ``Lux.save`` artifact inside the catalogue, loaded once per worker process and
checked against the digest the catalogue recorded.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from orrery.interface import ArtifactError, ConfigError, ShapeError, check_positive_int

from .._source import SpectraSource
from .chunkstore import ChunkStore
from .label import COMPUTE_LOCK, _padded, _run
from .spectra import LATENTS, LatentStore

_MODELS: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
_LOCK = threading.Lock()


def _digest(model: Any, params: dict[str, Any]) -> str:
    flat = model.pack_numpyro_pars(model.output_pars(params), ignore_missing=True)
    h = hashlib.sha256(repr((model.latent_size, sorted(model.outputs))).encode())
    for name in sorted(flat):
        arr = np.ascontiguousarray(np.asarray(flat[name], np.float64))
        h.update(f"{name}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _load(folder: Path, digest: str) -> tuple[Any, dict[str, Any]]:
    key = (str(folder), digest)
    with _LOCK:
        hit = _MODELS.get(key)
    if hit is not None:
        return hit
    from ..lux import Lux

    model, params = Lux.load(folder)
    if params is None or _digest(model, params) != digest:
        raise ArtifactError(f"{folder}: not the model the catalogue was made with (edited?)")
    with _LOCK:
        _MODELS[key] = (model, params)
    return model, params


@partial(jax.jit, static_argnames=("predict", "prior", "max_iter", "size"))
def _solve(flux, ivar, pars, predict, prior: bool, max_iter: int, size: int):
    """Per object: latents, covariance, χ², converged, pixels used (vmapped Gauss–Newton)."""
    good = jnp.isfinite(flux) & jnp.isfinite(ivar) & (ivar > 0)
    w = jnp.where(good, ivar, 0.0)
    y = jnp.where(good, flux, 0.0)
    eye = jnp.eye(size, dtype=flux.dtype)
    ridge = eye if prior else 0.0 * eye

    def one(y, w):
        f = lambda z: predict(z, pars)
        cost = lambda z: jnp.sum(w * (y - f(z)) ** 2) + (z @ ridge @ z)

        def body(state):
            z, c, lam, it, _ = state
            j = jax.jacfwd(f)(z)
            r = y - f(z)
            hess = (j.T * w) @ j + ridge
            grad = (j.T * w) @ r - ridge @ z
            step = jnp.linalg.solve(hess + lam * jnp.diag(jnp.diag(hess)) + 1e-12 * eye, grad)
            c_new = cost(z + step)
            ok = jnp.isfinite(c_new) & (c_new <= c)
            small = (jnp.max(jnp.abs(step)) < 1e-8) | (c - c_new <= 1e-12 * jnp.maximum(c, 1.0))
            z = jnp.where(ok, z + step, z)
            return (
                z,
                jnp.where(ok, c_new, c),
                jnp.where(ok, lam * 0.1, lam * 10.0),
                it + 1,
                (ok & small) | (lam > 1e10),
            )

        z0 = jnp.zeros(size, flux.dtype)
        init = (z0, cost(z0), jnp.asarray(1e-6, flux.dtype), 0, jnp.asarray(False))
        z, _, _, _, done = jax.lax.while_loop(lambda s: (s[3] < max_iter) & ~s[4], body, init)
        j = jax.jacfwd(f)(z)
        hess = (j.T * w) @ j + ridge
        chi2 = jnp.sum(w * (y - f(z)) ** 2)
        return z, jnp.linalg.pinv(hess, hermitian=True), chi2, done, jnp.sum(w > 0)

    return jax.vmap(one)(y, w)


def latent_chunk(catalogue: str, index: int, rows: Any, x64: bool) -> dict[str, Any]:
    """Worker side: latents of chunk ``index``, written into the catalogue."""
    from .spectra import SpectraStore

    t0 = time.perf_counter()
    if bool(jax.config.read("jax_enable_x64")) != x64:
        jax.config.update("jax_enable_x64", x64)
    out = ChunkStore.open(catalogue, kind=LATENTS)
    attrs = out.meta["attrs"]
    model, params = _load(out.path / "model", attrs["model_digest"])
    start, stop = out.rows_of(index)
    if rows[0] == "store":
        got = SpectraStore(rows[1]).read(start, stop)
        flux, ivar, ids = got.flux, got.ivar, got.ids
    else:
        flux, ivar, ids = rows[1:]
    n, dtype = stop - start, jnp.result_type(float)
    flux, ivar = np.asarray(flux, dtype), np.asarray(ivar, dtype)
    if n < out.chunk_rows:  # one compiled shape per catalogue
        flux = _padded(flux, out.chunk_rows, np.nan)
        ivar = _padded(ivar, out.chunk_rows, 0.0)
    name = attrs["output"]
    with COMPUTE_LOCK:  # see `orrery.lux._survey.label.COMPUTE_LOCK`
        pars = model.output_pars(params)
        predict = _Predict(model, name)
        z, cov, chi2, done, used = (
            np.asarray(a)[:n]
            for a in _solve(
                flux, ivar, pars, predict, attrs["prior"], attrs["max_iter"], model.latent_size
            )
        )
        predicted = {
            other: np.asarray(model.predict_outputs(z, pars, [other])[other])
            for other in attrs["predict"]
        }
    # without the prior, fewer pixels than latents leave an object undetermined
    weak = (used == 0) if attrs["prior"] else (used < model.latent_size)
    if not attrs["prior"]:  # never a certain answer from no data (as `Cannon.infer_labels`)
        z, cov, chi2 = np.array(z), np.array(cov), np.array(chi2)
        z[used == 0] = np.nan
        chi2[used == 0] = np.nan
        cov[weak] = np.where(np.eye(model.latent_size, dtype=bool), np.inf, np.nan)
        predicted = {k: np.where((used == 0)[:, None], np.nan, v) for k, v in predicted.items()}
    columns: dict[str, np.ndarray] = {
        "latents": z,
        "covariance": cov,
        "chi2": chi2,
        "converged": done & ~weak,
        "usable": ~weak & np.all(np.isfinite(z), axis=1),
        "n_pixels_used": used.astype(np.int32),
    }
    for other, values in predicted.items():
        columns[f"predicted_{other}"] = values
    if "ids" in out.meta["arrays"]:
        columns["ids"] = np.asarray(ids)
    out.write_chunk(index, columns)
    return {
        "index": index,
        "n": n,
        "n_unusable": int(np.sum(~columns["usable"])),
        "seconds": time.perf_counter() - t0,
    }


class _Predict:
    """One object's prediction of one output (hashable: a static argument of `_solve`)."""

    def __init__(self, model: Any, name: str) -> None:
        self.model, self.name = model, name

    def __call__(self, z, pars):
        return self.model.predict_outputs(z[None], pars, [self.name])[self.name][0]

    def __hash__(self) -> int:
        return hash((id(self.model), self.name))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Predict) and other.model is self.model and other.name == self.name


def infer_latents(
    model: Any,
    params: dict[str, Any],
    source: SpectraSource,
    *,
    catalogue: str | os.PathLike[str],
    output: str = "flux",
    predict: tuple[str, ...] | list[str] = (),
    latents_prior: bool = True,
    max_iter: int = 50,
    executor: Executor | None = None,
    chunk_stars: int | None = None,
    retries: int = 1,
    progress: bool = True,
) -> LatentStore:
    """Latents of new objects (output parameters fixed) and predicted outputs, over a survey.

    Args:
        model, params: a trained `Lux` and its parameters (``optimize`` /
            ``optimize_iterative``); only built-in transforms (what ``Lux.save``
            stores), as the model travels to the workers by its artifact.
        source: a `SpectraSource` (a `SpectraStore`, an ``ArraySource``) whose flux
            and ivar are the observed ``output``.
        catalogue: the path of the `LatentStore` written (resumed when an
            interrupted call with the same arguments left it).
        output: the name of the observed output (its ``output_size`` is the
            source's pixels).
        predict: outputs to predict from the inferred latents (e.g. ``["label"]``).
        latents_prior: the unit-Normal latent prior (``False``: none; then an
            object with fewer pixels than latents gets infinite variances, and
            one without any pixel NaN latents, χ² and predictions).
        max_iter: Gauss–Newton iterations per object.
        executor, chunk_stars, retries, progress: as `Cannon.infer_labels` over a survey.

    Returns:
        The finished `LatentStore`.

    Raises:
        ConfigError: an unknown output, an output with an ``err_transform``
            (not supported here yet), a model that cannot be saved, bad options.
        ShapeError: a source whose width is not the output's size.
    """
    if output not in model.outputs:
        raise ConfigError(f"output: {output!r} is no output of the model ({sorted(model.outputs)})")
    unknown = [p for p in predict if p not in model.outputs]
    if unknown:
        raise ConfigError(f"predict: {unknown} are no outputs of the model")
    transform, err_transform = model.outputs[output]
    if err_transform is not None:
        raise ConfigError(f"output: {output!r} has an err_transform, not supported over a survey")
    size = transform.output_size_for(model.latent_size)
    if source.n_pixels != size:
        raise ShapeError(f"source: {source.n_pixels} pixels, output {output!r} has {size}")
    if source.n_stars < 1:
        raise ShapeError("source: it holds no objects")
    chunk = check_positive_int(
        getattr(source, "chunk_stars", 1024) if chunk_stars is None else chunk_stars, "chunk_stars"
    )
    max_iter = check_positive_int(max_iter, "max_iter")
    x64 = bool(jax.config.read("jax_enable_x64"))
    arrays = _layout(model, source, list(predict), x64)
    attrs = {
        "output": output,
        "predict": list(predict),
        "prior": bool(latents_prior),
        "max_iter": max_iter,
        "x64": x64,
        "model_digest": _digest(model, params),
        "source": getattr(source, "fingerprint", None),
    }
    root = Path(catalogue).expanduser().absolute()
    store = ChunkStore.create_or_resume(root, LATENTS, source.n_stars, chunk, arrays, attrs)
    with store.locked():
        if not (root / "model" / "metadata.json").exists():
            model.save(root / "model", model.output_pars(params))
        pending = sorted(set(range(store.n_chunks)) - store.finished())
        unusable = _run(
            store, source, pending, executor, x64, retries, progress, latent_chunk, "infer_latents"
        )
        store.finalize()
    if unusable:
        warnings.warn(
            f"infer_latents: {unusable} objects have no usable pixel: usable=False",
            UserWarning,
            stacklevel=2,
        )
    return LatentStore(root)


def _layout(model: Any, source: SpectraSource, predict: list[str], x64: bool) -> dict[str, Any]:
    dtype, d = ("<f8" if x64 else "<f4"), model.latent_size
    arrays: dict[str, Any] = {
        "latents": {"dtype": dtype, "shape": [d]},
        "covariance": {"dtype": dtype, "shape": [d, d]},
        "chi2": {"dtype": dtype, "shape": []},
        "converged": {"dtype": "|b1", "shape": []},
        "usable": {"dtype": "|b1", "shape": []},
        "n_pixels_used": {"dtype": "<i4", "shape": []},
    }
    for name in predict:
        size = model.outputs[name][0].output_size_for(d)
        arrays[f"predicted_{name}"] = {"dtype": dtype, "shape": [size]}
    first = source.read(0, 1)
    if first.ids is not None:
        kind = np.asarray(first.ids).dtype.kind
        arrays["ids"] = {"dtype": "<i8" if kind in "iu" else "<U64", "shape": []}
    return arrays

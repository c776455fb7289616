"""Save and load a Lux model: transforms by configuration, parameters as arrays."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from orrery.interface import ArtifactError, ConfigError, load_artifact, save_artifact

from . import _transform_base as B
from . import transforms as T
from ._precision import warn_if_narrowed
from ._version import __version__

_KIND = "orrery.lux.Lux"
_BUILTIN = {
    "LinearTransform": (T.LinearTransform, B.linear_transform),
    "AffineTransform": (T.AffineTransform, B.affine_transform),
    "QuadraticTransform": (T.QuadraticTransform, B.quadratic_transform),
    "OffsetTransform": (T.OffsetTransform, B.offset_transform),
    "ScatterTransform": (T.ScatterTransform, B.scatter_transform),
    "NoOpTransform": (T.NoOpTransform, B.noop_transform),
}


def _prior_config(prior: dist.Distribution) -> dict[str, Any]:
    name = type(prior).__name__
    if getattr(dist, name, None) is not type(prior):
        raise ArtifactError(f"cannot save the prior {name}: only numpyro.distributions classes")
    params = {}
    for k in prior.arg_constraints:
        if k in getattr(prior, "reparametrized_params", []) or hasattr(prior, k):
            val = np.asarray(getattr(prior, k))
            params[k] = val.tolist()
    return {"dist": name, "params": params}


# Loading resolves distribution names only from this allow-list, fixed in code:
# the Distribution classes numpyro.distributions exports. Nothing named by the
# file is looked up anywhere else.
_ALLOWED_DISTS = frozenset(
    name
    for name in getattr(dist, "__all__", ())
    if isinstance(getattr(dist, name, None), type)
    and issubclass(getattr(dist, name), dist.Distribution)
)


def _prior_from_config(cfg: Any) -> dist.Distribution:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("dist"), str):
        raise ArtifactError(f"metadata.json: a prior entry is malformed: {cfg!r:.80}")
    name = cfg["dist"]
    if name not in _ALLOWED_DISTS:
        raise ArtifactError(f"metadata.json: unknown distribution {name!r} in the artifact")
    params = cfg.get("params")
    if not isinstance(params, dict):
        raise ArtifactError(f"metadata.json: prior {name!r} has no parameter dict")
    try:
        values = {
            str(k): v if np.ndim(v) == 0 else np.asarray(v, dtype=float) for k, v in params.items()
        }
        return getattr(dist, name)(**values)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"metadata.json: prior {name!r} cannot be rebuilt ({err})") from err


def transform_config(t: T.AbstractTransform) -> dict[str, Any]:
    """A JSON-safe description of a transform (raises for user functions)."""
    name = type(t).__name__
    if isinstance(t, T.ConcatenateTransform):
        return {
            "type": name,
            "transforms": [transform_config(s) for s in t.transforms],
            "input_sizes": list(t.input_sizes),
        }
    if isinstance(t, T.TransformSequence):
        return {"type": name, "transforms": [transform_config(s) for s in t.transforms]}
    if isinstance(t, T.PolyFeatureTransform):
        return {
            "type": name,
            "output_size": t.output_size,
            "degree": t.degree,
            "include_bias": t.include_bias,
        }
    if isinstance(t, T.AdditiveOffsetTransform):
        return {
            "type": name,
            "base": transform_config(t.base_transform),
            "offset_prior": _prior_config(t.offset_prior),
        }
    if (
        name in _BUILTIN
        and isinstance(t, T.AbstractSingleTransform)
        and t.transform is _BUILTIN[name][1]
    ):
        shapes = {
            k: ({"spec": list(v.dims)} if isinstance(v, T.ShapeSpec) else {"tuple": list(v)})
            for k, v in t.shapes.items()
        }
        return {
            "type": name,
            "output_size": t.output_size,
            "vmap": t.vmap,
            "priors": {k: _prior_config(v) for k, v in t.priors.items()},
            "shapes": shapes,
        }
    raise ArtifactError(
        f"cannot save a {name} that wraps a user function or network; only built-in "
        "transforms are stored by configuration"
    )


def transform_from_config(cfg: dict[str, Any]) -> T.AbstractTransform:
    kind = cfg.get("type")
    if kind == "TransformSequence":
        return T.TransformSequence(tuple(transform_from_config(c) for c in cfg["transforms"]))
    if kind == "ConcatenateTransform":
        if not isinstance(cfg.get("input_sizes"), list):
            raise ArtifactError("metadata.json: a ConcatenateTransform without input_sizes")
        children = tuple(transform_from_config(c) for c in cfg["transforms"])
        try:
            return T.ConcatenateTransform(children, tuple(cfg["input_sizes"]))
        except ConfigError as err:
            raise ArtifactError(f"metadata.json: ConcatenateTransform ({err})") from err
    if kind == "PolyFeatureTransform":
        return T.PolyFeatureTransform(cfg["output_size"], cfg["degree"], cfg["include_bias"])
    if kind == "AdditiveOffsetTransform":
        return T.AdditiveOffsetTransform(
            transform_from_config(cfg["base"]), _prior_from_config(cfg["offset_prior"])
        )
    if kind in _BUILTIN:
        shapes = {
            k: T.ShapeSpec(tuple(v["spec"])) if "spec" in v else tuple(v["tuple"])
            for k, v in cfg["shapes"].items()
        }
        priors = {k: _prior_from_config(v) for k, v in cfg["priors"].items()}
        return _BUILTIN[kind][0](cfg["output_size"], priors=priors, shapes=shapes, vmap=cfg["vmap"])
    raise ArtifactError(f"unknown transform type {kind!r} in the artifact")


def save_lux(model, path, params, metadata):
    outputs = [
        {
            "name": name,
            "data": transform_config(dt),
            "err": None if et is None else transform_config(et),
        }
        for name, (dt, et) in model.outputs.items()
    ]
    arrays: dict[str, np.ndarray] = {}
    recorded: dict[str, Any] = {}
    if params is not None:
        flat = model.pack_numpyro_pars(params, ignore_missing=True)
        missing = [k for k in _required_names(model) if k not in flat]
        if missing:
            raise ConfigError(
                f"params: missing {missing}; save the complete parameters (an artifact without "
                "them could not be loaded back)"
            )
        for k, v in flat.items():
            arr = np.asarray(jnp.asarray(v))  # the dtype JAX computes with (float64 only under x64)
            arrays[f"p:{k}"] = arr
            recorded[k] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    return save_artifact(
        path,
        kind=_KIND,
        config={
            "latent_size": model.latent_size,
            "outputs": outputs,
            "has_params": params is not None,
            "params": recorded,
        },
        arrays=arrays,
        metadata=metadata,
        producer={"distribution": "lux-models", "version": __version__},
    )


def _required_names(model) -> list[str]:
    """Every parameter a saved model must carry (the latents are optional)."""
    return [k for k in model.names_flat if k != "latents"]


def _expected_shapes(model, n: int | None) -> dict[str, tuple[int, ...]]:
    """Parameter shapes the model implies (those that need an unknown `n` are left out)."""
    out = {}
    for name, (dt, et) in model.outputs.items():
        for prefix, t, size in ((f"{name}:", dt, model.latent_size), (f"{name}:err:", et, None)):
            if t is None:
                continue
            if size is None:
                size = dt.output_size_for(model.latent_size)
            try:
                priors = t.get_expanded_priors(size, n)
            except ConfigError:
                continue
            for p, prior in priors.items():
                out[prefix + p] = tuple(prior.batch_shape) + tuple(prior.event_shape)
    if n is not None:
        out["latents"] = (n, model.latent_size)
    return out


def load_lux(cls, path):
    art = load_artifact(path, kind=_KIND)
    latent_size = art.config_value("latent_size", int)
    outputs = art.config_value("outputs", list)
    has_params = art.config_value("has_params", bool)
    try:
        model = cls(latent_size)
    except ConfigError as err:
        raise ArtifactError(f"metadata.json: config key 'latent_size': {err}") from err
    for i, out in enumerate(outputs):
        where = f"metadata.json: config key 'outputs[{i}]'"
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise ArtifactError(f"{where}: expected a dict with a 'name'")
        try:
            err = out["err"]
            model.register_output(
                out["name"],
                transform_from_config(out["data"]),
                None if err is None else transform_from_config(err),
            )
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"{where}: the output cannot be rebuilt ({exc!r})") from exc
    if not has_params:
        return model, None
    recorded = art.config_value("params", dict, default=None)
    if recorded is None:  # written before the parameter table existed
        recorded = {
            k[2:]: {"shape": list(np.shape(v))} for k, v in art.arrays.items() if k.startswith("p:")
        }
    unknown = [k for k in recorded if k not in model.names_flat]
    missing = [k for k in _required_names(model) if k not in recorded]
    if missing or unknown:
        raise ArtifactError(
            f"{art._label('arrays.npz')}: the saved parameters do not match the model "
            f"(missing: {missing}; unknown: {unknown}); refusing to load a broken model"
        )
    arrays = {}
    for k, info in recorded.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ArtifactError(f"metadata.json: config key 'params.{k}.shape' is malformed")
        arrays[k] = art.array(f"p:{k}", kind="f", shape=tuple(shape))
    n = arrays["latents"].shape[0] if "latents" in arrays else None
    for k, shape in _expected_shapes(model, n).items():
        if k in arrays and arrays[k].shape != shape:
            raise ArtifactError(
                f"{art._label('arrays.npz')}: array 'p:{k}' has shape {arrays[k].shape}, the "
                f"model needs {shape}"
            )
    warn_if_narrowed(
        [f"p:{k}" for k, v in arrays.items() if v.dtype == np.float64], art._label("arrays.npz")
    )
    flat = {k: jnp.asarray(v) for k, v in arrays.items()}
    return model, model.unpack_numpyro_pars(flat, ignore_missing="latents" not in flat)

"""Save and load a Lux model: transforms by configuration, parameters as arrays."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from orrery.interface import ArtifactError, load_artifact, save_artifact

from . import transforms as T

_KIND = "orrery.lux.Lux"
_BUILTIN = {
    "LinearTransform": (T.LinearTransform, T._linear_transform),
    "AffineTransform": (T.AffineTransform, T._affine_transform),
    "QuadraticTransform": (T.QuadraticTransform, T._quadratic_transform),
    "OffsetTransform": (T.OffsetTransform, T._offset_transform),
    "NoOpTransform": (T.NoOpTransform, T._noop_transform),
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


def _prior_from_config(cfg: dict[str, Any]) -> dist.Distribution:
    cls = getattr(dist, cfg["dist"], None)
    if cls is None:
        raise ArtifactError(f"unknown distribution {cfg['dist']!r} in the artifact")
    return cls(**{k: v if np.ndim(v) == 0 else np.asarray(v) for k, v in cfg["params"].items()})


def transform_config(t: T.AbstractTransform) -> dict[str, Any]:
    """A JSON-safe description of a transform (raises for user functions)."""
    name = type(t).__name__
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
    if name in _BUILTIN and t.transform is _BUILTIN[name][1]:
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
    from . import __version__

    outputs = [
        {
            "name": name,
            "data": transform_config(dt),
            "err": None if et is None else transform_config(et),
        }
        for name, (dt, et) in model.outputs.items()
    ]
    arrays = {}
    if params is not None:
        flat = model.pack_numpyro_pars(params, ignore_missing=True)
        arrays = {f"p:{k}": np.asarray(v) for k, v in flat.items()}
    return save_artifact(
        path,
        kind=_KIND,
        config={
            "latent_size": model.latent_size,
            "outputs": outputs,
            "has_params": params is not None,
        },
        arrays=arrays,
        metadata=metadata,
        producer={"distribution": "lux-models", "version": __version__},
    )


def load_lux(cls, path):
    art = load_artifact(path, kind=_KIND)
    try:
        model = cls(int(art.config["latent_size"]))
        for out in art.config["outputs"]:
            err = out["err"]
            model.register_output(
                out["name"],
                transform_from_config(out["data"]),
                None if err is None else transform_from_config(err),
            )
    except (KeyError, TypeError) as err:
        raise ArtifactError(f"path: the Lux artifact is incomplete ({err})") from err
    params = None
    if art.config.get("has_params"):
        flat = {k[2:]: jnp.asarray(v) for k, v in art.arrays.items() if k.startswith("p:")}
        params = model.unpack_numpyro_pars(flat, ignore_missing=True)
    return model, params

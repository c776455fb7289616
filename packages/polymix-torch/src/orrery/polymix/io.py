"""Save and load a :class:`StochasticModel` as an `orrery.interface` artifact.

The architecture is written as JSON configuration (class names and
constructor arguments of the surrogate, the groups and their priors) and every
tensor of the ``state_dict`` as a NumPy array; nothing is pickled. Only the
classes of this package can be saved.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from orrery.interface import ArtifactError, ConfigError, load_artifact, save_artifact

from . import parameter_groups as pg
from . import priors as pr
from . import surrogate_models as sm
from .stochastic_model import StochasticModel

__all__ = ["ARTIFACT_KIND", "load", "save"]

ARTIFACT_KIND = "orrery.polymix.StochasticModel"

_SURROGATES = {
    c.__name__: c
    for c in (sm.NeuralNetwork, sm.PolynomialChaosExpansion, sm.GatingNetwork, sm.MixtureOfExperts)
}
_GROUPS = {
    c.__name__: c
    for c in (
        pg.DeterministicGroup,
        pg.IIDGaussianGroup,
        pg.GaussianGroup,
        pg.LowRankGaussianGroup,
        pg.LangevinGroup,
    )
}
_PRIORS = {c.__name__: c for c in (pr.IIDGaussianPrior, pr.GaussianPrior, pr.LaplacePrior)}


def _exact(obj: Any, registry: Mapping[str, type], what: str) -> str:
    name = type(obj).__name__
    if registry.get(name) is not type(obj):
        raise ConfigError(
            f"save: {what} of type {type(obj).__qualname__} is not one of orrery.polymix's "
            f"classes ({', '.join(registry)}) and cannot be saved"
        )
    return name


def _surrogate_config(s: sm.SurrogateModel) -> dict:
    name = _exact(s, _SURROGATES, "surrogate")
    if isinstance(s, sm.MixtureOfExperts):
        return {
            "class": name,
            "experts": [_surrogate_config(cast(sm.SurrogateModel, e)) for e in s.experts],
            "gating": _surrogate_config(cast(sm.SurrogateModel, s.gating)),
        }
    return {"class": name, "args": s._config()}


def _build_surrogate(cfg: Mapping[str, Any]) -> sm.SurrogateModel:
    cls = _SURROGATES[cfg["class"]]
    if cls is sm.MixtureOfExperts:
        return sm.MixtureOfExperts(
            [_build_surrogate(e) for e in cfg["experts"]],
            cast(sm.GatingNetwork, _build_surrogate(cfg["gating"])),
        )
    return cls._from_config(cfg["args"])  # type: ignore[attr-defined]


def _prior_config(p: pr.Prior) -> dict:
    return {"class": _exact(p, _PRIORS, "prior"), "shapes": p._shapes()}


def _build_prior(cfg: Mapping[str, Any]) -> pr.Prior:
    # Placeholders of the right shapes; the state dict then restores the values.
    shapes = {k: tuple(v) for k, v in cfg["shapes"].items()}
    cls = _PRIORS[cfg["class"]]
    if cls is pr.GaussianPrior:
        return pr.GaussianPrior(
            torch.zeros(shapes["mean"]), scale_tril=torch.eye(shapes["mean"][0])
        )
    if cls is pr.IIDGaussianPrior:
        return pr.IIDGaussianPrior(torch.zeros(shapes["mean"]), torch.ones(shapes["std"]))
    return pr.LaplacePrior(torch.zeros(shapes["loc"]), torch.ones(shapes["scale"]))


def _group_config(g: pg.ParameterGroup) -> dict:
    cfg = {"class": _exact(g, _GROUPS, "parameter group"), "args": g._config()}
    cfg["prior"] = _prior_config(g.prior)
    if isinstance(g, pg.LangevinGroup):
        cfg["score_model"] = _surrogate_config(g.score_model)
    return cfg


def _build_group(cfg: Mapping[str, Any]) -> pg.ParameterGroup:
    cls = _GROUPS[cfg["class"]]
    kwargs = dict(cfg["args"])
    kwargs["prior"] = _build_prior(cfg["prior"])
    if cls is pg.LangevinGroup:
        kwargs["score_model"] = _build_surrogate(cfg["score_model"])
    return cls(**kwargs)


def save(
    model: StochasticModel, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` to the artifact directory ``path`` (atomically).

    Args:
        model: a :class:`StochasticModel` built from this package's classes.
        path: the artifact directory (replaced if it exists).
        metadata: optional JSON-safe user metadata.

    Returns:
        The artifact path.

    Raises:
        ConfigError: when a component is not one of this package's classes or
            its activation cannot be described by name.
    """
    from . import __version__

    if not isinstance(model, StochasticModel):
        raise ConfigError(f"model: expected a StochasticModel, got {type(model).__name__}")
    config = {
        "surrogate": _surrogate_config(model.surrogate),
        "groups": [_group_config(g) for g in model.groups],
    }
    arrays = {k: v.detach().to("cpu").numpy() for k, v in model.state_dict().items()}
    return save_artifact(
        path,
        kind=ARTIFACT_KIND,
        config=config,
        arrays=arrays,
        metadata=metadata,
        producer={"distribution": "polymix-torch", "version": __version__},
    )


def load(path: str | os.PathLike[str], device: torch.device | str | None = None) -> StochasticModel:
    """Rebuild a model written by :func:`save`.

    Args:
        path: the artifact directory.
        device: where to put the model (default CPU); dtypes are as saved.

    Returns:
        The :class:`StochasticModel`, with exactly the saved tensors.

    Raises:
        ArtifactError: when the artifact is missing, of another kind, or its
            configuration or arrays do not describe a valid model.
    """
    art = load_artifact(path, kind=ARTIFACT_KIND)
    try:
        surrogate = _build_surrogate(art.config["surrogate"])
        groups = [_build_group(g) for g in art.config["groups"]]
        model = StochasticModel(surrogate, groups)
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"artifact {str(path)!r}: invalid model configuration ({err})") from err
    state = model.state_dict()
    missing = sorted(set(state) - set(art.arrays))
    extra = sorted(set(art.arrays) - set(state))
    if missing or extra:
        raise ArtifactError(
            f"artifact {str(path)!r}: arrays do not match the model (missing {missing}, "
            f"unexpected {extra})"
        )
    new_state = {}
    for key, ref in state.items():
        arr = np.asarray(art.arrays[key])
        if tuple(arr.shape) != tuple(ref.shape):
            raise ArtifactError(
                f"artifact {str(path)!r}: array {key!r} has shape {arr.shape}, expected "
                f"{tuple(ref.shape)}"
            )
        new_state[key] = torch.from_numpy(arr.copy())
    # Parameters take the saved dtype (e.g. float64) before the values are copied in.
    for key, value in new_state.items():
        owner, _, attr = key.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        current = getattr(module, attr)
        if current.dtype != value.dtype:
            if isinstance(current, torch.nn.Parameter):
                setattr(module, attr, torch.nn.Parameter(current.detach().to(value.dtype)))
            else:
                module.register_buffer(attr, current.to(value.dtype))
    model.load_state_dict(new_state, strict=True)
    if device is not None:
        model.to(device)
    return model

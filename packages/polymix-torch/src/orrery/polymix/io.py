"""Save and load a `StochasticModel` as an `orrery.interface` artifact.

The architecture is written as JSON configuration (class names and
constructor arguments of the surrogate, the groups and their priors) and every
tensor of the `state_dict`, plus the priors' hyper-parameters, as a NumPy
array; nothing is pickled and nothing named in a file is imported or looked up
by `getattr`: classes and activations come from fixed allow-lists.

Loading checks the whole configuration and every array (presence, dtype kind,
shape) against each other before it builds anything, so a file can neither
make torch allocate more than the arrays it holds nor load as a silently
different model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from orrery.interface import (
    Artifact,
    ArtifactError,
    ConfigError,
    OrreryError,
    load_artifact,
    save_artifact,
)

from . import parameter_groups as pg
from . import priors as pr
from . import surrogate_models as sm
from ._kl import KL_ESTIMATORS
from ._version import __version__
from .stochastic_model import StochasticModel

__all__ = ["ARTIFACT_KIND", "load", "save"]

ARTIFACT_KIND = "orrery.polymix.StochasticModel"

_SURROGATES: dict[str, type[sm.SurrogateModel]] = {
    c.__name__: c
    for c in (sm.NeuralNetwork, sm.PolynomialChaosExpansion, sm.GatingNetwork, sm.MixtureOfExperts)
}
_GROUPS: dict[str, type[pg.ParameterGroup]] = {
    c.__name__: c
    for c in (
        pg.DeterministicGroup,
        pg.IIDGaussianGroup,
        pg.GaussianGroup,
        pg.LowRankGaussianGroup,
        pg.LangevinGroup,
    )
}
_PRIORS: dict[str, type[pr.Prior]] = {
    c.__name__: c for c in (pr.IIDGaussianPrior, pr.GaussianPrior, pr.LaplacePrior)
}
_PRIOR_BUFFERS = {
    "IIDGaussianPrior": ("mean", "std"),
    "LaplacePrior": ("loc", "scale"),
    "GaussianPrior": ("mean", "scale_tril"),
}
_MAX_NESTING = 8


# ----------------------------------------------------------------------------- saving


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
        experts = [cast(sm.SurrogateModel, e) for e in s.experts]
        return {
            "class": name,
            "num_experts": len(experts),
            "experts": {str(k): _surrogate_config(e) for k, e in enumerate(experts)},
            "gating_network": _surrogate_config(s.gating_network),
        }
    return {"class": name, "args": s._config()}


def _group_config(g: pg.ParameterGroup) -> dict:
    cfg: dict[str, Any] = {"class": _exact(g, _GROUPS, "parameter group"), "args": g._config()}
    cfg["prior"] = {"class": _exact(g.prior, _PRIORS, "prior")}
    if isinstance(g, pg.LangevinGroup):
        cfg["mode"] = g.mode
        model = g.score_model if g.mode == "score" else g.energy_model
        cfg["model"] = _surrogate_config(cast(sm.SurrogateModel, model))
    return cfg


def save(
    model: StochasticModel, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write `model` to the artifact directory `path` (atomically).

    Args:
        model: a `StochasticModel` built from this package's classes.
        path: the artifact directory (replaced if it exists).
        metadata: optional JSON-safe user metadata.

    Returns:
        The artifact path.

    Raises:
        ConfigError: when a component is not one of this package's classes or
            its activation is not in `surrogate_models.ACTIVATIONS`.
    """
    if not isinstance(model, StochasticModel):
        raise ConfigError(f"model: expected a StochasticModel, got {type(model).__name__}")
    groups = model.groups
    config = {
        "surrogate": _surrogate_config(model.surrogate_model),
        "num_groups": len(groups),
        "groups": {str(k): _group_config(g) for k, g in enumerate(groups)},
    }
    tensors = dict(model.state_dict())
    for k, g in enumerate(groups):
        for name, buf in g.prior._hyperparameters().items():
            tensors[f"parameter_groups.{k}.prior.{name}"] = buf
    arrays = {k: v.detach().to("cpu").numpy() for k, v in tensors.items()}
    return save_artifact(
        path,
        kind=ARTIFACT_KIND,
        config=config,
        arrays=arrays,
        metadata=metadata,
        producer={"distribution": "polymix-torch", "version": __version__},
    )


# ----------------------------------------------------------------------------- loading


class _Plan:
    """Reads and checks an artifact's configuration and arrays; builds nothing.

    `arrays` collects every array the model needs (name -> checked array), so
    `load` can refuse extra or missing ones before any module is built.
    """

    def __init__(self, art: Artifact, path: str | os.PathLike[str]):
        self.art = art
        self.where = str(Path(path) / "metadata.json")
        self.arrays: dict[str, np.ndarray] = {}

    # config values -------------------------------------------------------------
    def fail(self, key: str, message: str) -> ArtifactError:
        return ArtifactError(f"{self.where}: config key {key!r} {message}")

    def int(self, key: str, minimum: int = 1) -> int:
        value = self.art.config_value(key, int)
        if value < minimum:
            raise self.fail(key, f"is {value}, expected an integer >= {minimum}")
        return value

    def float(self, key: str, *, allow_zero: bool) -> float:
        value = float(self.art.config_value(key, float))
        if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise self.fail(key, f"is {value!r}, expected a finite number {bound}")
        return value

    def choice(self, key: str, options: Mapping[str, Any] | tuple[str, ...]) -> str:
        value = self.art.config_value(key, str)
        if value not in options:
            raise self.fail(key, f"is {value!r}, expected one of {', '.join(map(repr, options))}")
        return value

    def array(self, name: str, shape: tuple[int | None, ...], kind: str = "f") -> np.ndarray:
        arr = self.art.array(name, kind=kind, shape=shape)
        if kind == "f" and not np.isfinite(arr).all():
            raise ArtifactError(f"{self.art.path}: array {name!r} holds non-finite values")
        self.arrays[name] = arr
        return arr

    # surrogates -----------------------------------------------------------------
    def surrogate(self, key: str, prefix: str, depth: int = 0) -> tuple[dict, int, int, int]:
        """Check a surrogate's config; return (build spec, num_inputs, num_outputs, num_params)."""
        if depth > _MAX_NESTING:
            raise self.fail(key, f"nests mixtures deeper than {_MAX_NESTING} levels")
        cls = self.choice(f"{key}.class", _SURROGATES)
        if cls == "MixtureOfExperts":
            n = self.int(f"{key}.num_experts")
            if n > len(self.art.config_value(f"{key}.experts", dict)):
                raise self.fail(f"{key}.experts", f"holds fewer than num_experts={n} entries")
            experts = [
                self.surrogate(f"{key}.experts.{k}", f"{prefix}experts.{k}.", depth + 1)
                for k in range(n)
            ]
            gate = self.surrogate(f"{key}.gating_network", f"{prefix}gating_network.", depth + 1)
            return (
                {"class": cls, "experts": [e[0] for e in experts], "gating_network": gate[0]},
                experts[0][1],
                experts[0][2],
                sum(e[3] for e in experts) + gate[3],
            )
        args = f"{key}.args"
        n_in = self.int(f"{args}.num_inputs")
        if cls == "PolynomialChaosExpansion":
            n_out = self.int(f"{args}.num_outputs")
            degree = self.int(f"{args}.degree", minimum=0)
            # the index set is in the file: its size bounds everything computed from it
            alpha = self.array(f"{prefix}multi_indices", (None, n_in), kind="iu")
            if not _comb_equals(n_in + degree, degree, alpha.shape[0]):
                raise ArtifactError(
                    f"{self.where}: {args} (num_inputs={n_in}, degree={degree}) needs "
                    f"C({n_in + degree}, {degree}) terms but array {prefix + 'multi_indices'!r} "
                    f"holds {alpha.shape[0]}"
                )
            spec = {"num_inputs": n_in, "num_outputs": n_out, "degree": degree}
            return {"class": cls, "args": spec}, n_in, n_out, alpha.shape[0] * n_out
        out_key = "num_experts" if cls == "GatingNetwork" else "num_outputs"
        n_out = self.int(f"{args}.{out_key}")
        width = self.int(f"{args}.width")
        depth_nn = self.int(f"{args}.depth", minimum=0)
        activation = self.choice(f"{args}.activation", sm.ACTIVATIONS)
        if depth_nn == 0:
            num = (n_in + 1) * n_out
        else:  # arithmetic only: a file's depth must not size a Python list
            num = (n_in + 1) * width + (depth_nn - 1) * (width + 1) * width + (width + 1) * n_out
        spec = {
            "num_inputs": n_in,
            out_key: n_out,
            "width": width,
            "depth": depth_nn,
            "activation": activation,
        }
        return {"class": cls, "args": spec}, n_in, n_out, num

    # groups and priors --------------------------------------------------------------
    def prior(self, key: str, prefix: str, p: int) -> dict[str, Any]:
        cls = self.choice(f"{key}.class", _PRIORS)
        out = {}
        for name in _PRIOR_BUFFERS[cls]:
            full = f"{prefix}prior.{name}"
            if cls == "GaussianPrior":
                out[name] = self.array(full, (p, p) if name == "scale_tril" else (p,))
            else:
                arr = self.art.array(full, kind="f")
                if arr.ndim > 1 or arr.size not in (1, p):
                    raise ArtifactError(
                        f"{self.art.path}: array {full!r} has shape {arr.shape}, expected () or "
                        f"(1,) or ({p},)"
                    )
                out[name] = self.array(full, arr.shape)
        return {"class": cls, "buffers": out}

    def group(self, k: int) -> tuple[dict, int]:
        key, prefix = f"groups.{k}", f"parameter_groups.{k}."
        args = f"{key}.args"
        cls = self.choice(f"{key}.class", _GROUPS)
        p = self.int(f"{args}.num_params")
        kwargs: dict[str, Any] = {
            "name": self.art.config_value(f"{args}.name", str),
            "num_params": p,
            "kl_num_mc_samples": self.int(f"{args}.kl_num_mc_samples"),
            "kl_estimator": self.choice(f"{args}.kl_estimator", KL_ESTIMATORS),
        }
        spec: dict[str, Any] = {"class": cls, "kwargs": kwargs}
        spec["prior"] = self.prior(f"{key}.prior", prefix, p)
        if cls == "DeterministicGroup":
            self.array(prefix + "params", (p,))
        elif cls == "IIDGaussianGroup":
            self.array(prefix + "mean", (p,))
            self.array(prefix + "log_std", (p,))
        elif cls == "GaussianGroup":
            kwargs["jitter"] = self.float(f"{args}.jitter", allow_zero=True)
            self.array(prefix + "mean", (p,))
            self.array(prefix + "raw_tril", (p * (p + 1) // 2,))
        elif cls == "LowRankGaussianGroup":
            rank = self.int(f"{args}.rank")
            if rank > p:
                raise self.fail(f"{args}.rank", f"is {rank}, expected at most num_params={p}")
            kwargs["rank"] = rank
            kwargs["jitter"] = self.float(f"{args}.jitter", allow_zero=True)
            self.array(prefix + "mean", (p,))
            self.array(prefix + "cov_factor", (p, rank))
            self.array(prefix + "raw_cov_diag", (p,))
        else:  # LangevinGroup
            for name in ("num_particles", "num_diffusion_steps"):
                kwargs[name] = self.int(f"{args}.{name}")
            for name in ("step_size", "init_std"):
                kwargs[name] = self.float(f"{args}.{name}", allow_zero=False)
            mode = self.choice(f"{key}.mode", ("score", "energy"))
            model, n_in, n_out, n_params = self.surrogate(f"{key}.model", f"{prefix}{mode}_model.")
            want_out = p if mode == "score" else 1
            if (n_in, n_out) != (p, want_out):
                raise self.fail(
                    f"{key}.model",
                    f"has num_inputs={n_in}, num_outputs={n_out}; a {mode} model of "
                    f"num_params={p} needs {p} and {want_out}",
                )
            spec["mode"], spec["model"] = mode, model
            self.array(prefix + "surrogate_params", (n_params,))
        return spec, p


def _comb_equals(n: int, k: int, target: int) -> bool:
    """`C(n, k) == target`, stopping as soon as the partial product exceeds `target`."""
    k = min(k, n - k)
    value = 1
    for i in range(1, k + 1):
        value = value * (n - k + i) // i  # exact: a binomial coefficient at every step
        if value > target:
            return False
    return value == target


def _build_surrogate(spec: Mapping[str, Any]) -> sm.SurrogateModel:
    cls = _SURROGATES[spec["class"]]
    if cls is sm.MixtureOfExperts:
        experts = [_build_surrogate(e) for e in spec["experts"]]
        return sm.MixtureOfExperts(experts, _build_surrogate(spec["gating_network"]))
    return cls._from_config(spec["args"])  # type: ignore[attr-defined]


def _build_prior(spec: Mapping[str, Any]) -> pr.Prior:
    cls = _PRIORS[spec["class"]]
    t = {k: torch.from_numpy(np.array(v)) for k, v in spec["buffers"].items()}
    if cls is pr.GaussianPrior:
        return pr.GaussianPrior(t["mean"], scale_tril=t["scale_tril"])
    if cls is pr.IIDGaussianPrior:
        return pr.IIDGaussianPrior(t["mean"], t["std"])
    return pr.LaplacePrior(t["loc"], t["scale"])


def _build_group(spec: Mapping[str, Any]) -> pg.ParameterGroup:
    cls = _GROUPS[spec["class"]]
    kwargs = dict(spec["kwargs"])
    kwargs["prior"] = _build_prior(spec["prior"])
    if cls is pg.LangevinGroup:
        kwargs[f"{spec['mode']}_model"] = _build_surrogate(spec["model"])
    return cls(**kwargs)


def load(path: str | os.PathLike[str], device: torch.device | str | None = None) -> StochasticModel:
    """Rebuild a model written by `save`.

    Every configuration entry and array the model needs is checked (present,
    of the right type, dtype kind and shape, sizes consistent with each
    other) before anything is built.

    Args:
        path: the artifact directory.
        device: where to put the model (default CPU); dtypes are as saved.

    Returns:
        The `StochasticModel`, with exactly the saved tensors.

    Raises:
        ArtifactError: naming the file and the entry when the artifact is
            missing, of another kind, or its configuration or arrays do not
            describe a valid model (also for non-finite parameter values).
        ConfigError: when `device` is not a torch device.
    """
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ConfigError(f"device: expected a torch device, got {device!r}") from err
    art = load_artifact(path, kind=ARTIFACT_KIND)
    plan = _Plan(art, path)
    surrogate, _, _, surrogate_params = plan.surrogate("surrogate", "surrogate_model.")
    n = plan.int("num_groups")
    if n > len(art.config_value("groups", dict)):
        raise plan.fail("groups", f"holds fewer than num_groups={n} entries")
    groups = [plan.group(k) for k in range(n)]
    total = sum(p for _, p in groups)
    if total != surrogate_params:
        raise ArtifactError(
            f"{plan.where}: the groups hold {total} parameters but the surrogate needs "
            f"{surrogate_params}"
        )
    extra = sorted(set(art.arrays) - set(plan.arrays))
    if extra:
        raise ArtifactError(f"{plan.where}: arrays.npz holds arrays no model part uses: {extra}")
    try:
        model = StochasticModel(_build_surrogate(surrogate), [_build_group(g) for g, _ in groups])
    except OrreryError as err:
        raise ArtifactError(
            f"{plan.where}: the configuration is not a valid model ({err})"
        ) from err
    state = {k: torch.from_numpy(np.array(v)) for k, v in plan.arrays.items() if ".prior." not in k}
    for key in [k for k in state if k.endswith("multi_indices")]:
        state[key] = state[key].long()  # checked against the expansion's own on loading
    if set(state) != set(model.state_dict()):  # the plan mirrors the classes; guard drift
        raise ArtifactError(f"{plan.where}: arrays do not match the model's state")
    # Parameters take the saved dtype (e.g. float64) before the values are copied in.
    for key, value in state.items():
        owner, _, attr = key.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        current = getattr(module, attr)
        if current.dtype != value.dtype:
            if isinstance(current, torch.nn.Parameter):
                setattr(module, attr, torch.nn.Parameter(current.detach().to(value.dtype)))
            else:
                module.register_buffer(attr, current.to(value.dtype))
    try:
        model.load_state_dict(state, strict=True)
    except OrreryError as err:
        raise ArtifactError(f"{plan.where}: {err}") from err
    if device is not None:
        model.to(device)
    return model

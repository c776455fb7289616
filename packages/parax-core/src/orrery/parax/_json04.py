"""Reading parax 0.4's `Parameter.to_json` descriptions of distributions and transforms.

parax 0.4 writes a distribution as ``{"class": name, "params": {...}}`` and a transform as
``{"class": name, "module": module, "params": {...}}`` (a `Chain` as
``{"class": "Chain", "transforms": [...]}``), arrays as nested lists. Class names are
looked up among the public classes of `distreqx.distributions`, `distreqx.bijectors` and
`orrery.parax.bijectors` only: the module a file names is never imported.
"""

from __future__ import annotations

from typing import Any

import distreqx.bijectors as _dx_bijectors
import distreqx.distributions as _dx_distributions
import jax.numpy as jnp
from distreqx.bijectors import AbstractBijector, Chain
from distreqx.distributions import AbstractDistribution

from orrery.interface import ArtifactError

from . import bijectors as _own_bijectors

__all__ = ["is_parax04_node", "rebuild_parax04"]


def is_parax04_node(node: Any) -> bool:
    """Whether `node` is in parax 0.4's layout (orrery's own nodes carry ``"__t"``)."""
    return isinstance(node, dict) and "__t" not in node and "class" in node


def _lookup(name: Any, base: type, namespaces: tuple[Any, ...], where: str) -> type:
    if isinstance(name, str) and not name.startswith("_"):
        for ns in namespaces:
            cls = getattr(ns, name, None)
            if isinstance(cls, type) and issubclass(cls, base):
                return cls
    raise ArtifactError(
        f"{where}: unknown class {name!r}; only the classes of distreqx and "
        "orrery.parax.bijectors are read from parax 0.4 JSON"
    )


def _value(v: Any, where: str) -> Any:
    if is_parax04_node(v):
        return rebuild_parax04(v, where)
    if isinstance(v, (list, int, float)) and not isinstance(v, bool):
        return jnp.asarray(v, dtype=float)
    return v


def rebuild_parax04(node: dict, where: str) -> AbstractDistribution | AbstractBijector:
    """The distribution or bijector a parax 0.4 JSON node describes.

    Raises:
        ArtifactError: an unknown class, a malformed node or arguments the class refuses.
    """
    name = node.get("class")
    if name == "Chain" and "transforms" in node:
        parts = node["transforms"]
        if not isinstance(parts, list):
            raise ArtifactError(f"{where}: 'transforms' must be a list")
        return Chain([rebuild_parax04(p, f"{where}.transforms") for p in parts])
    params = node.get("params", {})
    if not isinstance(params, dict):
        raise ArtifactError(f"{where}: 'params' must be a mapping")
    if "module" in node:  # parax 0.4 writes the module for transforms only
        cls = _lookup(name, AbstractBijector, (_dx_bijectors, _own_bijectors), where)
    else:
        cls = _lookup(name, AbstractDistribution, (_dx_distributions,), where)
    kwargs = {str(k): _value(v, f"{where}.{k}") for k, v in params.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"{where}: cannot rebuild {name}: {err}") from None

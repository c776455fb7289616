"""Checks of a saved flow posterior's metadata before anything is built from it.

Every entry the posterior needs is read with `Artifact.config_value` (missing or
mistyped entries are `ArtifactError`s naming ``metadata.json`` and the key), and
the entries are checked against each other: one name, bound, shift and scale per
parameter; preprocessing for every observation block with one mean and scale per
value (and, where recorded, one transform and its scale per value). Nothing is
imported or built here.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from orrery.interface import ArtifactError

from .._preprocess import TRANSFORMS
from ..observations import MODALITIES
from ..spaces import PARAMETER_SPACES

_NUM = (int, float)
#: Constructor arguments added after artifacts were first written: absent means the default.
_ADDED_LATER = ("observation_transform", "parameter_transform")


def _fail(artifact: Any, key: str, what: str) -> ArtifactError:
    where = artifact.path / "metadata.json" if artifact.path is not None else "metadata.json"
    return ArtifactError(f"{where}: config key {key!r} {what}")


def _numbers(artifact: Any, key: str, value: Any, length: int, *, positive: bool = False) -> None:
    if not isinstance(value, list) or len(value) != length:
        raise _fail(artifact, key, f"must be a list of {length} numbers, got {value!r:.80}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, _NUM) or not math.isfinite(v):
            raise _fail(artifact, key, f"must hold finite numbers, got {v!r}")
        if positive and not v > 0:
            raise _fail(artifact, key, f"must hold positive numbers, got {v!r}")


def _entry(artifact: Any, mapping: dict, base: str, key: str, types: Any) -> None:
    if key not in mapping:
        raise _fail(artifact, f"{base}.{key}", "is missing")
    value = mapping[key]
    if (isinstance(value, bool) and types is not bool) or not isinstance(value, types):
        raise _fail(artifact, f"{base}.{key}", f"has the wrong type ({value!r:.60})")


def _transform_entry(artifact: Any, entry: dict, base: str, size: int) -> None:
    """A block's per-feature transforms (absent in artifacts written before them: none)."""
    if "transform" not in entry and "transform_scale" not in entry:
        return
    _entry(artifact, entry, base, "transform", list)
    _entry(artifact, entry, base, "transform_scale", list)
    kinds = entry["transform"]
    if len(kinds) != size or any(k not in TRANSFORMS for k in kinds):
        raise _fail(
            artifact, f"{base}.transform", f"must be {size} of {TRANSFORMS}, got {kinds!r:.80}"
        )
    _numbers(artifact, f"{base}.transform_scale", entry["transform_scale"], size, positive=True)
    if "transform_centre" in entry:  # written only where 'auto' centred an asinh
        _numbers(artifact, f"{base}.transform_centre", entry["transform_centre"], size)


def check_posterior_metadata(cls: type, artifact: Any) -> dict[str, Any]:
    """The checked metadata of a saved `ConditionalFlowPosterior` (see the module docstring).

    Args:
        cls: the posterior class the artifact names.
        artifact: an `orrery.interface.Artifact`.

    Returns:
        The config dict, every needed entry present and consistent.

    Raises:
        ArtifactError: an entry is missing, mistyped or inconsistent.
    """
    get = artifact.config_value
    constructor = get("estimator_config.constructor", dict)
    known = inspect.signature(cls.__init__).parameters
    for name in known:
        if name not in ("self", "task_metadata", *_ADDED_LATER) and name not in constructor:
            raise _fail(artifact, f"estimator_config.constructor.{name}", "is missing")
    dim = get("estimator_config.constructor.parameter_dim", int)
    if dim < 1:
        raise _fail(artifact, "estimator_config.constructor.parameter_dim", f"is {dim}")
    get("task_metadata", (dict, None))
    names = get("parameter_names", list)
    if len(names) != dim or not all(isinstance(n, str) for n in names):
        raise _fail(artifact, "parameter_names", f"must be {dim} strings, got {names!r:.80}")
    kind = get("parameter_space.kind", str)
    if kind not in PARAMETER_SPACES:
        raise _fail(artifact, "parameter_space.kind", f"must be one of {PARAMETER_SPACES}")
    lower = get("parameter_space.lower", (list, None))
    upper = get("parameter_space.upper", (list, None))
    if (lower is None) != (upper is None) or (lower is None and kind != "physical"):
        raise _fail(artifact, "parameter_space", "needs both bounds (or none in physical space)")
    if lower is not None:
        _numbers(artifact, "parameter_space.lower", lower, dim)
        _numbers(artifact, "parameter_space.upper", upper, dim)
        if any(hi <= lo for lo, hi in zip(lower, upper, strict=True)):
            raise _fail(artifact, "parameter_space.upper", "must exceed the lower bounds")
    log_dims = get("parameter_space.log_dims", list, default=[])
    if log_dims and (
        len(log_dims) != dim or not all(isinstance(v, bool) for v in log_dims) or kind != "physical"
    ):
        raise _fail(
            artifact, "parameter_space.log_dims", f"must be {dim} booleans of a physical space"
        )
    _numbers(artifact, "flow_shift", get("flow_shift", list), dim)
    _numbers(artifact, "flow_scale", get("flow_scale", list), dim, positive=True)
    schema = get("observation_schema", dict)
    if not schema:
        raise _fail(artifact, "observation_schema", "names no observation block")
    for block, spec in schema.items():
        base = f"observation_schema[{block!r}]"
        if not isinstance(spec, dict):
            raise _fail(artifact, base, "must be a mapping")
        _entry(artifact, spec, base, "modality", str)
        _entry(artifact, spec, base, "size", int)
        _entry(artifact, spec, base, "has_uncertainties", bool)
        if spec["modality"] not in MODALITIES or spec["size"] < 1:
            raise _fail(artifact, base, f"has an unknown modality or a size < 1: {spec!r:.80}")
    prep = get("preprocessing_metadata", (dict, None))
    if prep is not None:
        for block, spec in schema.items():
            base = f"preprocessing_metadata[{block!r}]"
            entry = prep.get(block)
            if not isinstance(entry, dict):  # every block is normalised: never skipped
                raise _fail(artifact, base, "is missing (the block's normalisation)")
            _entry(artifact, entry, base, "value_mean", list)
            _entry(artifact, entry, base, "value_scale", list)
            _numbers(artifact, f"{base}.value_mean", entry["value_mean"], spec["size"])
            _numbers(
                artifact, f"{base}.value_scale", entry["value_scale"], spec["size"], positive=True
            )
            _transform_entry(artifact, entry, base, spec["size"])
        extra = sorted(set(prep) - set(schema))
        if extra:
            raise _fail(artifact, "preprocessing_metadata", f"names unknown blocks {extra}")
    get("dataset_manifest", (dict, None))
    get("dataset_fingerprint", (str, None))
    get("training_history", (dict, None))
    get("support_bounded", bool, default=False)
    return dict(artifact.config)

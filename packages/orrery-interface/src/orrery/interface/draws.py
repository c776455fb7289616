"""Named samples that every orrery package can produce and consume.

`Draws` holds ``{name: array[chain, draw, *shape]}`` as NumPy arrays.
"Chains" are MCMC chains or ensemble members; "draws" are samples within one.
It converts losslessly to and from a flat matrix with one column per scalar
element (``w[0]``, ``w[1,2]`` …), which is what a torch model or a plotting
routine usually wants.

Example:
    >>> import numpy as np
    >>> d = Draws({"mu": np.zeros((2, 100)), "w": np.ones((2, 100, 3))})
    >>> d.n_chains, d.n_draws, d.names
    (2, 100, ['mu', 'w'])
    >>> matrix, names = d.to_matrix()
    >>> matrix.shape, names
    ((200, 4), ['mu', 'w[0]', 'w[1]', 'w[2]'])
    >>> back = Draws.from_matrix(matrix, names, n_chains=2)
    >>> bool(np.array_equal(back["w"], d["w"]))
    True
"""

from __future__ import annotations

import contextlib
import operator
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ._convergence import ess, split_rhat
from ._summary import Summary
from ._version import __version__
from .artifacts import load_artifact, save_artifact
from .errors import ConfigError, ShapeError
from .validation import require

__all__ = ["Draws", "element_names", "parse_element_name"]

_INDEXED = re.compile(r"^(?P<base>.+)\[(?P<idx>\d+(?:,\d+)*)\]$")
_ARTIFACT_KIND = "orrery.interface.Draws"


def element_names(name: str, shape: tuple[int, ...]) -> list[str]:
    """Per-element names of a variable in C order: `w[0]`, `w[0,1]`; a scalar keeps its name.

    Raises:
        ConfigError: when `name` is not a non-empty str.
        ShapeError: when `shape` is not a tuple of non-negative ints.

    Example:
        >>> element_names("w", (2,))
        ['w[0]', 'w[1]']
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name: expected a non-empty str, got {name!r}")
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise ShapeError(f"shape: expected a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ShapeError(f"shape: expected non-negative sizes, got {shape}")
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def parse_element_name(label: str) -> tuple[str, tuple[int, ...]]:
    """Split `"w[1,2]"` into `("w", (1, 2))`; a plain name gives `(name, ())`.

    Raises:
        ConfigError: when `label` is not a str.

    Example:
        >>> parse_element_name("w[1,2]")
        ('w', (1, 2))
    """
    if not isinstance(label, str):
        raise ConfigError(f"label: expected a str, got {label!r}")
    match = _INDEXED.match(label)
    if match is None:
        return label, ()
    return match["base"], tuple(int(i) for i in match["idx"].split(","))


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"names: expected non-empty strings, got {name!r}")
    if _INDEXED.match(name):
        raise ConfigError(
            f"names: {name!r} ends in an index like '[0]', which is reserved for element names"
        )
    return name


def _check_quantiles(q: Any, name: str) -> np.ndarray:
    try:
        qs = np.asarray(q, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected quantiles in [0, 1], got {q!r}") from None
    if np.any((qs < 0) | (qs > 1)) or not np.all(np.isfinite(qs)):
        raise ConfigError(f"{name}: expected quantiles in [0, 1], got {q!r}")
    return qs


class Draws:
    """Named samples ``{name: array[chain, draw, *shape]}``.

    Args:
        samples: a mapping from variable name to an array whose first two axes
            are (chain, draw); every variable must share them.

    Raises:
        ShapeError: when an array has fewer than two axes, a zero-size axis, or
            chain/draw sizes that differ from the other variables'.
    """

    __slots__ = ("_data",)

    def __init__(self, samples: Mapping[str, Any]):
        if not isinstance(samples, Mapping) or not samples:
            raise ConfigError("samples: expected a non-empty mapping of name -> array")
        data: dict[str, np.ndarray] = {}
        lead: tuple[int, int] | None = None
        for name, value in samples.items():
            _check_name(name)
            arr = np.asarray(value)
            if arr.dtype.kind not in "biufc":
                raise ShapeError(
                    f"samples[{name!r}]: expected a numeric array, got dtype {arr.dtype}"
                )
            if arr.ndim < 2:
                raise ShapeError(
                    f"samples[{name!r}]: expected shape (chain, draw, *shape), got {arr.shape}"
                )
            if 0 in arr.shape:
                raise ShapeError(f"samples[{name!r}]: zero-size axis in shape {arr.shape}")
            if lead is None:
                lead = arr.shape[:2]
            elif arr.shape[:2] != lead:
                raise ShapeError(
                    f"samples[{name!r}]: expected (chain, draw) = {lead} like the other "
                    f"variables, got {arr.shape[:2]}"
                )
            data[name] = arr
        self._data = data

    # -- constructors -------------------------------------------------------
    @classmethod
    def from_dict(cls, samples: Mapping[str, Any], *, has_chains: bool = True) -> Draws:
        """Build from ``{name: array}``; with ``has_chains=False`` arrays are ``(draw, *shape)``."""
        if has_chains:
            return cls(samples)
        return cls({k: np.asarray(v)[None] for k, v in samples.items()})

    @classmethod
    def from_matrix(
        cls, matrix: Any, names: Sequence[str], *, n_chains: int | None = None
    ) -> Draws:
        """Build from a ``(draw, dim)`` or ``(chain, draw, dim)`` matrix and per-column names.

        Column names are element names as `to_matrix` writes them
        (``mu``, ``w[0]``, ``w[1,2]``), in any order; each variable's shape is
        the largest index plus one and every element must be present once.

        Args:
            matrix: the samples.
            names: one name per column.
            n_chains: split a 2-D matrix into this many equal chains (chain
                major, as `to_matrix` writes them). Default 1.
        """
        m = np.asarray(matrix)
        if isinstance(names, str):
            raise ConfigError(f"names: expected a sequence of str, got the str {names!r}")
        if n_chains is not None and (
            isinstance(n_chains, bool) or not isinstance(n_chains, (int, np.integer))
        ):
            raise ConfigError(f"n_chains: expected an int or None, got {n_chains!r}")
        if m.ndim == 2:
            chains = 1 if n_chains is None else int(n_chains)
            if chains < 1 or m.shape[0] % chains:
                raise ShapeError(
                    f"n_chains: {n_chains} does not divide the {m.shape[0]} rows of matrix"
                )
            m = m.reshape(chains, m.shape[0] // chains, m.shape[1])
        elif m.ndim != 3:
            raise ShapeError(
                f"matrix: expected shape (draw, dim) or (chain, draw, dim), got {m.shape}"
            )
        elif n_chains is not None and n_chains != m.shape[0]:
            raise ShapeError(f"n_chains: {n_chains} differs from the matrix's {m.shape[0]} chains")
        names = list(names)
        if len(names) != m.shape[-1]:
            raise ShapeError(
                f"names: expected {m.shape[-1]} names (one per column), got {len(names)}"
            )
        groups: dict[str, dict[tuple[int, ...], int]] = {}
        for col, label in enumerate(names):
            if not isinstance(label, str):
                raise ConfigError(f"names: expected strings, got {label!r}")
            base, idx = parse_element_name(label)
            slot = groups.setdefault(base, {})
            if idx in slot:
                raise ConfigError(f"names: {label!r} appears more than once")
            if slot and len(next(iter(slot))) != len(idx):
                raise ConfigError(
                    f"names: {label!r} has a different number of indices than {base!r}"
                )
            slot[idx] = col
        samples = {}
        for base, slot in groups.items():
            shape = tuple(max(ix[a] for ix in slot) + 1 for a in range(len(next(iter(slot)))))
            expected = int(np.prod(shape)) if shape else 1
            if len(slot) != expected:
                raise ConfigError(
                    f"names: variable {base!r} with shape {shape} needs {expected} columns, "
                    f"got {len(slot)}"
                )
            cols = [slot[idx] for idx in np.ndindex(*shape)] if shape else [slot[()]]
            samples[base] = m[..., cols].reshape(m.shape[:2] + shape)
        return cls(samples)

    # -- views --------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Variable names, in insertion order."""
        return list(self._data)

    @property
    def n_chains(self) -> int:
        """Number of chains (or ensemble members)."""
        return next(iter(self._data.values())).shape[0]

    @property
    def n_draws(self) -> int:
        """Number of draws per chain."""
        return next(iter(self._data.values())).shape[1]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-variable event shapes (without the chain and draw axes)."""
        return {k: v.shape[2:] for k, v in self._data.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._data[name]
        except KeyError:
            raise KeyError(f"no variable {name!r}; have {self.names}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def items(self):
        """``(name, array)`` pairs."""
        return self._data.items()

    def as_dict(self) -> dict[str, np.ndarray]:
        """A shallow copy of the underlying ``{name: array}`` dict."""
        return dict(self._data)

    def stacked(self) -> dict[str, np.ndarray]:
        """``{name: array[chain * draw, *shape]}`` with chains concatenated."""
        return {k: v.reshape((-1, *v.shape[2:])) for k, v in self._data.items()}

    def subset(self, names: Sequence[str]) -> Draws:
        """The draws of the given variables only.

        Raises:
            ConfigError: naming the variables that do not exist.
        """
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self._data]
        if unknown:
            raise ConfigError(f"names: no variable(s) {unknown}; have {self.names}")
        return Draws({n: self[n] for n in names})

    def to_matrix(self, *, keep_chains: bool = False) -> tuple[np.ndarray, list[str]]:
        """Flatten to one column per scalar element.

        Args:
            keep_chains: return ``(chain, draw, dim)`` instead of
                ``(chain * draw, dim)``.

        Returns:
            ``(matrix, names)``; see `from_matrix` for the way back.
        """
        cols, names = [], []
        for name, arr in self._data.items():
            shape = arr.shape[2:]
            cols.append(arr.reshape((*arr.shape[:2], -1)))
            names.extend(element_names(name, shape))
        matrix = np.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
        if not keep_chains:
            matrix = matrix.reshape(-1, matrix.shape[-1])
        return matrix, names

    # -- statistics ---------------------------------------------------------
    # Non-finite draws (NaN or inf, e.g. from a diverged chain) are kept, not
    # dropped: the statistics of the elements they touch come out NaN or inf,
    # and every statistic warns, naming the variables and how many values.
    def _warn_nonfinite(self, method: str) -> Any:
        """Warn about NaN/inf draws; return a context that quiets NumPy's own warnings then."""
        counts = {
            k: int(np.count_nonzero(~np.isfinite(v)))
            for k, v in self._data.items()
            if v.dtype.kind in "fc"
        }
        bad = {k: n for k, n in counts.items() if n}
        if bad:
            where = ", ".join(f"{k!r} ({n})" for k, n in bad.items())
            warnings.warn(
                f"Draws.{method}: {sum(bad.values())} non-finite draw value(s) (NaN or inf) in "
                f"{where}; the statistics of the elements they touch are NaN or inf",
                RuntimeWarning,
                stacklevel=3,
            )
            return np.errstate(invalid="ignore")  # said once above, not again by NumPy
        return contextlib.nullcontext()

    def mean(self) -> dict[str, np.ndarray]:
        """Posterior means over chains and draws.

        Warns (`RuntimeWarning`) when a draw is NaN or inf; see `summary`.
        """
        with self._warn_nonfinite("mean"):
            return {k: v.mean(axis=(0, 1)) for k, v in self._data.items()}

    def std(self, ddof: int = 1) -> dict[str, np.ndarray]:
        """Standard deviations over chains and draws.

        Warns (`RuntimeWarning`) when a draw is NaN or inf; see `summary`.
        """
        if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
            raise ConfigError(f"ddof: expected a non-negative int, got {ddof!r}")
        with self._warn_nonfinite("std"):
            return {k: v.std(axis=(0, 1), ddof=ddof) for k, v in self._data.items()}

    def quantile(self, q: float | Sequence[float]) -> dict[str, np.ndarray]:
        """Quantiles over chains and draws; a sequence of ``q`` adds a leading axis.

        Warns (`RuntimeWarning`) when a draw is NaN or inf; see `summary`.
        """
        qs = _check_quantiles(q, "q")
        with self._warn_nonfinite("quantile"):
            return {k: np.quantile(v, qs, axis=(0, 1)) for k, v in self._data.items()}

    def summary(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> Summary:
        """Per-element table: mean, sd, the quantiles and, with chains > 1, R-hat and ESS.

        Non-finite draws are neither dropped nor refused: a draw that is NaN or
        inf (a diverged chain, an overflowed member) makes the statistics of its
        element NaN or inf, which is the honest answer, and `summary` (like
        `mean`, `std` and `quantile`) emits a `RuntimeWarning` naming each
        variable that holds such draws and how many. Filter the draws first
        (or turn the warning into an error with `warnings.simplefilter`) when
        they should not count.
        """
        _check_quantiles(quantiles, "quantiles")
        with self._warn_nonfinite("summary"):
            matrix, names = self.to_matrix(keep_chains=True)
            flat = matrix.reshape(-1, matrix.shape[-1]).astype(np.float64)
            columns: dict[str, np.ndarray] = {
                "mean": flat.mean(axis=0),
                "sd": flat.std(axis=0, ddof=1)
                if flat.shape[0] > 1
                else np.full(flat.shape[1], np.nan),
            }
            for q, row in zip(quantiles, np.quantile(flat, quantiles, axis=0), strict=True):
                columns[f"{100 * q:g}%"] = row
            if self.n_chains > 1:
                columns["r_hat"] = split_rhat(matrix)
                columns["ess"] = ess(matrix)
        return Summary(names, columns)

    # -- combination --------------------------------------------------------
    @staticmethod
    def concat(items: Sequence[Draws], *, dim: str = "chain") -> Draws:
        """Concatenate draws of the same variables along ``"chain"`` or ``"draw"``."""
        if dim not in ("chain", "draw"):
            raise ConfigError(f"dim: expected 'chain' or 'draw', got {dim!r}")
        items = list(items)
        if not items:
            raise ConfigError("items: expected at least one Draws")
        for i, other in enumerate(items):
            if not isinstance(other, Draws):
                raise ConfigError(f"items[{i}]: expected Draws, got {type(other).__name__}")
        first = items[0]
        for i, other in enumerate(items[1:], start=1):
            if other.shapes != first.shapes:
                raise ShapeError(
                    f"items[{i}]: variables/shapes {other.shapes} differ from "
                    f"items[0]'s {first.shapes}"
                )
        axis = 0 if dim == "chain" else 1
        return Draws({k: np.concatenate([d[k] for d in items], axis=axis) for k in first.names})

    # -- conversion and persistence ----------------------------------------
    def to_arviz(self) -> Any:
        """Convert to ArviZ's ``InferenceData``/``DataTree``; needs ``orrery-interface[arviz]``."""
        az = require("arviz", extra="orrery-interface[arviz]", feature="Draws.to_arviz()")
        data = self.as_dict()
        try:
            return az.from_dict(posterior=data)
        except TypeError:  # ArviZ >= 1.0 takes a dict of groups
            return az.from_dict({"posterior": data})

    def save(self, path: Any, *, metadata: Mapping[str, Any] | None = None) -> Any:
        """Write as an `orrery.interface.artifacts` artifact."""
        return save_artifact(
            path,
            kind=_ARTIFACT_KIND,
            config={"names": self.names},
            arrays={f"var/{i}": v for i, v in enumerate(self._data.values())},
            metadata=metadata,
            producer={"distribution": "orrery-interface", "version": __version__},
        )

    @classmethod
    def load(cls, path: Any) -> Draws:
        """Read draws written by `save`.

        Raises:
            ArtifactError: when the artifact is missing, corrupt or incomplete.
        """
        art = load_artifact(path, kind=_ARTIFACT_KIND)
        names = art.config_value("names", list)
        return cls({str(n): art.array(f"var/{i}", kind="biufc") for i, n in enumerate(names)})

    def __repr__(self) -> str:
        vars_ = ", ".join(
            f"{k}: {v.dtype}{list(v.shape[2:]) if v.ndim > 2 else ''}"
            for k, v in self._data.items()
        )
        return f"Draws(chains={self.n_chains}, draws={self.n_draws}; {vars_})"

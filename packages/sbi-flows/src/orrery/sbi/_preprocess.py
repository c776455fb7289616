"""Observation preprocessing chosen from the training data, recorded with the posterior.

A block's preprocessing entry (``preprocessing_metadata[block]``) maps raw values
``x`` to the network's input ``z = (f(x) - value_mean) / value_scale``, one
transform ``f`` per feature:

- ``"none"``: ``f(x) = x``;
- ``"log"``: ``f(x) = log x`` (positive features only);
- ``"asinh"``: ``f(x) = asinh((x - c) / a)`` with the feature's ``transform_scale``
  ``a`` and ``transform_centre`` ``c`` (0 when the entry has none): linear within
  ``|x - c| < a``, logarithmic beyond, so zeros and negative values are admitted
  (counts, fluxes with noise, signed heavy tails).

Entries written before transforms existed (no ``"transform"`` key) are all
``"none"`` with the dataset's mean and standard deviation, as they were. The same
`forward` serves `fit` (the dataset's batches), `sample_posterior`, `log_prob`
and the diagnostics (`_inference`), so an observation is always prepared as the
training data were. Uncertainties follow the transform's derivative
(``|f'(x)| sigma / value_scale``).

``observation_transform`` selects the choice (`choose_block`):

- ``"none"``: the dataset's mean/standard deviation, nothing recorded beyond it;
- ``"auto"`` (the recipe): per feature, ``"log"`` for positive data spanning more
  than `DECADES_LOG` decades (99.5th over 0.5th percentile; sbibm's bernoulli_glm
  spike count, 1 to 100 of 100, spans 1.06 and stays as it is), ``"asinh"`` for data with
  zeros or negative values whose magnitudes span more than `DECADES_AUTO` decades
  (99.5th percentile over the median of the non-zero magnitudes) or that are counts with
  zeros reaching `COUNTS_MAX` (on the SEIR benchmark, C2ST 0.74 -> 0.68), ``"asinh"``
  centred on the median with the robust spread as ``a`` for any other feature that
  `check_outliers` would report (more than `OUTLIER_FRACTION` of its rows beyond
  `OUTLIER_Z` scale units as scaled below: heavy tails of either sign, as
  slcp_distractors' distractors, |z| up to 457), so that the warning speaks only of
  outliers the preparation left, else ``"none"``; the
  centre and scale are the median and a robust spread (IQR / 1.349, else
  MAD x 1.4826) where a transform was chosen or the standard deviation exceeds
  `HEAVY_RATIO` robust spreads (outliers dominate it), else the mean and standard
  deviation, so a problem whose features need none of this is prepared as before;
- ``"log"`` / ``"asinh"``: that transform on every feature (``"log"`` needs positive
  data), then the robust centre and scale;
- ``"robust"``: no transform, the robust centre and scale.

Constant features keep scale 1 (never a division by ~0); features whose robust
spread is zero but not their standard deviation (mostly one value, a few others)
fall back to the standard deviation. Both are reported by `preparation_notes`.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from orrery.interface import ConfigError, ValueDomainError

__all__ = [
    "OBSERVATION_TRANSFORMS",
    "TRANSFORMS",
    "check_outliers",
    "choose_block",
    "forward",
    "forward_uncertainties",
    "inverse",
    "outlier_report",
    "prepare_dataset",
]

#: Per-feature transforms an entry may record.
TRANSFORMS: tuple[str, ...] = ("none", "log", "asinh")
#: Values of the constructor's ``observation_transform``.
OBSERVATION_TRANSFORMS: tuple[str, ...] = ("none", "auto", "robust", "log", "asinh")
#: Decades (log10 of the 99.5th percentile over the median of the non-zero magnitudes)
#: above which ``"auto"`` transforms a feature.
DECADES_AUTO = 1.3
#: Decades (log10 of the 99.5th over the 0.5th percentile) above which ``"auto"`` takes
#: the log of a positive feature.
DECADES_LOG = 1.5
#: Non-negative integer features with zeros whose 99.5th percentile reaches this are counts
#: that ``"auto"`` puts through asinh (a binary feature is not).
COUNTS_MAX = 10
#: Standard deviation over robust spread above which ``"auto"`` centres robustly.
HEAVY_RATIO = 3.0
#: A scaled value beyond this is an extreme outlier.
OUTLIER_Z = 10.0
#: Fraction of a feature's rows beyond `OUTLIER_Z` that makes it "affected".
OUTLIER_FRACTION = 1e-3
#: Rows used to choose the preprocessing (a fixed, evenly spaced subset beyond it).
CHOICE_ROWS = 50_000


def _robust_spread(y: np.ndarray) -> np.ndarray:
    """IQR / 1.349 per column, MAD x 1.4826 where that is zero, 0 where both are."""
    q25, q50, q75 = np.percentile(y, [25, 50, 75], axis=0)
    iqr = (q75 - q25) / 1.349
    mad = np.median(np.abs(y - q50), axis=0) * 1.4826
    return np.where(iqr > 0, iqr, mad)


def _decades(x: np.ndarray) -> float:
    mag = np.abs(x[x != 0])
    if mag.size == 0:
        return 0.0
    med = np.median(mag)
    return float(np.log10(np.percentile(mag, 99.5) / med)) if med > 0 else 0.0


def _positive_decades(x: np.ndarray) -> float:
    """log10 of the 99.5th over the 0.5th percentile of positive values."""
    lo, hi = np.percentile(x, [0.5, 99.5])
    return float(np.log10(hi / lo)) if lo > 0 else float("inf")


def _counts(x: np.ndarray) -> bool:
    """Counts with zeros reaching `COUNTS_MAX` or more (Poisson-like: log impossible)."""
    return bool(x.min() == 0 and np.all(x == np.round(x)) and np.percentile(x, 99.5) >= COUNTS_MAX)


def _asinh_scale(x: np.ndarray) -> float:
    """``a`` of ``asinh(x / a)``: the 10th percentile of the non-zero magnitudes, or more."""
    mag = np.abs(x[x != 0])
    if mag.size == 0:
        return 1.0
    top = float(np.percentile(mag, 99.5))
    return float(max(np.percentile(mag, 10), 1e-3 * top, np.finfo(np.float32).tiny))


def _heavy_tail(x: np.ndarray) -> tuple[float, float] | None:
    """``(c, a)`` of a centred asinh for a feature with extreme outliers, else ``None``.

    Extreme outliers: scaled as ``"auto"`` would scale it untransformed (median and
    robust spread when the standard deviation exceeds `HEAVY_RATIO` of them, else mean
    and standard deviation), more than `OUTLIER_FRACTION` of the rows lie beyond
    `OUTLIER_Z`: the feature `check_outliers` would report.
    """
    spread, std = float(_robust_spread(x[:, None])[0]), float(x.std())
    if not std > 0:
        return None
    median = float(np.median(x))
    heavy = spread > 0 and std > HEAVY_RATIO * spread
    z = (x - median) / spread if heavy else (x - x.mean()) / std
    if np.mean(np.abs(z) > OUTLIER_Z) <= OUTLIER_FRACTION:
        return None
    return median, spread if spread > 0 else std


def forward(x: np.ndarray, entry: dict[str, Any] | None) -> np.ndarray:
    """The network input of raw values ``x`` (``(..., k)``, float64) under ``entry``.

    Raises:
        ValueDomainError: a value outside a feature's transform domain (``log`` of x <= 0).
    """
    x = np.asarray(x, np.float64)
    if entry is None:
        return x
    kinds = entry.get("transform")
    y = x
    if kinds is not None:
        y = x.copy()
        kinds_a = np.asarray(kinds)
        log = kinds_a == "log"
        if log.any():
            bad = x[..., log] <= 0
            if bad.any():
                feature = int(np.flatnonzero(log)[np.argmax(bad.reshape(-1, log.sum()).any(0))])
                raise ValueDomainError(
                    f"observation: feature {feature} must be positive: the posterior "
                    "log-transforms it (its training values were all positive)"
                )
            y[..., log] = np.log(x[..., log])
        ash = kinds_a == "asinh"
        if ash.any():
            shifted = x[..., ash] - _centres(entry)[ash]
            y[..., ash] = np.arcsinh(shifted / np.asarray(entry["transform_scale"])[ash])
    return (y - np.asarray(entry["value_mean"])) / np.asarray(entry["value_scale"])


def _centres(entry: dict[str, Any]) -> np.ndarray:
    """The asinh centres ``c`` of an entry (0 where none is recorded, as before them)."""
    centre = entry.get("transform_centre")
    return np.zeros(len(entry["transform"])) if centre is None else np.asarray(centre, float)


def inverse(z: np.ndarray, entry: dict[str, Any] | None) -> np.ndarray:
    """Raw values of network inputs ``z``: the inverse of `forward` (to float64 round-off)."""
    z = np.asarray(z, np.float64)
    if entry is None:
        return z
    y = z * np.asarray(entry["value_scale"]) + np.asarray(entry["value_mean"])
    kinds = entry.get("transform")
    if kinds is None:
        return y
    kinds_a = np.asarray(kinds)
    x = y.copy()
    x[..., kinds_a == "log"] = np.exp(y[..., kinds_a == "log"])
    ash = kinds_a == "asinh"
    a = np.asarray(entry["transform_scale"])
    x[..., ash] = np.sinh(y[..., ash]) * a[ash] + _centres(entry)[ash]
    return x


def forward_uncertainties(x: np.ndarray, sigma: np.ndarray, entry: dict[str, Any] | None):
    """Uncertainties of the network input: ``|f'(x)| sigma / value_scale``."""
    sigma = np.asarray(sigma, np.float64)
    if entry is None:
        return sigma
    kinds = entry.get("transform")
    if kinds is not None:
        x = np.asarray(x, np.float64)
        kinds_a = np.asarray(kinds)
        a = np.asarray(entry["transform_scale"])
        deriv = np.ones_like(x)
        deriv = np.where(kinds_a == "log", 1.0 / np.where(x > 0, x, 1.0), deriv)
        shifted = x - _centres(entry)
        deriv = np.where(kinds_a == "asinh", 1.0 / np.sqrt(shifted**2 + a**2), deriv)
        sigma = sigma * deriv
    return sigma / np.asarray(entry["value_scale"])


def choose_block(
    train: np.ndarray, minimum: np.ndarray, mode: str, modality: str
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """A block's preprocessing entry from its training values (see the module docstring).

    Args:
        train: ``(n, k)`` raw training values (float64).
        minimum: ``(k,)`` smallest value of each feature over every row (both splits).
        mode: one of `OBSERVATION_TRANSFORMS` other than ``"none"``.
        modality: the block's modality (kept in the entry).

    Returns:
        The entry and ``{"log": [...], "asinh": [...], "tails": [...], "constant": [...],
        "near_constant": [...]}`` feature indices, for the warning (``"tails"``: the
        centred asinh of heavy-tailed features, not counted under ``"asinh"``).

    Raises:
        ValueDomainError: ``mode="log"`` on a feature with a value <= 0.
    """
    k = train.shape[1]
    kinds = ["none"] * k
    scales = [1.0] * k
    centres = [0.0] * k
    tails = []
    for j in range(k):
        x = train[:, j]
        positive = minimum[j] > 0
        if mode == "log" or (mode == "auto" and positive and _positive_decades(x) > DECADES_LOG):
            if minimum[j] <= 0:
                raise ValueDomainError(
                    f"observation_transform='log': feature {j} has values <= 0 "
                    f"(smallest {minimum[j]:.3g}); use 'asinh', which admits them"
                )
            kinds[j] = "log"
        elif mode == "asinh" or (mode == "auto" and (_decades(x) > DECADES_AUTO or _counts(x))):
            kinds[j], scales[j] = "asinh", _asinh_scale(x)
        elif mode == "auto" and (tail := _heavy_tail(x)) is not None:
            kinds[j], centres[j], scales[j] = "asinh", *tail
            tails.append(j)
    entry = {"modality": modality, "transform": kinds, "transform_scale": scales}
    if tails:  # only then: every other entry is written as before
        entry["transform_centre"] = centres
    y = forward(train, {**entry, "value_mean": np.zeros(k), "value_scale": np.ones(k)})
    mean, std = y.mean(0), y.std(0)
    median, spread = np.median(y, 0), _robust_spread(y)
    constant = std <= 1e-12 * np.maximum(np.abs(mean), 1.0)
    transformed = np.asarray(kinds) != "none"
    robust = (spread > 0) & (transformed | (std > HEAVY_RATIO * spread) | (mode != "auto"))
    robust &= ~constant
    centre = np.where(robust, median, mean)
    scale = np.where(robust, spread, np.where(constant, 1.0, std))
    entry["value_mean"] = centre.tolist()
    entry["value_scale"] = scale.tolist()
    notes = {
        "log": [j for j in range(k) if kinds[j] == "log"],
        "asinh": [j for j in range(k) if kinds[j] == "asinh" and j not in tails],
        "tails": tails,
        "constant": np.flatnonzero(constant).tolist(),
        # a robust scale was wanted but the spread is 0: the standard deviation stands in
        "near_constant": np.flatnonzero(
            ~constant & (spread == 0) & (transformed | (mode != "auto"))
        ).tolist(),
    }
    return entry, notes


def outlier_report(z: np.ndarray) -> tuple[int, float]:
    """Features with more than `OUTLIER_FRACTION` of rows beyond `OUTLIER_Z`, and the worst |z|."""
    if z.size == 0:
        return 0, 0.0
    beyond = np.mean(np.abs(z) > OUTLIER_Z, axis=0)
    return int(np.sum(beyond > OUTLIER_FRACTION)), float(np.max(np.abs(z)))


# ----------------------------------------------------------------------------- datasets
def _rows(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, CHOICE_ROWS)).round().astype(np.int64))


def _block_values(dataset: Any, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A subset of a block's raw training values and each feature's minimum over all rows."""
    train_idx = np.asarray(dataset.train_indices)
    rows = train_idx[_rows(train_idx.shape[0])]
    if hasattr(dataset, "observations"):  # in memory
        arr = np.asarray(dataset.observations[name], np.float64)
        return arr[rows], arr.min(0)
    source = getattr(dataset, "_source", None)
    if source is None:
        return None
    field = f"obs:{name}"
    minimum = np.full(int(source.blocks[name]), np.inf)
    for a in range(0, dataset.n_simulations, 65_536):
        part = source.read(field, a, min(a + 65_536, dataset.n_simulations))
        minimum = np.minimum(minimum, part.min(0))
    return source.take(field, np.sort(rows)), minimum


def _known_reader(dataset: Any) -> bool:
    """The package's readers: they apply an entry's transform to their batches."""
    in_memory = hasattr(dataset, "observations") and hasattr(dataset, "_batch")
    streaming = hasattr(dataset, "_source") and hasattr(dataset, "_transformed_rows")
    return (in_memory or streaming) and hasattr(dataset, "preprocessing_metadata")


def prepare_dataset(dataset: Any, mode: str) -> tuple[Any, list[str]]:
    """The dataset as the posterior trains on it, and the warnings its preparation raised.

    ``mode="none"`` returns ``dataset`` itself (its mean/standard deviation); any
    other gives a shallow copy whose ``preprocessing_metadata`` holds the chosen
    entries (the caller's dataset is unchanged). A reader other than the package's
    datasets yields batches it normalised itself: ``"auto"`` leaves it as it is, any
    other transform is refused.

    Raises:
        ConfigError: a transform asked for a reader that normalises its own batches.
        ValueDomainError: ``"log"`` asked for data with values <= 0.
    """
    messages: list[str] = []
    if mode == "none" or not _known_reader(dataset):
        if mode not in ("none", "auto"):
            raise ConfigError(
                f"observation_transform={mode!r} needs a SimulationDataset (this reader, "
                f"{type(dataset).__name__}, normalises its own batches); use 'none' or 'auto'"
            )
        return dataset, messages
    new_prep: dict[str, dict[str, Any]] = {}
    said = []
    for name, old in dataset.preprocessing_metadata.items():
        values = _block_values(dataset, name)
        if values is None:  # pragma: no cover - every known reader has its values
            return dataset, messages
        entry, notes = choose_block(values[0], values[1], mode, old["modality"])
        new_prep[name] = entry
        k = len(entry["transform"])
        parts = [f"{len(notes[t])} of {k} features {t}" for t in ("log", "asinh") if notes[t]]
        if mode == "auto" and parts:
            said.append(f"block {name!r}: {', '.join(parts)} (values spanning decades)")
        if notes["tails"]:
            said.append(
                f"block {name!r}: {len(notes['tails'])} of {k} features asinh about their "
                "median (heavy tails: outliers beyond "
                f"{OUTLIER_Z:g} robust spreads in more than {OUTLIER_FRACTION:.1%} of rows)"
            )
        if notes["constant"]:
            said.append(
                f"block {name!r}: features {notes['constant'][:10]} are constant in the "
                "training data (left unscaled; they carry no information)"
            )
        if notes["near_constant"]:
            said.append(
                f"block {name!r}: features {notes['near_constant'][:10]} take mostly one "
                "value (robust spread 0): scaled by their standard deviation instead"
            )
    if said:
        messages.append(
            "observation preprocessing chosen from the training data: "
            + "; ".join(said)
            + ". It is recorded with the posterior; pass observation_transform='none' "
            "(mean and standard deviation only) or a fixed transform to override."
        )
    view = copy.copy(dataset)  # the readers apply an entry with a "transform" key
    view.preprocessing_metadata = new_prep
    return view, messages


def check_outliers(dataset: Any, batch: Any) -> list[str]:
    """A warning when a block's scaled training values have extreme outliers."""
    out = []
    for name, block in batch.observations.items():
        z = np.asarray(block["values"], np.float64)
        affected, worst = outlier_report(z)
        if affected:
            prep = (getattr(dataset, "preprocessing_metadata", None) or {}).get(name, {})
            hint = (
                "observation_transform='auto' (log/asinh of positive or multi-decade "
                "features and a robust scale) or a transform of your own"
                if "transform" not in prep
                else "a transform of your own for these features (or more simulations)"
            )
            out.append(
                f"block {name!r}: {affected} of {z.shape[1]} features have extreme outliers "
                f"after scaling (more than {OUTLIER_FRACTION:.1%} of training rows beyond "
                f"{OUTLIER_Z:g} scale units; largest |z| {worst:.3g}): the network sees a few "
                f"rows far outside the range of the others. Try {hint}."
            )
    return out

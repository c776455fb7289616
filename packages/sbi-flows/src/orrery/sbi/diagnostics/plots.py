"""Diagnostic figures: coverage curves, SBC rank histograms and corner plots.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot
state), so they work headless; save them with ``fig.savefig(path)``. Needs
matplotlib (extra ``sbi-flows[plot]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import ArrayLike

from orrery.interface import ShapeError, check_positive_int, require

from .calibration import CoverageResult, TarpResult


def _figure(feature: str, **kwargs: Any) -> Any:
    module = require("matplotlib.figure", extra="sbi-flows[plot]", feature=feature)
    return module.Figure(**kwargs)


def plot_coverage(
    result: CoverageResult | TarpResult | tuple[ArrayLike, ArrayLike],
    *,
    ax: Any = None,
    label: str | None = None,
) -> Any:
    """Plot empirical against nominal coverage with the diagonal for reference.

    Args:
        result: a `CoverageResult` (drawn with a ±2σ band), a
            `TarpResult`, or a ``(levels, coverage)`` pair.
        ax: matplotlib axes to draw on (a new figure is made when omitted).
        label: legend label of the curve.

    Returns:
        The axes.
    """
    if ax is None:
        ax = _figure("diagnostics.plot_coverage", figsize=(4, 4)).add_subplot()
    band = None
    if isinstance(result, CoverageResult):
        x, y, band = result.levels, result.coverage, 2 * result.stderr
    elif isinstance(result, TarpResult):
        x, y = result.alpha, result.ecp
    else:
        x, y = (np.asarray(v, dtype=float) for v in result)
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1)
    (line,) = ax.plot(x, y, marker="o", markersize=3, label=label)
    if band is not None:
        ax.fill_between(x, y - band, y + band, color=line.get_color(), alpha=0.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal credibility")
    ax.set_ylabel("empirical coverage")
    if label is not None:
        ax.legend()
    return ax


def plot_sbc_ranks(
    ranks: ArrayLike,
    *,
    num_posterior_samples: int | None = None,
    num_bins: int = 20,
    parameter_names: Sequence[str] | None = None,
) -> Any:
    """Histogram of SBC ranks per dimension with the 99% band of a uniform histogram.

    Args:
        ranks: ``(n, dim)`` ranks from `sbc_ranks`.
        num_posterior_samples: ``S`` used for the ranks (default: the largest rank).
        num_bins: histogram bins.
        parameter_names: titles of the panels.

    Returns:
        The figure.
    """
    r = np.asarray(ranks)
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2:
        raise ShapeError(f"ranks must have shape (n, dim); got {r.shape}")
    check_positive_int(num_bins, "num_bins", minimum=1)
    n, dim = r.shape
    s = int(num_posterior_samples) if num_posterior_samples is not None else int(r.max())
    names = (
        list(parameter_names) if parameter_names is not None else [f"θ[{j}]" for j in range(dim)]
    )
    if len(names) != dim:
        raise ShapeError(f"parameter_names must have {dim} entries; got {len(names)}")
    fig = _figure("diagnostics.plot_sbc_ranks", figsize=(3 * dim, 2.6), layout="constrained")
    axes = fig.subplots(1, dim, squeeze=False)[0]
    from scipy import stats

    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / num_bins)
    edges = np.linspace(-0.5, s + 0.5, num_bins + 1)
    for j, ax in enumerate(axes):
        ax.axhspan(lo, hi, color="0.85")
        ax.axhline(n / num_bins, color="0.5", linewidth=1)
        ax.hist(r[:, j], bins=edges, histtype="step", linewidth=1.5)
        ax.set_title(names[j])
        ax.set_xlabel("rank")
    axes[0].set_ylabel("count")
    return fig


def corner(
    samples: ArrayLike,
    *,
    labels: Sequence[str] | None = None,
    truths: ArrayLike | None = None,
    bins: int = 30,
    fig: Any = None,
) -> Any:
    """Corner plot: 1-D histograms on the diagonal, 2-D histograms below it.

    Args:
        samples: ``(n, dim)`` draws (e.g. ``PosteriorSamples`` converted to an array).
        labels: axis labels, one per dimension.
        truths: optional ``(dim,)`` values marked on every panel.
        bins: histogram bins per axis.
        fig: an existing figure to draw on.

    Returns:
        The figure.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ShapeError(f"samples must have shape (n, dim); got {x.shape}")
    check_positive_int(bins, "bins", minimum=1)
    x = x[np.all(np.isfinite(x), axis=1)]
    dim = x.shape[1]
    names = list(labels) if labels is not None else [f"θ[{j}]" for j in range(dim)]
    if len(names) != dim:
        raise ShapeError(f"labels must have {dim} entries; got {len(names)}")
    truth = None if truths is None else np.asarray(truths, dtype=float).reshape(-1)
    if truth is not None and truth.shape != (dim,):
        raise ShapeError(f"truths must have shape ({dim},); got {truth.shape}")
    if fig is None:
        fig = _figure("diagnostics.corner", figsize=(2.2 * dim, 2.2 * dim), layout="constrained")
    axes = fig.subplots(dim, dim, squeeze=False)
    ranges = [(np.quantile(x[:, j], 0.001), np.quantile(x[:, j], 0.999)) for j in range(dim)]
    for i in range(dim):
        for j in range(dim):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                ax.hist(x[:, j], bins=bins, range=ranges[j], histtype="step", color="k")
                ax.set_yticks([])
                if truth is not None:
                    ax.axvline(truth[j], color="C1")
            else:
                ax.hist2d(x[:, j], x[:, i], bins=bins, range=[ranges[j], ranges[i]], cmap="Greys")
                if truth is not None:
                    ax.axvline(truth[j], color="C1")
                    ax.axhline(truth[i], color="C1")
                    ax.plot(truth[j], truth[i], "s", color="C1", markersize=3)
            if i == dim - 1:
                ax.set_xlabel(names[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
            elif j > 0:
                ax.set_yticklabels([])
    return fig

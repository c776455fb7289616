"""Diagnostic plots (needs the optional extra ``lux-models[plot]``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orrery.interface import ShapeError, require

__all__ = ["one_to_one"]


def one_to_one(
    true,
    inferred,
    names: Sequence[str] | None = None,
    *,
    errors=None,
    axes=None,
    **scatter_kwargs,
):
    """One panel per label: inferred against true with the 1:1 line, bias and RMS.

    Args:
        true: ``(n, n_labels)`` reference labels.
        inferred: ``(n, n_labels)`` inferred labels.
        names: label names for the axes (default ``label 0`` …).
        errors: optional ``(n, n_labels)`` one-sigma uncertainties (error bars).
        axes: optional sequence of matplotlib axes, one per label.
        **scatter_kwargs: passed to ``Axes.scatter``.

    Returns:
        The matplotlib ``Figure``.
    """
    plt = require("matplotlib.pyplot", extra="lux-models[plot]", feature="plot.one_to_one")
    t = np.atleast_2d(np.asarray(true, float))
    x = np.atleast_2d(np.asarray(inferred, float))
    if t.shape != x.shape:
        raise ShapeError(f"inferred: expected the shape of true {t.shape}, got {x.shape}")
    n_lab = t.shape[1]
    names = list(names) if names is not None else [f"label {i}" for i in range(n_lab)]
    if len(names) != n_lab:
        raise ShapeError(f"names: expected {n_lab} names, got {len(names)}")
    if axes is None:
        fig, axes = plt.subplots(1, n_lab, figsize=(3.6 * n_lab, 3.4), squeeze=False)
        axes = axes[0]
    else:
        axes = list(np.ravel(axes))
        fig = axes[0].figure
    kw = {"s": 6, "alpha": 0.6, "color": "k", **scatter_kwargs}
    for i, ax in enumerate(axes[:n_lab]):
        if errors is not None:
            ax.errorbar(
                t[:, i],
                x[:, i],
                yerr=np.asarray(errors)[:, i],
                fmt="none",
                ecolor="0.7",
                lw=0.5,
                zorder=0,
            )
        ax.scatter(t[:, i], x[:, i], **kw)
        lo = np.nanmin([t[:, i].min(), x[:, i].min()])
        hi = np.nanmax([t[:, i].max(), x[:, i].max()])
        ax.plot([lo, hi], [lo, hi], color="tab:red", lw=1)
        diff = x[:, i] - t[:, i]
        ax.set_title(
            f"bias {np.nanmean(diff):.3g}, rms {np.sqrt(np.nanmean(diff**2)):.3g}", fontsize=9
        )
        ax.set_xlabel(f"true {names[i]}")
        ax.set_ylabel(f"inferred {names[i]}")
    fig.tight_layout()
    return fig

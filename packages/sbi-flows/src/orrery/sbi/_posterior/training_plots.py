"""PNG diagnostics written during and after training (``verbose_diagnostics``).

Every ``interval`` epochs a corner plot of posterior draws for the first
validation observation (``corner_epoch_XXXX.png``); after training the loss curves
(``loss_curves.png``) and the final corner plot (``corner.png``). Needs matplotlib
(extra ``sbi-flows[plot]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from orrery.interface import ConfigError, check_positive_int, require

from . import model as _model
from .aux import unwrap

#: Posterior draws per corner plot.
CORNER_DRAWS = 1_000


def _corner_png(
    model: Any, observation: Mapping, labels: Sequence[str] | None, seed: int, path: str
) -> None:
    from ..diagnostics import corner

    emb = _model.embed_batch(unwrap(model), dict(observation))[0]
    draws = _model.sample_space(unwrap(model), jr.key(seed), emb, CORNER_DRAWS)
    fig = corner(np.asarray(draws), labels=labels)
    fig.savefig(path, dpi=80)


def plot_hook(
    observation: Mapping,
    directory: str | None,
    interval: int,
    *,
    labels: Sequence[str] | None,
    seed: int,
) -> Callable[[Any], dict[str, float]]:
    """``f(model) -> {}`` for the trainer's ``epoch_metrics_fn``: a corner plot every
    ``interval`` calls (epochs). ``observation`` is a batch of one normalised observation."""
    require("matplotlib.figure", extra="sbi-flows[plot]", feature="verbose_diagnostics")
    if directory is None:
        raise ConfigError("verbose_diagnostics=True needs diagnostics_output_directory")
    check_positive_int(interval, "diagnostics_plot_interval")
    os.makedirs(directory, exist_ok=True)
    obs = {k: {n: jnp.asarray(v) for n, v in b.items()} for k, b in observation.items()}
    epoch = [0]

    def hook(model: Any) -> dict[str, float]:
        epoch[0] += 1
        if epoch[0] % interval == 0:
            path = os.path.join(directory, f"corner_epoch_{epoch[0]:04d}.png")
            _corner_png(model, obs, labels, seed, path)
        return {}

    return hook


def write_final_plots(
    model: Any,
    history: Mapping[str, Sequence[float]],
    observation: Mapping,
    directory: str,
    *,
    labels: Sequence[str] | None,
    seed: int,
) -> None:
    """``loss_curves.png`` (train / validation loss per epoch) and ``corner.png``."""
    figure = require("matplotlib.figure", extra="sbi-flows[plot]", feature="verbose_diagnostics")
    os.makedirs(directory, exist_ok=True)
    fig = figure.Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    for key in ("train_loss", "val_loss"):
        values = history.get(key) or []
        if len(values):
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.savefig(os.path.join(directory, "loss_curves.png"), dpi=80)
    obs = {k: {n: jnp.asarray(v) for n, v in b.items()} for k, b in observation.items()}
    _corner_png(model, obs, labels, seed, os.path.join(directory, "corner.png"))


def merge_hooks(
    first: Callable[[Any], Mapping[str, float]] | None, second: Callable[[Any], dict[str, float]]
) -> Callable[[Any], dict[str, float]]:
    """One ``epoch_metrics_fn`` calling both (``first`` may be ``None``)."""

    def hook(model: Any) -> dict[str, float]:
        out = dict(first(model)) if first is not None else {}
        out.update(second(model))
        return out

    return hook

"""Diagnostic figures render headless and save as PNG."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from orrery.sbi.diagnostics import (
    CoverageResult,
    corner,
    plot_coverage,
    plot_sbc_ranks,
)


def test_figures_render_and_save(tmp_path):
    rng = np.random.default_rng(0)
    levels = np.linspace(0.05, 0.95, 19)
    result = CoverageResult(levels, levels, 0.01 + 0 * levels, rng.uniform(size=50), "log_prob")
    ax = plot_coverage(result, label="flow")
    ax.figure.savefig(tmp_path / "coverage.png")
    fig = plot_sbc_ranks(rng.integers(0, 100, size=(200, 3)), num_posterior_samples=99)
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "ranks.png")
    fig = corner(rng.normal(size=(500, 3)), labels=["a", "b", "c"], truths=[0.0, 0.0, 0.0])
    assert len(fig.axes) == 9
    fig.savefig(tmp_path / "corner.png")
    assert all(
        (tmp_path / f"{n}.png").stat().st_size > 1000 for n in ("coverage", "ranks", "corner")
    )
    with pytest.raises(ValueError, match="labels"):
        corner(rng.normal(size=(10, 2)), labels=["a"])

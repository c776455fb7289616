"""plot.one_to_one draws one panel per label (or names the missing extra)."""

import builtins

import numpy as np
import pytest

from orrery.interface import MissingDependencyError, ShapeError
from orrery.lux import plot


def test_one_to_one_panels():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    t = rng.normal(size=(30, 3))
    fig = plot.one_to_one(t, t + 0.1, ["teff", "logg", "feh"], errors=np.full((30, 3), 0.1))
    assert len(fig.axes) == 3
    assert fig.axes[0].get_xlabel() == "true teff"
    with pytest.raises(ShapeError, match="inferred"):
        plot.one_to_one(t, t[:, :2])


def test_missing_matplotlib_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    import sys

    for mod in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(MissingDependencyError, match=r"lux-models\[plot\]"):
        plot.one_to_one(np.zeros((2, 1)), np.zeros((2, 1)))

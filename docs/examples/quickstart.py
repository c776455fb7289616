"""A short tour of orrery: one real thing with each package.

Run it with `make demo` (or `uv run python docs/examples/quickstart.py`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from orrery.interface import Draws


def tour_interface(workdir: Path) -> None:
    rng = np.random.default_rng(0)
    draws = Draws({"mu": rng.normal(1.0, 0.1, size=(4, 500)), "w": rng.normal(size=(4, 500, 2))})
    draws.save(workdir / "draws")
    back = Draws.load(workdir / "draws")
    print("orrery.interface: Draws round trip through an artifact")
    print(back.summary())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tour_interface(Path(tmp))


if __name__ == "__main__":
    main()

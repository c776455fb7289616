"""A small printable table of per-element statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class Summary:
    """Rows named by element, columns of statistics; ``str()`` renders a table.

    Attributes:
        names: row labels.
        columns: ``{column: array[n_rows]}``.
    """

    def __init__(self, names: Sequence[str], columns: Mapping[str, np.ndarray]):
        self.names = list(names)
        self.columns = {k: np.asarray(v) for k, v in columns.items()}

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{row: {column: value}}`` with Python floats."""
        return {
            n: {c: float(v[i]) for c, v in self.columns.items()} for i, n in enumerate(self.names)
        }

    def __str__(self) -> str:
        header = ["", *self.columns]
        rows = [
            [n, *(f"{float(v[i]):.4g}" for v in self.columns.values())]
            for i, n in enumerate(self.names)
        ]
        widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
        lines = [
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in [header, *rows]
        ]
        return "\n".join(lines)

    __repr__ = __str__

"""parax 0.4's module path for `field` (``from parax.field import field``).

The package imports `field` from here, so ``orrery.parax.field`` stays the function once
this module is loaded (as in parax 0.4).
"""

from ._field import field

__all__ = ["field"]

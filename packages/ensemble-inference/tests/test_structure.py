"""The modules of orrery.ensemble import each other in one direction only (issue 34).

Read from the source (`orrery.interface.testing`): every import of a module of the package
by another, at module level or inside a function (where a cycle would otherwise hide), is an
edge of a graph that must have no cycle; imports under ``if TYPE_CHECKING:`` never run and
are not edges. `lint-imports` checks the same on the installed package (the
``acyclic_siblings`` contract in the root pyproject.toml).
"""

import orrery.ensemble
from orrery.interface.testing import (
    import_cycle,
    import_graph,
    module_imports,
    offset_keys,
    package_modules,
    private_imports,
)

MODULES = package_modules(orrery.ensemble)


def test_the_graph_reader_sees_imports():
    assert "orrery.ensemble._kernels" in module_imports(MODULES, "orrery.ensemble.map")


def test_no_import_cycle_inside_the_package():
    cycle = import_cycle(import_graph(orrery.ensemble))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_no_module_at_all_imports_a_private_name_of_a_public_module():
    # Shared helpers live in private modules (`_kernels`, `_checks`, ...), as in equinox/optax.
    # Private importers count too (it also covers every public importer).
    assert private_imports(MODULES, private_importers=True) == set()


def test_random_streams_are_split_never_offset():
    assert {m: offset_keys(p) for m, p in MODULES.items() if offset_keys(p)} == {}

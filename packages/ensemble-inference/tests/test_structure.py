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
    package_modules,
    private_imports,
)

MODULES = package_modules(orrery.ensemble)
# (importer, module, name): private names a public module still takes from a public
# sibling, to be moved to a private module (architecture review, item 3).
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = {
    ("orrery.ensemble.map", "orrery.ensemble.primitives", "_step"),
    ("orrery.ensemble.vi", "orrery.ensemble.primitives", "_all_finite"),
    ("orrery.ensemble.vi", "orrery.ensemble.primitives", "_select"),
}


def test_the_graph_reader_sees_imports():
    assert "orrery.ensemble.primitives" in module_imports(MODULES, "orrery.ensemble.map")


def test_no_import_cycle_inside_the_package():
    cycle = import_cycle(import_graph(orrery.ensemble))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_no_public_module_imports_a_private_name_of_a_public_sibling():
    found = private_imports(MODULES)
    assert found <= KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)

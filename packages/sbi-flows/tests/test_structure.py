"""The modules of orrery.sbi import each other in one direction only (issue 34).

Read from the source (`orrery.interface.testing`): every import of a module of the package
by another, at module level or inside a function (where a cycle would otherwise hide), is an
edge of a graph that must have no cycle; imports under ``if TYPE_CHECKING:`` never run and
are not edges. `lint-imports` checks the same on the installed package (the
``acyclic_siblings`` contract in the root pyproject.toml).
"""

import orrery.sbi
from orrery.interface.testing import (
    import_cycle,
    import_graph,
    module_imports,
    offset_keys,
    package_modules,
    private_imports,
)

MODULES = package_modules(orrery.sbi)
# (importer, module, name): private names a public module still takes from a public
# sibling, to be moved to a private module (architecture review, item 3).
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


def test_the_graph_reader_sees_imports():
    assert "orrery.sbi.streaming" in module_imports(MODULES, "orrery.sbi.dataset")


def test_no_import_cycle_inside_the_package():
    cycle = import_cycle(import_graph(orrery.sbi))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_no_public_module_imports_a_private_name_of_a_public_sibling():
    # Private modules count as importers too: a shared helper belongs in a private module.
    found = private_imports(MODULES, private_importers=True)
    assert found <= KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)


def test_random_streams_are_split_never_offset():
    assert {m: offset_keys(p) for m, p in MODULES.items() if offset_keys(p)} == {}

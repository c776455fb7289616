"""The modules of orrery.interface import each other in one direction only (issue 34).

Read from the source (`orrery.interface.testing`): every import of a module of the package
by another, at module level or inside a function (where a cycle would otherwise hide), is an
edge of a graph that must have no cycle; imports under ``if TYPE_CHECKING:`` never run and
are not edges. `lint-imports` checks the same on the installed package (the
``acyclic_siblings`` contract in the root pyproject.toml).
"""

import orrery.interface
from orrery.interface.testing import (
    import_cycle,
    import_graph,
    module_imports,
    offset_keys,
    package_modules,
    private_imports,
)

MODULES = package_modules(orrery.interface)
# (importer, module, name): private names a public module still takes from a public
# sibling, to be moved to a private module (architecture review, item 3).
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


def test_the_graph_reader_sees_imports():
    assert "orrery.interface.errors" in module_imports(MODULES, "orrery.interface._json")


def test_no_import_cycle_inside_the_package():
    cycle = import_cycle(import_graph(orrery.interface))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_no_module_imports_a_private_name_of_a_public_module():
    found = private_imports(MODULES, private_importers=True)
    assert found <= KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)


def test_random_streams_are_never_offset():
    assert {m: offset_keys(p) for m, p in MODULES.items() if offset_keys(p)} == {}


def test_cycles_and_type_checking_imports(tmp_path):
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": set()}) is None
    (tmp_path / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
        "def f():\n    from .c import g\n"
    )
    (tmp_path / "b.py").write_text("from . import a\nfrom .a import _hidden\n")
    (tmp_path / "c.py").write_text("")
    modules = {f"pkg.sub.{m}": tmp_path / f"{m}.py" for m in "abc"}
    assert module_imports(modules, "pkg.sub.a") == {"pkg.sub.c"}  # b only for type checking
    assert module_imports(modules, "pkg.sub.b") == {"pkg.sub.a"}
    assert private_imports(modules) == {("pkg.sub.b", "pkg.sub.a", "_hidden")}
    (tmp_path / "_d.py").write_text("from .a import _hidden\n")
    modules["pkg.sub._d"] = tmp_path / "_d.py"
    assert ("pkg.sub._d", "pkg.sub.a", "_hidden") not in private_imports(modules)
    assert ("pkg.sub._d", "pkg.sub.a", "_hidden") in private_imports(
        modules, private_importers=True
    )


def test_offset_keys_finds_seed_and_key_arithmetic(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import jax\nk = jax.random.key(self.seed + 1)\nj = key - 2\n"
        "n = count + 1\nsub = jax.random.split(key)[1]\n"
    )
    assert offset_keys(bad) == [2, 3]

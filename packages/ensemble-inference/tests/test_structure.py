"""The modules of orrery.ensemble import each other in one direction only (issue 34).

Read from the source (`orrery.interface.testing`): every import of a module of the package
by another, at module level or inside a function (where a cycle would otherwise hide), is an
edge of a graph that must have no cycle; imports under ``if TYPE_CHECKING:`` never run and
are not edges. `lint-imports` checks the same on the installed package (the
``acyclic_siblings`` contract in the root pyproject.toml).
"""

import ast
from pathlib import Path

import orrery.ensemble
from orrery.interface.testing import (
    import_cycle,
    import_graph,
    module_imports,
    package_modules,
    private_imports,
)

MODULES = package_modules(orrery.ensemble)


def test_the_graph_reader_sees_imports():
    assert "orrery.ensemble._kernels" in module_imports(MODULES, "orrery.ensemble.map")


def test_no_import_cycle_inside_the_package():
    cycle = import_cycle(import_graph(orrery.ensemble))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_no_public_module_imports_a_private_name_of_a_public_sibling():
    # Shared helpers live in private modules (`_kernels`, `_checks`, ...), as in equinox/optax.
    assert private_imports(MODULES) == set()


def _private_names_taken(name: str, path: Path) -> set[tuple[str, str]]:
    """``(module, name)``: underscored names ``name`` takes from public modules of the package."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            base = ".".join([*here[: len(here) - node.level + 1], *([base] if base else [])])
        if base not in MODULES or any(p.startswith("_") for p in base.split(".")[2:]):
            continue
        for alias in node.names:
            n = alias.name
            if n.startswith("_") and not n.startswith("__") and f"{base}.{n}" not in MODULES:
                out.add((base, n))
    return out


def test_no_module_at_all_imports_a_private_name_of_a_public_module():
    # private_imports looks at public importers; a private module must not reach in either.
    found = {(m, *hit) for m, p in MODULES.items() for hit in _private_names_taken(m, p)}
    assert found == set()


def test_the_private_name_reader_sees_a_private_import(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text("from .primitives import _hidden, ensemble_step\n")
    taken = _private_names_taken("orrery.ensemble._fake", fake)
    assert taken == {("orrery.ensemble.primitives", "_hidden")}


def _offset_keys(path: Path) -> list[int]:
    """Lines that add to or subtract from a seed or key (``seed + 1``): streams must be split."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            for side in (node.left, node.right):
                word = side.id if isinstance(side, ast.Name) else getattr(side, "attr", "")
                if "seed" in word.lower() or "key" in word.lower():
                    lines.append(node.lineno)
    return lines


def test_random_streams_are_split_never_offset(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import jax\nk = jax.random.key(self.seed + 1)\n")
    assert _offset_keys(bad) == [2]
    found = {name: _offset_keys(p) for name, p in MODULES.items() if _offset_keys(p)}
    assert found == {}

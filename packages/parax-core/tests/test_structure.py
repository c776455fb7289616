"""The modules of orrery.parax import each other in one direction only (issues 13, 34)."""

import ast
from pathlib import Path

import orrery.parax
from orrery.interface.testing import (
    import_cycle,
    import_graph,
    offset_keys,
    package_modules,
    private_imports,
)

PKG = Path(orrery.parax.__file__).parent


def _internal_imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.level == 0 and (node.module or "").startswith("orrery.parax."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("orrery.parax."):
                    out.add(a.name.split(".")[2])
    return out


def test_no_import_cycle_inside_the_package():
    # Imports under `if TYPE_CHECKING:` never run (sampling names `Module` in annotations
    # that way), as with import-linter's exclude_type_checking_imports.
    cycle = import_cycle(import_graph(orrery.parax))
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_the_graph_reader_sees_imports():
    graph = import_graph(orrery.parax)
    assert "orrery.parax.sampling" in graph["orrery.parax.module"]
    assert "orrery.parax.module" not in graph["orrery.parax.sampling"]


def test_no_module_imports_the_package_root():
    for p in PKG.glob("*.py"):
        if p.stem == "__init__":
            continue
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                names = {a.name for a in node.names}
                assert "__version__" not in names, p.name


def _v011_imports(path: Path) -> set[str]:
    """Modules of `orrery.parax.v011` that `path` imports (relative, level 1)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out


def test_no_import_cycle_inside_v011():
    sub = PKG / "v011"
    modules = {p.stem for p in sub.glob("*.py") if p.stem != "__init__"}
    graph = {m: _v011_imports(sub / f"{m}.py") & modules for m in modules}
    done: set[str] = set()

    def visit(m: str, stack: tuple[str, ...]) -> None:
        assert m not in stack, f"import cycle: {' -> '.join([*stack, m])}"
        if m in done:
            return
        for dep in sorted(graph[m]):
            visit(dep, (*stack, m))
        done.add(m)

    for m in sorted(modules):
        visit(m, ())
    assert done == modules
    # v011 builds on the 0.4 package (shared bijectors) but the 0.4 modules never import it.
    for p in PKG.glob("*.py"):
        assert "v011" not in _internal_imports(p), p.name


MODULES = package_modules(orrery.parax)


def test_no_module_at_all_imports_a_private_name_of_a_public_module():
    # Shared helpers live in private modules (`_elementwise`, `_util`, ...), as in equinox.
    # Private importers count too (it also covers every public importer).
    assert private_imports(MODULES, private_importers=True) == set()


def test_random_streams_are_split_never_offset():
    assert {m: offset_keys(p) for m, p in MODULES.items() if offset_keys(p)} == {}

"""The modules of orrery.parax import each other in one direction only (issue 13)."""

import ast
from pathlib import Path

import orrery.parax

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
    modules = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    graph = {m: _internal_imports(PKG / f"{m}.py") & modules for m in modules}
    order, state = [], {}

    def visit(m, stack):
        if state.get(m) == "done":
            return
        assert state.get(m) != "active", f"import cycle: {' -> '.join([*stack, m])}"
        state[m] = "active"
        for dep in sorted(graph[m]):
            visit(dep, [*stack, m])
        state[m] = "done"
        order.append(m)

    for m in sorted(modules):
        visit(m, [])
    assert len(order) == len(modules)


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

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

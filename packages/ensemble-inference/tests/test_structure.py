"""The modules of orrery.ensemble import each other in one direction only (issue 34).

Read from the source with `ast`: every import of a module of the package by another,
at module level or inside a function (where a cycle would otherwise hide), is an
edge of a graph that must have no cycle. `lint-imports` checks the same on the
installed package (the ``acyclic_siblings`` contract in the root pyproject.toml).
"""

import ast
from pathlib import Path

import orrery.ensemble

NAME = "orrery.ensemble"
PKG = Path(orrery.ensemble.__file__).parent
# (importer, module, name): private names a public module still takes from a public
# sibling, to be moved to a private module (architecture review, item 3).
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = {
    ("orrery.ensemble.map", "orrery.ensemble.primitives", "_step"),
    ("orrery.ensemble.vi", "orrery.ensemble.primitives", "_all_finite"),
    ("orrery.ensemble.vi", "orrery.ensemble.primitives", "_select"),
}


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` for every module and subpackage of the package."""
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((NAME, *parts))] = path
    return out


MODULES = _modules()


def _is_private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split(".")[2:])


def _from_imports(name: str) -> list[tuple[str, list[str]]]:
    """``(absolute module, imported names)`` of every ``from ... import`` in ``name``."""
    path = MODULES[name]
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = here[: len(here) - node.level + 1]
                base = ".".join([*prefix, *([base] if base else [])])
            out.append((base, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def _imports(name: str) -> set[str]:
    """Modules of the package ``name`` imports (``from pkg import mod`` counts as ``mod``)."""
    out = set()
    for base, names in _from_imports(name):
        subs = {f"{base}.{n}" for n in names} & MODULES.keys()
        out.update(subs if subs else {base})
        if len(subs) < len(names):
            out.add(base)
    return (out & MODULES.keys()) - {name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path, or None."""
    done: set[str] = set()

    def visit(m: str, stack: list[str]) -> list[str] | None:
        if m in stack:
            return [*stack[stack.index(m) :], m]
        if m in done:
            return None
        for dep in sorted(graph[m]):
            found = visit(dep, [*stack, m])
            if found:
                return found
        done.add(m)
        return None

    for m in sorted(graph):
        found = visit(m, [])
        if found:
            return found
    return None


def test_the_graph_reader_sees_imports_and_cycles():
    assert "orrery.ensemble.primitives" in _imports("orrery.ensemble.map")
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_the_package():
    graph = {m: _imports(m) for m in MODULES}
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_no_public_module_imports_a_private_name_of_a_public_sibling():
    found = set()
    for name in MODULES:
        if _is_private(name):
            continue
        for base, names in _from_imports(name):
            if base not in MODULES or _is_private(base):
                continue
            for n in names:
                if n.startswith("_") and not n.startswith("__") and f"{base}.{n}" not in MODULES:
                    found.add((name, base, n))
    assert found <= KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)

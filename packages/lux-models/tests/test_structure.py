"""The modules of orrery.lux import each other in one direction only (issue 34).

Read from the source with `ast`: every import of a module of the package by another,
at module level or inside a function (where a cycle would otherwise hide), is an
edge of a graph that must have no cycle. Imports under ``if TYPE_CHECKING:`` are
annotations only and never run (`optimize` names `Lux` that way), so they are not
edges, as with ``exclude_type_checking_imports`` in the contract. `lint-imports`
checks the same on the installed package (the ``acyclic_siblings`` contract in the
root pyproject.toml).
"""

import ast
from pathlib import Path

import orrery.lux

NAME = "orrery.lux"
PKG = Path(orrery.lux.__file__).parent
# (importer, module, name): private names a public module still takes from a public
# sibling, to be moved to a private module (architecture review, item 3).
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


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


def _type_checking_blocks(tree: ast.AST) -> list[ast.stmt]:
    """The statements under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    out: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                out.extend(node.body)
    return out


def _from_imports(name: str) -> list[tuple[str, list[str]]]:
    """``(absolute module, imported names)`` of every ``from ... import`` in ``name``."""
    path = MODULES[name]
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for block in _type_checking_blocks(tree) for n in ast.walk(block)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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
    # a module-level import, a function-level one, and one only under TYPE_CHECKING
    assert "orrery.lux._transform_base" in _imports("orrery.lux._concat")
    assert "orrery.lux._serialize" in _imports("orrery.lux.lux")  # inside Lux.save
    assert "orrery.lux._likelihood" in _imports("orrery.lux.optimize")
    assert "orrery.lux.lux" not in _imports("orrery.lux.optimize")  # TYPE_CHECKING only
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

"""Checks a package's tests run on its own source: the import graph and private names.

Every orrery package asserts from its source, with `ast`, that its modules import each other
in one direction only. An import inside a function counts (that is where a cycle hides);
one under ``if TYPE_CHECKING:`` does not (it never runs), as with import-linter's
``exclude_type_checking_imports``.

Example:
    >>> import orrery.interface
    >>> from orrery.interface.testing import import_cycle, import_graph
    >>> import_cycle(import_graph(orrery.interface)) is None
    True
    >>> import_cycle({"a": {"b"}, "b": {"a"}})
    ['a', 'b', 'a']
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

__all__ = [
    "import_cycle",
    "import_graph",
    "module_imports",
    "offset_keys",
    "package_modules",
    "private_imports",
]


def package_modules(package: ModuleType) -> dict[str, Path]:
    """``{dotted name: file}`` of every module and subpackage of ``package``."""
    if package.__file__ is None:
        raise TypeError(f"package: {package.__name__} has no __init__.py to start from")
    root = Path(package.__file__).parent
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package.__name__, *parts))] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of every node under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def _from_imports(name: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """``(absolute module, imported names)`` of every import that runs in module ``name``."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = here[: len(here) - node.level + 1]
                base = ".".join([*prefix, *([base] if base else [])])
            yield base, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def module_imports(modules: Mapping[str, Path], name: str) -> set[str]:
    """The modules of ``modules`` that ``name`` imports (``from pkg import mod`` is ``mod``)."""
    out = set()
    for base, names in _from_imports(name, modules[name]):
        subs = {f"{base}.{n}" for n in names} & modules.keys()
        out.update(subs if subs else {base})
        if len(subs) < len(names):
            out.add(base)
    return (out & modules.keys()) - {name}


def import_graph(package: ModuleType) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module of ``package``."""
    modules = package_modules(package)
    return {name: module_imports(modules, name) for name in modules}


def import_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node) :], node]
        if node in done:
            return None
        for dep in sorted(graph.get(node, ())):
            found = visit(dep, [*stack, node])
            if found:
                return found
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


def _is_private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split(".")[2:])


def private_imports(
    modules: Mapping[str, Path], *, private_importers: bool = False
) -> set[tuple[str, str, str]]:
    """``(importer, module, name)``: private names taken from public modules of the package.

    By default only public importers count; ``private_importers=True`` also reports a private
    module reaching into a public one (its shared helper belongs in a private module too).
    """
    found = set()
    for name, path in modules.items():
        if _is_private(name) and not private_importers:
            continue
        for base, names in _from_imports(name, path):
            if base not in modules or _is_private(base):
                continue
            for n in names:
                if n.startswith("_") and not n.startswith("__") and f"{base}.{n}" not in modules:
                    found.add((name, base, n))
    return found


def offset_keys(path: Path) -> list[int]:
    """Lines of ``path`` that add to or subtract from a seed or key (``seed + 1``).

    Random streams are split (``jax.random.split``/``fold_in``), never offset: with offsets
    seed 1's first stream is seed 0's second.
    """
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            for side in (node.left, node.right):
                word = side.id if isinstance(side, ast.Name) else getattr(side, "attr", "")
                if "seed" in word.lower() or "key" in word.lower():
                    lines.append(node.lineno)
    return sorted(set(lines))

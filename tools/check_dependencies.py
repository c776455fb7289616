"""Every third-party module a package imports is a declared dependency of that package.

For each distribution under packages/, reads every module of ``src/`` with
``ast`` and sorts its imports:

- the standard library, ``__future__`` and the ``orrery`` namespace are not
  checked here (sibling imports are the import-linter contracts' job);
- a **required** import runs when the module is imported: at module level, or
  in a class body, outside any ``try`` that catches ``ImportError``. Its
  distribution must be in ``[project] dependencies``;
- an **optional** import runs only on demand: inside a function (behind
  ``require(...)``), in a ``try`` whose handler catches ``ImportError`` /
  ``ModuleNotFoundError`` (or ``Exception``), or under ``if TYPE_CHECKING:``.
  Its distribution must be declared, as a dependency or in an extra
  (``[project.optional-dependencies]``).

Module names are mapped to distributions with the installed metadata
(``importlib.metadata.packages_distributions``, so run it in the synced
workspace), falling back to the module name itself. Exit 1 with one line per
undeclared import.

Usage: python tools/check_dependencies.py [--packages packages]
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IGNORED = set(sys.stdlib_module_names) | {"__future__", "orrery"}
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalize(re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0])


@dataclass(frozen=True)
class Import:
    module: str  # top-level module name
    path: Path
    line: int
    optional: bool
    extra: str | None = None  # "dist[name]" named by a require(...) call


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in IMPORT_ERRORS for n in names)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _imports(tree: ast.AST, path: Path) -> Iterator[Import]:
    def visit(node: ast.AST, optional: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name.split(".")[0], path, node.lineno, optional)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield Import(node.module.split(".")[0], path, node.lineno, optional)
            return
        if isinstance(node, ast.Call) and _call_name(node.func) == "require":
            if node.args and isinstance(node.args[0], ast.Constant):
                extra = next(
                    (
                        k.value.value
                        for k in node.keywords
                        if k.arg == "extra" and isinstance(k.value, ast.Constant)
                    ),
                    None,
                )
                module = str(node.args[0].value).split(".")[0]
                yield Import(module, path, node.lineno, True, extra)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            optional = True
        if isinstance(node, ast.Try):
            guarded = any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                yield from visit(child, optional or guarded)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                yield from visit(child, optional)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, True)
            for child in node.orelse:
                yield from visit(child, optional)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, optional)

    yield from visit(tree, False)


def _check_require(
    imp: Import, dists: set[str], dist: str, by_extra: dict[str, set[str]]
) -> str | None:
    match = re.fullmatch(r"([\w.-]+)\[([\w.-]+)\]", imp.extra or "")
    if match is None or _normalize(match[1]) != _normalize(dist):
        return f'require("{imp.module}", extra="{imp.extra}"): expected extra="{dist}[<name>]"'
    if match[2] not in by_extra:
        return f'require(..., extra="{imp.extra}"): {dist} declares no extra "{match[2]}"'
    if not dists & by_extra[match[2]]:
        return (
            f'require("{imp.module}", extra="{imp.extra}"): the extra "{match[2]}" of {dist} '
            f"does not list {sorted(dists)}"
        )
    return None


def check_package(pkg: Path, module_dists: dict[str, list[str]]) -> list[str]:
    """Undeclared imports of one distribution, one line each."""
    project = tomllib.loads((pkg / "pyproject.toml").read_text())["project"]
    required = {_requirement_name(r) for r in project.get("dependencies", [])}
    by_extra = {
        name: {_requirement_name(r) for r in reqs}
        for name, reqs in project.get("optional-dependencies", {}).items()
    }
    extras = set().union(*by_extra.values())
    problems = []
    for path in sorted((pkg / "src").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imp in _imports(tree, path):
            if imp.module in IGNORED:
                continue
            dists = {_normalize(d) for d in module_dists.get(imp.module, [imp.module])}
            where = f"{path.relative_to(ROOT)}:{imp.line}"
            if imp.extra is not None:
                problem = _check_require(imp, dists, pkg.name, by_extra)
                if problem:
                    problems.append(f"{where}: {problem}")
                continue
            if dists & required:
                continue
            if imp.optional and dists & extras:
                continue
            if dists & extras:
                problems.append(
                    f"{where}: `{imp.module}` is imported unconditionally but "
                    f"{pkg.name} declares {sorted(dists & extras)} only as an extra"
                    " (import it inside the function that needs it, or make it a dependency)"
                )
            else:
                kind = "optional import of" if imp.optional else "import of"
                problems.append(
                    f"{where}: {kind} `{imp.module}` (distribution {sorted(dists)}) is not "
                    f"declared by {pkg.name}: add it to "
                    + ("an extra in" if imp.optional else "dependencies in")
                    + f" {pkg.relative_to(ROOT)}/pyproject.toml"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=Path, default=ROOT / "packages")
    args = parser.parse_args(argv)
    module_dists = packages_distributions()
    pkgs = sorted(p for p in args.packages.iterdir() if (p / "pyproject.toml").is_file())
    problems = [line for pkg in pkgs for line in check_package(pkg, module_dists)]
    for line in problems:
        print(line)
    status = "FAILED" if problems else "ok"
    print(
        f"check_dependencies: {status}: {len(problems)} undeclared imports in {len(pkgs)} packages"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

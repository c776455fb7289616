"""The API reference: one generated page per public module of every distribution.

Used as a MkDocs hook (``hooks:`` in mkdocs.yml), so a new module gets its
page without anyone editing the docs: ``on_config`` adds an "API reference"
section to the navigation and ``on_files`` adds one virtual page per module,
``api/<module path>.md``, holding a mkdocstrings ``::: <module>`` directive.
``public_modules()`` is also what the docs test uses to check that every
public module has a built page.

A module is public when no part of its dotted path starts with ``_``. The
package itself (``orrery.sbi``) is documented on its package page
(docs/packages/<dist>.md); its submodules and subpackages get pages here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ROOT / "packages"


def public_modules(packages: Path = PACKAGES) -> dict[str, list[str]]:
    """Map each distribution to the dotted paths of its public submodules, sorted."""
    out: dict[str, list[str]] = {}
    for src in sorted(packages.glob("*/src/orrery")):
        dist = src.parent.parent.name
        mods = []
        for path in src.rglob("*.py"):
            parts = list(path.relative_to(src.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if len(parts) <= 2 or any(p.startswith("_") for p in parts):
                continue  # the namespace, the package itself, or private
            mods.append(".".join(parts))
        out[dist] = sorted(mods)
    return out


def page_path(module: str) -> str:
    """Where a module's page lives in the docs tree."""
    return f"api/{module}.md"


def _page(module: str) -> str:
    return f"::: {module}\n"


def on_config(config: Any) -> Any:
    """Append the API reference section to the navigation."""
    section = [
        {dist: [{mod: page_path(mod)} for mod in mods]}
        for dist, mods in public_modules().items()
        if mods
    ]
    config["nav"].append({"API reference": section})
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add one generated page per public module."""
    from mkdocs.structure.files import File

    for mods in public_modules().values():
        for mod in mods:
            files.append(File.generated(config, page_path(mod), content=_page(mod)))
    return files

"""Check the built documentation site: run by `make docs` (and so by `make test`).

Fails (exit 1, one line per problem) when:

- a raw reST role (``:class:`x```, ``:func:``, ``:meth:`` …) shows as text:
  the docstrings are Google style and MkDocs does not read reST, so a role is
  printed literally; write `x` or a link ``[x][orrery.pkg.x]`` instead;
- a cross-reference was left unresolved (a literal ``[x][orrery.pkg.x]`` or an
  ``<autoref>`` tag that autorefs did not turn into a link);
- a public module has no API page (``api/<module>/index.html``), or a
  distribution has no package page;
- an API page documents nothing (mkdocstrings rendered no object).

Usage: python tools/check_docs.py [--site site]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_api_pages import public_modules

ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|mod|obj|exc|data|const|ref|term|doc|any):(?:<code>|`)"
)
UNRESOLVED = re.compile(r"\]\[[A-Za-z_][\w.]*\]|<autoref\b")
TAG = re.compile(r"<[^>]+>")
CODE = re.compile(r"<(pre|code)\b.*?</\1>", re.DOTALL)  # subscripts in code are not links


def _context(html: str, match: re.Match) -> str:
    text = TAG.sub("", html[max(0, match.start() - 80) : match.end() + 60])
    return " ".join(text.split())


def check(site: Path) -> list[str]:
    """Every problem found in the built site, one line each."""
    problems = []
    if not (site / "index.html").is_file():
        return [f"{site}: no index.html; build the site first (make docs)"]
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        rel = page.relative_to(site)
        prose = CODE.sub("<code></code>", html)
        for regex, text, what in (
            (ROLE, html, "raw reST role"),
            (UNRESOLVED, prose, "unresolved reference"),
        ):
            for match in regex.finditer(text):
                problems.append(f"{rel}: {what}: ...{_context(text, match)}...")
    for dist, modules in public_modules().items():
        if not (site / "packages" / dist / "index.html").is_file():
            problems.append(f"packages/{dist}: no package page")
        for module in modules:
            page = site / "api" / module / "index.html"
            if not page.is_file():
                problems.append(f"{module}: no API page ({page.relative_to(site)})")
            elif 'class="doc doc-object' not in page.read_text(encoding="utf-8"):
                problems.append(f"{module}: its API page documents nothing")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("site"))
    args = parser.parse_args(argv)
    problems = check(args.site)
    n_modules = sum(len(m) for m in public_modules().values())
    for line in problems:
        print(line)
    status = "FAILED" if problems else "ok"
    print(f"check_docs: {status}: {len(problems)} problems; {n_modules} public modules checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

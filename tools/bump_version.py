"""Bump one distribution's version and date its changelog section.

`make bump PKG=<dist> PART=patch|minor|major` runs `uv version --package
<dist> --bump <part>`, relocks, and then this script releases the changelog in
Keep a Changelog form: what sits under `## [Unreleased]` becomes
`## [<version>] - <today>`, and an empty `## [Unreleased]` opens above it.

Usage: python tools/bump_version.py <dist>
"""

from __future__ import annotations

import datetime
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    dist = sys.argv[1]
    pkg = ROOT / "packages" / dist
    if not pkg.is_dir():
        print(f"bump: unknown distribution {dist!r}", file=sys.stderr)
        return 2
    version = tomllib.loads((pkg / "pyproject.toml").read_text())["project"]["version"]
    log = pkg / "CHANGELOG.md"
    text = log.read_text()
    released = f"## [{version}] - {datetime.date.today().isoformat()}"
    if f"## [{version}]" in text:
        print(f"bump: {log.relative_to(ROOT)} already has a section for {version}", file=sys.stderr)
        return 1
    if "## [Unreleased]" in text:
        text = text.replace("## [Unreleased]", f"## [Unreleased]\n\n{released}", 1)
    else:
        head, sep, rest = text.partition("\n## ")
        opened = f"## [Unreleased]\n\n{released}\n"
        text = f"{head}\n{opened}{sep}{rest}" if sep else f"{text}\n{opened}"
    log.write_text(text)
    print(f"{dist} is now {version}: edit {log.relative_to(ROOT)}, commit, tag {dist}-v{version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

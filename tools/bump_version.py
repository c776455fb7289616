"""Bump one distribution's version and open its changelog entry.

`make bump PKG=<dist> PART=patch|minor|major` runs `uv version --package
<dist> --bump <part>`, relocks, and then this script adds a heading for the
new version at the top of the distribution's CHANGELOG.md.

Usage: python tools/bump_version.py <dist>
"""

from __future__ import annotations

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
    heading = f"## {version} — unreleased"
    if heading not in text:
        head, sep, rest = text.partition("\n## ")
        log.write_text(
            f"{head}\n{heading}\n\n- (describe the change)\n{sep}{rest}"
            if sep
            else f"{text}\n{heading}\n\n- (describe the change)\n"
        )
    print(f"{dist} is now {version}: edit {log.relative_to(ROOT)}, commit, tag {dist}-v{version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

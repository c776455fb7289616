"""Check that `orrery` stays an implicit (PEP 420) namespace package.

Sources: no `packages/*/src/orrery/__init__.py`; each distribution owns exactly
one subpackage `src/orrery/<name>/` with `__init__.py` and `py.typed`.
Wheels (with --wheels DIR): no wheel ships `orrery/__init__.py`, each ships
its own `orrery/<name>/__init__.py` and `py.typed`.

Usage: python tools/check_namespace.py [--sources] [--wheels dist]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def check_sources() -> list[str]:
    problems = []
    for ns in sorted(ROOT.glob("packages/*/src/orrery")):
        dist = ns.parent.parent.name
        if (ns / "__init__.py").exists():
            problems.append(f"{dist}: {ns / '__init__.py'} exists")
        subs = [p for p in ns.iterdir() if p.is_dir() and p.name != "__pycache__"]
        if len(subs) != 1:
            problems.append(f"{dist}: expected one subpackage under src/orrery, found {subs}")
            continue
        for needed in ("__init__.py", "py.typed"):
            if not (subs[0] / needed).is_file():
                problems.append(f"{dist}: {subs[0] / needed} is missing")
    if not problems:
        count = len(list(ROOT.glob("packages/*/src/orrery")))
        print(f"namespace (sources): ok, {count} distributions")
    return problems


def check_wheels(directory: Path) -> list[str]:
    problems = []
    wheels = sorted(directory.glob("*.whl"))
    if not wheels:
        return [f"no wheels in {directory}"]
    for wheel in wheels:
        names = zipfile.ZipFile(wheel).namelist()
        if "orrery/__init__.py" in names:
            problems.append(f"{wheel.name} ships orrery/__init__.py")
        subs = {n.split("/")[1] for n in names if n.startswith("orrery/") and n.count("/") >= 2}
        if len(subs) != 1:
            problems.append(f"{wheel.name}: expected one orrery subpackage, found {sorted(subs)}")
            continue
        sub = subs.pop()
        for needed in ("__init__.py", "py.typed"):
            if f"orrery/{sub}/{needed}" not in names:
                problems.append(f"{wheel.name}: orrery/{sub}/{needed} missing")
    if not problems:
        print(f"namespace (wheels): ok, {len(wheels)} wheels")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", action="store_true", help="check the source trees")
    parser.add_argument("--wheels", type=Path, help="check every wheel in this directory")
    args = parser.parse_args()
    problems = []
    if args.sources or not args.wheels:
        problems += check_sources()
    if args.wheels:
        problems += check_wheels(args.wheels)
    for p in problems:
        print(f"namespace: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run pyright over every package's sources and hold each package to its error ratchet.

The ceilings live in ``tools/pyright_ratchet.json`` (``{distribution: max_errors}``). A package
over its ceiling fails the check; one under it is reported so the ceiling can be lowered in the
same commit. A package pinned at zero stays clean.

Usage: ``python tools/check_types.py [--pyright PATH] [--update]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATCHET = ROOT / "tools" / "pyright_ratchet.json"


def _run_pyright(pyright: str) -> dict:
    proc = subprocess.run(
        [pyright, "--outputjson"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit("check_types: pyright did not produce a JSON report") from None


def _errors_by_package(report: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = collections.defaultdict(list)
    for diag in report.get("generalDiagnostics", []):
        if diag.get("severity") != "error":
            continue
        path = Path(diag["file"]).resolve()
        try:
            rel = path.relative_to(ROOT / "packages")
        except ValueError:
            rel = path
        line = diag["range"]["start"]["line"] + 1
        errors[rel.parts[0]].append(f"{rel}:{line}: {diag['message'].splitlines()[0]}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    beside = Path(sys.executable).parent / "pyright"
    parser.add_argument("--pyright", default=str(beside) if beside.exists() else "pyright")
    parser.add_argument("--update", action="store_true", help="lower ceilings to the counts")
    args = parser.parse_args()

    ceilings: dict[str, int] = json.loads(RATCHET.read_text())
    report = _run_pyright(args.pyright)
    if report.get("summary", {}).get("filesAnalyzed", 0) == 0:
        print("check_types: pyright analysed no file; check [tool.pyright] include")
        return 1
    errors = _errors_by_package(report)
    unknown = sorted(set(errors) - set(ceilings))
    failed = False
    for dist in sorted(set(ceilings) | set(errors)):
        count, ceiling = len(errors.get(dist, [])), ceilings.get(dist, 0)
        status = "ok" if count <= ceiling else "OVER"
        print(f"  {dist:20s} {count:4d} errors (ceiling {ceiling})  {status}")
        if count > ceiling:
            failed = True
            for line in errors[dist]:
                print(f"    {line}")
        elif count < ceiling:
            print(f"    fewer than the ceiling: lower it to {count} ({RATCHET.name})")
    if unknown:
        print(f"check_types: packages without a ceiling: {', '.join(unknown)}")
    if args.update and not failed:
        new = {dist: len(errors.get(dist, [])) for dist in ceilings}
        RATCHET.write_text(json.dumps(new, indent=2) + "\n")
        print(f"check_types: ceilings lowered in {RATCHET.name}")
    total = report["summary"]["errorCount"]
    files = report["summary"]["filesAnalyzed"]
    print(f"check_types: {total} errors in {files} files; {'FAILED' if failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run every package's benchmark scripts (`packages/*/benchmarks/*.py`).

Each script prints its own ratios against a baseline measured in the same run.
Pass `--quick` to forward a quick mode to scripts that support it, and
`--only <dist>` to restrict to some distributions.

Usage: python tools/run_benchmarks.py [--quick] [--only parax-core ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="pass --quick to scripts that accept it"
    )
    parser.add_argument("--only", nargs="*", help="distributions to run (default: all)")
    args = parser.parse_args()
    scripts = sorted(ROOT.glob("packages/*/benchmarks/*.py"))
    if args.only:
        scripts = [s for s in scripts if s.parent.parent.name in args.only]
    failed = []
    for script in scripts:
        if script.name.startswith("_"):
            continue
        cmd = [sys.executable, str(script)]
        if args.quick and "--quick" in script.read_text():
            cmd.append("--quick")
        print(f"\n=== {script.relative_to(ROOT)} ===", flush=True)
        start = time.perf_counter()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            failed.append(str(script.relative_to(ROOT)))
        print(f"--- {time.perf_counter() - start:.1f} s", flush=True)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

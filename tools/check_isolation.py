"""Install each distribution alone into an empty venv and run its own tests.

For every wheel in --dist: create a fresh virtual environment, install only
that wheel (with its extras) plus the orrery-interface wheel, resolving
everything else from the package registry, then import the package and run
`packages/<dist>/tests` against the installed wheel. A package that imports an
undeclared sibling or third-party module fails here.

Usage: python tools/check_isolation.py --dist dist [--only parax-core ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_TOOLS = ["pytest>=8.3", "hypothesis>=6.100"]


def _uv() -> list[str]:
    return ["uv"] if shutil.which("uv") else [sys.executable, "-m", "uv"]


def _wheel(dist_dir: Path, dist: str) -> Path:
    found = sorted(dist_dir.glob(f"{dist.replace('-', '_')}-*.whl"))
    if not found:
        raise SystemExit(f"isolation: no wheel for {dist} in {dist_dir}; run `make build` first")
    return found[-1]


def check(dist: str, dist_dir: Path) -> bool:
    meta = tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())["project"]
    module = meta.get("name")
    extras = sorted(meta.get("optional-dependencies", {}))
    wheel = _wheel(dist_dir, dist)
    spec = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    reqs = [spec]
    if dist != "orrery-interface":
        reqs.append(str(_wheel(dist_dir, "orrery-interface")))
    with tempfile.TemporaryDirectory(prefix=f"iso-{dist}-") as tmp:
        venv = Path(tmp) / "venv"
        py = venv / "bin" / "python"
        subprocess.run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [*_uv(), "pip", "install", "-q", "--python", str(py), *reqs, *TEST_TOOLS], check=True
        )
        name = next((ROOT / "packages" / dist / "src" / "orrery").iterdir()).name
        probe = (
            f"import orrery.{name} as m, pathlib; "
            f"assert 'site-packages' in m.__file__, m.__file__; print('{module}:', m.__version__)"
        )
        subprocess.run([str(py), "-c", probe], check=True, cwd=tmp)
        result = subprocess.run(
            [
                str(py),
                "-m",
                "pytest",
                f"packages/{dist}/tests",
                "-q",
                "-m",
                "not slow",
                "-p",
                "no:cacheprovider",
            ],
            cwd=ROOT,
        )
        return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dist", type=Path, default=ROOT / "dist", help="directory of built wheels"
    )
    parser.add_argument("--only", nargs="*", help="distributions to check (default: all)")
    args = parser.parse_args()
    dists = args.only or sorted(p.name for p in (ROOT / "packages").iterdir() if p.is_dir())
    failed = [d for d in dists if not check(d, args.dist.resolve())]
    print(f"isolation: {len(dists) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print(f"isolation: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`make ensure-uv` on a stock machine: no uv on PATH, an externally managed Python.

Each test builds a throw-away Python prefix that is externally managed (PEP 668:
an ``EXTERNALLY-MANAGED`` marker beside its standard library, so its pip refuses
to install), hides uv from PATH, and runs the Makefile's bootstrap target with
a throw-away tools directory. The prefix's standard library is a farm of links
to the real one, so building it is cheap and nothing outside ``tmp_path`` is
written. pip downloads uv from the package registry (or its cache); without a
network the tests skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS_NEEDED = ("make", "sh", "bash", "env", "mkdir", "ln", "rm", "printf", "grep", "awk", "cat")


def _base_python() -> Path:
    return Path(getattr(sys, "_base_executable", sys.executable)).resolve()


def _pip_dir() -> Path | None:
    proc = subprocess.run(
        [str(_base_python()), "-c", "import os, pip; print(os.path.dirname(pip.__file__))"],
        capture_output=True,
        text=True,
    )
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def _externally_managed_python(root: Path, *, with_venv: bool) -> Path:
    """A Python prefix under ``root`` whose pip refuses to install (PEP 668)."""
    stdlib = Path(os.__file__).resolve().parent
    lib = root / "lib" / stdlib.name
    lib.mkdir(parents=True)
    skip = {"site-packages", "dist-packages", "EXTERNALLY-MANAGED"}
    if not with_venv:  # Debian without python3-venv: `python3 -m venv` fails
        skip |= {"venv", "ensurepip"}
    for entry in stdlib.iterdir():
        if entry.name not in skip:
            (lib / entry.name).symlink_to(entry)
    site = lib / "site-packages"
    site.mkdir()
    pip = _pip_dir()
    if pip is None:
        pytest.skip("the base Python has no pip to put into the throw-away prefix")
    (site / "pip").symlink_to(pip)
    (lib / "EXTERNALLY-MANAGED").write_text(
        "[externally-managed]\nError=throw-away prefix of the orrery bootstrap test\n"
    )
    (root / "bin").mkdir()
    python = root / "bin" / "python3"
    shutil.copy2(_base_python(), python)
    return python


def _path_without_uv(tmp_path: Path, python: Path) -> str:
    tools = tmp_path / "sysbin"
    tools.mkdir()
    for name in TOOLS_NEEDED:
        found = shutil.which(name)
        assert found, f"{name} is needed to run make"
        (tools / name).symlink_to(found)
    return f"{python.parent}{os.pathsep}{tools}"


def _online() -> bool:
    if os.environ.get("PIP_FIND_LINKS") or os.environ.get("PIP_INDEX_URL"):
        return True
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize(("with_venv", "expected_route"), [(True, "venv"), (False, "pip-target")])
def test_bootstrap_installs_uv_privately_on_an_externally_managed_python(
    tmp_path, with_venv, expected_route
):
    if not _online():
        pytest.skip("no network and no PIP_FIND_LINKS: pip cannot fetch uv")
    python = _externally_managed_python(tmp_path / "python", with_venv=with_venv)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    env["PATH"] = _path_without_uv(tmp_path, python)
    assert shutil.which("uv", path=env["PATH"]) is None

    # The premise: this Python's pip refuses a plain install.
    refused = subprocess.run(
        [str(python), "-m", "pip", "install", "--dry-run", "uv"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert refused.returncode != 0
    assert "externally-managed-environment" in refused.stdout + refused.stderr

    tools = tmp_path / "tools"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "ensure-uv", f"UV_TOOLS_DIR={tools}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    uv = tools / "bin" / "uv"
    assert expected_route in str(uv.resolve()), (uv.resolve(), proc.stderr)
    version = subprocess.run([str(uv), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("uv "), version
    # Nothing went into the Python's own site-packages.
    assert [p.name for p in (python.parent.parent / "lib").glob("*/site-packages/*")] == ["pip"]

    # A second run finds the private uv and does nothing.
    again = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "ensure-uv", f"UV_TOOLS_DIR={tools}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert again.returncode == 0 and again.stderr == "", again.stderr

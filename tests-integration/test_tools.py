"""The repository checks in tools/ flag what they promise to flag (fast, no JAX)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def _tool(name: str):
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(f"orrery_tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_check_dependencies_flags_undeclared_and_extra_only_imports(tmp_path, monkeypatch):
    deps = _tool("check_dependencies")
    monkeypatch.setattr(deps, "ROOT", tmp_path)
    pkg = tmp_path / "demo-pkg"
    (pkg / "src" / "orrery" / "demo").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        '[project]\nname = "demo-pkg"\ndependencies = ["numpy>=1.26", "orrery-interface"]\n'
        '[project.optional-dependencies]\nplot = ["matplotlib>=3.8"]\n'
    )
    (pkg / "src" / "orrery" / "demo" / "m.py").write_text(
        "import os\nimport numpy as np\nfrom orrery.interface import require\n"
        "import scipy.stats\n"  # 4: undeclared
        "import matplotlib\n"  # 5: extra only, but unconditional
        "try:\n    import yaml\nexcept ImportError:\n    yaml = None\n"  # 7: optional, undeclared
        "def plot():\n    import matplotlib.pyplot as plt\n"  # fine: optional and an extra
        "    return require('matplotlib.pyplot', extra='demo-pkg[plot]', feature='plot')\n"
        "def store():\n    return require('zarr', extra='demo-pkg[plot]', feature='store')\n"  # 14
        "def other():\n    return require('zarr', extra='demo-pkg[store]', feature='store')\n"  # 16
    )
    problems = deps.check_package(pkg, {})
    where = sorted(int(p.split(":")[1]) for p in problems)
    assert where == [4, 5, 7, 14, 16], problems
    assert "declares ['matplotlib'] only as an extra" in problems[1]


def test_check_docs_flags_roles_unresolved_references_and_missing_pages(tmp_path):
    docs = _tool("check_docs")
    (tmp_path / "index.html").write_text(
        "<p>See :class:<code>Draws</code> and [Draws][orrery.interface.Draws].</p>"
        "<pre><code>out[k][mask]</code></pre>"
    )
    problems = docs.check(tmp_path)
    assert any("raw reST role" in p for p in problems)
    assert sum("unresolved reference" in p for p in problems) == 1  # not the code subscript
    assert any("orrery.interface.draws: no API page" in p for p in problems)

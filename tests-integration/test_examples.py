"""The quickstart tour in docs/examples runs end to end and prints one result per package."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_quickstart_tours_every_package():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for tag in ("[interface]", "[parax]", "[lux]", "[ensemble]", "[sbi]", "[polymix]"):
        assert tag in proc.stdout, proc.stdout
    assert "'slope': 2.5, 'intercept': -0.3" in proc.stdout

"""orrery.sbi re-exports the shared persistent-cache switch, and importing it leaves it off."""

import os
import subprocess
import sys

import orrery.interface.compilation_cache as shared
import orrery.sbi


def test_the_switch_is_the_shared_one():
    assert orrery.sbi.enable_compilation_cache is shared.enable_compilation_cache


def test_importing_orrery_sbi_leaves_the_cache_off():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    code = "import jax, orrery.sbi; print(jax.config.jax_compilation_cache_dir)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"

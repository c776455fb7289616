"""The shared persistent-cache switch: no JAX at import, off unless asked, one call on."""

import subprocess
import sys

import pytest

from orrery.interface import ConfigError
from orrery.interface.compilation_cache import default_cache_dir, enable_compilation_cache


def test_importing_the_module_imports_no_jax():
    code = (
        "import sys, orrery.interface, orrery.interface.compilation_cache; "
        "print('jax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def jax_cache_config():
    jax = pytest.importorskip("jax")
    from jax.experimental.compilation_cache import compilation_cache

    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {k: getattr(jax.config, k) for k in keys}
    yield jax
    for k, v in old.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()


def test_enable_points_jax_at_the_folder(tmp_path, jax_cache_config):
    jax = jax_cache_config
    folder = enable_compilation_cache(tmp_path / "a" / "cache", min_compile_time_s=0.5)
    assert folder == tmp_path / "a" / "cache" and folder.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.5


def test_default_folder_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "orrery" / "jax"


def test_bad_arguments_raise_before_touching_jax(tmp_path):
    with pytest.raises(ConfigError, match="min_compile_time_s"):
        enable_compilation_cache(tmp_path, min_compile_time_s=float("nan"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="path"):
        enable_compilation_cache(tmp_path / "file")

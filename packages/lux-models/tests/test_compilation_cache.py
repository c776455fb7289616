"""The persistent compilation cache is off unless asked for, and one call switches it on."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax.experimental.compilation_cache import compilation_cache

import orrery.lux
from orrery.interface import ConfigError
from orrery.lux.compilation_cache import default_cache_dir


def test_importing_orrery_lux_leaves_the_cache_off():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    code = (
        "import jax, orrery.lux; "
        "print(jax.config.jax_compilation_cache_dir, "
        "jax.config.jax_persistent_cache_min_compile_time_secs)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["None", "1.0"]


@pytest.fixture
def restore_cache_config():
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {k: getattr(jax.config, k) for k in keys}
    yield
    for k, v in old.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()


def test_enable_sets_jax_config_and_programs_land_in_the_folder(tmp_path, restore_cache_config):
    folder = orrery.lux.enable_compilation_cache(tmp_path / "cache")
    assert folder == tmp_path / "cache"
    assert jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    jax.jit(lambda x: jnp.sin(x) * 3.0 - 1.0)(jnp.arange(7.0)).block_until_ready()
    assert any(folder.iterdir())  # the program compiled after the call was written


def test_default_folder_is_in_the_user_cache(monkeypatch, tmp_path, restore_cache_config):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = orrery.lux.enable_compilation_cache()
    assert folder == default_cache_dir()
    assert folder.is_dir() and str(folder).startswith(str(tmp_path))
    assert jax.config.jax_compilation_cache_dir == str(folder)


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ConfigError, match="min_compile_time_s"):
        orrery.lux.enable_compilation_cache(tmp_path, min_compile_time_s=-1.0)
    with pytest.raises(ConfigError, match="min_compile_time_s"):
        orrery.lux.enable_compilation_cache(tmp_path, min_compile_time_s="soon")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="path"):
        orrery.lux.enable_compilation_cache(tmp_path / "file")
    assert jax.config.jax_compilation_cache_dir != str(tmp_path)

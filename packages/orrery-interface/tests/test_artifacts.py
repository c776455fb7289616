"""Artifacts: exact round trips, validation, crash safety, never unpickling."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from orrery.interface import ArtifactError, load_artifact, save_artifact
from orrery.interface import artifacts as art_mod


def _save(path, value=1.0, **kw):
    return save_artifact(
        path,
        kind="test.Model",
        config={"value": value, "nested": {"list": [1, 2.5, None, "s"], "flag": True}},
        arrays={"w": np.arange(6.0).reshape(2, 3) * value, "idx": np.arange(4, dtype=np.int32)},
        metadata={"note": "hello"},
        producer={"distribution": "orrery-interface", "version": "0.1.0"},
        **kw,
    )


def test_round_trip_is_exact(tmp_path):
    p = _save(tmp_path / "m")
    a = load_artifact(p, kind="test.Model")
    assert a.kind == "test.Model"
    assert a.config == {"value": 1.0, "nested": {"list": [1, 2.5, None, "s"], "flag": True}}
    assert a.metadata == {"note": "hello"}
    assert a.producer == {"distribution": "orrery-interface", "version": "0.1.0"}
    assert a.schema_version == art_mod.SCHEMA_VERSION
    np.testing.assert_array_equal(a.arrays["w"], np.arange(6.0).reshape(2, 3))
    assert a.arrays["idx"].dtype == np.int32
    assert sorted(os.listdir(p)) == ["arrays.npz", "metadata.json"]


def test_numpy_scalars_and_non_finite_floats_survive(tmp_path):
    p = save_artifact(
        tmp_path / "m",
        kind="k",
        config={"n": np.int64(3), "x": np.float32(0.5), "lo": -np.inf, "b": np.bool_(True)},
        arrays={},
    )
    cfg = load_artifact(p).config
    assert cfg == {"n": 3, "x": 0.5, "lo": -np.inf, "b": True}
    assert type(cfg["n"]) is int


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            {"a": {"b": np.zeros(3)}},
            r"config\['a'\]\['b'\] has type ndarray.*put arrays in `arrays`",
        ),
        ({"a": [1, object()]}, r"config\['a'\]\[1\] has type object"),
        ({"a": {1: 2}}, r"config\['a'\] has key 1 of type int"),
        ({"f": lambda x: x}, r"config\['f'\] has type function"),
    ],
)
def test_non_json_config_names_the_key(tmp_path, config, match):
    with pytest.raises(ArtifactError, match=match):
        save_artifact(tmp_path / "m", kind="k", config=config, arrays={})
    assert not (tmp_path / "m").exists()


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ArtifactError, match=r"arrays\['bad'\] has dtype object"):
        save_artifact(
            tmp_path / "m", kind="k", config={}, arrays={"bad": np.array([{}], dtype=object)}
        )


def test_kind_and_schema_are_checked(tmp_path):
    p = _save(tmp_path / "m")
    with pytest.raises(ArtifactError, match="holds kind 'test.Model', expected 'other'"):
        load_artifact(p, kind="other")
    meta = json.loads((p / "metadata.json").read_text())
    meta["schema_version"] = 99
    (p / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="schema version 99.*understands schema version 1"):
        load_artifact(p)
    assert load_artifact(p, schema_version=None).schema_version == 99


def test_missing_and_corrupt_artifacts_are_explained(tmp_path):
    with pytest.raises(ArtifactError, match="no artifact at"):
        load_artifact(tmp_path / "nope")
    p = _save(tmp_path / "m")
    (p / "arrays.npz").unlink()
    with pytest.raises(ArtifactError, match="incomplete: arrays.npz is missing"):
        load_artifact(p)
    p = _save(tmp_path / "m2")
    (p / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(p)
    p = _save(tmp_path / "m3")
    (p / "arrays.npz").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="unreadable"):
        load_artifact(p)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="not an artifact directory"):
        _save(tmp_path / "file")


def test_pickled_arrays_are_never_loaded(tmp_path):
    p = _save(tmp_path / "m")
    evil = np.array([{"a": 1}], dtype=object)
    np.savez(p / "arrays.npz", w=evil, idx=np.arange(4, dtype=np.int32))
    with pytest.raises(ArtifactError, match="never unpickled"):
        load_artifact(p)


def test_overwrite_replaces_and_leaves_no_temporaries(tmp_path):
    _save(tmp_path / "m", value=1.0)
    _save(tmp_path / "m", value=2.0)
    assert load_artifact(tmp_path / "m").config["value"] == 2.0
    assert os.listdir(tmp_path) == ["m"]


def test_failed_write_keeps_previous_artifact(tmp_path, monkeypatch):
    _save(tmp_path / "m", value=1.0)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(art_mod, "_commit", boom)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path / "m", value=2.0)
    assert load_artifact(tmp_path / "m").config["value"] == 1.0
    assert os.listdir(tmp_path) == ["m"]


def test_process_killed_before_rename_leaves_previous_readable(tmp_path):
    """A writer killed with SIGKILL in the middle of its write: the old artifact is intact."""
    _save(tmp_path / "m", value=1.0)
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from orrery.interface import artifacts
        def die(*a, **k):
            os.kill(os.getpid(), 9)
        artifacts._commit = die
        artifacts.save_artifact({str(tmp_path / "m")!r}, kind="test.Model", config={{"value": 2.0}},
                                arrays={{"w": np.zeros(10)}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    a = load_artifact(tmp_path / "m")
    assert a.config["value"] == 1.0
    # The interrupted temporary directory is hidden and is not the artifact.
    visible = [n for n in os.listdir(tmp_path) if not n.startswith(".")]
    assert visible == ["m"]


def test_crash_between_renames_is_never_resurrected(tmp_path, monkeypatch):
    """Old artifact moved aside, new one not yet in place: the target is missing.

    Loading says so (and where the backup is) instead of returning data the user
    may have deleted on purpose; the next save removes the backup.
    """
    _save(tmp_path / "m", value=1.0)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the rename of the new artifact into place
            raise KeyboardInterrupt
        return real_rename(src, dst)

    monkeypatch.setattr(art_mod.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "m", value=2.0)
    monkeypatch.setattr(art_mod.os, "rename", real_rename)
    assert not (tmp_path / "m").exists()
    with pytest.raises(ArtifactError, match=r"no artifact at .*orrery-old-.*not loaded"):
        load_artifact(tmp_path / "m")
    # A later successful save replaces it cleanly and removes the backup.
    _save(tmp_path / "m", value=3.0)
    assert load_artifact(tmp_path / "m").config["value"] == 3.0
    assert os.listdir(tmp_path) == ["m"]

"""Artifacts under attack: corrupt, incomplete, hostile or half-written files.

Every case asserts the exact error class, and that the message names the file.
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib

import numpy as np
import pytest

from orrery.interface import (
    Artifact,
    ArtifactError,
    ConfigError,
    load_artifact,
    read_json,
    save_artifact,
)
from orrery.interface import artifacts as art_mod

ARRAYS = {"w": np.arange(12.0).reshape(3, 4), "idx": np.arange(5, dtype=np.int32)}


def _save(path, value=1.0):
    return save_artifact(
        path, kind="test.Model", config={"value": value, "opt": {"lr": 0.1}}, arrays=ARRAYS
    )


def _members(path):
    with zipfile.ZipFile(path / "arrays.npz") as zf:
        return {i.filename: (i.header_offset, i.file_size) for i in zf.infolist()}


def _data_offset(path, member):
    """Byte offset in arrays.npz of the first data byte of a stored member."""
    raw = (path / "arrays.npz").read_bytes()
    header_offset, _ = _members(path)[member]
    name_len, extra_len = struct.unpack("<2H", raw[header_offset + 26 : header_offset + 30])
    start = header_offset + 30 + name_len + extra_len
    npy_header_len = raw.index(b"\n", start) + 1 - start
    return start + npy_header_len


def _raw_zip(name, payload, size, crc):
    """A one-member zip holding the raw deflate stream `payload` (size bytes inflated)."""
    fname = name.encode()
    local = struct.pack(
        "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, 33, crc, len(payload), size, len(fname), 0
    )
    central = struct.pack(
        "<4s4B4HL2L5H2L",
        b"PK\x01\x02",
        20,
        3,
        20,
        0,
        0,
        8,
        0,
        33,
        crc,
        len(payload),
        size,
        len(fname),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    body = local + fname + payload
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(fname), len(body), 0
    )
    return body + central + fname + end


def test_truncated_file(tmp_path):
    p = _save(tmp_path / "m")
    raw = (p / "arrays.npz").read_bytes()
    for cut in (len(raw) // 2, len(raw) - 10, 30):
        (p / "arrays.npz").write_bytes(raw[:cut])
        with pytest.raises(ArtifactError, match=r"arrays\.npz is unreadable"):
            load_artifact(p)


def test_empty_file(tmp_path):
    p = _save(tmp_path / "m")
    (p / "arrays.npz").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"m/arrays\.npz is unreadable"):
        load_artifact(p)


def test_bit_flip_in_array_data(tmp_path):
    p = _save(tmp_path / "m")
    raw = bytearray((p / "arrays.npz").read_bytes())
    raw[_data_offset(p, "w.npy") + 17] ^= 0x10
    (p / "arrays.npz").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match=r"arrays\.npz"):  # the zip CRC catches it
        load_artifact(p)


def test_rewritten_array_fails_its_checksum(tmp_path):
    """A valid npz whose data differs from what was saved (CRC fine, sha256 not)."""
    p = _save(tmp_path / "m")
    np.savez(p / "arrays.npz", w=ARRAYS["w"] + 1e-12, idx=ARRAYS["idx"])
    with pytest.raises(ArtifactError, match=r"arrays\.npz: array 'w': checksum mismatch"):
        load_artifact(p)


def test_lying_header_is_refused_before_allocating(tmp_path):
    """A header declaring 7 TiB of float64 over a few bytes of data: no MemoryError."""
    p = _save(tmp_path / "m")
    with zipfile.ZipFile(p / "arrays.npz", "w") as zf:
        with zf.open("w.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f8", "fortran_order": False, "shape": (2**40 - 1, 7)}
            )
            fh.write(bytes(96))
        with zf.open("idx.npy", "w") as fh:
            np.lib.format.write_array(fh, ARRAYS["idx"])
    with pytest.raises(ArtifactError, match=r"array 'w': the header declares shape .* 96 bytes"):
        load_artifact(p, max_bytes=None)


def test_header_disagreeing_with_metadata(tmp_path):
    p = _save(tmp_path / "m")
    np.savez(p / "arrays.npz", w=ARRAYS["w"].T.copy(), idx=ARRAYS["idx"])
    with pytest.raises(ArtifactError, match=r"array 'w': has dtype <f8 and shape \[4, 3\] but"):
        load_artifact(p)


def test_missing_and_extra_arrays(tmp_path):
    p = _save(tmp_path / "m")
    np.savez(p / "arrays.npz", w=ARRAYS["w"])
    with pytest.raises(ArtifactError, match=r"arrays\.npz is incomplete: array\(s\) 'idx'"):
        load_artifact(p)
    np.savez(p / "arrays.npz", extra=np.zeros(2), **ARRAYS)
    with pytest.raises(ArtifactError, match=r"holds array\(s\) 'extra' that metadata\.json"):
        load_artifact(p)


def test_missing_manifest_is_refused(tmp_path):
    p = _save(tmp_path / "m")
    meta = json.loads((p / "metadata.json").read_text())
    del meta["arrays"]
    (p / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"metadata\.json has no valid array manifest"):
        load_artifact(p)


def test_missing_config_keys_and_arrays_through_the_accessors(tmp_path):
    a = load_artifact(_save(tmp_path / "m"))
    assert a.path == tmp_path / "m"
    assert a.config_value("opt.lr", float) == 0.1
    assert a.config_value("opt.momentum", float, default=None) is None
    with pytest.raises(ArtifactError, match=r"m/metadata\.json: config key 'opt\.momentum' is"):
        a.config_value("opt.momentum", float)
    with pytest.raises(ArtifactError, match=r"config key 'value\.x' is missing"):
        a.config_value("value.x", float)
    with pytest.raises(ArtifactError, match=r"m/arrays\.npz: array 'scatter' is missing"):
        a.array("scatter")


def test_wrong_dtype_kind_shape_and_config_type(tmp_path):
    a = load_artifact(_save(tmp_path / "m"))
    assert a.array("w", shape=(3, None)).shape == (3, 4)
    assert a.array("idx", kind="iu", shape=(5,)).dtype == np.int32
    with pytest.raises(ArtifactError, match=r"array 'idx' has dtype int32 \(kind 'i'\)"):
        a.array("idx")  # default kind "f"
    with pytest.raises(ArtifactError, match=r"array 'w' has shape \(3, 4\), expected \('\*', 3\)"):
        a.array("w", shape=(None, 3))
    with pytest.raises(ArtifactError, match=r"array 'w' has shape \(3, 4\)"):
        a.array("w", shape=("n", "n"))
    with pytest.raises(ArtifactError, match=r"config key 'opt\.lr' has type float .*expected str"):
        a.config_value("opt.lr", str)
    with pytest.raises(ArtifactError, match=r"config key 'opt' has type dict"):
        a.config_value("opt", (int, None), default=3)  # a present, wrong entry is never defaulted
    flags = Artifact(kind="k", config={"n": True, "m": 2, "a.b": "dotted"}, arrays={})
    assert flags.config_value("a.b", str) == "dotted"  # a literal key wins over a path
    with pytest.raises(ArtifactError, match=r"config key 'n' has type bool"):
        flags.config_value("n", int)
    assert flags.config_value("m", float) == 2.0 and isinstance(
        flags.config_value("m", float), float
    )


def test_planted_import_payload_is_never_imported(tmp_path):
    """A payload module next to the artifact, on sys.path, named by the metadata."""
    marker = tmp_path / "PWNED"
    (tmp_path / "payload.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Evil: pass\n"
    )
    p = _save(tmp_path / "m")
    meta = json.loads((p / "metadata.json").read_text())
    meta["kind"] = "payload.Evil"
    meta["config"] = {"class": "payload:Evil", "module": "payload", "__reduce__": "payload"}
    meta["producer"] = {"distribution": "payload", "version": "payload"}
    (p / "metadata.json").write_text(json.dumps(meta))
    script = textwrap.dedent(
        f"""
        import sys
        from orrery.interface import load_artifact, ArtifactError
        a = load_artifact({str(p)!r})
        assert a.kind == "payload.Evil"
        try:
            load_artifact({str(p)!r}, kind="test.Model")
        except ArtifactError:
            pass
        assert "payload" not in sys.modules
        """
    )
    # `python -c` puts the current directory (the artifact's parent) first on sys.path.
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()


def test_size_amplification_is_refused_before_inflating(tmp_path):
    """About 1 MB of npz inflating to 1 GiB: refused from the zip directory alone."""
    p = _save(tmp_path / "m")
    header = bytearray()

    class _Buf:
        def write(self, b):
            header.extend(b)

    np.lib.format.write_array_header_1_0(
        _Buf(), {"descr": "<f8", "fortran_order": False, "shape": (2**27,)}
    )
    chunk = bytes(2**24)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(bytes(header)) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)  # state reset: repeatable
    payload = head + block * 64 + comp.flush()
    size = len(header) + 2**30
    bomb = _raw_zip("w.npy", payload, size, crc=0)
    with zipfile.ZipFile(p / "arrays.npz") as zf:
        idx = zf.read("idx.npy")
    (p / "arrays.npz").write_bytes(bomb)
    with zipfile.ZipFile(p / "arrays.npz", "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("idx.npy", idx)
    assert (p / "arrays.npz").stat().st_size < 1.1e6
    with zipfile.ZipFile(p / "arrays.npz") as zf:
        assert zf.getinfo("w.npy").file_size == size
    start = time.perf_counter()
    with pytest.raises(ArtifactError, match=r"would decompress to 10737\d{5} bytes, more than"):
        load_artifact(p, max_bytes=2**28)
    assert time.perf_counter() - start < 1.0
    assert art_mod.DEFAULT_MAX_BYTES == 4 * 2**30
    with pytest.raises(ConfigError, match="max_bytes"):
        load_artifact(p, max_bytes=-1)


def test_deeply_nested_metadata_is_an_artifact_error_not_a_recursion_error(tmp_path, monkeypatch):
    p = _save(tmp_path / "m")
    meta = p / "metadata.json"
    meta.write_text("[" * 200_000 + "]" * 200_000)  # past the parser's recursion limit
    with pytest.raises(ArtifactError, match=r"m/metadata\.json nests objects or arrays too deep"):
        load_artifact(p)
    assert art_mod.DEFAULT_MAX_JSON_DEPTH == 800
    doc = json.loads(_save(tmp_path / "n").joinpath("metadata.json").read_text())
    nested: object = 1.0
    for _ in range(60):  # parses, but deeper than a lowered limit allows
        nested = {"a": nested}
    doc["config"]["deep"] = nested
    meta.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"m/metadata\.json nests .* deeper than 50 levels"):
        read_json(meta, max_depth=50)
    assert load_artifact(p).config["deep"]["a"]["a"] is not None  # 62 levels: fine by default
    monkeypatch.setattr(art_mod, "DEFAULT_MAX_JSON_DEPTH", 50)
    with pytest.raises(ArtifactError, match=r"m/metadata\.json nests .* deeper than 50 levels"):
        load_artifact(p)


def test_oversized_metadata_is_refused_before_it_is_read(tmp_path, monkeypatch):
    p = _save(tmp_path / "m")
    meta = p / "metadata.json"
    text = meta.read_text()
    with open(meta, "r+b") as fh:  # a sparse 512 MB file: its size alone must refuse it
        fh.truncate(512 * 2**20)
    start = time.perf_counter()
    with pytest.raises(ArtifactError, match=r"m/metadata\.json holds 536870912 bytes, more than"):
        load_artifact(p)
    assert time.perf_counter() - start < 0.5
    meta.write_text(text)
    monkeypatch.setattr(art_mod, "DEFAULT_MAX_JSON_BYTES", len(text) - 1)
    with pytest.raises(
        ArtifactError, match=rf"holds {len(text)} bytes, more than the {len(text) - 1}"
    ):
        load_artifact(p)
    assert load_artifact(p, max_bytes=None).config["value"] == 1.0  # trusted: limits lifted


def test_read_json_reads_at_most_one_byte_past_its_limit(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("needs /dev/zero")
    link = tmp_path / "endless.json"
    link.symlink_to("/dev/zero")  # stat says 0 bytes; reading never ends
    with pytest.raises(ArtifactError, match=r"endless\.json holds more bytes than its size says"):
        read_json(link, max_bytes=1000)
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ArtifactError, match=r"bad\.json is not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(ArtifactError, match=r"missing\.json cannot be read"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "ok.json").write_text('{"a": [1, NaN]}')
    assert read_json(tmp_path / "ok.json")["a"][0] == 1


def test_save_refuses_config_that_load_would_refuse(tmp_path, monkeypatch):
    nested: object = 1.0
    for _ in range(60):
        nested = [nested]
    monkeypatch.setattr(art_mod, "DEFAULT_MAX_JSON_DEPTH", 50)
    with pytest.raises(ArtifactError, match=r"^config nests dicts or lists deeper than 49"):
        save_artifact(tmp_path / "m", kind="k", config={"deep": nested}, arrays={})
    monkeypatch.undo()
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(ArtifactError, match=r"^metadata nests dicts or lists deeper"):
        save_artifact(tmp_path / "m", kind="k", config={}, arrays={}, metadata={"d": nested})
    monkeypatch.setattr(art_mod, "DEFAULT_MAX_JSON_BYTES", 100)
    with pytest.raises(ArtifactError, match=r"^config and metadata take \d+ bytes of JSON"):
        save_artifact(tmp_path / "m", kind="k", config={"s": "x" * 200}, arrays={})
    assert not (tmp_path / "m").exists()


def test_stale_temporaries_and_backups_are_removed_by_the_next_save(tmp_path):
    p = _save(tmp_path / "m")
    for junk in (".m.orrery-tmp-dead1", ".m.orrery-tmp-dead2", ".m.orrery-old-dead3"):
        (tmp_path / junk).mkdir()
        (tmp_path / junk / "metadata.json").write_text("{}")
    (tmp_path / ".other.orrery-tmp-keep").mkdir()  # another target's: not ours to remove
    _save(p, value=2.0)
    assert sorted(os.listdir(tmp_path)) == [".other.orrery-tmp-keep", "m"]


def test_kill_9_debris_is_cleaned_and_a_deleted_artifact_stays_deleted(tmp_path):
    _save(tmp_path / "m", value=1.0)
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from orrery.interface import artifacts
        real = artifacts.os.rename
        def die(src, dst):
            if ".orrery-old-" in str(dst):
                real(src, dst)  # the old artifact is moved aside ...
                os.kill(os.getpid(), 9)  # ... and the process dies before the new one lands
            real(src, dst)
        artifacts.os.rename = die
        artifacts.save_artifact({str(tmp_path / "m")!r}, kind="test.Model",
                                config={{"value": 2.0}}, arrays={{"w": np.zeros(10)}})
        """
    )
    for _ in range(2):
        if not (tmp_path / "m").exists():
            _save(tmp_path / "m", value=1.0)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
        assert proc.returncode == -9
    debris = sorted(n for n in os.listdir(tmp_path) if n != "m")
    assert any(".orrery-old-" in n for n in debris) and any(".orrery-tmp-" in n for n in debris)
    # The user deletes nothing here, but the target is gone: loading must not resurrect it.
    with pytest.raises(ArtifactError, match="no artifact at"):
        load_artifact(tmp_path / "m")
    _save(tmp_path / "m", value=3.0)
    assert os.listdir(tmp_path) == ["m"]
    assert load_artifact(tmp_path / "m").config["value"] == 3.0


_SLOW_SAVER = """
import os, sys, time, numpy as np
from orrery.interface import artifacts
real = artifacts._write_file
def slow(path, write):
    open(sys.argv[2], "w").close()  # tell the parent the lock is held
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.01)
    real(path, write)
artifacts._write_file = slow
artifacts.save_artifact(sys.argv[1], kind="test.Model", config={"value": 7.0},
                        arrays={"w": np.full(100, 7.0)})
"""


def test_concurrent_saver_gets_a_clear_error_and_the_winner_a_complete_artifact(tmp_path):
    target, started, go = tmp_path / "m", tmp_path / "started", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVER, str(target), started, go])
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(ArtifactError, match="another save to .* is in progress"):
            _save(target, value=1.0)
        go.touch()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    a = load_artifact(target)
    assert a.config == {"value": 7.0}
    np.testing.assert_array_equal(a.array("w", shape=(100,)), np.full(100, 7.0))
    assert sorted(os.listdir(tmp_path)) == ["go", "m", "started"]


_LOOP_SAVER = """
import sys, numpy as np
from orrery.interface import ArtifactError, save_artifact
lost = 0
for i in range(40):
    v = float(sys.argv[2])
    try:
        save_artifact(sys.argv[1], kind="test.Model", config={"value": v},
                      arrays={"w": np.full(2000, v)})
    except ArtifactError:
        lost += 1
print(lost)
"""


def test_two_saver_processes_racing(tmp_path):
    target = tmp_path / "m"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOOP_SAVER, str(target), str(v)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in (1.0, 2.0)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err  # no raw OSError, ever
        assert 0 <= int(out) <= 40
    a = load_artifact(target)
    assert a.config["value"] in (1.0, 2.0)
    np.testing.assert_array_equal(a.array("w"), np.full(2000, a.config["value"]))
    assert os.listdir(tmp_path) == ["m"]


def test_read_json_inside_refuses_links_out_and_non_files(tmp_path):
    from orrery.interface import read_json_inside, resolve_inside

    store, other = tmp_path / "store", tmp_path / "other"
    store.mkdir()
    other.mkdir()
    (store / "meta.json").write_text('{"a": 1}')
    (other / "meta.json").write_text('{"a": 2}')
    assert read_json_inside(store / "meta.json", store, "the metadata") == {"a": 1}
    (store / "link.json").symlink_to(other / "meta.json")
    with pytest.raises(ArtifactError, match="the metadata .* is a link that leaves the store"):
        read_json_inside(store / "link.json", store, "the metadata")
    (store / "sub").mkdir()
    with pytest.raises(ArtifactError, match="is not a regular file"):
        read_json_inside(store / "sub", store, "a folder")
    with pytest.raises(ArtifactError, match="cannot read the index"):
        read_json_inside(store / "missing.json", store, "the index")
    (store / "big.json").write_text("[" + "1," * 100 + "1]")
    with pytest.raises(ArtifactError, match="store: the big file: "):
        read_json_inside(store / "big.json", store, "the big file", max_bytes=10)
    assert resolve_inside(store / "meta.json", store, "x").endswith("meta.json")


def test_publish_folder_renames_once_and_yields_to_a_finished_one(tmp_path):
    from orrery.interface import publish_folder

    final = tmp_path / "c0"
    first, second = tmp_path / "tmp1", tmp_path / "tmp2"
    for folder, text in ((first, "1"), (second, "2")):
        folder.mkdir()
        (folder / "done.json").write_text(text)
        (folder / "data").write_text(text)
    assert publish_folder(first, final, "done.json") is True
    assert not first.exists() and (final / "data").read_text() == "1"
    assert publish_folder(second, final, "done.json") is False  # another writer finished it
    assert (final / "data").read_text() == "1" and second.exists()  # nothing replaced
    (final / "done.json").unlink()  # a final folder that is not finished: the error stands
    with pytest.raises(OSError):
        publish_folder(second, final, "done.json")
    with pytest.raises(OSError):
        publish_folder(tmp_path / "missing", tmp_path / "c1", "done.json")

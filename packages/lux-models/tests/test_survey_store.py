"""The on-disk spectra store: round trip, resume, integrity checks (issue 36)."""

import json
import os

import numpy as np
import pytest

from orrery.interface import ArtifactError, ConfigError, ShapeError, ValueDomainError
from orrery.lux.survey import ArraySource, SpectraSource, SpectraStore, write_spectra


@pytest.fixture(autouse=True, params=["read", "mapped"])
def _how(request, monkeypatch):
    """Every test twice: arrays read into memory, and arrays memory-mapped (large ones
    are; here every one is, down to a few bytes)."""
    from orrery.lux._survey import chunkstore

    if request.param == "mapped":
        if chunkstore._LIBC is None:
            pytest.skip("no memory maps here")
        monkeypatch.setattr(chunkstore, "_MAP_MIN", 0)
    else:
        monkeypatch.setattr(chunkstore, "_MAP_MIN", 2**62)
    return request.param


def _mapped(arr: object) -> bool:
    from orrery.lux._survey.chunkstore import _Mapping

    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, _Mapping)


def _arrays(n=23, p=7, dtype: type = np.float32, seed=0):
    rng = np.random.default_rng(seed)
    flux = rng.normal(1.0, 0.1, size=(n, p)).astype(dtype)
    ivar = rng.uniform(1.0, 4.0, size=(n, p)).astype(dtype)
    return flux, ivar, rng.normal(size=(n, 3)), np.arange(100, 100 + n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_across_chunks(tmp_path, dtype):
    flux, ivar, labels, ids = _arrays(dtype=dtype)
    grid = np.linspace(15000.0, 17000.0, 7)
    store = write_spectra(
        tmp_path / "s",
        ArraySource(flux, ivar, labels, ids),
        chunk_stars=5,
        wavelength=grid,
        label_names=["teff", "logg", "feh"],
        progress=False,
    )
    assert isinstance(store, SpectraSource)
    assert (store.n_stars, store.n_pixels, store.dtype) == (23, 7, np.dtype(dtype))
    assert store.label_names == ["teff", "logg", "feh"]
    np.testing.assert_array_equal(store.wavelength, grid)
    for start, stop in [(0, 23), (3, 17), (5, 10), (22, 23), (4, 4)]:
        got = store.read(start, stop)
        np.testing.assert_array_equal(got.flux, flux[start:stop])
        np.testing.assert_array_equal(got.ivar, ivar[start:stop])
        np.testing.assert_array_equal(got.labels, labels[start:stop])
        np.testing.assert_array_equal(got.ids, ids[start:stop])
    reopened = SpectraStore(tmp_path / "s")
    assert reopened.fingerprint == store.fingerprint
    assert sorted(os.listdir(tmp_path / "s" / "chunks")) == [f"c{i:08d}" for i in range(5)]


def test_large_arrays_are_mapped_aligned_and_small_ones_read(tmp_path, _how, monkeypatch):
    from orrery.lux._survey import chunkstore

    if _how == "read":
        pytest.skip("the default threshold is what this test checks")
    monkeypatch.setattr(chunkstore, "_MAP_MIN", 64 * 1024)
    flux, ivar, labels, _ = _arrays(n=40, p=300, dtype=np.float64)  # 96,000 bytes a chunk
    store = write_spectra(
        tmp_path / "s", ArraySource(flux, ivar, labels), chunk_stars=40, progress=False
    )
    got = store.read(0, 40)
    assert _mapped(got.flux) and _mapped(got.ivar) and not _mapped(got.labels)
    assert got.flux.ctypes.data % 64 == 0  # JAX on the CPU shares it without a copy
    assert not got.flux.flags.writeable
    np.testing.assert_array_equal(got.flux, flux)
    np.testing.assert_array_equal(got.ivar, ivar)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_mapped_chunks_hold_no_file_descriptors(tmp_path, _how):
    flux, ivar, labels, _ = _arrays(n=60)
    store = write_spectra(
        tmp_path / "s", ArraySource(flux, ivar, labels), chunk_stars=1, progress=False
    )
    before = len(os.listdir("/proc/self/fd"))
    # 60 chunks kept at once (as a fit keeps its resident ones): 120 arrays, mapped or not
    kept = [store.read(i, i + 1) for i in range(60)]
    assert len(os.listdir("/proc/self/fd")) - before < 5
    assert all(_mapped(k.flux) for k in kept) == (_how == "mapped")
    np.testing.assert_array_equal(np.concatenate([k.ivar for k in kept]), ivar)


def test_text_ids_and_no_labels(tmp_path):
    flux, ivar, _, _ = _arrays(n=4)
    ids = np.array(["2M0001+01", "2M0002+02", "b", "c"], dtype=object)
    store = write_spectra(tmp_path / "s", ArraySource(flux, ivar, ids=ids), progress=False)
    assert store.label_names is None and store.read(0, 4).labels is None
    got = store.read(0, 4).ids
    assert got is not None and got.tolist() == ids.tolist()


class _Dying:
    """A source that fails once it reaches row ``fail_at`` (a killed ingest)."""

    def __init__(self, source, fail_at):
        self.source, self.fail_at = source, fail_at
        self.n_stars, self.n_pixels = source.n_stars, source.n_pixels

    def read(self, start, stop):
        if stop > self.fail_at:
            raise KeyboardInterrupt
        return self.source.read(start, stop)


def test_an_interrupted_write_resumes_writing_only_missing_chunks(tmp_path):
    flux, ivar, labels, ids = _arrays()
    src = ArraySource(flux, ivar, labels, ids)
    with pytest.raises(KeyboardInterrupt):
        write_spectra(tmp_path / "s", _Dying(src, 12), chunk_stars=5, progress=False)
    with pytest.raises(ArtifactError, match="not finished"):
        SpectraStore(tmp_path / "s")
    first = tmp_path / "s" / "chunks" / "c00000000" / "flux.npy"
    stamp = os.stat(first).st_mtime_ns
    store = write_spectra(tmp_path / "s", src, chunk_stars=5, progress=False)
    assert os.stat(first).st_mtime_ns == stamp  # the finished chunk was not rewritten
    np.testing.assert_array_equal(store.read(0, 23).flux, flux)
    fresh = write_spectra(tmp_path / "t", src, chunk_stars=5, progress=False)
    assert fresh.fingerprint == store.fingerprint


def test_never_overwrites_what_it_did_not_make(tmp_path):
    flux, ivar, _, _ = _arrays()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an empty folder"):
        write_spectra(tmp_path / "mine", ArraySource(flux, ivar), progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    write_spectra(tmp_path / "s", ArraySource(flux, ivar), chunk_stars=5, progress=False)
    with pytest.raises(ConfigError, match="chunk_rows"):
        write_spectra(tmp_path / "s", ArraySource(flux, ivar), chunk_stars=6, progress=False)


def _store(tmp_path):
    flux, ivar, labels, _ = _arrays()
    write_spectra(tmp_path / "s", ArraySource(flux, ivar, labels), chunk_stars=5, progress=False)
    return tmp_path / "s"


def test_a_truncated_chunk_is_refused_naming_the_file(tmp_path):
    path = _store(tmp_path)
    file = path / "chunks" / "c00000001" / "ivar.npy"
    file.write_bytes(file.read_bytes()[:-8])
    store = SpectraStore(path)
    store.read(0, 5)  # other chunks still read
    with pytest.raises(ArtifactError, match=r"c00000001/ivar\.npy.*truncated"):
        store.read(5, 10)


def test_edited_bytes_fail_the_digest(tmp_path):
    path = _store(tmp_path)
    file = path / "chunks" / "c00000002" / "flux.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="chunk 2 .*digest"):
        SpectraStore(path).read(0, 23)


def _counting_digest(monkeypatch):
    from orrery.lux._survey import chunkstore

    calls = []
    real = chunkstore._digest

    def counted(arrays):
        calls.append(sorted(arrays))
        return real(arrays)

    monkeypatch.setattr(chunkstore, "_digest", counted)
    return calls


def test_an_unchanged_chunk_is_hashed_once_per_process(tmp_path, monkeypatch):
    path = _store(tmp_path)
    calls = _counting_digest(monkeypatch)
    for _ in range(3):  # a fresh store object each time: the process remembers, not the object
        got = SpectraStore(path).read(5, 10)
    assert calls == [["flux"], ["ivar"], ["labels"]]  # one digest per array, each once
    flux, _, _, _ = _arrays()
    np.testing.assert_array_equal(got.flux, flux[5:10])
    SpectraStore(path).read(0, 23)  # the other four chunks, once each
    SpectraStore(path).read(0, 23)
    assert len(calls) == 15


def test_the_labels_alone_read_and_hash_only_the_label_files(tmp_path, monkeypatch):
    path = _store(tmp_path)
    calls = _counting_digest(monkeypatch)
    _, _, labels, _ = _arrays()
    np.testing.assert_array_equal(SpectraStore(path).labels, labels)
    assert calls == [["labels"]] * 5
    file = path / "chunks" / "c00000004" / "labels.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01
    file.write_bytes(bytes(data))
    os.utime(file, ns=(0, os.stat(file).st_mtime_ns + 1_000_000))
    with pytest.raises(ArtifactError, match="chunk 4 .*labels.npy.*digest"):
        SpectraStore(path).labels


def test_a_chunk_with_one_digest_over_its_arrays_is_verified_whole(tmp_path):
    from orrery.lux._survey.chunkstore import _digest

    path = _store(tmp_path)
    flux, ivar, labels, _ = _arrays()
    file = path / "chunks" / "c00000001" / "chunk.json"
    info = json.loads(file.read_text())
    del info["digests"]  # as written before per-array digests
    info["digest"] = _digest({"flux": flux[5:10], "ivar": ivar[5:10], "labels": labels[5:10]})
    file.write_text(json.dumps(info))
    np.testing.assert_array_equal(SpectraStore(path).read(5, 10).ivar, ivar[5:10])
    info["digest"] = "0" * 64
    file.write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="chunk 1 .*digest"):
        SpectraStore(path).read(5, 10)


def test_a_chunk_edited_after_its_first_read_is_caught(tmp_path, monkeypatch):
    path = _store(tmp_path)
    calls = _counting_digest(monkeypatch)
    SpectraStore(path).read(10, 15)
    file = path / "chunks" / "c00000002" / "flux.npy"
    before = os.stat(file)
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))  # same size, same inode: only the mtime tells
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert os.stat(file).st_size == before.st_size
    with pytest.raises(ArtifactError, match="chunk 2 .*flux.npy.*digest"):
        SpectraStore(path).read(10, 15)
    assert calls == [["flux"], ["ivar"], ["labels"], ["flux"]]


def test_an_object_array_is_never_unpickled(tmp_path):
    path = _store(tmp_path)
    file = path / "chunks" / "c00000000" / "labels.npy"
    np.save(file, np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(ArtifactError, match="holds object"):
        SpectraStore(path).read(0, 5)


def test_a_moved_chunk_and_a_foreign_store_json_are_refused(tmp_path):
    path = _store(tmp_path)
    os.rename(path / "chunks" / "c00000003", path / "chunks" / "c00000009")
    with pytest.raises(ArtifactError, match="chunk 3 .*missing"):
        SpectraStore(path).read(15, 20)
    meta = json.loads((path / "store.json").read_text())
    (path / "store.json").write_text(json.dumps({**meta, "format": "something else"}))
    with pytest.raises(ArtifactError, match="format"):
        SpectraStore(path)


def test_bad_rows_are_refused_before_writing(tmp_path):
    flux, ivar, labels, _ = _arrays()
    ivar[7, 2] = -1.0
    with pytest.raises(ValueDomainError, match="row 7"):
        write_spectra(tmp_path / "a", ArraySource(flux, ivar), progress=False)
    with pytest.raises(ShapeError, match="label_names"):
        write_spectra(
            tmp_path / "b", ArraySource(flux, abs(ivar), labels), label_names=["x"], progress=False
        )
    with pytest.raises(ShapeError, match="wavelength"):
        write_spectra(
            tmp_path / "c", ArraySource(flux, abs(ivar)), wavelength=np.ones(3), progress=False
        )
    with pytest.raises(ConfigError, match="SpectraSource"):
        write_spectra(tmp_path / "d", flux, progress=False)  # type: ignore[arg-type]

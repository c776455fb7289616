"""Ingest from FITS, HDF5, NumPy and Zarr files the tests write themselves (issue 36)."""

import numpy as np
import pytest

from orrery.interface import ArtifactError, ConfigError, ShapeError, ValueDomainError
from orrery.lux.survey import SpectraStore, ingest

N, P = 9, 6
GRID = np.linspace(15100.0, 16900.0, P)


def _survey(seed=0):
    rng = np.random.default_rng(seed)
    flux = rng.normal(1.0, 0.05, size=(N, P))
    ivar = rng.uniform(100.0, 400.0, size=(N, P))
    labels = np.column_stack(
        [rng.uniform(4000, 5000, N), rng.uniform(1, 3, N), rng.uniform(-1, 0.3, N)]
    )
    return flux, ivar, labels


def _equal(store, flux, ivar, labels=None):
    got = store.read(0, store.n_stars)
    np.testing.assert_array_equal(got.flux, flux.astype(store.dtype))
    np.testing.assert_array_equal(got.ivar, ivar.astype(store.dtype))
    if labels is not None:
        np.testing.assert_array_equal(got.labels, labels)


def test_fits_one_file_per_star_with_header_labels_and_grid(tmp_path):
    fits = pytest.importorskip("astropy.io.fits")
    flux, ivar, labels = _survey()
    files = []
    for i in range(N):
        head = fits.Header({"CRVAL1": GRID[0], "CDELT1": GRID[1] - GRID[0], "CRPIX1": 1.0})
        head.update({"TEFF": labels[i, 0], "LOGG": labels[i, 1], "FE_H": labels[i, 2]})
        hdul = fits.HDUList(
            [fits.PrimaryHDU(flux[i], header=head), fits.ImageHDU(ivar[i], name="IVAR")]
        )
        files.append(tmp_path / f"star{i}.fits")
        hdul.writeto(files[-1])
    store = ingest(
        tmp_path / "store",
        files,
        flux="PRIMARY",
        labels=["TEFF", "LOGG", "FE_H"],
        ids="filename",
        wavelength="header",
        chunk_stars=4,
        dtype=np.float64,
        progress=False,
    )
    _equal(store, flux, ivar, labels)
    assert store.label_names == ["TEFF", "LOGG", "FE_H"]
    assert store.read(0, 2).ids.tolist() == ["star0.fits", "star1.fits"]
    np.testing.assert_allclose(store.wavelength, GRID, rtol=1e-12)


def test_fits_table_of_many_with_sigma(tmp_path):
    fits = pytest.importorskip("astropy.io.fits")
    flux, ivar, labels = _survey()
    sigma = 1.0 / np.sqrt(ivar)
    cols = [
        fits.Column("flux", f"{P}D", array=flux),
        fits.Column("err", f"{P}D", array=sigma),
        fits.Column("teff", "D", array=labels[:, 0]),
        fits.Column("logg", "D", array=labels[:, 1]),
    ]
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "all.fits")
    store = ingest(
        tmp_path / "store",
        tmp_path / "all.fits",
        ivar=None,
        sigma="err",
        labels=["teff", "logg"],
        dtype=np.float64,
        progress=False,
    )
    got = store.read(0, N)
    np.testing.assert_allclose(got.ivar, 1.0 / sigma**2, rtol=1e-12)
    np.testing.assert_array_equal(got.labels, labels[:, :2])


def _h5(path, flux, ivar, grid, labels=None):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as fh:
        fh["spec/flux"] = flux
        fh["spec/ivar"] = ivar
        fh["wavelength"] = grid
        if labels is not None:
            fh["labels"] = labels


def test_hdf5_files_concatenate_across_chunks(tmp_path):
    flux, ivar, labels = _survey()
    _h5(tmp_path / "a.h5", flux[:4], ivar[:4], GRID, labels[:4])
    _h5(tmp_path / "b.h5", flux[4:], ivar[4:], GRID, labels[4:])
    keys = {"flux": "spec/flux", "ivar": "spec/ivar", "labels": "labels"}
    store = ingest(
        tmp_path / "store",
        [tmp_path / "a.h5", tmp_path / "b.h5"],
        **keys,
        label_names=["teff", "logg", "feh"],
        wavelength="wavelength",
        chunk_stars=3,  # chunk 1 spans both files
        progress=False,
    )
    assert store.dtype == np.float32
    _equal(store, flux, ivar, labels)
    again = ingest(  # the same call resumes a finished store: nothing to do
        tmp_path / "store",
        [tmp_path / "a.h5", tmp_path / "b.h5"],
        **keys,
        label_names=["teff", "logg", "feh"],
        wavelength="wavelength",
        chunk_stars=3,
        progress=False,
    )
    assert again.fingerprint == store.fingerprint


def test_mismatched_grids_and_widths_are_refused_naming_the_file(tmp_path):
    flux, ivar, _ = _survey()
    _h5(tmp_path / "a.h5", flux[:4], ivar[:4], GRID)
    shifted = GRID.copy()
    shifted[3] += 0.5
    _h5(tmp_path / "b.h5", flux[4:], ivar[4:], shifted)
    _h5(tmp_path / "c.h5", flux[4:, :5], ivar[4:, :5], GRID[:5])
    kw = {"flux": "spec/flux", "ivar": "spec/ivar", "wavelength": "wavelength", "progress": False}
    with pytest.raises(ValueDomainError, match=r"b\.h5.*wavelength grid differs.*pixel 3"):
        ingest(tmp_path / "s1", [tmp_path / "a.h5", tmp_path / "b.h5"], **kw)
    with pytest.raises(ShapeError, match=r"c\.h5.*5 pixels"):
        ingest(tmp_path / "s2", [tmp_path / "a.h5", tmp_path / "c.h5"], **kw)
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()
    with pytest.raises(ConfigError, match=r"a\.h5.*no array 'fluxx'"):
        ingest(tmp_path / "s3", tmp_path / "a.h5", flux="fluxx", progress=False)


@pytest.mark.filterwarnings("ignore:Error validating header")
def test_a_truncated_file_is_refused_naming_it(tmp_path):
    flux, ivar, _ = _survey()
    _h5(tmp_path / "a.h5", flux, ivar, GRID)
    data = (tmp_path / "a.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match=r"cut\.h5.*truncated"):
        ingest(tmp_path / "s", tmp_path / "cut.h5", flux="spec/flux", ivar="spec/ivar")
    fits = pytest.importorskip("astropy.io.fits")
    fits.PrimaryHDU(flux).writeto(tmp_path / "f.fits")
    (tmp_path / "cut.fits").write_bytes((tmp_path / "f.fits").read_bytes()[:2000])
    with pytest.raises(ArtifactError, match=r"cut\.fits"):
        ingest(tmp_path / "t", tmp_path / "cut.fits", flux="PRIMARY", ivar="PRIMARY")


def test_numpy_folder_npz_and_zarr(tmp_path):
    flux, ivar, labels = _survey()
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "flux.npy", flux)
    np.save(folder / "ivar.npy", ivar)
    np.save(folder / "ids.npy", np.arange(N))
    store = ingest(tmp_path / "s1", folder, ids="ids", dtype=np.float64, progress=False)
    _equal(store, flux, ivar)
    assert store.read(0, N).ids.tolist() == list(range(N))
    np.savez(tmp_path / "x.npz", flux=flux, ivar=ivar, labels=labels)
    store = ingest(tmp_path / "s2", tmp_path / "x.npz", labels="labels", progress=False)
    _equal(store, flux, ivar, labels)
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    group["flux"] = flux
    group["ivar"] = ivar
    store = ingest(tmp_path / "s3", tmp_path / "x.zarr", dtype=np.float64, progress=False)
    _equal(store, flux, ivar)
    assert isinstance(SpectraStore(tmp_path / "s3"), SpectraStore)


def test_negative_ivar_in_a_file_is_refused_naming_it(tmp_path):
    flux, ivar, _ = _survey()
    ivar[5, 1] = -2.0
    np.savez(tmp_path / "bad.npz", flux=flux, ivar=ivar)
    with pytest.raises(ValueDomainError, match=r"bad\.npz.*negative"):
        ingest(tmp_path / "s", tmp_path / "bad.npz", progress=False)

"""The Cannon trained from a SpectraSource, a chunk of stars at a time (issue 36 part B).

The streaming fit runs the in-memory fit's rounds with every pass summed chunk by
chunk, so it must give the in-memory model: to 1e-9 relative in float64, and
within the in-memory float32 fit's own round-off in float32, whatever the chunk
size. One compiled program serves every chunk (the last is padded), and a bad
source is refused naming it.
"""

import logging
from typing import Any

import jax
import numpy as np
import pytest

from orrery.interface import ConfigError, ShapeError, ValueDomainError
from orrery.lux import Cannon
from orrery.lux._cannon import chunks as _cannon_chunks
from orrery.lux._cannon.chunks import budget_for, chunk_rows, parse_budget
from orrery.lux._source import ArraySource, SpectraChunk
from orrery.lux.datasets import synthetic_survey

N, P, K = 150, 40, 10


@pytest.fixture(scope="module")
def survey():
    return synthetic_survey(N, P, snr=100, intrinsic_scatter=0.01, seed=5)


def _budget(rows: int, itemsize: int) -> int:
    return budget_for(rows, P, K, itemsize)


class Recording:
    """A source that records the row ranges read from it (and without ``labels``
    attribute unless asked, so its labels are read chunk by chunk)."""

    def __init__(self, inner, with_labels: bool = False):
        self.inner, self.reads = inner, []
        self.labels = inner.labels if with_labels else None

    @property
    def n_stars(self):
        return self.inner.n_stars

    @property
    def n_pixels(self):
        return self.inner.n_pixels

    def read(self, start, stop):
        self.reads.append((start, stop))
        return self.inner.read(start, stop)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) or 1.0))


def _assert_same(streamed, memory, rtol):
    assert np.array_equal(np.asarray(streamed.usable), np.asarray(memory.usable))
    for name in ("scaled_coeffs", "coeffs", "scatter", "label_offset", "label_scale"):
        assert _rel(getattr(streamed, name), getattr(memory, name)) <= rtol, name


def test_float64_equals_the_in_memory_fit_for_every_chunk_size(survey, x64):
    s = survey
    memory = Cannon(3, P).fit(s.labels, s.spectra, s.ivar)
    source = ArraySource(s.spectra, s.ivar, s.labels)
    # one chunk, then ragged last chunks (150 = 4 * 32 + 22 = 9 * 16 + 6)
    for rows in (None, 32, 16):
        recording = Recording(source)
        budget = None if rows is None else _budget(rows, 8)
        streamed = Cannon(3, P).fit(recording, memory_budget=budget)
        _assert_same(streamed, memory, 1e-9)
        sizes = {stop - start for start, stop in recording.reads}
        assert max(sizes) == (N if rows is None else rows)


def test_a_budget_that_holds_the_data_reads_each_chunk_once(survey, x64, monkeypatch):
    s = survey
    monkeypatch.setattr(_cannon_chunks, "CHUNK_BYTES", 32 * P * 8)  # 32 stars a chunk
    memory = Cannon(3, P).fit(s.labels, s.spectra, s.ivar)
    # the labels are read chunk by chunk, and those chunks are the fit's first pass
    recording = Recording(ArraySource(s.spectra, s.ivar, s.labels))
    _assert_same(Cannon(3, P).fit(recording, memory_budget="64MiB"), memory, 1e-9)
    assert sorted(recording.reads) == [(a, min(N, a + 32)) for a in range(0, N, 32)]
    # a budget that keeps two of the five chunks reads the other three in every pass
    recording = Recording(ArraySource(s.spectra, s.ivar, s.labels), with_labels=True)
    budget = _budget(32, 8) + 2 * 32 * 2 * P * 8
    _assert_same(Cannon(3, P).fit(recording, memory_budget=budget), memory, 1e-9)
    starts = [a for a, _ in recording.reads]
    assert starts.count(0) == starts.count(32) == 1 and starts.count(64) > 3
    # after the base pass, the passes that read walk back and forth (the last chunks
    # read are the first read again, from the page cache of a file source)
    assert starts[:11] == [0, 32, 64, 96, 128, 128, 96, 64, 64, 96, 128]


def test_chunks_to_read_are_spread_among_the_kept_ones():
    from orrery.lux._cannon.chunks import interleaved

    # each read overlaps the sums of the kept chunks before it; every chunk once, in order
    assert interleaved([0, 1, 2, 3], [4, 5]) == [0, 1, 4, 2, 3, 5]
    assert interleaved([3, 2, 1, 0], [6, 5, 4]) == [3, 6, 2, 5, 1, 0, 4]
    assert interleaved([], [2, 1]) == [2, 1] and interleaved([0, 1], []) == [0, 1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"regularization": 0.5, "regularization_type": "l1"},
        {"regularization": 2.0},
        {"fit_scatter": False},
        {"max_iter": 1},
    ],
)
@pytest.mark.filterwarnings("ignore:Cannon.fit. the intrinsic scatter")
def test_float64_variants_equal_the_in_memory_fit(survey, x64, kwargs):
    s = survey
    memory = Cannon(3, P).fit(s.labels, s.spectra, s.ivar, **kwargs)
    source = ArraySource(s.spectra, s.ivar, s.labels)
    streamed = Cannon(3, P).fit(source, memory_budget=_budget(32, 8), **kwargs)
    _assert_same(streamed, memory, 1e-9)


def test_censoring_and_masked_data_equal_the_in_memory_fit(survey, x64):
    s = survey
    flux, ivar = s.spectra.copy(), s.ivar.copy()
    flux[40:80] = np.nan  # a whole chunk of NaN flux: masked, as in memory
    ivar[3, :5] = 0.0
    ivar[100, 7] = np.nan
    censor_np = np.zeros((P, K), bool)
    censor_np[:10, 4:] = True
    censor: Any = censor_np  # Cannon.fit takes any array
    memory = Cannon(3, P).fit(s.labels, flux, ivar, censoring_mask=censor)
    source = ArraySource(flux, ivar, s.labels)
    streamed = Cannon(3, P).fit(source, memory_budget=_budget(32, 8), censoring_mask=censor)
    _assert_same(streamed, memory, 1e-9)
    assert np.array_equal(np.asarray(streamed.censoring_mask), censor)


def test_float32_within_the_in_memory_fits_own_round_off(survey):
    s = survey
    memory = Cannon(3, P).fit(s.labels, s.spectra, s.ivar)
    source = ArraySource(s.spectra, s.ivar, s.labels)
    streamed = [Cannon(3, P).fit(source, memory_budget=_budget(r, 4)) for r in (32, 16)]
    jax.config.update("jax_enable_x64", True)
    try:
        exact = Cannon(3, P).fit(s.labels, s.spectra, s.ivar)
    finally:
        jax.config.update("jax_enable_x64", False)
    for name in ("scaled_coeffs", "scatter"):
        round_off = _rel(getattr(memory, name), getattr(exact, name))
        assert round_off > 0
        for fit in streamed:
            assert getattr(fit, name).dtype == np.float32
            assert _rel(getattr(fit, name), getattr(memory, name)) <= 3 * round_off, name
            assert _rel(getattr(fit, name), getattr(exact, name)) <= 3 * round_off, name


def _compiles(caplog, fn):
    caplog.clear()
    with caplog.at_level(logging.DEBUG), jax.log_compiles(True):
        fn()
    return [r.getMessage() for r in caplog.records if "ompil" in r.getMessage()]


def test_one_program_serves_every_chunk_length(survey, caplog):
    s = survey
    budget = _budget(32, 4)

    def fit(n):  # 32 rows a chunk: the last holds 22 (n = 150) or 13 (n = 141) stars
        Cannon(3, P).fit(ArraySource(s.spectra[:n], s.ivar[:n], s.labels[:n]), memory_budget=budget)

    fit(150)
    assert _compiles(caplog, lambda: fit(141)) == []
    assert _compiles(caplog, lambda: jax.jit(lambda x: x * 5 - 2)(np.ones(3)))


def test_budget_sets_the_chunk_and_parses_sizes():
    assert parse_budget("2GiB") == 2 * 2**30
    assert parse_budget("500MB") == 500 * 10**6
    assert parse_budget(1e6) == 10**6
    assert parse_budget(None) == 2 * 2**30
    bad: Any
    for bad in ("two gigs", "-1GB", 0, True, "1 parsec", [1]):
        with pytest.raises(ConfigError, match="memory_budget"):
            parse_budget(bad)
    assert chunk_rows(budget_for(100, 8575, 10, 4), 10**6, 8575, 10, 4) == 96
    assert chunk_rows(10**12, 500, 8575, 10, 4) == 500
    assert chunk_rows(10**12, 10**6, 8575, 10, 4) == 976  # 32 MiB of flux, 16-row aligned
    with pytest.raises(ConfigError, match="memory_budget"):
        chunk_rows(1000, 10, 8575, 10, 4)


class NoLabels(ArraySource):
    def read(self, start, stop):
        chunk = super().read(start, stop)
        return SpectraChunk(chunk.flux, chunk.ivar, None, chunk.ids)


class Truncated(ArraySource):
    def read(self, start, stop):
        chunk = super().read(start, stop)
        return chunk._replace(ivar=chunk.ivar[:, :-1])


def test_bad_sources_are_refused_naming_the_argument(survey):
    s = survey
    source = ArraySource(s.spectra, s.ivar, s.labels)
    cannon = Cannon(3, P)
    with pytest.raises(ConfigError, match="output, output_ivar"):
        cannon.fit(source, s.spectra)
    with pytest.raises(ConfigError, match="memory_budget"):
        cannon.fit(s.labels, s.spectra, s.ivar, memory_budget="1GiB")
    with pytest.raises(ShapeError, match="output"):
        cannon.fit(s.labels)
    with pytest.raises(ConfigError, match="memory_budget"):
        cannon.fit(source, memory_budget=100)
    with pytest.raises(ValueDomainError, match="source: holds no labels"):
        cannon.fit(ArraySource(s.spectra, s.ivar))
    with pytest.raises(ValueDomainError, match="source: holds no labels"):
        cannon.fit(Recording(NoLabels(s.spectra, s.ivar, s.labels)))
    with pytest.raises(ShapeError, match="source: holds 40 pixels"):
        Cannon(3, P + 1).fit(source)
    with pytest.raises(ShapeError, match=r"source: labels of shape \(150, 3\)"):
        Cannon(2, P).fit(source)
    with pytest.raises(ShapeError, match=r"source: read\(0, 32\) gave ivar"):
        cannon.fit(Truncated(s.spectra, s.ivar, s.labels), memory_budget=_budget(32, 4))


def test_bad_values_in_a_chunk_are_refused(survey):
    s = survey
    budget = _budget(32, 4)
    for value, message in ((-1.0, "negative inverse variances"), (np.inf, r"\+inf")):
        ivar = s.ivar.copy()
        ivar[120, 3] = value
        with pytest.raises(ValueDomainError, match=f"source: rows 96:128 hold .*{message}"):
            Cannon(3, P).fit(ArraySource(s.spectra, ivar, s.labels), memory_budget=budget)
    labels = s.labels.copy()
    labels[7, 1] = np.nan
    with pytest.raises(ValueDomainError, match="labels"):
        Cannon(3, P).fit(ArraySource(s.spectra, s.ivar, labels))
    nothing = np.full_like(s.spectra, np.nan)
    with pytest.raises(ValueDomainError, match="source: every inverse variance"):
        Cannon(3, P).fit(ArraySource(nothing, s.ivar, s.labels), memory_budget=budget)

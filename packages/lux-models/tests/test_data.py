"""The data layer: OutputData, ShiftScalePreprocessor, LuxData."""

import numpy as np
import pytest

from orrery.interface import ShapeError, ValueDomainError
from orrery.lux import LuxData, OutputData, ShiftScalePreprocessor


def test_output_data_is_2d_and_err_broadcasts():
    od = OutputData(np.arange(4.0), err=0.5)
    assert od.data.shape == (4, 1) and od.err.shape == (4, 1)
    od2 = OutputData(np.ones((4, 3)), err=np.array([1.0, 2.0, 3.0]))
    assert od2.err.shape == (4, 3)
    with pytest.raises(ShapeError, match="err"):
        OutputData(np.ones((4, 3)), err=np.ones(2))


def test_preprocess_unprocess_round_trip():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, size=(50, 3))
    pre = ShiftScalePreprocessor.from_data(x)
    od = OutputData(x, err=0.1, preprocessor=pre)
    p = od.preprocess()
    assert p is not od
    np.testing.assert_allclose(np.mean(p.data, 0), 0, atol=1e-5)
    np.testing.assert_allclose(np.std(p.data, 0), 1, rtol=1e-4)
    np.testing.assert_allclose(p.err, 0.1 / np.std(x, 0)[None, :].repeat(50, 0), rtol=1e-5)
    back = p.unprocess()
    np.testing.assert_allclose(back.data, x, rtol=1e-5)


def test_percentile_preprocessor_ignores_nan():
    x = np.array([[1.0], [2.0], [3.0], [np.nan], [100.0]])
    pre = ShiftScalePreprocessor.from_data_percentiles(x)
    assert float(pre.shift[0]) == pytest.approx(2.5)
    lo, hi = np.nanpercentile(x, [16, 84])
    assert float(pre.scale[0]) == pytest.approx(0.5 * (hi - lo))


def test_zero_spread_feature_raises():
    x = np.column_stack([np.arange(5.0), np.ones(5)])
    with pytest.raises(ValueDomainError, match="feature 1"):
        ShiftScalePreprocessor.from_data(x)


def test_lux_data_length_check_slicing_and_unprocess():
    pre = ShiftScalePreprocessor(10.0, 2.0)
    d = LuxData(flux=np.ones((6, 3)), label=OutputData(np.arange(6.0), preprocessor=pre))
    assert d.data_size == 6 and set(d) == {"flux", "label"}
    sub = d[1:3]
    assert sub.data_size == 2 and sub["label"].preprocessor is pre
    with pytest.raises(ShapeError, match="objects"):
        LuxData(a=np.ones((3, 1)), b=np.ones((4, 1)))
    pp = d.preprocess()
    np.testing.assert_allclose(pp["label"].data[:, 0], (np.arange(6.0) - 10) / 2)
    out = d.unprocess({"label": pp["label"].data, "flux": np.zeros((6, 3))})
    np.testing.assert_allclose(out["label"].data[:, 0], np.arange(6.0))
    with pytest.raises(KeyError, match="outputs"):
        d["nope"]


def test_nan_with_zero_weight_is_masked():
    od = OutputData(np.array([[1.0, np.nan]]), err=np.array([[0.1, np.inf]]))
    np.testing.assert_array_equal(np.asarray(od.mask), [[True, False]])


def test_output_data_unprocess_takes_predictions_as_upstream():
    """Upstream's `OutputData.unprocess(data=None)`: an array (a prediction) or another
    processed `OutputData` is brought back with this output's preprocessor."""
    x = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    pre = ShiftScalePreprocessor(loc=np.array([3.0, 20.0]), scale=np.array([2.0, 10.0]))
    p = OutputData(x, err=0.5, preprocessor=pre).preprocess()
    pred = np.array([[0.5, -1.0]])
    back = p.unprocess(pred)
    np.testing.assert_allclose(back.data, [[4.0, 10.0]])
    assert not back.processed and not back.has_err
    other = OutputData(pred, err=np.array([0.1, 0.2]), preprocessor=pre, processed=True)
    back = p.unprocess(data=other)
    np.testing.assert_allclose(back.err, [[0.2, 2.0]])
    np.testing.assert_allclose(p.unprocess().data, x)  # the argument stays optional
    with pytest.raises(ValueDomainError, match="not processed"):
        p.unprocess(OutputData(pred, preprocessor=pre))

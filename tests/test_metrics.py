"""skcrystal.metrics: exact values, multi-output, constant targets, scorer."""
import warnings

import numpy as np
import pytest

from skcrystal.metrics import SCORER_NAME, mad, mae, mae_mad_score, mae_mad_scorer


def test_exact_values():
    y = np.array([1.0, 2.0, 3.0, 6.0])        # mean 3, |dev| = 2,1,0,3 -> MAD 1.5
    p = np.array([2.0, 2.0, 2.0, 2.0])        # |err| = 1,0,1,4 -> MAE 1.5
    assert mad(y) == pytest.approx(1.5)
    assert mae(y, p) == pytest.approx(1.5)
    assert mae_mad_score(y, p) == pytest.approx(1.0)
    assert mae_mad_score(y, y) == 0.0
    # predicting the mean gives exactly 1
    assert mae_mad_score(y, np.full(4, y.mean())) == pytest.approx(1.0)


def test_weights():
    y = np.array([0.0, 2.0])
    p = np.array([1.0, 2.0])
    w = np.array([3.0, 1.0])                  # weighted mean 0.5; MAD = (3*.5+1.5)/4 = .75
    assert mad(y, sample_weight=w) == pytest.approx(0.75)
    assert mae(y, p, sample_weight=w) == pytest.approx(0.75)
    assert mae_mad_score(y, p, sample_weight=w) == pytest.approx(1.0)


def test_multi_output_is_average_of_ratios():
    y = np.array([[1.0, 0.0], [3.0, 10.0]])   # MAD per column: 1, 5
    p = np.array([[2.0, 0.0], [3.0, 0.0]])    # MAE per column: 0.5, 5
    assert np.allclose(mad(y), [1.0, 5.0])
    assert mae(y, p) == pytest.approx((0.5 + 5.0) / 2)
    assert mae_mad_score(y, p) == pytest.approx((0.5 + 1.0) / 2)


def test_constant_target_is_nan_with_warning():
    with pytest.warns(UserWarning, match="constant"):
        assert np.isnan(mae_mad_score([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
    y = np.array([[1.0, 5.0], [3.0, 5.0]])
    with pytest.warns(UserWarning, match=r"output\(s\) \[1\]"):
        assert mae_mad_score(y, y + [[1.0, 0.0], [1.0, 0.0]]) == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="different shapes"):
        mae_mad_score([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"y_true contains NaN/inf at rows \[1\]"):
        mae([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="y_true must hold numbers"):
        mae_mad_score([1.0, "x", 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="empty"):
        mad([])


def test_scorer_and_registered_name():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import KFold, cross_validate

    rng = np.random.default_rng(0)
    X = rng.random((30, 2))
    y = X @ [1.0, 2.0] + 0.05 * rng.random(30)
    est = LinearRegression().fit(X, y)
    assert mae_mad_scorer(est, X, y) == pytest.approx(-mae_mad_score(y, est.predict(X)))
    assert get_scorer(SCORER_NAME)(est, X, y) == pytest.approx(mae_mad_scorer(est, X, y))
    res = cross_validate(LinearRegression(), X, y, cv=3,
                         scoring={"r2": "r2", "mae_mad": mae_mad_scorer})
    assert (res["test_mae_mad"] < 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = cross_validate(LinearRegression(), X, y, cv=3, scoring=["r2", SCORER_NAME])
    expected = [-mae_mad_score(y[te], LinearRegression().fit(X[tr], y[tr]).predict(X[te]))
                for tr, te in KFold(3).split(X)]
    assert np.allclose(res[f"test_{SCORER_NAME}"], expected)

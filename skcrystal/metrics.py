"""Error metrics used in the materials-ML literature, with scikit-learn scorers.

``MAE/MAD`` (mean absolute error over the mean absolute deviation of the
true values from their mean) is scale-free and is the metric of the ALIGNN
and periodicity papers: 1 is the error of always predicting the mean, and a
model below about 0.2 is conventionally called good. Lower is better.

Scorers
-------
``mae_mad_scorer`` is a scikit-learn scorer (``greater_is_better=False``,
so it returns ``-MAE/MAD`` like sklearn's ``neg_*`` scorers); pass the
object: ``cross_val_score(est, X, y, scoring=mae_mad_scorer)`` or
``scoring={"r2": "r2", "mae_mad": mae_mad_scorer}``.

Importing this module also registers the scorer under the name
``"neg_mae_mad"`` in scikit-learn's (private) scorer table. With
scikit-learn 1.9 that makes ``sklearn.metrics.get_scorer("neg_mae_mad")``
and list-valued ``scoring=["r2", "neg_mae_mad"]`` (e.g. in ``cross_validate``)
work, but **not** a bare string ``scoring="neg_mae_mad"``:
scikit-learn's parameter validation freezes the set of allowed strings when
it is first imported. Use the object when in doubt.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import make_scorer

from ._validation import as_numbers

__all__ = ["mae", "mad", "mae_mad_score", "mae_mad_scorer", "SCORER_NAME"]

#: the name under which :data:`mae_mad_scorer` is registered for ``scoring=``
SCORER_NAME = "neg_mae_mad"


def _as_2d(y, name):
    arr = as_numbers(y, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {np.shape(y)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} contains NaN/inf at rows "
                         f"{np.flatnonzero(bad.any(axis=1))[:10].tolist()}")
    return arr


def _pair(y_true, y_pred):
    t, p = _as_2d(y_true, "y_true"), _as_2d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different shapes: "
                         f"{np.shape(y_true)} vs {np.shape(y_pred)}")
    return t, p


def _weights(sample_weight, n):
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).ravel()
    if w.shape[0] != n:
        raise ValueError(f"sample_weight has {w.shape[0]} entries, expected {n}")
    return w


def mae(y_true, y_pred, sample_weight=None):
    """Mean absolute error, in the units of ``y``; outputs averaged.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,) or (n, n_outputs)
    sample_weight : array-like, shape (n,), optional

    Returns
    -------
    float
    """
    t, p = _pair(y_true, y_pred)
    w = _weights(sample_weight, len(t))
    return float(np.mean(np.average(np.abs(t - p), axis=0, weights=w)))


def mad(y, sample_weight=None):
    """Mean absolute deviation of ``y`` from its mean, per output.

    ``mean(|y - mean(y)|)`` -- the MAE of the constant predictor
    ``mean(y)``. (Not the *median* absolute deviation.)

    Parameters
    ----------
    y : array-like, shape (n,) or (n, n_outputs)
    sample_weight : array-like, shape (n,), optional

    Returns
    -------
    float for 1-D ``y``, ndarray of shape (n_outputs,) for 2-D ``y``
    """
    arr = _as_2d(y, "y")
    w = _weights(sample_weight, len(arr))
    centre = np.average(arr, axis=0, weights=w)
    out = np.average(np.abs(arr - centre), axis=0, weights=w)
    return float(out[0]) if np.ndim(y) == 1 else out


def mae_mad_score(y_true, y_pred, sample_weight=None):
    """MAE divided by the MAD of ``y_true`` (lower is better; 1 = predicting the mean).

    For several outputs the ratio is computed per output and averaged.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n,) or (n, n_outputs)
    sample_weight : array-like, shape (n,), optional
        Weights both the MAE and the MAD.

    Returns
    -------
    float
        NaN, with a ``UserWarning`` naming the output(s), when ``y_true`` is
        constant on an output (MAD = 0, ratio undefined); outputs that are
        not constant are still averaged if some are. NaN rather than an
        error because this is used inside cross-validation, where a
        constant fold should be reported, not abort the run (scikit-learn's
        ``r2_score`` makes the same choice for constant ``y_true``).
    """
    t, p = _pair(y_true, y_pred)
    w = _weights(sample_weight, len(t))
    err = np.average(np.abs(t - p), axis=0, weights=w)
    dev = np.average(np.abs(t - np.average(t, axis=0, weights=w)), axis=0, weights=w)
    # relative to the scale of y, so 1e-300-sized spreads of float noise count as constant
    const = dev <= 1e-12 * np.maximum(np.abs(t).max(axis=0), 1e-300)
    if const.all():
        warnings.warn("mae_mad_score: y_true is constant (MAD = 0); MAE/MAD is "
                      "undefined, returning NaN", UserWarning, stacklevel=2)
        return float("nan")
    if const.any():
        warnings.warn(f"mae_mad_score: y_true is constant on output(s) "
                      f"{np.flatnonzero(const).tolist()} (MAD = 0); they are left out "
                      "of the average", UserWarning, stacklevel=2)
    return float(np.mean(err[~const] / dev[~const]))


#: scikit-learn scorer: ``-mae_mad_score`` (greater is better, as for ``neg_*``)
mae_mad_scorer = make_scorer(mae_mad_score, greater_is_better=False)


def _register():
    try:
        from sklearn.metrics import _scorer
        table = getattr(_scorer, "_SCORERS", None)
        if isinstance(table, dict):
            table.setdefault(SCORER_NAME, mae_mad_scorer)
    except Exception:  # pragma: no cover - private API moved; the object still works
        pass


_register()

"""Do the descriptors of a hybrid predict the targets at all? (the descriptor screen)

A descriptor-hybridized regressor (``descriptors=``) first asks whether its
descriptors predict the targets on rows they were not fitted on, better than
they predict the same targets shuffled. If not, they carry no signal the data
can show, and feeding them to the network only adds columns to memorise
through: 29 pure-noise columns cost CGCNN ~2% MAE on perovskites
(``benchmarks/RESULTS.md``, "Descriptor screen"). The estimator then fits the
plain model and says so (:class:`CrystalGraphNet`'s ``descriptor_screen``).

Two held-out statistics, each against the same statistic on permutations of
the targets (a permutation test, so the threshold adapts to the number of
rows and columns):

* the leave-one-out R2 of a ridge regression (penalty chosen by that
  error; closed form, all permutations in one fit): linear signal;
* the out-of-bag R2 of a small random forest: signal a linear map misses
  (a target that depends on ``|d|``, on thresholds, on interactions).

The forest runs only when the ridge finds nothing, its permutations only when
its own R2 reaches ``min_r2``. Descriptors are kept when either statistic
reaches ``min_r2`` and beats all of its permutations.
"""
import numpy as np

__all__ = ["RIDGE_ALPHAS", "descriptor_signal", "ridge_loo"]

#: penalties of the ridge fits (standardized descriptors and targets)
RIDGE_ALPHAS = np.logspace(-3, 4, 15)

#: fewest rows the screen judges; below, descriptors are kept (too few
#: rows to tell signal from noise, and too few permutations to test with)
MIN_ROWS = 20


def ridge_loo(D, Y):
    """Ridge of ``Y`` on ``D``: (weights (n_targets, k), leave-one-out R2 per target).

    ``D`` (n, k) and ``Y`` (n, n_targets) standardized. The intercept is
    fitted (it is zero here, both being centred) so that the leave-one-out
    error re-centres without the left-out row: with a fixed zero intercept
    the left-out row is implied by the others' centring, and with as many
    columns as rows a pure-noise fit scored a leave-one-out R2 of ~1.
    """
    from sklearn.linear_model import RidgeCV

    ridge = RidgeCV(alphas=RIDGE_ALPHAS, fit_intercept=True, alpha_per_target=True)
    ridge.fit(D, Y)
    # best_score_: minus the mean squared leave-one-out error of each
    # target column; the columns have variance 1, so R2 = 1 + score
    return np.atleast_2d(ridge.coef_), 1.0 + np.atleast_1d(ridge.best_score_)


def _forest_oob_r2(D, Y, seed):
    from sklearn.ensemble import RandomForestRegressor

    n = len(D)
    forest = RandomForestRegressor(
        n_estimators=50, min_samples_leaf=5, max_features=max(1, D.shape[1] // 3),
        max_samples=min(1.0, 2000 / n), oob_score=True, random_state=seed, n_jobs=1)
    forest.fit(D, Y[:, 0] if Y.shape[1] == 1 else Y)
    return float(forest.oob_score_)


def descriptor_signal(D, Y, random_state=0, n_permutations=19, min_r2=0.01):
    """Whether descriptors predict targets on held-out rows beyond chance.

    Parameters
    ----------
    D : ndarray, shape (n, k)
        Standardized descriptors.
    Y : ndarray, shape (n, n_targets)
        Standardized targets.
    random_state : int
        Seeds the permutations and the forests (the result is a function of
        the data and this seed).
    n_permutations : int
        Permutations per test; with 19, noise passes a test with
        probability 1/20.
    min_r2 : float
        Smallest held-out R2 that counts as signal (a significant but tiny
        effect is not worth the hybrid's extra columns).

    Returns
    -------
    dict
        ``signal`` (bool), ``test`` (``"ridge"``, ``"forest"`` or None, the
        test that found it; ``"too few rows"`` when not judged), ``ridge_r2``
        and ``ridge_null_max`` (mean over targets), ``forest_r2`` and
        ``forest_null_max`` (None when the forest did not run).
    """
    D = np.asarray(D, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(D), -1)
    n, m = Y.shape
    out = {"signal": True, "test": "too few rows", "ridge_r2": None,
           "ridge_null_max": None, "forest_r2": None, "forest_null_max": None}
    if n < MIN_ROWS:
        return out
    rng = np.random.default_rng(random_state)
    perms = [rng.permutation(n) for _ in range(n_permutations)]
    # the targets and every permutation as columns of one ridge fit
    stacked = np.hstack([Y] + [Y[p] for p in perms])
    r2 = ridge_loo(D, stacked)[1].reshape(n_permutations + 1, m).mean(axis=1)
    out.update(ridge_r2=float(r2[0]), ridge_null_max=float(r2[1:].max()))
    if r2[0] >= min_r2 and r2[0] > r2[1:].max():
        out["test"] = "ridge"
        return out
    seeds = rng.integers(0, 2**31 - 1, size=n_permutations + 1)
    obs = _forest_oob_r2(D, Y, int(seeds[0]))
    out["forest_r2"] = obs
    if obs >= min_r2:  # only then can the permutations decide
        null = max(_forest_oob_r2(D, Y[p], int(s)) for p, s in zip(perms, seeds[1:]))
        out["forest_null_max"] = null
        if obs > null:
            out["test"] = "forest"
            return out
    out.update(signal=False, test=None)
    return out

"""EnsembleRegressor: seeds, parallel members, mean and spread, OOD spread."""
import numpy as np
import pytest
from sklearn.base import clone

from skcrystal.ensemble import EnsembleRegressor
from skcrystal.estimators.cgcnn import CGCNNRegressor

SMALL = dict(module__hidden=16, module__n_conv=2, module__h_fea_len=32,
             max_neighbors=8, batch_size=32)


@pytest.fixture(scope="module")
def data():
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=200)
    return list(X), np.asarray(y)


def _carbons():
    from pymatgen.core import Lattice, Structure
    diamond = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.567), ["C"], [[0, 0, 0]])
    graphite = Structure(Lattice.hexagonal(2.46, 6.71), ["C"] * 4,
                         [[0, 0, .25], [0, 0, .75], [1 / 3, 2 / 3, .25], [2 / 3, 1 / 3, .75]])
    lonsdaleite = Structure(Lattice.hexagonal(2.51, 4.12), ["C"] * 4,
                            [[1 / 3, 2 / 3, 0.0625], [2 / 3, 1 / 3, 0.5625],
                             [1 / 3, 2 / 3, 0.4375], [2 / 3, 1 / 3, 0.9375]])
    return [diamond, graphite, lonsdaleite]


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    ens = EnsembleRegressor(CGCNNRegressor(max_epochs=12, **SMALL), n_estimators=4,
                            random_state=0)
    return ens.fit(X[:150], y[:150])


def test_members_differ_only_in_seed(fitted):
    seeds = [m.random_state for m in fitted.estimators_]
    assert len(set(seeds)) == 4
    assert all(m.max_epochs == 12 for m in fitted.estimators_)
    assert fitted.estimator.random_state is None  # the template is untouched


def test_predict_mean_and_std(fitted, data):
    X, _ = data
    members = fitted.predict_members(X[150:160])
    assert members.shape == (4, 10)
    mean, std = fitted.predict(X[150:160], return_std=True)
    np.testing.assert_allclose(mean, members.mean(0))
    np.testing.assert_allclose(std, members.std(0))
    np.testing.assert_allclose(fitted.predict(X[150:160]), mean)
    assert (std > 0).all()


def test_spread_larger_out_of_distribution(fitted, data):
    """Carbon allotropes (no C in these perovskites) vs held-out perovskites."""
    X, y = data
    assert not any("C" == el.symbol for s in X[:150] for el in s.composition)
    _, std_in = fitted.predict(X[150:], return_std=True)
    _, std_out = fitted.predict(_carbons(), return_std=True)
    # spread relative to the target scale, so the comparison is unit-free
    assert np.median(std_out) > 1.5 * np.median(std_in), (std_out, np.median(std_in))


def test_spread_on_carbon_24(fitted, data):
    """The same on 20 AIRSS carbon structures (6-24 atoms) from ../shared/data."""
    import pandas as pd
    from conftest import shared_path
    from skcrystal.datasets import structures_from_cif
    frame = pd.read_csv(shared_path("carbon_24", "carbon_24_val.csv"), nrows=20)
    carbons = structures_from_cif(frame["cif"].tolist())
    X, _ = data
    _, std_in = fitted.predict(X[150:], return_std=True)
    _, std_out = fitted.predict(carbons, return_std=True)
    # measured ratio 1.5-2.1 over ensemble seeds 0-2 (hand-made allotropes: 2.3-3.7)
    assert np.median(std_out) > 1.25 * np.median(std_in), (np.median(std_out),
                                                           np.median(std_in))


def test_parallel_members_match_serial(data):
    X, y = data
    base = CGCNNRegressor(max_epochs=1, **SMALL)
    serial = EnsembleRegressor(base, n_estimators=2, random_state=3).fit(X[:40], y[:40])
    parallel = clone(serial).set_params(n_jobs=2).fit(X[:40], y[:40])
    np.testing.assert_array_equal(serial.seeds_, parallel.seeds_)
    np.testing.assert_allclose(serial.predict_members(X[40:45]),
                               parallel.predict_members(X[40:45]), rtol=1e-4, atol=1e-5)


def test_errors():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        EnsembleRegressor(CGCNNRegressor()).predict([])
    with pytest.raises(ValueError, match="n_estimators"):
        EnsembleRegressor(CGCNNRegressor(), n_estimators=0).fit([], [])
    with pytest.raises(TypeError, match="estimator must be a scikit-learn regressor .*NoneType"):
        EnsembleRegressor(None).fit([], [])
    from skcrystal.estimators import CGCNNClassifier
    with pytest.raises(TypeError, match="must be a regressor, got the classifier "
                                        "CGCNNClassifier"):
        EnsembleRegressor(CGCNNClassifier()).fit([], [])
    with pytest.raises(ValueError, match="n_jobs must be None or a non-zero integer"):
        EnsembleRegressor(CGCNNRegressor(), n_jobs="two").fit([], [])

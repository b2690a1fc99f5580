"""MatminerFeaturizer: matminer featurizers as descriptors of skcrystal estimators."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skcrystal.datasets import load_perovskites
from skcrystal.descriptors import MatminerFeaturizer
from skcrystal.estimators import CGCNNRegressor

pytest.importorskip("matminer")

TINY = dict(max_epochs=2, module__hidden=8, module__n_conv=1, batch_size=16,
            random_state=0)


class Electronegativity:
    """A featurizer in matminer's shape: mean and max Pauling electronegativity.

    Raises for compositions with oxygen fraction above ``fail_above``, to
    exercise the failure paths.
    """

    def __init__(self, fail_above=1.0):
        self.fail_above = fail_above

    def get_params(self, deep=True):
        return {"fail_above": self.fail_above}

    def set_params(self, **params):
        self.__dict__.update(params)
        return self

    def featurize(self, comp):
        if comp.get_atomic_fraction("O") > self.fail_above:
            raise ValueError("too much oxygen")
        x = [el.X for el in comp.elements]
        return [float(np.mean(x)), float(np.max(x))]

    def feature_labels(self):
        return ["mean_X", "max_X"]


@pytest.fixture(scope="module")
def perov():
    return load_perovskites(n=60)


def test_magpie_on_composition_equals_matminer_and_trains_in_cv(perov):
    from matminer.featurizers.composition import ElementProperty
    X, y = perov
    magpie = ElementProperty.from_preset("magpie")
    mf = MatminerFeaturizer(magpie, on="composition")
    values = mf.fit_transform(X[:5])
    expected = np.array([magpie.featurize(s.composition) for s in X[:5]], dtype=float)
    np.testing.assert_allclose(values, expected)
    assert list(mf.get_feature_names_out()) == magpie.feature_labels()
    # what used to fit, then fail at predict (cross_val_score gave nan)
    scores = cross_val_score(CGCNNRegressor(descriptors=mf, **TINY), X, y, cv=2,
                             error_score="raise")
    assert np.isfinite(scores).all()


def test_bare_matminer_featurizer_in_descriptors_is_refused_at_fit(perov):
    from matminer.featurizers.composition import ElementProperty
    X, y = perov
    raw = make_pipeline(FunctionTransformer(lambda S: [s.composition for s in S]),
                        ElementProperty.from_preset("magpie"))
    with pytest.raises(TypeError, match=r"ElementProperty is a bare matminer.*MatminerFeaturizer"):
        CGCNNRegressor(descriptors=raw, **TINY).fit(X, y)


def test_failures_are_named_and_imputed_with_training_means(perov):
    X, _ = perov
    comps = [s.composition for s in X[:20]]
    frac = np.array([c.get_atomic_fraction("O") for c in comps])
    assert 0 < (frac > 0.5).sum() < 20  # some but not all fail below
    mf = MatminerFeaturizer(Electronegativity(fail_above=0.5), on="composition")
    bad = int(np.flatnonzero(frac > 0.5)[0])
    with pytest.warns(RuntimeWarning, match=rf"X\[{bad}\] \({X[bad].composition.reduced_formula}\)"):
        out = mf.fit_transform(X[:20])
    ok = frac <= 0.5
    direct = np.array([Electronegativity().featurize(c) for c in comps])
    np.testing.assert_allclose(out[ok], direct[ok])
    np.testing.assert_allclose(mf.fill_values_, direct[ok].mean(0))
    np.testing.assert_allclose(out[~ok], np.broadcast_to(direct[ok].mean(0), out[~ok].shape))

    keep_nan = MatminerFeaturizer(Electronegativity(fail_above=0.5), on="composition",
                                  impute=False)
    with pytest.warns(RuntimeWarning):
        assert np.isnan(keep_nan.fit_transform(X[:20])[~ok]).all()
    strict = MatminerFeaturizer(Electronegativity(fail_above=0.5), on="composition",
                                on_error="raise")
    with pytest.raises(ValueError, match=rf"X\[{bad}\].*Electronegativity failed"):
        strict.fit(X[:20])


def test_parameters_clone_and_checks(perov):
    X, _ = perov
    mf = MatminerFeaturizer(Electronegativity(), on="composition", n_jobs=2)
    twin = clone(mf)
    assert twin.get_params()["on"] == "composition" and twin.featurizer is not mf.featurizer
    np.testing.assert_allclose(mf.fit_transform(X[:6]), MatminerFeaturizer(
        Electronegativity(), on="composition").fit_transform(X[:6]))
    assert mf.featurizer_ is not mf.featurizer  # the user's object stays unfitted
    with pytest.raises(ValueError, match="'on' parameter"):
        MatminerFeaturizer(Electronegativity(), on="site").fit(X[:3])
    with pytest.raises(TypeError, match="matminer featurizer"):
        MatminerFeaturizer(object()).fit(X[:3])
    with pytest.raises(TypeError, match=r"X\[1\] is a str, not a pymatgen Structure"):
        MatminerFeaturizer(Electronegativity(), on="composition").fit([X[0], "Fe2O3"])

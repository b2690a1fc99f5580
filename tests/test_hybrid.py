"""Descriptor-hybridized models (paper Eq. 14) through CrystalGraphNet's descriptors=."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone

from skcrystal.datasets import load_perovskites
from skcrystal.estimators import CGCNNRegressor

TINY = dict(module__hidden=8, module__n_conv=1, module__h_fea_len=16,
            batch_size=16, random_state=0)


class CellDescriptors(TransformerMixin, BaseEstimator):
    """Structures -> [volume per atom (Å^3), lattice a (Å)], a tiny descriptor bank."""

    def fit(self, X, y=None):
        self.n_features_out_ = 2
        return self

    def transform(self, X):
        return np.array([[s.volume / len(s), s.lattice.a] for s in X])

    def get_feature_names_out(self, input_features=None):
        return np.array(["vpa", "a"], dtype=object)


def _noise_frame(X, k=3, seed=0):
    """A DataFrame of the structures and k standard-normal columns (no signal)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(len(X), k)), columns=[f"n{j}" for j in range(k)])
    df.insert(0, "structure", list(X))
    return df


@pytest.fixture(scope="module")
def perov():
    X, _ = load_perovskites(n=90)
    vol = np.array([s.volume for s in X])
    return X, vol


def test_shapes_and_training_only_scaling(perov):
    X, vol = perov
    Xtr, Xte = X[:30], X[30:50]
    est = CGCNNRegressor(max_epochs=1, descriptors=CellDescriptors(), **TINY).fit(Xtr, vol[:30])
    D_tr = CellDescriptors().fit(Xtr).transform(Xtr)
    assert est.n_descriptors_ == 2
    assert list(est.descriptor_names_) == ["vpa", "a"]
    np.testing.assert_allclose(est.descriptor_scaler_.mean_, D_tr.mean(axis=0))
    np.testing.assert_allclose(est.descriptor_scaler_.scale_, D_tr.std(axis=0))
    # the head sees [pooled (8), descriptors (2)]
    assert est.module_.head.mlp(torch.zeros(1, 10)).shape == (1, 1)
    assert est.transform(Xte).shape == (20, 8)     # pooled representation only
    mean_before = est.descriptor_scaler_.mean_.copy()
    assert est.predict(Xte).shape == (20,)
    np.testing.assert_array_equal(est.descriptor_scaler_.mean_, mean_before)
    # clone keeps the transformer as a parameter, unfitted
    c = clone(est)
    assert isinstance(c.descriptors, CellDescriptors) and not hasattr(c, "descriptor_scaler_")


class ScaledVolume(TransformerMixin, BaseEstimator):
    """Structures -> [scale * volume per atom], a descriptor with a parameter."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.array([[self.scale * s.volume / len(s)] for s in X])


def test_descriptor_parameters_are_set_like_nested_estimators(perov):
    """descriptors__<name> reaches the transformer (scikit-learn's nested parameters),
    so a grid search can tune it; skorch stored it on the estimator and fit refused it."""
    from sklearn.model_selection import GridSearchCV
    X, vol = perov
    est = CGCNNRegressor(max_epochs=1, descriptors=ScaledVolume(), **TINY)
    est.set_params(descriptors__scale=2.0, lr=0.01)
    assert est.descriptors.scale == 2.0 and est.lr == 0.01
    assert est.get_params()["descriptors__scale"] == 2.0
    assert "descriptors__scale" not in vars(est)
    c = clone(est)
    assert c.descriptors.scale == 2.0 and c.descriptors is not est.descriptors
    grid = GridSearchCV(est, {"descriptors__scale": [1.0, 3.0]}, cv=2).fit(X[:24], vol[:24])
    assert grid.best_estimator_.descriptors.scale in (1.0, 3.0)
    assert [p["descriptors__scale"] for p in grid.cv_results_["params"]] == [1.0, 3.0]
    with pytest.raises(ValueError, match=r"descriptors__scale: descriptors=None has no "
                                         r"parameters to set"):
        CGCNNRegressor().set_params(descriptors__scale=2.0)


def test_dataframe_with_precomputed_descriptor_columns(perov):
    X, vol = perov
    vpa = np.array([s.volume / len(s) for s in X])
    df = pd.DataFrame({"structure": X[:30], "vpa": vpa[:30]})
    est = CGCNNRegressor(max_epochs=1, **TINY).fit(df, vol[:30])
    assert est.n_descriptors_ == 1 and est.descriptor_names_ == ["vpa"]
    assert est.descriptor_scaler_.mean_[0] == pytest.approx(vpa[:30].mean())
    test = pd.DataFrame({"structure": X[30:40], "vpa": vpa[30:40]})
    assert est.predict(test).shape == (10,)
    with pytest.raises(ValueError, match="descriptor columns"):
        est.predict(X[30:40])                      # structures without the column
    # both at once: transformer + precomputed columns
    est2 = CGCNNRegressor(max_epochs=1, descriptors=CellDescriptors(), **TINY).fit(df, vol[:30])
    assert est2.descriptor_names_ == ["vpa", "a", "vpa"]


def test_nan_descriptor_error_names_rows(perov):
    X, vol = perov
    vals = np.array([s.volume / len(s) for s in X[:12]])
    vals[[3, 7]] = np.nan
    df = pd.DataFrame({"structure": X[:12], "vpa": vals})
    with pytest.raises(ValueError, match=r"rows \[3, 7\].*vpa"):
        CGCNNRegressor(max_epochs=1, **TINY).fit(df, vol[:12])


def test_descriptor_columns_reordered_at_predict_are_rejected(perov):
    X, vol = perov
    df = pd.DataFrame({"structure": X[:20], "vpa": [s.volume / 5 for s in X[:20]],
                       "a": [s.lattice.a for s in X[:20]]})
    est = CGCNNRegressor(max_epochs=1, **TINY).fit(df, vol[:20])
    with pytest.raises(ValueError, match="descriptor column 0 of X is 'a' but the model "
                                         "was fitted with 'vpa'"):
        est.predict(df[["structure", "a", "vpa"]])


def test_hybrid_beats_plain_on_lattice_dependent_target(perov):
    # cell volume depends on the lattice; the hybrid model gets volume per
    # atom and a as inputs, the plain one must infer them from bond lengths
    X, vol = perov
    Xtr, ytr, Xte, yte = X[:60], vol[:60], X[60:], vol[60:]
    kw = dict(TINY, max_epochs=40, lr=1e-2)
    plain = CGCNNRegressor(**kw).fit(Xtr, ytr)
    hybrid = CGCNNRegressor(descriptors=CellDescriptors(), **kw).fit(Xtr, ytr)
    mae_plain = np.abs(plain.predict(Xte) - yte).mean()
    mae_hybrid = np.abs(hybrid.predict(Xte) - yte).mean()
    # measured: hybrid 0.93 Å^3 vs plain 2.84 Å^3 (test MAD 13.4 Å^3)
    assert mae_hybrid < 0.6 * mae_plain, (mae_hybrid, mae_plain)


def test_descriptor_skip_path_starts_at_zero_and_adds_linearly():
    from skcrystal.nn.head import ReadoutHead
    torch.manual_seed(0)
    head = ReadoutHead(4, n_outputs=2, hidden=(8,), n_descriptors=3)
    h, d = torch.randn(5, 4), torch.randn(5, 3)
    assert torch.equal(head.skip.weight, torch.zeros(2, 3))
    torch.testing.assert_close(head(h, d), head.mlp(torch.cat([h, d], 1)))
    with torch.no_grad():
        head.skip.weight.copy_(torch.arange(6.0).reshape(2, 3))
    torch.testing.assert_close(head(h, d), head.mlp(torch.cat([h, d], 1)) +
                               d @ torch.arange(6.0).reshape(2, 3).T)
    assert ReadoutHead(4, n_descriptors=3, descriptor_skip=False).skip is None
    assert ReadoutHead(4).skip is None


def test_regressor_starts_descriptor_skip_at_the_ridge_fit(perov):
    from sklearn.linear_model import RidgeCV
    from skcrystal.estimators._screen import RIDGE_ALPHAS
    X, y = perov[0][:40], perov[1][:40]
    # a tiny lr: one epoch leaves the weights where initialisation put them
    est = CGCNNRegressor(descriptors=CellDescriptors(), descriptor_skip=True, max_epochs=1,
                         lr=1e-12, **TINY).fit(X, y)
    assert est.descriptor_skip_
    D = est.descriptor_scaler_.transform(CellDescriptors().transform(X), ["vpa", "a"])
    Y = est.target_scaler_.transform(y)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(D, Y)
    (head,) = est.module_.readout_modules()
    np.testing.assert_allclose(head.skip.weight.detach().numpy(),
                               np.atleast_2d(ridge.coef_), rtol=1e-4, atol=1e-5)


def test_descriptor_that_carries_the_answer_is_used_on_long_chains():
    # the chain length a is out of reach of a mean-pooled GNN (test R2 about
    # 0.26 without descriptors), and is one of the descriptors here
    from sklearn.metrics import r2_score
    from skcrystal.datasets.synthetic import make_carbon_chains
    S, a = make_carbon_chains(160, n_atoms=(10, 20), random_state=0)
    abc = np.array([s.lattice.abc for s in S])
    df = pd.DataFrame(abc, columns=["a", "b", "c"])
    df.insert(0, "structure", S)
    est = CGCNNRegressor(max_epochs=15, random_state=0, module__hidden=16,
                         module__n_conv=2).fit(df.iloc[:120], a[:120])
    assert est.descriptor_skip_ and est.descriptor_ridge_r2_ > 0.99  # "auto" chose it
    assert r2_score(a[120:], est.predict(df.iloc[120:])) > 0.95


def test_skip_path_is_off_where_descriptors_do_not_carry_the_answer(perov):
    """"auto": a weak linear fit (leave-one-out R2 < 0.9) turns the skip path off.

    On the 4,811 shared perovskites the skip path cost 28% in MAE (fold 0:
    0.098 eV/cell with it, 0.077 without, plain CGCNN 0.076); the ridge fit
    there reaches a leave-one-out R2 of about 0.26.
    """
    X, y = perov[0][:40], perov[1][:40]
    noise = _noise_frame(X)
    # the screen off: it would set these columns aside (see the screen tests)
    est = CGCNNRegressor(max_epochs=2, descriptor_screen=False, **TINY).fit(noise, y)
    assert not est.descriptor_skip_ and est.descriptor_ridge_r2_ < 0.5
    (head,) = est.module_.readout_modules()
    assert not head.skip.weight.requires_grad
    assert torch.equal(head.skip.weight, torch.zeros_like(head.skip.weight))
    # the same descriptors, the skip path forced on: trained like any weight
    on = CGCNNRegressor(max_epochs=2, descriptor_skip=True, descriptor_screen=False,
                        **TINY).fit(noise, y)
    (head,) = on.module_.readout_modules()
    assert on.descriptor_skip_ and head.skip.weight.requires_grad
    assert clone(est).set_params(descriptor_skip=False).get_params()["descriptor_skip"] is False


def test_saved_state_keeps_the_skip_path_choice(perov, tmp_path):
    """A model loaded from f_params + f_state (or resumed) keeps the skip path off."""
    X, y = perov[0][:40], perov[1][:40]
    noise = _noise_frame(X)
    est = CGCNNRegressor(max_epochs=2, descriptor_screen=False, **TINY).fit(noise, y)
    assert not est.descriptor_skip_
    est.save_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "s.json")
    new = CGCNNRegressor(max_epochs=2, descriptor_screen=False, **TINY)
    new.load_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "s.json")
    assert new.descriptor_skip_ is False
    assert new.descriptor_ridge_r2_ == pytest.approx(est.descriptor_ridge_r2_)
    (head,) = new.module_.readout_modules()
    assert not head.skip.weight.requires_grad
    np.testing.assert_allclose(new.predict(noise), est.predict(noise), rtol=1e-6)


def test_hybrid_starts_as_the_plain_model_of_the_same_seed():
    """Same random draws for the graph part; the descriptor columns start at zero."""
    from skcrystal.nn.cgcnn import CGCNN
    torch.manual_seed(3)
    plain = CGCNN(hidden=8, n_conv=1, h_fea_len=16)
    torch.manual_seed(3)
    hybrid = CGCNN(hidden=8, n_conv=1, h_fea_len=16, n_descriptors=3)
    p, q = plain.state_dict(), hybrid.state_dict()
    assert set(q) == set(p) | {"head.skip.weight"}
    for name, value in p.items():
        if name == "head.mlp.0.weight":
            assert torch.equal(q[name][:, :8], value)
            assert torch.equal(q[name][:, 8:], torch.zeros(16, 3))
        else:
            assert torch.equal(q[name], value), name
    assert torch.equal(q["head.skip.weight"], torch.zeros(1, 3))
    # and the random stream after construction is where the plain model left it
    torch.manual_seed(3)
    CGCNN(hidden=8, n_conv=1, h_fea_len=16)
    after_plain = torch.rand(4)
    torch.manual_seed(3)
    CGCNN(hidden=8, n_conv=1, h_fea_len=16, n_descriptors=3)
    assert torch.equal(torch.rand(4), after_plain)


def test_descriptors_that_carry_nothing_leave_the_plain_fit(perov):
    """Constant descriptor columns scale to zero: the hybrid trains as the plain model.

    With the screen off, so that the hybrid's own network (descriptor columns
    of its first layer at zero) is what trains.
    """
    X, y = perov[0][:40], perov[1][:40]
    const = pd.DataFrame({"c1": np.full(40, 2.5), "c2": np.full(40, -1.0)})
    const.insert(0, "structure", list(X))
    plain = CGCNNRegressor(max_epochs=3, **TINY).fit(list(X), y)
    hybrid = CGCNNRegressor(max_epochs=3, descriptor_screen=False, **TINY).fit(const, y)
    assert hybrid.descriptors_used_ and hybrid.n_descriptors_ == 2
    assert not hybrid.descriptor_skip_
    # equal up to float rounding (the first layer's matmul is wider: 3e-5 measured);
    # another seed moves the predictions by ~14%
    ref = plain.predict(list(X))
    np.testing.assert_allclose(hybrid.predict(const), ref, rtol=1e-3)
    other = CGCNNRegressor(max_epochs=3, **{**TINY, "random_state": 1}).fit(list(X), y)
    assert np.abs(other.predict(list(X)) - ref).max() > 1e-2 * np.abs(ref).max()


# ------------------------------------------------------------ descriptor screen
def test_screen_sets_noise_descriptors_aside_and_fits_the_plain_model(perov):
    """Descriptors that predict nothing: a warning, then exactly the plain fit."""
    X, y = perov
    noise = _noise_frame(X)
    with pytest.warns(UserWarning, match=r"descriptors \(3 columns\) do not predict the targets"):
        hybrid = CGCNNRegressor(max_epochs=3, **TINY).fit(noise.iloc[:60], y[:60])
    assert hybrid.descriptors_used_ is False and hybrid.n_descriptors_ == 0
    sc = hybrid.descriptor_screen_
    assert not sc["signal"] and sc["ridge_r2"] < 0.01 and sc["forest_r2"] < 0.01
    assert hybrid.module_.head.skip is None  # the plain model's head
    plain = CGCNNRegressor(max_epochs=3, **TINY).fit(list(X[:60]), y[:60])
    for a, b in zip(hybrid.module_.state_dict().values(), plain.module_.state_dict().values()):
        assert torch.equal(a, b)
    # predict ignores the columns (any values: they are not computed or read)
    other = noise.iloc[60:].assign(n0=1e6)
    np.testing.assert_array_equal(hybrid.predict(other), plain.predict(list(X[60:])))


def test_screen_keeps_descriptors_with_linear_or_nonlinear_signal():
    from skcrystal.estimators._screen import descriptor_signal
    rng = np.random.default_rng(1)
    D = rng.normal(size=(300, 4))
    linear = D[:, 1] + 0.5 * rng.normal(size=300)
    found = descriptor_signal(D, ((linear - linear.mean()) / linear.std())[:, None])
    assert found["signal"] and found["test"] == "ridge" and found["ridge_r2"] > 0.7
    # |d|: no linear trace (ridge R2 ~0), a forest sees it
    bent = np.abs(D[:, 2]) + 0.2 * rng.normal(size=300)
    found = descriptor_signal(D, ((bent - bent.mean()) / bent.std())[:, None])
    assert found["ridge_r2"] < 0.05
    assert found["signal"] and found["test"] == "forest" and found["forest_r2"] > 0.3
    # pure noise, 29 columns as DescriptorBank's, at several sizes: set aside
    for n in (40, 400, 2000):
        y = rng.normal(size=(n, 1))
        assert not descriptor_signal(rng.normal(size=(n, 29)), y, random_state=n)["signal"]
    # too few rows to judge: kept, not judged
    assert descriptor_signal(D[:10], D[:10, :1])["test"] == "too few rows"


def test_ridge_leave_one_out_is_honest_with_as_many_columns_as_rows():
    """With a fixed zero intercept, 29 noise columns on 30 rows scored R2 ~0.98."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from skcrystal.estimators._screen import ridge_loo
    rng = np.random.default_rng(0)
    D = rng.normal(size=(30, 29))
    D = (D - D.mean(0)) / D.std(0)
    Y = rng.normal(size=(30, 1))
    Y = (Y - Y.mean()) / Y.std()
    coef, r2 = ridge_loo(D, Y)
    assert r2[0] < 0.1
    # the closed form equals refitting without each row, at the chosen penalty
    from sklearn.linear_model import RidgeCV
    from skcrystal.estimators._screen import RIDGE_ALPHAS
    alpha = RidgeCV(alphas=RIDGE_ALPHAS).fit(D, Y[:, 0]).alpha_
    pred = cross_val_predict(Ridge(alpha=alpha), D, Y[:, 0], cv=LeaveOneOut())
    assert r2[0] == pytest.approx(1 - np.mean((Y[:, 0] - pred) ** 2), abs=1e-9)


def test_screen_keeps_descriptors_that_carry_the_target(perov):
    X, y = perov
    est = CGCNNRegressor(max_epochs=1, descriptors=CellDescriptors(), **TINY).fit(X[:60], y[:60])
    assert est.descriptors_used_ and est.descriptor_screen_["signal"]
    assert est.n_descriptors_ == 2
    # the decision is the data's, not the seed's (ensemble members agree)
    other = CGCNNRegressor(max_epochs=1, descriptors=CellDescriptors(),
                           **{**TINY, "random_state": 5}).fit(X[:60], y[:60])
    assert other.descriptor_screen_ == est.descriptor_screen_
    # off: noise columns are used
    est = CGCNNRegressor(max_epochs=1, descriptor_screen=False, **TINY).fit(
        _noise_frame(X).iloc[:60], y[:60])
    assert est.descriptors_used_ and est.descriptor_screen_ is None and est.n_descriptors_ == 3


def test_screened_out_model_saves_and_loads(perov, tmp_path):
    X, y = perov
    noise = _noise_frame(X)
    with pytest.warns(UserWarning, match="do not predict"):
        est = CGCNNRegressor(max_epochs=2, **TINY).fit(noise.iloc[:60], y[:60])
    est.save_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "s.json")
    new = CGCNNRegressor(max_epochs=2, **TINY)
    new.load_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "s.json")
    assert new.descriptors_used_ is False
    np.testing.assert_array_equal(new.predict(noise.iloc[60:]), est.predict(noise.iloc[60:]))


# ------------------------------------------------------------ descriptor dropout
def _head_inputs(est):
    """Record the descriptors the head receives: (training flag, tensor) per call."""
    seen = []
    est.module_.head.register_forward_pre_hook(
        lambda mod, args: seen.append((mod.training, args[1].detach().clone())))
    return seen


def test_descriptor_dropout_zeroes_whole_rows_in_training_only(perov):
    X, vol = perov
    est = CGCNNRegressor(max_epochs=1, descriptors=CellDescriptors(), descriptor_screen=False,
                         descriptor_skip=False, descriptor_dropout=0.5, **TINY)
    est.fit(X[:64], vol[:64])
    seen = _head_inputs(est)
    est.partial_fit(X[:64], vol[:64])
    sc = est.descriptor_scaler_
    D = (CellDescriptors().transform(X[:64]) - sc.mean_) / sc.scale_
    rows = torch.cat([d for training, d in seen if training]).numpy()
    assert rows.shape == (64, 2)
    dropped = (rows == 0).all(axis=1)
    assert 0.2 < dropped.mean() < 0.8
    # a kept row is the crystal's scaled descriptors, untouched
    kept = rows[~dropped]
    assert all(np.isclose(D, r, atol=1e-6).all(axis=1).any() for r in kept)
    # prediction sees every descriptor
    seen.clear()
    est.predict(X[:64])
    used = torch.cat([d for training, d in seen]).numpy()
    assert not any(training for training, _ in seen)
    np.testing.assert_allclose(used, D, atol=1e-6)


def test_descriptor_dropout_is_reproducible_and_switchable(perov):
    X, vol = perov
    kw = dict(max_epochs=3, descriptors=CellDescriptors(), descriptor_screen=False,
              descriptor_skip=False, **TINY)
    a = CGCNNRegressor(**kw, descriptor_dropout=0.5).fit(X[:60], vol[:60]).predict(X[60:])
    b = CGCNNRegressor(**kw, descriptor_dropout=0.5).fit(X[:60], vol[:60]).predict(X[60:])
    np.testing.assert_array_equal(a, b)  # the draws are seeded with random_state
    c = CGCNNRegressor(**kw, descriptor_dropout=0.0).fit(X[:60], vol[:60]).predict(X[60:])
    assert np.abs(c - a).max() > 1e-4 * np.abs(a).max()
    with pytest.raises(ValueError, match="descriptor_dropout"):
        CGCNNRegressor(**{**kw, "max_epochs": 1}, descriptor_dropout=1.0).fit(X[:30], vol[:30])

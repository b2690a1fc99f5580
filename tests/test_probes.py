"""skcrystal.probes and skcrystal.baselines: tidy tables, constant descriptors, baselines."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone

from skcrystal.baselines import (CompositionBaseline, CompositionBaselineClassifier,
                                 composition_features)
from skcrystal.datasets import load_perovskites
from skcrystal.estimators import CGCNNClassifier, CGCNNRegressor
from skcrystal.probes import (PROBE_COLUMNS, classifier_counterpart, probe_learnability,
                              representation_importance)

TINY = dict(module__hidden=8, module__n_conv=1, module__h_fea_len=16,
            batch_size=16, max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def perov():
    X, y = load_perovskites(n=24)
    return X, y


@pytest.fixture(scope="module")
def table(perov):
    X, _ = perov
    vpa = np.array([s.volume / len(s) for s in X])
    return pd.DataFrame({
        "vpa": vpa,
        "natoms": np.full(len(X), 5.0),                       # constant: R2 undefined
        "crys_sys": np.where(vpa > np.median(vpa), 1.0, 5.0),  # two classes
        "space_group_num": np.full(len(X), 221.0),             # excluded by default
    })


# ---------------------------------------------------------------- baselines
def test_composition_baseline_contract(perov):
    X, y = perov
    est = CompositionBaseline(n_estimators=5, random_state=0)
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(ValueError, match="preset='magpy' is not a matminer ElementProperty"):
        CompositionBaseline(preset="magpy").fit(X, y)
    pred = est.fit(X, y).predict(X[:3])
    assert pred.shape == (3,)
    assert est.transform(X[:2]).shape == (2, len(est.feature_names_)) == (2, 132)
    # compositions and formula strings work too, and hit the same cache rows
    F = composition_features([s.composition for s in X[:3]])[0]
    np.testing.assert_array_equal(F, composition_features([s.composition.formula
                                                           for s in X[:3]])[0])
    np.testing.assert_allclose(est.predict([s.composition for s in X[:3]]), pred)
    with pytest.raises(TypeError, match=r"X\[1\] is a int"):
        est.predict([X[0], 3])
    clf = CompositionBaselineClassifier(n_estimators=5, random_state=0).fit(X, y > np.median(y))
    assert list(clf.classes_) == [False, True]
    assert clf.predict_proba(X[:2]).shape == (2, 2)
    # targets are checked as the network estimators check them, naming the rows
    with pytest.raises(TypeError, match="y must be numeric for a regressor"):
        CompositionBaseline(n_estimators=5).fit(X, ["a"] * len(X))
    with pytest.raises(ValueError, match=r"y contains NaN or inf at rows \[2\]"):
        CompositionBaseline(n_estimators=5).fit(X, np.where(np.arange(len(y)) == 2, np.nan, y))


def test_probe_with_structures_first_names_the_call(perov):
    X, y = perov
    with pytest.raises(TypeError, match=r"estimator: model 'Structure' is a Structure, not a "
                                        r"scikit-learn estimator; the call is probe_learnability"):
        probe_learnability(X, y)


def test_probe_descriptor_names_are_checked_and_one_name_is_not_a_substring_test(perov):
    X, _ = perov
    est = CompositionBaseline(n_estimators=5, random_state=0)
    with pytest.raises(ValueError, match=r"classification names \['crys_system'\], not "
                                         r"descriptors of the bank"):
        probe_learnability(est, X[:12], cv=2, baseline=None, classification=["crys_system"])
    with pytest.raises(TypeError, match=r"bank must be a descriptor transformer .*got list"):
        probe_learnability(est, X[:12], cv=2, baseline=None, bank=["vpa"])
    with pytest.raises(ValueError, match=r"exclude names \['natom'\]"):
        probe_learnability(est, X[:12], cv=2, baseline=None, exclude=["natom"])
    # one name as a str: "c" (the lattice length) is not in "crys_sys"
    df = probe_learnability(est, X[:12], cv=2, baseline=None, classification="crys_sys")
    tasks = dict(zip(df["descriptor"], df["task"]))
    assert tasks["crys_sys"] == "classification" and tasks["c"] == "regression"


def test_classifier_counterpart():
    reg = CGCNNRegressor(max_epochs=3, module__n_conv=2, lr=0.01)
    clf = classifier_counterpart(reg)
    assert isinstance(clf, CGCNNClassifier)
    p = clf.get_params()
    assert p["max_epochs"] == 3 and p["module__n_conv"] == 2 and p["lr"] == 0.01
    assert p["criterion"] is torch.nn.CrossEntropyLoss
    assert isinstance(classifier_counterpart(CompositionBaseline(n_estimators=7)),
                      CompositionBaselineClassifier)

    from sklearn.linear_model import Ridge
    with pytest.raises(TypeError, match="classifier="):
        classifier_counterpart(Ridge())


# ---------------------------------------------------------------- probes
def test_probe_table(perov, table):
    X, _ = perov
    df = probe_learnability(CGCNNRegressor(**TINY), X, bank=table, cv=2,
                            baseline=CompositionBaseline(n_estimators=5, random_state=0))
    assert list(df.columns) == PROBE_COLUMNS
    # one row per probed descriptor and model, space_group_num excluded
    assert df.groupby("descriptor").size().to_dict() == {"vpa": 2, "natoms": 2, "crys_sys": 2}
    assert list(df.descriptor.unique()) == ["vpa", "natoms", "crys_sys"]
    assert set(df.model) == {"CGCNN", "composition"}
    vpa = df[df.descriptor == "vpa"]
    assert vpa.r2.notna().all() and (vpa.mae > 0).all() and (vpa.mae_mad > 0).all()
    assert (vpa.n_folds == 2).all() and (vpa.n_samples == len(X)).all()
    const = df[df.descriptor == "natoms"]
    assert const.r2.isna().all() and const.note.str.contains("constant").all()
    cls = df[df.descriptor == "crys_sys"]
    assert (cls.task == "classification").all()
    assert cls.accuracy.between(0, 1).all() and cls.r2.isna().all()


def test_probe_nan_rows_dropped_and_parallel_backend(perov, table):
    from joblib import parallel_config
    X, _ = perov
    t = table[["vpa"]].copy()
    t.loc[[0, 5], "vpa"] = np.nan
    with parallel_config(backend="threading"):
        df = probe_learnability(CompositionBaseline(n_estimators=5, random_state=0), X,
                                bank=t, cv=3, n_jobs=2, baseline=None, classifier=None)
    assert len(df) == 1 and df.n_samples[0] == len(X) - 2
    assert "2 structure(s) with NaN dropped" in df.note[0]
    assert np.isfinite(df.r2[0])


def test_probe_with_descriptor_bank(perov):
    pytest.importorskip("skcrystal.descriptors")
    from skcrystal.descriptors import DescriptorBank
    X, _ = perov
    df = probe_learnability(CompositionBaseline(n_estimators=5, random_state=0), X,
                            bank=DescriptorBank(descriptors=["vpa", "natoms"]), cv=2,
                            baseline=None)
    assert list(df.descriptor) == ["vpa", "natoms"]
    assert df.r2.notna().tolist() == [True, False]


def test_representation_importance(perov, table):
    X, y = perov
    df = representation_importance(CGCNNRegressor(**TINY), X, y, bank=table[["vpa", "natoms"]],
                                   random_state=0)
    assert list(df.columns) == ["feature", "group", "importance", "rank"]
    assert len(df) == 8 + 2
    assert df.groupby("group").size().to_dict() == {"learned": 8, "descriptor": 2}
    assert df.importance.sum() == pytest.approx(1.0)
    assert df.importance.is_monotonic_decreasing
    assert df.loc[df.feature == "natoms", "importance"].item() == 0.0   # constant
    # a fitted hybrid model supplies its own descriptors (bank=None)
    est = CGCNNRegressor(descriptors=_Vpa(), descriptor_screen=False, **TINY).fit(X, y)
    df = representation_importance(est, X, y, fit=False)
    assert len(df) == 9 and df.loc[df.group == "descriptor", "feature"].tolist() == ["vpa"]
    assert df.attrs["estimator"] is est


class _Vpa(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.array([[s.volume / len(s)] for s in X])

    def get_feature_names_out(self, input_features=None):
        return np.array(["vpa"], dtype=object)


# ---------------------------------------------------------------- plotting
def test_plots_return_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skcrystal.plotting import parity_plot, plot_importance, plot_probe_scores
    df = pd.DataFrame([
        dict(descriptor="vpa", model="CGCNN", task="regression", r2=0.9, r2_std=0.02),
        dict(descriptor="vpa", model="composition", task="regression", r2=0.5, r2_std=0.1),
        dict(descriptor="natoms", model="CGCNN", task="regression", r2=np.nan),
        dict(descriptor="natoms", model="composition", task="regression", r2=np.nan),
        dict(descriptor="crys_sys", model="CGCNN", task="classification", accuracy=0.6),
    ])
    fig, ax = plot_probe_scores(df)
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_xticklabels()] == [
        "vpa", "natoms"]
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 2
    fig2, ax2 = plot_probe_scores(df, metric="accuracy")
    assert len(ax2.patches) == 1
    with pytest.raises(ValueError, match="metric"):
        plot_probe_scores(df, metric="bogus")
    fig3, ax3 = parity_plot([1.0, 2.0, 3.0], [1.1, 1.9, 3.2], label="a", units="Å")
    assert ax3.get_xlabel() == "true a (Å)" and "R$^2$" in ax3.texts[0].get_text()
    imp = pd.DataFrame({"feature": ["learned_0", "vpa"], "group": ["learned", "descriptor"],
                        "importance": [0.3, 0.7]})
    fig4, ax4 = plot_importance(imp)
    assert len(ax4.patches) == 2
    # wrong inputs are named, not an AttributeError from pandas
    with pytest.raises(TypeError, match="df must be the DataFrame returned by "
                                        "skcrystal.probes.probe_learnability, got str"):
        plot_probe_scores("table.csv")
    with pytest.raises(ValueError, match=r"no column\(s\) \['importance'\]"):
        plot_importance(imp.drop(columns="importance"))
    with pytest.warns(UserWarning, match=r"1 of 3 pairs hold NaN or inf \(rows \[1\]\)"):
        fig5, ax5 = parity_plot([1.0, np.nan, 3.0], [1.1, 1.9, 3.2])
    assert "MAE = 0.15" in ax5.texts[0].get_text()
    with pytest.raises(ValueError, match="no pair of finite values"):
        parity_plot([np.nan], [1.0])
    with pytest.raises(ValueError, match="y_pred must hold numbers: could not convert"):
        parity_plot([1.0, 2.0], [1.0, "N/A"])
    plt.close("all")

"""The scikit-learn contract, bad input and invariances, for every estimator.

One parametrized suite over all models (tests/_estimators.py), not a copy
per model.
"""
import pickle

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from sklearn.base import clone, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from _estimators import NAMES, exact_invariance, learning, make, small_params

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data():
    from skcrystal.datasets import load_perovskites
    df = load_perovskites(n=48, as_frame=True)
    return list(df.structure), df.heat_all.to_numpy(), df.ind_gap.to_numpy()


@pytest.fixture(scope="module", params=NAMES)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def fitted(name, data):
    X, y, _ = data
    return make(name).fit(X, y)


# ---------------------------------------------------------------- parameters
def test_get_set_params_and_clone(name, data):
    est = make(name, lr=3e-3)
    params = est.get_params()
    assert params["lr"] == 3e-3
    # a misspelt name in set_params: the name meant, not scikit-learn's message with the
    # whole module's repr, nor a prefixed name kept unchecked on a fitted model
    with pytest.raises(ValueError, match=r"^batchsize: \w+ has no parameter 'batchsize' "
                                         r"\(did you mean 'batch_size'\?\)"):
        est.set_params(batchsize=8)
    with pytest.raises(ValueError, match=r"did you mean 'module__hidden'"):
        est.set_params(modul__hidden=8)
    make(name).set_params(**est.get_params(deep=False))  # skorch's own keys pass
    key = next(k for k in small_params(name))
    assert params[key] == small_params(name)[key]
    est.set_params(optimizer__weight_decay=1e-4, max_neighbors=8)
    assert est.get_params()["optimizer__weight_decay"] == 1e-4
    twin = clone(est)
    assert twin.get_params()["optimizer__weight_decay"] == 1e-4
    assert twin.max_neighbors == 8
    assert not hasattr(twin, "target_scaler_") and not twin.initialized_


def test_clone_of_fitted_is_unfitted(fitted, data):
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(fitted)  # scikit-learn's own check agrees
    twin = clone(fitted)
    with pytest.raises(NotFittedError):
        check_is_fitted(twin)
    with pytest.raises(NotFittedError, match="not fitted"):
        twin.predict(data[0][:2])


def test_reproducible_with_random_state(name, fitted, data):
    X, y, _ = data
    again = make(name).fit(X, y)
    np.testing.assert_allclose(fitted.predict(X[:8]), again.predict(X[:8]), rtol=1e-5, atol=1e-6)


def test_pickle_fitted_and_unfitted(fitted, name, data):
    X = data[0][:6]
    clone_ = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(clone_.predict(X), fitted.predict(X), rtol=1e-6)
    unfitted = pickle.loads(pickle.dumps(make(name)))
    assert not unfitted.initialized_


def test_save_params_load_params_roundtrip(fitted, name, data, tmp_path):
    X = data[0][:6]
    fitted.save_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "state.pkl")
    fresh = make(name)
    fresh.load_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "state.pkl")
    np.testing.assert_allclose(fresh.predict(X), fitted.predict(X), rtol=1e-6)


def test_gpu_pickle_loads_on_cpu(fitted, data):
    # a model pickled with device="cuda" (as after training on a GPU) must
    # unpickle on a CPU-only machine: skorch maps tensors to the CPU and warns
    fitted_gpu = pickle.loads(pickle.dumps(fitted))
    fitted_gpu.device = "cuda"
    blob = pickle.dumps(fitted_gpu)
    import torch
    if torch.cuda.is_available():
        pytest.skip("machine has CUDA; the fallback path is not exercised")
    with pytest.warns(Warning, match="cpu"):
        back = pickle.loads(blob)
    assert str(back.device) == "cpu"
    np.testing.assert_allclose(back.predict(data[0][:4]), fitted.predict(data[0][:4]), rtol=1e-6)


# ---------------------------------------------------------------- sklearn tools
def test_cross_val_score_and_gridsearch(name, data):
    X, y, _ = data
    scores = cross_val_score(make(name, max_epochs=2), X, y, cv=KFold(2),
                             scoring="neg_mean_absolute_error")
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    grid = GridSearchCV(make(name, max_epochs=2), {"lr": [1e-3, 3e-3],
                                                   "max_neighbors": [8, 12]},
                        cv=KFold(2), scoring="neg_mean_absolute_error")
    grid.fit(X, y)
    assert set(grid.best_params_) == {"lr", "max_neighbors"}
    assert grid.predict(X[:3]).shape == (3,)


def test_pipelines(name, data):
    X, y, _ = data
    # as the final regressor
    pipe = make_pipeline(FunctionTransformer(lambda s: s, validate=False), make(name, max_epochs=2))
    assert pipe.fit(X, y).predict(X[:4]).shape == (4,)
    # as a transformer feeding the learned representation to another model
    pipe = make_pipeline(make(name, max_epochs=2), Ridge())
    assert pipe.fit(X, y).predict(X[:4]).shape == (4,)


def test_input_containers(fitted, data):
    import pandas as pd
    X = data[0][:5]
    ref = fitted.predict(X)
    arr = np.empty(len(X), dtype=object)
    arr[:] = X
    for container in (tuple(X), arr, pd.Series(X)):
        np.testing.assert_allclose(fitted.predict(container), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="split each Structure into its sites"):
        fitted.predict(np.array(X, dtype=object))


def test_multi_target_shapes(name, data):
    X, y, gap = data
    est = make(name, max_epochs=2).fit(X, np.column_stack([y, gap]))
    assert est.predict(X[:5]).shape == (5, 2)
    assert est.transform(X[:5]).shape[0] == 5


def test_verbose_prints_each_epoch(name, data, capsys):
    X, y, _ = data
    make(name, max_epochs=2, verbose=1).fit(X[:16], y[:16])
    out = capsys.readouterr().out
    assert "train_loss" in out and out.count("\n") >= 3


def test_classifier_labels_of_any_type(name, data):
    X, _, gap = data
    labels = np.where(gap == 0, "metal", "insulator")
    with pytest.raises(NotFittedError):  # not an AttributeError on classes_
        make(name, "classifier").predict(X[:2])
    clf = make(name, "classifier").fit(X, labels)
    assert list(clf.classes_) == ["insulator", "metal"]
    proba = clf.predict_proba(X[:7])
    assert proba.shape == (7, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert set(clf.predict(X[:7])) <= {"metal", "insulator"}


# ---------------------------------------------------------------- learning
def test_learns_and_beats_mean_predictor_on_real_perovskites(name):
    from sklearn.dummy import DummyRegressor
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import train_test_split

    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=300)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    params, ratio = learning(name)
    est = make(name, **params).fit(Xtr, ytr)
    loss = est.history[:, "train_loss"]
    assert loss[-1] < 0.7 * loss[0]
    mae = mean_absolute_error(yte, est.predict(Xte))
    dummy = mean_absolute_error(yte, DummyRegressor().fit(Xtr, ytr).predict(Xte))
    assert mae < ratio * dummy, (mae, dummy)


# ---------------------------------------------------------------- invariances
def _permuted(s):
    order = np.random.default_rng(1).permutation(len(s))
    return Structure(s.lattice, [s[i].specie for i in order], s.frac_coords[order])


def _rotated(s):
    from scipy.spatial.transform import Rotation
    R = Rotation.from_euler("zyx", [31, -47, 12], degrees=True).as_matrix()
    return Structure(Lattice(s.lattice.matrix @ R.T), s.species, s.frac_coords)


def test_permutation_rotation_supercell_invariance(name, fitted, data):
    X, y, _ = data
    X = X[:6]
    ref = fitted.predict(X)
    np.testing.assert_allclose(fitted.predict([_rotated(s) for s in X]), ref,
                               rtol=1e-4, atol=1e-4)
    if exact_invariance(name):
        fitted = make(name, **exact_invariance(name)).fit(data[0], y)
        ref = fitted.predict(X)
    for transform in (_permuted, lambda s: s * (2, 2, 2)):
        np.testing.assert_allclose(fitted.predict([transform(s) for s in X]), ref,
                                   rtol=1e-4, atol=1e-4)


def test_prediction_independent_of_batch(fitted, data):
    X = data[0][:10]
    together = fitted.predict(X)
    alone = np.array([fitted.predict([s])[0] for s in X[:3]])
    np.testing.assert_allclose(alone, together[:3], rtol=1e-5, atol=1e-6)


def test_graph_parameters_changed_after_fit_are_refused(fitted, data, tmp_path):
    """Weights trained on the fit's graphs are not applied to other graphs: set_params
    of a graph parameter without a refit is an error at predict, setting it back works."""
    import copy
    X = data[0][:3]
    est = copy.deepcopy(fitted)  # the module's fixture stays as it is
    before = est.predict(X)
    original = est.max_neighbors
    est.set_params(max_neighbors=4)
    with pytest.raises(ValueError, match=r"graph parameters changed since fit \(max_neighbors="
                                         rf"{original!r} -> 4\).*set them back or fit again"):
        est.predict(X)
    with pytest.raises(ValueError, match="graph parameters changed since fit"):
        est.transform(X)
    est.set_params(max_neighbors=original)
    np.testing.assert_array_equal(est.predict(X), before)
    # training on the new graphs (a fine-tuning) makes them the model's
    est.set_params(max_neighbors=4)
    est.partial_fit(X, data[1][:3])
    assert est.graph_params_["max_neighbors"] == 4 and est.predict(X).shape[0] == 3


# ---------------------------------------------------------------- bad input
def _disordered():
    return Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}, "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_bad_structures_name_the_item(fitted, data):
    X = list(data[0][:4])
    from pymatgen.core import Molecule
    cases = [
        (X[:2] + [_disordered()], ValueError, r"X\[2\].*disordered"),
        (X[:1] + [Structure(Lattice.cubic(3), [], [])], ValueError, r"X\[1\].*empty"),
        (X[:1] + ["not a structure"], TypeError, r"X\[1\] is a str"),
        (X[:1] + [Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]])], TypeError,
         r"X\[1\] is a Molecule, .*has no lattice.*get_boxed_structure"),
        (X[:1] + [type("Atoms", (), {"__module__": "ase.atoms"})()], TypeError,
         r"X\[1\] is an Atoms, .*AseAtomsAdaptor.get_structure"),
        ([], ValueError, "empty"),
    ]
    if 118 not in fitted.module_.supported_elements:  # a learnable embedding has all
        cases.append((X[:3] + [Structure(Lattice.cubic(6), ["Og"], [[0, 0, 0]])],
                      ValueError, r"X\[3\].*no atom features: Og"))
    for bad, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fitted.predict(bad)
    with pytest.raises(TypeError, match="single Structure"):
        fitted.predict(X[0])


def test_bad_targets(name, data):
    X, y, _ = data
    est = make(name)
    y_nan = y[:8].copy()
    y_nan[5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at rows \[5\]"):
        est.fit(X[:8], y_nan)
    y_inf = y[:8].copy()
    y_inf[2] = np.inf
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        est.fit(X[:8], y_inf)
    with pytest.raises(ValueError, match="8 structures but 7 targets"):
        est.fit(X[:8], y[:7])
    with pytest.raises(ValueError, match="1-D or 2-D"):
        est.fit(X[:8], y[:8].reshape(2, 2, 2))
    # a column read as text: the rows that are no numbers (numeric text is fine)
    y_text = y[:8].astype(str).astype(object)
    y_text[3], y_text[6] = "N/A", None
    if is_regressor(est):
        with pytest.raises(TypeError, match=r"no numbers at rows 3 \('N/A'\), 6 \(None\)$"):
            est.fit(X[:8], y_text)
    with pytest.raises(NotFittedError):
        make(name).predict(X[:2])


def test_bad_training_parameters_are_named(name, data):
    """criterion, optimizer and device are checked before any work, naming the
    parameter (not torch's "Torch not compiled with CUDA enabled" or "'str' object is
    not callable" from inside the fit)."""
    import torch

    X, y, _ = data
    with pytest.raises(ValueError, match="'criterion' parameter .* must be a callable"):
        make(name, criterion="mse").fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="'optimizer' parameter .* must be a callable"):
        make(name, optimizer="adam").fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="device='tpu' is not a torch device"):
        make(name, device="tpu").fit(X[:4], y[:4])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda': no CUDA GPU is usable here"):
            make(name, device="cuda").fit(X[:4], y[:4])
    # a misspelt prefixed name: the prefixed name, the object, a suggestion
    for param, owner, meant in [("optimizer__weight_dcay", "AdamW", "optimizer__weight_decay"),
                                ("criterion__reductio", "Loss", "criterion__reduction"),
                                ("iterator_train__num_worker", "DataLoader",
                                 "iterator_train__num_workers"),
                                ("module__dropuot", "", "module__dropout")]:
        with pytest.raises(TypeError, match=rf"^{param}: \w*{owner} has no parameter "
                                            rf"'{param.split('__')[1]}' \(did you mean "
                                            rf"'{meant}'\?\)"):
            make(name, **{param: 1}).fit(["never read.cif"], [0.0])
    # sample weights: named before any work, not torch's "forward() got an unexpected
    # keyword argument 'sample_weight'" after the graphs are built
    for method in ("fit", "partial_fit"):
        with pytest.raises(TypeError, match=rf"\.{method} got sample_weight: .*forward takes "
                                            r"none of them \(sample weights are not"):
            getattr(make(name), method)(["never read.cif"], [0.0], sample_weight=[1.0])
    # a callback that monitors a validation score without a validation split: before
    # training, not skorch's KeyError "valid_loss was not found" after the first epoch
    from skorch.callbacks import EarlyStopping
    with pytest.raises(ValueError, match=r"callbacks\[0\] \(EarlyStopping\) monitors "
                                         r"'valid_loss', but there is no validation split"):
        make(name, callbacks=[("stop", EarlyStopping())]).fit(["never read.cif"], [0.0])
    # a misspelt name or prefix: the estimator and the name meant (skorch's own
    # message says only "__init__() got unexpected argument(s) max_epoch")
    for param, meant in [("max_epoch", "max_epochs"), ("modul__hidden", "module__hidden"),
                         ("optimizer_lr", "optimizer__lr")]:
        with pytest.raises(ValueError, match=rf"^{param}: \w+ has no parameter '{param}' "
                                             rf"\(did you mean '{meant}'\?\)"):
            make(name, **{param: 1}).fit(["never read.cif"], [0.0])


def test_isolated_atom_error_names_structure(name, data):
    X = list(data[0][:3])
    lonely = Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    est = make(name)
    if est.grow_radius:
        # models that grow the cut-off (CrysToGraph) build a graph instead
        graph = est.prepare([lonely])[0]
        assert graph.radius > 8.0 and graph.neighbor_counts().min() >= est.max_neighbors
        return
    with pytest.raises(ValueError, match=rf"structure 3 .*no neighbour within radius={est.radius:g}"):
        est.fit(X + [lonely], np.arange(4.0))

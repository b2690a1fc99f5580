"""GraphPredictor: the estimator's predictions from graphs without skorch, bit for bit."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from skcrystal import pretrained
from skcrystal.datasets import load_perovskites
from skcrystal.estimators.base import GraphDataset
from skcrystal.estimators.cgcnn import CGCNNClassifier, CGCNNRegressor
from skcrystal.graphs import attach_extras
from skcrystal.inference import DEFAULT_BATCH_SIZE, GraphPredictor

CHECKPOINT = "formation-energy-per-atom"
SMALL = dict(module__hidden=8, module__h_fea_len=8, module__n_conv=2, max_epochs=2,
             random_state=0, batch_size=16)


@pytest.fixture(scope="module")
def data():
    return load_perovskites(n=150)


def _graphs(builder, structures, module=None):
    graphs = [builder.build(s) for s in structures]
    extras = getattr(module, "graph_extras", ()) if module is not None else ()
    return attach_extras(graphs, extras)


def test_reference_checkpoint_predictor_equals_the_estimator(data):
    X, _ = data
    est = pretrained.load(CHECKPOINT)
    predictor, info = pretrained.load_cgcnn_predictor(CHECKPOINT)
    assert info == est.checkpoint_info_
    assert predictor.name == type(est).__name__
    assert predictor.batch_size == est.batch_size == DEFAULT_BATCH_SIZE
    assert repr(predictor.builder) == repr(est._builder())
    assert predictor.supported_elements == est.module_.supported_elements
    for name, value in est.module_.state_dict().items():
        assert torch.equal(predictor.module.state_dict()[name], value), name
    graphs = _graphs(predictor.builder, X)  # 150: two full batches of 64 and a partial one
    expected = est.predict(GraphDataset(graphs))
    got = predictor.predict(graphs)
    assert got.shape == expected.shape == (len(X),)
    assert np.array_equal(got, expected)
    # and the estimator's own path from structures
    assert np.array_equal(got, est.predict(X))


def test_checkpoint_path_and_name_load_alike():
    by_name, _ = pretrained.load_cgcnn_predictor(CHECKPOINT)
    by_path, info = pretrained.load_cgcnn_predictor(pretrained.path_of(CHECKPOINT))
    assert "name" not in info
    for name, value in by_name.module.state_dict().items():
        assert torch.equal(by_path.module.state_dict()[name], value)


def test_classification_checkpoint_is_left_to_the_estimator():
    predictor, info = pretrained.load_cgcnn_predictor("semi-metal-classification")
    assert predictor is None and info["args"]["task"] == "classification"


@pytest.mark.parametrize("two_d", [False, True])
def test_fitted_estimator_predictor_equals_predict(data, two_d):
    X, y = data
    y = np.column_stack([y, 2 * y + 1]) if two_d else y
    est = CGCNNRegressor(**SMALL).fit(X[:60], y[:60])
    est = pickle.loads(pickle.dumps(est))  # as `skcrystal fit` saves it
    predictor = GraphPredictor.from_estimator(est)
    assert predictor is not None and predictor.batch_size == 16
    graphs = _graphs(predictor.builder, X, est.module_)
    got = predictor.predict(graphs)
    assert np.array_equal(got, est.predict(GraphDataset(graphs)))
    assert got.shape == ((len(X), 2) if two_d else (len(X),))


def test_not_covered_estimators_give_none(data):
    X, y = data
    clf = CGCNNClassifier(**SMALL).fit(X[:40], (y[:40] > np.median(y[:40])).astype(int))
    assert GraphPredictor.from_estimator(clf) is None
    assert GraphPredictor.from_estimator(CGCNNRegressor()) is None  # not fitted
    reg = CGCNNRegressor(**SMALL).fit(X[:40], y[:40])
    reg.set_params(mixed_precision="bf16")
    assert GraphPredictor.from_estimator(reg) is None


def test_non_finite_output_gives_none(data):
    X, _ = data
    predictor, _ = pretrained.load_cgcnn_predictor(CHECKPOINT)
    with torch.no_grad():
        predictor.module.head.mlp[-1].bias.fill_(float("nan"))
    assert predictor.predict(_graphs(predictor.builder, X[:3])) is None


def test_loading_a_predictor_imports_no_sklearn():
    code = ("import sys; from skcrystal import pretrained; "
            f"p, _ = pretrained.load_cgcnn_predictor({CHECKPOINT!r}); "
            "print(sorted(m for m in ('sklearn', 'scipy', 'skorch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"

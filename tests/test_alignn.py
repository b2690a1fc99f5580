"""ALIGNN: edge-gated convolution by hand, reference defaults, learning, invariances."""
import math

import numpy as np
import pytest
import torch

from skcrystal.estimators.alignn import ALIGNNClassifier, ALIGNNRegressor
from skcrystal.graphs import build_graph, collate_graphs
from skcrystal.graphs.line_graph import line_graph_extra
from skcrystal.nn.alignn import ALIGNN, EdgeGatedGraphConv

SMALL = dict(module__hidden_features=16, module__embedding_features=16,
             module__alignn_layers=1, module__gcn_layers=1, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def perovskites():
    from skcrystal.datasets import load_perovskites
    return load_perovskites(n=200)


def test_edge_gated_conv_by_hand():
    """Receiver 0 gets messages from senders 1 and 2; identity weights, no norm effect."""
    conv = EdgeGatedGraphConv(1, act="relu", residual=True).eval()
    with torch.no_grad():
        for lin in (conv.src_gate, conv.dst_gate, conv.edge_gate, conv.src_update,
                    conv.dst_update):
            lin.weight.fill_(1.0)
            lin.bias.zero_()
    x = torch.tensor([[1.0], [2.0], [-3.0]])
    e = torch.tensor([[0.5], [1.0]])
    receiver, sender = torch.tensor([0, 0]), torch.tensor([1, 2])
    x_new, e_new = conv(x, e, receiver, sender)
    bn = 1 / math.sqrt(1 + 1e-5)  # eval batch norm with unit running variance
    m = np.array([2 + 1 + 0.5, -3 + 1 + 1.0])  # A h_j + B h_i + C e_ij
    s = 1 / (1 + np.exp(-m))
    agg = (s[0] * 2 + s[1] * -3) / (s.sum() + 1e-6)
    np.testing.assert_allclose(x_new.detach().ravel(),
                               [1 + max(0, bn * (1 + agg)), 2 + max(0, bn * 2),
                                -3 + max(0, bn * -3)], rtol=1e-5)
    np.testing.assert_allclose(e_new.detach().ravel(), [0.5, 1.0] + np.maximum(0, bn * m),
                               rtol=1e-5)


def test_reference_defaults():
    m = ALIGNN()
    assert len(m.alignn_layers) == 4 and len(m.gcn_layers) == 4
    rbf_d, rbf_a = m.edge_embedding[0], m.angle_embedding[0]
    assert rbf_d.n_centers == 80 and float(rbf_d.centers[-1]) == 8.0
    assert rbf_a.n_centers == 40 and float(rbf_a.centers[0]) == -1.0
    # reference width: exp(-(x - mu)^2 / spacing)
    assert rbf_d.width == pytest.approx(math.sqrt(8 / 79))
    assert m.edge_embedding[1][0].out_features == 64
    assert m.atom_embedding.linear.in_features == 92 or m.atom_embedding.n_table_features > 0
    linears = [mod for mod in m.head.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 256


def test_model_needs_line_graph(nacl):
    batch = collate_graphs([build_graph(nacl)])
    with pytest.raises(ValueError, match="line graph"):
        ALIGNN(hidden_features=8, embedding_features=8)(batch)
    # without ALIGNN layers it is a plain edge-gated GCN
    out = ALIGNN(hidden_features=8, embedding_features=8, alignn_layers=0)(batch)
    assert out.shape == (1, 1)


def test_bad_module_params():
    with pytest.raises(ValueError, match="alignn_layers"):
        ALIGNN(alignn_layers=-1)
    with pytest.raises(ValueError, match="hidden_features"):
        ALIGNN(hidden_features=0)
    with pytest.raises(ValueError, match="pooling"):
        ALIGNN(pooling="set2set")


def test_forward_on_batch(nacl, diamond):
    graphs = [build_graph(nacl), build_graph(diamond)]
    batch = collate_graphs(graphs, extras=[line_graph_extra()])
    out = ALIGNN(hidden_features=16, embedding_features=8, alignn_layers=1,
                 gcn_layers=1, n_outputs=3)(batch)
    assert out.shape == (2, 3) and torch.isfinite(out).all()






def test_line_graph_bound_names_structure(perovskites, nacl):
    X, y = perovskites
    est = ALIGNNRegressor(max_epochs=1, max_triplets=1000, **SMALL)
    big = nacl.copy()
    big.make_supercell([2, 1, 1])  # 16 atoms x 18 x 17 pairs
    with pytest.raises(ValueError, match=r"structure 2 \(NaCl.*max_triplets=1000"):
        est.fit([X[0], X[1], big], y[:3])
    assert est.set_params(max_triplets=None).fit([X[0], X[1], big], y[:3])


def test_classifier_fits(perovskites):
    X, y = perovskites
    labels = y[:32] > np.median(y[:32])
    clf = ALIGNNClassifier(max_epochs=1, **SMALL).fit(X[:32], labels)
    assert clf.predict_proba(X[:5]).shape == (5, 2)
    assert clf.predict(X[:5]).dtype == bool

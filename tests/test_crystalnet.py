"""CrystalNet: reverse edges, the communicative update by hand, learning, invariances."""
import numpy as np
import pytest
import torch

from skcrystal.estimators.crystalnet import CrystalNetClassifier
from skcrystal.graphs import CrystalGraph, build_graph, collate_graphs
from skcrystal.nn.crystalnet import (
    CrystalNet, CrystalNetLayer, node_message)
from skcrystal.graphs.reverse_edges import REVERSE_EDGES_EXTRA, reverse_edges

SMALL = dict(module__hidden=32, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def perovskites():
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=200)
    return X, y


def _hand_graph():
    """3 atoms; edges (centre <- neighbour): 0<-1, 1<-0, 1<-2, 2<-1, 0<-2 (no reverse)."""
    center = np.array([0, 1, 1, 2, 0])
    neighbor = np.array([1, 0, 2, 1, 2])
    z = np.zeros((5, 3))
    return CrystalGraph(np.array([3, 8, 3]), np.eye(3), np.eye(3) * 10, center, neighbor,
                        np.ones(5), z.astype(np.int64), z + [1, 0, 0], 3.0)


def test_reverse_index_by_hand_and_involution():
    rev = reverse_edges(_hand_graph())
    np.testing.assert_array_equal(rev["rev_edge"], [1, 0, 3, 2, 4])
    np.testing.assert_array_equal(rev["rev_edge_ok"], [True, True, True, True, False])


@pytest.mark.parametrize("k", [None, 12, 4])
def test_reverse_index_is_involution_on_real_graphs(perovskites, nacl, k):
    X, _ = perovskites
    for s in [nacl, *X[:20]]:
        g = build_graph(s, radius=6.0, max_neighbors=k)
        r = reverse_edges(g)
        rev, ok = r["rev_edge"], r["rev_edge_ok"]
        np.testing.assert_array_equal(rev[rev], np.arange(g.n_edges))
        np.testing.assert_array_equal(ok[rev], ok)
        # a found reverse really is (n -> c, image -k)
        np.testing.assert_array_equal(g.center[rev][ok], g.neighbor[ok])
        np.testing.assert_array_equal(g.neighbor[rev][ok], g.center[ok])
        np.testing.assert_array_equal(g.offsets[rev][ok], -g.offsets[ok])
        np.testing.assert_allclose(g.vectors[rev][ok], -g.vectors[ok], atol=1e-9)
        assert np.all(rev[~ok] == np.flatnonzero(~ok))
        if k is None:  # all neighbours in the radius: every edge has its reverse
            assert ok.all()


def test_reverse_index_batched_by_edge_offset(nacl, diamond):
    graphs = [build_graph(nacl), build_graph(diamond)]
    batch = collate_graphs(graphs, extras=[REVERSE_EDGES_EXTRA])
    rev = batch.extras["rev_edge"]
    assert torch.equal(rev[rev], torch.arange(batch.n_edges))
    assert batch.extras["rev_edge_ok"].dtype == torch.bool


def test_edge_update_excludes_reverse_message_by_hand():
    """One iteration with W = 1, b = 0 and 1-d states, against hand arithmetic."""
    g = _hand_graph()
    r = reverse_edges(g)
    layer = CrystalNetLayer(1)
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)
        layer.linear.bias.zero_()
    h_node = torch.tensor([[1.0], [2.0], [3.0]])
    h_edge = torch.tensor([[0.5], [1.0], [2.0], [0.25], [4.0]])
    h0_edge = torch.tensor([[-10.0], [0.0], [0.0], [0.0], [0.0]])
    edge_index = torch.tensor(np.stack([g.center, g.neighbor]))
    new_node, new_edge = layer(h_node, h_edge, h0_edge, edge_index,
                               torch.tensor(r["rev_edge"]), torch.tensor(r["rev_edge_ok"]))
    # node 0 receives e0, e4: (0.5 + 4) * 4 = 18 -> 1 + 18 = 19
    # node 1 receives e1, e2: (1 + 2) * 2 = 6   -> 2 + 6 = 8
    # node 2 receives e3: 0.25 * 0.25 = 0.0625  -> 3.0625
    np.testing.assert_allclose(new_node.detach().ravel(), [19.0, 8.0, 3.0625])
    # m(e) = h'(source) - h(reverse): e0 = 8 - 1 = 7 (then ReLU(-10 + 7) = 0),
    # e1 = 19 - 0.5, e2 = 3.0625 - 0.25, e3 = 8 - 2, e4 = 3.0625 - 0 (no reverse)
    np.testing.assert_allclose(new_edge.detach().ravel(), [0.0, 18.5, 2.8125, 6.0, 3.0625])


def test_node_message_is_sum_times_max():
    h = torch.tensor([[1.0, 2.0], [3.0, 0.5], [2.0, 2.0]])
    out = node_message(h, torch.tensor([0, 0, 1]), 3)
    np.testing.assert_allclose(out, [[4 * 3, 2.5 * 2], [4, 4], [0, 0]])


def test_model_needs_reverse_edges(nacl):
    batch = collate_graphs([build_graph(nacl)])
    with pytest.raises(ValueError, match="reverse-edge"):
        CrystalNet(hidden=8)(batch)


def test_bad_module_params():
    with pytest.raises(ValueError, match="depth"):
        CrystalNet(depth=-1)
    with pytest.raises(ValueError, match="n_mlp"):
        CrystalNet(n_mlp=0)
    with pytest.raises(ValueError, match="pooling"):
        CrystalNet(pooling="attention")


def test_paper_defaults():
    m = CrystalNet()
    assert m.rbf.n_centers == 100 and m.rbf.width == 0.5
    assert float(m.rbf.centers[-1]) == 5.0
    assert len(m.layers) == 2 and m.edge_input.out_features == 512
    linears = [mod for mod in m.head.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 2






def test_classifier_fits(perovskites):
    X, y = perovskites
    labels = np.where(y[:32] > np.median(y[:32]), "high", "low")
    clf = CrystalNetClassifier(max_epochs=1, **SMALL).fit(X[:32], labels)
    assert set(clf.predict(X[:5])) <= {"high", "low"}
    assert clf.predict_proba(X[:5]).shape == (5, 2)

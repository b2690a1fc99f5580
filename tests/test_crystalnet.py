"""CrystalNet: the reference graph, reverse edges, each equation by hand, the readout GRU,
initialisation, depth, learning."""
import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from skcrystal.estimators.crystalnet import CrystalNetClassifier, CrystalNetRegressor
from skcrystal.graphs import CrystalGraph, GraphBuilder, build_graph, collate_graphs
from skcrystal.graphs.reverse_edges import REVERSE_EDGES_EXTRA, reverse_edges
from skcrystal.graphs.symmetrize import symmetrize_graph
from skcrystal.nn.crystalnet import CrystalNet, CrystalNetLayer, node_message

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
    layer = CrystalNetLayer(1, aggregation="sum_max")  # the paper's node message
    assert layer.linear.bias is None  # the reference's W_h has no bias
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)
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
    mean = node_message(h, torch.tensor([0, 0, 1]), 3, aggregation="mean_max")
    np.testing.assert_allclose(mean, [[2 * 3, 1.25 * 2], [4, 4], [0, 0]])


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
    assert m.edge_input.out_features == 512
    # depth=2 as the reference counts it: one communicative iteration + the last round
    assert len(m.layers) == 1
    # the two documented deviations: mean x max (the paper's sum x max does not
    # train), the GRU over each atom alone (atom-order invariance)
    assert m.aggregation == "mean_max" and m.readout_gru == "atomwise"
    linears = [mod for mod in m.head.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 2
    # reference biases: none on W_i_atom, W_i_bond, W_h, the mixing layer; W_o has one
    for lin in (m.embedding.linear, m.edge_input, m.layers[0].linear, m.communicate):
        assert lin.bias is None
    assert m.output.bias is not None and m.output.in_features == 2 * 512
    assert m.gru.bidirectional and m.gru.input_size == m.gru.hidden_size == 512
    est = CrystalNetRegressor()
    # the authors' published training command: --radius 5 --max_num_neighbors 64
    assert (est.radius, est.max_neighbors, est.symmetrize) == (5.0, 64, "both")
    assert est.get_params()["optimizer__weight_decay"] == 0.0


def test_reference_initialisation():
    """The reference's initialize_weights: every vector 0, every matrix Xavier-normal."""
    torch.manual_seed(0)
    m = CrystalNet(n_descriptors=3)
    for name, p in m.named_parameters():
        if name == "head.skip.weight":  # skcrystal's descriptor skip starts at 0
            assert torch.count_nonzero(p) == 0
        elif p.dim() == 1:
            assert torch.count_nonzero(p) == 0, name
        else:
            fan_out, fan_in = p.shape[0], p[0].numel()
            expected = math.sqrt(2.0 / (fan_in + fan_out))
            assert abs(float(p.detach().std()) / expected - 1) < 0.1, name
            assert abs(float(p.detach().mean())) < 0.1 * expected, name
    torch.manual_seed(0)
    plain = CrystalNet(init="torch", bias=True)
    assert torch.count_nonzero(plain.edge_input.bias) > 0
    assert torch.count_nonzero(plain.gru.bias_ih_l0) > 0


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_depth_counts_the_last_round_as_the_reference(nacl, depth):
    """``depth`` message-passing steps: depth - 1 iterations, then the last round."""
    model = CrystalNet(hidden=8, n_basis=10, depth=depth).eval()
    assert len(model.layers) == depth - 1
    calls = []
    for layer in model.layers:
        layer.register_forward_hook(lambda *a: calls.append(1))
    batch = collate_graphs([GraphBuilder(5.0, 64, symmetrize="both").build(nacl)],
                           extras=model.graph_extras)
    model(batch)
    assert len(calls) == depth - 1


# ---------------------------------------------------------------- the reference graph
def test_reference_graph_statistics_on_real_structures(perovskites):
    """5 Å, up to 64 neighbours, both directions of every entry: twice the ~38
    neighbours a perovskite atom has within 5 Å, every edge with its reverse; the old
    8 Å / 12-neighbour graph: ~13, 19% of them without."""
    X, _ = perovskites
    old, ref = GraphBuilder(8.0, 12), CrystalNetRegressor()._builder()
    per_atom, coverage = {"old": [], "ref": []}, {"old": [], "ref": []}
    for s in X[:25]:
        for name, builder in (("old", old), ("ref", ref)):
            g = builder.build(s)
            ok = reverse_edges(g)["rev_edge_ok"]
            per_atom[name].append(g.n_edges / g.n_atoms)
            coverage[name].append(ok.mean())
        cut = GraphBuilder(5.0, 64).build(s)  # the neighbour lists before symmetrizing
        assert g.n_edges == 2 * cut.n_edges
    assert 65 < np.mean(per_atom["ref"]) < 85 and min(coverage["ref"]) == 1.0
    assert 11 < np.mean(per_atom["old"]) < 15 and np.mean(coverage["old"]) < 0.9


def test_reference_graph_by_hand():
    """Simple cubic, a = 3 Å: 6 neighbours at 3 Å and 12 at 4.24 Å within 5 Å; each is
    in the other's list, so every bond is stored twice in each direction."""
    s = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    g = GraphBuilder(5.0, 64, symmetrize="both").build(s)
    assert g.n_edges == 2 * 18
    images, counts = np.unique(g.offsets, axis=0, return_counts=True)
    assert len(images) == 18 and np.all(counts == 2)
    assert np.all(np.sort(np.unique(np.round(g.distances, 6))) ==
                  np.round([3.0, 3 * math.sqrt(2)], 6))
    rev = reverse_edges(g)
    assert rev["rev_edge_ok"].all()
    np.testing.assert_array_equal(rev["rev_edge"][rev["rev_edge"]], np.arange(36))
    np.testing.assert_array_equal(g.offsets[rev["rev_edge"]], -g.offsets)
    # the two copies of a bond pair with the two copies of its reverse, one each
    assert len(np.unique(rev["rev_edge"])) == 36


def test_symmetrize_modes_on_a_one_sided_bond():
    """0 lists 1, 1 lists 0, 2 lists 0 only: "union" adds 0 -> 2 once, "both" stores
    the mutual 0-1 bond twice each way and 0-2 once each way."""
    center, neighbor = np.array([0, 1, 2]), np.array([1, 0, 0])
    z = np.zeros((3, 3))
    g = CrystalGraph(np.array([6, 6, 6]), np.eye(3), np.eye(3) * 10, center, neighbor,
                     np.array([1.0, 1.0, 2.0]), z.astype(np.int64),
                     np.array([[1.0, 0, 0], [-1.0, 0, 0], [2.0, 0, 0]]), 3.0)
    pairs = lambda h: sorted(zip(h.center.tolist(), h.neighbor.tolist()))
    assert pairs(symmetrize_graph(g, mode="union")) == [(0, 1), (0, 2), (1, 0), (2, 0)]
    both = symmetrize_graph(g, mode="both")
    assert pairs(both) == [(0, 1), (0, 1), (0, 2), (1, 0), (1, 0), (2, 0)]
    assert reverse_edges(both)["rev_edge_ok"].all()
    with pytest.raises(ValueError, match="mode"):
        symmetrize_graph(g, mode="all")


def test_estimator_graph_parameters_reach_the_builder():
    b = CrystalNetRegressor(symmetrize=None, radius=6.0)._builder()
    assert (b.radius, b.max_neighbors, b.symmetrize) == (6.0, 64, None)
    with pytest.raises(ValueError, match="symmetrize"):
        CrystalNetRegressor(symmetrize="all").fit([Structure(
            Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])], [0.0])


# ---------------------------------------------------------------- the equations, by hand
def _reference_layout(model, graph, sequence, mean=False):
    """The reference encoder's computation, written out in its own layout (per atom the
    list of incoming bonds, per bond its source atom and its reverse bond) with plain
    loops and the model's weights: the atoms of the one crystal are the GRU sequence
    (``sequence``) or each its own."""
    rev = reverse_edges(graph)
    assert rev["rev_edge_ok"].all()
    b2revb = torch.as_tensor(rev["rev_edge"])
    b2a = torch.as_tensor(graph.neighbor)  # source atom of each bond
    a2b = [np.flatnonzero(graph.center == v).tolist() for v in range(graph.n_atoms)]
    f_atoms = model.embedding.table[torch.as_tensor(graph.atomic_numbers)]
    f_bonds = model.rbf(torch.as_tensor(graph.distances, dtype=torch.float32))
    relu = torch.relu

    def aggregate(hb):
        first = (lambda t: t.mean(0)) if mean else (lambda t: t.sum(0))
        return torch.stack([first(hb[b]) * hb[b].max(0).values for b in a2b])

    x0 = relu(f_atoms @ model.embedding.linear.weight.T)
    h0 = relu(f_bonds @ model.edge_input.weight.T)
    ha, hb = x0, h0
    for layer in model.layers:
        ha = ha + aggregate(hb)
        hb = relu(h0 + (ha[b2a] - hb[b2revb]) @ layer.linear.weight.T)
    h = torch.cat([aggregate(hb), ha, x0], 1) @ model.communicate.weight.T
    gru_in = relu(h + model.gru_bias)  # the GRU reads ReLU(h + b) ...
    h_start = h.max(0).values          # ... starting from the max of h (no ReLU)
    if sequence:
        out, _ = model.gru(gru_in[None], h_start.expand(2, 1, -1).contiguous())
        out = out[0]
    else:
        n = graph.n_atoms
        out, _ = model.gru(gru_in[:, None], h_start.expand(2, n, -1).contiguous())
        out = out[:, 0]
    atoms = relu(out @ model.output.weight.T + model.output.bias)
    return model.head(atoms.mean(0, keepdim=True))


@pytest.mark.parametrize("readout_gru,aggregation", [
    ("sequence", "sum_max"), ("atomwise", "sum_max"), ("atomwise", "mean_max")])
def test_whole_model_equals_the_reference_layout(readout_gru, aggregation):
    torch.manual_seed(0)
    s = Structure(Lattice.from_parameters(4.1, 4.3, 4.6, 85, 95, 100), ["Li", "O", "Fe"],
                  [[0, 0, 0], [0.5, 0.4, 0.3], [0.2, 0.7, 0.55]])
    graph = GraphBuilder(5.0, 64, symmetrize="both").build(s)
    model = CrystalNet(hidden=6, n_basis=12, depth=3, readout_gru=readout_gru,
                       aggregation=aggregation).eval()
    with torch.no_grad():  # non-zero biases, so that each one is checked
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_()
        got = model(collate_graphs([graph], extras=model.graph_extras))
        want = _reference_layout(model, graph, sequence=readout_gru == "sequence",
                                 mean=aggregation == "mean_max")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_readout_gru_sequence_depends_on_atom_order_atomwise_does_not(perovskites):
    X, _ = perovskites
    s = X[3]
    order = [4, 2, 0, 3, 1]
    permuted = Structure(s.lattice, [s[i].specie for i in order], s.frac_coords[order])
    torch.manual_seed(0)
    model = CrystalNet(hidden=8, n_basis=10).eval()
    build = lambda t: collate_graphs([GraphBuilder(5.0, 64, symmetrize="both").build(t)],
                                     extras=model.graph_extras)
    with torch.no_grad():
        a, b = model(build(s)), model(build(permuted))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        model.readout_gru = "sequence"
        a, b = model(build(s)), model(build(permuted))
        assert not torch.allclose(a, b, rtol=1e-3, atol=0)


def test_readout_gru_sequence_is_independent_of_the_batch(perovskites, nacl):
    X, _ = perovskites
    model = CrystalNet(hidden=8, n_basis=10, readout_gru="sequence").eval()
    graphs = [GraphBuilder(5.0, 64, symmetrize="both").build(t) for t in (X[0], nacl, X[1])]
    with torch.no_grad():
        together = model(collate_graphs(graphs, extras=model.graph_extras))
        alone = torch.cat([model(collate_graphs([g], extras=model.graph_extras))
                           for g in graphs])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_classifier_fits(perovskites):
    X, y = perovskites
    labels = np.where(y[:32] > np.median(y[:32]), "high", "low")
    clf = CrystalNetClassifier(max_epochs=1, **SMALL).fit(X[:32], labels)
    assert set(clf.predict(X[:5])) <= {"high", "low"}
    assert clf.predict_proba(X[:5]).shape == (5, 2)

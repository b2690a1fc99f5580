"""ALIGNN: edge-gated convolution by hand, reference defaults, learning, invariances."""
import inspect
import math

import numpy as np
import pytest
import torch

from skcrystal.estimators.alignn import ALIGNNClassifier, ALIGNNRegressor
from pymatgen.core import Lattice, Structure

from skcrystal.graphs import build_graph, collate_graphs
from skcrystal.graphs.line_graph import line_graph_extra
from skcrystal.graphs.symmetrize import symmetrize_graph
from skcrystal.nn.alignn import (ALIGNN, ALIGNNDescriptorHead, ALIGNNLayer, EdgeGatedGraphConv,
                                 alignn_line_graph)

SMALL = dict(module__hidden=16, module__embedding_features=16,
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
    assert m.atom_embedding.linear.out_features == 256
    assert isinstance(m.edge_embedding[1][1], torch.nn.BatchNorm1d)
    linears = [mod for mod in m.head.modules() if isinstance(mod, torch.nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 256
    assert m.max_triplets == 2_000_000
    layer_norm = ALIGNN(norm="layer", hidden=8, embedding_features=8)
    assert all(not isinstance(mod, torch.nn.BatchNorm1d) for mod in layer_norm.modules())
    assert isinstance(layer_norm.alignn_layers[0].node_update.bn_nodes, torch.nn.LayerNorm)


def test_parameter_constraints_cover_the_constructor():
    names = set(inspect.signature(ALIGNN.__init__).parameters) - {"self"}
    assert set(ALIGNN._parameter_constraints) == names


@pytest.mark.parametrize("bad, match", [
    (dict(alignn_layers=-1), "alignn_layers"), (dict(hidden=0), "'hidden'"),
    (dict(pooling="set2set"), "pooling"), (dict(norm="group"), "norm"),
    (dict(n_basis=2.5), "n_basis"), (dict(cutoff=-1.0), "cutoff"),
    (dict(max_triplets=0), "max_triplets"), (dict(descriptor_head="sum"), "descriptor_head"),
    (dict(dropout=1.0), "dropout"), (dict(n_descriptors=3, head_hidden=(8,)), "head_hidden"),
])
def test_bad_module_params(bad, match):
    with pytest.raises(ValueError, match=match):
        ALIGNN(**bad)


def test_graph_extras_is_the_alignn_line_graph():
    extra = ALIGNN(max_triplets=500).graph_extras[0]
    assert dict(extra.params) == {"max_triplets": 500, "convention": "alignn"}
    assert line_graph_extra(500, convention="alignn") == extra
    assert ALIGNN(alignn_layers=0).graph_extras == ()


def test_layer_updates_atoms_first_then_line_graph_on_new_bonds():
    """ALIGNNConv order: x, m = node_update(x, y); y, z = edge_update(m, z)."""
    torch.manual_seed(0)
    layer = ALIGNNLayer(4).eval()
    for mod in layer.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
    x, y, z = torch.randn(3, 4), torch.randn(4, 4), torch.randn(5, 4)
    edge_index = torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]])
    lg_index = torch.tensor([[2, 0], [3, 0], [0, 2], [1, 3], [2, 1]])
    with torch.no_grad():
        got = layer(x, y, z, edge_index, lg_index)
        x1, m = layer.node_update(x, y, edge_index[0], edge_index[1])
        y1, z1 = layer.edge_update(m, z, lg_index[:, 0], lg_index[:, 1])
        # the previous (line graph first) order gives something else
        y_lf, z_lf = layer.edge_update(y, z, lg_index[:, 0], lg_index[:, 1])
        x_lf, _ = layer.node_update(x, y_lf, edge_index[0], edge_index[1])
    for a, b in zip(got, (x1, y1, z1)):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(got[0], x_lf, atol=1e-4)


def test_descriptor_head_by_hand():
    """Reference extra-features head: per-atom block, mean, two blocks, Linear."""
    torch.manual_seed(0)
    head = ALIGNNDescriptorHead(in_dim=3, n_descriptors=2, n_outputs=1).eval()
    h = torch.randn(2, 3)
    d = torch.randn(2, 2)
    node_graph = torch.tensor([0, 0, 0, 1])
    silu = torch.nn.functional.silu
    bn = 1 / math.sqrt(1 + 1e-5)  # eval batch norm, fresh statistics, unit affine

    def block(seq, v):
        return silu(bn * seq[0](v))
    with torch.no_grad():
        h_d = block(head.extra_feature_embedding, d)  # equal on every atom of a crystal
        expect = head.fc3(block(head.fc2, block(head.fc1, torch.cat([h, h_d], 1))))
        torch.testing.assert_close(head(h, d, node_graph), expect)
    assert head.fc1[0].in_features == head.fc2[0].out_features == 5
    # in training the descriptor block's batch statistics count each atom
    head.train()
    with torch.no_grad():
        head(h, d, node_graph)
    lin = head.extra_feature_embedding[0]
    per_atom = lin(d[node_graph])
    torch.testing.assert_close(head.extra_feature_embedding[1].running_mean,
                               0.1 * per_atom.mean(0))
    with pytest.raises(ValueError, match="2 descriptors"):
        head(h, None, node_graph)


def test_hybrid_model_uses_reference_head_or_shared_head(nacl):
    batch = collate_graphs([build_graph(nacl)], descriptors=np.ones((1, 4)),
                           extras=[line_graph_extra(convention="alignn")])
    m = ALIGNN(hidden=8, embedding_features=8, n_descriptors=4).eval()
    assert isinstance(m.head, ALIGNNDescriptorHead)
    assert m(batch).shape == (1, 1)
    concat = ALIGNN(hidden=8, embedding_features=8, n_descriptors=4, descriptor_head="concat",
                    head_hidden=(6,))
    assert concat.head.mlp[0].in_features == 12 and concat(batch).shape == (1, 1)


def test_line_graph_on_the_fly_equals_cached(nacl, diamond):
    graphs = [symmetrize_graph(build_graph(nacl)), build_graph(diamond, max_neighbors=6)]
    extra = line_graph_extra(convention="alignn")
    batch = collate_graphs(graphs, extras=[extra])
    idx, cos = alignn_line_graph(batch.edge_index, batch.vectors.double())
    cached = batch.extras["lg_alignn_index"]
    assert sorted(map(tuple, idx.tolist())) == sorted(map(tuple, cached.tolist()))
    torch.manual_seed(0)
    m = ALIGNN(hidden=8, embedding_features=8, alignn_layers=2, gcn_layers=1).eval()
    with torch.no_grad():
        with_cache = m(batch)
        batch.extras.clear()
        torch.testing.assert_close(m(batch), with_cache, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match=r"crystal 0 of the batch.*max_triplets=10"):
            ALIGNN(hidden=8, embedding_features=8, max_triplets=10)(batch)


def test_symmetrize_adds_missing_reverse_edges():
    # A-B 1.0 Å, B-C 1.2 Å: with one neighbour each, C keeps B but B keeps A
    s = Structure(Lattice.cubic(20.0), ["O", "Ti", "O"],
                  [[5.0, 5, 5], [6.0, 5, 5], [7.2, 5, 5]], coords_are_cartesian=True)
    g = build_graph(s, radius=3.0, max_neighbors=1)
    assert sorted(zip(g.center.tolist(), g.neighbor.tolist())) == [(0, 1), (1, 0), (2, 1)]
    sym = symmetrize_graph(g)
    assert sorted(zip(sym.center.tolist(), sym.neighbor.tolist())) == \
        [(0, 1), (1, 0), (1, 2), (2, 1)]
    b_to_c = (sym.center == 1) & (sym.neighbor == 2)
    np.testing.assert_allclose(sym.vectors[b_to_c], [[1.2, 0, 0]], atol=1e-9)
    np.testing.assert_allclose(sym.distances[b_to_c], [1.2])
    assert symmetrize_graph(sym) is sym


def test_cell_choice_invariance_and_reference_self_image_duplicates():
    """Mean-pooled predictions agree for a cell and its supercell with single bonds,
    not with the reference's doubled bonds to an atom's own images."""
    s = Structure(Lattice.tetragonal(2.6, 9.0), ["Mo", "S"], [[0, 0, 0.5], [0.5, 0.5, 0.62]])
    sup = s.copy()
    sup.make_supercell([2, 1, 1])
    torch.manual_seed(0)
    m = ALIGNN(hidden=16, embedding_features=8, alignn_layers=2, gcn_layers=1).eval()
    _randomize_norms(m)

    def predict(structure, dup):
        g = symmetrize_graph(build_graph(structure), duplicate_self_images=dup)
        with torch.no_grad():
            return m(collate_graphs([g], extras=list(m.graph_extras))).item()
    single = abs(predict(s, False) - predict(sup, False))
    doubled = abs(predict(s, True) - predict(sup, True))
    assert single < 1e-6 and doubled > 1e-4  # measured: ~1e-8 and 1.9e-4 (of 0.08)


def _randomize_norms(model):
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.weight.uniform_(0.5, 1.5)


def test_model_without_line_graph_extra_builds_it(nacl):
    batch = collate_graphs([build_graph(nacl)])
    out = ALIGNN(hidden=8, embedding_features=8)(batch)
    assert out.shape == (1, 1) and torch.isfinite(out).all()
    # without ALIGNN layers it is a plain edge-gated GCN
    out = ALIGNN(hidden=8, embedding_features=8, alignn_layers=0)(batch)
    assert out.shape == (1, 1)


def test_forward_on_batch(nacl, diamond):
    graphs = [build_graph(nacl), build_graph(diamond)]
    m = ALIGNN(hidden=16, embedding_features=8, alignn_layers=1, gcn_layers=1, n_outputs=3)
    batch = collate_graphs(graphs, extras=list(m.graph_extras))
    out = m(batch)
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_line_graph_bound_names_structure(perovskites, nacl):
    X, y = perovskites
    est = ALIGNNRegressor(max_epochs=1, module__max_triplets=2000, **SMALL)
    big = nacl.copy()
    big.make_supercell([2, 1, 1])  # 16 atoms x 18 x 17 pairs
    with pytest.raises(ValueError, match=r"X\[2\] \(NaCl.*max_triplets=2000"):
        est.fit([X[0], X[1], big], y[:3])
    assert est.set_params(module__max_triplets=None).fit([X[0], X[1], big], y[:3])


def test_classifier_fits(perovskites):
    X, y = perovskites
    labels = y[:32] > np.median(y[:32])
    clf = ALIGNNClassifier(max_epochs=1, **SMALL).fit(X[:32], labels)
    assert clf.predict_proba(X[:5]).shape == (5, 2)
    assert clf.predict(X[:5]).dtype == bool


def test_estimator_graph_is_the_reference_symmetrized_knn_graph(perovskites):
    X = perovskites[0][:4] if isinstance(perovskites, tuple) else perovskites[:4]
    est = ALIGNNRegressor()
    assert (est.symmetrize, est.grow_radius, est.radius, est.max_neighbors) == ("union", True, 8.0, 12)
    for s, g in zip(X, est.prepare(X)):
        want = symmetrize_graph(build_graph(s, radius=8.0, max_neighbors=12, grow_radius=True))
        edges = set(zip(g.center.tolist(), g.neighbor.tolist(), map(tuple, g.offsets.tolist())))
        assert edges == set(zip(want.center.tolist(), want.neighbor.tolist(),
                                map(tuple, want.offsets.tolist())))
        # every bond has its reverse (u -> v at image n, v -> u at image -n)
        assert edges == {(v, u, tuple(-o for o in off)) for u, v, off in edges}


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_edge_chunks_give_the_same_outputs_and_gradients(norm):
    """Edges in chunks below 32 MB == one chunk: values and gradients."""
    gen = torch.Generator().manual_seed(0)
    n, n_edges, dim = 40, 3000, 16
    conv = EdgeGatedGraphConv(dim, norm=norm).train()
    x = torch.randn(n, dim, generator=gen, requires_grad=True)
    e = torch.randn(n_edges, dim, generator=gen, requires_grad=True)
    receiver = torch.randint(0, n, (n_edges,), generator=gen)
    sender = torch.randint(0, n, (n_edges,), generator=gen)

    def run(chunk_bytes):
        conv.chunk_bytes = chunk_bytes
        x.grad = e.grad = None
        conv.zero_grad()
        xo, eo = conv(x, e, receiver, sender)
        (xo.square().sum() + eo.sin().sum()).backward()
        return [t.detach().clone() for t in (xo, eo, x.grad, e.grad,
                                              conv.edge_gate.weight.grad)]

    whole = run(2**40)
    chunked = run(dim * 4 * 700)  # 5 chunks of 700 rows
    for a, b in zip(whole, chunked):
        # sums over 3000 edges: float32 rounding relative to the largest value
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0,
                                   atol=1e-5 * max(1.0, float(a.abs().max())))

"""CrysToGraph: positional encodings, the paper's line graph, the reference's widths, eTGC
attention, GwT isolation, invariance, fit."""
import math

import numpy as np
import pytest
import torch

from skcrystal.graphs import CrystalGraph, GraphBuilder, collate_graphs
from skcrystal.graphs.line_graph import line_graph, line_graph_extra
from skcrystal.graphs.positional import positional_encodings, positional_extra
from skcrystal.nn.crystograph import CrysToGraph, ETGCLayer, GwTLayer, graph_wise_attention
from skcrystal.nn.scatter import scatter_sum

TINY = dict(module__hidden=16, module__n_heads=2, module__head_dim=8, module__n_etgc=1,
            module__edge_dim=8, module__angle_dim=8, module__lg_n_heads=2,
            module__lg_head_dim=4, module__n_basis=16, module__n_eigvec=4, module__n_rw=4)


def _graph(n, pairs):
    """A bare CrystalGraph with undirected edges ``pairs`` (both directions)."""
    pairs = np.asarray(pairs, dtype=np.int64)
    center = np.concatenate([pairs[:, 0], pairs[:, 1]])
    neighbor = np.concatenate([pairs[:, 1], pairs[:, 0]])
    m = len(center)
    return CrystalGraph(
        atomic_numbers=np.full(n, 6, np.int64), positions=np.zeros((n, 3)),
        lattice=np.eye(3) * 10, center=center, neighbor=neighbor,
        distances=np.ones(m), offsets=np.zeros((m, 3), np.int64),
        vectors=np.tile([1.0, 0.0, 0.0], (m, 1)), radius=8.0)


# ----------------------------------------------------------------- encodings
def test_positional_encodings_path_graph_by_hand():
    # path 0-1-2: normalised Laplacian eigenvalues 0, 1, 2 with eigenvectors
    # (1, 0, -1)/sqrt2 and (1, -sqrt2, 1)/2 (sign: largest entry positive)
    pe = positional_encodings(_graph(3, [(0, 1), (1, 2)]), n_eigvec=3, n_rw=4)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(pe["pe_lap"][:, 0], [s, 0, -s], atol=1e-6)
    np.testing.assert_allclose(pe["pe_lap"][:, 1], [-0.5, s, -0.5], atol=1e-6)
    np.testing.assert_allclose(pe["pe_lap"][:, 2], 0.0)  # padding: only 2 non-trivial
    # the middle atom is back after every even number of steps, surely; an end
    # atom only if the middle one steps back to it (1/2)
    np.testing.assert_allclose(pe["pe_rw"], [[0, .5, 0, .5], [0, 1, 0, 1], [0, .5, 0, .5]],
                               atol=1e-6)


def test_positional_encodings_cycles_by_hand():
    # 4-cycle: eigenvalues 0, 1, 1, 2; the top one alternates in sign
    g4 = _graph(4, [(0, 1), (1, 2), (2, 3), (3, 0)])
    pe = positional_encodings(g4, n_eigvec=3, n_rw=6)
    np.testing.assert_allclose(pe["pe_lap"][:, 2], [0.5, -0.5, 0.5, -0.5], atol=1e-6)
    L = np.eye(4) - np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]) / 2
    vecs = pe["pe_lap"][:, :2].astype(np.float64)
    np.testing.assert_allclose(L @ vecs, vecs, atol=1e-6)  # degenerate pair, lambda = 1
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(2), atol=1e-6)
    np.testing.assert_allclose(pe["pe_rw"], [[0, .5, 0, .5, 0, .5]] * 4, atol=1e-6)
    # triangle: P = (J - I)/2, return probabilities 0, 1/2, 1/4, 3/8
    pe3 = positional_encodings(_graph(3, [(0, 1), (1, 2), (2, 0)]), n_eigvec=2, n_rw=4)
    np.testing.assert_allclose(pe3["pe_rw"], [[0, .5, .25, .375]] * 3, atol=1e-6)


def test_positional_encodings_collate_as_node_features(nacl, diamond):
    graphs = [GraphBuilder(max_neighbors=12, grow_radius=True).build(s) for s in (nacl, diamond)]
    batch = collate_graphs(graphs, extras=[positional_extra(5, 3)])
    assert batch.extras["pe_lap"].shape == (batch.n_nodes, 5)
    assert batch.extras["pe_rw"].shape == (batch.n_nodes, 3)
    assert torch.isfinite(batch.extras["pe_rw"]).all()


# ----------------------------------------------------------------- layers
def test_etgc_attention_sums_to_one_over_incoming_edges():
    torch.manual_seed(0)
    n, m = 7, 40
    edge_index = torch.stack([torch.randint(0, n - 1, (m,)), torch.randint(0, n, (m,))])
    layer = ETGCLayer(12, 10, n_heads=3, head_dim=4, ffn_mult=2)
    attn, h_x, h_e = layer.attention(torch.randn(n, 12), torch.randn(m, 10), edge_index)
    assert attn.shape == (m, 3) and h_x.shape == (n, 12) and h_e.shape == (m, 12)
    sums = scatter_sum(attn, edge_index[0], n)
    has_edges = torch.bincount(edge_index[0], minlength=n) > 0
    torch.testing.assert_close(sums[has_edges], torch.ones(int(has_edges.sum()), 3))
    assert (sums[~has_edges] == 0).all()  # node n-1 receives nothing
    x, e = layer(torch.randn(n, 12), torch.randn(m, 10), edge_index)
    assert x.shape == (n, 12) and e.shape == (m, 10)


def test_graph_wise_attention_matches_per_crystal_attention():
    torch.manual_seed(0)
    sizes = torch.tensor([3, 1, 9, 40, 5])  # several size buckets, one of size 1
    node_graph = torch.repeat_interleave(torch.arange(5), sizes)
    q, k, v = torch.randn(3, int(sizes.sum()), 2, 4).unbind(0)
    out = graph_wise_attention(q, k, v, node_graph, sizes)
    start = 0
    for n in sizes.tolist():  # reference: one crystal at a time
        sl = slice(start, start + n)
        w = torch.softmax(torch.einsum("ihd,jhd->hij", q[sl], k[sl]) / 2.0, dim=-1)
        torch.testing.assert_close(out[sl], torch.einsum("hij,jhd->ihd", w, v[sl]))
        start += n


def test_gwt_never_attends_across_crystals():
    torch.manual_seed(0)
    sizes = torch.tensor([4, 6, 30])
    node_graph = torch.repeat_interleave(torch.arange(3), sizes)
    layer = GwTLayer(8, n_heads=2, head_dim=4, ffn_mult=1)
    x = torch.randn(int(sizes.sum()), 8)
    y0 = layer(x, node_graph, sizes)
    x2 = x.clone()
    x2[4:10] += 5 * torch.randn(6, 8)  # perturb crystal 1 only
    y1 = layer(x2, node_graph, sizes)
    torch.testing.assert_close(y1[:4], y0[:4])
    torch.testing.assert_close(y1[10:], y0[10:])
    assert not torch.allclose(y1[4:10], y0[4:10])


def test_model_perturbing_one_crystal_leaves_others_unchanged(nacl, diamond):
    from pymatgen.core import Lattice, Structure
    b = GraphBuilder(max_neighbors=12, grow_radius=True)
    other = Structure(Lattice.cubic(4.0), ["Ca", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    moved = other.copy()
    moved.translate_sites([1], [0.03, 0.01, 0.0])
    model = CrysToGraph(hidden=16, n_heads=2, head_dim=8, edge_dim=8, angle_dim=8,
                        lg_n_heads=2, lg_head_dim=4, n_eigvec=4, n_rw=4).eval()
    extras = model.graph_extras
    outs = [model(collate_graphs([b.build(s) for s in (nacl, mid, diamond)], extras=extras))
            for mid in (other, moved)]
    torch.testing.assert_close(outs[0][[0, 2]], outs[1][[0, 2]])
    assert not torch.allclose(outs[0][1], outs[1][1])


# ----------------------------------------------------------------- the reference's graph
def test_line_graph_is_the_papers_section_2_1_3(nacl, perovskites):
    """Every pair of bonds (n_u -> n_v, n_v -> n_w), backtracking included (DGL's
    line_graph, the reference's), the angle taken at n_v, found by brute force."""
    model = CrysToGraph()
    assert model.graph_extras[0] == line_graph_extra(convention="alignn")
    builder = GraphBuilder(max_neighbors=12, grow_radius=True)
    for s in (nacl, perovskites[0][7]):
        g = builder.build(s)
        # a skcrystal edge e is the bond neighbor[e] -> center[e]
        want = {}
        for a in range(g.n_edges):          # n_u -> n_v
            for b in range(g.n_edges):      # n_v -> n_w
                if g.neighbor[b] == g.center[a]:
                    v_u, v_w = g.vectors[a], -g.vectors[b]  # from n_v to n_u, to n_w
                    want[(b, a)] = v_u @ v_w / np.linalg.norm(v_u) / np.linalg.norm(v_w)
        batch = collate_graphs([g], extras=model.graph_extras)
        index = batch.extras["lg_alignn_index"].numpy()
        cos = batch.extras["lg_alignn_cos"].numpy()
        got = dict(zip(map(tuple, index.tolist()), cos.tolist()))
        assert len(got) == len(index) == len(want)
        assert set(got) == set(want)
        np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-5)
        # the backtracking pairs are there, at cos = 1
        rev = [(b, a) for (b, a) in want if g.center[b] == g.neighbor[a]
               and np.allclose(g.vectors[b], -g.vectors[a])]
        assert rev and all(abs(got[k] - 1) < 1e-6 for k in rev)
    # and not the shared-centre convention (kept as lg_convention="shared_center")
    assert CrysToGraph(lg_convention="shared_center").graph_extras[0] == line_graph_extra()


def test_line_graph_messages_flow_from_the_incoming_bond():
    """In the line-graph eTGC the bond n_v -> n_w receives from n_u -> n_v: a bond no
    other bond ends at the start of receives nothing (its attention sums to 0)."""
    # bonds (skcrystal edge = neighbour -> centre): e0 = 0 -> 1, e1 = 1 -> 2
    g = CrystalGraph(np.array([6, 6, 6]), np.zeros((3, 3)), np.eye(3) * 10,
                     np.array([1, 2]), np.array([0, 1]), np.ones(2),
                     np.zeros((2, 3), np.int64), np.array([[-1.0, 0, 0], [-1.0, 0, 0]]), 8.0)
    lg = line_graph(g, convention="alignn")
    np.testing.assert_array_equal(lg["lg_alignn_index"], [[1, 0]])  # e1 receives from e0
    np.testing.assert_allclose(lg["lg_alignn_cos"], [-1.0])  # straight through atom 1


def test_reference_widths():
    """howardwang1997/CrysToGraph_matbench: atom eTGC TransformerConvLayer(256, 32, 8,
    edge_dim=76), line-graph eTGC TransformerConvLayer(76, 24, 8, edge_dim=30), FFN
    4x (eTGC) and 2x (GwT), GwT edge embedding from the 76 bond channels."""
    m = CrysToGraph()
    atom, lg, gwt = m.atom_layers[0], m.lg_layers[0], m.gwt_layers[0]
    assert len(m.atom_layers) == len(m.lg_layers) == 3 and len(m.gwt_layers) == 1
    assert m.edge_in.out_features == 76 and m.angle_in.out_features == 30
    assert (atom.n_heads, atom.head_dim, atom.q.in_features) == (8, 32, 256)
    assert atom.e_proj.in_features == 76 and atom.out_edge.out_features == 76
    assert (lg.n_heads, lg.head_dim, lg.q.in_features) == (8, 24, 76)
    assert lg.e_proj.in_features == 30 and lg.out_edge.out_features == 30
    assert atom.ffn_node.lin1.out_features == 4 * 256
    assert atom.ffn_edge.lin1.out_features == 4 * 76
    assert lg.ffn_node.lin1.out_features == 4 * 76
    assert lg.ffn_edge.lin1.out_features == 4 * 30
    assert gwt.ffn[0].out_features == 2 * 256 and gwt.ffn[2].in_features == 2 * 256
    assert m.gwt_edge.in_features == 76 and m.gwt_edge.out_features == 256
    small = CrysToGraph(hidden=16, edge_dim=6, angle_dim=4, etgc_ffn_mult=3, gwt_ffn_mult=5)
    assert small.atom_layers[0].ffn_edge.lin1.out_features == 18
    assert small.lg_layers[0].ffn_edge.lin1.out_features == 12
    assert small.gwt_layers[0].ffn[0].out_features == 80


def test_invalid_module_parameters():
    with pytest.raises(ValueError, match="edge_features"):
        CrysToGraph(edge_features="cartesian")
    with pytest.raises(ValueError, match="positional_encoding"):
        CrysToGraph(positional_encoding="sinusoidal")
    with pytest.raises(ValueError, match="n_gwt"):
        CrysToGraph(n_gwt=-1)
    with pytest.raises(ValueError, match="lg_convention"):
        CrysToGraph(lg_convention="dgl")
    with pytest.raises(ValueError, match="edge_dim"):
        CrysToGraph(edge_dim=0)


# ----------------------------------------------------------------- estimator
def _rotated(structure, seed=0):
    from pymatgen.core import Lattice, Structure
    from scipy.spatial.transform import Rotation
    R = Rotation.random(random_state=seed).as_matrix()
    return Structure(Lattice(structure.lattice.matrix @ R.T), structure.species,
                     structure.frac_coords)


@pytest.fixture(scope="module")
def perovskites():
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=260)
    return list(X), np.asarray(y)


def test_default_model_is_rotation_invariant_spherical_is_not(perovskites):
    from skcrystal.estimators.crystograph import CrysToGraphRegressor
    X, y = perovskites
    # a lower-symmetry cell: distort one perovskite so rotations matter
    probe = [X[0].copy()]
    probe[0].translate_sites([2], [.02, .05, .01])
    rotated = [_rotated(probe[0], seed) for seed in (1, 2)]
    preds = {}
    for feats in ("distance", "spherical"):
        est = CrysToGraphRegressor(max_epochs=2, random_state=0, max_neighbors=6,
                                   module__edge_features=feats, **TINY).fit(X[:40], y[:40])
        preds[feats] = est.predict(probe + rotated)
    np.testing.assert_allclose(preds["distance"][1:], preds["distance"][0], rtol=1e-4,
                               atol=1e-5)
    assert np.ptp(preds["spherical"]) > 1e-4


def test_ablation_switches_choose_graph_extras_and_run(perovskites):
    from skcrystal.estimators.crystograph import CrysToGraphRegressor
    X, y = perovskites
    keys = lambda est: sorted(e.name[:4] for e in est.graph_extras)
    assert keys(CrysToGraphRegressor()) == ["line", "posi"]
    assert keys(CrysToGraphRegressor(module__n_gwt=0)) == ["line"]
    assert keys(CrysToGraphRegressor(module__use_line_graph=False,
                                     module__positional_encoding="none")) == []
    for params in (dict(module__n_gwt=0), dict(module__use_line_graph=False),
                   dict(module__positional_encoding="rw", module__n_etgc=0)):
        est = CrysToGraphRegressor(max_epochs=1, random_state=0, max_neighbors=6,
                                   **{**TINY, **params}).fit(X[:20], y[:20])
        assert np.isfinite(est.predict(X[20:24])).all()


def test_descriptor_hybrid_and_classifier(perovskites):
    import pandas as pd
    from skcrystal.estimators.crystograph import (CrysToGraphClassifier,
                                                  CrysToGraphRegressor)
    X, y = perovskites
    frame = pd.DataFrame({"structure": X[:24], "volume": [s.volume for s in X[:24]]})
    est = CrysToGraphRegressor(max_epochs=1, random_state=0, max_neighbors=6,
                               descriptor_screen=False, **TINY).fit(frame, y[:24])
    assert est.module_.head.n_descriptors == 1
    assert est.predict(frame).shape == (24,)
    clf = CrysToGraphClassifier(max_epochs=1, random_state=0, max_neighbors=6,
                                **TINY).fit(X[:24], y[:24] > np.median(y[:24]))
    assert clf.predict_proba(X[:5]).shape == (5, 2)

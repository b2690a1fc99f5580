"""Line graph: hand-checked pairs and angles, batching, memory bound."""
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from skcrystal.graphs import build_graph, collate_graphs
from skcrystal.graphs.line_graph import (
    check_line_graph_sizes, count_line_graph_pairs, line_graph, line_graph_extra)


def _three_atoms(angle_deg, bond=1.5):
    """B at the origin of a 30 Å cube, A and C at ``bond`` Å making ``angle_deg``."""
    t = np.radians(angle_deg)
    cart = np.array([[bond, 0, 0], [0, 0, 0], [bond * np.cos(t), bond * np.sin(t), 0]])
    cart += 15.0
    return Structure(Lattice.cubic(30.0), ["O", "Ti", "O"], cart, coords_are_cartesian=True)


def _angle_graph(angle_deg):
    # radius 2 Å: B sees A and C; A and C see only B (A-C is 3 Å or 2.3 Å apart)
    return build_graph(_three_atoms(angle_deg), radius=2.0, max_neighbors=None)


def test_linear_three_atoms():
    g = _angle_graph(180.0)
    assert g.n_edges == 4  # B->A, B->C, A->B, C->B
    lg = line_graph(g)
    # only B has two bonds: pairs (B->A, B->C) and (B->C, B->A), both at 180 degrees
    assert lg["lg_index"].shape == (2, 2)
    assert np.all(g.center[lg["lg_index"]] == 1)
    np.testing.assert_allclose(lg["lg_cos"], [-1.0, -1.0], atol=1e-12)


@pytest.mark.parametrize("angle", [60.0, 90.0, 104.5, 120.0])
def test_bent_three_atoms(angle):
    g = _angle_graph(angle) if angle > 80 else build_graph(
        _three_atoms(angle), radius=1.6, max_neighbors=None)  # at 60 deg A-C = bond
    lg = line_graph(g)
    at_b = g.center[lg["lg_index"][:, 0]] == 1
    np.testing.assert_allclose(lg["lg_cos"][at_b], np.cos(np.radians(angle)), atol=1e-12)
    # the pair set is symmetric
    pairs = {tuple(p) for p in lg["lg_index"].tolist()}
    assert pairs == {(b, a) for a, b in pairs}


def test_include_self_pairs_have_cos_one():
    g = _angle_graph(120.0)
    lg = line_graph(g, include_self=True)
    assert len(lg["lg_cos"]) == count_line_graph_pairs(g, include_self=True) == 2 * 2 + 1 + 1
    same = lg["lg_index"][:, 0] == lg["lg_index"][:, 1]
    assert same.sum() == g.n_edges
    np.testing.assert_allclose(lg["lg_cos"][same], 1.0)


def test_rocksalt_six_neighbours(nacl):
    prim = nacl.get_primitive_structure()
    assert len(prim) == 2
    g = build_graph(prim, radius=8.0, max_neighbors=6)
    assert np.all(g.neighbor_counts() == 6)
    lg = line_graph(g)
    # 2 atoms x 6 x 5 ordered pairs of distinct bonds
    assert lg["lg_index"].shape == (60, 2)
    assert count_line_graph_pairs(g) == 60
    assert len(line_graph(g, include_self=True)["lg_cos"]) == 72
    # octahedron: per atom 6 trans pairs (cos -1) and 24 cis pairs (cos 0)
    np.testing.assert_allclose(np.sort(lg["lg_cos"]),
                               np.r_[np.full(12, -1.0), np.zeros(48)], atol=1e-9)
    # conventional cell: 8 atoms x 30
    assert count_line_graph_pairs(build_graph(nacl, radius=8.0, max_neighbors=6)) == 240


def test_matches_brute_force(diamond):
    cell = diamond.copy()
    cell.make_supercell([1, 1, 2])
    g = build_graph(cell, radius=4.0, max_neighbors=8)
    lg = line_graph(g)
    expect = {}
    for e1 in range(g.n_edges):
        for e2 in range(g.n_edges):
            if e1 != e2 and g.center[e1] == g.center[e2]:
                a, b = g.vectors[e1], g.vectors[e2]
                expect[(e1, e2)] = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    got = {tuple(p): c for p, c in zip(lg["lg_index"].tolist(), lg["lg_cos"])}
    assert got.keys() == expect.keys()
    np.testing.assert_allclose([got[p] for p in expect], list(expect.values()), atol=1e-12)
    assert np.all(np.diff(lg["lg_index"][:, 0]) >= 0)


def test_batching_shifts_by_edge_offset(nacl, diamond):
    graphs = [build_graph(nacl, max_neighbors=6), build_graph(diamond, max_neighbors=4)]
    extra = line_graph_extra()
    batch = collate_graphs(graphs, extras=[extra])
    idx = batch.extras["lg_index"].numpy()
    lg0 = graphs[0].extra(extra)
    lg1 = graphs[1].extra(extra)
    np.testing.assert_array_equal(idx, np.vstack([lg0["lg_index"],
                                                  lg1["lg_index"] + graphs[0].n_edges]))
    # pairs stay inside one crystal and share a centre atom in the batch too
    center = batch.edge_index[0].numpy()
    assert np.all(center[idx[:, 0]] == center[idx[:, 1]])
    assert batch.extras["lg_cos"].dtype.is_floating_point
    np.testing.assert_array_equal(batch.extras["lg_index_graph"].numpy(),
                                  np.repeat([0, 1], [len(lg0["lg_cos"]), len(lg1["lg_cos"])]))
    # memoised in the graph under a key encoding the parameters
    assert extra.key in graphs[0].extras["_memo"]
    assert line_graph_extra(include_self=True).key != extra.key


def test_memory_bound_error_names_structure_and_bound(nacl):
    g = build_graph(nacl, max_neighbors=6)  # 8 atoms x 30 = 240 pairs
    with pytest.raises(ValueError, match=r"structure.*NaCl.*240.*max_triplets=100"):
        line_graph(g, max_triplets=100)
    with pytest.raises(ValueError, match=r"structure 1 \(NaCl.*max_triplets=100"):
        check_line_graph_sizes([build_graph(nacl.get_primitive_structure(), max_neighbors=6),
                                g], max_triplets=100)
    check_line_graph_sizes([g], max_triplets=240)
    assert len(line_graph(g, max_triplets=None)["lg_cos"]) == 240


def test_empty_graph_edges():
    # an isolated-atom-free graph always has edges; a zero-edge graph is still handled
    g = _angle_graph(180.0)
    g0 = type(g)(g.atomic_numbers, g.positions, g.lattice, g.center[:0], g.neighbor[:0],
                 g.distances[:0], g.offsets[:0], g.vectors[:0], g.radius)
    lg = line_graph(g0)
    assert lg["lg_index"].shape == (0, 2) and lg["lg_cos"].shape == (0,)


# ----------------------------------------------------- ALIGNN convention

def test_alignn_three_atoms_by_hand():
    """A-B-C: 6 pairs; the angle at B goes into the bonds leaving B (B -> A, B -> C)."""
    angle = 104.5
    g = _angle_graph(angle)
    lg = line_graph(g, convention="alignn")
    assert set(lg) == {"lg_alignn_index", "lg_alignn_cos"}
    idx, cos = lg["lg_alignn_index"], lg["lg_alignn_cos"]
    # sum over atoms of (edges centred there) x (edges pointing to it): B 2 x 2, A 1, C 1
    assert idx.shape == (6, 2) == (count_line_graph_pairs(g, convention="alignn"), 2)
    recv, send = idx[:, 0], idx[:, 1]
    # the sending bond ends at the shared atom, the receiving bond leaves it
    np.testing.assert_array_equal(g.neighbor[recv], g.center[send])
    backtrack = (g.center[recv] == g.neighbor[send]) & (g.neighbor[recv] == g.center[send])
    np.testing.assert_allclose(cos[backtrack], 1.0)
    assert backtrack.sum() == 4  # every bond with its reverse
    at_b = ~backtrack
    assert np.all(g.neighbor[recv[at_b]] == 1)  # the angle at B ...
    assert set(g.center[recv[at_b]].tolist()) == {0, 2}  # ... updates the bonds B -> A, B -> C
    np.testing.assert_allclose(cos[at_b], np.cos(np.radians(angle)), atol=1e-12)


def test_alignn_rocksalt_cosines(nacl):
    prim = nacl.get_primitive_structure()
    g = build_graph(prim, radius=8.0, max_neighbors=6)
    lg = line_graph(g, convention="alignn")
    assert lg["lg_alignn_index"].shape == (72, 2)
    # per atom 6 backtracking (cos 1), 24 at 90 degrees, 6 straight through
    np.testing.assert_allclose(np.sort(lg["lg_alignn_cos"]),
                               np.r_[np.full(12, -1.0), np.zeros(48), np.ones(12)], atol=1e-9)


def test_alignn_matches_brute_force(diamond):
    cell = diamond.copy()
    cell.make_supercell([1, 1, 2])
    g = build_graph(cell, radius=4.0, max_neighbors=8)
    lg = line_graph(g, convention="alignn")
    expect = {}
    for b in range(g.n_edges):
        for a in range(g.n_edges):
            if g.neighbor[b] == g.center[a]:
                # angle at the shared atom between its bond a and its bond to b's centre
                va, vb = g.vectors[a], -g.vectors[b]
                expect[(b, a)] = va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)
    got = {tuple(p): c for p, c in zip(lg["lg_alignn_index"].tolist(), lg["lg_alignn_cos"])}
    assert got.keys() == expect.keys()
    np.testing.assert_allclose([got[p] for p in expect], list(expect.values()), atol=1e-12)


def test_alignn_convention_options_and_bound(nacl):
    g = build_graph(nacl, max_neighbors=6)  # 8 atoms x 6 x 6 = 288 pairs
    assert count_line_graph_pairs(g, convention="alignn") == 288
    with pytest.raises(ValueError, match="include_self"):
        line_graph(g, include_self=True, convention="alignn")
    with pytest.raises(ValueError, match="convention"):
        line_graph(g, convention="dgl")
    with pytest.raises(ValueError, match=r"structure 0 \(NaCl.*288.*max_triplets=287"):
        check_line_graph_sizes([g], max_triplets=287, convention="alignn")
    check_line_graph_sizes([g], max_triplets=288, convention="alignn")
    extra = line_graph_extra(convention="alignn")
    assert extra.key != line_graph_extra().key and dict(extra.params)["convention"] == "alignn"
    assert set(extra.offsets) == {"lg_alignn_index", "lg_alignn_cos"}
    # CrysToGraph's extra is unchanged
    shared = line_graph_extra()
    assert shared.func is line_graph and set(shared.offsets) == {"lg_index", "lg_cos"}
    assert dict(shared.params) == {"max_triplets": 2_000_000, "include_self": False}


def test_alignn_batching(nacl, diamond):
    graphs = [build_graph(nacl, max_neighbors=6), build_graph(diamond, max_neighbors=4)]
    batch = collate_graphs(graphs, extras=[line_graph_extra(convention="alignn")])
    idx = batch.extras["lg_alignn_index"].numpy()
    n0 = len(line_graph(graphs[0], convention="alignn")["lg_alignn_cos"])
    np.testing.assert_array_equal(
        idx, np.vstack([line_graph(graphs[0], convention="alignn")["lg_alignn_index"],
                        line_graph(graphs[1], convention="alignn")["lg_alignn_index"]
                        + graphs[0].n_edges]))
    center, neighbor = batch.edge_index.numpy()
    np.testing.assert_array_equal(neighbor[idx[:, 0]], center[idx[:, 1]])
    assert "lg_index" not in batch.extras and len(idx) > n0

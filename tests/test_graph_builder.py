"""Hand-checked crystal graphs: builder, ties, invariances, cache, batching."""
import math
from collections import Counter

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from skcrystal.graphs import (
    GraphBuilder, GraphCache, build_graph, collate_graphs, default_cache,
    get_graphs, structure_key)

A_NACL = 5.64


def per_atom_signature(graph, decimals=6):
    """Per atom: sorted (Z centre, Z neighbour, distance) tuples; as a multiset."""
    z = graph.atomic_numbers
    sig = Counter()
    for atom in range(graph.n_atoms):
        mine = graph.center == atom
        items = sorted(zip(z[graph.neighbor[mine]].tolist(),
                           np.round(graph.distances[mine], decimals).tolist()))
        sig[(int(z[atom]), tuple(items))] += 1
    return sig


def normalized(sig):
    """Signature counts divided by their gcd (cells of different size)."""
    g = 0
    for v in sig.values():
        g = math.gcd(g, v)
    return {k: v // g for k, v in sig.items()}


# ---------------------------------------------------------------- rocksalt


def test_nacl_keeps_whole_tied_shell(nacl):
    assert len(nacl) == 8
    g = build_graph(nacl, radius=8.0, max_neighbors=12)
    counts = g.neighbor_counts()
    np.testing.assert_array_equal(counts, 18)
    z = g.atomic_numbers
    for atom in range(8):
        mine = g.center == atom
        d = g.distances[mine]
        other = z[g.neighbor[mine]] != z[atom]
        # 6 unlike neighbours at a/2, then the 12 like ones at a/sqrt(2)
        np.testing.assert_allclose(d[other], A_NACL / 2, atol=1e-9)
        assert other.sum() == 6
        np.testing.assert_allclose(d[~other], A_NACL / math.sqrt(2), atol=1e-9)
        assert (~other).sum() == 12
        # no duplicate (neighbour, image) pair
        pairs = {(int(n), tuple(o)) for n, o in zip(g.neighbor[mine], g.offsets[mine])}
        assert len(pairs) == 18


def test_max_neighbors_none_keeps_everything_in_radius(nacl):
    g = build_graph(nacl, radius=4.0, max_neighbors=None)
    # within 4 Å: 6 at 2.82 and 12 at 3.99
    np.testing.assert_array_equal(g.neighbor_counts(), 18)
    assert g.distances.max() <= 4.0


def test_dtypes_and_shapes(nacl):
    g = build_graph(nacl)
    for name in ("atomic_numbers", "center", "neighbor", "offsets"):
        assert getattr(g, name).dtype == np.int64, name
    for name in ("positions", "lattice", "distances", "vectors"):
        assert getattr(g, name).dtype == np.float64, name
    assert g.offsets.shape == (g.n_edges, 3) and g.vectors.shape == (g.n_edges, 3)
    assert not np.any((g.center == g.neighbor) & (g.offsets == 0).all(axis=1))


# ---------------------------------------------------------------- self images


def test_one_atom_cell_self_images():
    s = Structure(Lattice.orthorhombic(3.0, 4.0, 5.0), ["Cu"], [[0.1, 0.2, 0.3]])
    g = build_graph(s, radius=5.5, max_neighbors=None)
    assert (g.center == 0).all() and (g.neighbor == 0).all()
    assert (np.abs(g.offsets).sum(axis=1) > 0).all()
    expected = np.linalg.norm(g.offsets * np.array([3.0, 4.0, 5.0]), axis=1)
    np.testing.assert_allclose(g.distances, expected, atol=1e-9)
    # shells within 5.5 Å: ±a (3), ±b (4), ±c (5), ±a±b (5)
    assert sorted(np.round(g.distances, 6).tolist()) == [3.0] * 2 + [4.0] * 2 + [5.0] * 6
    k12 = build_graph(s, radius=8.0, max_neighbors=12)
    assert k12.n_edges >= 12 and (k12.neighbor == 0).all()


def test_bond_vectors(nacl, diamond):
    perturbed = nacl.copy()
    perturbed.perturb(0.1, min_distance=0.05)
    # fractional coordinates outside [0, 1) and a skewed cell
    unwrapped = Structure(Lattice([[3, 0, 0], [2.5, 4, 0], [1, 1, 5]]), ["Na", "Cl"],
                          [[1.3, -0.6, 2.2], [0.02, 0.97, 0.45]])
    for s in (perturbed, diamond, unwrapped):
        g = build_graph(s, radius=6.0, max_neighbors=12)
        lattice = s.lattice.matrix
        expected = s.cart_coords[g.neighbor] + g.offsets @ lattice - s.cart_coords[g.center]
        np.testing.assert_allclose(g.vectors, expected, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(g.vectors, axis=1), g.distances, atol=1e-9)


# ---------------------------------------------------------------- invariances


def test_invariant_to_atom_permutation(nacl):
    rng = np.random.default_rng(3)
    s = nacl.copy()
    s.perturb(0.05)
    perm = rng.permutation(len(s))
    shuffled = Structure(s.lattice, [s[i].specie for i in perm], s.frac_coords[perm])
    a = build_graph(s, radius=8.0, max_neighbors=12)
    b = build_graph(shuffled, radius=8.0, max_neighbors=12)
    assert per_atom_signature(a) == per_atom_signature(b)


def test_invariant_to_rotation(nacl):
    theta = 0.7
    rot = np.array([[math.cos(theta), -math.sin(theta), 0],
                    [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    axis2 = np.array([[1, 0, 0], [0, math.cos(1.1), -math.sin(1.1)],
                      [0, math.sin(1.1), math.cos(1.1)]])
    matrix = nacl.lattice.matrix @ (axis2 @ rot).T
    rotated = Structure(Lattice(matrix), nacl.species, nacl.frac_coords)
    a = build_graph(nacl, radius=8.0, max_neighbors=12)
    b = build_graph(rotated, radius=8.0, max_neighbors=12)
    assert per_atom_signature(a) == per_atom_signature(b)
    np.testing.assert_array_equal(b.neighbor_counts(), 18)


def test_primitive_vs_conventional(nacl, diamond):
    for s in (nacl, diamond):
        prim = s.get_primitive_structure()
        assert len(prim) < len(s)
        a = build_graph(s, radius=8.0, max_neighbors=12)
        b = build_graph(prim, radius=8.0, max_neighbors=12)
        assert normalized(per_atom_signature(a)) == normalized(per_atom_signature(b))
    # diamond: 4 nearest at sqrt(3)/4 a, then the tied shell of 12
    g = build_graph(diamond.get_primitive_structure(), radius=8.0, max_neighbors=12)
    np.testing.assert_array_equal(g.neighbor_counts(), 16)


# ---------------------------------------------------------------- isolated atoms


def _far_pair():
    return Structure(Lattice.cubic(20.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0, 0]])


def test_isolated_atom_raises_with_structure_index(nacl):
    builder = GraphBuilder(radius=3.0, max_neighbors=12)
    cache = GraphCache()
    with pytest.raises(ValueError, match=r"structure 7\b.*radius=3"):
        get_graphs([nacl, _far_pair()], builder, cache=cache, indices=[4, 7])


def test_a_disordered_structure_is_named_not_a_pymatgen_attribute_error(nacl):
    """build() reads the sites' species once; a partly occupied site gives the
    builder's error naming the structure and the site."""
    disordered = nacl.copy()
    disordered.replace(1, {"Cl": 0.5, "Br": 0.5})
    with pytest.raises(ValueError, match=r"structure 3 is disordered: site 1 has partial"):
        GraphBuilder(radius=3.0).validate().build(disordered, index=3)
    # its cache key, and get_graphs (which reads each structure once for both)
    with pytest.raises(ValueError, match=r"structure is disordered: site 1 has partial"):
        structure_key(disordered)
    with pytest.raises(ValueError, match=r"disordered: site 1 has partial"):
        get_graphs([nacl, disordered], GraphBuilder(radius=3.0), cache=GraphCache())


def test_grow_radius():
    builder = GraphBuilder(radius=3.0, max_neighbors=12, grow_radius=True)
    (g,) = get_graphs([_far_pair()], builder, cache=GraphCache())
    assert g.radius > 3.0
    assert (g.neighbor_counts() >= 12).all()
    assert g.distances.max() <= g.radius + 1e-9


# ---------------------------------------------------------------- cache


def test_memory_cache_hits(nacl, diamond):
    builder = GraphBuilder(radius=6.0, max_neighbors=12)
    default_cache.clear()
    first = get_graphs([nacl, diamond], builder)
    hits = default_cache.hits
    second = get_graphs([nacl, diamond], builder)
    assert default_cache.hits == hits + 2
    assert all(a is b for a, b in zip(first, second))
    # same content, new object: keyed by content, so still a hit
    remade = Structure.from_dict(nacl.as_dict())
    (third,) = get_graphs([remade], builder)
    assert third is first[0]
    assert default_cache.hits == hits + 3
    # other parameters: a miss
    misses = default_cache.misses
    get_graphs([nacl], GraphBuilder(radius=6.0, max_neighbors=8))
    assert default_cache.misses == misses + 1
    default_cache.clear()


def graphs_equal(a, b):
    for name in ("atomic_numbers", "positions", "lattice", "center", "neighbor",
                 "distances", "offsets", "vectors"):
        if not np.array_equal(getattr(a, name), getattr(b, name)):
            return False
    return a.radius == b.radius


def test_disk_cache_roundtrip(tmp_path, nacl, diamond):
    builder = GraphBuilder(radius=6.0, max_neighbors=12)
    built = get_graphs([nacl, diamond], builder, cache=GraphCache(), cache_dir=str(tmp_path))
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 2
    fresh = GraphCache()
    loaded = get_graphs([nacl, diamond], builder, cache=fresh, cache_dir=str(tmp_path))
    assert fresh.misses == 0
    assert all(graphs_equal(a, b) for a, b in zip(built, loaded))
    assert all(a is not b for a, b in zip(built, loaded))


def test_symmetrize_is_part_of_the_cache_key(tmp_path, diamond):
    """Each symmetrization is its own graph, in memory and on disk; the default key is
    the one graphs were cached under before the option existed."""
    assert GraphBuilder().key() == ("v1", 8.0, 12, 1e-3, False)
    builders = [GraphBuilder(5.0, 4, symmetrize=m) for m in (None, "union", "both")]
    keys = {b.key() for b in builders}
    assert len(keys) == 3
    cache = GraphCache()
    wonky = Structure(Lattice.from_parameters(4.1, 4.3, 4.6, 85, 95, 100), ["Li", "O", "Fe"],
                      [[0, 0, 0], [0.5, 0.4, 0.3], [0.2, 0.7, 0.55]])
    graphs = [get_graphs([wonky], b, cache=cache, cache_dir=str(tmp_path))[0]
              for b in builders]
    assert cache.misses == 3 and len(cache) == 3
    n = [g.n_edges for g in graphs]
    assert n[0] < n[1] < n[2] == 2 * n[0]
    assert len({p.parent for p in tmp_path.rglob("*.npz")}) == 3
    fresh = GraphCache()
    again = [get_graphs([wonky], b, cache=fresh, cache_dir=str(tmp_path))[0] for b in builders]
    assert fresh.misses == 0
    assert all(graphs_equal(a, b) for a, b in zip(graphs, again))


def test_symmetrize_validation(nacl):
    with pytest.raises(ValueError, match="symmetrize"):
        GraphBuilder(symmetrize="all").validate()
    with pytest.raises(ValueError, match="symmetrize"):
        GraphBuilder(neighbor_mode="reference", symmetrize="both").validate()
    # all neighbours within the radius are already symmetric: nothing to add
    g = build_graph(nacl, radius=6.0, max_neighbors=None)
    assert build_graph(nacl, radius=6.0, max_neighbors=None, symmetrize="union").n_edges \
        == g.n_edges
    assert build_graph(nacl, radius=6.0, max_neighbors=None, symmetrize="both").n_edges \
        == 2 * g.n_edges


def test_parallel_equals_serial(nacl):
    rng = np.random.default_rng(0)
    base = Structure(Lattice.cubic(3.0), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structures = []
    for _ in range(80):
        cart = base.cart_coords + rng.normal(scale=0.05, size=(2, 3))
        structures.append(Structure(base.lattice, base.species, cart,
                                    coords_are_cartesian=True))
    builder = GraphBuilder(radius=5.0, max_neighbors=12)
    serial = get_graphs(structures, builder, n_jobs=1, cache=GraphCache())
    parallel = get_graphs(structures, builder, n_jobs=2, cache=GraphCache())
    assert len(parallel) == 80
    assert all(graphs_equal(a, b) for a, b in zip(serial, parallel))


def _perturbed(n, seed=0):
    rng = np.random.default_rng(seed)
    base = Structure(Lattice.cubic(3.0), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [Structure(base.lattice, base.species,
                      base.cart_coords + rng.normal(scale=0.05, size=(2, 3)),
                      coords_are_cartesian=True) for _ in range(n)]


@pytest.mark.parametrize("params", [
    {}, dict(max_neighbors=4), dict(max_neighbors=None, radius=5.0),
    dict(symmetrize="union"), dict(symmetrize="both", max_neighbors=6),
    dict(neighbor_mode="reference"), dict(radius=4.0, max_neighbors=12, grow_radius=True)])
def test_a_chunk_cut_in_one_pass_gives_each_structures_own_graph(params, monkeypatch):
    """Graphs built for a list (the cut of many structures in one pass, in
    sub-batches) equal build() of each structure alone, to the bit, whatever
    their sizes, and whichever need their radius grown."""
    from skcrystal.graphs import builder as B
    from skcrystal.graphs.cache import _build_chunk

    monkeypatch.setattr(B, "_BATCH", 3)
    nacl = Structure(Lattice.cubic(A_NACL), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    tri = Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 71, 83, 97),
                    ["Si", "O", "O"], [[0, 0, 0], [.3, .2, .1], [.6, .7, .55]])
    # 12 Å cell: 6 neighbours within 12 Å, so 4 Å must grow for max_neighbors=12
    sparse = Structure(Lattice.cubic(12.0), ["Cu", "Au"], [[0, 0, 0], [.5, .5, .5]])
    structures = _perturbed(4) + [nacl, tri, nacl.copy().make_supercell([1, 1, 2])]
    if params.get("grow_radius"):
        structures.insert(2, sparse)
    builder = GraphBuilder(**params).validate()
    items = list(enumerate(structures))
    built = _build_chunk(items, builder)
    assert len(built) == len(structures)
    for s, g in zip(structures, built):
        assert graphs_equal(g, builder.build(s)) and g.radius == builder.build(s).radius
    # a worker's chunk, as arrays, gives the same
    sent = _build_chunk([(i, B._structure_arrays(s)) for i, s in items], builder)
    assert all(graphs_equal(g, h) for g, h in zip(sent, built))


def test_files_cut_together_keep_each_files_own_error():
    """The files path cuts a chunk's graphs together: an item that fails (its
    arrays, its close-atom check, an isolated atom) gets its own error and
    the others the graphs build_arrays gives each alone."""
    builder = GraphBuilder(radius=6.0).validate()
    nacl = dict(numbers=[11, 17], frac_coords=[[0, 0, 0], [.5, .5, .5]],
                lattice=np.eye(3) * 5.64)
    lone = dict(numbers=[29], frac_coords=[[0, 0, 0]], lattice=np.eye(3) * 14.0,
                where="structure 2", formula="Cu")
    wrong_shape = dict(nacl, frac_coords=[[0, 0], [.5, .5]])

    def refuse(distances, radius):
        raise ValueError("refused by its own check")

    items = [nacl, wrong_shape, lone, dict(nacl, on_pairs=refuse), nacl]
    out = builder._build_arrays_many(items)
    assert [type(o).__name__ for o in out] == ["CrystalGraph", "ValueError", "ValueError",
                                               "ValueError", "CrystalGraph"]
    assert "structure 2 (Cu): atom 0" in str(out[2]) and "refused" in str(out[3])
    assert graphs_equal(out[0], builder.build_arrays(**nacl)) and graphs_equal(out[4], out[0])


def test_worker_chunks_travel_as_arrays_and_build_the_same_graphs():
    import pickle

    from skcrystal.graphs.cache import _build_chunk, _StructureChunk

    structures = _perturbed(6)
    # a lone atom in a 12 Å cell: no neighbour within 5 Å
    structures[3] = Structure(Lattice.cubic(12.0), ["Cu"], [[0, 0, 0]])
    builder = GraphBuilder(radius=5.0, max_neighbors=12).validate()
    items = list(enumerate(structures, start=10))
    sent = pickle.loads(pickle.dumps(_StructureChunk(items)))
    # a worker sees arrays, not Structures (their pickling cost more than the graph)
    assert all(isinstance(s, tuple) for _, s in sent.items)
    built = _build_chunk(sent, builder)
    assert built[3] is None  # the caller rebuilds it from the Structure, which names it
    # the graphs go back as one array per field, and arrive equal
    back = pickle.loads(pickle.dumps(built))
    assert back[3] is None and all(
        graphs_equal(g, h) for g, h in zip(back, built) if g is not None)
    for (i, s), g in zip(items, built):
        if g is not None:
            assert graphs_equal(g, builder.build(s, index=i))
    with pytest.raises(ValueError, match="structure 13 .*no neighbour within"):
        _build_chunk(items, builder)
    # a structure whose arrays cannot be read travels whole, between packed ones,
    # and its error names it
    disordered = structures[0].copy()
    disordered.replace(1, {"Cu": 0.5, "Au": 0.5})
    mixed = [(10, structures[0]), (11, disordered), (12, structures[1])]
    sent = pickle.loads(pickle.dumps(_StructureChunk(mixed)))
    assert [type(s).__name__ for _, s in sent.items] == ["tuple", "Structure", "tuple"]
    with pytest.raises(ValueError, match="structure 11 is disordered: site 1"):
        _build_chunk(sent, builder)


def test_parallel_names_the_structure_whose_graph_fails():
    structures = _perturbed(200, seed=1)
    structures[150] = Structure(Lattice.cubic(12.0), ["Cu"], [[0, 0, 0]])
    builder = GraphBuilder(radius=5.0, max_neighbors=12)
    for n_jobs in (1, 2):
        with pytest.raises(ValueError, match=r"^structure 150 \(Cu\): atom 0 \(Cu\) has no "
                                             "neighbour within"):
            get_graphs(structures, builder, n_jobs=n_jobs, cache=GraphCache())


def test_no_processes_are_nested_in_a_joblib_worker():
    from joblib import Parallel, delayed

    from skcrystal._parallel import shared_processes

    assert shared_processes(2)[0] == 2
    # a fit inside cross_val_score(n_jobs=2) builds its graphs in its own process
    assert Parallel(n_jobs=2)(delayed(shared_processes)(2) for _ in range(2)) == [(1, None)] * 2


# ---------------------------------------------------------------- batching


def test_collate_offsets(nacl):
    one = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])
    g1 = build_graph(one, radius=4.0, max_neighbors=None)  # 6 self images
    g2 = build_graph(nacl, radius=4.0, max_neighbors=None)
    batch = collate_graphs([g1, g2])
    assert batch.n_graphs == 2 and batch.n_nodes == 9
    assert batch.n_edges == g1.n_edges + g2.n_edges
    for t in (batch.edge_index, batch.atomic_numbers, batch.offsets, batch.node_graph,
              batch.edge_graph, batch.n_nodes_per_graph, batch.n_edges_per_graph):
        assert t.dtype == torch.int64
    assert batch.distances.dtype == torch.float32
    e1 = g1.n_edges
    np.testing.assert_array_equal(batch.edge_index[:, :e1].numpy(),
                                  np.stack([g1.center, g1.neighbor]))
    np.testing.assert_array_equal(batch.edge_index[:, e1:].numpy(),
                                  np.stack([g2.center, g2.neighbor]) + 1)
    np.testing.assert_array_equal(batch.node_graph.numpy(), [0] + [1] * 8)
    np.testing.assert_array_equal(batch.edge_graph.numpy(), [0] * e1 + [1] * g2.n_edges)
    np.testing.assert_array_equal(batch.n_nodes_per_graph.numpy(), [1, 8])
    np.testing.assert_allclose(batch.distances.numpy(),
                               np.concatenate([g1.distances, g2.distances]), rtol=1e-6)
    assert tuple(batch.lattice.shape) == (2, 3, 3)


# ---------------------------------------------------------------- the reference cut
def _sorted_cut(arrays, pairs, k, radius):
    """The reference CGCNN code's cut, one atom at a time: its pairs in search
    order, Python's stable ``sorted`` by distance, the first ``k``, padded
    with (atom 0, radius + 1, image 0)."""
    center, neighbor, images, dist = pairs
    rows = []
    for atom in range(len(arrays[0])):
        mine = [(float(dist[e]), int(neighbor[e]), tuple(np.round(images[e]).astype(int).tolist()))
                for e in np.flatnonzero(center == atom)]
        mine = sorted(mine, key=lambda t: t[0])[:k]
        mine += [(radius + 1.0, 0, (0, 0, 0))] * (k - len(mine))
        rows += [(atom, *t) for t in mine]
    return rows


def _rows(graph):
    return list(zip(graph.center.tolist(), graph.distances.tolist(), graph.neighbor.tolist(),
                    map(tuple, graph.offsets.tolist())))


@pytest.mark.parametrize("cells", [None, 64])
def test_reference_cut_of_a_batch_is_each_structures_sorted_cut(cells, monkeypatch):
    """The batched cut (one partition and one sort for all structures) keeps,
    for every structure, the pairs the reference's per-atom ``sorted`` keeps,
    in its order: ties cut in search order, padding where an atom has fewer
    than k pairs (also none), a batch cut in halves, pairs not grouped by centre."""
    from skcrystal.graphs import builder as B

    if cells is not None:
        monkeypatch.setattr(B, "_TABLE_CELLS", cells)
    nacl = Structure(Lattice.cubic(A_NACL), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]])
    lone = Structure(Lattice.cubic(9.0), ["Fe", "O"], [[0, 0, 0], [.1, .1, .1]])
    tri = Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 71, 83, 97),
                    ["Si", "O", "O"], [[0, 0, 0], [.3, .2, .1], [.6, .7, .55]])
    cases = [(nacl, 8.0), (cscl, 8.0), (lone, 3.0), (lone, 1.0), (tri, 6.0), (cscl, 4.0)]
    for k in (12, 5):
        arrays_list, pairs_list, expected = [], [], []
        for s, radius in cases:
            arrays = B._structure_arrays(s)
            pairs = B._Pairs.search([arrays], radius)
            pairs = (pairs.center, pairs.neighbor, pairs.images, pairs.dist)
            expected.append(_sorted_cut(arrays, pairs, k, radius))
            arrays_list.append(arrays)
            pairs_list.append(pairs)
        # the search lists pairs atom by atom; the cut must not depend on it
        # beyond the order of each atom's own pairs
        c = pairs_list[0][0]
        swap = np.argsort(-c, kind="stable")
        pairs_list[0] = tuple(p[swap] for p in pairs_list[0])
        # one radius per call: structures of equal radius batched together
        for radius in sorted({r for _, r in cases}):
            pick = [j for j, (_, r) in enumerate(cases) if r == radius]
            picked = [arrays_list[j] for j in pick]
            pairs = B._Pairs.concat(picked, [pairs_list[j] for j in pick])
            graphs = B._reference_graphs(picked, pairs, k, radius)
            for j, graph in zip(pick, graphs):
                assert _rows(graph) == expected[j], (cases[j][0].formula, radius, k)
                assert graph.n_edges == k * len(cases[j][0])

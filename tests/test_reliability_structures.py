"""Structures that are not physical crystals are rejected, naming the item.

Every case here used to crash (a spglib segfault), answer NaN for a whole
training set, grow a radius until MemoryError or raise a bare
ZeroDivisionError. Calls that could segfault run in a subprocess.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from pymatgen.core import IStructure, Lattice, Structure

from skcrystal._validation import (MIN_INTERATOMIC_DISTANCE, MIN_VOLUME_PER_ATOM,
                                   check_structures, check_targets)
from skcrystal.graphs import GraphBuilder, build_graph
from skcrystal.graphs.builder import MAX_RADIUS


def _nacl(a=5.64):
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _bad_cases():
    """name -> (structure, regex the error must match after 'X[2] (formula')."""
    nan_lattice = np.diag([5.0, 5.0, np.nan])
    return {
        "nan_coords": (Structure(Lattice.cubic(5), ["Na", "Cl"],
                                 [[0, 0, 0], [0.5, np.nan, 0.5]]),
                       r"non-finite coordinates .* site 1"),
        "inf_coords": (Structure(Lattice.cubic(5), ["Na", "Cl"],
                                 [[0, 0, 0], [0.5, np.inf, 0.5]]),
                       r"non-finite coordinates .* site 1"),
        "nan_lattice": (Structure(Lattice(nan_lattice), ["Na", "Cl"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]]),
                        r"non-finite lattice"),
        "singular": (Structure(Lattice([[3, 0, 0], [6, 0, 0], [0, 0, 3]]), ["Na", "Cl"],
                               [[0, 0, 0], [0.5, 0.5, 0.5]]),
                     r"singular or collapsed lattice: 0 Å\^3 per atom"),
        "collapsed": (Structure(Lattice.cubic(0.9), ["Na"], [[0, 0, 0]]),
                      r"0.729 Å\^3 per atom"),
        "short_vector": (Structure(Lattice.orthorhombic(0.3, 6, 6), ["Na"], [[0, 0, 0]]),
                         r"lattice vector a is 0.3 Å long"),
        "coplanar": (Structure(Lattice([[50, 0, 0], [50, 1e-3, 0], [0, 0, 50]]),
                               ["Na"], [[0, 0, 0]]),
                     r"nearly coplanar lattice vectors"),
        # sheared cell: a - b is 0.3 Å, so the atom overlaps its own image
        "own_image": (Structure(Lattice([[10, 0, 0], [10, 0.3, 0], [0, 0, 10]]),
                                ["Na"], [[0, 0, 0]]),
                      r"site 0 \(Na\) is 0.300 Å from its own periodic image"),
        "overlap": (Structure(Lattice.cubic(5), ["Na", "Cl", "Cl"],
                              [[0, 0, 0], [0.5, 0.5, 0.5], [0.52, 0.5, 0.5]]),
                    r"sites 1 and 2 \(Cl, Cl\) are 0.100 Å apart"),
        # across the periodic boundary: 0.99 and 0.01 are 0.100 Å apart
        "overlap_image": (Structure(Lattice.cubic(5), ["Na", "Cl", "Cl"],
                                    [[0, 0, 0], [0.5, 0.5, 0.99], [0.5, 0.5, 0.01]]),
                          r"sites 1 and 2 \(Cl, Cl\) are 0.100 Å apart"),
        "dummy": (Structure(Lattice.cubic(5), ["X0+", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                  r"dummy species X0\+ \(site 0\)"),
        # unwrapped coordinates 300 cells away: a neighbour search over the
        # whole span exhausted memory
        "far_site": (Structure(Lattice.cubic(5), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 300.0]],
                               to_unit_cell=False),
                     r"spans 1500 Å .*Site 1 is at fractional coordinates \[0.5, 0.5, 300.0\]"),
        "huge_cell": (Structure(Lattice.cubic(3000), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                      r"spans 3000 Å"),
    }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_non_physical_structure_named_by_index_formula_and_file(case):
    bad, msg = _bad_cases()[case]
    formula = bad.composition.reduced_formula
    X = [_nacl(), _nacl(6.0), bad]
    with pytest.raises(ValueError, match=rf"^X\[2\] \({formula}\b.*{msg}"):
        check_structures(X)
    files = ["a/POSCAR_0", "a/POSCAR_1", "a/POSCAR_2"]
    with pytest.raises(ValueError, match=rf"X\[2\] \({formula}, file 'a/POSCAR_2'\)"):
        check_structures(X, sources=files)


def test_the_first_bad_structure_is_named_whatever_the_others_hold():
    """check_structures clears most structures in one batched pass and checks
    the rest one by one, in order: the error is the first bad structure's,
    as a loop over the structures would raise it."""
    bad = _bad_cases()
    for first, second in (("overlap", "nan_lattice"), ("coplanar", "dummy"),
                          ("own_image", "collapsed"), ("far_site", "overlap")):
        X = [_nacl(), bad[first][0], _nacl(6.0), bad[second][0]]
        with pytest.raises(ValueError, match=rf"^X\[1\] .*{bad[first][1]}"):
            check_structures(X)
    disordered = _nacl()
    disordered.replace(1, {"Cl": 0.5, "Br": 0.5})
    with pytest.raises(ValueError, match=r"^X\[1\] .*disordered"):
        check_structures([_nacl(), disordered, bad["overlap"][0]])
    sodium = Structure(Lattice.cubic(4.2), ["Na", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    close = Structure(Lattice.cubic(5), ["Na", "Na"], [[0, 0, 0], [0.02, 0, 0]])
    with pytest.raises(ValueError, match=r"^X\[1\] .*0.100 Å apart"):
        check_structures([sodium, close, _nacl()], supported_elements={11})
    with pytest.raises(ValueError, match=r"^X\[2\] .*no atom features: Cl"):
        check_structures([sodium, sodium, _nacl(), close], supported_elements={11})


def test_poscar_with_duplicated_line_names_the_two_sites(tmp_path):
    poscar = textwrap.dedent("""\
        NaCl
        1.0
        5.64 0 0
        0 5.64 0
        0 0 5.64
        Na Cl
        3 1
        direct
        0.0 0.0 0.0
        0.5 0.5 0.0
        0.5 0.5 0.0
        0.5 0.5 0.5
        """)
    path = tmp_path / "POSCAR_dup"
    path.write_text(poscar)
    s = Structure.from_file(path)
    with pytest.raises(ValueError, match=r"X\[0\] \(Na3Cl, file '.*POSCAR_dup'\): sites 1 "
                                         r"and 2 \(Na, Na\) are 0.000 Å apart.*duplicated"):
        check_structures([s], sources=[str(path)])


def test_lattice_guard_of_a_chunk_agrees_with_the_guard_of_one():
    """The graph builder's guard checks a chunk's lattices in a few numpy
    calls: it passes exactly the structures the one-at-a-time check passes,
    each threshold just met and just missed, in a chunk and alone."""
    from skcrystal._validation import MAX_SPAN, _check_lattice_arrays, _lattices_pass
    from skcrystal.graphs.builder import _structure_arrays

    slab = Lattice(np.diag([5.0, 5.0, 0.3]), pbc=(True, True, False))
    bad = _bad_cases()
    # the overlap and species checks are not the lattice guard's
    passing = {"own_image", "overlap", "overlap_image", "dummy"}
    cases = [bad[name][0] for name in sorted(bad)] + [
        _nacl(), _nacl(6.0),
        Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 71, 83, 97), ["Si", "O"],
                  [[0, 0, 0], [.3, .2, .1]]),
        Structure(Lattice.cubic(1.0), ["H"], [[0, 0, 0]]),  # 1 Å^3 per atom: passes
        Structure(Lattice.cubic(0.99), ["H"], [[0, 0, 0]]),
        Structure(Lattice.orthorhombic(MIN_INTERATOMIC_DISTANCE, 6, 6), ["H"], [[0, 0, 0]]),
        Structure(Lattice.orthorhombic(0.49, 6, 6), ["H"], [[0, 0, 0]]),
        Structure(slab, ["Na"], [[0, 0, 0]]),  # short, but not periodic along c
        Structure(Lattice.cubic(MAX_SPAN - 1), ["Na"], [[0, 0, 0]]),
        Structure(Lattice.cubic(5), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, -MAX_SPAN / 5]],
                  to_unit_cell=False),
    ]
    with np.errstate(invalid="ignore"):  # NaN coordinates
        arrays = [_structure_arrays(s) for s in cases]
    expected = []
    for a in arrays:
        try:
            _check_lattice_arrays(a[3], a[1], a[4], "")
        except ValueError:
            expected.append(False)
        else:
            expected.append(True)
    assert expected == [name in passing for name in sorted(bad)] + [True] * 4 + [
        False, True, False, True, True, False]
    assert _lattices_pass(arrays).tolist() == expected
    assert [bool(_lattices_pass([a])[0]) for a in arrays] == expected


def test_thresholds_are_physical():
    # the densest ordinary solids pass; the minimum separation is below any bond
    diamond = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.567), ["C"], [[0, 0, 0]])
    assert diamond.volume / len(diamond) > 5 * MIN_VOLUME_PER_ATOM
    h2 = Structure(Lattice.cubic(4), ["H", "H"], [[0, 0, 0], [0.74 / 4, 0, 0]])
    assert check_structures([diamond, h2])[1] is h2
    assert MIN_INTERATOMIC_DISTANCE < 0.74
    # just above and just below the separation threshold
    near = Structure(Lattice.cubic(5), ["H", "H"], [[0, 0, 0], [0.51 / 5, 0, 0]])
    check_structures([near])
    near = Structure(Lattice.cubic(5), ["H", "H"], [[0, 0, 0], [0.49 / 5, 0, 0]])
    with pytest.raises(ValueError, match="0.490 Å apart"):
        check_structures([near])


def test_slab_rejected_istructure_accepted():
    from pymatgen.core.surface import SlabGenerator
    slab = SlabGenerator(_nacl(), (1, 0, 0), 5, 5).get_slab()
    with pytest.raises(ValueError, match=r"X\[1\] \(NaCl\) is a pymatgen Slab.*"
                                         r"Structure.from_sites\(slab\)"):
        check_structures([_nacl(), slab])
    # the way out the message gives works
    assert len(check_structures([Structure.from_sites(slab)])[0]) == len(slab)
    # an immutable structure is a periodic crystal like any other
    frozen = IStructure.from_sites(_nacl())
    out = check_structures([frozen])[0]
    assert isinstance(out, Structure) and out == _nacl()


def test_empty_input_and_ragged_targets():
    from tests._estimators import make
    with pytest.raises(ValueError, match="is empty"):
        make("cgcnn").fit([], [])
    with pytest.raises(ValueError, match=r"y is ragged: row 1 has 1 value but row 0 has "
                                         r"2 values"):
        check_targets([[1.0, 2.0], [3.0], [4.0, 5.0]])
    with pytest.raises(ValueError, match=r"y is ragged: row 2 has 2 values but row 0 has "
                                         "a scalar"):
        check_targets([1.0, 2.0, [3.0, 4.0]])
    with pytest.raises(ValueError, match="ragged"):
        make("cgcnn").fit([_nacl(), _nacl(6.0)], [[1.0, 2.0], [3.0]])


def test_overlapping_atoms_rejected_by_every_model_before_training():
    """Used to give NaN for every prediction (0/0 bond angle) in ALIGNN/CrysToGraph."""
    from tests._estimators import NAMES, make
    bad = _bad_cases()["overlap"][0]
    X = [_nacl(5.5 + 0.1 * i) for i in range(4)] + [bad]
    for name in NAMES:
        with pytest.raises(ValueError, match=r"X\[4\] \(NaCl2\): sites 1 and 2"):
            make(name).fit(X, np.arange(5.0))


def test_direct_overlap_check_agrees_with_the_neighbour_search(monkeypatch):
    """Small periodic cells are first checked by direct distances to the 27
    nearest cells: on random cells (skewed, thin, unwrapped coordinates, a
    pair 0.3-0.7 Å apart across cell boundaries or not) the verdict is the
    neighbour search's."""
    from skcrystal import _validation as V

    def verdict(m, f):
        try:
            V._check_overlaps_arrays(m, f, np.ones(3, bool), "x", str)
            return "clear"
        except ValueError as exc:
            return str(exc)

    rng = np.random.default_rng(0)
    cases = []
    while len(cases) < 400:
        n = int(rng.integers(1, V._DIRECT_OVERLAP_SITES + 1))
        m = np.diag(rng.uniform(0.6, 8, 3)) + rng.normal(0, rng.choice([0.1, 1, 3]), (3, 3))
        if abs(np.linalg.det(m)) < 0.5:
            continue
        f = rng.uniform(-1.5, 2.5, (n, 3))
        if n > 1 and rng.random() < 0.5:
            d = rng.normal(0, 1, 3)
            d *= rng.uniform(0.3, 0.7) / np.linalg.norm(d)
            f[1] = f[0] + d @ np.linalg.inv(m) + rng.integers(-1, 2, 3)
        cases.append((m, f))
    direct = [verdict(m, f) for m, f in cases]
    # the direct check cleared many cells itself (not all: thin cells, close pairs)
    cleared = sum(V._no_close_pair(m, f - np.floor(f), np.ones(3, bool)) for m, f in cases)
    assert 50 < cleared < direct.count("clear")
    # the same direct check for all the cells at once (check_structures' first
    # pass) clears exactly the cells it clears one at a time
    arrays = [(None, f, f @ m, m, np.ones(3, bool)) for m, f in cases]
    together = V._no_close_pairs(arrays)
    assert together.tolist() == [
        V._no_close_pair(m, f - np.floor(f), np.ones(3, bool)) for m, f in cases]
    # and check_structures gives each cell the neighbour search's verdict
    lattice_ok = V._lattices_pass(arrays)
    for j in np.flatnonzero(lattice_ok)[:120].tolist():
        s = Structure(Lattice(cases[j][0]), ["Na"] * len(cases[j][1]), cases[j][1],
                      to_unit_cell=False)
        if direct[j] == "clear":
            V.check_structures([s])
        else:
            with pytest.raises(ValueError, match=r"X\[0\] .* Å (apart|from its own)"):
                V.check_structures([s])
    monkeypatch.setattr(V, "_no_close_pair", lambda *a: False)
    assert direct == [verdict(m, f) for m, f in cases]


def test_builder_radius_bound_and_no_zero_division():
    with pytest.raises(ValueError, match="radius must be at most 30 Å, got 300"):
        GraphBuilder(radius=300).validate()
    # grown up to the bound, not to MemoryError, and the error names the atom
    lonely = Structure(Lattice.cubic(60.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    builder = GraphBuilder(radius=8, max_neighbors=12, grow_radius=True).validate()
    with pytest.raises(ValueError, match=r"structure 7 \(NaCl\): atom 0 \(Na\) has 0 "
                                         r"neighbour\(s\) within 30 Å"):
        builder.build(lonely, index=7)
    # growth stops exactly at the bound: 8, 12, 18, 27, 30
    sparse = Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    graph = builder.build(sparse)
    assert graph.radius == MAX_RADIUS
    # 8 Cl at 26 Å and 6 Na images at 30 Å
    np.testing.assert_array_equal(graph.neighbor_counts(), [14, 14])
    singular = _bad_cases()["singular"][0]
    with pytest.raises(ValueError, match=r"structure \(NaCl\) has a singular"):
        build_graph(singular)
    with pytest.raises(ValueError, match=r"structure 4 \(NaCl\) has a singular"):
        GraphBuilder().validate().build(singular, index=4)
    # build() checks the parameters itself (a builder used without validate())
    # and its argument
    for params, message in [({"max_neighbors": 0}, "max_neighbors must be a positive"),
                            ({"radius": "8"}, "radius must be a positive number, got '8'"),
                            ({"neighbor_mode": "nearest"}, "neighbor_mode must be one of")]:
        with pytest.raises(ValueError, match=message):
            GraphBuilder(**params).build(sparse)
    with pytest.raises(TypeError, match="structure is a NoneType, not a pymatgen Structure"):
        build_graph(None)


def test_wrapping_fixes_unwrapped_coordinates():
    far, _ = _bad_cases()["far_site"]
    (fixed,) = check_structures([Structure.from_sites(far, to_unit_cell=True)])
    np.testing.assert_allclose(fixed.frac_coords[1], [0.5, 0.5, 0.0], atol=1e-9)


_SPARSE = """
import resource, time
import numpy as np
from pymatgen.core import Lattice, Structure
from skcrystal._validation import check_structures
# a large sparse cell: the 0.5 Å overlap search binned it into ~10^10 cubes
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
rng = np.random.default_rng(0)
s = Structure(Lattice.cubic(400.0), ["Na"] * 1000, rng.uniform(0, 1, (1000, 3)))
t = time.perf_counter()
check_structures([s])
print(round(time.perf_counter() - t, 3))
"""


def test_large_sparse_cell_checked_in_bounded_memory():
    import os
    result = subprocess.run([sys.executable, "-c", _SPARSE], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) < 5.0


_CHILD = """
import warnings
import numpy as np
from pymatgen.core import Lattice, Structure
warnings.simplefilter("ignore")
good = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
bad = {
    "nan_coords": Structure(Lattice.cubic(5), ["Na", "Cl"], [[0, 0, 0], [0.5, np.nan, 0.5]]),
    "nan_lattice": Structure(Lattice(np.diag([5.0, 5.0, np.nan])), ["Na", "Cl"],
                             [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "singular": Structure(Lattice([[3, 0, 0], [6, 0, 0], [0, 0, 3]]), ["Na", "Cl"],
                          [[0, 0, 0], [0.5, 0.5, 0.5]]),
}

def bank(b):
    from skcrystal.descriptors import DescriptorBank
    DescriptorBank().fit_transform([good, b])

def probe(b):
    from skcrystal.baselines import CompositionBaseline
    from skcrystal.probes import probe_learnability
    probe_learnability(CompositionBaseline(), [good, b], cv=2, baseline=None,
                       classifier=None)

def hybrid(b):
    from skcrystal import CGCNNRegressor
    from skcrystal.descriptors import DescriptorBank
    CGCNNRegressor(max_epochs=1, descriptors=DescriptorBank(["density"])).fit(
        [good, b], [1.0, 2.0])

for call in (bank, probe, hybrid):
    for name, b in bad.items():
        try:
            call(b)
        except ValueError as exc:
            print(call.__name__, name, exc, sep="|", flush=True)
        else:
            print(call.__name__, name, "no error", sep="|", flush=True)
# the uncaught error ends the process cleanly with status 1
bank(bad["singular"])
"""


def test_descriptor_paths_exit_cleanly_instead_of_segfaulting():
    """spglib segfaulted on these lattices, killing the process (status -11).

    DescriptorBank, probe_learnability and a hybrid model (graph +
    descriptors) on each bad structure, in one child process.
    """
    import os
    result = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = [line.split("|") for line in result.stdout.strip().splitlines()]
    assert [(c, n) for c, n, _ in lines] == [
        (c, n) for c in ("bank", "probe", "hybrid")
        for n in ("nan_coords", "nan_lattice", "singular")]
    for call, name, msg in lines:
        assert msg.startswith("X[1] (NaCl)"), (call, name, msg)
        assert {"nan_coords": "non-finite coordinates", "nan_lattice": "non-finite lattice",
                "singular": "singular"}[name] in msg, (call, name, msg)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: X[1] (NaCl) has a singular"), last


@pytest.mark.parametrize("call, message", [
    ("skcrystal.graphs:line_graph", r"graph must be a CrystalGraph \(.*\)"),
    ("skcrystal.graphs:positional_encodings", r"graph must be a CrystalGraph \(.*\)"),
    ("skcrystal.graphs:reverse_edges", r"graph must be a CrystalGraph \(.*\)"),
    ("skcrystal.transfer:freeze_parameters", r"model must be a torch.nn.Module \(.*\)"),
    ("skcrystal.probes:classifier_counterpart", "estimator must be a scikit-learn regressor"),
])
def test_lower_level_functions_name_a_wrong_argument(call, message):
    """None where a graph, a module or an estimator belongs: a TypeError naming the
    argument, not an AttributeError from inside."""
    import importlib
    module, name = call.split(":")
    with pytest.raises(TypeError, match=f"{message}, got NoneType"):
        getattr(importlib.import_module(module), name)(None)


def test_lower_level_functions_name_a_wrong_value(nacl, tmp_path):
    from skcrystal.graphs import GraphStore, build_graph, positional_encodings
    from skcrystal.graphs.positional import positional_extra
    g = build_graph(nacl)
    for kw in ({"n_eigvec": -1}, {"n_rw": 2.5}, {"n_eigvec": True}):
        name = next(iter(kw))
        with pytest.raises(ValueError, match=f"{name} must be a non-negative integer"):
            positional_encodings(g, **kw)
        with pytest.raises(ValueError, match=f"{name} must be a non-negative integer"):
            positional_extra(**kw)
    assert positional_encodings(g, n_eigvec=0)["pe_lap"].shape == (len(nacl), 0)
    a_file = tmp_path / "store.txt"
    a_file.write_text("")
    with pytest.raises(NotADirectoryError, match="store.txt is a file, not a graph store"):
        GraphStore(a_file)
    from skcrystal.graphs import GraphBuilder, collate_graphs, get_graphs, line_graph
    from skcrystal.graphs.line_graph import line_graph_extra
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match=f"max_triplets must be a positive integer, got "
                                             f"{bad}"):
            line_graph(g, max_triplets=bad)
        with pytest.raises(ValueError, match="max_triplets must be a positive integer"):
            line_graph_extra(max_triplets=bad)
    with pytest.raises(TypeError, match="graphs\\[1\\] is a NoneType, not a CrystalGraph"):
        collate_graphs([g, None])
    with pytest.raises(ValueError, match="n_jobs must be None or a non-zero integer"):
        get_graphs([nacl], GraphBuilder(), n_jobs="two")
    from skcrystal.graphs import LazyStructures
    store = GraphStore(tmp_path / "store")
    store.add_structures([nacl])
    with pytest.raises(TypeError, match="builder must be a GraphBuilder, got dict"):
        store.build_graphs({"radius": 8.0})
    with pytest.raises(TypeError, match="builder must be a GraphBuilder, got dict"):
        store.graph(0, {"radius": 8.0})
    with pytest.raises(TypeError, match="source must be a GraphStore, .* got int"):
        LazyStructures(3)
    from skcrystal.graphs import structure_key
    for bad in (None, "x", [nacl]):
        with pytest.raises(TypeError, match="structure must be a pymatgen Structure, got"):
            structure_key(bad)


def test_get_graphs_names_a_wrong_builder(nacl):
    from skcrystal.graphs import get_graphs
    with pytest.raises(TypeError, match="builder must be a GraphBuilder, got dict"):
        get_graphs([nacl], {"radius": 8.0})

"""CGCNN one-hot atom features: hand-checked vectors, layout, reference table."""
import json
import warnings

import numpy as np
import pytest

from skcrystal.atom_features import (
    CGCNN_BLOCKS, atom_feature_table, feature_names, load_atom_init,
    table_elements)

from conftest import shared_path

SIZES = [18, 9, 10, 10, 12, 10, 10, 4, 10]
STARTS = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
BLOCK_NAMES = [b[0] for b in CGCNN_BLOCKS]


def one_hot(indices):
    """93-vector with a 1 at ``indices[b]`` inside block b (None: block empty)."""
    v = np.zeros(sum(SIZES), dtype=np.float32)
    for start, index in zip(STARTS, indices):
        if index is not None:
            v[start + index] = 1.0
    return v


# pymatgen values (stated so the bins below can be checked by hand), and the
# expected index inside each block. Bins: index = floor((v - lo) / (hi - lo) * 10),
# clipped to 0..9; EN 0.5-4.0 (width 0.35), radius 25-250 pm (22.5),
# ln IE 1.3-3.3 (0.2), EA -3-3.7 eV (0.67), ln V 1.5-4.3 (0.28).
HAND = {
    # O: group 16, period 2, X 3.44 -> 8.4, r 66 pm -> 1.8, valence 16-10=6,
    # IE 13.618 eV ln 2.611 -> 6.56, EA 1.461 -> 6.66, p, V 17.36 ln 2.854 -> 4.84
    "O": ((3.44, 66, 13.618, 1.461, 17.36), [15, 1, 8, 1, 5, 6, 6, 1, 4]),
    # Na: group 1, period 3, X 0.93 -> 1.23, r 166 -> 6.27, valence 1,
    # IE 5.139 ln 1.637 -> 1.68, EA 0.548 -> 5.30, s, V 23.78 ln 3.169 -> 5.96
    "Na": ((0.93, 166, 5.139, 0.548, 23.78), [0, 2, 1, 6, 0, 1, 5, 0, 5]),
    # Fe: group 8, period 4, X 1.83 -> 3.8, r 142 -> 5.2, valence 8,
    # IE 7.902 ln 2.067 -> 3.84, EA 0.153 -> 4.71, d, V 7.09 ln 1.959 -> 1.64
    "Fe": ((1.83, 142, 7.902, 0.153, 7.09), [7, 3, 3, 5, 7, 3, 4, 2, 1]),
    # La: lanthanide -> period 8, pymatgen group 3, X 1.10 -> 1.71, r 207 -> 8.09,
    # valence 3, IE 5.577 ln 1.719 -> 2.09, EA 0.558 -> 5.31, f (pymatgen),
    # V 22.39 ln 3.109 -> 5.75
    "La": ((1.10, 207, 5.577, 0.558, 22.39), [2, 7, 1, 8, 2, 2, 5, 3, 5]),
    # U: actinide -> period 9, group 3, X 1.38 -> 2.51, r 196 -> 7.6, valence 3,
    # IE 6.194 ln 1.824 -> 2.62, EA 0.315 -> 4.95, f, V 12.49 ln 2.525 -> 3.66
    "U": ((1.38, 196, 6.194, 0.315, 12.49), [2, 8, 2, 7, 2, 2, 4, 3, 3]),
}


@pytest.fixture(scope="module")
def table():
    return atom_feature_table()


def _pymatgen_values(symbol):
    from pymatgen.core import Element
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    el = Element(symbol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (el.X, 100 * CovalentRadius.radius[symbol], el.ionization_energies[0],
                el.electron_affinity, float(el.molar_volume))


@pytest.mark.parametrize("symbol", sorted(HAND))
def test_hand_checked_vectors(table, symbol):
    from pymatgen.core import Element
    values, indices = HAND[symbol]
    # the data the hand computation used is what pymatgen ships
    np.testing.assert_allclose(_pymatgen_values(symbol), values, rtol=2e-3)
    np.testing.assert_array_equal(table[Element(symbol).Z], one_hot(indices))


def test_shape_names_and_dtype(table):
    assert table.dtype == np.float32
    assert table.shape == (119, 93)
    names = feature_names()
    assert len(names) == 93 and len(set(names)) == 93
    assert names[:2] == ["group_1", "group_2"] and names[17] == "group_18"
    assert names[18] == "period_1" and names[26] == "period_9"
    assert names[-14:-10] == ["block_s", "block_p", "block_d", "block_f"]
    assert names[-1] == "atomic_volume_9"
    assert np.isnan(table[0]).all()


def test_each_block_is_one_hot_or_missing(table):
    zs = sorted(table_elements(table))
    for name, start, size in zip(BLOCK_NAMES, STARTS, SIZES):
        sums = table[zs, start:start + size].sum(axis=1)
        if name in ("group", "period", "valence", "block", "ionization_energy"):
            assert (sums == 1).all(), name
        else:  # missing data leaves the block at zero
            assert set(np.unique(sums)) <= {0.0, 1.0}, name
    # at most two blocks are empty for a supported element
    block_sums = np.add.reduceat(table[zs], STARTS, axis=1)
    assert (block_sums == 0).sum(axis=1).max() <= 2


def test_supported_covers_real_data(table):
    supported = table_elements(table)
    assert supported == frozenset(range(1, 104))
    assert np.isnan(table[104:]).all()


def test_missing_data_is_an_empty_block(table):
    en = slice(STARTS[2], STARTS[2] + 10)
    radius = slice(STARTS[3], STARTS[3] + 10)
    volume = slice(STARTS[8], STARTS[8] + 10)
    for z in (2, 10, 18):  # no Pauling electronegativity for He, Ne, Ar
        assert table[z, en].sum() == 0
    assert table[100, radius].sum() == 0 and table[100, volume].sum() == 0  # Fm
    # He: s block (1s2) and 2 valence electrons, not pymatgen's p / group 18 - 10
    assert feature_names()[int(np.flatnonzero(table[2, STARTS[7]:STARTS[7] + 4])[0]) + STARTS[7]] == "block_s"
    assert table[2, STARTS[4] + 1] == 1


def test_out_of_range_values_clip_to_end_bins(table):
    radius = slice(STARTS[3], STARTS[3] + 10)
    assert table[87, radius][9] == 1  # Fr: 260 pm > 250 pm
    en = slice(STARTS[2], STARTS[2] + 10)
    assert table[9, en][9] == 1  # F: 3.98, last bin
    ie = slice(STARTS[5], STARTS[5] + 10)
    assert table[2, ie][9] == 1  # He: ln 24.59 = 3.20


def test_cached_and_copied():
    a = atom_feature_table()
    a[1] = 0
    b = atom_feature_table()
    assert np.isfinite(b[1]).all() and b[1].sum() == 9
    assert b.flags.writeable


def test_other_kinds(tmp_path):
    data = {"1": [0.0, 1.0], "8": [1.0, 0.0]}
    path = tmp_path / "atom_init.json"
    path.write_text(json.dumps(data))
    for kind in (str(path), path):
        t = atom_feature_table(kind)
        assert t.shape == (9, 2)
        assert table_elements(t) == {1, 8}
        np.testing.assert_array_equal(t[8], [1, 0])
    np.testing.assert_array_equal(load_atom_init(path), atom_feature_table(str(path)))
    t = atom_feature_table({1: [0.5, 0.5], 3: [1, 2]})
    assert t.shape == (4, 2) and table_elements(t) == {1, 3}
    arr = np.ones((5, 3))
    t = atom_feature_table(arr)
    assert t.dtype == np.float32 and table_elements(t) == {1, 2, 3, 4}
    assert feature_names(arr) == ["feature_0", "feature_1", "feature_2"]


def test_bad_kinds(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        atom_feature_table("magpie")
    with pytest.raises(TypeError, match="kind"):
        atom_feature_table(3)
    with pytest.raises(ValueError, match="different lengths"):
        atom_feature_table({1: [0.0], 2: [0.0, 1.0]})
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json"):
        atom_feature_table(str(bad))
    with pytest.raises(ValueError, match="is a folder; give its atom_init.json"):
        atom_feature_table(str(tmp_path))


def _categories(row, sizes, shift):
    out, start = [], 0
    for size, s in zip(sizes, shift):
        nz = np.flatnonzero(row[start:start + size])
        out.append(None if len(nz) == 0 else int(nz[0]) + s)
        start += size
    return out


def test_agreement_with_reference_atom_init(table):
    """Per-block agreement with the reference CGCNN atom_init.json (Z = 1..100).

    The reference's group block has 19 dims (index 0 = no group, the f series)
    and its period block 7; the other blocks line up. The thresholds are the
    measured counts (see the module docstring), so a change of pymatgen data
    or of our bins shows up here.
    """
    ref = load_atom_init(shared_path("cgcnn_sample", "atom_init.json"))
    assert ref.shape == (101, 92)
    assert table_elements(ref) == frozenset(range(1, 101))
    ref_sizes = [19, 7, 10, 10, 12, 10, 10, 4, 10]
    # ours: group/period index 0 means 1; theirs: group index is the group
    ours_shift = [1, 1, 0, 0, 0, 0, 0, 0, 0]
    ref_shift = [0, 1, 0, 0, 0, 0, 0, 0, 0]
    agree = np.zeros(9, dtype=int)
    whole = 0
    for z in range(1, 101):
        a = _categories(table[z], SIZES, ours_shift)
        b = _categories(ref[z], ref_sizes, ref_shift)
        same = [x == y for x, y in zip(a, b)]
        agree += same
        whole += all(same)
    measured = dict(zip(BLOCK_NAMES, agree.tolist()))
    expected = {"group": 74, "period": 73, "electronegativity": 80,
                "covalent_radius": 42, "valence": 73, "ionization_energy": 100,
                "electron_affinity": 62, "block": 100, "atomic_volume": 80}
    for name, count in expected.items():
        assert measured[name] >= count, (name, measured)
    assert whole >= 20
    # the f-series are exactly the group/period disagreements
    f_series = [z for z in range(1, 101) if 57 <= z <= 70 or 89 <= z <= 100]
    for z in f_series:
        assert _categories(ref[z], ref_sizes, ref_shift)[0] == 0
        assert _categories(table[z], SIZES, ours_shift)[0] == 3


def test_learnable_embedding_warns_for_elements_it_never_trained(tmp_path):
    """atom_features="embedding" keeps random rows for elements no training structure
    had: predicting with them warns, naming the structures and elements; a fixed table
    (every element has features) does not warn."""
    from pymatgen.core import Lattice, Structure

    from skcrystal.estimators import CGCNNRegressor

    def rocksalt(a, b, d):
        return Structure(Lattice.cubic(d), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])

    train = [rocksalt("Na", "Cl", 5.6 + 0.05 * i) for i in range(6)]
    y = np.arange(6.0)
    small = dict(max_epochs=1, batch_size=2, random_state=0, module__hidden=8,
                 module__n_conv=1, module__h_fea_len=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the batch norms' few steps
        est = CGCNNRegressor(module__atom_features="embedding", **small).fit(train, y)
        fixed = CGCNNRegressor(**small).fit(train, y)
    assert est.trained_elements_ == (11, 17)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict(train[:2])  # trained elements only
        fixed.predict([rocksalt("U", "Xe", 6.0)])
    with pytest.warns(UserWarning, match=r"1 structure\(s\) have elements no training "
                                         r"structure had.*X\[1\] \(KCl\): K$"):
        est.predict([train[0], rocksalt("K", "Cl", 6.3)])
    # the note survives saving the state, and partial_fit adds the elements it trains on
    est.save_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "s.json")
    fresh = CGCNNRegressor(module__atom_features="embedding", **small).initialize()
    fresh.load_params(f_params=tmp_path / "w.pt", f_state=tmp_path / "s.json")
    assert fresh.trained_elements_ == (11, 17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit([rocksalt("K", "Cl", 6.3)], [1.0])
    assert est.trained_elements_ == (11, 17, 19)
    # a new fit starts afresh
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit([rocksalt("K", "Br", 6.6)] * 2, [0.0, 1.0])
    assert est.trained_elements_ == (19, 35)

"""make_carbon_chains: geometry of the paper's pseudocode, counts, seeds, bad input."""
import numpy as np
import pytest

from skcrystal.datasets.synthetic import make_carbon_chains


def test_single_chain_geometry():
    structures, a = make_carbon_chains(50, random_state=0)
    assert len(structures) == 50 and a.shape == (50,)
    for s, length in zip(structures, a):
        assert set(s.symbol_set) == {"C"}
        assert 2 <= len(s) <= 8
        lat = s.lattice
        np.testing.assert_allclose(lat.abc, [length, 100.0, 100.0])
        np.testing.assert_allclose(lat.angles, [90, 90, 90])
        pos = s.cart_coords
        # first atom in [0, 3) Å in every direction; last atom ends the cell
        assert np.all((pos[0] >= 0) & (pos[0] < 3))
        assert pos[-1, 0] == pytest.approx(length)
        steps = np.diff(pos, axis=0)
        # every step advances 0-3 Å along x; y and z go back for odd atoms
        assert np.all((steps[:, 0] > 0) & (steps[:, 0] < 3))
        odd = np.arange(1, len(pos)) % 2 == 1
        assert np.all((steps[odd, 1:] < 0) & (steps[odd, 1:] > -3))
        assert np.all((steps[~odd, 1:] > 0) & (steps[~odd, 1:] < 3))
        # consecutive atoms 0-3*sqrt(3) Å apart (bonds of 0-2 x 1.5 Å per axis)
        bond = np.linalg.norm(steps, axis=1)
        assert np.all((bond > 0) & (bond < 3 * np.sqrt(3)))
        # the chain stays near the x axis: zigzag, no drift into the vacuum
        assert np.abs(pos[:, 1:]).max() < 3 * len(pos)
        # a = start offset + sum of x steps (the pseudocode's period)
        assert length == pytest.approx(pos[0, 0] + steps[:, 0].sum())


def test_long_chains_range_and_counts():
    structures, a = make_carbon_chains(40, n_atoms=(37, 51), random_state=1)
    n = np.array([len(s) for s in structures])
    assert n.min() >= 37 and n.max() <= 50
    # 1.5 Å mean x step: a grows with the number of atoms
    assert np.all(a > 0) and np.corrcoef(n, a)[0, 1] > 0.5
    structures, _ = make_carbon_chains(300, n_atoms=(2, 4), random_state=2)
    assert {len(s) for s in structures} == {2, 3}


def test_double_chains():
    single, a1 = make_carbon_chains(20, random_state=3)
    structures, a = make_carbon_chains(20, double=True, random_state=3)
    for s, length in zip(structures, a):
        n = len(s) // 2
        assert len(s) == 2 * n
        pos = s.cart_coords
        np.testing.assert_allclose(pos[n:, [0, 2]], pos[:n, [0, 2]])
        assert pos[-1, 0] == pytest.approx(length)
        # strands at least 1.5 Å apart
        gap = np.linalg.norm(pos[:n, None] - pos[None, n:], axis=-1).min()
        assert gap >= 1.5
        assert s.lattice.b == s.lattice.c == 100.0


def test_mixed_is_half_double():
    structures, _ = make_carbon_chains(41, double="mixed", random_state=4)
    kinds = []
    for s in structures:
        n = len(s) // 2
        pos = s.cart_coords
        kinds.append(len(s) % 2 == 0 and np.allclose(pos[n:, 0], pos[:n, 0]) and n >= 2)
    assert sum(kinds) == 21  # second half (41 - 41 // 2) is double


def test_reproducible():
    s1, a1 = make_carbon_chains(5, random_state=7)
    s2, a2 = make_carbon_chains(5, random_state=7)
    s3, a3 = make_carbon_chains(5, random_state=8)
    np.testing.assert_array_equal(a1, a2)
    assert all(np.array_equal(x.cart_coords, y.cart_coords) for x, y in zip(s1, s2))
    assert not np.array_equal(a1, a3)
    s4, a4 = make_carbon_chains(5, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(a1, a4)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_samples=0), "n_samples"),
    (dict(n_samples=2.5), "n_samples"),
    (dict(n_samples=3, n_atoms=(1, 5)), "n_atoms"),
    (dict(n_samples=3, n_atoms=(5, 5)), "n_atoms"),
    (dict(n_samples=3, n_atoms=5), "n_atoms"),
    (dict(n_samples=3, n_atoms=(2.0, 9)), "n_atoms"),
    (dict(n_samples=3, double="both"), "double"),
    (dict(n_samples=3, double=2), "double"),
])
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_carbon_chains(**kwargs)

"""Property-based tests (hypothesis) on random valid and invalid structures.

* Valid random crystals (random lattice with a minimum volume, random
  common elements, atoms at least 1.5 Å apart) give finite CGCNN
  predictions that do not change under atom permutation, rotation,
  translation or a supercell (the target is intensive, pooling is a mean).
* Invalid ones (NaN coordinates, singular lattice, overlapping atoms, dummy
  species) raise a ``ValueError`` naming the item, wherever it sits in the
  input.
* Risky calls (descriptors: spglib and Voronoi in C) run in a child
  process, which must end cleanly.

The example budget is bounded (``max_examples``) so the file runs in well
under a minute on one core.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ELEMENTS = ["H", "Li", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K",
            "Ca", "Ti", "Fe", "Cu", "Zn", "Sr", "Ba"]
MIN_SEPARATION = 1.5  # Å, for valid structures
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- generators
def make_structure(lengths, shear, species, frac):
    """Lattice ``diag(lengths) + shear`` (rows), Å; ``frac`` (n, 3)."""
    matrix = np.diag(lengths) + np.asarray(shear).reshape(3, 3) * (1 - np.eye(3))
    return Structure(Lattice(matrix), species, np.asarray(frac))


def min_separation(s):
    """Smallest distance between two atoms or an atom and its image, Å."""
    d = s.lattice.get_all_distances(s.frac_coords, s.frac_coords)
    np.fill_diagonal(d, np.inf)
    shortest_vector = min(np.linalg.norm(s.lattice.get_lll_reduced_lattice().matrix, axis=1))
    return min(d.min() if len(s) > 1 else np.inf, shortest_vector)


@st.composite
def valid_structures(draw, max_atoms=4):
    n = draw(st.integers(1, max_atoms))
    lengths = draw(st.lists(st.floats(3.0, 7.0), min_size=3, max_size=3))
    shear = draw(st.lists(st.floats(-1.0, 1.0), min_size=9, max_size=9))
    species = draw(st.lists(st.sampled_from(ELEMENTS), min_size=n, max_size=n))
    frac = draw(st.lists(st.lists(st.floats(0.0, 0.999), min_size=3, max_size=3),
                         min_size=n, max_size=n))
    s = make_structure(lengths, shear, species, frac)
    assume(s.volume / n >= 5.0 and min_separation(s) >= MIN_SEPARATION)
    return s


def corrupt(s, kind, site, amount):
    """An invalid copy of ``s``; returns (structure, text the error must hold)."""
    n = len(s)
    site = site % n
    if kind == "nan_coords":
        frac = s.frac_coords.copy()
        frac[site, int(amount * 3) % 3] = np.nan
        return Structure(s.lattice, s.species, frac), f"non-finite coordinates (NaN or inf) at site {site}"
    if kind == "singular":
        m = s.lattice.matrix.copy()
        m[2] = m[0] + amount * m[1]  # c in the plane of a and b
        return Structure(Lattice(m), s.species, s.frac_coords), "singular"
    if kind == "overlap":
        offset = np.array([amount, -amount, amount]) * 0.25  # < 0.5 Å apart
        cart = np.vstack([s.cart_coords, s.cart_coords[site] + offset])
        bad = Structure(s.lattice, list(s.species) + [s.species[site]], cart,
                        coords_are_cartesian=True)
        return bad, f"sites {site} and {n}"
    if kind == "dummy":
        species = list(s.species)
        species[site] = "X0+"
        return Structure(s.lattice, species, s.frac_coords), f"dummy species X0+ (site {site})"
    raise ValueError(kind)


KINDS = ["nan_coords", "singular", "overlap", "dummy"]


# ---------------------------------------------------------------- model
@pytest.fixture(scope="module")
def model():
    from skcrystal import CGCNNRegressor
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=24)
    return CGCNNRegressor(module__hidden=8, module__h_fea_len=8, module__n_conv=2,
                          max_epochs=1, batch_size=8, random_state=0).fit(X, y)


def test_model_separates_structures(model):
    """The invariance checks below mean something: predictions differ
    between structures by far more than their tolerance (1e-4)."""
    valid, _ = random_cases(n_valid=8, n_invalid=0)
    pred = model.predict(valid)
    assert np.all(np.isfinite(pred)) and pred.std() > 0.02, pred


def _rotation(q):
    q = np.asarray(q, dtype=np.float64)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@settings(max_examples=60, **SETTINGS)
@given(s=valid_structures(), data=st.data())
def test_valid_structures_give_finite_invariant_predictions(model, s, data):
    n = len(s)
    order = data.draw(st.permutations(range(n)))
    quat = data.draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4))
    assume(np.linalg.norm(quat) > 0.1)
    shift = data.draw(st.lists(st.floats(0, 1), min_size=3, max_size=3))
    scale = data.draw(st.sampled_from([(2, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 1)]))

    permuted = Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[list(order)])
    R = _rotation(quat)
    rotated = Structure(Lattice(s.lattice.matrix @ R.T), s.species, s.frac_coords)
    translated = Structure(s.lattice, s.species, s.frac_coords + np.asarray(shift),
                           to_unit_cell=True)
    supercell = s * scale
    pred = model.predict([s, permuted, rotated, translated, supercell])
    assert pred.shape == (5,)
    assert np.all(np.isfinite(pred)), pred
    np.testing.assert_allclose(pred[1:], pred[0], rtol=1e-4, atol=1e-4)


@settings(max_examples=60, **SETTINGS)
@given(s=valid_structures(max_atoms=3), kind=st.sampled_from(KINDS),
       site=st.integers(0, 10), amount=st.floats(0.05, 1.0),
       others=st.lists(valid_structures(max_atoms=2), min_size=0, max_size=3),
       position=st.integers(0, 3))
def test_invalid_structures_raise_naming_the_item(model, s, kind, site, amount, others,
                                                  position):
    bad, expected = corrupt(s, kind, site, amount)
    position = min(position, len(others))
    X = others[:position] + [bad] + others[position:]
    with pytest.raises(ValueError) as info:
        model.predict(X)
    msg = str(info.value)
    assert msg.startswith(f"X[{position}] ({bad.composition.reduced_formula})"), msg
    assert expected in msg, (expected, msg)
    # the same check guards training
    with pytest.raises(ValueError, match=rf"^X\[{position}\] "):
        from sklearn.base import clone
        clone(model).set_params(max_epochs=1).fit(X, np.zeros(len(X)))


# ---------------------------------------------------------------- child process
def random_cases(seed=0, n_valid=3, n_invalid=12):
    """Random valid and invalid structures without hypothesis (for a child process)."""
    rng = np.random.default_rng(seed)
    valid = []
    while len(valid) < n_valid + n_invalid:
        n = int(rng.integers(1, 4))
        s = make_structure(rng.uniform(3, 7, 3), rng.uniform(-1, 1, 9),
                           list(rng.choice(ELEMENTS, n)), rng.uniform(0, 1, (n, 3)))
        if s.volume / n >= 5.0 and min_separation(s) >= MIN_SEPARATION:
            valid.append(s)
    invalid = [corrupt(s, KINDS[i % len(KINDS)], int(rng.integers(0, 10)),
                       float(rng.uniform(0.05, 1.0)))
               for i, s in enumerate(valid[n_valid:])]
    return valid[:n_valid], invalid


_CHILD = """
import sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {root!r})
import numpy as np
from tests.test_properties import random_cases
from skcrystal.descriptors import DescriptorBank
valid, invalid = random_cases()
values = DescriptorBank().fit_transform(valid)
print("valid", values.shape[0], values.shape[1], flush=True)
for i, (bad, expected) in enumerate(invalid):
    try:
        DescriptorBank().fit_transform(valid[:1] + [bad])
    except ValueError as exc:
        print("invalid", i, expected in str(exc) and str(exc).startswith("X[1] ("),
              flush=True)
    else:
        print("invalid", i, "no error", flush=True)
"""


def test_descriptors_on_random_structures_do_not_crash_the_process():
    result = subprocess.run([sys.executable, "-c", _CHILD.format(root=ROOT)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    lines = result.stdout.split("\n")
    assert lines[0].split()[:2] == ["valid", "3"], result.stdout
    flags = [line.split()[2] for line in lines[1:] if line.startswith("invalid")]
    assert flags == ["True"] * 12, result.stdout

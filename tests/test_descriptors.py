"""DescriptorBank: hand-checked values, agreement with stock matminer, API."""
import math
import warnings

import numpy as np
import pytest
from pymatgen.core import Element, Lattice, Structure
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import shared_path
from skcrystal.descriptors import ALL_DESCRIPTORS, DescriptorBank, clear_descriptor_cache
from skcrystal.descriptors.reference import STOCK_NAMES, stock_descriptors


def _row(bank, s):
    bank = clone(bank).fit([s])
    return dict(zip(bank.get_feature_names_out(), bank.transform([s])[0]))


# ----------------------------------------------------------- hand-checked
def test_rocksalt_by_hand(nacl):
    a0 = 5.64
    d = _row(DescriptorBank(), nacl)
    assert d["mean_CN_Voronoi"] == 6 and d["std_CN_Voronoi"] == 0
    assert d["mean_avg_bond_len"] == pytest.approx(a0 / 2, rel=1e-12)
    assert d["mean_avg_bond_ang"] == pytest.approx(90, rel=1e-12)
    assert d["natoms"] == 2
    for k in "abc":
        assert d[k] == pytest.approx(a0 / math.sqrt(2), rel=1e-10)
    for k in ("alpha", "beta", "gamma"):
        assert d[k] == pytest.approx(60, rel=1e-10)
    assert d["crys_sys"] == 1 and d["space_group_num"] == 225
    assert d["vpa"] == pytest.approx(a0 ** 3 / 8, rel=1e-12)
    # matminer's radii are pymatgen's Element.atomic_radius: Na 1.8 Å, Cl 1.0 Å
    assert (Element("Na").atomic_radius, Element("Cl").atomic_radius) == (1.8, 1.0)
    pf = 4 * (4 / 3 * math.pi * (1.8 ** 3 + 1.0 ** 3)) / a0 ** 3
    assert d["packing_frac"] == pytest.approx(pf, rel=1e-12)
    mass = 4 * (Element("Na").atomic_mass + Element("Cl").atomic_mass)
    assert d["density"] == pytest.approx(mass / 6.02214076e23 / (a0 ** 3 * 1e-24), rel=1e-6)
    # two orbits of 4 atoms each: 1 bit per atom, 8 per conventional cell
    assert d["struct_comp_atom"] == pytest.approx(1.0)
    assert d["struct_comp_cell"] == pytest.approx(8.0)
    for k in ("MAD_in_rela_bond_len", "mean_neighb_dist_var", "MAD_in_rela_atom_vol"):
        assert abs(d[k]) < 1e-12
    assert d["max_rela_bond_len"] == pytest.approx(1) and d["min_rela_bond_len"] == pytest.approx(1)


def test_diamond_by_hand(diamond):
    d = _row(DescriptorBank(), diamond)
    # VoronoiNN with tol=0 (matminer's preset): the diamond Voronoi cell has
    # 4 hexagonal faces (bonds along <111>) and 12 triangular faces (second
    # neighbours along <110>), so CN = 16 and each neighbour's smallest angle
    # to another one is the <111>-<110> angle, acos(2/sqrt(6)) = 35.26 deg.
    assert d["mean_CN_Voronoi"] == 16
    assert d["mean_avg_bond_ang"] == pytest.approx(math.degrees(math.acos(2 / math.sqrt(6))))
    assert d["space_group_num"] == 227 and d["crys_sys"] == 1
    assert d["natoms"] == 2 and d["alpha"] == pytest.approx(60)
    assert d["a"] == pytest.approx(3.567 / math.sqrt(2))
    assert d["vpa"] == pytest.approx(3.567 ** 3 / 8)
    assert d["struct_comp_atom"] == 0 and d["struct_comp_cell"] == 0
    # the 4 bond faces: mean neighbour distance variation from the two shells
    assert d["max_rela_bond_len"] == pytest.approx(1)


# ------------------------------------------------- agreement with stock matminer
def _real_structures():
    import pandas as pd
    df = pd.read_csv(shared_path("perovskites", "perovskites_part2.csv"), nrows=4)
    structures = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    folder = shared_path("alignn_sample")
    for name in ("POSCAR-JVASP-107772.vasp", "POSCAR-JVASP-1372.vasp", "POSCAR-JVASP-14873.vasp",
                 "POSCAR-JVASP-1996.vasp", "POSCAR-JVASP-15345.vasp", "POSCAR-JVASP-22556.vasp"):
        p = folder / name
        if p.exists():
            structures.append(Structure.from_file(p))
    return structures


def test_matches_stock_matminer():
    structures = _real_structures()
    assert len(structures) >= 9
    bank = DescriptorBank(descriptors=STOCK_NAMES, cache=False).fit(structures)
    ours = bank.transform(structures)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.array([stock_descriptors(s) for s in structures])
    scale = np.maximum(np.abs(ref), 1e-12)
    tiny = np.abs(ref) < 1e-9  # exact zeros computed as 1e-16 noise
    rel = np.where(tiny, np.abs(ours - ref), np.abs(ours - ref) / scale)
    worst = np.unravel_index(rel.argmax(), rel.shape)
    assert rel.max() < 1e-6, (structures[worst[0]].formula, STOCK_NAMES[worst[1]])


def test_lattice_from_niggli_primitive(nacl):
    prim = nacl.get_primitive_structure().get_reduced_structure("niggli")
    bank = DescriptorBank(descriptors=["natoms", "a", "b", "c", "alpha", "beta", "gamma"])
    sheared = nacl.copy()
    sheared.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    X = bank.fit_transform([nacl, sheared])
    np.testing.assert_allclose(X[0], X[1], rtol=1e-8)
    assert X[0, 0] == len(prim)


# ------------------------------------------------------------------ 2D and bad
def test_2d_material_finite():
    import pandas as pd
    df = pd.read_json(shared_path("jdft2d", "matbench_jdft2d_fold0_train.json.gz"),
                      orient="split")
    structures = [Structure.from_dict(d) for d in df["structure"][:3]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        X = DescriptorBank(on_error="raise").fit_transform(structures)
    assert np.isfinite(X).all()
    # exact cells: the stock site featurizers with a fixed cutoff large
    # enough for the vacuum give the same coordination numbers and lengths
    from matminer.featurizers.site import CoordinationNumber
    from matminer.featurizers.structure import SiteStatsFingerprint
    names = list(ALL_DESCRIPTORS)
    s = structures[0]
    ref = SiteStatsFingerprint(CoordinationNumber.from_preset("VoronoiNN", cutoff=30),
                               stats=("mean", "std_dev")).featurize(s)
    got = X[0, [names.index(n) for n in ("mean_CN_Voronoi", "std_CN_Voronoi")]]
    np.testing.assert_allclose(got, ref, rtol=1e-8)


class _Failing:
    """A matminer-like featurizer that fails on one structure."""

    def __init__(self, bad_natoms):
        self.bad_natoms = bad_natoms

    def featurize(self, s):
        if len(s) == self.bad_natoms:
            raise RuntimeError("boom")
        return [float(len(s))]

    def feature_labels(self):
        return ["n_sites"]


def test_on_error(nacl, diamond):
    big = nacl.copy()  # 8 atoms, nacl prim has 2 as does diamond
    X = [nacl.get_primitive_structure(), big]
    bank = DescriptorBank(descriptors=["vpa"], extra_featurizers=[_Failing(8)])
    with pytest.warns(RuntimeWarning, match=r"X\[1\].*boom"):
        out = bank.fit_transform(X)
    assert list(bank.get_feature_names_out()) == ["vpa", "n_sites"]
    assert out[0, 1] == 2 and np.isnan(out[1, 1]) and np.isfinite(out[1, 0])
    with pytest.raises(ValueError, match=r"X\[1\]"):
        bank.set_params(on_error="raise").fit_transform(X)
    with pytest.raises(ValueError, match="on_error"):
        DescriptorBank(on_error="ignore").fit([nacl])


def test_partial_failure_only_affects_its_descriptors(nacl):
    # pymatgen has no atomic radius for Xe: packing_frac fails, the rest works
    xe = Structure(Lattice.cubic(6.2), ["Xe"] * 4,
                   [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    bank = DescriptorBank()
    with pytest.warns(RuntimeWarning, match=r"X\[1\] \(Xe\).*atomic radius"):
        out = bank.fit_transform([nacl, xe])
    names = list(bank.get_feature_names_out())
    bad = np.flatnonzero(~np.isfinite(out[1]))
    assert [names[i] for i in bad] == ["packing_frac"]
    assert out[1, names.index("mean_CN_Voronoi")] == 12  # fcc


def test_one_atom_thick_layer_grows_the_cutoff():
    # every image within 13 Å lies in one plane (vacuum 23.5 Å): Qhull has
    # no 3-D tessellation until the images across the vacuum are included
    layer = Structure(Lattice.hexagonal(3.15, 23.5), ["Sb"], [[1 / 3, 2 / 3, 0.06]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        X = DescriptorBank(on_error="raise").fit_transform([layer])
    assert np.isfinite(X).all()
    from matminer.featurizers.site import AverageBondLength, CoordinationNumber
    from matminer.featurizers.structure import SiteStatsFingerprint
    from pymatgen.analysis.local_env import VoronoiNN
    names = list(ALL_DESCRIPTORS)
    for site, cols in ((CoordinationNumber.from_preset("VoronoiNN", cutoff=30),
                        ("mean_CN_Voronoi", "std_CN_Voronoi")),
                       (AverageBondLength(VoronoiNN(cutoff=30)),
                        ("mean_avg_bond_len", "std_avg_bond_len"))):
        ref = SiteStatsFingerprint(site, stats=("mean", "std_dev")).featurize(layer)
        np.testing.assert_allclose(X[0, [names.index(n) for n in cols]], ref, rtol=1e-8)
    # six neighbours in the plane, one image above and one below
    assert X[0, names.index("mean_CN_Voronoi")] == 8


def test_failures_warn_once_with_each_error_on_one_line(nacl):
    class Verbose(_Failing):
        def featurize(self, s):
            if len(s) == self.bad_natoms:
                raise RuntimeError("short reason\n" + "long explanation\n" * 50)
            return [float(len(s))]

    prim = nacl.get_primitive_structure()
    X = [nacl, prim, nacl.copy(), prim]
    bank = DescriptorBank(descriptors=["vpa"], extra_featurizers=[Verbose(8)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = bank.fit_transform(X)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert "2 of 4 structures" in msgs[0]
    assert "X[0] (NaCl): Verbose: RuntimeError: short reason" in msgs[0]
    assert "X[2] (NaCl)" in msgs[0] and "long explanation" not in msgs[0]
    assert np.isnan(out[[0, 2], 1]).all() and np.isfinite(out[[1, 3]]).all()
    with pytest.raises(ValueError, match=r"X\[0\] \(NaCl\).*short reason$") as err:
        bank.set_params(on_error="raise").fit_transform(X)
    assert "long explanation" in str(err.value.__cause__)


def test_isolated_molecule_in_box():
    # an "isolated" dimer in a 20 Å box: cells reach the box faces, cutoff grows
    s = Structure(Lattice.cubic(20.0), ["C", "O"], [[0, 0, 0], [0.0564, 0, 0]])
    out = DescriptorBank(descriptors=["mean_CN_Voronoi", "vpa"], on_error="raise").fit_transform([s])
    assert np.isfinite(out).all()


def test_carbon_chains_work():
    from skcrystal.datasets.synthetic import make_carbon_chains
    chains, a = make_carbon_chains(3, random_state=0)
    out = DescriptorBank(descriptors=["mean_CN_Voronoi", "natoms", "a"],
                         on_error="raise").fit_transform(chains)
    assert np.isfinite(out).all()


def test_disordered_and_bad_input(nacl):
    dis = nacl.copy()
    dis.replace(0, {"Na": 0.5, "K": 0.5})
    with pytest.raises(ValueError, match=r"X\[1\].*disordered"):
        DescriptorBank().fit([nacl, dis])
    with pytest.raises(TypeError, match=r"X\[0\]"):
        DescriptorBank().fit(["not a structure"])
    with pytest.raises(ValueError, match="empty"):
        DescriptorBank().fit([])
    # parameters: each error names its parameter
    for params, message in [({"on_error": "skip"}, "on_error must be 'warn' or 'raise'"),
                            ({"voronoi_cutoff": -1.0}, "voronoi_cutoff must be a positive"),
                            ({"extra_featurizers": [3]}, r"extra_featurizers\[0\] \(int\)"),
                            ({"n_jobs": "two"}, "n_jobs must be None or a non-zero integer")]:
        with pytest.raises((ValueError, TypeError), match=message):
            DescriptorBank(**params).fit([nacl])


# ------------------------------------------------------------------ API
def test_subset_and_names(nacl):
    with pytest.raises(ValueError, match="mean_CN_Voronoi"):  # valid names listed
        DescriptorBank(descriptors=["CN"]).fit([nacl])
    bank = DescriptorBank(descriptors=["vpa", "a", "mean_CN_Voronoi"]).fit([nacl])
    assert list(bank.get_feature_names_out()) == ["vpa", "a", "mean_CN_Voronoi"]
    out = bank.transform([nacl])
    full = DescriptorBank().fit([nacl])
    ref = full.transform([nacl])[0]
    names = list(full.get_feature_names_out())
    assert names == list(ALL_DESCRIPTORS) and len(names) == 29
    np.testing.assert_array_equal(out[0], ref[[names.index(n) for n in ["vpa", "a", "mean_CN_Voronoi"]]])


def test_clone_params_set_output(nacl, diamond):
    bank = DescriptorBank(descriptors=["vpa", "crys_sys"], n_jobs=2)
    c = clone(bank)
    assert c.get_params()["descriptors"] == ["vpa", "crys_sys"]
    assert c.get_params()["n_jobs"] == 2
    df = c.set_output(transform="pandas").fit_transform([nacl, diamond])
    assert list(df.columns) == ["vpa", "crys_sys"] and len(df) == 2
    with pytest.raises(Exception):
        DescriptorBank().transform([nacl])  # not fitted


def test_cache_and_parallel(nacl, diamond, monkeypatch):
    from skcrystal.descriptors import _compute
    clear_descriptor_cache()
    X = [nacl, diamond, nacl.copy()]
    from joblib import parallel_config
    bank = DescriptorBank(descriptors=["mean_CN_Voronoi", "vpa"], n_jobs=2).fit(X)
    with parallel_config(backend="threading"):  # n_jobs path without process start-up
        first = bank.transform(X)
    np.testing.assert_array_equal(first[0], first[2])
    calls = []
    orig = _compute.voronoi_group
    monkeypatch.setattr(_compute, "voronoi_group", lambda *a: calls.append(1) or orig(*a))
    np.testing.assert_array_equal(bank.transform(X), first)
    assert calls == []  # every row came from the cache


def test_in_pipeline(nacl, diamond):
    X = [nacl, diamond, nacl.get_primitive_structure(), diamond.copy()]
    X[3].scale_lattice(diamond.volume * 1.2)
    y = np.array([s.volume / len(s) for s in X])
    pipe = make_pipeline(DescriptorBank(descriptors=["vpa", "density"]), StandardScaler(),
                         LinearRegression())
    pipe.fit(X, y)
    np.testing.assert_allclose(pipe.predict(X), y, rtol=1e-6)

"""Loaders on the real files in ../shared/data, the bundled demo set, and errors."""
import fnmatch
import gzip
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

from conftest import shared_path
from skcrystal import datasets
from skcrystal.datasets import (load, load_alignn_folder, load_cgcnn_folder, load_csv,
                                load_matbench, load_matbench_json, load_mlearn,
                                load_perovskites, load_structures, matbench_folds,
                                matbench_test_fold, shared_data_path, structures_from_cif)
from skcrystal.datasets._cif import _NotSimple, _fast_parse, _pymatgen_parse

JDFT2D = ("jdft2d", "matbench_jdft2d_fold0_train.json.gz")
JDFT2D_FOLDS = ("jdft2d", "matbench_jdft2d_folds.json")


def _n_atom_rows(cif):
    """Atom-site rows in a pymatgen-written P1 CIF (lines ending in occupancy 1)."""
    return sum(1 for line in cif.splitlines() if re.match(r"^\s+[A-Z][a-z]?\s+\S+\s+1\s", line))


def _same(a, b):
    return (np.array_equal(a.lattice.matrix, b.lattice.matrix)
            and [s.species_string for s in a] == [s.species_string for s in b]
            and np.array_equal(a.frac_coords, b.frac_coords) and a.labels == b.labels)


# --- bundled demo set: never skipped ----------------------------------------

def test_exports_are_explicit():
    assert sorted(datasets.__all__) == sorted(set(datasets.__all__))
    for name in datasets.__all__:
        assert callable(getattr(datasets, name))


def test_bundled_perovskites_load_without_shared_data():
    X, y = load_perovskites()
    raw = pd.read_csv(Path(datasets.__file__).parent / "data" / "perovskites_demo.csv.gz")
    assert len(X) == len(y) == len(raw) == 1000
    assert all(isinstance(s, Structure) and len(s) == 5 for s in X)
    np.testing.assert_array_equal(y, raw["heat_all"].to_numpy())
    assert X[0].composition.reduced_formula == Structure.from_str(
        raw["cif"][0], fmt="cif").composition.reduced_formula


def test_bundled_perovskites_options():
    df = load_perovskites(n=20, as_frame=True)
    assert list(df.columns) == ["material_id", "structure", "formula", "heat_all",
                                "heat_ref", "dir_gap", "ind_gap"]
    assert len(df) == 20
    X, y = load_perovskites(n=20, target=["dir_gap", "ind_gap"])
    assert y.shape == (20, 2)
    np.testing.assert_array_equal(y, df[["dir_gap", "ind_gap"]].to_numpy())
    a = load_perovskites(n=30, random_state=0, as_frame=True)
    b = load_perovskites(n=30, random_state=0, as_frame=True)
    assert a["material_id"].tolist() == b["material_id"].tolist()
    assert a["material_id"].tolist() != df["material_id"].tolist()[:30]
    with pytest.raises(ValueError, match=r"target='gap'.*available columns.*heat_all"):
        load_perovskites(target="gap")
    with pytest.raises(ValueError, match="n must be"):
        load_perovskites(n=5000)


def test_bundled_file_is_small_and_packaged():
    data = Path(datasets.__file__).parent / "data"
    files = [f for f in data.iterdir() if f.is_file()]
    assert files and sum(f.stat().st_size for f in files) < 1.5e6
    # setup.py: package_data={"skcrystal.datasets": ["data/*"]}
    assert all(fnmatch.fnmatch(f"data/{f.name}", "data/*") for f in files)


def test_shared_data_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SKCRYSTAL_SHARED_DATA", str(tmp_path))
    assert shared_data_path() == tmp_path
    monkeypatch.setenv("SKCRYSTAL_SHARED_DATA", str(tmp_path / "absent"))
    assert shared_data_path() is None


# --- CIF parsing --------------------------------------------------------------

def test_structures_from_cif_errors():
    cif = pd.read_csv(Path(datasets.__file__).parent / "data" / "perovskites_demo.csv.gz",
                      nrows=3)["cif"].tolist()
    with pytest.raises(TypeError, match="single str"):
        structures_from_cif(cif[0])
    bad = [cif[0], "data_broken\n_cell_length_a 1\n", cif[1]]
    with pytest.raises(ValueError, match=r"row 1 \(id 'b'\)"):
        structures_from_cif(bad, ids=["a", "b", "c"])
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 rows.*row 1"):
        X, index = structures_from_cif(bad, on_error="skip", return_index=True)
    assert len(X) == 2 and index.tolist() == [0, 2]
    # a column of something else than CIF text says what it looks like
    from pymatgen.core import Lattice, Structure
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    for text, looks in [(nacl.to(fmt="poscar"), "looks like a VASP POSCAR"),
                        (nacl.to(fmt="json"), "is JSON, not a CIF"),
                        ("structures/nacl.cif", "is a file name, not CIF text")]:
        with pytest.raises(ValueError, match=rf"row 0: .*\(the text {looks}"):
            structures_from_cif([text])
    # numbers (the wrong column of a CSV) are named as such; NaN is an empty cell
    with pytest.raises(ValueError, match=r"row 0: ValueError: holds a float \(2.76\), not "
                                         r"CIF text"):
        structures_from_cif([2.76, 1.0])
    with pytest.raises(ValueError, match="row 0: ValueError: empty or missing CIF text"):
        structures_from_cif([float("nan")])
    # every row skipped: an error naming the first, not an empty data set
    with pytest.raises(ValueError, match=r"none of the 2 rows could be parsed; the first, "
                                         r"row 0 \(id 'a'\)"):
        structures_from_cif(bad[1:2] * 2, ids=["a", "b"], on_error="skip")


_ONE_ATOM_CIF = """data_{name}
_cell_length_a {a}
_cell_length_b {a}
_cell_length_c {a}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
 _atom_site_label
 _atom_site_type_symbol
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 {el}1 {el} 0 0 0
"""


def test_cif_with_several_structures_is_an_error_and_publication_blocks_are_left_out(
        tmp_path):
    """One file or row is one target: a CIF of two structures is not read as its first;
    a journal or CSD export's block without atoms (data_global) does not stop the one
    structure it describes."""
    na = _ONE_ATOM_CIF.format(name="na", a=4.0, el="Na")
    cl = _ONE_ATOM_CIF.format(name="cl", a=5.0, el="Cl")
    publication = "data_global\n_journal_name_full 'A journal'\n_publ_section_title 'T'\n\n"
    with pytest.raises(ValueError, match=r"row 0 \(id 'two'\): ValueError: the CIF holds 2 "
                                         r"structures \(data blocks\)"):
        structures_from_cif([na + cl], ids=["two"])
    for text in (publication + na, na + publication):
        [s] = structures_from_cif([text])
        assert s.composition.reduced_formula == "Na" and s.lattice.a == pytest.approx(4.0)
    # a block with atom sites that fails is still an error, with pymatgen's reason
    broken = na.replace("Na1 Na 0 0 0", "Na1 Na 0 0 zz")
    with pytest.raises(ValueError, match="could not parse the CIF at row 0"):
        structures_from_cif([publication + broken])
    # the same from a folder: the error names the file
    (tmp_path / "two.cif").write_text(na + cl)
    (tmp_path / "one.cif").write_text(publication + na)
    with pytest.raises(ValueError, match=r"two.cif.*holds 2 structures"):
        load_structures(tmp_path)


def test_cif_warnings_are_suppressed(nacl):
    # symmetry operations + 0.33333 coordinates: pymatgen's CifParser path,
    # which warns about rounding to 1/3
    cif = """data_test
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a 3.0
_cell_length_b 3.0
_cell_length_c 5.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 120
loop_
 _symmetry_equiv_pos_as_xyz
 'x, y, z'
 '-x, -y, -z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
 Mo Mo1 0.33333 0.66667 0.25 1
"""
    with pytest.raises(_NotSimple):
        _fast_parse(cif)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X = structures_from_cif([cif] * 3)
    assert [str(w.message) for w in caught] == []
    assert len(X[0]) == 2


def test_fast_parser_matches_pymatgen(shared_data):
    files = ["perovskites/perovskites_part2.csv", "carbon_24/carbon_24_val.csv",
             "supercon/supercon_val.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in files:
            for cif in pd.read_csv(shared_data / name, nrows=40)["cif"]:
                assert _same(_fast_parse(cif), _pymatgen_parse(cif)), name


def test_fast_cif_reader_of_many_texts_is_the_reader_of_each(shared_data):
    """CIFs read together (their numbers converted, snapped and checked in
    one pass) give each text's own reading to the bit, pymatgen's structure,
    and decline what pymatgen reads otherwise: mixed site counts, symmetry
    operations (the CGCNN sample), a duplicated atom row (overlapping
    sites), uncertainties, a flat cell, a number that is not one."""
    from pymatgen.core import Structure

    from skcrystal.datasets._cif import _fast_parse_arrays, _fast_parse_arrays_many

    plain = list(pd.read_csv(shared_data / "perovskites/perovskites_part2.csv",
                             nrows=30)["cif"])
    plain += list(pd.read_csv(shared_data / "carbon_24/carbon_24_val.csv", nrows=30)["cif"])
    texts = [(t, "plain") for t in plain]
    texts += [(f.read_text(), "symmetry")
              for f in sorted((shared_data / "cgcnn_sample").glob("*.cif"))[:6]]
    for k, text in enumerate(plain[:12]):
        lines = text.splitlines()
        atom = max(i for i, line in enumerate(lines) if line.strip())  # the last site
        texts += [("\n".join(lines + [lines[atom]]), "overlap"),
                  ("\n".join(lines[:atom] + [lines[atom] + "(3)"] + lines[atom + 1:]),
                   "uncertainty"),
                  (text.replace("_cell_length_c ", "_cell_length_c 0.00", 1), "flat"),
                  (text.replace("0.", "x.", 1), "not a number")]
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]

    def one(text):
        try:
            return _fast_parse_arrays(text)
        except Exception as exc:  # noqa: BLE001 - declined either way
            return exc

    reads = _fast_parse_arrays_many([t for t, _ in texts])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (text, kind), many in zip(texts, reads):
            alone = one(text)
            assert isinstance(many, Exception) == isinstance(alone, Exception) \
                == (kind != "plain"), kind
            if kind == "plain":
                assert many[:2] == alone[:2]
                assert many[2].tobytes() == alone[2].tobytes()
                assert many[3].tobytes() == alone[3].tobytes()
                symbols, labels, matrix, frac = many
                assert _same(Structure(matrix, symbols, frac, labels=labels),
                             _pymatgen_parse(text))


_POSCAR = """Fe2 O3 sample
1.5
  2.0 0.1 0.0
  0.0 2.5 0.0\r
  0.2 0.0 3.0
Fe_pv O/79d9987ad87
2 3
Direct
 0.0 0.0 0.0 Fe
 -0.25 0.5 0.5
 1.25 0.5 0.75
 0.5 0.5 0.0
 0.75 0.25 0.9999999999999999

 0.01 0.02 0.03
"""


def _poscar_variants():
    """POSCARs pymatgen reads, each with a change the fast reader must follow
    (True) or decline (False)."""
    lines = _POSCAR.split("\n")
    site = 8

    def edit(i, line):
        return "\n".join(lines[:i] + [line] + lines[i + 1:])

    return [
        (_POSCAR, True),  # scale, POTCAR suffixes, CRLF, unwrapped, velocities
        (_POSCAR.replace("Fe_pv O/79d9987ad87", "Fe O"), True),
        (edit(0, "# only a comment"), True),
        (edit(1, "1.0"), True),
        (edit(7, "direct"), True),
        (edit(site, " 0.0 0.0 0.0 T T F extra"), True),
        (edit(7, "Cartesian"), False),  # pymatgen converts site by site
        (edit(1, "-40.0"), False),  # a volume
        ("\n".join(lines[:7] + ["Selective dynamics"] + lines[7:]), False),
        ("\n".join(lines[:5] + lines[6:]), False),  # VASP 4
        (edit(site + 2, " 1.25 0.5 0.75 # moved"), False),
        (edit(6, "2 3 1"), False),  # counts do not pair with symbols
        (edit(5, "Fe Xx"), False),
    ]


def test_fast_poscar_reader_reads_what_pymatgen_reads():
    from pymatgen.io.vasp import Poscar

    from skcrystal.datasets._io import _fast_poscar_arrays, _parse_poscar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text, fast in _poscar_variants():
            try:
                s = Poscar.from_str(text, read_velocities=False).structure
            except Exception:  # noqa: BLE001 - then only declining is right
                s = None
            if not fast:
                with pytest.raises(_NotSimple):
                    _fast_poscar_arrays(text)
                continue
            symbols, lattice, frac = _fast_poscar_arrays(text)
            assert symbols == [str(e) for e in s.species]
            # bitwise: the graph is the one of pymatgen's structure
            assert np.array_equal(lattice, s.lattice.matrix)
            assert np.array_equal(frac, s.frac_coords)
            assert _parse_poscar(text) == s
    assert _fast_poscar_arrays(_POSCAR)[2][2].tolist() == [1.25, 0.5, 0.75]  # not wrapped


def test_fast_poscar_reader_matches_pymatgen_on_jarvis_files():
    from pymatgen.io.vasp import Poscar

    from skcrystal.datasets._io import _fast_poscar_arrays, _parse_poscar

    files = sorted(shared_path("alignn_sample").glob("POSCAR*"))
    for path in files:
        text = path.read_text()
        s = _parse_poscar(text)
        symbols, lattice, frac = _fast_poscar_arrays(text)
        assert symbols == [str(e) for e in s.species], path.name
        assert np.array_equal(lattice, s.lattice.matrix), path.name
        assert np.array_equal(frac, s.frac_coords), path.name
        # the loaders' Structure is pymatgen's own reading of the file
        ref = Poscar.from_str(text, read_velocities=False).structure
        assert s == ref and [x.label for x in s] == [x.label for x in ref], path.name
        assert np.array_equal(s.frac_coords, ref.frac_coords) and s.properties == ref.properties


# --- CSV ------------------------------------------------------------------------

def test_load_csv_perovskites():
    path = shared_path("perovskites", "perovskites_part2.csv")
    raw = pd.read_csv(path)
    X, y = load_csv(path, target="heat_all")
    assert len(X) == len(y) == 1024
    assert all(len(s) == 5 for s in X)
    np.testing.assert_array_equal(y, raw["heat_all"].to_numpy())
    df = load_csv(path, target=["dir_gap", "ind_gap"], as_frame=True)
    assert list(df.columns) == ["material_id", "structure", "dir_gap", "ind_gap"]
    np.testing.assert_array_equal(df["material_id"], raw["material_id"])
    X2, y2 = load_csv(path, target=["dir_gap", "ind_gap"])
    assert y2.shape == (1024, 2)


def test_load_csv_carbon_and_supercon():
    path = shared_path("carbon_24", "carbon_24_val.csv")
    raw = pd.read_csv(path)
    X, y = load_csv(path, target="energy_per_atom")
    assert len(X) == 2032
    assert [len(s) for s in X] == [_n_atom_rows(c) for c in raw["cif"]]
    assert min(len(s) for s in X) >= 6 and max(len(s) for s in X) <= 24
    np.testing.assert_array_equal(y, raw["energy_per_atom"].to_numpy())
    path = shared_path("supercon", "supercon_val.csv")
    raw = pd.read_csv(path)
    df = load_csv(path, target="prop", as_frame=True)
    assert len(df) == 105 and df["material_id"].iloc[0] == raw["material_id"].iloc[0]
    assert [len(s) for s in df["structure"]] == [_n_atom_rows(c) for c in raw["cif"]]


def test_load_csv_parallel_matches_serial():
    # parser="pymatgen" sends every row to the joblib workers
    path = shared_path("supercon", "supercon_val.csv")
    X1, y1 = load_csv(path, target="prop")
    X2, y2 = load_csv(path, target="prop", n_jobs=2, parser="pymatgen")
    assert len(X1) == len(X2) == 105
    assert all(_same(a, b) for a, b in zip(X1, X2))
    np.testing.assert_array_equal(y1, y2)


@pytest.fixture
def small_csv(tmp_path):
    rows = pd.read_csv(Path(datasets.__file__).parent / "data" / "perovskites_demo.csv.gz",
                       nrows=4)
    rows.loc[2, "cif"] = rows.loc[2, "cif"].replace("_cell_length_a", "_cell_length_q")
    rows.loc[2, "cif"] = rows.loc[2, "cif"].replace("loop_", "")
    path = tmp_path / "small.csv"
    rows.to_csv(path, index=False)
    return path, rows


def test_load_csv_errors(small_csv, tmp_path):
    path, rows = small_csv
    with pytest.raises(ValueError, match=r"target='gap' is not a column.*available "
                                         r"columns: \['material_id', 'formula'"):
        load_csv(path, target="gap")
    with pytest.raises(ValueError, match=r"cif_column='structure'"):
        load_csv(path, target="heat_all", cif_column="structure")
    with pytest.raises(TypeError, match=r"cif_column must be a column name, got list"):
        load_csv(path, target="heat_all", cif_column=["cif"])
    bad_id = rows.loc[2, "material_id"]
    with pytest.raises(ValueError, match=rf"row 2 \(id {bad_id}\) of .*small.csv"):
        load_csv(path, target="heat_all")
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 rows.*row 2"):
        df = load_csv(path, target="heat_all", on_error="skip", as_frame=True)
    assert df["material_id"].tolist() == rows["material_id"].drop(index=2).tolist()
    np.testing.assert_array_equal(df["heat_all"], rows["heat_all"].drop(index=2))
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_csv(missing, target="heat_all")
    with pytest.raises(ValueError, match="target is required.*available columns"):
        load(path)
    header_only = tmp_path / "header.csv"
    header_only.write_text("cif,heat_all\n")
    with pytest.raises(ValueError, match=r"header.csv has no data rows \(columns \['cif'"):
        load_csv(header_only, target="heat_all")


# --- reference-code folders -----------------------------------------------------

def test_load_cgcnn_folder():
    folder = shared_path("cgcnn_sample")
    table = pd.read_csv(folder / "id_prop.csv", header=None, dtype={0: str})
    df = load_cgcnn_folder(folder, as_frame=True)
    assert len(df) == 10 and list(df.columns) == ["id", "structure", "target"]
    assert df["id"].tolist() == table[0].tolist()  # text ids, atom_init.json ignored
    np.testing.assert_array_equal(df["target"], table[1].to_numpy(dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ident, s in zip(df["id"], df["structure"]):
            assert len(s) == len(Structure.from_file(folder / f"{ident}.cif"))
    X, y = load(folder)
    assert len(X) == 10 and y.shape == (10,)


def test_load_cgcnn_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent"))):
        load_cgcnn_folder(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="id_prop.csv"):
        load_cgcnn_folder(tmp_path)
    (tmp_path / "id_prop.csv").write_text("abc,1.0\n")
    with pytest.raises(FileNotFoundError, match=r"abc\.cif not found \(row 0"):
        load_cgcnn_folder(tmp_path)
    (tmp_path / "id_prop.csv").write_text("abc,band_gap\n")  # a header and no rows
    with pytest.raises(ValueError, match=r"has no data row: its only row \['abc', 'band_gap'\]"):
        load_cgcnn_folder(tmp_path)


@pytest.mark.parametrize("call", [
    "skcrystal.datasets:load", "skcrystal.datasets:load_structures",
    "skcrystal.datasets:load_cgcnn_folder", "skcrystal.datasets:load_alignn_folder",
    "skcrystal.datasets:load_matbench_json", "skcrystal.datasets:load_mlearn",
    "skcrystal.pretrained:read_checkpoint", "skcrystal.pretrained:load_cgcnn_checkpoint",
    "skcrystal.benchmarks.matbench:matbench_task", "skcrystal.benchmarks.matbench:read_record",
    "skcrystal.benchmarks.matbench:fold_progress"])
def test_a_path_argument_that_is_no_path_says_so(call):
    # not pathlib's "expected str, bytes or os.PathLike object, not list"
    import importlib
    module, name = call.split(":")
    with pytest.raises(TypeError, match=r"path must be a file or folder path \(str or "
                                        r"pathlib.Path\), got list: \['a.cif'\]"):
        getattr(importlib.import_module(module), name)(["a.cif"])


def test_id_prop_csv_given_as_a_file_points_to_its_folder():
    # read as a CSV, its first data row would be taken for the header
    id_prop = shared_path("cgcnn_sample") / "id_prop.csv"
    for loader in (load, load_structures):
        with pytest.raises(ValueError, match=r"id_prop.csv is the id_prop.csv of a CGCNN or "
                                             r"ALIGNN folder: give the folder, .*cgcnn_sample$"):
            loader(id_prop)


def test_load_alignn_folder():
    folder = shared_path("alignn_sample")
    table = pd.read_csv(folder / "id_prop.csv", header=None)
    X, y = load_alignn_folder(folder)
    assert len(X) == len(y) == 50
    np.testing.assert_array_equal(y, table[1].to_numpy(dtype=float))
    for name, s in zip(table[0], X):
        counts = (folder / name).read_text().splitlines()[6].split()
        assert len(s) == sum(int(c) for c in counts)
    df = load(folder, as_frame=True, n_jobs=2)
    assert df["id"].tolist() == table[0].tolist()


# --- matbench -------------------------------------------------------------------

def test_load_matbench_json(tmp_path):
    path = shared_path(*JDFT2D)
    with gzip.open(path, "rt") as fh:
        raw = json.load(fh)
    X, y = load_matbench_json(path)
    assert len(X) == len(y) == 508
    assert all(isinstance(s, Structure) for s in X)
    np.testing.assert_array_equal(y, [row[1] for row in raw["data"]])
    assert len(X[0]) == len(raw["data"][0][0]["sites"])
    df = load(path, as_frame=True)
    assert list(df.columns) == ["id", "structure", "exfoliation_en"]
    assert df["id"].tolist() == raw["index"]
    with pytest.raises(ValueError, match=r"target='gap'.*available columns"):
        load_matbench_json(path, target="gap")
    empty = dict(raw, index=[], data=[])
    empty_path = Path(tmp_path) / "matbench_empty.json.gz"
    empty_path.write_bytes(gzip.compress(json.dumps(empty).encode()))
    with pytest.raises(ValueError, match=r"matbench_empty.json.gz has no data rows"):
        load_matbench_json(empty_path)


def test_broken_json_files_are_named(tmp_path):
    """A cut download or a wrong file is a ValueError naming it, not json's bare error."""
    good = shared_path(*JDFT2D).read_bytes()
    cases = {
        "cut.json.gz": (good[:5000], r"cut.json.gz is a damaged gzip file"),
        "text.json": (b'{"index": [1, 2', r"text.json is not valid JSON: .* at line 1, column 16"),
        "text.json.gz": (gzip.compress(b"not json"),
                         r"text.json.gz is not valid JSON \(after gunzip\)"),
        "utf16.json": (b"\xff\xfe{\x00}\x00", r"utf16.json is not UTF-8 text"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            load_matbench_json(tmp_path / name)
        with pytest.raises(ValueError, match=message):
            load_mlearn(tmp_path / name)
        with pytest.raises(ValueError, match=message):
            matbench_folds(tmp_path / name, ["mb-jdft2d-001"])


def test_matbench_folds_partial_task():
    path, fold_file = shared_path(*JDFT2D), shared_path(*JDFT2D_FOLDS)
    with open(fold_file) as fh:
        splits = json.load(fh)["splits"]["matbench_jdft2d"]
    ids = load_matbench_json(path, as_frame=True)["id"].tolist()
    assert set(ids) == set(splits["fold_0"]["train"])
    with pytest.warns(UserWarning, match=r"dropped fold\(s\) \[0\]"):
        cv = matbench_folds(fold_file, ids)
    assert len(cv) == 4  # fold 0's test rows are not in the file
    seen = []
    for k, (train, test) in zip(range(1, 5), cv):
        assert not set(train) & set(test)
        assert len(train) + len(test) == len(ids)
        assert {ids[i] for i in test} == set(splits[f"fold_{k}"]["test"]) & set(ids)
        assert {ids[i] for i in train} == set(splits[f"fold_{k}"]["train"]) & set(ids)
        seen.extend(test.tolist())
    assert sorted(seen) == list(range(len(ids)))
    # the same splits from PredefinedSplit, and from load_matbench_json(folds=...)
    from sklearn.model_selection import PredefinedSplit
    test_fold = matbench_test_fold(fold_file, ids)
    for (a, b), (c, d) in zip(cv, PredefinedSplit(test_fold).split()):
        assert a.tolist() == c.tolist() and b.tolist() == d.tolist()
    with pytest.warns(UserWarning, match="dropped"):
        X, y, cv2 = load_matbench_json(path, folds="auto")
    assert [t.tolist() for _, t in cv2] == [t.tolist() for _, t in cv]
    df = load_matbench_json(path, folds=fold_file, as_frame=True)
    np.testing.assert_array_equal(df["test_fold"], test_fold)
    with pytest.raises(ValueError, match=r"ids\[0\]='mb-jdft2d-999'"):
        matbench_folds(fold_file, ["mb-jdft2d-999"] + ids[1:])


def test_matbench_fold_file_is_kfold_of_full_task():
    """README: official folds = KFold(5, shuffle, 18012019) over the task in load order."""
    from sklearn.model_selection import KFold
    with open(shared_path(*JDFT2D_FOLDS)) as fh:
        splits = json.load(fh)["splits"]["matbench_jdft2d"]
    n = len(splits["fold_0"]["train"]) + len(splits["fold_0"]["test"])
    assert n == 636
    ids = [f"mb-jdft2d-{i + 1:03d}" for i in range(n)]
    for k, (_, test) in enumerate(KFold(5, shuffle=True, random_state=18012019).split(ids)):
        assert sorted(ids[i] for i in test) == sorted(splits[f"fold_{k}"]["test"])


def test_load_matbench_offline_error(monkeypatch):
    import matminer.datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Max retries exceeded with url: ml.materialsproject.org")

    monkeypatch.setattr(matminer.datasets, "load_dataset", offline)
    with pytest.raises(OSError) as info:
        load_matbench("jdft2d")
    message = str(info.value)
    assert "load_matbench_json('matbench_jdft2d.json.gz')" in message
    assert "ConnectionError" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(ValueError, match="compositions, not structures"):
        load_matbench("steels")
    with pytest.raises(ValueError, match="not a matbench structure task"):
        load_matbench("nonsense")


# --- mlearn ---------------------------------------------------------------------

def test_load_mlearn():
    path = shared_path("mlearn", "Si.id_prop.json")
    with open(path) as fh:
        raw = json.load(fh)
    X, y = load_mlearn(path)
    assert len(X) == len(y) == 264
    np.testing.assert_array_equal(y, [r["total_energy"] for r in raw])
    n_atoms = np.array([len(s) for s in X])
    np.testing.assert_array_equal(n_atoms, [len(r["atoms"]["elements"]) for r in raw])
    assert {str(e) for s in X for e in s.composition.elements} == {"Si"}
    _, y_cell = load_mlearn(path, per_atom=False)
    np.testing.assert_allclose(y_cell, y * n_atoms)
    df = load(path, as_frame=True, per_atom=False)
    assert list(df.columns) == ["jid", "structure", "n_atoms", "energy", "forces", "stresses"]
    np.testing.assert_allclose(df["energy"], y_cell)
    with pytest.raises(ValueError, match="target=.*does not apply"):
        load(path, target="energy")


def test_load_unknown_format(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="unknown format"):
        load(path)
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        load(tmp_path / "nothing.csv")


# --- load_structures: with or without targets ----------------------------------

def _same_cells(a, b):
    assert len(a) == len(b)
    for s, t in zip(a, b):
        assert [x.species_string for x in s] == [x.species_string for x in t]
        np.testing.assert_allclose(s.lattice.matrix, t.lattice.matrix)
        np.testing.assert_allclose(s.frac_coords, t.frac_coords)


def test_load_structures_reference_folders():
    for name, loader in (("cgcnn_sample", load_cgcnn_folder),
                         ("alignn_sample", load_alignn_folder)):
        folder = shared_path(name)
        table = pd.read_csv(folder / "id_prop.csv", header=None, dtype={0: str})
        ids, X = load_structures(folder)
        assert ids == table[0].tolist()
        _same_cells(X, loader(folder)[0])  # one parser for both loaders
        df = load_structures(folder, as_frame=True)
        assert list(df.columns) == ["id", "structure", "target"]
        np.testing.assert_array_equal(df["target"], table[1].to_numpy(dtype=float))


def _id_only_folder(source, dest, names, files):
    """Copy ``files`` of a reference folder to ``dest`` with an id-only id_prop.csv."""
    dest.mkdir(exist_ok=True)
    for f in files:
        (dest / f).write_text((source / f).read_text())
    (dest / "id_prop.csv").write_text("\n".join(names) + "\n")
    return dest


@pytest.mark.parametrize("name, loader, suffix", [
    ("cgcnn_sample", load_cgcnn_folder, ".cif"), ("alignn_sample", load_alignn_folder, "")])
def test_load_structures_id_prop_without_targets(tmp_path, name, loader, suffix):
    source = shared_path(name)
    ids = pd.read_csv(source / "id_prop.csv", header=None, dtype={0: str})[0].tolist()[:3]
    folder = _id_only_folder(source, tmp_path / name, ids, [i + suffix for i in ids])
    got_ids, X = load_structures(folder)
    assert got_ids == ids
    _same_cells(X, loader(source)[0][:3])
    assert list(load_structures(folder, as_frame=True).columns) == ["id", "structure"]
    with pytest.raises(ValueError, match="needs at least two columns.*load_structures"):
        load(folder)


def test_load_structures_folder_of_files(tmp_path, nacl, diamond):
    # no id_prop.csv: every CIF/POSCAR file, sorted by name; other files ignored
    nacl.to(filename=str(tmp_path / "b_nacl.cif"))
    diamond.to(filename=str(tmp_path / "POSCAR_diamond"), fmt="poscar")
    nacl.to(filename=str(tmp_path / "a.vasp"), fmt="poscar")
    (tmp_path / "notes.txt").write_text("not a structure")
    (tmp_path / "atom_init.json").write_text("{}")
    (tmp_path / "._b_nacl.cif").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS copy
    (tmp_path / ".hidden.cif").write_text(nacl.to(fmt="cif"))
    ids, X = load_structures(tmp_path)
    assert ids == ["POSCAR_diamond", "a.vasp", "b_nacl.cif"]  # hidden files left out
    assert [s.composition.reduced_formula for s in X] == ["C", "NaCl", "NaCl"]
    _same_cells(X[1:2], [nacl])
    with pytest.raises(ValueError, match="no targets.*load_structures"):
        load(tmp_path)
    # one structure file
    ids, X = load_structures(tmp_path / "b_nacl.cif")
    assert ids == ["b_nacl.cif"] and len(X[0]) == len(nacl)
    ids, X = load_structures(tmp_path / "POSCAR_diamond")
    assert ids == ["POSCAR_diamond"] and len(X[0]) == len(diamond)
    with pytest.raises(ValueError, match="no targets"):
        load(tmp_path / "a.vasp")
    # a broken file: its row and name, or skipped with a warning
    (tmp_path / "c.vasp").write_text("garbage\n")
    with pytest.raises(ValueError, match=r"row 3 \(id 'c.vasp'\)"):
        load_structures(tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 rows"):
        ids, X = load_structures(tmp_path, on_error="skip")
    assert ids == ["POSCAR_diamond", "a.vasp", "b_nacl.cif"] and len(X) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no id_prop.csv and no structure files"):
        load_structures(empty)


def test_vasp4_poscar_without_element_names_is_an_error(tmp_path, nacl):
    """pymatgen reads a VASP 4 POSCAR (no element line) as H, He... with a warning the
    loaders silence: an error naming the file, not a structure of the wrong elements."""
    vasp5 = nacl.to(fmt="poscar").splitlines()
    assert vasp5[5].split() == ["Na", "Cl"] and vasp5[6].split() == ["4", "4"]
    coords = [" ".join(line.split()[:3]) for line in vasp5[8:]]  # without pymatgen's symbols
    (tmp_path / "POSCAR_v4").write_text("\n".join(vasp5[:5] + vasp5[6:8] + coords) + "\n")
    with pytest.raises(ValueError, match=r"could not parse the structure file at row 0 \(id "
                                         r"'POSCAR_v4'\).*does not name its elements.*as H, "
                                         r"He: add the element line"):
        load_structures(tmp_path)
    # symbols after the coordinates name them: read as written
    (tmp_path / "POSCAR_v4").write_text("\n".join(vasp5[:5] + vasp5[6:]) + "\n")
    _, [s] = load_structures(tmp_path)
    assert s.composition.reduced_formula == "NaCl"


def test_load_structures_csv_without_target(small_csv, tmp_path):
    path, rows = small_csv
    bare = tmp_path / "bare.csv"
    rows.drop(columns=["heat_all"]).drop(index=2).to_csv(bare, index=False)
    ids, X = load_structures(bare)
    assert ids == rows["material_id"].drop(index=2).tolist()
    _same_cells(X, structures_from_cif(rows["cif"].drop(index=2)))
    df = load_structures(bare, as_frame=True)
    assert list(df.columns)[:2] == ["id", "structure"] and "heat_all" not in df.columns
    assert "cif" not in df.columns and "material_id" not in df.columns
    # no id column: row numbers; errors name rows as load_csv does
    rows.drop(columns=["material_id"]).to_csv(bare, index=False)
    with pytest.raises(ValueError, match=r"row 2 of .*bare.csv"):
        load_structures(bare)
    with pytest.warns(UserWarning, match="skipped 1 of 4 rows"):
        ids, X = load_structures(bare, on_error="skip")
    assert ids == [0, 1, 3] and len(X) == 3
    with pytest.raises(ValueError, match="cif_column='structure'"):
        load_structures(bare, cif_column="structure")
    with pytest.raises(ValueError, match="id_column='nope'"):
        load_structures(bare, id_column="nope")


def test_load_structures_matbench_and_mlearn(tmp_path):
    path = shared_path(*JDFT2D)
    ids, X = load_structures(path)
    df = load_matbench_json(path, as_frame=True)
    assert ids == df["id"].tolist() and len(X) == 508
    assert list(load_structures(path, as_frame=True).columns) == [
        "id", "structure", "exfoliation_en"]

    path = shared_path("mlearn", "Si.id_prop.json")
    with open(path) as fh:
        raw = json.load(fh)
    ids, X = load_structures(path)
    assert ids == [r["jid"] for r in raw]
    _same_cells(X[:5], load_mlearn(path)[0][:5])
    # structures without energies (new ones to predict)
    bare = tmp_path / "new.json"
    bare.write_text(json.dumps([{"jid": r["jid"], "atoms": r["atoms"]} for r in raw[:3]]))
    ids, X = load_structures(bare)
    assert ids == [r["jid"] for r in raw[:3]] and len(X) == 3
    assert list(load_structures(bare, as_frame=True).columns) == ["id", "structure"]
    with pytest.raises(ValueError, match=r"entry 0 .*no numeric total_energy.*load_structures"):
        load(bare)


def test_fast_cif_lattice_is_pymatgens_bit_for_bit():
    """The fast reader's lattice matrix is ``Lattice.from_parameters``'s to the
    last bit (the reference checkpoints' tie cuts depend on exact distances),
    over random triclinic cells and the usual 90 / 120 degree ones; a cell
    with an angle of 0 degrees (a division by zero) is left to pymatgen."""
    from pymatgen.core import Lattice

    from skcrystal.datasets._cif import _lattice_matrix

    rng = np.random.default_rng(0)
    params = [tuple(rng.uniform(1, 30, 3)) + tuple(rng.uniform(20, 160, 3))
              for _ in range(3000)]
    params += [(3.9, 3.9, 3.9, 90.0, 90.0, 90.0), (3.1, 3.1, 5.0, 90.0, 90.0, 120.0),
               (4.27928426, 4.27928426, 4.27928426, 90.00000000, 90.00000000, 60.0)]
    for p in params:
        assert np.array_equal(_lattice_matrix(*map(float, p)),
                              Lattice.from_parameters(*p).matrix), p
    for bad in [(3.0, 3.0, 3.0, 0.0, 90.0, 90.0), (3.0, 3.0, 3.0, 90.0, 0.0, 90.0)]:
        with pytest.raises(_NotSimple):
            _lattice_matrix(*bad)


@pytest.mark.parametrize("cell, declined", [
    ("_cell_length_c 0.005", True),   # thinner than CifParser accepts
    ("_cell_angle_alpha 0", True),
    ("_cell_angle_beta 180", True),   # sin(180 deg) is 1e-16: a flat cell
    ("_cell_length_c 3.0", False),
])
def test_fast_cif_reader_leaves_degenerate_cells_to_pymatgen(cell, declined):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    cif = str(CifWriter(Structure(Lattice.from_parameters(3.0, 3.2, 3.4, 80, 95, 100),
                                  ["Ca", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])))
    key = cell.split()[0]
    lines = [cell if line.startswith(key) else line for line in cif.splitlines()]
    text = "\n".join(lines)
    if declined:
        with pytest.raises(_NotSimple):
            _fast_parse(text)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert _same(_fast_parse(text), _pymatgen_parse(text))


@pytest.mark.parametrize("text, answered", [
    ("0012,1.5\n1000041,-2e-3\n", True),          # ids stay text
    ("a.cif,1\r\nb.cif,2\r\n\r\n", True),          # CRLF, a blank line
    ("\ufeffmp-1,1.5\nmp-2,2\n", True),            # a byte-order mark
    ("mp-1, 1.5\nmp-2,2\n", False),                 # a space before a number
    ("mp-1\nmp-2\n", True),                        # ids only
    (" mp-1 ,3,4\nmp-2,5,6e+1\n", True),           # two targets, an id with spaces
    ("id,target\nmp-1,1\n", False),                # a header row
    ('"mp-1",1\nmp-2,2\n', False),                 # quoted
    ("NA,1\nmp-2,2\n", False),                     # read as missing by pandas
    ("mp-1,1\nmp-2,2,3\n", False),                 # ragged
    ("mp-1,1_000\n", False), ("mp-1,inf\n", False), ("mp-1,\n", False),
    ("", False), ("\n\n", False), ("  \nmp-1,1\n", False),
])
def test_id_prop_read_without_pandas_gives_the_ids_pandas_gives(tmp_path, text, answered):
    """``skcrystal predict`` lists a folder before pandas is imported: the
    quick reader answers only where the ids and targets are those of the
    pandas reader, and leaves every other file to it."""
    from skcrystal.datasets._files import _id_prop_quick, _read_id_prop

    (tmp_path / "id_prop.csv").write_bytes(text.encode())
    quick = _id_prop_quick(tmp_path)
    assert (quick is not None) == answered
    if quick is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _assert_same_id_prop(quick, _read_id_prop(tmp_path, targets=False))
    # the shared samples are read quickly, as pandas reads them
    for name in ("cgcnn_sample", "alignn_sample"):
        folder = shared_path(name)
        _assert_same_id_prop(_id_prop_quick(folder), _read_id_prop(folder))


def _assert_same_id_prop(quick, read):
    assert quick[0] == read[0] and quick[1] == read[1]
    if read[2] is None:
        assert quick[2] is None
    else:  # the same doubles, bit for bit
        assert quick[2].dtype == read[2].dtype and quick[2].shape == read[2].shape
        assert quick[2].tobytes() == read[2].tobytes()


def test_id_prop_targets_read_without_pandas_are_pandas_doubles(tmp_path):
    """Targets of every length and scale, as a user's id_prop.csv may write
    them: where the quick reader takes a number, it is the double pandas
    reads, to the bit; numbers pandas may round otherwise are left to it."""
    from skcrystal.datasets._files import _id_prop_quick, _read_id_prop

    rng = np.random.default_rng(0)
    cells = []
    for _ in range(4000):
        x = float(rng.normal() * 10.0 ** rng.integers(-25, 25))
        fmt = str(rng.choice(["{!r}", "{:.3f}", "{:.15g}", "{:.17g}", "{:.6e}", "{:.20f}", "{:d}"]))
        cells.append(fmt.format(int(x) if fmt == "{:d}" else x))
    cells += ["0.1", "-0.0", "5.", ".5", "+.5e-3", "1e22", "1e-22", "9007199254740993",
              "123456789012345", "0.000000000000001234"]
    (tmp_path / "id_prop.csv").write_text("".join(f"m{i},{c}\n" for i, c in enumerate(cells)))
    read = _read_id_prop(tmp_path, targets=False)
    quick = _id_prop_quick(tmp_path)
    assert quick is None  # some cells are left to pandas: the whole file is
    from skcrystal.datasets._files import _plain_float
    taken = 0
    for c, value in zip(cells, read[2]):
        mine = _plain_float(c)
        if mine is not None:
            taken += 1
            assert np.float64(mine).tobytes() == value.tobytes(), c
    assert taken > 1500  # the everyday numbers are read here

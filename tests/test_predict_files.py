"""``skcrystal predict`` on a folder of structure files: the file -> graph path
(skcrystal.graphs.files), its workers, its errors, and the end-to-end
benchmark's machinery against the reference CGCNN pipeline."""
import importlib.util
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skcrystal.cli import main
from skcrystal.graphs import GraphBuilder
from skcrystal.graphs.files import read_file_graphs
from skcrystal.inference import predict_files

from conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = "formation-energy-per-atom"
FIELDS = ("atomic_numbers", "positions", "lattice", "center", "neighbor", "distances",
          "offsets", "vectors")


def _params(mode):
    return dict(radius=8.0, max_neighbors=12, tie_tol=1e-3, grow_radius=False,
                neighbor_mode=mode, symmetrize=None)


def _same_graph(g, h):
    return all(np.array_equal(getattr(g, k), getattr(h, k)) for k in FIELDS)


@pytest.fixture(scope="module")
def cif_folder(tmp_path_factory):
    """24 CIFs written by pymatgen (perovskites, as users' files are) + the
    CGCNN sample's CIFs (other writers: symmetry operations, labels)."""
    from pymatgen.io.cif import CifWriter

    from skcrystal.datasets import load_perovskites
    folder = tmp_path_factory.mktemp("cifs")
    structures, _ = load_perovskites(n=24)
    for i, s in enumerate(structures):
        CifWriter(s).write_file(folder / f"p{i:02d}.cif")
    for f in sorted(shared_path("cgcnn_sample").glob("*.cif")):
        shutil.copy(f, folder / f"sample_{f.name}")
    return folder


@pytest.mark.parametrize("mode", ["reference", "keep_ties"])
def test_file_graphs_equal_pymatgen_structure_graphs(cif_folder, mode):
    """Every file's graph is the one built from pymatgen's own reading of it,
    whether the fast CIF reader took the file or handed it to pymatgen."""
    from pymatgen.core import Structure
    paths = sorted(cif_folder.glob("*.cif")) + sorted(
        shared_path("alignn_sample").glob("POSCAR*"))[:5]
    results = read_file_graphs([str(p) for p in paths], _params(mode))
    builder = GraphBuilder(**_params(mode))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, (graph, err) in zip(paths, results):
            assert err is None, err
            s = Structure.from_file(str(path)) if path.suffix == ".cif" else \
                Structure.from_str(path.read_text(), fmt="poscar")
            assert _same_graph(graph, builder.build(s)), path.name


def test_poscar_files_give_the_graphs_of_pymatgens_structures(tmp_path):
    """Read by the fast POSCAR reader or declined to pymatgen, a POSCAR's graph
    is the one of the Structure pymatgen reads from it."""
    from pymatgen.io.vasp import Poscar
    from test_datasets import _poscar_variants

    from skcrystal.datasets._io import _parse_poscar

    def pymatgen(text):
        return Poscar.from_str(text, read_velocities=False).structure

    paths, texts = [], []
    for i, (text, _) in enumerate(_poscar_variants()):
        try:
            _parse_poscar(text)  # pymatgen's reading, or its refusal of a VASP 4 file
        except Exception:  # noqa: BLE001 - refused: not a case here
            continue
        paths.append(str(tmp_path / f"POSCAR_{i}"))
        texts.append(text)
        Path(paths[-1]).write_text(text)
    assert len(paths) >= 10
    for mode in ("reference", "keep_ties"):
        builder = GraphBuilder(**_params(mode))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path, text, (graph, err) in zip(paths, texts,
                                                read_file_graphs(paths, _params(mode))):
                if "Xx" in text:  # declined, then refused as pymatgen reads it
                    assert graph is None and "dummy species Xx0+ (site 2)" in err.reason
                    continue
                assert err is None, err
                assert _same_graph(graph, builder.build(pymatgen(text))), path


def test_workers_give_the_serial_graphs(cif_folder):
    paths = sorted(cif_folder.glob("*.cif"))
    builder = GraphBuilder(neighbor_mode="reference")

    def graphs(n_jobs):
        out = []
        for offset, errors, valid, chunk, pred, _ in predict_files(
                paths, builder, n_jobs=n_jobs, chunk_size=5):
            assert not errors and pred is None and offset == len(out)
            assert valid == list(range(len(chunk)))
            out.extend(chunk)
        return out

    serial, parallel = graphs(None), graphs(2)
    assert len(serial) == len(parallel) == len(paths)
    assert all(_same_graph(a, b) for a, b in zip(serial, parallel))


@pytest.mark.parametrize("network_in_workers", [False, True])
def test_workers_predict_what_this_process_predicts(cif_folder, tmp_path, monkeypatch,
                                                    network_in_workers):
    """With workers, the network runs here on the batches they send (up to
    NETWORK_HERE_UP_TO processes) or in the workers, which send predictions:
    the same values to the bit either way, the same errors at the same
    positions, the atomic numbers for the untrained-embedding check, no
    graphs yielded."""
    from skcrystal import pretrained
    from skcrystal.graphs import files

    monkeypatch.setattr(files, "NETWORK_HERE_UP_TO", 1 if network_in_workers else 2)
    predictor, _ = pretrained.load_cgcnn_predictor(CHECKPOINT)
    (tmp_path / "bad.cif").write_text("not a CIF\n")
    paths = sorted(cif_folder.glob("*.cif"))
    paths.insert(5, tmp_path / "bad.cif")

    def run(n_jobs):
        errors, valid, preds, numbers = [], [], [], []
        for offset, err, ok, graphs, pred, z in predict_files(
                paths, predictor.builder, predictor, n_jobs=n_jobs, chunk_size=4,
                numbers=True):
            assert graphs is None  # predicted where they were built
            errors += [(offset + j, e.reason) for j, e in err]
            valid += [offset + j for j in ok]
            preds.append(pred)
            numbers += z
        return errors, valid, np.concatenate(preds), numbers

    serial, parallel = run(None), run(2)
    assert serial[0] == parallel[0] and [i for i, _ in serial[0]] == [5]
    assert serial[1] == parallel[1] == [i for i in range(len(paths)) if i != 5]
    assert np.array_equal(serial[2], parallel[2])
    assert all(np.array_equal(a, b) for a, b in zip(serial[3], parallel[3]))
    # and what the estimator predicts on the structures
    from skcrystal.datasets import load_structures
    _, structures = load_structures(cif_folder)
    np.testing.assert_allclose(serial[2], pretrained.load(CHECKPOINT).predict(structures),
                               rtol=0, atol=1e-6)


def _predict_csvs(data, out_dir, *extra):
    """The CSVs ``skcrystal predict`` writes on ``data`` with 2 processes and
    with 1 (paths, in that order)."""
    outs = []
    for jobs in ("2", "1"):
        out = Path(out_dir) / f"out{jobs}.csv"
        _cli_csv(["predict", CHECKPOINT, str(data), "--n-jobs", jobs, *extra], out)
        outs.append(out)
    return outs


@pytest.mark.parametrize("layout", ["files", "cgcnn"])
def test_chunks_started_before_the_model_is_loaded_are_used(cif_folder, tmp_path,
                                                            monkeypatch, layout):
    """``skcrystal predict`` reads a reference checkpoint's graph needs without
    torch and hands the first chunks to the worker before loading the
    weights; the prediction uses them (they match its call) and writes the
    serial CSV. Chunks started for other graphs are given up, not used.
    A CGCNN folder's id_prop.csv is read without pandas for this (and with
    it for the CSV's columns): the files are the same."""
    from skcrystal import _parallel, pretrained
    from skcrystal.graphs.files import _builder_params, start_file_chunks

    folder = tmp_path / "many"
    folder.mkdir()
    texts = [f.read_text() for f in sorted(cif_folder.glob("p*.cif"))]
    for k in range(600):
        (folder / f"c{k:03d}.cif").write_text(texts[k % len(texts)])
    if layout == "cgcnn":
        (folder / "id_prop.csv").write_text("".join(f"c{k:03d},{k / 7:.6f}\n"
                                                    for k in range(600)))
    # the first chunks are handed over before the pandas listing
    from skcrystal import cli
    from skcrystal.datasets import _files

    events = []
    for owner, name in ((_parallel, "start_chunks"), (cli, "_file_listing"),
                        (_files, "_read_id_prop")):
        monkeypatch.setattr(owner, name, lambda *a, _f=getattr(owner, name), _n=name, **kw: (
            events.append(_n), _f(*a, **kw))[1])
    given_up = []
    cancel = _parallel.StartedChunks.cancel
    monkeypatch.setattr(_parallel.StartedChunks, "cancel",
                        lambda self: (given_up.append(len(self.futures)), cancel(self)))
    matched = []
    matches = _parallel.StartedChunks.matches
    monkeypatch.setattr(_parallel.StartedChunks, "matches",
                        lambda self, *a: matched.append(matches(self, *a)) or matched[-1])
    two, one = _predict_csvs(folder, tmp_path)
    assert matched == [True] and given_up == [] and two.read_bytes() == one.read_bytes()
    assert events[0] == "start_chunks" and "_file_listing" in events
    if layout == "cgcnn":
        assert pd.read_csv(one).shape == (600, 3)  # id, the target, the prediction
    # started with other graph parameters: given up, and the predictions unchanged
    predictor, _ = pretrained.load_cgcnn_predictor(CHECKPOINT)
    paths = sorted(folder.glob("*.cif"))
    other = _builder_params(GraphBuilder(radius=6.0, max_neighbors=12,
                                         neighbor_mode="reference").validate())
    started = start_file_chunks(paths, other, predictor.supported_elements, 2)
    assert started is not None and len(started.futures) == 3
    got = np.concatenate([c.pred for c in predict_files(paths, predictor.builder, predictor,
                                                        predictor.supported_elements, 2,
                                                        started=started)])
    assert matched[-1] is False and given_up == [3] and not started.futures
    expected = pd.read_csv(one, float_precision="round_trip")
    assert np.array_equal(got, expected["prediction"].to_numpy())


def test_cli_predict_with_workers_names_or_skips_a_bad_file(cif_folder, tmp_path, capsys):
    """More files than one chunk, so the workers run, and a bad file among
    them: named as in one process (it used to be lost with the worker's
    pickled error, BrokenProcessPool), or skipped."""
    folder = tmp_path / "many"
    folder.mkdir()
    text = (cif_folder / "p00.cif").read_text()
    for k in range(300):
        (folder / f"c{k:03d}.cif").write_text(text)
    (folder / "c150_bad.cif").write_text("not a CIF\n")
    capsys.readouterr()
    assert main(["predict", CHECKPOINT, str(folder), "--n-jobs", "2", "-q",
                 "-o", str(tmp_path / "a.csv")]) == 2
    assert "c150_bad.cif: cannot be parsed" in capsys.readouterr().err
    two, one = _predict_csvs(folder, tmp_path, "--on-error", "skip")
    for out in (two, one):
        got = pd.read_csv(out)
        assert len(got) == 300 and "c150_bad" not in set(got["id"])
    assert two.read_bytes() == one.read_bytes()


def test_workers_load_a_model_class_defined_in_a_script(cif_folder, monkeypatch):
    """A module class from a script or a notebook (``__main__``) cannot be
    imported by name in a worker: the predictor travels by value (to workers
    that run the network: more processes than NETWORK_HERE_UP_TO)."""
    from skcrystal import pretrained
    from skcrystal.graphs import files

    monkeypatch.setattr(files, "NETWORK_HERE_UP_TO", 1)
    predictor, _ = pretrained.load_cgcnn_predictor(CHECKPOINT)
    base = type(predictor.module)
    local = type(base.__name__, (base,), {"__module__": "__main__"})
    paths = sorted(cif_folder.glob("*.cif"))
    expected = np.concatenate([c.pred for c in predict_files(paths, predictor.builder,
                                                             predictor, chunk_size=8)])
    predictor.module.__class__ = local
    got = np.concatenate([c.pred for c in predict_files(paths, predictor.builder, predictor,
                                                        n_jobs=2, chunk_size=8)])
    assert np.array_equal(got, expected)


def test_cli_predict_csv_of_cifs_streams_like_a_folder(tmp_path, capsys, monkeypatch):
    """A CSV's CIF column takes the folder's path (no Structure kept, workers
    with --n-jobs): the estimator's predictions, the same CSV serial or with
    workers, bad rows named by row and id or skipped."""
    from pymatgen.io.cif import CifWriter

    from skcrystal import pretrained
    from skcrystal.datasets import load_perovskites
    structures, y = load_perovskites(n=300)
    cifs = [str(CifWriter(s)) for s in structures]
    frame = pd.DataFrame({"material_id": [f"m{k}" for k in range(300)], "cif": cifs,
                          "heat": y})
    good = tmp_path / "good.csv"
    frame.to_csv(good, index=False)
    two, one = _predict_csvs(good, tmp_path)
    assert two.read_bytes() == one.read_bytes()
    # a large CSV gets a process per core by default (counted by rows)
    from skcrystal import cli
    assert cli._auto_n_jobs(good, n_items=299) is None
    monkeypatch.setattr(cli, "AUTO_WORKERS_MIN_FILES", 100)
    n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count()
    assert cli._auto_n_jobs(good, n_items=300) == (min(n_cores, 8) if n_cores >= 2 else None)
    assert main(["predict", CHECKPOINT, str(good), "-q", "-o", str(tmp_path / "auto.csv")]) == 0
    assert (tmp_path / "auto.csv").read_bytes() == one.read_bytes()
    got = pd.read_csv(one)
    assert got["id"].tolist() == frame["material_id"].tolist()
    assert got.columns.tolist() == ["id", "prediction"]
    np.testing.assert_allclose(got["prediction"], pretrained.load(CHECKPOINT).predict(structures),
                               rtol=0, atol=1e-6)
    # a garbage row and a POSCAR where a CIF belongs
    bad = frame.copy()
    bad.loc[5, "cif"] = "not a CIF"
    bad.loc[7, "cif"] = structures[7].to(fmt="poscar")
    bad.loc[9, "cif"] = ""  # an empty cell
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    capsys.readouterr()
    assert main(["predict", CHECKPOINT, str(path), "-q", "-o", str(tmp_path / "x.csv")]) == 2
    assert f"{path} row 5 (id m5): cannot be parsed" in capsys.readouterr().err
    assert main(["predict", CHECKPOINT, str(path), "--n-jobs", "2", "--on-error", "skip",
                 "-o", str(tmp_path / "s.csv")]) == 0
    err = capsys.readouterr().err
    assert "skipped 3 of 300" in err and "looks like a VASP POSCAR" in err
    assert f"{path} row 9 (id m9): is empty" in err
    kept = pd.read_csv(tmp_path / "s.csv")
    assert len(kept) == 297 and not {"m5", "m7", "m9"} & set(kept["id"])
    # the wrong column given as the CIF column
    assert main(["predict", CHECKPOINT, str(good), "--cif-column", "heat", "-q",
                 "-o", str(tmp_path / "h.csv")]) == 2
    assert "row 0 (id m0): holds a float (" in capsys.readouterr().err


def test_a_chunk_with_a_non_finite_output_comes_back_as_graphs(cif_folder):
    """The estimator, not the predictor, then predicts them (its error names
    the structure), so the graphs return with their extras."""
    from skcrystal import pretrained
    from skcrystal.graphs.files import _builder_params as params_of
    from skcrystal.inference import GraphPredictor, predict_file_chunk

    class NonFinite(GraphPredictor):
        def predict(self, graphs):
            return None

    predictor, _ = pretrained.load_cgcnn_predictor(CHECKPOINT)
    predictor.__class__ = NonFinite
    paths = [str(p) for p in sorted(cif_folder.glob("*.cif"))[:3]]
    errors, valid, graphs, pred, _ = predict_file_chunk(
        paths, params_of(predictor.builder), model=predictor)
    assert not errors and valid == [0, 1, 2] and pred is None and len(graphs) == 3


def test_bad_files_are_named(tmp_path):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter
    good = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(good).write_file(tmp_path / "good.cif")
    (tmp_path / "garbage.cif").write_text("this is not a CIF\n")
    # read by the fast reader, refused by the checks: atoms 0.2 Å apart
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    CifWriter(close).write_file(tmp_path / "close.cif")
    after = Structure(Lattice.cubic(5.0), ["K", "Br"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(after).write_file(tmp_path / "after.cif")
    paths = [str(tmp_path / n) for n in ("good.cif", "garbage.cif", "close.cif", "after.cif")]
    (g, e0), (_, e1), (_, e2), (g3, e3) = read_file_graphs(paths, _params("reference"))
    assert g is not None and e0 is None
    assert e1.parse and e1.path == paths[1] and "cannot be parsed" in e1.reason
    assert not e2.parse and "overlapping" in e2.reason and "NaCl" in e2.reason
    # the chunk's graphs are cut together: the refused files take nothing from the others
    builder = GraphBuilder(**_params("reference"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert e3 is None and _same_graph(g3, builder.build(Structure.from_file(paths[3])))
        assert _same_graph(g, builder.build(Structure.from_file(paths[0])))
    # a VASP 4 POSCAR (no element names anywhere): named, not read as H and He
    lines = good.to(fmt="poscar").splitlines()
    coords = [" ".join(line.split()[:3]) for line in lines[8:]]
    (tmp_path / "POSCAR_v4").write_text("\n".join(lines[:5] + lines[6:8] + coords) + "\n")
    [(g3, e3)] = read_file_graphs([str(tmp_path / "POSCAR_v4")], _params("reference"))
    assert g3 is None and e3.parse and "does not name its elements" in e3.reason
    (tmp_path / "empty.cif").write_text("\n")
    [(g4, e4)] = read_file_graphs([str(tmp_path / "empty.cif")], _params("reference"))
    assert g4 is None and e4.parse and e4.reason == "is empty"


def test_cli_predict_names_a_bad_file_or_skips_it(cif_folder, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(cif_folder, folder)
    (folder / "p03.cif").write_text("data_x\n_cell_length_a 3\n")
    code = main(["predict", CHECKPOINT, str(folder), "-o", str(tmp_path / "p.csv"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "p03.cif" in err and "--on-error skip" in err
    code = main(["predict", CHECKPOINT, str(folder), "-o", str(tmp_path / "p.csv"), "-q",
                 "--on-error", "skip", "--error-log", str(tmp_path / "s.tsv")])
    err = capsys.readouterr().err
    assert code == 0 and "skipped 1 of" in err and "p03.cif" in err
    predicted = pd.read_csv(tmp_path / "p.csv")["id"].tolist()
    assert "p03" not in predicted and "p04" in predicted


def test_files_that_differ_only_in_cif_gz_keep_their_names_as_ids(cif_folder, tmp_path):
    """x.cif and x.cif.gz would both be named x: they keep their file names, the
    other files lose .cif as the reference predict.py writes them."""
    import gzip

    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("p00.cif", "p01.cif"):
        shutil.copy(cif_folder / name, folder / name)
    (folder / "p00.cif.gz").write_bytes(gzip.compress((cif_folder / "p00.cif").read_bytes()))
    out = tmp_path / "p.csv"
    assert main(["predict", CHECKPOINT, str(folder), "-o", str(out), "-q"]) == 0
    got = pd.read_csv(out)
    assert sorted(got["id"]) == ["p00.cif", "p00.cif.gz", "p01"]
    by_id = dict(zip(got["id"], got["prediction"]))
    # the same graph at two rows of one batch: on some CPUs the BLAS rounds a
    # row by its position (MKL on AMD EPYC: a few float32 ulps), so not to the bit
    assert by_id["p00.cif"] == pytest.approx(by_id["p00.cif.gz"], rel=1e-5)


def test_cli_predict_folder_matches_estimator_predict(cif_folder, tmp_path):
    """The file path predicts what the estimator predicts on the structures,
    serial or with workers."""
    from skcrystal import pretrained
    from skcrystal.datasets import load_structures
    ids, structures = load_structures(cif_folder)
    expected = pretrained.load(CHECKPOINT).predict(structures)
    for extra in ([], ["--n-jobs", "2"]):
        out = tmp_path / f"p{len(extra)}.csv"
        assert main(["predict", CHECKPOINT, str(cif_folder), "-o", str(out), "-q",
                     *extra]) == 0
        got = pd.read_csv(out)
        # named as the reference predict.py names them: the file without .cif
        assert got["id"].tolist() == [i[:-len(".cif")] for i in ids]
        np.testing.assert_allclose(got["prediction"], expected, rtol=0, atol=1e-6)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_predict",
                                                  ROOT / "benchmarks" / "bench_predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_pipelines_agree(tmp_path):
    """The benchmark's reference pipeline and ``skcrystal predict`` on a few
    generated CIFs predict the same values."""
    shared_path("perovskites")
    shared_path("jdft2d")
    bench = _bench()
    folder = bench.make_folder(tmp_path, 12)
    assert len(list(folder.glob("*.cif"))) == 12 and (folder / "atom_init.json").exists()
    ids = pd.read_csv(folder / "id_prop.csv", header=None, dtype={0: str})[0].tolist()
    ckpt = bench.checkpoint_path()
    ref = bench.run_reference(folder, ids, ckpt)
    _, ours = bench.run_cli(folder, ckpt, tmp_path / "pred.csv")
    max_diff, n_bad, n = bench.compare(ref, ours)
    assert n == 12 and n_bad == 0 and max_diff < 1e-4


def test_checkpoint_loads_without_building_an_optimizer():
    """Predicting needs no optimizer (building one imports torch._dynamo);
    it appears, as initialize builds it, when something reads it."""
    import torch

    from skcrystal import pretrained
    est = pretrained.load(CHECKPOINT)
    assert "optimizer_" not in est.__dict__
    assert isinstance(est.optimizer_, torch.optim.AdamW)
    assert est.optimizer_ is est.__dict__["optimizer_"]


def test_elements_without_features_are_named(tmp_path):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(s).write_file(tmp_path / "nacl.cif")
    [(graph, err)] = read_file_graphs([str(tmp_path / "nacl.cif")], _params("reference"),
                                      supported={11})
    assert graph is None and "no atom features: Cl" in err.reason


def _cli_csv(args, path):
    assert main([*args, "-o", str(path), "-q"]) == 0
    return path.read_bytes()


def test_checkpoint_without_estimator_writes_the_estimator_paths_csv(cif_folder, tmp_path):
    """A reference checkpoint on a folder is predicted without the estimator
    (no scikit-learn); the CSV is byte for byte the one the estimator path
    writes (the same checkpoint pickled as an estimator, as `skcrystal fit`
    saves models), serial or with workers."""
    import pickle

    from skcrystal import pretrained
    folder = tmp_path / "data"
    shutil.copytree(cif_folder, folder)
    names = sorted(p.name[:-len(".cif")] for p in folder.glob("*.cif"))
    # an id_prop.csv with targets: the MAE line is computed too
    (folder / "id_prop.csv").write_text("".join(f"{n},{0.1 * k}\n" for k, n in
                                                enumerate(names)))
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(pretrained.load(CHECKPOINT)))
    expected = _cli_csv(["predict", str(model), str(folder)], tmp_path / "est.csv")
    for extra in ([], ["--n-jobs", "2"]):
        got = _cli_csv(["predict", CHECKPOINT, str(folder), *extra], tmp_path / "lean.csv")
        assert got == expected, extra
    path = pretrained.path_of(CHECKPOINT)
    assert _cli_csv(["predict", str(path), str(folder)], tmp_path / "path.csv") == expected


def test_checkpoint_predict_imports_no_sklearn_nor_pandas(cif_folder, tmp_path):
    # (scipy may come with pymatgen's CIF parser, which reads the sample's
    # CIFs with symmetry operations)
    import subprocess
    import sys

    out = tmp_path / "p.csv"
    code = ("import sys; from skcrystal.cli import main; "
            f"code = main(['predict', {CHECKPOINT!r}, {str(cif_folder)!r}, '-o', {str(out)!r}]); "
            "print(code, sorted(m for m in ('sklearn', 'skorch', 'pandas') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "0 []", proc.stderr


def test_non_finite_batches_go_to_the_estimator(cif_folder, tmp_path, monkeypatch):
    """Where the predictor sees a non-finite output it hands the batch to the
    estimator (whose error names the structures): here it finds none, so the
    predictions are unchanged."""
    from skcrystal.inference import GraphPredictor
    expected = _cli_csv(["predict", CHECKPOINT, str(cif_folder)], tmp_path / "a.csv")
    calls = []
    monkeypatch.setattr(GraphPredictor, "batch_outputs",
                        lambda self, batches: calls.append(len(list(batches))))
    assert _cli_csv(["predict", CHECKPOINT, str(cif_folder)], tmp_path / "b.csv") == expected
    assert calls  # the predictor saw the batches (and gave them up)


def test_a_chunk_predicted_here_with_a_non_finite_output_comes_back_as_graphs(
        cif_folder, monkeypatch):
    """The batches a worker sent (or this process collated) are read again for
    their graphs when the network's output is not finite, so the caller can
    hand them to the estimator."""
    from skcrystal import pretrained
    from skcrystal.inference import GraphPredictor

    predictor, _ = pretrained.load_cgcnn_predictor(CHECKPOINT)
    paths = sorted(cif_folder.glob("*.cif"))[:6]
    monkeypatch.setattr(GraphPredictor, "batch_outputs", lambda self, batches: None)
    for n_jobs in (None, 2):
        chunks = list(predict_files(paths, predictor.builder, predictor, n_jobs=n_jobs,
                                    chunk_size=3))
        assert [c.pred for c in chunks] == [None, None]
        assert [len(c.graphs) for c in chunks] == [3, 3] and not any(c.errors for c in chunks)


@pytest.mark.parametrize("shape", [(50,), (50, 3)])
def test_mae_line_is_sklearns(shape):
    from sklearn.metrics import mean_absolute_error

    from skcrystal.cli import _score_line
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=shape), rng.normal(size=shape)
    assert _score_line("regression", y, p) == ("MAE", float(mean_absolute_error(y, p)))
    # non-finite targets: scikit-learn's checks decide (here: an error)
    y[0] = np.nan
    with pytest.raises(ValueError):
        _score_line("regression", y, p)


def test_large_folders_get_workers_by_default(cif_folder, tmp_path, monkeypatch):
    import os

    from skcrystal import cli
    n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count()
    assert cli._auto_n_jobs(cif_folder) is None  # a few files: this process
    assert cli._auto_n_jobs(tmp_path / "missing") is None
    monkeypatch.setattr(cli, "AUTO_WORKERS_MIN_FILES", 3)
    assert cli._auto_n_jobs(cif_folder) == (min(n_cores, 8) if n_cores >= 2 else None)
    (tmp_path / "notes.txt").write_text("")
    assert cli._auto_n_jobs(tmp_path) is None  # counts structure files only
    # the predictions do not depend on it
    out = tmp_path / "auto.csv"
    assert main(["predict", CHECKPOINT, str(cif_folder), "-o", str(out), "-q"]) == 0
    serial = tmp_path / "serial.csv"
    assert main(["predict", CHECKPOINT, str(cif_folder), "-o", str(serial), "-q",
                 "--n-jobs", "1"]) == 0
    assert out.read_bytes() == serial.read_bytes()


def test_an_error_after_the_workers_started_is_one_line(cif_folder, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "skcrystal", "predict",
                           str(tmp_path / "missing.pth.tar"), str(cif_folder), "--n-jobs", "2",
                           "-o", str(tmp_path / "p.csv")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"skcrystal: error: checkpoint file not found: {tmp_path / 'missing.pth.tar'}"]


def test_the_command_ends_quickly_and_loses_nothing(cif_folder, tmp_path):
    """``python -m skcrystal`` (skcrystal.cli.run) kills its idle workers and
    skips the collector's passes at exit: the CSV written to a pipe is whole,
    the exit code is the command's, and nothing is reported as leaked."""
    import subprocess
    import sys

    expected = tmp_path / "in_process.csv"
    assert main(["predict", CHECKPOINT, str(cif_folder), "-o", str(expected),
                 "--n-jobs", "1"]) == 0
    proc = subprocess.run([sys.executable, "-m", "skcrystal", "predict", CHECKPOINT,
                           str(cif_folder), "--out", "-", "--n-jobs", "2", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected.read_text()
    assert proc.stderr == ""


@pytest.mark.filterwarnings("ignore:.*batch norm")  # one epoch: stale statistics, as meant
@pytest.mark.parametrize("name", ["alignn", "crystograph", "crystalnet"])
def test_models_with_graph_extras_predict_files_like_the_estimator(name, tmp_path):
    """Models whose module reads graph extras (line graphs, positional
    encodings, reverse edges): the worker computes them, collates them into
    the batches it sends, and the predictions equal the estimator's on the
    structures, to the bit, with 1 process and with 2."""
    from pymatgen.io.cif import CifWriter

    from _estimators import make
    from skcrystal.datasets import load_perovskites, load_structures
    from skcrystal.inference import GraphPredictor

    X, y = load_perovskites(n=40)
    est = make(name, max_epochs=1).fit(X[:24], y[:24])
    predictor = GraphPredictor.from_estimator(est)
    assert predictor is not None and predictor.graph_extras
    paths = []
    for i, s in enumerate(X[24:]):
        CifWriter(s).write_file(tmp_path / f"s{i:02d}.cif")
        paths.append(tmp_path / f"s{i:02d}.cif")
    _, read = load_structures(tmp_path)  # the structures as the files hold them
    # batch by batch as the files go (chunks of 8): some BLAS round a row by
    # its position in the batch, so only the same batches can agree to the bit
    expected = np.concatenate([np.asarray(est.predict(read[j:j + 8])) for j in (0, 8)])
    for n_jobs in (None, 2):
        got = np.concatenate([c.pred for c in predict_files(
            paths, est._builder(), predictor, est.module_.supported_elements, n_jobs,
            chunk_size=8)])
        assert np.array_equal(got, expected), n_jobs


def test_predictions_csv_is_pandas_csv_byte_for_byte(tmp_path):
    """The CSV written without pandas is the one pandas writes: floats of
    every scale (shortest repr, -0.0, inf, NaN as an empty cell), ids that
    need quoting, whole-number ids; other columns go through pandas."""
    import io

    from skcrystal.cli import _write_csv

    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, size=n)
    x[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e16, 1e-5, 5e-324]
    ids = [f"mp-{i}" for i in range(n)]
    ids[:4] = ['a,b', 'say "hi"', "", "line\nbreak"]
    cases = [
        {"id": ids, "target": x, "prediction": rng.normal(size=n)},
        {"id": list(range(n)), "prediction": x.astype(np.float32).astype(np.float64)},
        {"id": ids, "prediction": x, "flag": np.arange(n) % 2 == 0},      # pandas' way
        {"id": ids, "target": np.arange(n), "prediction": x},             # int64: pandas'
    ]
    for k, columns in enumerate(cases):
        expected = pd.DataFrame(columns).to_csv(index=False)
        path = tmp_path / f"{k}.csv"
        _write_csv(columns, path)
        assert path.read_bytes() == pd.DataFrame(columns).to_csv(index=False).encode(), k
        stream = io.StringIO()
        _write_csv(columns, stream)
        assert stream.getvalue() == expected, k


def test_cli_predict_folder_read_without_pandas_writes_pandas_csv(
        cif_folder, tmp_path, monkeypatch):
    """A folder whose id_prop.csv the quick reader takes and the same folder
    read by pandas give the same CSV, byte for byte."""
    from skcrystal.datasets import _files

    folder = tmp_path / "f"
    folder.mkdir()
    rows = []
    for i, f in enumerate(sorted(cif_folder.glob("p*.cif"))[:6]):
        shutil.copy(f, folder / f.name)
        rows.append(f"{f.stem},{0.1 * i - 0.25:.15g}")
    shutil.copy(shared_path("cgcnn_sample") / "atom_init.json", folder)
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    assert _files._id_prop_quick(folder) is not None
    quick = _cli_csv(["predict", CHECKPOINT, str(folder)], tmp_path / "quick.csv")
    monkeypatch.setattr(_files, "_id_prop_quick", lambda folder: None)
    read = _cli_csv(["predict", CHECKPOINT, str(folder)], tmp_path / "pandas.csv")
    assert quick == read
    assert quick.splitlines()[0] == b"id,target,prediction"


def test_structure_files_read_as_text_mode_reads_them(tmp_path):
    """Files are decoded from bytes in one go: the text a text-mode read
    gives, for CRLF and lone CR newlines, undecodable bytes, a byte-order
    mark, a multi-byte character, and gzip-compressed files."""
    import gzip

    from skcrystal.graphs.files import _read_text

    samples = [b"data_x\r\n_cell_length_a 3\r\n", b"a\rb\r\rc\n\r\n", b"caf\xe9 \xff\xfe ok\n",
               b"\xef\xbb\xbfdata_bom\n", "Å ü\r\n".encode() * 3000, b"", b"\r"]
    for k, data in enumerate(samples):
        for name, write in ((f"{k}.cif", Path.write_bytes),
                            (f"{k}.cif.gz", lambda p, d: p.write_bytes(gzip.compress(d)))):
            path = tmp_path / name
            write(path, data)
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
                assert _read_text(path) == fh.read(), (k, name)

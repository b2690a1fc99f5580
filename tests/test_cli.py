"""The ``skcrystal`` command line, run in-process on 40 bundled perovskites."""
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from skcrystal.cli import CLIError, get_estimator_class, main, parse_param

from conftest import shared_path

# a small, fast network: the tests check the plumbing, not the accuracy
SMALL = ["--param", "module__n_conv=1", "--param", "module__hidden=16",
         "--param", "module__h_fea_len=16", "--seed", "0", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from skcrystal.datasets import load_perovskites

    tmp = tmp_path_factory.mktemp("cli")
    df = load_perovskites(n=40, as_frame=True)
    df["cif"] = [s.to(fmt="cif") for s in df["structure"]]
    df["stable"] = np.where(df["heat_all"] < df["heat_all"].median(), "stable", "unstable")
    df["low_heat"] = df["heat_all"] < df["heat_all"].median()  # True/False
    df = df.drop(columns="structure")
    full, bare = tmp / "train.csv", tmp / "new.csv"
    df.to_csv(full, index=False)
    df.drop(columns=["heat_all", "stable", "low_heat"]).to_csv(bare, index=False)
    return {"tmp": tmp, "csv": full, "bare": bare, "frame": df}


@pytest.fixture(scope="module")
def fitted(data):
    """(model path, exit code, stdout lines) of one 2-epoch fit."""
    import contextlib
    import io

    out = data["tmp"] / "model.pkl"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["fit", str(data["csv"]), "--model", "cgcnn", "--target", "heat_all",
                     "--epochs", "2", "--out", str(out), *SMALL])
    return out, code, buf.getvalue().splitlines()


def test_fit_saves_model_with_metadata(fitted, data):
    path, code, lines = fitted
    assert code == 0
    assert len(lines) == 1 and "train MAE" in lines[0] and "mean predictor" in lines[0]
    with open(path, "rb") as fh:
        est = pickle.load(fh)
    assert type(est).__name__ == "CGCNNRegressor"
    assert est.max_epochs == 2 and est.random_state == 0 and est.verbose == 0
    assert est.get_params()["module__n_conv"] == 1
    meta = est.cli_metadata_
    assert meta["model"] == "cgcnn" and meta["target"] == "heat_all"
    assert meta["n_train"] == 40 and meta["skcrystal_version"]
    assert meta["data"].endswith("train.csv")


def test_predict_without_target(fitted, data, capsys):
    path = fitted[0]
    out = data["tmp"] / "pred.csv"
    assert main(["predict", str(path), str(data["bare"]), "--out", str(out), "-q"]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["id", "prediction"]
    assert pred["id"].tolist() == data["frame"]["material_id"].tolist()
    assert np.isfinite(pred["prediction"]).all()
    # same predictions as the estimator itself
    with open(path, "rb") as fh:
        est = pickle.load(fh)
    from skcrystal.datasets import load_csv
    X, _ = load_csv(data["csv"], target="heat_all")
    np.testing.assert_allclose(pred["prediction"], est.predict(X), rtol=1e-5, atol=1e-6)
    assert capsys.readouterr().out == ""  # the CSV went to the file, nothing else


def test_predict_to_stdout_with_truth(fitted, data, capsys):
    assert main(["predict", str(fitted[0]), str(data["csv"])]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "id,heat_all,prediction" and len(lines) == 41
    # progress and the score against the true targets go to stderr
    assert "reading 40 CIFs" in captured.err and "MAE against the targets" in captured.err


def test_predict_names_a_missing_target_column_before_predicting(fitted, data, tmp_path,
                                                                 capsys):
    """--target that the data lacks fails at once, naming the columns there
    are, before any structure is read or predicted (folder and CSV)."""
    for model, source in (("formation-energy-per-atom", shared_path("cgcnn_sample")),
                          (str(fitted[0]), data["csv"])):
        out = tmp_path / "never.csv"
        assert main(["predict", model, str(source), "-o", str(out), "--target", "gap"]) == 2
        err = capsys.readouterr().err
        assert f"--target 'gap' is not a column of {source}; columns: ['id'" in err
        assert "structures/s" not in err and "predicting" not in err
        assert not out.exists()


def test_predict_folder(fitted, tmp_path):
    folder = shared_path("cgcnn_sample")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(fitted[0]), str(folder), "-o", str(out), "-q"]) == 0
    pred = pd.read_csv(out, dtype={"id": str})
    ids = pd.read_csv(folder / "id_prop.csv", header=None, dtype={0: str})[0].tolist()
    assert pred["id"].tolist() == ids
    assert list(pred.columns) == ["id", "target", "prediction"]


def test_predict_id_prop_without_targets(fitted, tmp_path):
    """The reference predict.py needs dummy targets; an id-only id_prop.csv works here."""
    folder = shared_path("cgcnn_sample")
    ids = pd.read_csv(folder / "id_prop.csv", header=None, dtype={0: str})[0].tolist()[:3]
    for i in ids:
        (tmp_path / f"{i}.cif").write_text((folder / f"{i}.cif").read_text())
    (tmp_path / "id_prop.csv").write_text("\n".join(ids) + "\n")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(fitted[0]), str(tmp_path), "-o", str(out), "-q"]) == 0
    pred = pd.read_csv(out, dtype={"id": str})
    assert pred["id"].tolist() == ids and list(pred.columns) == ["id", "prediction"]


def test_cv_prints_fold_maes(data, capsys):
    code = main(["cv", str(data["csv"]), "--target", "heat_all", "--folds", "2",
                 "--epochs", "1", *SMALL])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    folds = [line.split() for line in out if line.split()[:1] and line.split()[0].isdigit()]
    assert [f[0] for f in folds] == ["1", "2"]
    assert all(float(f[3]) > 0 and float(f[4]) > 0 for f in folds)  # MAE, baseline
    assert out[-1].startswith("mean MAE:") and "±" in out[-1] and "mean predictor" in out[-1]


def test_classification_fit_predict_probabilities(data, capsys):
    model = data["tmp"] / "clf.pkl"
    assert main(["fit", str(data["csv"]), "--target", "stable", "--task", "classification",
                 "--epochs", "1", "-o", str(model), *SMALL]) == 0
    assert "train accuracy" in capsys.readouterr().out
    out = data["tmp"] / "clf.csv"
    assert main(["predict", str(model), str(data["bare"]), "-o", str(out), "-q"]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["id", "prediction", "proba_stable", "proba_unstable"]
    assert set(pred["prediction"]) <= {"stable", "unstable"} and len(pred) == 40
    np.testing.assert_allclose(pred[["proba_stable", "proba_unstable"]].sum(axis=1), 1,
                               atol=1e-5)


# ------------------------------------------------------------------ errors
def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    assert err[-1].startswith("skcrystal: error: ")
    assert not any("Traceback" in line for line in err)
    return code, err[-1]


@pytest.mark.parametrize("argv, words", [
    (["fit", "missing.csv", "--target", "y", "-o", "m.pkl"], ["not found", "missing.csv"]),
    (["predict", "missing.pkl", "x.csv"], ["model file not found"]),
    (["fit", "{csv}", "--model", "cgcn", "--target", "heat_all", "-o", "m.pkl"],
     ["unknown model 'cgcn'", "did you mean 'cgcnn'"]),
    (["fit", "{csv}", "--target", "heat_all", "--param", "max_epochs", "-o", "m.pkl"],
     ["--param expects KEY=VALUE", "'max_epochs'"]),
    (["fit", "{csv}", "--target", "heat_all", "--param", "max_epoch=3", "-o", "m.pkl"],
     ["no parameter 'max_epoch'", "did you mean 'max_epochs'"]),
    (["fit", "{csv}", "--target", "heat_all", "--param", "module__n_con=2", "-o", "m.pkl"],
     ["--param module__n_con: CGCNN has no parameter 'n_con'",
      "did you mean 'module__n_conv'", "Its parameters: n_outputs"]),
    (["fit", "{csv}", "--target", "heat_all", "--param", "iterator_train__num_worker=2",
      "-o", "m.pkl"], ["DataLoader has no parameter", "'iterator_train__num_workers'"]),
    (["fit", "{csv}", "--target", "nope", "-o", "m.pkl"], ["'nope'", "heat_all"]),
    (["fit", "{csv}", "--target", "stable", "-o", "m.pkl"], ["not numeric",
                                                             "--task classification"]),
    (["fit", "{csv}", "--target", "low_heat", "-o", "m.pkl"],
     ["target low_heat holds True/False", "--task classification"]),
    (["fit", "{csv}", "-o", "m.pkl"], ["target is required"]),
    (["cv", "{csv}", "--target", "heat_all", "--folds", "1"], ["--folds"]),
    (["fit", "{csv}", "--target", "heat_all"], ["required", "--out"]),
    (["fit", "{csv}", "--target", "heat_all", "--epochs", "two", "-o", "m.pkl"],
     ["--epochs", "'two'"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["a command is required"]),
])
def test_input_errors_are_one_line_exit_2(data, capsys, tmp_path, argv, words):
    argv = [a.replace("{csv}", str(data["csv"])).replace("m.pkl", str(tmp_path / "m.pkl"))
            for a in argv]
    code, line = _error(capsys, argv + ["-q"] if argv and argv[0] in ("fit", "cv") else argv)
    assert code == 2, line
    for word in words:
        assert word in line, line
    assert not (tmp_path / "m.pkl").exists()


def test_debug_shows_traceback(capsys):
    assert main(["fit", "missing.csv", "--target", "y", "-o", "m.pkl", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("skcrystal: error:")


def test_unknown_model_names_the_closest(capsys, data, tmp_path):
    code, line = _error(capsys, ["fit", str(data["csv"]), "--model", "cgcn", "--target",
                                 "heat_all", "-o", str(tmp_path / "m.pkl")])
    assert code == 2 and "unknown model 'cgcn'" in line and "'cgcnn'" in line


def test_registry_resolves_cgcnn_and_import_paths():
    from skcrystal.estimators import CGCNNClassifier, CGCNNRegressor
    assert get_estimator_class("CGCNN") is CGCNNRegressor
    assert get_estimator_class("cgcnn", "classification") is CGCNNClassifier
    assert get_estimator_class("skcrystal.estimators:CGCNNRegressor") is CGCNNRegressor
    with pytest.raises(CLIError, match="has no class Nope"):
        get_estimator_class("skcrystal.estimators:Nope")


def test_an_estimator_without_skorchs_parameters_from_an_import_path(data, capsys):
    """--model package.module:Class need not be a skorch net: no verbose= forced on it,
    and a shortcut it does not take is named by its option."""
    out = str(data["tmp"] / "baseline.pkl")
    base = ["fit", str(data["csv"]), "--target", "heat_all", "-o", out,
            "--model", "skcrystal.baselines:CompositionBaseline"]
    assert main(base + ["-q"]) == 0, capsys.readouterr().err
    assert main(base + ["--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "--epochs sets max_epochs: CompositionBaseline has no parameter 'max_epochs'" in err
    assert "prefixed parameters" not in err


@pytest.mark.parametrize("text, expected", [
    ("max_epochs=50", ("max_epochs", 50)),
    ("lr=1e-3", ("lr", 1e-3)),
    ("module__pooling=sum", ("module__pooling", "sum")),
    ("module__pooling='sum'", ("module__pooling", "sum")),
    ("max_neighbors=None", ("max_neighbors", None)),
    ("grow_radius=True", ("grow_radius", True)),
    ("optimizer__betas=(0.9, 0.99)", ("optimizer__betas", (0.9, 0.99))),
    (" batch_size = 32 ", ("batch_size", 32)),
    ("cache_dir=/tmp/a=b", ("cache_dir", "/tmp/a=b")),
])
def test_parse_param(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["max_epochs", "=3", "1x=3", "a-b=2"])
def test_parse_param_rejects(text):
    with pytest.raises(CLIError, match="KEY=VALUE"):
        parse_param(text)


def test_python_m_skcrystal_help():
    res = subprocess.run([sys.executable, "-m", "skcrystal", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for word in ("fit", "predict", "cv"):
        assert word in res.stdout


def test_predict_folder_of_files_and_single_file(fitted, data, tmp_path):
    """No id_prop.csv: every CIF/POSCAR file of the folder, ids = sorted file names."""
    from pymatgen.core import Structure
    cifs = data["frame"]["cif"].tolist()[:3]
    for k, cif in enumerate(cifs):
        (tmp_path / f"s{k}.cif").write_text(cif)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(fitted[0]), str(tmp_path), "-o", str(out), "-q"]) == 0
    pred = pd.read_csv(out)
    assert pred["id"].tolist() == ["s0", "s1", "s2"]  # as the reference: no .cif
    one = tmp_path / "one"
    one.mkdir()
    Structure.from_str(cifs[1], fmt="cif").to(filename=str(one / "POSCAR"), fmt="poscar")
    assert main(["predict", str(fitted[0]), str(one / "POSCAR"), "-o", str(out), "-q"]) == 0
    single = pd.read_csv(out)
    assert single["id"].tolist() == ["POSCAR"]
    np.testing.assert_allclose(single["prediction"], pred["prediction"][1:2], rtol=1e-4)


def test_screen_in_chunks_names_the_file_or_skips_it(tmp_path):
    """Large inputs go through est.prepare chunk by chunk; a failing structure is
    found one by one and named by its file (or skipped and reported)."""
    from skcrystal.cli import _Data, _Progress, _screen, _Skipped

    class Est:
        radius, max_neighbors, n_jobs = 8.0, 12, None

        def __init__(self, fail_at=()):
            self.chunks, self.fail_at = [], set(fail_at)

        def prepare(self, X):
            bad = [k for k, x in enumerate(X) if x in self.fail_at]
            if bad:
                raise ValueError(f"X[{bad[0]}] (NaCl) is an empty structure")
            self.chunks.append((X[0], len(X)))
            return []

    def data(n):
        frame = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "structure": list(range(n))})
        return _Data(tmp_path, "files", frame)

    est = Est()
    out, keep = _screen(est, data(2500), _Progress(quiet=True), _Skipped(), "raise")
    assert est.chunks == [(0, 1000), (1000, 1000), (2000, 500)] and len(keep) == 2500
    est = Est()
    _screen(est, data(30), _Progress(quiet=True), _Skipped(), "raise")
    assert est.chunks == [(0, 30)]
    with pytest.raises(CLIError, match=r"s1234: \(NaCl\) is an empty structure"):
        _screen(Est(fail_at=[1234]), data(2500), _Progress(quiet=True), _Skipped(), "raise")
    skipped = _Skipped()
    out, keep = _screen(Est(fail_at=[3, 1234]), data(2500), _Progress(quiet=True), skipped,
                        "skip")
    assert len(out) == 2498 and 3 not in keep and 1234 not in keep
    assert [w for w, _ in skipped.items] == [str(tmp_path / "s3"), str(tmp_path / "s1234")]


def test_fit_with_n_jobs_trains_the_serial_model(tmp_path):
    """--n-jobs 2 builds the graphs in this process and a worker started while
    the data is read (80 structures: enough for the parallel path); the
    trained model is the serial one."""
    from skcrystal.datasets import load_perovskites

    df = load_perovskites(n=80, as_frame=True)
    df["cif"] = [s.to(fmt="cif") for s in df["structure"]]
    df.drop(columns="structure").to_csv(tmp_path / "train.csv", index=False)
    models = {}
    for jobs in ("1", "2"):
        models[jobs] = tmp_path / f"model{jobs}.pkl"
        assert main(["fit", str(tmp_path / "train.csv"), "--target", "heat_all", "--epochs",
                     "1", "--n-jobs", jobs, "--out", str(models[jobs]), *SMALL]) == 0
    with open(models["1"], "rb") as fh:
        serial = pickle.load(fh)
    with open(models["2"], "rb") as fh:
        parallel = pickle.load(fh)
    assert parallel.n_jobs == 2
    X = list(df["structure"][:10])
    np.testing.assert_array_equal(parallel.predict(X), serial.predict(X))

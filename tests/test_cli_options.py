"""Options of the ``skcrystal`` command for real, messy folders (issues 11 and 12):
--on-error, --device, --val-frac/--patience, --test-frac, --resume, --config,
--cif-column/--id-column, a folder's atom_init.json, id_prop.csv headers."""
import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from skorch.callbacks import Callback

from skcrystal.cli import main

from conftest import shared_path

SMALL = ["--param", "module__n_conv=1", "--param", "module__h_fea_len=16", "--seed", "0"]


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def folder(tmp_path):
    """A copy of the shared CGCNN sample folder (10 CIFs, id_prop.csv, atom_init.json)."""
    dest = tmp_path / "data"
    shutil.copytree(shared_path("cgcnn_sample"), dest)
    return dest


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    from skcrystal.datasets import load_perovskites
    df = load_perovskites(n=24, as_frame=True)
    df["cif_text"] = [s.to(fmt="cif") for s in df["structure"]]
    df = df.drop(columns="structure").rename(columns={"material_id": "name"})
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    df.to_csv(path, index=False)
    return path


def _ids(folder):
    return pd.read_csv(folder / "id_prop.csv", header=None, dtype={0: str})[0].tolist()


# ------------------------------------------------------------------ --on-error
def test_on_error_raise_names_the_corrupt_file(folder, tmp_path, capsys):
    bad = folder / f"{_ids(folder)[3]}.cif"
    bad.write_text("this is not a CIF\n")
    code, _, err = _run(capsys, ["fit", str(folder), "--epochs", "1", "-o",
                                 str(tmp_path / "m.pkl"), "-q", *SMALL])
    assert code == 2
    assert bad.name in err and "--on-error skip" in err and "X[" not in err


def test_on_error_skip_reports_and_logs_skipped_files(folder, tmp_path, capsys):
    ids = _ids(folder)
    (folder / f"{ids[3]}.cif").write_text("this is not a CIF\n")
    # parsable but unusable: one atom alone in a 40 Å box has no neighbour
    from pymatgen.core import Lattice, Structure
    Structure(Lattice.cubic(40), ["Na"], [[0, 0, 0]]).to(filename=str(folder / f"{ids[5]}.cif"))
    model = tmp_path / "m.pkl"
    code, out, err = _run(capsys, ["fit", str(folder), "--epochs", "1", "-o", str(model),
                                   "--on-error", "skip", "-q", *SMALL])
    assert code == 0 and "on 8 structures" in out
    assert "skipped 2 of 10" in err and f"{ids[3]}.cif" in err and f"{ids[5]}.cif" in err
    log = pd.read_csv(str(model) + ".skipped.tsv", sep="\t")
    assert len(log) == 2 and "cannot be parsed" in log["reason"][0]
    assert "neighbo" in log["reason"][1]
    # predict skips the same files and says so
    pred_out = tmp_path / "pred.csv"
    code, _, err = _run(capsys, ["predict", str(model), str(folder), "-o", str(pred_out),
                                 "--on-error", "skip", "--error-log",
                                 str(tmp_path / "p.tsv"), "-q"])
    assert code == 0 and "skipped 2 of 10" in err and (tmp_path / "p.tsv").exists()
    assert len(pd.read_csv(pred_out)) == 8


def test_missing_target_is_named_or_skipped(folder, tmp_path, capsys):
    lines = (folder / "id_prop.csv").read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ","
    (folder / "id_prop.csv").write_text("\n".join(lines) + "\n")
    argv = ["fit", str(folder), "--epochs", "1", "-o", str(tmp_path / "m.pkl"), "-q", *SMALL]
    code, _, err = _run(capsys, argv)
    assert code == 2 and f"{_ids(folder)[2]}.cif" in err and "target" in err
    code, out, err = _run(capsys, argv + ["--on-error", "skip"])
    assert code == 0 and "on 9 structures" in out


# ------------------------------------------------------------------ checked before loading
@pytest.mark.parametrize("argv, words", [
    (["--epochs", "-1"], ["max_epochs", "--epochs"]),
    (["--epochs", "0"], ["max_epochs"]),
    (["--param", "module__n_conv=-2"], ["module__n_conv"]),
    (["--param", "device=cuda:x"], ["cuda:x", "not a torch device"]),
    (["--n-jobs", "0"], ["--n-jobs", "non-zero integer"]),
    (["--val-frac", "1.5"], ["--val-frac"]),
    (["--patience", "3"], ["--patience", "--val-frac"]),
])
def test_bad_options_fail_before_reading_data(tmp_path, capsys, argv, words):
    code, _, err = _run(capsys, ["fit", str(tmp_path / "missing"), "-o",
                                 str(tmp_path / "m.pkl"), *argv])
    assert code == 2
    assert all(w in err for w in words) and "not found" not in err


def test_device(monkeypatch, folder, tmp_path, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _run(capsys, ["fit", str(tmp_path / "missing"), "-o",
                                 str(tmp_path / "m.pkl"), "--device", "cuda"])
    assert code == 2 and "no CUDA GPU" in err  # before the (missing) data is read
    model = tmp_path / "m.pkl"
    assert main(["fit", str(folder), "--epochs", "1", "-o", str(model), "--device", "auto",
                 "-q", *SMALL]) == 0
    with open(model, "rb") as fh:
        assert pickle.load(fh).device == "cpu"
    assert main(["predict", str(model), str(folder), "--device", "cpu", "-q",
                 "-o", str(tmp_path / "p.csv")]) == 0


# ------------------------------------------------------------------ splits, checkpoints
def test_val_frac_keeps_best_and_test_frac_writes_predictions(csv, tmp_path, capsys):
    model = tmp_path / "m.pkl"
    code, out, err = _run(capsys, [
        "fit", str(csv), "--target", "heat_all", "--cif-column", "cif_text",
        "--id-column", "name", "--epochs", "4", "--val-frac", "0.25", "--patience", "2",
        "--test-frac", "0.25", "-o", str(model), *SMALL])
    assert code == 0
    assert "test MAE" in out and "best validation loss" in err
    with open(model, "rb") as fh:
        est = pickle.load(fh)
    meta = est.cli_metadata_
    assert meta["n_test"] == 6 and meta["n_train"] == 18 and 1 <= meta["best_epoch"] <= 4
    assert "valid_loss" in est.history[-1]
    assert (tmp_path / "m.pkl.ckpt" / "best" / "params.pt").exists()
    test = pd.read_csv(tmp_path / "m_test_predictions.csv")
    assert list(test.columns) == ["id", "heat_all", "prediction"] and len(test) == 6
    assert set(test["id"]) <= set(pd.read_csv(csv)["name"])
    # the kept weights are the best epoch's
    import torch
    best = torch.load(tmp_path / "m.pkl.ckpt" / "best" / "params.pt", weights_only=True)
    for k, v in est.module_.state_dict().items():
        torch.testing.assert_close(v, best[k])


class Interrupt(Callback):
    def on_epoch_end(self, net, **kwargs):
        import signal
        if len(net.history) == 2:
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C


def test_resume_continues_an_interrupted_fit(monkeypatch, folder, tmp_path, capsys,
                                            sigint_handled):
    import skcrystal.cli as cli

    original = cli._training_callbacks

    def interrupted(est, args, ckdir):
        original(est, args, ckdir)
        est.set_params(callbacks=[*est.callbacks, ("interrupt", Interrupt())])

    model = tmp_path / "m.pkl"
    argv = ["fit", str(folder), "--epochs", "4", "-o", str(model), *SMALL]
    monkeypatch.setattr(cli, "_training_callbacks", interrupted)
    code, _, err = _run(capsys, argv + ["-q"])
    # Ctrl-C: exit 130, no model written, the way on named
    assert code == 130 and "--resume" in err and "m.pkl.ckpt" in err, err
    assert not model.exists()
    monkeypatch.setattr(cli, "_training_callbacks", original)
    code, out, err = _run(capsys, argv + ["--resume"])
    assert code == 0 and "resuming" in err, err
    with open(model, "rb") as fh:
        est = pickle.load(fh)
    assert [row["epoch"] for row in est.history] == [1, 2, 3, 4]
    # another option than the interrupted run's is refused, naming it
    code, _, err = _run(capsys, argv[:3] + ["5"] + argv[4:] + ["--resume"])
    assert code == 2 and "max_epochs" in err


def test_library_warnings_are_one_line(folder, tmp_path, capsys):
    """A library warning (here: the stale batch-norm statistics of a 1-epoch fit on
    10 structures) is a 'skcrystal: warning:' line; with --debug, Python's warning."""
    argv = ["fit", str(folder), "--epochs", "1", "-o", str(tmp_path / "m.pkl"), *SMALL]
    code, _, err = _run(capsys, argv + ["-q"])
    assert code == 0
    assert "skcrystal: warning: CGCNNRegressor: 2 batch norm(s) have seen only 1" in err
    assert "UserWarning" not in err
    with pytest.warns(UserWarning, match="CGCNNRegressor: 2 batch norm"):
        assert main(argv + ["-q", "--debug"]) == 0  # Python's own warning


def test_resume_without_checkpoint(folder, tmp_path, capsys):
    code, _, err = _run(capsys, ["fit", str(folder), "-o", str(tmp_path / "m.pkl"),
                                 "--resume"])
    assert code == 2 and "no checkpoint" in err


# ------------------------------------------------------------------ --config
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file(folder, tmp_path, capsys, suffix):
    params = {"max_epochs": 2, "module__n_conv": 1, "module__h_fea_len": 8, "lr": 0.01}
    config = tmp_path / f"params{suffix}"
    if suffix == ".json":
        config.write_text(json.dumps(params))
    else:
        config.write_text("".join(f"{k}: {v}\n" for k, v in params.items()))
    model = tmp_path / "m.pkl"
    assert main(["fit", str(folder), "--config", str(config), "--param", "lr=0.005",
                 "-o", str(model), "-q"]) == 0
    with open(model, "rb") as fh:
        est = pickle.load(fh)
    assert est.max_epochs == 2 and est.get_params()["module__h_fea_len"] == 8
    assert est.lr == 0.005  # --param overrides the file


def test_config_errors(tmp_path, capsys):
    bad = tmp_path / "p.json"
    bad.write_text("[1, 2]")
    code, _, err = _run(capsys, ["fit", "x", "-o", str(tmp_path / "m.pkl"), "--config",
                                 str(bad)])
    assert code == 2 and "mapping" in err
    bad.write_text('{"modul__n_conv": 2}')
    code, _, err = _run(capsys, ["fit", "x", "-o", str(tmp_path / "m.pkl"), "--config",
                                 str(bad)])
    assert code == 2 and "modul__n_conv" in err


# ------------------------------------------------------------------ CSV columns
def test_cif_and_id_columns_on_cv_and_predict(csv, tmp_path, capsys):
    code, out, _ = _run(capsys, ["cv", str(csv), "--target", "heat_all", "--cif-column",
                                 "cif_text", "--folds", "2", "--epochs", "1", "-q", *SMALL])
    assert code == 0 and out.splitlines()[-1].startswith("mean MAE")
    code, _, err = _run(capsys, ["cv", str(csv), "--target", "heat_all", "--folds", "2"])
    assert code == 2 and "cif_column" in err and "cif_text" in err
    model = tmp_path / "m.pkl"
    assert main(["fit", str(csv), "--target", "heat_all", "--cif-column", "cif_text",
                 "--epochs", "1", "-o", str(model), "-q", *SMALL]) == 0
    pred = tmp_path / "p.csv"
    assert main(["predict", str(model), str(csv), "--cif-column", "cif_text",
                 "--id-column", "name", "-o", str(pred), "-q"]) == 0
    frame = pd.read_csv(pred)
    assert frame["id"].tolist() == pd.read_csv(csv)["name"].tolist()


# ------------------------------------------------------------------ folders
def test_folder_atom_init_json_is_used_and_said(folder, tmp_path, capsys):
    model = tmp_path / "m.pkl"
    code, _, err = _run(capsys, ["fit", str(folder), "--epochs", "1", "-o", str(model),
                                 *SMALL])
    assert code == 0 and "atom_init.json" in err
    from skcrystal.atom_features import load_atom_init
    with open(model, "rb") as fh:
        est = pickle.load(fh)
    np.testing.assert_array_equal(est.get_params()["module__atom_features"],
                                  load_atom_init(folder / "atom_init.json"))
    # without the file, the built-in table
    (folder / "atom_init.json").unlink()
    code, _, err = _run(capsys, ["fit", str(folder), "--epochs", "1", "-o", str(model),
                                 *SMALL])
    assert code == 0 and "atom_init.json" not in err


def test_id_prop_header_row_is_read(folder, tmp_path, capsys):
    text = (folder / "id_prop.csv").read_text()
    (folder / "id_prop.csv").write_text("id,band_gap\n" + text)
    code, out, err = _run(capsys, ["fit", str(folder), "--epochs", "1", "-o",
                                   str(tmp_path / "m.pkl"), *SMALL])
    assert code == 0 and "on 10 structures" in out and "header" in err


def test_id_prop_text_target_is_rejected_naming_the_row(folder, tmp_path, capsys):
    lines = (folder / "id_prop.csv").read_text().splitlines()
    lines[4] = lines[4].split(",")[0] + ",high"
    (folder / "id_prop.csv").write_text("\n".join(lines) + "\n")
    code, _, err = _run(capsys, ["fit", str(folder), "-o", str(tmp_path / "m.pkl")])
    assert code == 2 and "row 4" in err and "non-numeric" in err


def test_id_prop_with_a_header_only_is_an_error(folder, tmp_path, capsys):
    first = (folder / "id_prop.csv").read_text().splitlines()[0].split(",")[0]
    (folder / "id_prop.csv").write_text(f"{first},band_gap\n")
    code, _, err = _run(capsys, ["fit", str(folder), "-o", str(tmp_path / "m.pkl")])
    assert code == 2 and "has no data row" in err and "band_gap" in err, err


def test_classification_of_a_continuous_target_is_refused(folder, tmp_path, capsys):
    lines = [f"{line.split(',')[0]},{0.1 * k + 0.05}" for k, line in
             enumerate((folder / "id_prop.csv").read_text().splitlines())]
    (folder / "id_prop.csv").write_text("\n".join(lines) + "\n")
    code, _, err = _run(capsys, ["fit", str(folder), "--task", "classification", "-o",
                                 str(tmp_path / "m.pkl")])
    assert code == 2 and "continuous" in err


def test_training_errors_name_files_not_positions(folder, tmp_path, capsys):
    """A diverging fit (NonFiniteError naming X[i]) names the batch's files."""
    code, _, err = _run(capsys, ["fit", str(folder), "--epochs", "3", "--lr", "1e30",
                                 "--batch-size", "4", "-o", str(tmp_path / "m.pkl"), "-q",
                                 *SMALL])
    assert code == 2 and "non-finite" in err and ".cif (" in err and "X[" not in err


def test_predict_warns_for_elements_a_learnable_embedding_never_trained(folder, tmp_path,
                                                                        capsys):
    from pymatgen.core import Lattice, Structure
    model = str(tmp_path / "m.pkl")
    code, _, err = _run(capsys, ["fit", str(folder), "--epochs", "1", "-o", model, "-q",
                                 "--param", "module__atom_features=embedding", *SMALL])
    assert code == 0, err
    new = tmp_path / "new"
    new.mkdir()
    Structure(Lattice.cubic(6.0), ["U", "Xe"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(new / "ux.cif"))
    shutil.copy(folder / f"{_ids(folder)[0]}.cif", new)
    code, _, err = _run(capsys, ["predict", model, str(new), "--out", str(tmp_path / "p.csv")])
    assert code == 0, err
    assert "skcrystal: warning: 1 structure(s) have elements no training structure had" in err
    assert "ux.cif: Xe, U" in err

"""The matbench-protocol runner on a tiny task built from the shared jdft2d file."""
import gzip
import json

import numpy as np
import pytest
from sklearn.model_selection import KFold

from conftest import shared_path

from skcrystal.benchmarks import (BenchmarkTask, fold_progress, markdown_row, matbench_task,
                                  perovskites_task, read_record, run_matbench)
from skcrystal.benchmarks.matbench import _matbench_hash, fold_scores
from skcrystal.datasets import load_matbench_json
from skcrystal.metrics import mae_mad_score

TINY = dict(module__hidden=8, max_epochs=2, batch_size=16, random_state=0)
N_TINY = 40


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """40 jdft2d rows in a matbench json.gz, and a 5-fold fold file over them."""
    src = shared_path("jdft2d", "matbench_jdft2d_fold0_train.json.gz")
    data = json.loads(gzip.decompress(src.read_bytes()))
    data = {"index": data["index"][:N_TINY], "columns": data["columns"],
            "data": data["data"][:N_TINY]}
    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "matbench_jdft2d_tiny.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    ids = np.array(data["index"])
    splits = {f"fold_{k}": {"train": ids[tr].tolist(), "test": ids[te].tolist()}
              for k, (tr, te) in enumerate(KFold(5, shuffle=True, random_state=1).split(ids))}
    (folder / "matbench_jdft2d_folds.json").write_text(json.dumps(
        {"metadata": {"n_splits": 5}, "splits": {"matbench_jdft2d": splits}}))
    return path, splits


def _truth(path):
    df = load_matbench_json(path, as_frame=True)
    return dict(zip(df["id"], df["exfoliation_en"]))


def test_record_has_every_fold_and_its_metrics_recompute(tiny_task, tmp_path):
    from skcrystal.graphs.cache import default_cache

    path, splits = tiny_task
    default_cache.clear()
    res = run_matbench(path, "cgcnn", params=TINY, out_dir=tmp_path, verbose=0,
                       command="pytest tiny")
    assert res.ran == [0, 1, 2, 3, 4] and res.skipped == []
    rec = read_record(res.path)
    assert rec == res.record
    # matbench's layout: exactly these keys, fold keys data/parameters/scores
    assert {"@module", "@class", "version", "benchmark_name", "tasks", "user_metadata",
            "datestamp", "hash"} == set(rec)
    assert rec["hash"] == _matbench_hash(rec)
    results = rec["tasks"]["matbench_jdft2d"]["results"]
    assert list(results) == [f"fold_{k}" for k in range(5)]
    truth = _truth(path)
    per_fold = {m: [] for m in ("mae", "rmse", "mape", "max_error", "mae_mad")}
    for k in range(5):
        fold = results[f"fold_{k}"]
        assert set(fold) == {"data", "parameters", "scores"}
        assert set(fold["scores"]) == {"mae", "rmse", "mape", "max_error"}
        assert set(fold["data"]) == set(splits[f"fold_{k}"]["test"])
        ids = list(fold["data"])
        t = np.array([truth[i] for i in ids])
        p = np.array([fold["data"][i] for i in ids])
        err = np.abs(t - p)
        assert fold["scores"]["mae"] == pytest.approx(err.mean(), rel=1e-12)
        assert fold["scores"]["rmse"] == pytest.approx(np.sqrt((err ** 2).mean()), rel=1e-12)
        assert fold["scores"]["max_error"] == pytest.approx(err.max(), rel=1e-12)
        assert fold["scores"]["mape"] == pytest.approx(np.mean(err / np.abs(t)), rel=1e-12)
        assert fold["parameters"]["mae_mad"] == pytest.approx(
            err.mean() / np.mean(np.abs(t - t.mean())), rel=1e-12)
        for m in per_fold:
            per_fold[m].append(fold["scores"][m] if m != "mae_mad"
                               else fold["parameters"]["mae_mad"])
        params = fold["parameters"]
        assert params["n_train"] == len(splits[f"fold_{k}"]["train"]) == params["n_train_official"]
        assert params["fit_time_s"] > 0 and params["predict_time_s"] > 0
        assert params["epochs_run"] == 2
        assert 0 <= 2 * params["epoch_time_s"] <= params["fit_time_s"] + 1e-3
        assert params["estimator_params"]["module__hidden"] == 8
        assert params["estimator"] == "skcrystal.estimators.cgcnn.CGCNNRegressor"
        # graphs were built once up front: every fold is served by the cache
        assert params["graph_cache"]["misses"] == 0
        assert params["graph_cache"]["hits"] >= params["n_train"] + params["n_test"]
        assert len(params["loadavg_start"]) == 3
    meta = rec["user_metadata"]["skcrystal"]
    for m, values in per_fold.items():
        assert meta["scores"][m]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert meta["scores"][m]["std"] == pytest.approx(np.std(values), rel=1e-12)
        assert meta["scores"][m]["max"] == pytest.approx(np.max(values), rel=1e-12)
    assert meta["folds_done"] == [0, 1, 2, 3, 4] and meta["complete"] is True
    run = meta["runs"][0]
    assert run["command"] == "pytest tiny" and run["folds_run"] == [0, 1, 2, 3, 4]
    assert run["environment"]["torch"] and run["environment"]["skcrystal"]
    assert run["environment"]["torch_threads"] >= 1
    assert run["graph_time_s"] >= 0 and len(run["loadavg_end"]) == 3
    assert meta["params_summary"] == ("batch_size=16, max_epochs=2, module__hidden=8, "
                                      "random_state=0")
    # the Markdown row carries the numbers
    row = res.row
    assert row == markdown_row(rec) == (tmp_path / "matbench_jdft2d__CGCNNRegressor.md"
                                        ).read_text().strip()
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 10
    assert cells[0] == "matbench_jdft2d (meV/atom)" and cells[1] == "CGCNNRegressor"
    mae = meta["scores"]["mae"]
    assert cells[3] == f"{mae['mean']:.3g} ± {mae['std']:.3g}"
    assert cells[4] == f"{meta['scores']['rmse']['mean']:.3g}"
    assert cells[5] == f"{meta['scores']['mae_mad']['mean']:.3f}"
    assert cells[6].startswith("5/5, ~")
    assert cells[9].startswith("CGCNN 49.2 · ALIGNN 43.4 · MODNet 33.2")


def test_resume_runs_only_unfinished_folds_and_refuses_other_params(tiny_task, tmp_path,
                                                                     monkeypatch):
    from skcrystal.estimators.cgcnn import CGCNNRegressor

    path, _ = tiny_task
    fits = []
    real_fit = CGCNNRegressor.fit

    def counting_fit(self, X, y=None, **kw):
        fits.append(len(X))
        return real_fit(self, X, y, **kw)

    monkeypatch.setattr(CGCNNRegressor, "fit", counting_fit)

    class Killed(Exception):
        pass

    def kill_after_fold_1(k, fold):
        if k == 1:
            raise Killed

    with pytest.raises(Killed):
        run_matbench(path, "cgcnn", params=TINY, out_dir=tmp_path, verbose=0,
                     on_fold_end=kill_after_fold_1)
    assert len(fits) == 2
    saved = read_record(tmp_path / "matbench_jdft2d__CGCNNRegressor.json.gz")
    first = saved["tasks"]["matbench_jdft2d"]["results"]
    assert list(first) == ["fold_0", "fold_1"]

    fits.clear()
    res = run_matbench(path, "cgcnn", params=dict(TINY, n_jobs=1), out_dir=tmp_path,
                       verbose=0)
    assert res.skipped == [0, 1] and res.ran == [2, 3, 4] and len(fits) == 3
    results = res.record["tasks"]["matbench_jdft2d"]["results"]
    assert list(results) == [f"fold_{k}" for k in range(5)]
    assert results["fold_0"] == first["fold_0"] and results["fold_1"] == first["fold_1"]
    assert [r["folds_run"] for r in res.record["user_metadata"]["skcrystal"]["runs"]] == [
        [0, 1], [2, 3, 4]]
    # nothing left to do: a rerun runs nothing
    fits.clear()
    again = run_matbench(path, "cgcnn", params=TINY, out_dir=tmp_path, verbose=0)
    assert again.ran == [] and again.skipped == [0, 1, 2, 3, 4] and fits == []

    # a record written before a parameter existed resumes while it is at its
    # default (the folds ran with that default), not once it is changed
    rec = read_record(res.path)
    for fold in rec["tasks"]["matbench_jdft2d"]["results"].values():
        del fold["parameters"]["estimator_params"]["descriptor_screen"]
    res.path.write_bytes(gzip.compress(json.dumps(rec).encode()))
    assert run_matbench(path, "cgcnn", params=TINY, out_dir=tmp_path, verbose=0).ran == []
    with pytest.raises(ValueError, match=r"descriptor_screen: '<unset>' -> False"):
        run_matbench(path, "cgcnn", params=dict(TINY, descriptor_screen=False),
                     out_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match=r"max_epochs: 2 -> 3"):
        run_matbench(path, "cgcnn", params=dict(TINY, max_epochs=3), out_dir=tmp_path,
                     verbose=0)
    with pytest.raises(ValueError, match="CrystalNetRegressor"):
        run_matbench(path, "crystalnet", label="CGCNNRegressor", out_dir=tmp_path, verbose=0)
    assert fits == []
    # resume=False starts afresh
    fresh = run_matbench(path, "cgcnn", params=dict(TINY, max_epochs=1), folds=[3],
                         out_dir=tmp_path, resume=False, verbose=0)
    assert fresh.ran == [3]
    assert list(read_record(fresh.path)["tasks"]["matbench_jdft2d"]["results"]) == ["fold_3"]


def _stop_in_fold(monkeypatch, fold, epoch, action):
    """Run ``action()`` at the end of ``epoch`` of ``fold``, after its checkpoint."""
    import skcrystal.benchmarks.matbench as mb
    from skorch.callbacks import Callback

    class Stop(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == epoch:
                action()

    real = mb._with_checkpoint

    def patched(est, ckdir):
        real(est, ckdir)
        if ckdir.name.endswith(f".fold{fold}.checkpoint"):
            est.set_params(callbacks=[*est.callbacks, ("stop", Stop())])
        return est

    monkeypatch.setattr(mb, "_with_checkpoint", patched)


def test_a_fold_stopped_mid_fit_resumes_to_the_uninterrupted_predictions(
        tiny_task, tmp_path, monkeypatch):
    path, _ = tiny_task
    params = dict(TINY, max_epochs=4)
    clean = run_matbench(path, "cgcnn", params=params, folds=[0, 1], verbose=0,
                         out_dir=tmp_path / "clean", checkpoint=False)
    assert not list((tmp_path / "clean").glob("*.checkpoint"))

    class Killed(Exception):
        pass

    def kill():
        raise Killed

    _stop_in_fold(monkeypatch, fold=1, epoch=2, action=kill)
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_matbench(path, "cgcnn", params=params, folds=[0, 1], out_dir=out, verbose=0)
    ckdir = out / "matbench_jdft2d__CGCNNRegressor.fold1.checkpoint"
    assert json.loads((ckdir / "history.json").read_text())[-1]["epoch"] == 2
    assert not (out / "matbench_jdft2d__CGCNNRegressor.fold0.checkpoint").exists()
    (progress,) = fold_progress(out)
    assert {k: progress[k] for k in ("record", "fold", "epochs_done", "max_epochs", "parts")} \
        == {"record": "matbench_jdft2d__CGCNNRegressor", "fold": 1, "epochs_done": 2,
            "max_epochs": 4, "parts": 1}
    assert progress["eta_s"] == pytest.approx(2 * progress["epoch_s"])
    monkeypatch.undo()

    res = run_matbench(path, "cgcnn", params=params, folds=[0, 1], out_dir=out, verbose=0)
    assert res.skipped == [0] and res.ran == [1] and not ckdir.exists()
    assert fold_progress(out) == []
    got = res.record["tasks"]["matbench_jdft2d"]["results"]
    want = clean.record["tasks"]["matbench_jdft2d"]["results"]
    # checkpointing changes nothing; resuming neither
    assert got["fold_0"]["data"] == want["fold_0"]["data"]
    assert got["fold_1"]["data"] == want["fold_1"]["data"]
    parts = got["fold_1"]["parameters"]["parts"]
    assert [part["after_epoch"] for part in parts] == [0, 2]
    assert all(len(part["loadavg_start"]) == 3 and part["started_at"] for part in parts)
    assert got["fold_1"]["parameters"]["epochs_run"] == 4
    assert "parts" not in got["fold_0"]["parameters"]


def test_a_fold_another_process_runs_is_refused(tiny_task, tmp_path):
    """Two processes on one fold would overwrite each other's checkpoint: the
    second is refused, naming the fold and the holder; the other folds run."""
    import os

    from skcrystal.benchmarks.matbench import _file_lock

    path, _ = tiny_task
    lock = tmp_path / ".matbench_jdft2d__CGCNNRegressor.fold1.lock"
    with _file_lock(lock):  # as the other process holds it
        with pytest.raises(RuntimeError, match=rf"fold 1 of .* is being run by another "
                                               rf"process \(pid {os.getpid()}\)"):
            run_matbench(path, "cgcnn", params=TINY, folds=[0, 1], out_dir=tmp_path,
                         verbose=0)
    rec = read_record(tmp_path / "matbench_jdft2d__CGCNNRegressor.json.gz")
    assert list(rec["tasks"]["matbench_jdft2d"]["results"]) == ["fold_0"]
    assert run_matbench(path, "cgcnn", params=TINY, folds=[0, 1], out_dir=tmp_path,
                        verbose=0).ran == [1]


def test_ctrl_c_in_a_fold_is_not_recorded_as_a_finished_fold(tiny_task, tmp_path,
                                                              monkeypatch, sigint_handled):
    """skorch ends fit quietly on KeyboardInterrupt; the runner stops instead of
    recording a partly trained fold."""
    import signal

    path, _ = tiny_task
    _stop_in_fold(monkeypatch, fold=0, epoch=1,
                  action=lambda: signal.raise_signal(signal.SIGINT))
    with pytest.raises(KeyboardInterrupt, match="fold 0 interrupted, not recorded; its "
                                                "checkpoint after epoch 1"):
        run_matbench(path, "cgcnn", params=TINY, folds=[0], out_dir=tmp_path, verbose=0)
    assert not list(tmp_path.glob("*.json.gz"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()

    # the checkpoint of a fit with other parameters: refused, naming them;
    # resume=False starts the fold afresh
    with pytest.raises(ValueError, match=r"fold0.checkpoint: .*max_epochs: 2 -> 3"):
        run_matbench(path, "cgcnn", params=dict(TINY, max_epochs=3), folds=[0],
                     out_dir=tmp_path, verbose=0)
    res = run_matbench(path, "cgcnn", params=dict(TINY, max_epochs=3), folds=[0],
                       out_dir=tmp_path, resume=False, verbose=0)
    fold = res.record["tasks"]["matbench_jdft2d"]["results"]["fold_0"]["parameters"]
    assert fold["epochs_run"] == 3 and "parts" not in fold
    assert not list(tmp_path.glob("*.checkpoint"))


def test_processes_running_other_folds_of_one_record_merge(tiny_task, tmp_path):
    """Two runs of one record at once (simulated: the second inside the first's
    fold hook) each add their folds; neither overwrites the other's."""
    path, _ = tiny_task
    inner = []

    def second_process(k, fold):
        if k == 0:
            inner.append(run_matbench(path, "cgcnn", params=TINY, folds=[3, 4],
                                      out_dir=tmp_path, verbose=0))

    outer = run_matbench(path, "cgcnn", params=TINY, folds=[0, 1], out_dir=tmp_path,
                         verbose=0, on_fold_end=second_process)
    assert inner[0].ran == [3, 4] and outer.ran == [0, 1]
    rec = read_record(outer.path)
    assert list(rec["tasks"]["matbench_jdft2d"]["results"]) == [
        "fold_0", "fold_1", "fold_3", "fold_4"]
    runs = rec["user_metadata"]["skcrystal"]["runs"]
    assert sorted(r["folds_run"] for r in runs) == [[0, 1], [3, 4]]
    assert rec["user_metadata"]["skcrystal"]["folds_done"] == [0, 1, 3, 4]
    # what the record says is what a reader recomputes from its folds
    maes = [f["scores"]["mae"] for f in rec["tasks"]["matbench_jdft2d"]["results"].values()]
    assert rec["user_metadata"]["skcrystal"]["scores"]["mae"]["mean"] == pytest.approx(
        np.mean(maes))

    # a process with other parameters that rewrote the record meanwhile: this
    # run's next fold is refused, not mixed in, and kept beside the record
    def other_params(k, fold):
        if k == 2:
            run_matbench(path, "cgcnn", params=dict(TINY, max_epochs=1), folds=[4],
                         out_dir=tmp_path / "y", resume=False, verbose=0)

    with pytest.raises(ValueError, match=r"max_epochs.*another process wrote it meanwhile"):
        run_matbench(path, "cgcnn", params=TINY, folds=[2, 3], out_dir=tmp_path / "y",
                     verbose=0, on_fold_end=other_params)
    (side,) = (tmp_path / "y").glob("*.conflict-*.json.gz")
    assert list(read_record(side)["tasks"]["matbench_jdft2d"]["results"]) == [
        "fold_2", "fold_3"]


def test_shared_fold_file_subset_runs_the_covered_folds(tmp_path):
    """The shared jdft2d file is fold 0's training set: folds 1-4 are covered."""
    from skcrystal.baselines import CompositionBaseline

    src = shared_path("jdft2d", "matbench_jdft2d_fold0_train.json.gz")
    task = matbench_task(src, max_structures=60)
    assert task.name == "matbench_jdft2d" and list(task.folds) == [1, 2, 3, 4]
    assert "fold(s) [0] absent" in task.split
    folds_file = json.loads((src.parent / "matbench_jdft2d_folds.json").read_text())
    official = folds_file["splits"]["matbench_jdft2d"]
    for k, (train, test) in task.folds.items():
        assert {task.ids[i] for i in test} == set(official[f"fold_{k}"]["test"]) & set(task.ids)
        assert {task.ids[i] for i in train} == set(official[f"fold_{k}"]["train"]) & set(
            task.ids)
        assert task.official_sizes[k] == (len(official[f"fold_{k}"]["train"]),
                                          len(official[f"fold_{k}"]["test"]))
    est = CompositionBaseline(n_estimators=10, random_state=0)
    res = run_matbench(task, est, out_dir=tmp_path, verbose=0, label="Magpie-RF")
    assert res.ran == [1, 2, 3, 4]
    meta = res.record["user_metadata"]["skcrystal"]
    assert meta["complete"] is False
    assert meta["params_summary"] == "n_estimators=10, random_state=0"
    for k, (train, test) in task.folds.items():
        fold = res.record["tasks"]["matbench_jdft2d"]["results"][f"fold_{k}"]
        pred = CompositionBaseline(n_estimators=10, random_state=0).fit(
            [task.structures[i] for i in train], task.y[train]).predict(
            [task.structures[i] for i in test])
        np.testing.assert_allclose([fold["data"][task.ids[i]] for i in test], pred)
        assert fold["scores"] == pytest.approx(fold_scores(task.y[test], pred))
        assert fold["parameters"]["mae_mad"] == pytest.approx(mae_mad_score(task.y[test], pred))
        assert fold["parameters"]["n_train_official"] > fold["parameters"]["n_train"]
    cells = [c.strip() for c in res.row.strip("|").split("|")]
    assert cells[6].startswith("4/5 (1, 2, 3, 4), ~") and "official" in cells[6]


def test_perovskites_task_fixed_split():
    folder = shared_path("perovskites")
    task = perovskites_task(folder)
    assert len(task.ids) == 3787 + 1024 and task.name == "perovskites_castelli"
    assert task.unit == "eV/cell" and task.published_as == "matbench_perovskites"
    expected = KFold(5, shuffle=True, random_state=18012019).split(np.arange(4811))
    for k, (train, test) in enumerate(expected):
        np.testing.assert_array_equal(task.folds[k][0], train)
        np.testing.assert_array_equal(task.folds[k][1], test)
    # rows are part 1 then part 2, in file order
    import pandas as pd
    ids = pd.concat([pd.read_csv(folder / "perovskites_part1.csv", usecols=["material_id"]),
                     pd.read_csv(folder / "perovskites_part2.csv", usecols=["material_id"])])
    assert task.ids == [str(i) for i in ids["material_id"]]
    assert len(task.structures[0]) == 5


def test_bad_inputs_name_the_problem(tiny_task, tmp_path):
    from skcrystal.benchmarks import load_task

    path, _ = tiny_task
    # a folder with one matbench file and its fold file is that task
    task = load_task(path.parent)
    assert task.ids == matbench_task(path).ids and list(task.folds) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="expected one matbench"):
        load_task(tmp_path)
    with pytest.raises(ValueError, match=r"folds: 7 is not a fold .* available folds: "
                                         r"\[0, 1, 2, 3, 4\]"):
        run_matbench(path, "cgcnn", folds=[7], out_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="unknown model 'cgcn'"):
        run_matbench(path, "cgcn", out_dir=tmp_path, verbose=0)
    with pytest.raises(TypeError, match="estimator must be"):
        run_matbench(path, 3, out_dir=tmp_path, verbose=0)
    # a misspelt parameter: before any fold (no record written)
    with pytest.raises(ValueError, match="max_epoch: CGCNNRegressor has no parameter"):
        run_matbench(path, "cgcnn", params={"max_epoch": 1}, out_dir=tmp_path / "typo",
                     verbose=0)
    assert not (tmp_path / "typo").exists()


def test_cli_matbench_subcommand(tiny_task, tmp_path, capsys):
    from skcrystal.cli import main

    path, _ = tiny_task
    code = main(["matbench", str(path), "--model", "cgcnn", "--epochs", "1", "--seed", "0",
                 "--param", "module__hidden=8", "--folds", "2", "--out-dir",
                 str(tmp_path), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out.strip()
    rec = read_record(tmp_path / "matbench_jdft2d__CGCNNRegressor.json.gz")
    assert out.endswith(markdown_row(rec))
    assert list(rec["tasks"]["matbench_jdft2d"]["results"]) == ["fold_2"]
    assert rec["user_metadata"]["skcrystal"]["runs"][0]["command"].startswith(
        "skcrystal matbench ")


def test_cli_matbench_ctrl_c_resume_and_no_checkpoint(tiny_task, tmp_path, capsys,
                                                       monkeypatch, sigint_handled):
    import signal

    import skcrystal.benchmarks.matbench as mb
    from skcrystal.cli import main

    path, _ = tiny_task
    argv = ["matbench", str(path), "--model", "cgcnn", "--epochs", "3", "--seed", "0",
            "--param", "module__hidden=8", "--folds", "1", "--out-dir", str(tmp_path)]
    _stop_in_fold(monkeypatch, fold=1, epoch=2,
                  action=lambda: signal.raise_signal(signal.SIGINT))
    assert main(argv + ["--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: fold 1 interrupted, not recorded" in err and "rerun to resume" in err
    monkeypatch.undo()
    assert main(argv + ["--quiet"]) == 0
    rec = read_record(tmp_path / "matbench_jdft2d__CGCNNRegressor.json.gz")
    fold = rec["tasks"]["matbench_jdft2d"]["results"]["fold_1"]["parameters"]
    assert [part["after_epoch"] for part in fold["parts"]] == [0, 2]
    assert fold["epochs_run"] == 3
    # --no-checkpoint: no fold is checkpointed
    monkeypatch.setattr(mb, "_with_checkpoint", lambda *a: pytest.fail("checkpointed"))
    assert main(argv[:-1] + [str(tmp_path / "other"), "--no-checkpoint", "--quiet"]) == 0


def test_generic_task_from_bundled_structures(tmp_path):
    """No shared data needed: bundled perovskites, scikit-learn's cv list as folds."""
    from skcrystal.datasets import load_perovskites

    X, y = load_perovskites(n=30)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    task = BenchmarkTask(name="demo", structures=X, y=y, ids=[f"p{i}" for i in range(30)],
                         folds=folds, unit="eV/cell")
    assert list(task.folds) == [0, 1, 2]
    res = run_matbench(task, "cgcnn", params=dict(TINY, max_epochs=1), out_dir=tmp_path,
                       verbose=0)
    results = res.record["tasks"]["demo"]["results"]
    assert res.record["benchmark_name"] == "custom" and list(results) == ["fold_0", "fold_1",
                                                                         "fold_2"]
    for k, (train, test) in enumerate(folds):
        data = results[f"fold_{k}"]["data"]
        assert list(data) == [f"p{i}" for i in test]
        pred = np.array(list(data.values()))
        assert results[f"fold_{k}"]["scores"]["mae"] == pytest.approx(
            np.mean(np.abs(pred - y[test])), rel=1e-12)
    cells = [c.strip() for c in res.row.strip("|").split("|")]
    assert cells[0] == "demo (eV/cell)" and cells[6] == "3/3, ~20 train"
    assert cells[9] == "n/a"


def test_task_validation_names_the_problem():
    with pytest.raises(ValueError, match="repeats"):
        BenchmarkTask(name="t", structures=[None, None], y=[1.0, 2.0], ids=["a", "a"],
                      folds={0: ([0], [1])})
    with pytest.raises(ValueError, match="fold 0 has rows in both"):
        BenchmarkTask(name="t", structures=[None, None], y=[1.0, 2.0], ids=["a", "b"],
                      folds={0: ([0, 1], [1])})
    with pytest.raises(ValueError, match=r"fold 1 test positions must be in 0..1"):
        BenchmarkTask(name="t", structures=[None, None], y=[1.0, 2.0], ids=["a", "b"],
                      folds=[([0], [1]), ([0], [2])])
    with pytest.raises(ValueError, match=r"NaN/inf at rows \[1\]"):
        BenchmarkTask(name="t", structures=[None, None], y=[1.0, np.nan], ids=["a", "b"],
                      folds={0: ([0], [1])})
    # matbench's classification tasks (mp_is_metal...): not scored as 1/0 regression
    with pytest.raises(ValueError, match=r"task 't': the target holds True/False \(a "
                                         r"classification task\)"):
        BenchmarkTask(name="t", structures=[None, None], y=[True, False], ids=["a", "b"],
                      folds={0: ([0], [1])})


def _benchmark_script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_benchmark_script_sizes_are_valid_module_parameters():
    """Every size of ``benchmarks/run_matbench.py`` builds a model (a wrong
    ``module__`` name would only fail hours into a run)."""
    script = _benchmark_script("run_matbench")
    for model, sizes in script.SIZES.items():
        for size in sizes:
            est, _ = script.estimator(model, size, {})
            est._check_params()
            est.initialized_instance(est.module, est._module_kwargs())  # raises on a bad name


def test_learning_curve_subsets_are_nested_and_its_law_is_read_back(tmp_path, capsys):
    """``benchmarks/learning_curve.py``: each fold's subsets are the same in
    every run and nested (a smaller fraction keeps rows of the larger); the
    fractions run through the runner (one record each, the official sizes
    kept), and the report tables the records' MAEs and fits MAE = a N^-b."""
    from sklearn.dummy import DummyRegressor

    from skcrystal.datasets import load_perovskites

    script = _benchmark_script("learning_curve")
    train = np.arange(100, 481)
    half, most = script.subset(train, 0.5, 3), script.subset(train, 0.75, 3)
    assert len(half) == 190 and len(most) == 286
    assert set(half) <= set(most) <= set(train)
    assert np.array_equal(half, script.subset(train, 0.5, 3))
    assert not np.array_equal(half, script.subset(train, 0.5, 4))  # seeded by the fold
    with pytest.raises(ValueError, match="keeps 0 of 381"):
        script.subset(train, 0.001, 3)
    a, b = script.power_law([100, 200, 400], [50 * n ** -0.4 for n in (100, 200, 400)])
    assert a == pytest.approx(50) and b == pytest.approx(0.4)

    X, y = load_perovskites(n=40)
    folds = {1: (np.arange(0, 30), np.arange(30, 40)), 2: (np.arange(10, 40), np.arange(0, 10))}
    task = BenchmarkTask(name="t", structures=X, y=y, ids=[f"p{i}" for i in range(40)],
                         folds=folds, official_sizes={1: (800, 10), 2: (800, 10)})
    results = script.run_curve(task, DummyRegressor(), "mean", [0.5], out=tmp_path)
    full = script.run_curve(task, DummyRegressor(), "mean", [1.0], out=tmp_path / "full")
    capsys.readouterr()
    script.report(tmp_path, full_record=full[0].path)
    out = capsys.readouterr().out
    for k, (tr, te) in folds.items():
        rows = script.subset(tr, 0.5, k)
        assert rows.tolist() == np.sort(rows).tolist() and set(rows) <= set(tr)
        fold = results[0].record["tasks"]["t"]["results"][f"fold_{k}"]
        assert fold["parameters"]["n_train"] == 15
        assert fold["parameters"]["n_train_official"] == 800
        assert fold["scores"]["mae"] == pytest.approx(np.mean(np.abs(y[te] - y[rows].mean())))
    maes = [results[0].record["tasks"]["t"]["results"][f"fold_{k}"]["scores"]["mae"]
            for k in (1, 2)]
    assert f"| 15 (0.5) | {maes[0]:.1f} | {maes[1]:.1f} | **{np.mean(maes):.1f}** |" in out
    assert "| 30 (1) |" in out and "at N = 800 (the official training rows)" in out
    script.run_curve(task, DummyRegressor(strategy="median"), "median", [0.5], out=tmp_path)
    with pytest.raises(SystemExit, match="several configurations"):
        script.report(tmp_path)


def test_runner_params_are_literals_strings_or_arrays_from_npy(tmp_path):
    """``--param KEY=VALUE``: a Python literal, ``@file.npy`` the array in the
    file (pretrained element embeddings), anything else the string."""
    script = _benchmark_script("run_matbench")
    table = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "emb.npy", table)
    params = script.parse_params(["max_epochs=5", "module__pooling=mean", "lr = 1e-3",
                                  f"module__extra_atom_features=@{tmp_path / 'emb.npy'}"])
    assert params["max_epochs"] == 5 and params["module__pooling"] == "mean"
    assert params["lr"] == 1e-3
    assert np.array_equal(params["module__extra_atom_features"], table)

"""The Python API a user meets: progress bars, feature names and pandas output of
transform, logging instead of print."""
import numpy as np
import pandas as pd
import pytest

from skcrystal.datasets import load_perovskites
from skcrystal.estimators import CGCNNClassifier, CGCNNRegressor

SMALL = dict(module__n_conv=1, module__h_fea_len=16, random_state=0, max_epochs=2)


@pytest.fixture(scope="module")
def frame():
    return load_perovskites(n=12, as_frame=True)


def test_progress_bars_for_graphs_epochs_and_predict(frame, capsys):
    X, y = list(frame["structure"]), frame["heat_all"].to_numpy()
    from skcrystal.graphs import default_cache
    default_cache.clear()
    est = CGCNNRegressor(progress=True, batch_size=4, **SMALL).fit(X, y)
    err = capsys.readouterr().err
    assert "building graphs" in err and "training CGCNNRegressor" in err
    assert "epoch" in err
    est.predict(X)
    assert "predicting" in capsys.readouterr().err
    import pickle
    pickle.loads(pickle.dumps(est))  # the bar does not stay in the estimator


def test_no_progress_bar_off_a_terminal(frame, capsys):
    """progress="auto" (the default) is off when stderr is not a terminal (here,
    pytest's capture)."""
    X, y = list(frame["structure"]), frame["heat_all"].to_numpy()
    est = CGCNNRegressor(batch_size=4, **SMALL).fit(X, y)
    est.predict(X)
    assert capsys.readouterr().err == ""
    est.set_params(progress=False)
    assert not est._show_progress()


def test_verbose_prints_one_line_per_epoch(frame, capsys):
    X, y = list(frame["structure"]), frame["heat_all"].to_numpy()
    CGCNNRegressor(verbose=1, **SMALL).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert "train_loss" in out[0] and len([line for line in out if line.strip()[:1].isdigit()]) == 2


@pytest.mark.parametrize("cls, target", [(CGCNNRegressor, "heat_all"),
                                         (CGCNNClassifier, "label")])
def test_transform_feature_names_and_pandas_output(frame, cls, target):
    frame = frame.assign(label=np.where(frame["heat_all"] > frame["heat_all"].median(), "a", "b"))
    X = frame.set_index("material_id")[["structure"]]
    est = cls(**SMALL).fit(X, frame[target])
    names = est.get_feature_names_out()
    array = est.transform(X)
    assert len(names) == array.shape[1] and names[0] == f"{cls.__name__.lower()}0"
    est.set_output(transform="pandas")
    out = est.transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    assert list(out.index) == list(X.index)
    np.testing.assert_allclose(out.to_numpy(), array, rtol=1e-5)
    # predict is unchanged
    assert isinstance(est.predict(X), np.ndarray)


def test_feature_names_before_transform_and_in_a_pipeline(frame):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    X, y = list(frame["structure"]), frame["heat_all"].to_numpy()
    est = CGCNNRegressor(**SMALL).fit(X, y)
    assert len(est.get_feature_names_out()) == est.transform(X[:2]).shape[1]
    pipe = make_pipeline(CGCNNRegressor(**SMALL), Ridge()).fit(X, y)
    assert pipe[:-1].get_feature_names_out().shape == (pipe[-1].coef_.shape[0],)


def test_memory_warning_goes_through_logging(frame, caplog):
    import logging
    est = CGCNNRegressor(max_memory=1e3 * 2**10, batch_size=64, **SMALL)
    with caplog.at_level(logging.WARNING):
        est.prepare(list(frame["structure"]), training=True)  # each fits, the batch not
    assert caplog.records and all(r.name.startswith("skcrystal") for r in caplog.records)
    assert "lower batch_size" in caplog.text


def test_verbose_messages_go_through_logging(capsys, caplog):
    """verbose=1 messages are logging INFO records; shown on stderr when logging is
    not configured, handled by the application's handlers when it is."""
    import logging

    from skcrystal._logging import verbose_logging
    log = logging.getLogger("skcrystal.probes")
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []  # an application that configured nothing
    try:
        with verbose_logging(1):
            log.info("[probe] hello")
        with verbose_logging(0):
            log.info("[probe] hidden")
    finally:
        root.handlers = saved
    err = capsys.readouterr().err
    assert "[probe] hello" in err and "hidden" not in err
    with caplog.at_level(logging.INFO, logger="skcrystal"), verbose_logging(1):
        log.info("[probe] captured")
    assert "[probe] captured" in caplog.text


def test_library_does_not_print():
    """No print() in the library outside the command line (skorch's own epoch table
    with verbose=1 aside)."""
    import ast
    import pathlib

    import skcrystal
    root = pathlib.Path(skcrystal.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []

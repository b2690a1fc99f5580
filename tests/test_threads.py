"""Two cores: how fits share them (``benchmarks/bench_threads.py``)."""
import torch


def _torch_threads(estimator, X, y):
    """A scorer: the torch threads of the process that fitted ``estimator``."""
    return float(torch.get_num_threads())


def test_parallel_cv_workers_fit_with_one_thread_each(monkeypatch):
    """cross_val_score(n_jobs=2): each worker fits with one torch thread.

    Two fits with two threads each on two cores run at a third of the speed
    of two one-thread fits (``benchmarks/bench_threads.py``); joblib's
    workers limit their threads and torch follows.
    """
    from sklearn.model_selection import KFold, cross_val_score

    from skcrystal.datasets import load_perovskites
    from skcrystal.estimators.cgcnn import CGCNNRegressor

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the user's default
        monkeypatch.delenv(var, raising=False)
    structures, y = load_perovskites(n=16)
    est = CGCNNRegressor(max_epochs=1, batch_size=8, verbose=0, progress=False,
                         module__hidden=8, module__n_conv=1)
    threads = cross_val_score(est, structures, y, cv=KFold(2), n_jobs=2,
                              scoring=_torch_threads)
    assert threads.tolist() == [1.0, 1.0]

"""Shared training callbacks."""
import numpy as np
import pytest
import torch

from skcrystal import CGCNNRegressor
from skcrystal.estimators.callbacks import RecomputeBatchNorm


def test_recomputed_statistics_are_those_of_the_training_set():
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=40)
    # one batch holding the whole training set: the recomputed running
    # statistics must then be that batch's own statistics
    est = CGCNNRegressor(max_epochs=3, batch_size=40, lr=3e-2, random_state=0,
                         module__hidden=8, module__n_conv=2,
                         callbacks=[("recompute_bn", RecomputeBatchNorm())]).fit(X, y)
    in_eval = est.predict(X)
    model = est.module_
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()
            m.track_running_stats = False  # normalise with this batch's statistics
    with torch.no_grad():
        batch, _ = next(iter(est.get_iterator(est.get_dataset(X), training=False)))
        raw = model(batch).numpy()
    batch_stats = est.target_scaler_.inverse_transform(raw)
    # equal up to the unbiased (running) vs biased (batch) variance
    np.testing.assert_allclose(in_eval, batch_stats, rtol=2e-3, atol=2e-3 * np.abs(y).max())


def test_without_batch_norm_it_changes_nothing():
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=16)
    kw = dict(max_epochs=1, random_state=0, module__hidden=8, module__n_conv=1,
              module__conv="simple")  # Eq. 4 has no batch norm
    plain = CGCNNRegressor(**kw).fit(X, y).predict(X)
    with_cb = CGCNNRegressor(**kw, callbacks=[("bn", RecomputeBatchNorm())]).fit(X, y).predict(X)
    np.testing.assert_array_equal(plain, with_cb)


def _mae(est, X, y):
    return float(np.abs(est.predict(X) - y).mean())


def test_a_fit_of_few_steps_warns_that_its_statistics_are_stale():
    """One training batch leaves the running statistics 90% initial (mean 0, var 1):
    eval-mode predictions are of no trained function (held-out MAE many times the
    mean predictor's). fit says so; RecomputeBatchNorm (always, or only_if_stale)
    gives the statistics of the trained weights, and no warning."""
    import warnings

    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=400)
    kw = dict(max_epochs=1, random_state=0)
    with pytest.warns(UserWarning, match=r"batch norm\(s\) have seen only 1 training "
                                         r"batch\(es\).*RecomputeBatchNorm"):
        kept = CGCNNRegressor(**kw).fit(X[:40], y[:40])
    mean_mae = float(np.abs(y[200:] - y[:40].mean()).mean())
    assert _mae(kept, X[200:], y[200:]) > 3 * mean_mae
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        always = CGCNNRegressor(**kw, callbacks=[("bn", RecomputeBatchNorm())]).fit(
            X[:40], y[:40])
        stale_only = CGCNNRegressor(**kw, callbacks=[
            ("bn", RecomputeBatchNorm(only_if_stale=True))]).fit(X[:40], y[:40])
    np.testing.assert_array_equal(always.predict(X[200:]), stale_only.predict(X[200:]))
    assert _mae(always, X[200:], y[200:]) < 1.2 * mean_mae


def test_long_trained_statistics_raise_no_warning_and_are_kept():
    """48 training batches (>= 44 at momentum 0.1): no warning, and only_if_stale
    recomputes nothing. The reference checkpoints' batch norms count the batches of
    their training (the reference saved no count), so fine-tuning one is quiet."""
    import warnings

    from skcrystal import pretrained
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=16)
    kw = dict(max_epochs=12, batch_size=4, random_state=0, module__n_conv=1,
              module__h_fea_len=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = CGCNNRegressor(**kw).fit(X, y)
        stale_only = CGCNNRegressor(**kw, callbacks=[
            ("bn", RecomputeBatchNorm(only_if_stale=True))]).fit(X, y)
        est = pretrained.load("band-gap")
        est.set_params(max_epochs=1, random_state=0).partial_fit(X, y)
    np.testing.assert_array_equal(plain.predict(X), stale_only.predict(X))
    counts = {int(m.num_batches_tracked) for m in est.module_.modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    # 457 epochs of ceil(16458 / 256) batches (from the checkpoint), + 1 batch here
    assert counts == {457 * 65 + 1}


def test_callbacks_set_on_a_fitted_estimator_take_effect():
    """skorch kept a fitted net's callbacks until the next fit (partial_fit ran
    without a new one) and broke on a callback set to None."""
    from skorch.callbacks import Callback

    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=8)
    seen = []

    class Seen(Callback):
        def on_epoch_end(self, net, **kwargs):
            seen.append(len(net.history))

    est = CGCNNRegressor(max_epochs=1, random_state=0, module__n_conv=1).fit(X, y)
    est.set_params(callbacks=[("seen", Seen())]).partial_fit(X, y)
    assert seen == [2]
    est.set_params(callbacks__seen=None, callbacks__progress_bar=None).partial_fit(X, y)
    assert seen == [2] and len(est.history) == 3

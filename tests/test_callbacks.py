"""Shared training callbacks."""
import numpy as np
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

"""Training callbacks shared by every estimator (skorch ``Callback`` objects)."""
from __future__ import annotations

import torch
from skorch.callbacks import Callback

__all__ = ["RecomputeBatchNorm"]


class RecomputeBatchNorm(Callback):
    """Recompute every batch norm's running statistics after training.

    During training a batch norm keeps an exponential moving average of the
    batch statistics (momentum 0.1), which lags behind the weights: after
    the last epochs, especially at a high learning rate, the running
    statistics describe earlier weights, and predictions in eval mode drift
    from what training optimised. This callback does one pass over the
    training set after the last epoch, with the weights frozen and every
    other layer in eval mode, and replaces the running statistics by their
    exact average over that pass.

    Use it as ``callbacks=[("recompute_bn", RecomputeBatchNorm())]``.
    """

    def on_train_end(self, net, X=None, y=None, **kwargs):
        norms = [m for m in net.module_.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 and m.track_running_stats]
        if not norms or X is None:
            return
        momenta = [m.momentum for m in norms]
        net.module_.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
            m.train()
        try:
            dataset = net.get_dataset(X)
            with torch.no_grad():
                for batch, _ in net.get_iterator(dataset, training=False):
                    net.infer(batch)
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            net.module_.eval()

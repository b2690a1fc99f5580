"""Training callbacks shared by every estimator (skorch ``Callback`` objects)."""
from __future__ import annotations

import torch
from skorch.callbacks import Callback
from skorch.callbacks import Checkpoint as _SkorchCheckpoint
from skorch.utils import noop

__all__ = ["RecomputeBatchNorm", "Checkpoint"]


class Checkpoint(_SkorchCheckpoint):
    """skorch's ``Checkpoint`` that also saves the fitted data state.

    The weights alone do not predict in the units of ``y``: the target
    scaling (or the classes) and the descriptor scaling are saved too, as
    ``f_state`` (JSON, see :meth:`CrystalGraphNet.save_params`), so
    ``net.load_params(checkpoint=cp)`` restores a model that predicts, in
    a fresh estimator as well. Parameters are skorch's; ``f_state`` is the
    state file's name (default ``"state.json"``), and the defaults save the
    parameters, the optimizer state and the history, which is what
    resuming training needs (see :meth:`CrystalGraphNet.resume`).
    """

    def __init__(self, monitor="valid_loss_best", f_params="params.pt",
                 f_optimizer="optimizer.pt", f_criterion="criterion.pt",
                 f_history="history.json", f_pickle=None, fn_prefix="", dirname="",
                 event_name="event_cp", sink=noop, load_best=False,
                 use_safetensors=False, f_state="state.json", **kwargs):
        super().__init__(monitor=monitor, f_params=f_params, f_optimizer=f_optimizer,
                         f_criterion=f_criterion, f_history=f_history, f_pickle=f_pickle,
                         fn_prefix=fn_prefix, dirname=dirname, event_name=event_name,
                         sink=sink, load_best=load_best, use_safetensors=use_safetensors,
                         f_state=f_state, **kwargs)


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

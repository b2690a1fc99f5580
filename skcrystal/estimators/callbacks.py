"""Training callbacks shared by every estimator (skorch ``Callback`` objects)."""
from __future__ import annotations

import torch
from skorch.callbacks import Callback
from skorch.callbacks import Checkpoint as _SkorchCheckpoint
from skorch.utils import noop

__all__ = ["RecomputeBatchNorm", "Checkpoint", "EpochProgressBar"]


class EpochProgressBar(Callback):
    """A progress bar over the epochs of ``fit`` (tqdm, on stderr).

    Shown when the estimator's ``progress`` says so (``"auto"``: stderr is
    a terminal) and ``verbose=0`` (``verbose=1`` prints skorch's table
    instead); the bar shows the last train (and valid) loss. One of the
    default callbacks (``callbacks__progress_bar=None`` removes it).
    """

    def on_train_begin(self, net, **kwargs):
        self.bar_ = None
        show = getattr(net, "_show_progress", lambda: False)()
        if show and not net.verbose:
            from tqdm.auto import tqdm
            self.bar_ = tqdm(total=int(net.max_epochs), unit="epoch", leave=False,
                             desc=f"training {type(net).__name__}")

    def on_epoch_end(self, net, **kwargs):
        if getattr(self, "bar_", None) is None:
            return
        row = net.history[-1]
        self.bar_.set_postfix({k: f"{row[k]:.4g}" for k in ("train_loss", "valid_loss")
                               if isinstance(row.get(k), float)}, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        if getattr(self, "bar_", None) is not None:
            self.bar_.close()
        self.bar_ = None

    def __getstate__(self):  # a tqdm bar is not picklable
        state = dict(self.__dict__)
        state.pop("bar_", None)
        return state


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

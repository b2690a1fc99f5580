"""Training callbacks shared by every estimator (skorch ``Callback`` objects)."""
from __future__ import annotations

import contextlib
import os

import torch
from skorch.callbacks import Callback
from skorch.callbacks import Checkpoint as _SkorchCheckpoint
from skorch.utils import noop

__all__ = ["RecomputeBatchNorm", "Checkpoint", "EpochProgressBar", "stale_batch_norms",
           "STALE_SHARE"]


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
    """skorch's ``Checkpoint`` that also saves the fitted data state and the RNG.

    The weights alone do not predict in the units of ``y``: the target
    scaling (or the classes) and the descriptor scaling are saved too, as
    ``f_state`` (JSON, see :meth:`CrystalGraphNet.save_params`), so
    ``net.load_params(checkpoint=cp)`` restores a model that predicts, in
    a fresh estimator as well. ``f_rng`` (JSON) saves torch's random number
    generator, which draws the next epochs' shuffles and dropout masks: a
    fit resumed from the checkpoint (:meth:`CrystalGraphNet.resume`) then
    trains exactly as the uninterrupted fit would have. Parameters are
    skorch's; ``f_state`` and ``f_rng`` are the two files' names (default
    ``"state.json"``, ``"rng.json"``), and the defaults save the parameters,
    the optimizer state and the history, which is what resuming training
    needs.

    A checkpoint is written whole or not at all: every file goes to a
    temporary name first and they are renamed together once all are
    written (the history last), so a process killed while saving leaves the
    previous epoch's checkpoint; a file that cannot be written leaves it
    too, and the message goes to ``sink``.
    """

    def __init__(self, monitor="valid_loss_best", f_params="params.pt",
                 f_optimizer="optimizer.pt", f_criterion="criterion.pt",
                 f_history="history.json", f_pickle=None, fn_prefix="", dirname="",
                 event_name="event_cp", sink=noop, load_best=False,
                 use_safetensors=False, f_state="state.json", f_rng="rng.json", **kwargs):
        super().__init__(monitor=monitor, f_params=f_params, f_optimizer=f_optimizer,
                         f_criterion=f_criterion, f_history=f_history, f_pickle=f_pickle,
                         fn_prefix=fn_prefix, dirname=dirname, event_name=event_name,
                         sink=sink, load_best=load_best, use_safetensors=use_safetensors,
                         f_state=f_state, f_rng=f_rng, **kwargs)

    @classmethod
    def every_epoch(cls, dirname):
        """The checkpoint :meth:`CrystalGraphNet.resume` needs, saved after every
        epoch into ``dirname`` (weights, optimizer, history, data state, generator;
        no criterion file, no event column in the history)."""
        return cls(monitor=None, dirname=str(dirname), f_criterion=None, event_name=None)

    def save_model(self, net):
        self._staged_, self._failed_ = {}, []
        staged = self._staged_
        try:
            super().save_model(net)
            if self._failed_:
                self._sink(f"checkpoint not updated: {self._failed_[0]}", net.verbose)
                return
            # insertion order: the history, written last by skorch, is renamed last
            for final in list(staged):
                os.replace(staged.pop(final), final)
        finally:
            for tmp in staged.values():
                with contextlib.suppress(OSError):
                    os.remove(tmp)
            self.__dict__.pop("_staged_", None)
            self.__dict__.pop("_failed_", None)

    def _save_params(self, f, net, f_name, log_name):
        try:
            net.save_params(**{f_name: f, "use_safetensors": self.use_safetensors})
        except Exception as exc:  # noqa: BLE001 - reported, as skorch's Checkpoint does
            failed = getattr(self, "_failed_", None)
            message = f"{log_name} could not be saved to {f}: {type(exc).__name__}: {exc}"
            if failed is None:
                self._sink(message, net.verbose)
            else:
                failed.append(message)

    def _stage(self, final):
        staged = getattr(self, "_staged_", None)
        if staged is None or not isinstance(final, (str, os.PathLike)):
            return final
        tmp = f"{os.fspath(final)}.tmp-{os.getpid()}"
        staged[os.fspath(final)] = tmp
        return tmp

    def _format_target(self, net, f, idx):
        return self._stage(super()._format_target(net, f, idx))

    @property
    def f_history_(self):
        return self._stage(super().f_history_)


#: a batch norm whose running statistics still hold more than this share of
#: their initial values (mean 0, variance 1) is stale: (1 - momentum)^updates
STALE_SHARE = 0.01


def _batch_norms(module):
    """The batch norms of ``module`` that keep running statistics."""
    return [m for m in module.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _stale(norm):
    """Whether ``norm``'s running statistics still mostly hold their initial values.

    A batch norm that has seen no batch at all is not: its output is never
    computed (CrysToGraph's last angle update), so its statistics are read
    by nothing.
    """
    if norm.momentum is None or getattr(norm, "_stats_recomputed", False):
        return False  # a cumulative average or recomputed: none of the initial values left
    seen = int(norm.num_batches_tracked)
    return seen > 0 and (1.0 - norm.momentum) ** seen > STALE_SHARE


def stale_batch_norms(module):
    """The batch norms of ``module`` whose running statistics are stale (see
    :data:`STALE_SHARE`): 1 to ~44 training batches at momentum 0.1, and not
    recomputed by :class:`RecomputeBatchNorm`."""
    return [m for m in _batch_norms(module) if _stale(m)]


class RecomputeBatchNorm(Callback):
    """Recompute batch norms' running statistics after training.

    During training a batch norm keeps an exponential moving average of the
    batch statistics (momentum 0.1), which lags behind the weights: after
    the last epochs, especially at a high learning rate, the running
    statistics describe earlier weights, and predictions in eval mode drift
    from what training optimised. This callback does one pass over the
    training set after the last epoch, with the weights frozen and every
    other layer in eval mode, and replaces the running statistics by their
    exact average over that pass.

    Use it as ``callbacks=[("recompute_bn", RecomputeBatchNorm())]``.

    Parameters
    ----------
    only_if_stale : bool, default False
        Recompute only the batch norms whose running statistics still hold
        more than 1% (:data:`STALE_SHARE`) of their initial values (mean 0,
        variance 1), i.e. that have seen fewer than ~44 training batches at
        momentum 0.1 (the estimators warn about those after ``fit``); do
        nothing when there is none. Batch norms that have seen more batches
        (a long fit, a pre-trained model being fine-tuned) keep theirs.
    """

    def __init__(self, only_if_stale=False):
        self.only_if_stale = only_if_stale

    def on_train_end(self, net, X=None, y=None, **kwargs):
        norms = (stale_batch_norms if self.only_if_stale else _batch_norms)(net.module_)
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
        for m in norms:  # exact statistics: none of the initial values left
            m._stats_recomputed = True

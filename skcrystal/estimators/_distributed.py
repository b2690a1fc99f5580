"""Data-parallel training with ``torch.distributed`` and device options.

``distributed=True`` makes ``fit`` train with PyTorch's
``DistributedDataParallel`` (DDP) when the script was started by a launcher
that sets up several processes (``torchrun --nproc-per-node 2 train.py``,
``torchrun --nnodes ...`` on a cluster, ``srun`` with the ``torchrun``
variables): every process runs the same script, builds the same estimator,
reads its own part of each batch and averages the gradients with the
others. Without a launcher (one process) the option changes nothing.

* The process group is started from the launcher's environment
  (``MASTER_ADDR``, ``RANK``, ``WORLD_SIZE``...) on the first ``fit``, with
  the ``gloo`` backend on CPU and ``nccl`` on CUDA (``LOCAL_RANK`` picks the
  GPU), unless the script started one itself; a group started here is
  closed when the interpreter exits.
* ``batch_size`` is the **global** batch: each of ``W`` processes takes
  ``batch_size / W`` structures of every batch (a ``DistributedSampler``,
  shuffled with ``random_state`` as seed, reshuffled every epoch). With
  ``iterator_train__shuffle=False``, a dataset whose size is a multiple of
  ``batch_size``, and equal seeds, the trained weights equal those of one
  process with the same ``batch_size`` up to float rounding: the batch
  normalisation layers use the statistics of the whole global batch
  (synchronised across processes) and the loss is the global batch mean.
* Prediction, scoring and ``transform`` run on the whole input in every
  process; only one process should write files (``torch.distributed.get_rank() == 0``).

``mixed_precision="bf16"`` runs the model's forward pass under
``torch.autocast`` with bfloat16 (CUDA, or CPU); the loss and the weights
stay in float32.
"""
from __future__ import annotations

import atexit
import contextlib
import os

import torch
import torch.nn.functional as F

from ..nn.common import BatchNorm

__all__ = ["world", "training_context", "iterator_kwargs", "forward_module",
           "autocast"]


def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() else None


def world(net):
    """(world size, rank) of a distributed fit, or None when training alone."""
    if not getattr(net, "distributed", False):
        return None
    dist = _dist()
    if dist is None or not dist.is_initialized():
        return None
    size = dist.get_world_size()
    return None if size == 1 else (size, dist.get_rank())


def _init_process_group(net):
    dist = _dist()
    if dist is None:
        raise RuntimeError("distributed=True needs a torch build with torch.distributed")
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    cuda = str(net.device).startswith("cuda")
    if cuda and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    # the group this library opened is closed before the interpreter exits:
    # left open, gloo's threads can abort the process at exit ("terminate
    # called without an active exception", SIGABRT) after a finished fit
    atexit.register(_destroy_process_group)


def _destroy_process_group():
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------- synced batch norm
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes (the gradient is summed back the same way)."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        out = x.clone()
        _dist().all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        _dist().all_reduce(grad, group=ctx.group)
        return grad, None


class SyncedBatchNorm(BatchNorm):
    """:class:`~skcrystal.nn.common.BatchNorm` with statistics of the global batch.

    In training mode the mean and variance are those of the rows of every
    process (two differentiable all-reduces on ``process_group``), so the
    normalisation and the running statistics equal those of one process
    holding the whole batch. Works on CPU (gloo) as on GPU, unlike
    ``torch.nn.SyncBatchNorm``. Set by class swap during a distributed fit
    only; the fitted model holds plain ``BatchNorm`` layers.
    """

    process_group = None

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        group = self.process_group
        n = torch.tensor([float(x.shape[0])], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(0), n]), group)
        total = sums[-1].detach()
        if float(total) <= 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps)
        mean = sums[:-1] / total
        var = _AllReduceSum.apply(((x - mean) ** 2).sum(0), group) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (total / (total - 1))
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out


def _swap_batchnorm(module, group):
    swapped = []
    for m in module.modules():
        if type(m) is BatchNorm:
            m.__class__ = SyncedBatchNorm
            m.process_group = group
            swapped.append(m)
    return swapped


# ---------------------------------------------------------------- fit context
@contextlib.contextmanager
def training_context(net):
    """Around skorch's fit: start the process group; undo DDP and synced BN after."""
    if getattr(net, "distributed", False):
        _init_process_group(net)
    try:
        yield
    finally:
        state = net.__dict__.pop("_ddp_", None)
        if state is not None:
            for m in state["swapped"]:
                m.__class__ = BatchNorm
                m.__dict__.pop("process_group", None)


def forward_module(net):
    """The module that skorch's training step calls: DDP-wrapped in a distributed fit."""
    module = net.module_
    if not module.training or world(net) is None:
        return module
    state = net.__dict__.get("_ddp_")
    if state is None or state["module"] is not module:
        from torch.nn.parallel import DistributedDataParallel

        dist = _dist()
        group = dist.new_group()  # batch-norm statistics apart from DDP's gradients
        swapped = _swap_batchnorm(module, group)
        cuda = str(net.device).startswith("cuda")
        ids = [torch.cuda.current_device()] if cuda else None
        # some models leave parameters unused in some configurations
        ddp = DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
        state = net.__dict__["_ddp_"] = {"module": module, "ddp": ddp, "swapped": swapped}
    return state["ddp"]


class _EpochSampler(torch.utils.data.distributed.DistributedSampler):
    """DistributedSampler that moves to the next epoch's shuffle by itself."""

    def __iter__(self):
        it = super().__iter__()
        self.epoch += 1
        return it


def iterator_kwargs(net, dataset, kwargs):
    """DataLoader arguments of a distributed training iterator (global batch split)."""
    w = world(net)
    if w is None:
        return kwargs
    size, rank = w
    batch = kwargs["batch_size"]
    if batch % size:
        raise ValueError(f"batch_size={batch} (the global batch) must be a multiple of "
                         f"the number of processes, {size}")
    shuffle = kwargs.pop("shuffle", True)
    seed = net.random_state if net.random_state is not None else 0
    kwargs["sampler"] = _EpochSampler(dataset, num_replicas=size, rank=rank,
                                      shuffle=bool(shuffle), seed=int(seed))
    kwargs["batch_size"] = batch // size
    return kwargs


def autocast(net):
    """``torch.autocast`` context of ``mixed_precision`` (a null context when None)."""
    if getattr(net, "mixed_precision", None) != "bf16":
        return contextlib.nullcontext()
    device_type = torch.device(net.device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)

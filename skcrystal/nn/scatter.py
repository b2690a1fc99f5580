"""Segment reductions over an index vector (pure torch, no extension).

``index`` maps each row of ``src`` to a segment (an atom, a crystal); the
reductions are one ``index_add_``/``scatter_reduce_`` call each, so models
never loop over atoms or crystals in Python.
"""
import torch

__all__ = ["scatter_sum", "scatter_mean", "scatter_max", "scatter_softmax"]


def _expand(index, src):
    return index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src)


def scatter_sum(src, index, dim_size):
    """Sum rows of ``src`` (shape (n, ...)) into ``dim_size`` segments."""
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src, index, dim_size):
    """Mean of the rows of each segment (0 for empty segments)."""
    total = scatter_sum(src, index, dim_size)
    count = torch.bincount(index, minlength=dim_size).clamp_(min=1).to(src.dtype)
    return total / count.view((-1,) + (1,) * (src.dim() - 1))


def scatter_max(src, index, dim_size):
    """Element-wise max of the rows of each segment (0 for empty segments)."""
    out = src.new_full((dim_size,) + tuple(src.shape[1:]), float("-inf"))
    out = out.scatter_reduce(0, _expand(index, src), src, reduce="amax", include_self=True)
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


def scatter_softmax(src, index, dim_size):
    """Softmax of ``src`` within each segment, along dim 0.

    Parameters
    ----------
    src : Tensor, shape (n, ...)
        Scores (e.g. one per edge and head).
    index : LongTensor, shape (n,)
        Segment of each row (e.g. the edge's centre atom).
    dim_size : int
        Number of segments.

    Returns
    -------
    Tensor, shape (n, ...)
        Weights that sum to 1 over the rows of each segment.
    """
    seg_max = scatter_max(src.detach(), index, dim_size)
    exp = torch.exp(src - seg_max.index_select(0, index))
    denom = scatter_sum(exp, index, dim_size).index_select(0, index)
    return exp / denom.clamp_min(torch.finfo(src.dtype).tiny)

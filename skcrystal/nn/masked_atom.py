"""Masked-atom model: recover the element of masked atoms (CrysToGraph A.1).

A learnable element embedding (row 0 is the mask token), CGCNN's gated
convolutions (the paper "trained a CGCNN model") and a per-atom classifier
over the elements. In training mode the module draws the mask itself, a new
one per batch (80% of the chosen atoms get the mask token, 10% a random
element seen in training, 10% keep theirs); in evaluation mode every chosen
atom gets the mask token. ``forward`` returns the logits of the chosen atoms
and their true elements, which is all the loss needs.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from ._constraints import Interval
from .basis import GaussianExpansion
from .cgcnn import CGCNNConv
from .embedding import N_ELEMENTS

__all__ = ["MaskedAtomModel", "choose_masked_atoms"]


def choose_masked_atoms(node_graph, n_per_graph, mask_rate, generator=None):
    """Boolean mask of ``floor(mask_rate * n)`` (>= 1) random atoms per crystal.

    Parameters
    ----------
    node_graph : LongTensor, shape (n_nodes,)
        Crystal of each node (contiguous, as collated).
    n_per_graph : LongTensor, shape (n_graphs,)
    mask_rate : float
    generator : torch.Generator, optional

    Returns
    -------
    BoolTensor, shape (n_nodes,)
    """
    n = node_graph.shape[0]
    n_mask = torch.clamp(torch.floor(n_per_graph.to(torch.float64) * mask_rate), min=1)
    # sort by crystal, then by a random key: the first n_mask of each crystal
    key = node_graph.to(torch.float64) + torch.rand(n, generator=generator, dtype=torch.float64)
    order = torch.argsort(key)
    start = torch.zeros_like(n_per_graph)
    start[1:] = torch.cumsum(n_per_graph, 0)[:-1]
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n) - start.index_select(0, node_graph[order])
    return rank < n_mask.to(torch.long).index_select(0, node_graph)


class MaskedAtomModel(nn.Module):
    """Element embedding -> gated convolutions -> per-atom element logits.

    Parameters
    ----------
    elements : sequence of int
        Elements seen in training (the random replacements are drawn from
        them; set by the estimator).
    embedding_dim : int
        Length of the learned element vectors.
    hidden : int
        Width of the convolutions.
    n_conv : int
    cutoff : float
        Last Gaussian centre, Å (the estimator's graph radius).
    mask_rate : float
        Fraction of each crystal's atoms chosen (at least one).

    Shapes
    ------
    batch -> (logits (n_chosen, 119), elements (n_chosen,))
    """

    _parameter_constraints = {
        "embedding_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_conv": [Interval(numbers.Integral, 0, None, closed="left")],
        "cutoff": [Interval(numbers.Real, 0, None, closed="neither")],
        "mask_rate": [Interval(numbers.Real, 0, 1, closed="neither")],
    }

    def __init__(self, elements=(), embedding_dim=32, hidden=64, n_conv=3, cutoff=8.0,
                 mask_rate=0.15):
        super().__init__()
        self.mask_rate = float(mask_rate)
        self.register_buffer("elements", torch.as_tensor(list(elements), dtype=torch.long))
        self.embedding = nn.Embedding(N_ELEMENTS, embedding_dim)  # row 0: mask token
        self.proj = nn.Linear(embedding_dim, hidden)
        self.rbf = GaussianExpansion(0.0, cutoff, step=0.2)
        self.convs = nn.ModuleList(CGCNNConv(hidden, self.rbf.n_centers) for _ in range(n_conv))
        self.out = nn.Linear(hidden, N_ELEMENTS)
        #: a generator for reproducible evaluation masks (set by the estimator)
        self.generator = None

    def tokens(self, batch, chosen):
        """Input tokens: the chosen atoms masked (and 10%/10% swapped/kept in training)."""
        target = batch.atomic_numbers
        if not self.training:
            return torch.where(chosen, torch.zeros_like(target), target)
        u = torch.rand(target.shape[0], generator=self.generator, device=target.device)
        tokens = target.clone()
        tokens[chosen & (u < 0.8)] = 0
        swap = chosen & (u >= 0.8) & (u < 0.9)
        if len(self.elements):
            pick = torch.randint(0, len(self.elements), (int(swap.sum()),),
                                 generator=self.generator, device=target.device)
            tokens[swap] = self.elements[pick]
        return tokens

    def forward(self, batch):
        chosen = choose_masked_atoms(batch.node_graph, batch.n_nodes_per_graph,
                                     self.mask_rate, self.generator)
        x = self.proj(self.embedding(self.tokens(batch, chosen)))
        e = self.rbf(batch.distances)
        for conv in self.convs:
            x = conv(x, e, batch.edge_index)
        return self.out(x)[chosen], batch.atomic_numbers[chosen]

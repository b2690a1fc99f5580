"""Masked-atom pretraining of element embeddings (CrysToGraph appendix A.1).

A graph network learns to recover the element of masked atoms from their
surroundings; the embedding table it learns on the way is returned as an
element feature table that any skcrystal model takes as
``module__extra_atom_features`` (concatenated with the CGCNN one-hot
features, as the paper does)::

    table = pretrain_atom_embeddings(unlabelled_structures, random_state=0)
    est = CrysToGraphRegressor(module__extra_atom_features=table)

Recipe (paper A.1): in each crystal 15% of the atoms are chosen (at least
one, at most 15%: floor), and of those 80% are replaced by a mask token,
10% by a random element, 10% kept. Cells too small for the rate (fewer than
``ceil(1 / mask_rate)`` = 7 atoms) are expanded into ``k x k x k``
supercells. A new mask is drawn every epoch. The network is CGCNN-like
(the paper "trained a CGCNN model"): learnable element embedding (row 0 =
mask token), gated CGCNN convolutions, a per-atom classifier over the
elements.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .graphs import GraphBuilder, collate_graphs, get_graphs
from .nn.basis import GaussianExpansion
from .nn.cgcnn import CGCNNConv
from .nn.embedding import N_ELEMENTS

__all__ = ["MaskedAtomPretrainer", "pretrain_atom_embeddings", "expand_small_cells",
           "choose_masked_atoms"]


def expand_small_cells(structures, mask_rate=0.15):
    """Supercells ``k x k x k`` of the cells with fewer than ``ceil(1/mask_rate)`` atoms.

    Returns
    -------
    list of Structure
        Same order; cells that are large enough are returned unchanged.
    """
    need = math.ceil(1.0 / mask_rate - 1e-9)
    out = []
    for s in structures:
        n = len(s)
        k = 1
        while n * k ** 3 < need:
            k += 1
        out.append(s if k == 1 else s * (k, k, k))
    return out


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


class _MaskedAtomNet(nn.Module):
    """Element embedding -> CGCNN convolutions -> per-atom element logits."""

    def __init__(self, embedding_dim, hidden, n_conv, cutoff):
        super().__init__()
        self.embedding = nn.Embedding(N_ELEMENTS, embedding_dim)  # row 0: mask token
        self.proj = nn.Linear(embedding_dim, hidden)
        self.rbf = GaussianExpansion(0.0, cutoff, step=0.2)
        self.convs = nn.ModuleList(CGCNNConv(hidden, self.rbf.n_centers) for _ in range(n_conv))
        self.out = nn.Linear(hidden, N_ELEMENTS)

    def forward(self, tokens, batch):
        x = self.proj(self.embedding(tokens))
        e = self.rbf(batch.distances)
        for conv in self.convs:
            x = conv(x, e, batch.edge_index)
        return self.out(x)


class MaskedAtomPretrainer:
    """Masked-element prediction on crystal graphs (see the module docstring).

    Parameters
    ----------
    embedding_dim : int, default=32
        Length of the learned element vectors (columns of the table).
    hidden : int, default=64
        Width of the convolutions.
    n_conv : int, default=3
    mask_rate : float, default=0.15
    max_epochs : int, default=20
    batch_size : int, default=32
    lr : float, default=1e-3
        AdamW; divided by 10 after 2/3 of the epochs (the paper's Fig. A1
        schedule shape).
    radius, max_neighbors : float, int
        Graph parameters (the radius grows until every atom has
        ``max_neighbors`` neighbours).
    random_state : int or None
    verbose : int

    Attributes
    ----------
    embedding_table_ : ndarray, shape (119, embedding_dim)
        Row Z is element Z; NaN for elements absent from the training
        structures (and row 0, the mask token).
    elements_ : ndarray of int
        Elements seen in training.
    most_frequent_ : int
        The most frequent element among training atoms (the baseline).
    history_ : list of float
        Training loss per epoch.
    """

    def __init__(self, embedding_dim=32, hidden=64, n_conv=3, mask_rate=0.15, max_epochs=20,
                 batch_size=32, lr=1e-3, radius=8.0, max_neighbors=12, random_state=None,
                 verbose=0):
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.n_conv = n_conv
        self.mask_rate = mask_rate
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.radius = radius
        self.max_neighbors = max_neighbors
        self.random_state = random_state
        self.verbose = verbose

    def _graphs(self, structures):
        from ._validation import check_structures
        # the shared checks: a disordered or empty structure, or a non-Structure
        # item, is named by its index before any supercell is made
        structures = expand_small_cells(check_structures(structures), self.mask_rate)
        builder = GraphBuilder(radius=self.radius, max_neighbors=self.max_neighbors,
                               grow_radius=True)
        return get_graphs(structures, builder, indices=range(len(structures)))

    def fit(self, structures):
        """Train on unlabelled structures (a sequence of pymatgen Structures)."""
        if not (0 < self.mask_rate < 1):
            raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate!r}")
        graphs = self._graphs(structures)
        counts = np.bincount(np.concatenate([g.atomic_numbers for g in graphs]),
                             minlength=N_ELEMENTS)
        self.elements_ = np.flatnonzero(counts)
        self.most_frequent_ = int(np.argmax(counts))
        seed = None if self.random_state is None else int(self.random_state)
        gen = torch.Generator()
        gen.manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.module_ = _MaskedAtomNet(self.embedding_dim, self.hidden, self.n_conv,
                                          self.radius)
        opt = torch.optim.AdamW(self.module_.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, [max(1, (2 * self.max_epochs) // 3)], gamma=0.1)
        elements = torch.as_tensor(self.elements_)
        self.history_ = []
        for epoch in range(self.max_epochs):
            self.module_.train()
            perm = torch.randperm(len(graphs), generator=gen).numpy()
            total, count = 0.0, 0
            for lo in range(0, len(graphs), self.batch_size):
                batch = collate_graphs([graphs[i] for i in perm[lo:lo + self.batch_size]])
                target = batch.atomic_numbers
                masked = choose_masked_atoms(batch.node_graph, batch.n_nodes_per_graph,
                                             self.mask_rate, gen)
                u = torch.rand(target.shape[0], generator=gen)
                tokens = target.clone()
                tokens[masked & (u < 0.8)] = 0
                swap = masked & (u >= 0.8) & (u < 0.9)
                pick = torch.randint(0, len(elements), (int(swap.sum()),), generator=gen)
                tokens[swap] = elements[pick]
                logits = self.module_(tokens, batch)
                loss = F.cross_entropy(logits[masked], target[masked])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(masked.sum())
                count += int(masked.sum())
            sched.step()
            self.history_.append(total / max(count, 1))
            if self.verbose:
                print(f"epoch {epoch + 1}: masked-atom loss {self.history_[-1]:.4f}")
        table = self.module_.embedding.weight.detach().numpy().astype(np.float64).copy()
        unseen = np.ones(N_ELEMENTS, dtype=bool)
        unseen[self.elements_] = False
        table[unseen] = np.nan  # includes row 0, the mask token
        self.embedding_table_ = table
        return self

    def _masked_predictions(self, structures, random_state):
        if not hasattr(self, "module_"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError("MaskedAtomPretrainer is not fitted; call fit first")
        graphs = self._graphs(structures)
        gen = torch.Generator()
        gen.manual_seed(int(random_state))
        self.module_.eval()
        preds, trues = [], []
        with torch.no_grad():
            for lo in range(0, len(graphs), self.batch_size):
                batch = collate_graphs(graphs[lo:lo + self.batch_size])
                masked = choose_masked_atoms(batch.node_graph, batch.n_nodes_per_graph,
                                             self.mask_rate, gen)
                tokens = torch.where(masked, torch.zeros_like(batch.atomic_numbers),
                                     batch.atomic_numbers)
                logits = self.module_(tokens, batch)[masked]
                preds.append(logits.argmax(1).numpy())
                trues.append(batch.atomic_numbers[masked].numpy())
        return np.concatenate(preds), np.concatenate(trues)

    def score(self, structures, random_state=0):
        """Accuracy of the predicted element of masked atoms (all replaced by the token).

        Returns
        -------
        float
            Fraction of the masked atoms (``mask_rate`` of each, possibly
            expanded, cell; fixed ``random_state``) whose element is
            recovered.
        """
        pred, true = self._masked_predictions(structures, random_state)
        return float(np.mean(pred == true))

    def baseline_score(self, structures, random_state=0):
        """Accuracy of always guessing the most frequent training element, same atoms."""
        _, true = self._masked_predictions(structures, random_state)
        return float(np.mean(true == self.most_frequent_))


def pretrain_atom_embeddings(structures, embedding_dim=32, **kwargs):
    """Element embeddings learned by masked-atom prediction (paper appendix A.1).

    Parameters
    ----------
    structures : sequence of pymatgen Structure
        Unlabelled training structures.
    embedding_dim : int
        Length of each element vector.
    **kwargs
        Other :class:`MaskedAtomPretrainer` parameters (``max_epochs``,
        ``hidden``, ``random_state``...).

    Returns
    -------
    ndarray, shape (119, embedding_dim)
        Row Z is element Z; NaN rows for elements never seen (a model given
        this table as ``module__extra_atom_features`` then refuses those
        elements with an error naming the structure). Use
        :class:`MaskedAtomPretrainer` directly to also score held-out
        structures.
    """
    return MaskedAtomPretrainer(embedding_dim=embedding_dim, **kwargs) \
        .fit(structures).embedding_table_

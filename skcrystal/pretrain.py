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
supercells. A new mask is drawn for every batch. The network is
:class:`skcrystal.nn.masked_atom.MaskedAtomModel`; the trainer is an
estimator on the shared stack (graphs from the cache, skorch's training
loop, ``device``, ``random_state``, callbacks), with the paper's schedule
shape (lr divided by 10 after 2/3 of the epochs, Fig. A1).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.nn import functional as F

from .estimators.base import CrystalGraphNet
from .nn.embedding import N_ELEMENTS
from .nn.masked_atom import MaskedAtomModel, choose_masked_atoms

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


class StepDecay(Callback):
    """Divide the learning rate by ``factor`` after ``fraction`` of ``max_epochs``."""

    def __init__(self, fraction=2 / 3, factor=10.0):
        self.fraction = fraction
        self.factor = factor

    def on_train_begin(self, net, **kwargs):
        milestone = max(1, int(self.fraction * int(net.max_epochs)))
        self.scheduler_ = torch.optim.lr_scheduler.MultiStepLR(
            net.optimizer_, [milestone], gamma=1.0 / self.factor)

    def on_epoch_end(self, net, **kwargs):
        self.scheduler_.step()


class MaskedAtomPretrainer(CrystalGraphNet):
    """Masked-element prediction on crystal graphs (see the module docstring).

    Trains on unlabelled structures: ``fit(structures)``.

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
        AdamW without weight decay; divided by 10 after 2/3 of the epochs
        (callback ``lr_schedule``).
    radius, max_neighbors : float, int
        Graph parameters (the radius grows until every atom has
        ``max_neighbors`` neighbours: ``grow_radius=True``).
    random_state : int or None
    verbose : int
    **kwargs
        The other parameters of
        :class:`~skcrystal.estimators.base.CrystalGraphNet` (``device``,
        ``cache_dir``, ``n_jobs``, ``callbacks__...``, ``optimizer__...``).

    Attributes
    ----------
    embedding_table_ : ndarray, shape (119, embedding_dim)
        Row Z is element Z; NaN for elements absent from the training
        structures (and row 0, the mask token).
    elements_ : ndarray of int
        Elements seen in training.
    most_frequent_ : int
        The most frequent element among training atoms (the baseline).
    history : skorch History
        ``history[:, "train_loss"]``: the masked-atom loss per epoch.
    """

    _parameter_constraints = {
        **CrystalGraphNet._parameter_constraints,
        **{k: v for k, v in MaskedAtomModel._parameter_constraints.items() if k != "cutoff"},
    }

    def __init__(self, embedding_dim=32, hidden=64, n_conv=3, mask_rate=0.15, max_epochs=20,
                 batch_size=32, lr=1e-3, radius=8.0, max_neighbors=12, random_state=None,
                 verbose=0, **kwargs):
        kwargs.setdefault("module", MaskedAtomModel)
        kwargs.setdefault("criterion", torch.nn.CrossEntropyLoss)
        kwargs.setdefault("grow_radius", True)
        kwargs.setdefault("optimizer__weight_decay", 0.0)
        super().__init__(max_epochs=max_epochs, batch_size=batch_size, lr=lr, radius=radius,
                         max_neighbors=max_neighbors, random_state=random_state,
                         verbose=verbose, **kwargs)
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.n_conv = n_conv
        self.mask_rate = mask_rate

    @property
    def _default_callbacks(self):
        return [(name, StepDecay() if name == "lr_schedule" else cb)
                for name, cb in super()._default_callbacks]

    def _module_kwargs(self):
        kw = dict(embedding_dim=self.embedding_dim, hidden=self.hidden, n_conv=self.n_conv,
                  cutoff=self.radius, mask_rate=self.mask_rate,
                  elements=getattr(self, "elements_", ()))
        kw.update(self.get_params_for("module"))
        return kw

    def _inputs(self, X, module):
        # the shared checks name a bad structure by its index before any
        # supercell is made
        structures, _, _ = super()._inputs(X, module)
        return expand_small_cells(structures, self.mask_rate), None, []

    def _fit_data_state(self, X, y):
        self._check_params()
        structures, _, _ = self._inputs(X, None)
        counts = np.bincount(np.concatenate([s.atomic_numbers for s in structures]),
                             minlength=N_ELEMENTS)
        self.elements_ = np.flatnonzero(counts)
        self.most_frequent_ = int(np.argmax(counts))
        self.n_outputs_ = N_ELEMENTS
        self.n_descriptors_ = 0
        self.descriptor_scaler_ = None
        self._fit_memo_ = (X, structures, None)

    def check_data(self, X, y=None):
        """Unlabelled: the targets are the structures' own elements."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        logits, elements = y_pred
        return F.cross_entropy(logits, elements)

    def fit(self, X, y=None, **fit_params):
        """Train on unlabelled structures (a sequence of pymatgen Structures)."""
        super().fit(X, None, **fit_params)
        table = self.module_.embedding.weight.detach().cpu().numpy().astype(np.float64).copy()
        unseen = np.ones(N_ELEMENTS, dtype=bool)
        unseen[self.elements_] = False
        table[unseen] = np.nan  # includes row 0, the mask token
        self.embedding_table_ = table
        return self

    def _masked_predictions(self, structures, random_state):
        self.check_is_fitted()
        self.module_.generator = torch.Generator().manual_seed(int(random_state))
        try:
            outs = list(self.forward_iter(structures, training=False))
        finally:
            self.module_.generator = None
        preds = torch.cat([logits.argmax(1) for logits, _ in outs]).numpy()
        trues = torch.cat([elements for _, elements in outs]).numpy()
        return preds, trues

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

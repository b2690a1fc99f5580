"""Atom embedding: element -> initial atom feature vector.

Graphs carry atomic numbers only, so the atom feature scheme is a property
of the model, not of the cached graph: changing it in a grid search never
rebuilds graphs.
"""
import numpy as np
import torch
from torch import nn

from ..atom_features import table_elements

__all__ = ["AtomEmbedding", "resolve_atom_table"]

#: Rows of a learnable embedding table: Z = 1..118 (row 0 unused).
N_ELEMENTS = 119


def resolve_atom_table(atom_features, extra_atom_features=None):
    """The fixed atom feature table (float32, shape (n_rows, n_features)) or None.

    Parameters
    ----------
    atom_features : {"cgcnn", "embedding"}, str path, dict or ndarray
        ``"cgcnn"``: the one-hot table of CGCNN's supplement Table II
        (:func:`skcrystal.atom_features.atom_feature_table`);
        ``"embedding"``: a learnable embedding, no fixed table; a path to a
        reference ``atom_init.json``, a dict ``{Z: vector}`` or an array
        whose row Z is element Z.
    extra_atom_features : ndarray, optional
        A table concatenated to the fixed one (e.g. pre-trained element
        embeddings); unsupported elements are NaN rows.
    """
    from ..atom_features import atom_feature_table

    table = None if (isinstance(atom_features, str) and atom_features == "embedding") \
        else np.asarray(atom_feature_table(atom_features), dtype=np.float32)
    if extra_atom_features is not None:
        extra = np.asarray(extra_atom_features, dtype=np.float32)
        if extra.ndim != 2:
            raise ValueError("extra_atom_features must be a 2-D table (row Z = "
                             f"element Z), got shape {extra.shape}")
        if table is None:
            table = extra
        else:
            n = max(len(table), len(extra))
            pad = lambda t: np.vstack([t, np.full((n - len(t), t.shape[1]), np.nan, np.float32)])
            table = np.hstack([pad(table), pad(extra)])
    return table


class AtomEmbedding(nn.Module):
    """Map atomic numbers to ``dim``-dimensional atom features.

    With a fixed table (CGCNN one-hot, a user table, plus optional extra
    features) the table row is projected by a Linear layer, as in CGCNN;
    with ``atom_features="embedding"`` a learnable ``nn.Embedding`` is used.
    Its rows for elements no training structure had keep their random
    initial values: the estimators note the elements they train on
    (``trained_elements_``) and warn when a prediction meets others.

    Parameters
    ----------
    dim : int
        Output feature length.
    atom_features, extra_atom_features
        See :func:`resolve_atom_table`.
    bias : bool, default True
        Bias of the Linear projection of a fixed table (CrystalNet's
        reference projects without one).

    Shapes
    ------
    atomic_numbers (n_nodes,) int64 -> (n_nodes, dim)
    """

    def __init__(self, dim, atom_features="cgcnn", extra_atom_features=None, bias=True):
        super().__init__()
        table = resolve_atom_table(atom_features, extra_atom_features)
        if table is None:
            self.supported_elements = frozenset(range(1, N_ELEMENTS))
        else:
            self.supported_elements = table_elements(table)
        if table is None:
            self.register_buffer("table", None)
            self.embedding = nn.Embedding(N_ELEMENTS, dim)
            self.linear = None
        else:
            self.register_buffer("table", torch.as_tensor(np.nan_to_num(table, nan=0.0)))
            self.embedding = None
            self.linear = nn.Linear(table.shape[1], dim, bias=bias)

    @property
    def n_table_features(self):
        return 0 if self.table is None else int(self.table.shape[1])

    def forward(self, atomic_numbers):
        if self.embedding is not None:
            return self.embedding(atomic_numbers)
        return self.linear(self.table.index_select(0, atomic_numbers))

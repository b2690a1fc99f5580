"""The readout head shared by every model, incl. descriptor hybridization.

Every skcrystal model is ``embed(batch) -> (n_graphs, d)`` followed by this
head. When the estimator is given descriptors (paper "GNNs and
descriptors", Eq. 14), the standardized descriptor vector of each crystal is
concatenated to the pooled representation before the MLP: one
implementation for all models.
"""
import torch
from torch import nn

from .common import MLP, activation
from .model import CrystalModel

__all__ = ["ReadoutHead", "CrystalModel"]


class ReadoutHead(nn.Module):
    """``[h, descriptors] -> MLP -> outputs``.

    Parameters
    ----------
    in_dim : int
        Length of the pooled representation ``h``.
    n_outputs : int
        Targets (regression) or classes (classification).
    hidden : sequence of int
        Hidden layer widths of the MLP (CGCNN: ``(128,)``).
    act : str
        Activation between layers.
    n_descriptors : int
        Length of the descriptor vector concatenated to ``h`` (0: none). The
        first layer's descriptor columns start at zero and its ``h`` columns
        as without descriptors (same random draws), so a hybrid starts as the
        plain model of the same seed.
    input_act : bool
        Apply the activation to ``h`` first (CGCNN does, after pooling).
    dropout : float
        Dropout before the hidden layers after the first.
    descriptor_skip : bool
        With descriptors, add a linear map of the descriptors straight to
        the outputs, beside the MLP. A descriptor that carries the answer is
        then used directly instead of through the MLP, which otherwise tends
        to memorise the training set through the GNN features. The map starts
        at zero here; regressors start it at the ridge fit of the scaled
        targets on the scaled descriptors (penalty chosen by leave-one-out
        error) before training (see
        ``CrystalRegressorBase``).

    Shapes
    ------
    h (n_graphs, in_dim), descriptors (n_graphs, n_descriptors) ->
    (n_graphs, n_outputs)
    """

    def __init__(self, in_dim, n_outputs=1, hidden=(128,), act="softplus",
                 n_descriptors=0, input_act=False, dropout=0.0, descriptor_skip=True):
        super().__init__()
        self.n_descriptors = int(n_descriptors)
        self.input_act = activation(act) if input_act else nn.Identity()
        self.mlp = MLP((in_dim, *hidden, n_outputs), act=act, dropout=dropout)
        self.skip = None
        if self.n_descriptors:
            # The hybrid starts as the plain model: the MLP above took the
            # same random draws as without descriptors, the descriptor
            # columns start at zero and nothing below draws random numbers.
            # With one random_state the hybrid and the plain model then start
            # alike and see the same batches, so they differ only by what the
            # descriptors add in training.
            first = self.mlp[0]
            wide = nn.utils.skip_init(nn.Linear, in_dim + self.n_descriptors,
                                      first.out_features)
            with torch.no_grad():
                wide.weight.zero_()
                wide.weight[:, :in_dim] = first.weight
                wide.bias.copy_(first.bias)
            self.mlp[0] = wide
            if descriptor_skip:
                self.skip = nn.utils.skip_init(nn.Linear, self.n_descriptors, n_outputs,
                                               bias=False)
                nn.init.zeros_(self.skip.weight)

    def forward(self, h, descriptors=None):
        h = self.input_act(h)
        if self.n_descriptors:
            if descriptors is None:
                raise ValueError(
                    f"this model was built for {self.n_descriptors} descriptors "
                    "per crystal but the batch has none")
            if descriptors.shape[1] != self.n_descriptors:
                raise ValueError(
                    f"expected {self.n_descriptors} descriptors per crystal, got "
                    f"{descriptors.shape[1]}")
            d = descriptors.to(h.dtype)
            out = self.mlp(torch.cat([h, d], dim=1))
            return out if self.skip is None else out + self.skip(d)
        return self.mlp(h)

"""Small building blocks shared by the models."""
from torch import nn
from torch.nn import functional as F

__all__ = ["BatchNorm", "MLP", "activation"]

_ACTIVATIONS = {
    "softplus": nn.Softplus, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU,
    "tanh": nn.Tanh, "elu": nn.ELU,
}


def activation(name):
    """An activation module from its name (``softplus``, ``relu``, ``silu``...)."""
    if isinstance(name, nn.Module):
        return name
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from "
                         f"{sorted(_ACTIVATIONS)}") from None


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that accepts a single row in training mode.

    A batch can hold a single atom or crystal (a 1-atom cell, the last
    mini-batch); plain BatchNorm1d raises then. A single row is normalised
    with the running statistics instead, without updating them.
    """

    def forward(self, x):
        if self.training and x.shape[0] <= 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps)
        return super().forward(x)


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths including input and output, e.g. ``(64, 128, 1)``.
    act : str
        Activation name.
    dropout : float
        Dropout before each hidden Linear layer.
    final_act : bool
        Also apply the activation after the last layer.
    """

    def __init__(self, sizes, act="softplus", dropout=0.0, final_act=False):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if dropout and i > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2 or final_act:
                layers.append(activation(act))
        super().__init__(*layers)

"""Radial basis expansions shared by all models."""
import math

import torch
from torch import nn

__all__ = ["GaussianExpansion"]


class GaussianExpansion(nn.Module):
    """Expand a scalar (a distance in Å, a bond-angle cosine) in Gaussians.

    ``exp(-(x - mu_k)^2 / width^2)`` for evenly spaced centres ``mu_k``
    (CGCNN Eq. 3 form; CrystalNet and ALIGNN use the same family with other
    centres and widths).

    Parameters
    ----------
    start, stop : float
        First and last centre (inclusive), in the unit of the input.
    n_centers : int, optional
        Number of centres. Give either this or ``step``.
    step : float, optional
        Spacing of the centres (CGCNN: 0.2 Å from 0 to 8 Å -> 41 centres).
    width : float, optional
        Gaussian width; defaults to the centre spacing.

    Shapes
    ------
    input (n,) -> output (n, n_centers)
    """

    def __init__(self, start=0.0, stop=8.0, n_centers=None, step=None, width=None):
        super().__init__()
        if (n_centers is None) == (step is None):
            raise ValueError("give exactly one of n_centers and step")
        if step is not None:
            if step <= 0:
                raise ValueError(f"step must be > 0, got {step}")
            n_centers = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n_centers < 1:
            raise ValueError(f"n_centers must be >= 1, got {n_centers}")
        centers = torch.linspace(start, stop, n_centers) if n_centers > 1 \
            else torch.tensor([float(start)])
        spacing = (stop - start) / max(n_centers - 1, 1)
        width = spacing if width is None else width
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.register_buffer("centers", centers)
        self.width = float(width)

    @property
    def n_centers(self):
        return int(self.centers.shape[0])

    def forward(self, x):
        z = ((x.unsqueeze(-1) - self.centers) / self.width) ** 2
        # exp(-z) for z > ~87 is a float32 denormal or underflows: matrix
        # products over denormals run ~5x slower on x86 and exp itself takes a
        # slow path there, so the exponent is clamped first and the far tails
        # (below 1e-30) are set to exactly 0
        return torch.exp(-z.clamp(max=69.0)) * (z < 69.0)

    def extra_repr(self):
        return (f"start={float(self.centers[0]):g}, stop={float(self.centers[-1]):g}, "
                f"n_centers={self.n_centers}, width={self.width:g}")

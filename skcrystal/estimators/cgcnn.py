"""CGCNN estimators."""
import numpy as np
import torch

from ..nn.cgcnn import CGCNN
from .base import CrystalClassifierBase, CrystalRegressorBase

__all__ = ["CGCNNRegressor", "CGCNNClassifier"]


class CGCNNRegressor(CrystalRegressorBase):
    """CGCNN regressor (Xie & Grossman 2018) on pymatgen structures.

    Model parameters go through the ``module__`` prefix, e.g.
    ``CGCNNRegressor(module__n_conv=4, module__pooling="sum")``; see
    :class:`skcrystal.nn.cgcnn.CGCNN` (defaults: atom features 64, 3 gated
    convolutions Eq. 5, hidden 128, one hidden layer, mean pooling,
    Gaussians 0-8 Å step 0.2 Å). Training and data parameters are those of
    :class:`~skcrystal.estimators.base.CrystalGraphNet`.

    Examples
    --------
    >>> from skcrystal import CGCNNRegressor
    >>> from skcrystal.datasets import load_perovskites
    >>> X, y = load_perovskites(n=200)
    >>> est = CGCNNRegressor(max_epochs=20, random_state=0).fit(X, y)
    >>> est.predict(X[:3]).shape
    (3,)
    """

    def __init__(self, module=CGCNN, criterion=torch.nn.MSELoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)

    def predict_site_contributions(self, X):
        """Each atom's contribution to the prediction (``module__pooling="site"``).

        Supplement Eqs. S14-S15: the prediction of a crystal is the mean of
        its atoms' contributions, in the units of ``y``.

        Returns
        -------
        list of ndarray
            One array per structure, shape (n_atoms,) (or (n_atoms,
            n_targets) for 2-D ``y``), whose mean is ``predict``'s value.
        """
        self._check_fitted()
        if self.module_.pooling != "site":
            raise ValueError(
                "predict_site_contributions needs a model fitted with "
                "module__pooling='site' (this one uses "
                f"{self.module_.pooling!r})")
        out = []
        for contrib, counts in self._apply(
                X, lambda b: (self.module_.site_contributions(b), b.n_nodes_per_graph)):
            per_atom = contrib.cpu().numpy().astype(np.float64)
            for part in np.split(per_atom, np.cumsum(counts.cpu().numpy())[:-1]):
                out.append(self._unscale(part))
        return out


class CGCNNClassifier(CrystalClassifierBase):
    """CGCNN classifier (e.g. metal vs. non-metal, paper Fig. 3).

    Same parameters as :class:`CGCNNRegressor`; ``module__dropout`` adds
    dropout in the head as the reference code's classification mode does.
    """

    def __init__(self, module=CGCNN, criterion=torch.nn.CrossEntropyLoss, **kwargs):
        super().__init__(module, criterion=criterion, **kwargs)

"""CGCNN estimators and the model's registry row."""
import numpy as np

from ..nn.cgcnn import CGCNN
from .base import CrystalClassifierBase, CrystalRegressorBase
from .registry import ModelSpec, register

__all__ = ["CGCNNRegressor", "CGCNNClassifier"]


class CGCNNRegressor(CrystalRegressorBase):
    """CGCNN regressor (Xie & Grossman 2018) on pymatgen structures.

    Model parameters go through the ``module__`` prefix, e.g.
    ``CGCNNRegressor(module__n_conv=4, module__pooling="sum")``; see
    :class:`skcrystal.nn.cgcnn.CGCNN` (defaults: atom features 64, 3 gated
    convolutions Eq. 5, hidden 128, one hidden layer, mean pooling,
    Gaussians 0-``radius`` Å step 0.2 Å). Training and data parameters are
    those of :class:`~skcrystal.estimators.base.CrystalGraphNet`; the
    weight decay is the reference code's 0.

    Examples
    --------
    >>> from skcrystal import CGCNNRegressor
    >>> from skcrystal.datasets import load_perovskites
    >>> X, y = load_perovskites(n=200)
    >>> est = CGCNNRegressor(max_epochs=20, random_state=0).fit(X, y)
    >>> est.predict(X[:3]).shape
    (3,)
    """

    _defaults = {"module": CGCNN, "optimizer__weight_decay": 0.0}

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
        self.check_is_fitted()
        if self.module_.pooling != "site":
            raise ValueError(
                "predict_site_contributions needs a model fitted with "
                "module__pooling='site' (this one uses "
                f"{self.module_.pooling!r})")
        per_atom = self._outputs(X, "site_contributions")
        counts = [g.n_atoms for g in self.prepare(X)]
        return [self.target_scaler_.inverse_transform(part)
                for part in np.split(per_atom, np.cumsum(counts)[:-1])]


class CGCNNClassifier(CrystalClassifierBase):
    """CGCNN classifier (e.g. metal vs. non-metal, paper Fig. 3).

    Same parameters as :class:`CGCNNRegressor`, except ``module__dropout=0.5``:
    the reference code's classification mode (txie-93/cgcnn, ``model.py``)
    applies ``nn.Dropout()`` (p = 0.5) to the first hidden layer's output
    after pooling, before the output layer; with the default one hidden
    layer the head here does the same (with ``module__n_h > 1`` it also
    drops out before each later layer, the reference only once).
    ``module__dropout=0.0`` turns it off.
    """

    _defaults = {**CGCNNRegressor._defaults, "module__dropout": 0.5}


register(ModelSpec(
    name="cgcnn", module=CGCNN, regressor=CGCNNRegressor, classifier=CGCNNClassifier,
    paper="Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018)",
    summary="gated convolution (Eq. 5) or Eq. 4 (module__conv='simple'); pooling "
            "mean, sum, site (predict_site_contributions)",
    test_params=dict(module__hidden=16, module__h_fea_len=16, module__n_conv=2),
    learning=(dict(max_epochs=25), 0.6),
))

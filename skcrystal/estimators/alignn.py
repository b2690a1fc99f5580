"""ALIGNN estimators and the model's registry row."""
from ..nn.alignn import ALIGNN
from .base import CrystalClassifierBase, CrystalRegressorBase
from .registry import ModelSpec, register

__all__ = ["ALIGNNRegressor", "ALIGNNClassifier"]


class ALIGNNRegressor(CrystalRegressorBase):
    """ALIGNN regressor (Choudhary & DeCost 2021) on pymatgen structures.

    Model parameters go through the ``module__`` prefix, e.g.
    ``ALIGNNRegressor(module__hidden=64, module__alignn_layers=2)``; see
    :class:`skcrystal.nn.alignn.ALIGNN` (reference defaults: 4 ALIGNN + 4
    gated graph convolutions, hidden 256, embedding 64, 80 distance and 40
    angle basis functions, SiLU, batch norm, mean pooling; the largest line
    graph of one structure is bounded by ``module__max_triplets``).
    Training and data parameters are those of
    :class:`~skcrystal.estimators.base.CrystalGraphNet`, at the reference's
    graph (8 Å, 12 nearest neighbours with the radius grown where an atom has
    fewer, symmetrized: ``symmetrize="union", grow_radius=True``) and weight
    decay 1e-5.
    """

    _defaults = {"module": ALIGNN, "optimizer__weight_decay": 1e-5,
                 "symmetrize": "union", "grow_radius": True}


class ALIGNNClassifier(CrystalClassifierBase):
    """ALIGNN classifier; same parameters as :class:`ALIGNNRegressor`."""

    _defaults = ALIGNNRegressor._defaults


register(ModelSpec(
    name="alignn", module=ALIGNN, regressor=ALIGNNRegressor, classifier=ALIGNNClassifier,
    paper="Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021)",
    summary="atom graph + line graph of bond angles (built vectorized, cached with "
            "the graph), edge-gated convolutions, reference defaults",
    test_params=dict(module__alignn_layers=1, module__gcn_layers=1, module__hidden=16,
                     module__embedding_features=16, module__n_basis=16,
                     module__n_angle_basis=8),
    learning=(dict(max_epochs=12), 0.9),
))

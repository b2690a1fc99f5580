"""CrystalNet estimators and the model's registry row."""
from ..nn.crystalnet import CrystalNet
from .base import CrystalClassifierBase, CrystalRegressorBase
from .registry import ModelSpec, register

__all__ = ["CrystalNetRegressor", "CrystalNetClassifier"]


class CrystalNetRegressor(CrystalRegressorBase):
    """CrystalNet regressor (Matgen paper, Methods) on pymatgen structures.

    Model parameters go through the ``module__`` prefix, e.g.
    ``CrystalNetRegressor(module__hidden=64, module__depth=3)``; see
    :class:`skcrystal.nn.crystalnet.CrystalNet` (paper defaults: 100
    Gaussians on 0-``radius`` Å, sigma 0.5 Å, hidden 512, 2 message-passing
    iterations, 2 MLP layers). Graph and training parameters are those of
    :class:`~skcrystal.estimators.base.CrystalGraphNet` (graphs 8 Å, 12
    neighbours, the basis over 0-``radius``; the paper's graph is 5 Å with
    up to 32 neighbours: ``radius=5.0, max_neighbors=32``) and no weight
    decay (the reference's). Edges whose reverse is missing from the
    k-nearest graph are handled as documented in
    :mod:`skcrystal.nn.crystalnet`.
    """

    # the reference's graph (5 Å, up to 32 neighbours, both directions of
    # every pair) diverges with this message passing at lr 1e-3 (train loss
    # 50-120 on perovskites); until that is settled the graph stays 8 Å / 12
    # neighbours, with the basis over the graph's radius as for every model
    _defaults = {"module": CrystalNet, "optimizer__weight_decay": 0.0}


class CrystalNetClassifier(CrystalClassifierBase):
    """CrystalNet classifier; same parameters as :class:`CrystalNetRegressor`."""

    _defaults = CrystalNetRegressor._defaults


register(ModelSpec(
    name="crystalnet", module=CrystalNet, regressor=CrystalNetRegressor,
    classifier=CrystalNetClassifier,
    paper="CrystalNet (communicative message passing), Matgen paper, Methods",
    summary="directed multigraph with reverse-edge index, sum x max node messages, "
            "batched GRU readout",
    test_params=dict(module__hidden=16, module__n_basis=20),
    learning=(dict(max_epochs=15, module__hidden=32), 0.9),
))

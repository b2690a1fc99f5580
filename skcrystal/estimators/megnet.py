"""MEGNet estimators and the model's registry row."""
from ..nn.megnet import MEGNet
from .base import CrystalClassifierBase, CrystalRegressorBase
from .registry import ModelSpec, register

__all__ = ["MEGNetRegressor", "MEGNetClassifier"]


class MEGNetRegressor(CrystalRegressorBase):
    """MEGNet regressor (Chen et al., Chem. Mater. 2019) on pymatgen structures.

    Model parameters go through the ``module__`` prefix, e.g.
    ``MEGNetRegressor(module__n_blocks=2)``; see
    :class:`skcrystal.nn.megnet.MEGNet` (matgl's defaults: 3 MEGNet blocks,
    width 32, 100 Gaussians, learnable element embedding of 16, zero
    global state of length 2, Set2Set readout, softplus2). The graph is
    matgl's: every neighbour within ``radius=4`` Å (``max_neighbors=None``);
    an atom without a neighbour there raises naming the structure
    (``grow_radius=True`` grows that structure's radius instead). Training
    parameters are those of
    :class:`~skcrystal.estimators.base.CrystalGraphNet`, with no weight
    decay.
    """

    _defaults = {"module": MEGNet, "radius": 4.0, "max_neighbors": None,
                 "optimizer__weight_decay": 0.0}


class MEGNetClassifier(CrystalClassifierBase):
    """MEGNet classifier; same parameters as :class:`MEGNetRegressor`."""

    _defaults = MEGNetRegressor._defaults


register(ModelSpec(
    name="megnet", module=MEGNet, regressor=MEGNetRegressor, classifier=MEGNetClassifier,
    paper="Chen, Ye, Zuo, Zheng & Ong, Chem. Mater. 31, 3564 (2019)",
    summary="bond, atom and global-state updates, Set2Set readout of atoms and bonds "
            "(matgl's defaults)",
    test_params=dict(module__hidden=16, module__node_embedding=16, module__n_basis=20,
                     module__n_blocks=2, module__input_hidden=(32,),
                     module__conv_hidden=(32,), module__head_hidden=(16,)),
    learning=(dict(max_epochs=25, lr=3e-3, module__atom_features="cgcnn"), 0.9),
))

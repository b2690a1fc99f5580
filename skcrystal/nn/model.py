"""The contract every skcrystal model module meets.

A model is a :class:`CrystalModel`: ``forward(batch) = head(embed(batch),
batch.descriptors)``. Everything an estimator needs to know about a model
is declared by the module itself, so adding a model touches its own layers
file and its estimator file only:

* its constructor parameters and their valid values
  (:attr:`CrystalModel._parameter_constraints`, scikit-learn's style; the
  estimator checks ``module__`` parameters against them at ``fit`` and
  names the parameter in the error);
* the graph extras it reads from a batch (:attr:`CrystalModel.graph_extras`,
  :class:`~skcrystal.graphs.extras.GraphExtra` objects that the graph layer
  computes, caches and counts);
* the elements it has features for (:attr:`CrystalModel.supported_elements`,
  from its atom embedding);
* its readout (:meth:`CrystalModel.readout_modules`), which fine-tuning
  trains when the rest is frozen.

Every model accepts ``n_outputs`` and ``n_descriptors`` (set by the
estimator from the data), ``atom_features`` / ``extra_atom_features`` (the
atom input, see :class:`~skcrystal.nn.embedding.AtomEmbedding`) and
``cutoff`` (the radial basis cut-off in Å; the estimator passes its graph
``radius`` unless ``module__cutoff`` is given, so a search over ``radius``
moves the basis with the graph).
"""
from __future__ import annotations

import functools
import inspect
import numbers
import os

from torch import nn

__all__ = ["CrystalModel", "COMMON_CONSTRAINTS"]


def _constraints():
    from sklearn.utils._param_validation import Interval, StrOptions

    return {
        "n_outputs": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_descriptors": [Interval(numbers.Integral, 0, None, closed="left")],
        "atom_features": [StrOptions({"cgcnn", "embedding"}), str, os.PathLike, dict,
                          "array-like"],
        "extra_atom_features": ["array-like", None],
        "cutoff": [Interval(numbers.Real, 0, None, closed="neither")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    }


#: Constraints of the parameters every model shares (see the module docstring).
COMMON_CONSTRAINTS = _constraints()


class CrystalModel(nn.Module):
    """Base of the skcrystal models: ``forward = head(embed(batch))``.

    Subclasses build ``self.embedding`` (an
    :class:`~skcrystal.nn.embedding.AtomEmbedding`) and ``self.head`` (a
    :class:`~skcrystal.nn.head.ReadoutHead`), implement :meth:`embed`, and
    declare ``_parameter_constraints`` for their constructor parameters
    (``{**COMMON_CONSTRAINTS, "hidden": [...], ...}``). They may override
    :attr:`graph_extras`, :meth:`readout_modules` and :meth:`forward` (for
    readouts that are not "pool then MLP", e.g. CGCNN's site pooling).
    """

    #: scikit-learn style constraints of the constructor parameters
    _parameter_constraints: dict = COMMON_CONSTRAINTS

    def __init_subclass__(cls, **kwargs):
        # every model checks its constructor arguments against its declared
        # constraints, whoever builds it (an estimator or a user)
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def checked_init(self, *args, **kw):
            if type(self) is cls:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                params = dict(bound.arguments)
                params.pop("self")
                params.update(params.pop("kwargs", None) or {})
                cls.validate_params(params, prefix="")
            init(self, *args, **kw)

        cls.__init__ = checked_init

    @property
    def graph_extras(self):
        """Graph extras this model reads from a batch (tuple of GraphExtra)."""
        return ()

    @property
    def supported_elements(self):
        """Atomic numbers this model has input features for (frozenset of int)."""
        return self.embedding.supported_elements

    def readout_modules(self):
        """The modules that map the crystal representation to the outputs.

        Fine-tuning with ``freeze="all_but_head"`` trains the last Linear
        layer among them.
        """
        return [self.head]

    @classmethod
    def validate_params(cls, params, prefix="module__"):
        """Check constructor ``params`` against ``_parameter_constraints``.

        Raises
        ------
        sklearn.utils._param_validation.InvalidParameterError
            (a ``ValueError``/``TypeError``) naming ``prefix + name``.
        """
        from sklearn.utils._param_validation import validate_parameter_constraints

        constraints = {prefix + k: v for k, v in cls._parameter_constraints.items()}
        validate_parameter_constraints(
            constraints, {prefix + k: v for k, v in params.items()},
            caller_name=cls.__name__)

    def embed(self, batch):  # pragma: no cover - abstract
        """Crystal representations, shape (n_graphs, d)."""
        raise NotImplementedError

    def forward(self, batch):
        return self.head(self.embed(batch), batch.descriptors)

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

from .._validation import check_keyword_names
from ._constraints import Interval, StrOptions, validate

__all__ = ["CrystalModel", "COMMON_CONSTRAINTS"]


def _constraints():
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
            params = None
            if type(self) is cls:
                cls._check_names(kw, prefix="")
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                params = dict(bound.arguments)
                params.pop("self")
                params.update(params.pop("kwargs", None) or {})
                cls.validate_params(params, prefix="")
            init(self, *args, **kw)
            if params is not None:
                # the constructor's values, for training_memory's scaling
                object.__setattr__(self, "_hparams", params)

        cls.__init__ = checked_init

    #: Training memory of one crystal in a batch (forward and backward, the
    #: activations kept for the gradient): bytes per edge and per angle pair
    #: (line-graph edge), measured at the parameter values of ``"at"``; the
    #: estimate scales linearly with each of them (widths, depths). Each model
    #: sets its own (measured with peak RSS, see the documentation's
    #: guarantees page); ``None`` means not measured (no estimate).
    _training_memory = None

    def training_memory(self, graph):
        """Estimated bytes one training step needs for ``graph`` in a batch.

        ``per_edge * n_edges + per_angle * n_angle_pairs``, with the model's
        measured constants scaled by its widths and depths (see
        :attr:`_training_memory`); the fixed overhead of a training process
        (the weights, the optimizer state, ~0.1-0.2 GB) is not included.

        Parameters
        ----------
        graph : CrystalGraph
            With this model's graph extras (computed when missing).

        Returns
        -------
        int or None
            ``None`` when the model has no measured constants.
        """
        spec = self._training_memory
        if spec is None:
            return None
        n_angles = self.n_angle_pairs(graph) if spec.get("angle") else 0
        scale = 1.0
        hparams = getattr(self, "_hparams", {})
        for name, ref in spec.get("at", {}).items():
            value = hparams.get(name, ref)
            scale *= float(value) / float(ref)
        return int(scale * (spec.get("edge", 0) * graph.n_edges + spec.get("angle", 0) * n_angles))

    def n_angle_pairs(self, graph):
        """Bond pairs (line-graph edges) of ``graph`` in this model's line graphs."""
        n = 0
        for extra in self.graph_extras:
            for name, values in graph.extra(extra).items():
                if name.endswith("cos"):
                    n += len(values)
        return n

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
        TypeError
            For a name the constructor does not take, naming ``prefix +
            name`` and listing the model's parameters.

        Notes
        -----
        Plainly valid values (plain numbers and strings in range, arrays...)
        are accepted without importing scikit-learn; scikit-learn judges
        every other value (see :mod:`skcrystal.nn._constraints`).
        """
        cls._check_names(params, prefix)
        constraints = {prefix + k: v for k, v in cls._parameter_constraints.items()}
        validate(constraints, {prefix + k: v for k, v in params.items()},
                 caller_name=cls.__name__)

    @classmethod
    def _check_names(cls, params, prefix):
        check_keyword_names(cls.__init__, params, prefix, owner=cls.__name__)

    def embed(self, batch):  # pragma: no cover - abstract
        """Crystal representations, shape (n_graphs, d)."""
        raise NotImplementedError

    def forward(self, batch):
        return self.head(self.embed(batch), batch.descriptors)

"""The one registry of models: name -> module, estimators, docs row, test setup.

Each model's estimator file registers its row (:func:`register`) next to
its estimator classes; the package exports, the command line, the probes,
the documentation table and the shared contract test suite all read this
registry, so no other file names a model. Estimator modules of
:mod:`skcrystal.estimators` are discovered (imported) on first use.

Third-party models register the same way::

    from skcrystal.estimators.registry import ModelSpec, register
    register(ModelSpec(name="mymodel", module=MyModule, regressor=MyRegressor,
                       classifier=MyClassifier, paper="...", summary="..."))
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

__all__ = ["ModelSpec", "register", "get", "names", "specs", "spec_for", "estimator_class"]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Parameters
    ----------
    name : str
        Lower-case name used by the command line and the docs (``"cgcnn"``).
    module : type
        The :class:`~skcrystal.nn.model.CrystalModel` subclass.
    regressor, classifier : type
        The estimator classes (``classifier`` may be None).
    paper : str
        Citation of the paper the model follows.
    summary : str
        One-line description for the documentation table.
    test_params : dict
        Small, fast parameters for the shared contract test suite.
    learning : tuple of (dict, float)
        Real-data learning test: extra parameters and the largest allowed
        ratio of held-out MAE to the mean predictor's.
    invariance_params : dict
        Parameters under which the model is exactly invariant to atom order
        and supercell choice (empty when the defaults are).
    """

    name: str
    module: type
    regressor: type
    classifier: type | None = None
    paper: str = ""
    summary: str = ""
    test_params: dict = field(default_factory=dict)
    learning: tuple = ({}, 0.9)
    invariance_params: dict = field(default_factory=dict)

    def estimator_class(self, task="regression"):
        """The regressor (``task="regression"``) or classifier class."""
        if task == "regression":
            return self.regressor
        if task == "classification":
            if self.classifier is None:
                raise ValueError(f"model {self.name!r} has no classifier")
            return self.classifier
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")


_REGISTRY: dict[str, ModelSpec] = {}
_discovered = False

# modules of this package that are infrastructure, not models
_NOT_MODELS = {"base", "callbacks", "registry", "scaling"}


def register(spec):
    """Add (or replace) a model's row; returns the spec."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register takes a ModelSpec, got {type(spec).__name__}")
    _REGISTRY[spec.name.lower()] = spec
    return spec


def _discover():
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("skcrystal.estimators")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in _NOT_MODELS:
            importlib.import_module(f"skcrystal.estimators.{info.name}")


def specs():
    """All registered models, in name order (list of ModelSpec)."""
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def names():
    """Registered model names (list of str)."""
    return [s.name for s in specs()]


def get(name):
    """The :class:`ModelSpec` of ``name`` (case-insensitive)."""
    _discover()
    key = str(name).lower()
    if key not in _REGISTRY:
        import difflib
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise KeyError(f"unknown model {name!r}{hint} registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def spec_for(estimator):
    """The spec whose regressor or classifier is ``estimator``'s class (or a base of it).

    Returns None for estimators of unregistered models.
    """
    cls = estimator if isinstance(estimator, type) else type(estimator)
    for spec in specs():
        for registered in (spec.regressor, spec.classifier):
            if registered is not None and issubclass(cls, registered):
                return spec
    return None


def estimator_class(class_name):
    """A registered estimator class by its class name, or None."""
    for spec in specs():
        for cls in (spec.regressor, spec.classifier):
            if cls is not None and cls.__name__ == class_name:
                return cls
    return None

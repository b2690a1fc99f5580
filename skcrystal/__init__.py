"""skcrystal: graph neural networks for crystals as scikit-learn estimators.

The data path: structures -> :mod:`skcrystal.graphs` (featurization,
batching, caching) -> :mod:`skcrystal.nn` (pure torch modules) ->
:mod:`skcrystal.estimators` (skorch/scikit-learn wrappers) -> descriptors,
probes, datasets and the command line.

Heavy imports (torch, pymatgen) happen on first use of an attribute, so
``import skcrystal`` is cheap.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "CGCNNRegressor": "skcrystal.estimators",
    "CGCNNClassifier": "skcrystal.estimators",
    "datasets": "skcrystal.datasets",
    "graphs": "skcrystal.graphs",
    "nn": "skcrystal.nn",
    "estimators": "skcrystal.estimators",
    "metrics": "skcrystal.metrics",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skcrystal' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if module.endswith("." + name) else getattr(mod, name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))

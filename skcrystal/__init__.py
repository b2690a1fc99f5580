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
    # meta-estimators (the model estimators come from the registry)
    "EnsembleRegressor": "skcrystal.ensemble",
    "FineTuner": "skcrystal.transfer",
    "finetune": "skcrystal.transfer",
    "pretrain_atom_embeddings": "skcrystal.pretrain",
    "MaskedAtomPretrainer": "skcrystal.pretrain",
    # descriptors, probes, baselines
    "DescriptorBank": "skcrystal.descriptors",
    "probe_learnability": "skcrystal.probes",
    "representation_importance": "skcrystal.probes",
    "CompositionBaseline": "skcrystal.baselines",
    "CompositionBaselineClassifier": "skcrystal.baselines",
    "classifier_counterpart": "skcrystal.probes",
    "mae_mad_score": "skcrystal.metrics",
    "mae_mad_scorer": "skcrystal.metrics",
    # subpackages
    "datasets": "skcrystal.datasets",
    "graphs": "skcrystal.graphs",
    "nn": "skcrystal.nn",
    "estimators": "skcrystal.estimators",
    "metrics": "skcrystal.metrics",
    "descriptors": "skcrystal.descriptors",
    "ensemble": "skcrystal.ensemble",
    "pretrain": "skcrystal.pretrain",
    "probes": "skcrystal.probes",
    "transfer": "skcrystal.transfer",
    "baselines": "skcrystal.baselines",
    "plotting": "skcrystal.plotting",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        if name[:1].isupper():
            # a model estimator (CGCNNRegressor, ...): from the registry
            from .estimators import registry
            cls = registry.estimator_class(name)
            if cls is not None:
                return cls
        raise AttributeError(f"module 'skcrystal' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if module.endswith("." + name) else getattr(mod, name)


def __dir__():
    from .estimators import registry
    models = [c.__name__ for s in registry.specs() for c in (s.regressor, s.classifier) if c]
    return sorted(list(globals()) + list(_LAZY) + models)

"""Small, fast configurations of every registered model for the shared suites.

Everything model-specific (fast parameters, learning-test settings,
invariance settings) is read from each model's registry row
(:mod:`skcrystal.estimators.registry`), so a newly registered model is
tested by the shared suites without editing this file.
"""
from skcrystal.estimators import registry

FAST = dict(max_epochs=3, batch_size=16, random_state=0)

NAMES = registry.names()


def make(name, which="regressor", **params):
    """A fast estimator of model ``name`` with extra ``params``."""
    spec = registry.get(name)
    cls = spec.estimator_class("regression" if which == "regressor" else "classification")
    return cls(**{**FAST, **spec.test_params, **params})


def small_params(name):
    return dict(registry.get(name).test_params)


def learning(name):
    """(extra parameters, max held-out MAE ratio to the mean predictor)."""
    return registry.get(name).learning


def exact_invariance(name):
    """Parameters under which the model is exactly invariant (atom order, supercell)."""
    return dict(registry.get(name).invariance_params)

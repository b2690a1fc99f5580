"""The model modules' constraints: checked without scikit-learn only where it agrees."""
import numbers
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

from skcrystal.estimators import registry
from skcrystal.nn._constraints import (Interval, StrOptions, plainly_satisfied,
                                       sklearn_constraints)
from skcrystal.nn.cgcnn import CGCNN
from skcrystal.nn.model import COMMON_CONSTRAINTS

CONSTRAINTS = {
    "n": [Interval(numbers.Integral, 1, None, closed="left")],
    "x": [Interval(numbers.Real, 0, 1, closed="neither"), None],
    "r": [Interval(numbers.Real, 0, None, closed="right")],
    "mode": [StrOptions({"a", "b"}, deprecated={"b"})],
    "flag": ["boolean"],
    "table": [StrOptions({"cgcnn"}), str, os.PathLike, dict, "array-like"],
}

VALUES = {
    "n": [1, 5, 0, -3, 2.0, True, np.int64(3), None, "3", float("nan")],
    "x": [0.5, 0, 1, 0.0, 1.0, None, float("nan"), float("inf"), np.float32(0.5), True, "0.5"],
    "r": [0.0, 3, 1e9, float("inf"), -1.0, None],
    "mode": ["a", "b", "c", None, 1],
    "flag": [True, False, 0, 1, np.bool_(True), None],
    "table": ["cgcnn", "other.json", {}, [[1.0]], np.zeros((2, 3)), np.float64(1.0), 3, None],
}


def _sklearn_accepts(name, value):
    try:
        validate_parameter_constraints(sklearn_constraints(CONSTRAINTS), {name: value},
                                       caller_name="test")
    except InvalidParameterError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(VALUES))
def test_plain_check_accepts_only_what_sklearn_accepts(name):
    accepted = 0
    for value in VALUES[name]:
        if plainly_satisfied(CONSTRAINTS, {name: value}):
            accepted += 1
            assert _sklearn_accepts(name, value), (name, value)
    assert accepted  # the plain check does skip scikit-learn for ordinary values


def test_records_become_sklearn_objects():
    from sklearn.utils._param_validation import Interval as SkInterval
    from sklearn.utils._param_validation import StrOptions as SkStrOptions

    converted = sklearn_constraints({**COMMON_CONSTRAINTS, "skip": "no_validation"})
    assert converted["skip"] == "no_validation"
    assert isinstance(converted["n_outputs"][0], SkInterval)
    assert isinstance(converted["atom_features"][0], SkStrOptions)
    assert converted["atom_features"][1:] == [str, os.PathLike, dict, "array-like"]


def test_invalid_module_parameter_still_raises_sklearns_error():
    with pytest.raises(InvalidParameterError, match="'hidden' parameter of CGCNN must be"):
        CGCNN(hidden=0)
    with pytest.raises(InvalidParameterError, match="'pooling' parameter of CGCNN"):
        CGCNN(pooling="median")
    # values the plain check leaves to scikit-learn, accepted by it
    CGCNN(hidden=np.int64(8), n_conv=1, cutoff=np.float32(6.0))


@pytest.mark.parametrize("spec", registry.specs(), ids=lambda s: s.name)
def test_unknown_module_parameter_is_named_with_its_prefix(spec):
    # not Python's bare "got an unexpected keyword argument 'hiden'"
    with pytest.raises(TypeError, match=rf"^hiden: {spec.module.__name__} has no parameter "
                                        r"'hiden' \(did you mean 'hidden'\?\)\. Its parameters: "
                                        r"n_outputs, "):
        spec.module(hiden=8)
    estimator = spec.regressor(module__bogus=1, max_epochs=1)
    with pytest.raises(TypeError, match=rf"^module__bogus: {spec.module.__name__} has no "
                                        r"parameter 'bogus'\. Its parameters: .*\bcutoff\b"):
        estimator.fit(["never read.cif"], [0.0])


def test_every_registered_module_validates_its_defaults_plainly():
    import inspect

    for spec in registry.specs():
        module = spec.module
        params = {k: p.default for k, p in inspect.signature(module.__init__).parameters.items()
                  if k != "self" and p.default is not inspect.Parameter.empty}
        constraints = module._parameter_constraints
        assert _sklearn_ok(constraints, params, module), spec.name
        assert plainly_satisfied(constraints, params), spec.name


def _sklearn_ok(constraints, params, module):
    try:
        validate_parameter_constraints(sklearn_constraints(constraints), params,
                                       caller_name=module.__name__)
    except InvalidParameterError:
        return False
    return True


def test_building_cgcnn_does_not_import_sklearn():
    # an explicit atom table (the default one is built from pymatgen's data)
    code = ("import sys; import numpy as np; from skcrystal.nn.cgcnn import CGCNN; "
            "CGCNN(n_outputs=1, hidden=8, atom_features=np.ones((10, 4))); "
            "print(sorted(m for m in ('sklearn', 'scipy', 'skorch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"

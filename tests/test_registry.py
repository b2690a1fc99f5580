"""The model registry and the model contract (one place knows each model)."""
import ast
import inspect
from pathlib import Path

import pytest
from sklearn.base import clone

import skcrystal
from skcrystal.estimators import registry
from skcrystal.nn.model import CrystalModel

PACKAGE = Path(skcrystal.__file__).parent

#: files outside a model's own two that may name it, and why
ALLOWED = {
    # the published reference CGCNN checkpoints load into CGCNN estimators
    "pretrained.py": {"cgcnn"},
    # the masked-atom model reuses CGCNN's gated convolution (the paper
    # pretrains "a CGCNN model")
    "nn/masked_atom.py": {"cgcnn"},
}


def _names_in_code(path):
    """Model class names and model-module imports used in a file's code (not prose)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.name.split(".")[-1])
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[-1])
    return found


def test_every_model_has_a_complete_row():
    names = registry.names()
    assert {"cgcnn", "alignn", "crystalnet", "crystograph", "megnet"} <= set(names)
    for spec in registry.specs():
        assert issubclass(spec.module, CrystalModel), spec.name
        assert spec.regressor.__module__ == f"skcrystal.estimators.{spec.name}"
        assert spec.module.__module__ == f"skcrystal.nn.{spec.name}"
        assert spec.paper and spec.summary and spec.test_params
        assert registry.spec_for(spec.regressor()) is spec
        # the package, the estimators package and the command line export it
        assert getattr(skcrystal, spec.regressor.__name__) is spec.regressor
        from skcrystal.cli import get_estimator_class
        assert get_estimator_class(spec.name.upper()) is spec.regressor
        if spec.classifier is not None:
            assert get_estimator_class(spec.name, "classification") is spec.classifier


def test_no_file_outside_a_models_two_files_names_it():
    specs = registry.specs()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        used = _names_in_code(path)
        for spec in specs:
            own = {f"nn/{spec.name}.py", f"estimators/{spec.name}.py"}
            if rel in own or spec.name in ALLOWED.get(rel, ()):
                continue
            names = {spec.module.__name__, spec.regressor.__name__, spec.name}
            if spec.classifier is not None:
                names.add(spec.classifier.__name__)
            assert not (used & names), f"{rel} names model {spec.name}: {used & names}"


def test_modules_declare_their_needs():
    for spec in registry.specs():
        module = spec.module()
        assert isinstance(module.graph_extras, tuple)
        assert isinstance(module.supported_elements, frozenset) and 6 in module.supported_elements
        assert module.readout_modules() and all(
            isinstance(m, __import__("torch").nn.Module) for m in module.readout_modules())
        # every constructor parameter has a declared constraint
        params = set(inspect.signature(spec.module.__init__).parameters) - {"self"}
        assert params <= set(spec.module._parameter_constraints), (
            spec.name, params - set(spec.module._parameter_constraints))
        # the shared names
        assert {"n_outputs", "n_descriptors", "cutoff"} <= params, spec.name


def test_explicit_signatures_and_parameter_errors_name_the_parameter():
    for spec in registry.specs():
        sig = inspect.signature(spec.regressor)
        for name in ("lr", "max_epochs", "batch_size", "radius", "max_neighbors",
                     "random_state", "descriptors"):
            assert name in sig.parameters, (spec.name, name)
        assert sig.parameters["module"].default is spec.module
        est = spec.regressor(max_epochs=0)
        with pytest.raises(ValueError, match="'max_epochs' parameter"):
            est.fit([], [])
        with pytest.raises(ValueError, match="'module__hidden' parameter"):
            spec.regressor(module__hidden=-1).fit([], [])
        assert clone(spec.regressor(lr=0.5)).lr == 0.5


def test_radius_moves_the_basis_cutoff():
    for spec in registry.specs():
        est = spec.regressor(radius=6.5)
        if "module__cutoff" not in est.get_params():
            assert est._module_kwargs()["cutoff"] == 6.5, spec.name
    assert registry.get("cgcnn").regressor(
        radius=6.5, module__cutoff=5.0)._module_kwargs()["cutoff"] == 5.0


def test_unknown_model_suggests_the_closest():
    with pytest.raises(KeyError, match="did you mean 'megnet'"):
        registry.get("megnt")

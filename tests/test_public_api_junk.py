"""Every public function, given something absurd as its first argument, fails with
an error of skcrystal's own: a ValueError/TypeError/OSError raised in skcrystal's
code (or scikit-learn's parameter validation, which names the parameter), never an
AttributeError or a message from deep inside numpy, torch, pathlib or pymatgen.

A guard against regressions of the named-error rule across the API, beside the
targeted tests of each message."""
import importlib
import inspect
import traceback
import warnings

import numpy as np
import pytest

MODULES = ["skcrystal.datasets", "skcrystal.graphs", "skcrystal.descriptors",
           "skcrystal.probes", "skcrystal.metrics", "skcrystal.transfer", "skcrystal.pretrain",
           "skcrystal.ensemble", "skcrystal.baselines", "skcrystal.plotting",
           "skcrystal.pretrained", "skcrystal.atom_features", "skcrystal.benchmarks.matbench",
           "skcrystal.inference"]
# network access, or nothing to check
SKIP = {"load_matbench", "clear_cache", "clear_composition_cache", "shared_data_path"}
JUNK = [None, "x", -1, 3.5, [], [None], {"a": 1}, np.zeros((2, 2))]
OURS = (ValueError, TypeError, OSError, KeyError)


def _functions():
    for module in MODULES:
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", []):
            f = getattr(mod, name)
            if not inspect.isfunction(f) or name in SKIP:
                continue
            if _takes_one(f):  # the junk fills the one argument it needs
                yield pytest.param(f, id=f"{module}.{name}")


def _takes_one(func):
    """Whether ``func`` can be called with one positional argument."""
    positional = [p for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return bool(positional) and len([p for p in positional if p.default is p.empty]) <= 1


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path, monkeypatch):
    # "x" is a valid path: a GraphStore or a record reader may create or read it
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("func", list(_functions()))
def test_junk_first_argument_is_a_named_error(func):
    for junk in JUNK:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                func(junk)
            except OURS as exc:
                origin = traceback.extract_tb(exc.__traceback__)[-1].filename
                assert "skcrystal" in origin or "_param_validation" in origin, (
                    f"{func.__name__}({junk!r}) raised {type(exc).__name__}: {exc} from "
                    f"{origin}, not from skcrystal's checks")
            except Exception as exc:  # noqa: BLE001 - what the test is about
                pytest.fail(f"{func.__name__}({junk!r}) raised {type(exc).__name__}: {exc}")


CLASS_MODULES = ["skcrystal.datasets", "skcrystal.graphs", "skcrystal.descriptors",
                 "skcrystal.transfer", "skcrystal.pretrain", "skcrystal.ensemble",
                 "skcrystal.baselines", "skcrystal.estimators", "skcrystal.inference",
                 "skcrystal.benchmarks.matbench"]


def _classes():
    for module in CLASS_MODULES:
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", []):
            cls = getattr(mod, name)
            if inspect.isclass(cls) and not issubclass(cls, BaseException):
                yield pytest.param(cls, id=f"{module}.{name}")


@pytest.mark.parametrize("cls", list(_classes()))
def test_junk_to_a_public_class_is_a_named_error(cls):
    """The constructor given junk, and fit / predict / transform / build of a default
    instance given junk (an unfitted model's predict: NotFittedError)."""
    from sklearn.exceptions import NotFittedError
    for junk in JUNK:
        for method in ("__init__", "fit", "predict", "transform", "build"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    if method == "__init__":
                        cls(junk)
                        continue
                    try:
                        obj = cls()
                    except TypeError:  # needs arguments: the constructor case covers it
                        break
                    bound = getattr(obj, method, None)
                    if bound is not None and _takes_one(bound):
                        bound(junk)
                except NotFittedError:
                    pass
                except OURS as exc:
                    origin = traceback.extract_tb(exc.__traceback__)[-1].filename
                    assert ("skcrystal" in origin or "_param_validation" in origin
                            or method == "__init__" and "test_public_api_junk" in origin), (
                        f"{cls.__name__}.{method}({junk!r}) raised {type(exc).__name__}: "
                        f"{exc} from {origin}")
                except Exception as exc:  # noqa: BLE001 - what the test is about
                    pytest.fail(f"{cls.__name__}.{method}({junk!r}) raised "
                                f"{type(exc).__name__}: {exc}")

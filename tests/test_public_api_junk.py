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
            positional = [p for p in inspect.signature(f).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            required = [p for p in positional if p.default is p.empty]
            if positional and len(required) <= 1:  # the junk fills the one it needs
                yield pytest.param(f, id=f"{module}.{name}")


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

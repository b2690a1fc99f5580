"""Shared fixtures: hand-made structures and access to ../shared/data."""
import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get(
    "SKCRYSTAL_SHARED_DATA",
    Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_path(*parts):
    """Path inside ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data folder beside the "
                    "checkout; set SKCRYSTAL_SHARED_DATA to point elsewhere)")
    return path


@pytest.fixture
def shared_data():
    return shared_path()


@pytest.fixture(scope="session")
def nacl():
    from pymatgen.core import Lattice, Structure
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="session")
def diamond():
    from pymatgen.core import Lattice, Structure
    return Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(3.567), ["C"], [[0, 0, 0]])


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread per test process.

    scripts/test.sh runs two pytest workers on the 2 cores; two OpenMP
    threads per worker (or on a shared machine) spin against each other and
    were measured 5-20x slower. Restored afterwards.
    """
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def sigint_handled():
    """Skip unless signal handlers can be set here (Python sets them in the main
    thread only): the Ctrl-C tests raise a real SIGINT."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are set in the main thread only")

"""Training memory: per-model estimates and the max_memory check before training."""
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from skcrystal.estimators import ALIGNNRegressor, CGCNNRegressor, registry
from skcrystal.estimators.base import parse_bytes


def _nacl(rep=1):
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    s.make_supercell([rep] * 3)
    return s


@pytest.mark.parametrize("name", [s.name for s in registry.specs()])
def test_every_model_estimates_its_training_memory(name):
    est = registry.get(name).estimator_class("regression")()
    module = est._graph_module()
    graph = est.prepare([_nacl()])[0]
    need = module.training_memory(graph)
    assert need is not None and need > 0
    # linear in the size of the graph: a 2x2x2 supercell needs ~8 times more
    big = module.training_memory(est.prepare([_nacl(2)])[0])
    assert 6 < big / need < 10


def test_estimate_scales_with_width():
    small = ALIGNNRegressor(module__hidden=64)._graph_module()
    default = ALIGNNRegressor()._graph_module()
    graph = ALIGNNRegressor().prepare([_nacl()])[0]
    assert small.training_memory(graph) == pytest.approx(default.training_memory(graph) / 4,
                                                         rel=1e-6)


def test_1000_atom_alignn_cell_is_refused_before_training():
    """The issue's case: a 1,000-atom cell peaked at 6.6-7.8 GB in ALIGNN training."""
    from skcrystal.datasets import load_perovskites
    X, y = load_perovskites(n=3)
    big = _nacl(4)  # 512 atoms with 18 tied neighbours each: ~7 GB estimated
    est = ALIGNNRegressor(max_epochs=1, max_memory="1GB", module__alignn_layers=4)
    with pytest.raises(ValueError, match=r"X\[3\] \(NaCl\) needs about \d+\.\d GB to train "
                                         r"ALIGNN .*512 atoms.*angle pairs.*max_memory"):
        est.fit([*X, big], np.append(y, 0.0))
    assert not hasattr(est, "history_") or len(est.history) == 0  # nothing was trained


def test_max_memory_none_disables_and_prepare_checks(caplog):
    est = CGCNNRegressor(max_epochs=1, max_memory="1MB", module__n_conv=1)
    with pytest.raises(ValueError, match="max_memory"):
        est.prepare([_nacl(2)], training=True)
    est.prepare([_nacl(2)])  # predicting does not train: no check
    est.set_params(max_memory=None).prepare([_nacl(2)], training=True)


def test_batch_over_the_bound_is_a_logged_warning(caplog):
    import logging
    one = CGCNNRegressor()._graph_module().training_memory(CGCNNRegressor().prepare([_nacl()])[0])
    est = CGCNNRegressor(max_memory=one * 1.5, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="skcrystal"):
        est.prepare([_nacl(), _nacl()], training=True)
    assert "lower batch_size" in caplog.text


@pytest.mark.parametrize("text, value", [("4GB", 4e9), ("512 MiB", 512 * 2**20),
                                         (1e9, 1e9), (None, None), ("2.5gb", 2.5e9)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["4 parsecs", "-1GB", "0", "GB"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError, match="max_memory"):
        parse_bytes(text)

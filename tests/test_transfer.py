"""Fine-tuning: freezing by name, pre-trained net untouched, CV, beats scratch."""
import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import cross_val_score

from skcrystal.estimators.cgcnn import CGCNNRegressor
from skcrystal.transfer import FineTuner, finetune, freeze_parameters, head_parameter_names

CGCNN_SMALL = dict(module__hidden=16, module__h_fea_len=16, module__n_conv=2,
                   batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def data():
    from skcrystal.datasets import load_perovskites
    df = load_perovskites(as_frame=True)
    return list(df.structure), df.heat_ref.to_numpy(), df.heat_all.to_numpy()


@pytest.fixture(scope="module")
def pretrained(data):
    X, heat_ref, _ = data
    # pre-training set: rows 0-299 with heat_ref
    return CGCNNRegressor(max_epochs=12, **CGCNN_SMALL).fit(X[:300], heat_ref[:300])


def _state(est):
    return {k: v.detach().clone() for k, v in est.module_.state_dict().items()}


def test_head_parameter_names_and_patterns():
    from skcrystal.nn.cgcnn import CGCNN
    m = CGCNN(hidden=8, h_fea_len=8)
    assert head_parameter_names(m) == ["head.mlp.2.weight", "head.mlp.2.bias"]
    assert freeze_parameters(copy.deepcopy(m)) == ["head.mlp.2.weight", "head.mlp.2.bias"]
    trainable = freeze_parameters(copy.deepcopy(m), ["embedding.*", "re:convs\\.0\\..*"])
    assert not any(n.startswith(("embedding.", "convs.0.")) for n in trainable)
    assert any(n.startswith("convs.1.") for n in trainable)
    assert len(freeze_parameters(copy.deepcopy(m), None)) == len(list(m.parameters()))
    with pytest.raises(ValueError, match="'conv.*' matches no parameter"):
        freeze_parameters(copy.deepcopy(m), "conv.*")
    with pytest.raises(ValueError, match="nothing to train"):
        freeze_parameters(copy.deepcopy(m), "*")
    with pytest.raises(TypeError, match="freeze must be 'all_but_head', None, .* got 3"):
        freeze_parameters(copy.deepcopy(m), 3)
    site = CGCNN(hidden=8, h_fea_len=8, pooling="site")
    assert head_parameter_names(site) == ["site_mlp.1.2.weight", "site_mlp.1.2.bias"]


def test_finetune_leaves_pretrained_untouched_and_freezes(pretrained, data):
    X, _, heat_all = data
    before = _state(pretrained)
    tuned = finetune(pretrained, X[500:560], heat_all[500:560], lr=1e-2, max_epochs=3)
    assert type(tuned) is CGCNNRegressor and tuned is not pretrained
    after = _state(pretrained)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert pretrained.module_.head.mlp[2].weight.requires_grad
    new = _state(tuned)
    changed = {k for k in new if not torch.equal(new[k], before[k])}
    # only the last head layer moved; frozen batch norms kept their running stats
    assert changed == {"head.mlp.2.weight", "head.mlp.2.bias"}
    # its own target scaling
    np.testing.assert_allclose(tuned.target_scaler_.mean_, heat_all[500:560].mean())
    assert tuned.target_scaler_.mean_ != pretrained.target_scaler_.mean_
    assert tuned.predict(X[:3]).shape == (3,)


def test_rescale_head_starts_from_pretrained_predictions(pretrained, data):
    X, _, heat_all = data
    tuned = finetune(pretrained, X[500:540], heat_all[500:540] * 3 + 1, lr=1e-12,
                     max_epochs=1, head_init="rescale")
    np.testing.assert_allclose(tuned.predict(X[900:910]), pretrained.predict(X[900:910]),
                               rtol=1e-4, atol=1e-4)


def test_finetuner_in_cross_val_score(pretrained, data):
    X, _, heat_all = data
    tuner = FineTuner(pretrained, lr=1e-2, max_epochs=2)
    assert clone(tuner).pretrained is pretrained  # clone keeps the fitted net
    scores = cross_val_score(tuner, X[500:590], heat_all[500:590], cv=3,
                             scoring="neg_mean_absolute_error")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    with pytest.raises(Exception, match="not fitted"):
        FineTuner(CGCNNRegressor(), max_epochs=1).fit(X[:10], heat_all[:10])
    for other in (None, "cgcnn"):  # not an estimator: named, not an AttributeError
        with pytest.raises(TypeError, match="must be a fitted skcrystal estimator"):
            FineTuner(other, max_epochs=1).fit(X[:10], heat_all[:10])


@pytest.mark.parametrize("name", ["alignn", "crystalnet"])
def test_model_agnostic(name, data):
    X, heat_ref, heat_all = data
    if name == "alignn":
        from skcrystal.estimators.alignn import ALIGNNRegressor as cls
        small = dict(module__hidden=16, module__embedding_features=8,
                     module__alignn_layers=1, module__gcn_layers=1)
    else:
        from skcrystal.estimators.crystalnet import CrystalNetRegressor as cls
        small = dict(module__hidden=16)
    pre = cls(max_epochs=1, batch_size=16, random_state=0, **small).fit(X[:32], heat_ref[:32])
    before = _state(pre)
    tuned = finetune(pre, X[32:64], heat_all[32:64], lr=1e-2, max_epochs=2)
    changed = {k for k, v in _state(tuned).items() if not torch.equal(v, before[k])}
    assert changed == set(head_parameter_names(tuned.module_))
    assert all(torch.equal(v, before[k]) for k, v in _state(pre).items())


def test_finetuning_beats_scratch_on_small_related_set(pretrained, data):
    """heat_ref (300 rows) -> 80 heat_all rows; evaluated on 300 held-out rows."""
    X, _, heat_all = data
    X_small, y_small = X[500:580], heat_all[500:580]
    X_test, y_test = X[700:1000], heat_all[700:1000]
    tuned = finetune(pretrained, X_small, y_small, freeze="all_but_head", lr=1e-2,
                     max_epochs=12)
    scratch = CGCNNRegressor(max_epochs=12, **CGCNN_SMALL).fit(X_small, y_small)
    mae_tuned = mean_absolute_error(y_test, tuned.predict(X_test))
    mae_scratch = mean_absolute_error(y_test, scratch.predict(X_test))
    assert mae_tuned < 0.8 * mae_scratch, (mae_tuned, mae_scratch)

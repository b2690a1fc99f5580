"""Training safety: non-finite values are errors naming the structures, labels are
checked, checkpoints hold the fitted data state and an interrupted fit resumes."""
import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from skcrystal.datasets import load_perovskites
from skcrystal.estimators import CGCNNClassifier, CGCNNRegressor, NonFiniteError
from skcrystal.estimators.callbacks import Checkpoint

SMALL = dict(module__n_conv=1, module__h_fea_len=16, random_state=0)


@pytest.fixture(scope="module")
def data():
    X, y = load_perovskites(n=12)
    return X, y


def test_diverging_training_names_epoch_batch_and_structures(data):
    X, y = data
    est = CGCNNRegressor(max_epochs=3, batch_size=4, lr=1e30, **SMALL)
    with pytest.raises(NonFiniteError, match=r"at epoch \d+, training batch \d+") as err:
        est.fit(X, y)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    # the structures are named by their position in X and their formula
    names = [f"X[{i}] ({s.composition.reduced_formula})" for i, s in enumerate(X)]
    assert any(n in msg for n in names)


def test_nan_prediction_names_the_structures(data):
    X, y = data
    est = CGCNNRegressor(max_epochs=1, **SMALL).fit(X, y)
    with torch.no_grad():
        next(est.module_.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"non-finite .*X\[0\] \(") as err:
        est.predict(X)
    assert "epoch" not in str(err.value)  # not training: no epoch to name


def test_nan_loss_is_an_error(data):
    X, y = data

    class NaNLoss(torch.nn.MSELoss):
        def forward(self, a, b):
            return super().forward(a, b) * float("nan")

    est = CGCNNRegressor(max_epochs=1, criterion=NaNLoss, **SMALL)
    with pytest.raises(NonFiniteError, match=r"non-finite loss .*epoch 1, training batch 1"):
        est.fit(X, y)


@pytest.mark.parametrize("labels, match", [
    (np.linspace(0.1, 2.3, 12), "continuous values"),
    (["a", None] * 6, r"missing labels .*rows \[1, 3"),
    (np.array([0.5] + [1] * 11, dtype=object), "continuous values"),
])
def test_classifier_rejects_continuous_and_missing_labels(data, labels, match):
    with pytest.raises(ValueError, match=match):
        CGCNNClassifier(max_epochs=1, **SMALL).fit(data[0], labels)


def test_classifier_accepts_integral_float_labels(data):
    y = np.array([0.0, 1.0] * 6)
    est = CGCNNClassifier(max_epochs=1, **SMALL).fit(data[0], y)
    assert list(est.classes_) == [0.0, 1.0]


@pytest.mark.parametrize("epochs", [0, -1])
def test_max_epochs_must_be_positive(data, epochs):
    with pytest.raises(ValueError, match="max_epochs"):
        CGCNNRegressor(max_epochs=epochs, **SMALL).fit(*data)


def test_optimizer_state_loads_weights_only(data, tmp_path):
    """The cosine schedule leaves only plain floats in the optimizer state."""
    X, y = data
    est = CGCNNRegressor(max_epochs=2, **SMALL).fit(X, y)
    files = {k: str(tmp_path / f"{k}") for k in ("f_params", "f_optimizer", "f_state")}
    est.save_params(**files)
    torch.load(files["f_optimizer"], weights_only=True)  # no numpy scalars inside
    new = CGCNNRegressor(max_epochs=2, **SMALL)
    new.load_params(**files)
    np.testing.assert_allclose(new.predict(X), est.predict(X), rtol=1e-6)
    new.partial_fit(X, y)  # training goes on from the loaded optimizer state


class _StopAfter(Callback):
    def __init__(self, n):
        self.n = n

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.n:
            raise KeyboardInterrupt  # skorch ends fit() quietly, as on Ctrl-C


def test_checkpoint_holds_target_scaling_and_resumes(data, tmp_path):
    X, y = data
    y = y * 1000 + 5  # scaling that the weights alone cannot know
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    est = CGCNNRegressor(max_epochs=4, callbacks=[("cp", cp), ("stop", _StopAfter(2))],
                         **SMALL).fit(X, y)
    assert len(est.history) == 2 and (tmp_path / "state.json").exists()
    fresh = CGCNNRegressor(max_epochs=4, **SMALL)
    fresh.load_params(checkpoint=Checkpoint(monitor=None, dirname=str(tmp_path)))
    np.testing.assert_allclose(fresh.predict(X), est.predict(X), rtol=1e-6)
    assert len(fresh.history) == 2

    resumed = CGCNNRegressor(max_epochs=4, **SMALL).resume(
        X, y, Checkpoint(monitor=None, dirname=str(tmp_path)))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    # the cosine schedule went on where it stopped: zero after the last epoch
    assert resumed.optimizer_.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(resumed.predict(X)).all()


@pytest.mark.parametrize("model", ["cgcnn", "crystograph"])
def test_resumed_fit_equals_the_uninterrupted_fit(data, tmp_path, model):
    """Shuffles (and CrysToGraph's dropout masks) of the resumed epochs are the ones
    the uninterrupted fit draws: the checkpoint saved the generator."""
    from skcrystal.estimators import CrysToGraphRegressor

    X, y = data
    cls, params = (CGCNNRegressor, dict(SMALL, batch_size=4)) if model == "cgcnn" else (
        CrysToGraphRegressor, dict(module__hidden=16, module__n_heads=2, module__head_dim=8,
                                   module__n_etgc=1, module__dropout=0.1, batch_size=4,
                                   random_state=0))
    whole = cls(max_epochs=4, **params).fit(X, y)
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    cls(max_epochs=4, callbacks=[("cp", cp), ("stop", _StopAfter(2))], **params).fit(X, y)
    assert (tmp_path / "rng.json").exists()
    resumed = cls(max_epochs=4, **params).resume(
        X, y, Checkpoint(monitor=None, dirname=str(tmp_path)))
    np.testing.assert_array_equal(resumed.predict(X), whole.predict(X))
    np.testing.assert_array_equal(resumed.history[:, "train_loss"],
                                  whole.history[:, "train_loss"])

    # without the generator file (a checkpoint of an earlier version) it still
    # resumes, drawing the remaining epochs afresh from random_state
    (tmp_path / "rng.json").unlink()
    older = cls(max_epochs=4, **params).resume(X, y, Checkpoint(monitor=None,
                                                                dirname=str(tmp_path)))
    assert [row["epoch"] for row in older.history] == [1, 2, 3, 4]
    assert not np.array_equal(older.predict(X), whole.predict(X))


def test_a_checkpoint_that_does_not_fit_is_named(data, tmp_path):
    """Another size, another model, no checkpoint at all: errors name the folder and
    the mismatch instead of torch's state-dict error or a TypeError."""
    from skcrystal.estimators import ALIGNNRegressor

    X, y = data
    CGCNNRegressor(max_epochs=1, callbacks=[("cp", Checkpoint(monitor=None,
                                                              dirname=str(tmp_path)))],
                   **SMALL).fit(X, y)
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    wider = CGCNNRegressor(max_epochs=2, **dict(SMALL, module__h_fea_len=32))
    with pytest.raises(ValueError, match=rf"{tmp_path}: cannot load into this "
                                         r"CGCNNRegressor \(CGCNN\): size mismatch for"):
        wider.resume(X, y, cp)
    with pytest.raises(ValueError, match="ALIGNNRegressor .*other module__ parameters"):
        ALIGNNRegressor(max_epochs=2).resume(X, y, cp)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*nothere"):
        CGCNNRegressor(max_epochs=2).resume(
            X, y, Checkpoint(monitor=None, dirname=str(tmp_path / "nothere")))
    with pytest.raises(ValueError, match=r"params.pt: cannot load .*size mismatch"):
        wider.initialize().load_params(f_params=str(tmp_path / "params.pt"))
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((tmp_path / "params.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"damaged.pt: cannot load .*is the file damaged"):
        CGCNNRegressor(**SMALL).initialize().load_params(f_params=str(damaged))


def test_fit_ignores_a_loaded_generator_state(data, tmp_path):
    X, y = data
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    CGCNNRegressor(max_epochs=2, callbacks=[("cp", cp)], batch_size=4, **SMALL).fit(X, y)
    est = CGCNNRegressor(max_epochs=2, batch_size=4, **SMALL)
    est.load_params(checkpoint=Checkpoint(monitor=None, dirname=str(tmp_path)))
    fresh = CGCNNRegressor(max_epochs=2, batch_size=4, **SMALL).fit(X, y)
    np.testing.assert_array_equal(est.fit(X, y).predict(X), fresh.predict(X))
    # a best checkpoint loaded at the end of training leaves no generator behind
    best = Checkpoint(monitor="train_loss_best", dirname=str(tmp_path / "best"),
                      load_best=True)
    est = CGCNNRegressor(max_epochs=2, callbacks=[("best", best)], batch_size=4,
                         **SMALL).fit(X, y)
    assert (tmp_path / "best" / "rng.json").exists() and "_rng_state_" not in vars(est)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "skcrystal-rng-state", "torch": "AAAA"}')
    with pytest.raises(ValueError, match="bad.json: a generator state of 3 bytes"):
        est.load_params(f_rng=str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json is not a skcrystal generator state"):
        est.load_params(f_rng=str(bad))


def test_checkpoint_is_written_whole_or_not_at_all(data, tmp_path, monkeypatch):
    """A save that fails part way (here: the history of epoch 2) leaves epoch 1's
    checkpoint as it was, every file of it, and no temporary file behind."""
    X, y = data
    messages = []
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), sink=messages.append)
    est = CGCNNRegressor(max_epochs=2, callbacks=[("cp", cp)], batch_size=4, **SMALL)
    real = CGCNNRegressor.save_params

    def failing(self, **kw):
        if kw.get("f_history") is not None and len(self.history) == 2:
            raise OSError("disk full")
        return real(self, **kw)

    monkeypatch.setattr(CGCNNRegressor, "save_params", failing)
    snapshots = []

    class Snapshot(Callback):
        def on_epoch_end(self, net, **kwargs):  # after cp: the files of this epoch
            snapshots.append({p.name: p.read_bytes() for p in tmp_path.iterdir()})

    est.set_params(callbacks=[("cp", cp), ("snap", Snapshot())])
    est.fit(X, y)
    assert any("disk full" in m and "checkpoint not updated" in m for m in messages)
    assert snapshots[0] == snapshots[1]
    assert sorted(snapshots[1]) == ["criterion.pt", "history.json", "optimizer.pt",
                                    "params.pt", "rng.json", "state.json"]
    monkeypatch.undo()
    back = CGCNNRegressor(max_epochs=2, batch_size=4, **SMALL)
    back.load_params(checkpoint=Checkpoint(monitor=None, dirname=str(tmp_path)))
    assert len(back.history) == 1


class _CtrlCAt(Callback):
    """A user's Ctrl-C (SIGINT) at the end of epoch ``n``."""

    def __init__(self, n):
        self.n = n

    def on_epoch_end(self, net, **kwargs):
        import signal
        if len(net.history) == self.n:
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_stops_fit_and_the_caller_but_early_stopping_does_not(data,
                                                                     sigint_handled):
    """skorch ends fit quietly on KeyboardInterrupt; a user's Ctrl-C is raised again
    (cross_val_score would otherwise score a partly trained model and go on), while
    a callback that stops training that way (EarlyStopping) still ends fit quietly."""
    import signal

    from sklearn.model_selection import cross_val_score

    X, y = data
    est = CGCNNRegressor(max_epochs=4, batch_size=4, callbacks=[("c", _CtrlCAt(2))], **SMALL)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted \(Ctrl-C\) in epoch 2 of 4"):
        est.fit(X, y)
    assert len(est.history) == 2 and np.isfinite(est.predict(X)).all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    est.set_params(callbacks=[("c", _CtrlCAt(3))])
    with pytest.raises(KeyboardInterrupt, match="in epoch 3 of 4"):
        est.partial_fit(X, y)
    fits = []

    class Count(Callback):
        def on_train_begin(self, net, **kwargs):
            fits.append(1)

    with pytest.raises(KeyboardInterrupt):
        cross_val_score(CGCNNRegressor(max_epochs=3, batch_size=4, callbacks=[
            ("n", Count()), ("c", _CtrlCAt(1))], **SMALL), X, y, cv=3)
    assert len(fits) == 1  # the first fold stopped the whole evaluation
    stopped = CGCNNRegressor(max_epochs=4, batch_size=4, callbacks=[("s", _StopAfter(2))],
                             **SMALL).fit(X, y)
    assert len(stopped.history) == 2


def test_skorch_checkpoint_with_f_state(data, tmp_path):
    from skorch.callbacks import Checkpoint as SkorchCheckpoint
    X, y = data
    cp = SkorchCheckpoint(monitor=None, dirname=str(tmp_path), f_state="state.json")
    est = CGCNNRegressor(max_epochs=1, callbacks=[cp], **SMALL).fit(X, y)
    fresh = CGCNNRegressor(max_epochs=1, **SMALL)
    fresh.load_params(checkpoint=cp)
    np.testing.assert_allclose(fresh.predict(X), est.predict(X), rtol=1e-6)


def test_nan_gradient_with_finite_loss_is_an_error(data):
    """The gradient check (a sum per gradient tensor) catches a NaN gradient
    behind a finite loss."""
    X, y = data

    class NaNGradLoss(torch.nn.MSELoss):
        def forward(self, a, b):
            # value 0, gradient 0 * inf = NaN
            return super().forward(a, b) + 0.0 * torch.sqrt((a - a.detach()).abs()).sum()

    est = CGCNNRegressor(max_epochs=1, criterion=NaNGradLoss, **SMALL)
    with pytest.raises(NonFiniteError, match=r"non-finite \(NaN or inf\) gradient at epoch 1, "
                                             r"training batch 1"):
        est.fit(X, y)


def test_gradient_check_is_exact():
    """The per-tensor sums flag any NaN or inf, and large finite gradients
    whose sums overflow float32 are not mistaken for non-finite ones."""
    from skcrystal.estimators.base import _all_finite

    big = torch.full((4,), 3e38)
    assert _all_finite([torch.ones(3), big])  # the sum of ``big`` is inf
    assert _all_finite([torch.zeros(2, 2, dtype=torch.float64)])
    for bad in (float("nan"), float("inf"), -float("inf")):
        t = torch.ones(5)
        t[3] = bad
        assert not _all_finite([torch.ones(2), t])
        assert not _all_finite([big, t])
    # a NaN beside an overflowing sum in the same tensor
    t = big.clone()
    t[0] = float("nan")
    assert not _all_finite([t])


def test_optimizer_is_fused_where_torch_has_the_kernel(data):
    """AdamW (the default) and SGD get PyTorch's fused step, which changes
    the result only by float rounding; a user's ``foreach`` or ``fused``
    choice is kept; an optimizer without a fused kernel is left alone."""
    X, y = data
    fused = CGCNNRegressor(max_epochs=3, **SMALL).fit(X, y)
    assert fused.optimizer_.param_groups[0]["fused"] is True
    loop = CGCNNRegressor(max_epochs=3, optimizer__foreach=False,
                          **SMALL).fit(X, y)
    assert not loop.optimizer_.param_groups[0]["fused"]
    np.testing.assert_allclose(fused.predict(X), loop.predict(X), rtol=1e-4, atol=1e-6)
    foreach = CGCNNRegressor(max_epochs=1, optimizer__foreach=True, **SMALL).fit(X, y)
    assert foreach.optimizer_.param_groups[0]["foreach"] is True
    assert not foreach.optimizer_.param_groups[0]["fused"]
    sgd = CGCNNRegressor(max_epochs=1, optimizer=torch.optim.SGD, **SMALL).fit(X, y)
    assert sgd.optimizer_.param_groups[0]["fused"] is True
    rms = CGCNNRegressor(max_epochs=1, optimizer=torch.optim.RMSprop, **SMALL).fit(X, y)
    assert "fused" not in rms.optimizer_.param_groups[0]
    # set_params reaches the optimizer as usual
    est = CGCNNRegressor(max_epochs=1, **SMALL).set_params(optimizer__fused=False).fit(X, y)
    assert not est.optimizer_.param_groups[0]["fused"]


def test_train_mode_is_not_reset_every_batch(data):
    """skorch asks for train mode before every batch; the module tree is only
    walked when a module is not in that mode already."""
    from skcrystal.nn.cgcnn import CGCNN

    calls = []

    class Counting(CGCNN):
        def train(self, mode=True):
            calls.append(mode)
            return super().train(mode)

    X, y = data
    est = CGCNNRegressor(module=Counting, max_epochs=3, batch_size=2, **SMALL)
    est.fit(X, y)  # 6 batches per epoch, 18 in all, each asking for train mode
    # built in train mode, never in eval mode during fit: never walked
    assert calls.count(True) == 0
    assert est.module_.training
    # a module switched to eval by hand is switched back
    est.module_.convs[0].eval()
    calls.clear()
    est.partial_fit(X, y, epochs=1)
    assert calls.count(True) == 1 and est.module_.convs[0].training

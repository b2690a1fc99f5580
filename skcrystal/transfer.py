"""Transfer learning: fine-tune a fitted skcrystal estimator on a small set.

The CrystalNet paper pre-trains on a large DFT set and fine-tunes on a few
thousand experimental values with everything but the last layer frozen
(lr 1e-5, 40 epochs). This module makes that model-agnostic: it works for
any fitted :class:`~skcrystal.estimators.base.CrystalGraphNet` (CGCNN,
ALIGNN, CrystalNet, ...), since freezing is by parameter name.

* :class:`FineTuner` is a scikit-learn meta-estimator: each ``fit`` copies
  the fitted pre-trained net (weights, graph parameters, descriptor
  scaling), freezes parameters, sets its own target scaling from the small
  set and trains the rest. The pre-trained estimator is never modified, and
  ``clone`` keeps the reference to it (see ``__sklearn_clone__``), so a
  ``FineTuner`` works inside ``cross_val_score`` / ``GridSearchCV`` on the
  small set.
* :func:`finetune` is the one-call form; it returns the fine-tuned net
  itself (same class as the pre-trained one).

Freezing
--------
``freeze="all_but_head"`` (default) trains only the last Linear layer of the
model's readout (what its ``readout_modules()`` declares).
``freeze=None`` / ``"none"`` trains everything. Otherwise ``freeze`` is a
pattern or list of patterns over ``module_.named_parameters()`` names
(``fnmatch`` syntax, e.g. ``"embedding.*"``, ``"convs.0.*"``; a pattern
starting with ``"re:"`` is a regular expression matched with
``re.fullmatch``): matching parameters are frozen. A pattern that matches
no parameter is an error (typos would otherwise freeze nothing). Batch-norm
layers whose parameters are all frozen also keep their running statistics
(they run in inference mode), so a frozen body computes exactly what the
pre-trained one did.

Target scaling
--------------
Regressors re-standardize ``y`` with the small set's mean and standard
deviation. ``head_init="keep"`` (default) keeps the head weights as they
are, i.e. the pre-trained mapping is reused in standardized units (a
related property: z-score to z-score); ``head_init="rescale"`` rescales
the last layer so the fine-tuned net starts from exactly the pre-trained
predictions in ``y`` units (the same property measured differently, e.g.
DFT -> experimental band gaps).
"""
from __future__ import annotations

import copy
import fnmatch
import re

import numpy as np
import torch
from sklearn.base import BaseEstimator, MetaEstimatorMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

__all__ = ["FineTuner", "finetune", "freeze_parameters", "head_parameter_names"]


def _last_linear_name(module):
    """Name (within ``module``) of its last ``nn.Linear`` submodule, or None."""
    last = None
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear):
            last = name
    return last


def head_parameter_names(model):
    """Parameter names of the final layer of a model's head.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`~skcrystal.nn.head.CrystalModel`.

    Returns
    -------
    list of str
        Names as in ``model.named_parameters()`` (e.g.
        ``["head.mlp.2.weight", "head.mlp.2.bias"]``).
    """
    # the module declares its readout; its last Linear layer is the head
    readout = model.readout_modules() if hasattr(model, "readout_modules") else []
    for head in reversed(readout):
        last = _last_linear_name(head)
        if last is not None:
            linear = head.get_submodule(last) if last else head
            ids = {id(p) for p in linear.parameters()}
            return [n for n, p in model.named_parameters() if id(p) in ids]
    raise ValueError(f"{type(model).__name__} has no head with a Linear layer; "
                     "give freeze as parameter-name patterns instead of 'all_but_head'")


def _match(pattern, name):
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def _eval_mode_hook(module, inputs):
    # runs after skorch's module_.train(): a fully frozen batch norm keeps
    # using (and not updating) its pre-trained running statistics
    module.training = False


def freeze_parameters(model, freeze="all_but_head"):
    """Set ``requires_grad`` by name; return the names left trainable.

    Parameters
    ----------
    model : torch.nn.Module
    freeze : "all_but_head", None, "none", str or list of str
        See the module docstring.

    Returns
    -------
    list of str
        Trainable parameter names.
    """
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"model must be a torch.nn.Module (an estimator's module_), got "
                        f"{type(model).__name__}")
    names = [n for n, _ in model.named_parameters()]
    if freeze is None or (isinstance(freeze, str) and freeze == "none"):
        frozen = set()
    elif isinstance(freeze, str) and freeze == "all_but_head":
        frozen = set(names) - set(head_parameter_names(model))
    else:
        try:
            patterns = [freeze] if isinstance(freeze, str) else list(freeze)
        except TypeError:
            raise TypeError(f"freeze must be 'all_but_head', None, 'none', a name pattern "
                            f"or a list of them, got {freeze!r}") from None
        frozen = set()
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise TypeError(f"freeze patterns must be str, got {pattern!r}")
            hit = {n for n in names if _match(pattern, n)}
            if not hit:
                raise ValueError(
                    f"freeze pattern {pattern!r} matches no parameter of "
                    f"{type(model).__name__}; names look like {names[:4]} ...")
            frozen |= hit
    trainable = [n for n in names if n not in frozen]
    if not trainable:
        raise ValueError(f"freeze={freeze!r} freezes every parameter; nothing to train")
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    for sub in model.modules():
        if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            params = list(sub.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                sub.register_forward_pre_hook(_eval_mode_hook)
    return trainable


def _check_pretrained(est):
    if isinstance(est, FineTuner):
        check_is_fitted(est, "estimator_")
        return est.estimator_
    if not (hasattr(est, "check_is_fitted") and hasattr(est, "initialize")):  # a skorch net
        raise TypeError(f"the pre-trained model must be a fitted skcrystal estimator "
                        f"(e.g. CGCNNRegressor), got {type(est).__name__}")
    try:
        est.check_is_fitted()
    except (NotFittedError, AttributeError):
        raise NotFittedError(
            f"the pre-trained {type(est).__name__} is not fitted; fit it on the large "
            "set first") from None
    return est


class FineTuner(MetaEstimatorMixin, BaseEstimator):
    """Fine-tune a copy of a fitted skcrystal estimator (meta-estimator).

    Parameters
    ----------
    pretrained : fitted CrystalGraphNet (or fitted FineTuner)
        Never modified; each ``fit`` works on a deep copy.
    freeze : "all_but_head", None, "none", str or list of str
        Which parameters to freeze (module docstring).
    lr : float, default 1e-5
        Learning rate of the fine-tuning (the paper's).
    max_epochs : int, default 40
    head_init : {"keep", "rescale"}
        How the head starts under the new target scaling (module docstring).
    batch_size : int, optional
        Mini-batch size (default: the pre-trained one's).
    random_state : int, optional
        Seeds the shuffling (default: the pre-trained one's).
    net_params : dict, optional
        Further parameters set on the copy with ``set_params`` (e.g.
        ``{"optimizer__weight_decay": 0.01}``). The learning rate stays
        constant, as in the paper (``callbacks__lr_schedule=None``), unless
        this gives a schedule. ``module__`` parameters are refused: they
        would rebuild the pre-trained model with fresh weights.

    Attributes
    ----------
    estimator_ : CrystalGraphNet
        The fine-tuned net (same class as ``pretrained``).
    trainable_params_ : list of str
        Names of the parameters that were trained.
    """

    def __init__(self, pretrained, freeze="all_but_head", lr=1e-5, max_epochs=40,
                 head_init="keep", batch_size=None, random_state=None, net_params=None):
        self.pretrained = pretrained
        self.freeze = freeze
        self.lr = lr
        self.max_epochs = max_epochs
        self.head_init = head_init
        self.batch_size = batch_size
        self.random_state = random_state
        self.net_params = net_params

    def __sklearn_clone__(self):
        # sklearn's clone would clone (i.e. un-fit) the pre-trained net; keep it
        params = self.get_params(deep=False)
        pretrained = params.pop("pretrained")
        from sklearn.base import clone
        return type(self)(pretrained, **{k: clone(v, safe=False) for k, v in params.items()})

    @property
    def _estimator_type(self):
        return getattr(self.pretrained, "_estimator_type", None)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = _check_pretrained(self.pretrained) if getattr(
            self.pretrained, "initialized_", False) else self.pretrained
        try:
            base = inner.__sklearn_tags__()
            tags.estimator_type = base.estimator_type
            tags.input_tags = base.input_tags
            tags.regressor_tags = base.regressor_tags
            tags.classifier_tags = base.classifier_tags
        except AttributeError:  # pragma: no cover
            pass
        return tags

    def fit(self, X, y):
        """Fine-tune a copy of ``pretrained`` on ``(X, y)``.

        Parameters
        ----------
        X : sequence of Structure, or DataFrame
            As for the pre-trained estimator.
        y : array-like, shape (n,) or (n, n_targets)
        """
        if self.head_init not in ("keep", "rescale"):
            raise ValueError(f"head_init must be 'keep' or 'rescale', got {self.head_init!r}")
        if not (isinstance(self.max_epochs, (int, np.integer)) and self.max_epochs >= 1):
            raise ValueError(f"max_epochs must be an int >= 1, got {self.max_epochs!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        source = _check_pretrained(self.pretrained)
        rebuilt = sorted(k for k in (self.net_params or {}) if k.startswith("module__"))
        if rebuilt:
            raise ValueError(
                f"net_params {rebuilt} would rebuild the pre-trained model with fresh "
                "weights; fine-tuning keeps the pre-trained architecture")
        net = copy.deepcopy(source)
        # the paper fine-tunes at a constant lr 1e-5; a cosine schedule would
        # decay it to zero
        kw = dict(lr=self.lr, max_epochs=int(self.max_epochs), warm_start=True,
                  callbacks__lr_schedule=None)
        if self.batch_size is not None:
            kw["batch_size"] = self.batch_size
        if self.random_state is not None:
            kw["random_state"] = self.random_state
        net.set_params(**{**kw, **(self.net_params or {})})
        net.initialize_callbacks()  # a callback set to None is dropped here
        if hasattr(net, "refit_target_scaling"):
            old, new = net.refit_target_scaling(y)  # the small set's own scaling
            if self.head_init == "rescale":
                self._rescale_head(net, old, new)
        self.trainable_params_ = freeze_parameters(net.module_, self.freeze)
        # a fresh optimizer over the trainable parameters only, with the new lr
        net.initialize_optimizer()
        net.partial_fit(X, y)
        self.estimator_ = net
        return self

    @staticmethod
    def _rescale_head(net, old, new):
        """Rewrite the last layer so predictions in ``y`` units are unchanged."""
        names = head_parameter_names(net.module_)
        params = dict(net.module_.named_parameters())
        weight = next(params[n] for n in names if n.endswith("weight"))
        bias = next((params[n] for n in names if n.endswith("bias")), None)
        ratio = torch.as_tensor(old.scale_ / new.scale_, dtype=weight.dtype)
        shift = torch.as_tensor((old.mean_ - new.mean_) / new.scale_, dtype=weight.dtype)
        with torch.no_grad():
            weight.mul_(ratio.unsqueeze(1))
            if bias is not None:
                bias.mul_(ratio).add_(shift)

    def _inner(self):
        check_is_fitted(self, "estimator_")
        return self.estimator_

    def predict(self, X):
        """Predictions of the fine-tuned net (see its ``predict``)."""
        return self._inner().predict(X)

    def predict_proba(self, X):
        """Class probabilities of the fine-tuned classifier."""
        return self._inner().predict_proba(X)

    def transform(self, X):
        """Pooled crystal representations of the fine-tuned net."""
        return self._inner().transform(X)

    def score(self, X, y, sample_weight=None):
        """R² (regression) or accuracy (classification) of the fine-tuned net."""
        return self._inner().score(X, y, sample_weight=sample_weight)

    @property
    def classes_(self):
        return self._inner().classes_


def finetune(pretrained_est, X_small, y_small, freeze="all_but_head", lr=1e-5,
             max_epochs=40, head_init="keep", **params):
    """Fine-tune a fitted estimator on a small set; return a new fitted estimator.

    Parameters
    ----------
    pretrained_est : fitted CrystalGraphNet
        Left untouched.
    X_small, y_small
        The small set.
    freeze, lr, max_epochs, head_init
        See :class:`FineTuner`.
    **params
        ``batch_size``, ``random_state``, or any parameter of the estimator
        (``optimizer__weight_decay=...``), set on the copy.

    Returns
    -------
    CrystalGraphNet
        A fitted estimator of the same class as ``pretrained_est``.

    Examples
    --------
    >>> big = CGCNNRegressor(max_epochs=100).fit(X_big, y_big)     # doctest: +SKIP
    >>> small = finetune(big, X_small, y_small, lr=1e-3)            # doctest: +SKIP
    >>> cross_val_score(FineTuner(big, lr=1e-3), X_small, y_small)  # doctest: +SKIP
    """
    batch_size = params.pop("batch_size", None)
    random_state = params.pop("random_state", None)
    tuner = FineTuner(pretrained_est, freeze=freeze, lr=lr, max_epochs=max_epochs,
                      head_init=head_init, batch_size=batch_size,
                      random_state=random_state, net_params=params or None)
    return tuner.fit(X_small, y_small).estimator_

"""Learnability probes: which human-designed descriptors can a model learn?

The periodicity paper (Li et al., Figs. 2 and 4) asks two questions of a
crystal GNN:

* :func:`probe_learnability` -- trained to predict each descriptor of a
  :class:`~skcrystal.descriptors.DescriptorBank` from the structure, how well
  does the model do (R2, MAE, MAE/MAD; accuracy for the crystal system),
  next to a composition-only baseline? A descriptor the model cannot learn
  is knowledge it does not have (the paper finds the lattice constants).
* :func:`representation_importance` -- when a random forest predicts a
  property from [the model's learned representation, descriptors], how
  much importance goes to each group (Fig. 4)?

Both return tidy pandas DataFrames; :mod:`skcrystal.plotting` draws them.
"""
from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
from sklearn.base import clone, is_classifier

from ._logging import verbose_logging
from ._validation import descriptor_values

_log = logging.getLogger(__name__)

__all__ = ["probe_learnability", "representation_importance", "classifier_counterpart",
           "PROBE_COLUMNS"]

#: columns of the probe_learnability table, in order
PROBE_COLUMNS = ["descriptor", "model", "task", "r2", "r2_std", "mae", "mae_mad",
                 "accuracy", "accuracy_std", "n_samples", "n_folds", "note"]

_DEFAULT_BASELINE = "default"


def _model_name(est):
    name = type(est).__name__
    for suffix in ("Regressor", "Classifier"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def classifier_counterpart(estimator):
    """The classifier matching a regressor, with the same parameters.

    ``CGCNNRegressor(max_epochs=5, module__n_conv=2)`` ->
    ``CGCNNClassifier(max_epochs=5, module__n_conv=2)``; a
    :class:`~skcrystal.baselines.CompositionBaseline` ->
    :class:`~skcrystal.baselines.CompositionBaselineClassifier`. The
    counterpart is the registered model's classifier (see
    :mod:`skcrystal.estimators.registry`), or the estimator class's
    ``classifier_counterpart_class``; parameters it does not take (and the
    regression ``criterion``) are dropped.

    Parameters
    ----------
    estimator : estimator

    Returns
    -------
    estimator
        Unfitted classifier (``estimator`` itself cloned if it is one).

    Raises
    ------
    TypeError
        If no counterpart exists; pass ``classifier=`` explicitly then.
    """
    import inspect

    from .estimators import registry

    if not hasattr(estimator, "get_params"):
        raise TypeError(f"estimator must be a scikit-learn regressor, got "
                        f"{type(estimator).__name__}")
    if is_classifier(estimator):
        return clone(estimator)
    name = type(estimator).__name__
    spec = registry.spec_for(estimator)
    # registered models name their classifier in the registry; other
    # estimators (the composition baseline) declare it as a class attribute
    target = spec.classifier if spec is not None else getattr(
        type(estimator), "classifier_counterpart_class", None)
    if target is None:
        raise TypeError(f"no classifier counterpart of {name} is registered; pass "
                        "classifier= explicitly")
    params = estimator.get_params(deep=False)
    params.pop("criterion", None)
    sig = inspect.signature(target.__init__)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not takes_kwargs:
        params = {k: v for k, v in params.items() if k in sig.parameters}
    return target(**params)


def _descriptor_table(bank, structures):
    """(values (n, k), names) from a transformer or a precomputed DataFrame."""
    try:
        import pandas as pd
        if isinstance(bank, pd.DataFrame):
            if len(bank) != len(structures):
                raise ValueError(f"bank is a DataFrame with {len(bank)} rows but there are "
                                 f"{len(structures)} structures")
            non_numeric = [c for c in bank.columns
                           if not pd.api.types.is_numeric_dtype(bank[c])]
            if non_numeric:
                raise ValueError(f"bank DataFrame columns must be numeric; not numeric: "
                                 f"{non_numeric}")
            return bank.to_numpy(dtype=np.float64), [str(c) for c in bank.columns]
    except ImportError:  # pragma: no cover
        pass
    if bank is None:
        from .descriptors import DescriptorBank
        bank = DescriptorBank()
    if not (hasattr(bank, "transform") and hasattr(bank, "get_params")):
        raise TypeError(f"bank must be a descriptor transformer (e.g. DescriptorBank()), a "
                        f"DataFrame of descriptor values or None, got {type(bank).__name__}")
    return descriptor_values(clone(bank), structures, fit=True)


def _models(estimator):
    if isinstance(estimator, dict):
        if not estimator:
            raise ValueError("estimator is an empty dict; give at least one model")
        models = dict(estimator)
    elif isinstance(estimator, (list, tuple)):
        models = {_model_name(e): e for e in estimator}
    else:
        models = {_model_name(estimator): estimator}
    for name, model in models.items():
        # structures passed first (probe_learnability(X, y)) land here
        if not (hasattr(model, "fit") and hasattr(model, "get_params")):
            raise TypeError(f"estimator: model {name!r} is a {type(model).__name__}, not a "
                            "scikit-learn estimator; the call is probe_learnability("
                            "estimator, structures, bank=...)")
    return models


def _splitter(cv, random_state):
    from sklearn.model_selection import KFold
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv must be >= 2 folds, got {cv}")
        return KFold(int(cv), shuffle=True, random_state=random_state)
    if hasattr(cv, "split"):
        return cv
    raise TypeError(f"cv must be an int or a scikit-learn splitter, got {type(cv).__name__}")


def _row(descriptor, model, task, n, n_folds, note="", **values):
    row = dict.fromkeys(PROBE_COLUMNS, np.nan)
    row.update(descriptor=descriptor, model=model, task=task, n_samples=n,
               n_folds=n_folds, note=note)
    row.update(values)
    return row


def _cv(est, X, y, splitter, scoring, n_jobs, error_score):
    from sklearn.model_selection import cross_validate
    with warnings.catch_warnings():
        # a fold whose test targets are constant makes R2 undefined; reported as NaN below
        warnings.filterwarnings("ignore", message=".*R\\^2 score is not well-defined.*")
        return cross_validate(est, X, y, cv=splitter, scoring=scoring, n_jobs=n_jobs,
                              error_score=error_score)


def _stats(res, key):
    v = np.asarray(res[f"test_{key}"], dtype=np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        return np.nan, np.nan, 0
    return float(v[ok].mean()), float(v[ok].std()), int((~ok).sum())


#: probe_learnability's default classification and excluded descriptors (applied
#: where the bank has them)
_CLASSIFICATION, _EXCLUDE = ("crys_sys",), ("space_group_num",)


def probe_learnability(estimator, structures, bank=None, cv=5, n_jobs=None,
                       baseline=_DEFAULT_BASELINE, classifier="auto",
                       classification=_CLASSIFICATION, exclude=_EXCLUDE,
                       random_state=0, error_score=np.nan, verbose=0):
    """Train models to predict each descriptor from the structure (paper Fig. 2).

    For each descriptor column of ``bank`` and each model, a clone of the
    model is cross-validated (``sklearn.model_selection.cross_validate``) on
    ``(structures, descriptor values)``; all models and descriptors use the
    same folds.

    Parameters
    ----------
    estimator : regressor, or dict {name: regressor}, or list of regressors
        Structure models to probe (e.g. ``CGCNNRegressor(max_epochs=30)``).
        Names default to the class name without "Regressor".
    structures : sequence of pymatgen Structure, length n
    bank : transformer, pandas DataFrame or None
        Structures -> descriptors, fitted here on all ``structures`` (the
        descriptors are targets, not inputs, so there is nothing to leak);
        default ``DescriptorBank()`` (all descriptors). A DataFrame gives
        precomputed values, one row per structure, one column per descriptor.
    cv : int or splitter, default 5
        Folds; an int means ``KFold(cv, shuffle=True, random_state)``.
    n_jobs : int or None
        Passed to ``cross_validate``: folds of one descriptor run in
        parallel (any joblib backend via ``joblib.parallel_config``).
    baseline : estimator, None or "default"
        Composition-only reference model, reported as model
        ``"composition"``; "default" is
        ``CompositionBaseline(random_state=random_state)``, None skips it.
    classifier : "auto", classifier, dict {name: classifier} or None
        Models for the classification probes (``classification``):
        "auto" derives each model's classifier counterpart with
        :func:`classifier_counterpart` (CGCNNRegressor -> CGCNNClassifier,
        CompositionBaseline -> CompositionBaselineClassifier); a model with
        no counterpart gets a note. A single classifier applies to the first
        model. None skips classification probes.
    classification : sequence of str
        Descriptors probed as classes with accuracy (the crystal system,
        as in the paper's Fig. 2c).
    exclude : sequence of str
        Descriptors not probed (default: the space group number, which the
        paper does not probe and which is categorical).
    random_state : int or None
        Seeds the default folds and the default baseline.
    error_score : float or "raise"
        ``cross_validate``'s: a fold whose fit fails scores NaN (counted in
        ``note``) or raises.
    verbose : int
        1 prints one line per descriptor and model.

    Returns
    -------
    pandas.DataFrame
        One row per (descriptor, model), descriptors in bank order, columns
        :data:`PROBE_COLUMNS`: ``task`` ("regression"/"classification");
        ``r2`` and ``r2_std`` (mean and population std over folds), ``mae``
        (descriptor units), ``mae_mad`` (MAE / MAD, lower is better),
        ``accuracy``/``accuracy_std`` for classification rows; ``n_samples``
        structures used (rows with NaN descriptor values are dropped);
        ``note`` explains NaN metrics (constant descriptor, failed folds,
        single class) and dropped rows.

    Notes
    -----
    A descriptor constant on the data (e.g. ``natoms`` of a set of 5-atom
    perovskites) has no defined R2; it gets NaN metrics and a note instead
    of being trained on. Folds are not stratified, so a classification fold
    may miss rare classes (the accuracy still counts them as errors).
    """
    import pandas as pd
    from sklearn.metrics import make_scorer, mean_absolute_error

    from .metrics import mae_mad_score

    structures = list(structures)
    if not structures:
        raise ValueError("structures is empty")
    models = _models(estimator)
    if baseline is _DEFAULT_BASELINE or (isinstance(baseline, str) and baseline == "default"):
        from .baselines import CompositionBaseline
        baseline = CompositionBaseline(random_state=random_state)
    if baseline is not None:
        if "composition" in models:
            raise ValueError("a model is named 'composition', the baseline's name; rename it")
        models["composition"] = baseline

    classifiers = {}
    if classifier is not None:
        if isinstance(classifier, str):
            if classifier != "auto":
                raise ValueError(f"classifier must be 'auto', an estimator, a dict or None, "
                                 f"got {classifier!r}")
            for name, est in models.items():
                try:
                    classifiers[name] = classifier_counterpart(est)
                except TypeError as exc:
                    classifiers[name] = exc
        elif isinstance(classifier, dict):
            classifiers = dict(classifier)
        else:
            classifiers[next(iter(models))] = classifier

    values, names = _descriptor_table(bank, structures)
    # one name as a str: "c" in "crys_sys" would be a substring test
    classification, exclude = (tuple([v] if isinstance(v, str) else v or ())
                               for v in (classification, exclude))
    defaults = {"classification": _CLASSIFICATION, "exclude": _EXCLUDE}
    for arg, given in (("classification", classification), ("exclude", exclude)):
        # the defaults apply where the bank has them; a name given must be there
        unknown = [d for d in given if d not in names and given != defaults[arg]]
        if unknown:  # a misspelt name would silently probe as regression / not exclude
            raise ValueError(f"{arg} names {unknown}, not descriptors of the bank; its "
                             f"descriptors: {list(names)}")
    splitter = _splitter(cv, random_state)
    n_folds = splitter.get_n_splits()
    X = structures
    reg_scoring = {
        "r2": "r2",
        "mae": make_scorer(mean_absolute_error),
        "mae_mad": make_scorer(mae_mad_score),
    }
    rows = []
    for j, desc in enumerate(names):
        if desc in exclude:
            continue
        y_all = values[:, j]
        keep = np.isfinite(y_all)
        dropped = int((~keep).sum())
        base_note = f"{dropped} structure(s) with NaN dropped" if dropped else ""
        Xd = [X[i] for i in np.flatnonzero(keep)] if dropped else X
        y = y_all[keep]
        is_cls = desc in classification
        task = "classification" if is_cls else "regression"
        for name, est in models.items():
            note = base_note

            def done(**kw):
                rows.append(_row(desc, name, task, len(y), n_folds, note, **kw))
                if verbose:
                    r = rows[-1]
                    metric = (f"acc {r['accuracy']:.3f}" if is_cls
                              else f"R2 {r['r2']:.3f} MAE/MAD {r['mae_mad']:.3f}")
                    with verbose_logging(verbose):
                        _log.info(f"[probe] {desc:24s} {name:12s} {metric} {r['note']}")

            if len(y) < n_folds:
                note = "; ".join(filter(None, [note, f"only {len(y)} finite values"]))
                done()
                continue
            if is_cls:
                if not classifiers:
                    continue
                clf = classifiers.get(name)
                if clf is None or isinstance(clf, Exception):
                    note = "; ".join(filter(None, [note, f"no classifier: {clf}" if clf
                                                   else "no classifier given"]))
                    done()
                    continue
                labels = y.astype(np.int64) if np.allclose(y, np.round(y)) else y
                if len(np.unique(labels)) < 2:
                    note = "; ".join(filter(None, [note, f"single class {labels[0]!r} on the "
                                                   "data; accuracy undefined"]))
                    done()
                    continue
                res = _cv(clone(clf), Xd, labels, splitter, "accuracy", n_jobs, error_score)
                res = {"test_accuracy": res["test_score"]}
                acc, acc_std, failed = _stats(res, "accuracy")
                if failed:
                    note = "; ".join(filter(None, [note, f"{failed} fold(s) failed"]))
                done(accuracy=acc, accuracy_std=acc_std)
                continue
            spread = np.ptp(y)
            if spread <= 1e-9 * max(np.abs(y).max(), 1.0):
                note = "; ".join(filter(None, [note, f"constant on the data (= {y[0]:.6g}); "
                                               "R2 undefined, not trained"]))
                done()
                continue
            res = _cv(clone(est), Xd, y, splitter, reg_scoring, n_jobs, error_score)
            r2, r2_std, failed = _stats(res, "r2")
            mae, _, _ = _stats(res, "mae")
            mm, _, _ = _stats(res, "mae_mad")
            if failed:
                note = "; ".join(filter(None, [note, f"{failed} fold(s) failed or undefined"]))
            done(r2=r2, r2_std=r2_std, mae=mae, mae_mad=mm)
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def representation_importance(estimator, structures, y, bank=None, fit=True, forest=None,
                              random_state=0, n_jobs=None):
    """Random-forest importance of learned vs. descriptor features (paper Fig. 4).

    The features of each structure are the model's pooled representation
    (``estimator.transform``, the vector before the head; for a
    descriptor-hybridized model, before the descriptors are appended)
    followed by the descriptors; a random forest is fitted on them to
    predict ``y`` and its impurity-based importances are returned.

    Parameters
    ----------
    estimator : skcrystal estimator
        Fitted on ``(structures, y)`` here (a clone; ``fit=True``) or
        already fitted (``fit=False``, e.g. on a training split).
    structures : sequence of pymatgen Structure, length n
    y : array-like, shape (n,)
        The property (regression, or labels for a classifier estimator).
    bank : transformer, pandas DataFrame or None
        Descriptors; None uses the estimator's own fitted ``descriptors_``
        for a hybrid model and ``DescriptorBank()`` otherwise.
    fit : bool, default True
    forest : estimator or None
        Model whose ``feature_importances_`` are read; default
        ``RandomForest{Regressor,Classifier}(n_estimators=200)``.
    random_state : int or None
        Seeds the default forest.
    n_jobs : int or None
        Trees in parallel (default forest).

    Returns
    -------
    pandas.DataFrame
        Columns ``feature`` ("learned_0", ... then descriptor names),
        ``group`` ("learned" / "descriptor"), ``importance`` (sums to 1),
        ``rank`` (1 = most important); rows sorted by importance. The
        fitted estimator and forest are in ``df.attrs["estimator"]`` and
        ``df.attrs["forest"]``; ``df.groupby("group").importance.sum()``
        gives the paper's Fig. 4d ratio.
    """
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    structures = list(structures)
    y = np.asarray(y)
    if len(y) != len(structures):
        raise ValueError(f"structures and y have different lengths: {len(structures)} "
                         f"vs {len(y)}")
    est = clone(estimator).fit(structures, y) if fit else estimator
    learned = np.asarray(est.transform(structures), dtype=np.float64)

    if bank is None and getattr(est, "descriptors_", None) is not None:
        D = np.asarray(est.descriptors_.transform(structures), dtype=np.float64)
        names = list(getattr(est, "descriptor_names_", [])) or [
            f"descriptor_{i}" for i in range(D.shape[1])]
        names = names[:D.shape[1]]
    else:
        D, names = _descriptor_table(bank, structures)
    F = np.hstack([learned, D])
    features = [f"learned_{i}" for i in range(learned.shape[1])] + names
    groups = ["learned"] * learned.shape[1] + ["descriptor"] * len(names)
    if forest is None:
        cls = RandomForestClassifier if is_classifier(est) else RandomForestRegressor
        forest = cls(n_estimators=200, random_state=random_state, n_jobs=n_jobs)
    else:
        forest = clone(forest)
    # scikit-learn forests accept NaN features (failed descriptors) natively
    forest.fit(F, y)
    imp = np.asarray(forest.feature_importances_, dtype=np.float64)
    df = pd.DataFrame({"feature": features, "group": groups, "importance": imp})
    df = df.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    df.attrs["estimator"] = est
    df.attrs["forest"] = forest
    return df

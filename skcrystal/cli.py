"""The ``skcrystal`` command line: fit, predict and cross-validate from files.

For users of the reference codes' ``main.py`` / ``predict.py``::

    skcrystal fit DATA --model cgcnn [--target COL] [--param KEY=VALUE ...] --out model.pkl
    skcrystal predict model.pkl DATA [--out predictions.csv]
    skcrystal cv DATA --model cgcnn [--target COL] --folds 5 [--param KEY=VALUE ...]
    skcrystal models

``DATA`` is anything :func:`skcrystal.datasets.load` reads (a CGCNN or
ALIGNN folder, a CSV of CIF strings, a matbench ``json.gz``, an mlearn
JSON); ``predict`` also reads structures without targets (a CSV without
the target column, an ``id_prop.csv`` with ids only, a folder of CIF /
POSCAR files, a single structure file).

Conventions: results go to stdout (one summary line, a CSV, a table),
progress (stage lines with timings, the per-epoch table) to stderr, so
stdout stays parseable; ``--quiet`` silences progress. An error is one
line ``skcrystal: error: ...`` with exit code 2 for usage and input errors
(bad option, missing file, unknown model or column, invalid structure) and
1 for anything else; ``--debug`` shows the traceback instead. See
``docs/cli.md``.

Models are looked up by name in the model registry
(:mod:`skcrystal.estimators.registry`); ``--model package.module:Class``
uses any estimator class.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import importlib
import re
import shlex
import sys
import time
from pathlib import Path

__all__ = ["main", "get_estimator_class", "parse_param", "build_parser"]

TASKS = ("regression", "classification")

# estimator parameters given as strings that name a class
_CLASS_PARAMS = {"optimizer": "torch.optim", "criterion": "torch.nn", "module": None}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CLIError(Exception):
    """An error in the user's input (exit code 2)."""


# ---------------------------------------------------------------- progress
class _Progress:
    """Stage lines with timings on stderr (nothing when quiet)."""

    def __init__(self, quiet=False, stream=None):
        self.quiet = quiet
        self.stream = stream

    def say(self, msg):
        if not self.quiet:
            print(msg, file=self.stream or sys.stderr, flush=True)

    @contextlib.contextmanager
    def stage(self, msg):
        """Print ``msg...`` before the block and ``done in X s`` after."""
        self.say(f"{msg}...")
        t0 = time.perf_counter()
        yield
        self.say(f"  done in {_fmt_seconds(time.perf_counter() - t0)}")


def _fmt_seconds(s):
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


# ---------------------------------------------------------------- models
def get_estimator_class(model, task="regression"):
    """Resolve a model name to its estimator class.

    Parameters
    ----------
    model : str
        A registered model name (case-insensitive, see ``skcrystal models``),
        or ``package.module:ClassName`` for any scikit-learn-style estimator
        class (``task`` is then ignored).
    task : {"regression", "classification"}

    Returns
    -------
    type

    Raises
    ------
    CLIError
        Unknown name (with the closest registered one), or an import path
        that does not resolve.
    """
    if task not in TASKS:
        raise CLIError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if ":" in model:
        module_name, _, cls_name = model.partition(":")
        return _import_attr(module_name, cls_name, f"--model {model}", registered=False)
    from skcrystal.estimators import registry
    try:
        spec = registry.get(model)
    except KeyError as exc:
        raise CLIError(f"{exc.args[0]} (or package.module:ClassName)") from None
    try:
        return spec.estimator_class(task)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _import_attr(module_name, attr, what, registered=True):
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            if not registered:
                raise CLIError(f"{what}: cannot import module {module_name}") from None
            raise CLIError(f"{what} is not available in this installation: module "
                           f"{module_name} does not exist (yet)") from None
        raise CLIError(f"{what} needs the package {exc.name!r}, which is not "
                       f"installed ({module_name} failed to import)") from None
    except ImportError as exc:
        raise CLIError(f"{what}: importing {module_name} failed: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CLIError(f"{what}: {module_name} has no class {attr}") from None


# ---------------------------------------------------------------- parameters
def parse_param(text):
    """Parse one ``--param KEY=VALUE``.

    ``VALUE`` is read as a Python literal (``50``, ``1e-3``, ``True``,
    ``None``, ``'sum'``, ``[64, 32]``) and kept as a string when it is not
    one (``sum``).

    Returns
    -------
    (str, object)

    Raises
    ------
    CLIError
        No ``=``, or a key that is not a parameter name.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.match(key):
        raise CLIError(f"--param expects KEY=VALUE (e.g. --param max_epochs=50 or "
                       f"--param module__n_conv=4), got {text!r}")
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = raw
    return key, value


def _resolve_class_param(key, value):
    """``optimizer=SGD`` / ``criterion=torch.nn.L1Loss`` -> the class."""
    if key not in _CLASS_PARAMS or not isinstance(value, str):
        return value
    default_module = _CLASS_PARAMS[key]
    if ":" in value or "." in value:
        module_name, _, attr = value.replace(":", ".").rpartition(".")
    elif default_module:
        module_name, attr = default_module, value
    else:
        raise CLIError(f"--param {key}={value}: give the class as package.module.Class")
    return _import_attr(module_name, attr, f"--param {key}={value}", registered=False)


def _estimator_params(args, est_cls):
    """Parameters for ``est_cls`` from --param and the shortcut options."""
    params = {}
    for text in args.param or []:
        key, value = parse_param(text)
        if key in params and params[key] != value:
            raise CLIError(f"--param {key} given twice ({params[key]!r} and {value!r})")
        params[key] = _resolve_class_param(key, value)
    shortcuts = {"max_epochs": ("--epochs", args.epochs), "lr": ("--lr", args.lr),
                 "batch_size": ("--batch-size", args.batch_size),
                 "random_state": ("--seed", args.seed), "n_jobs": ("--n-jobs", args.n_jobs)}
    for key, (flag, value) in shortcuts.items():
        if value is None:
            continue
        if key in params and params[key] != value:
            raise CLIError(f"{flag} {value} conflicts with --param {key}={params[key]!r}")
        params[key] = value
    params.setdefault("verbose", 0 if args.quiet else 1)
    _check_param_names(est_cls, params)
    return params


def _check_param_names(est_cls, params):
    """Unknown parameter names as one line, before the estimator sees them."""
    try:
        proto = est_cls()
        valid = set(proto.get_params(deep=False))
        # module/criterion/optimizer join prefixes_ only once initialized
        prefixes = ["module", "criterion", "optimizer"] + [
            p for p in getattr(proto, "prefixes_", []) if p not in ("module", "criterion",
                                                                     "optimizer")]
    except Exception:  # an estimator that cannot be built bare: let it judge
        return
    for key in params:
        prefix = key.split("__", 1)[0] if "__" in key else None
        if key in valid or (prefix is not None and prefix in prefixes):
            continue
        candidates = sorted(valid) + [p + "__" for p in prefixes]
        close = difflib.get_close_matches(key, candidates, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise CLIError(f"--param {key}: {est_cls.__name__} has no parameter {key!r}; "
                       f"{hint}prefixed parameters start with one of "
                       f"{', '.join(p + '__' for p in prefixes)}")
    # module__x / optimizer__x / criterion__x against the class they go to,
    # so a typo fails now rather than after loading data and building graphs
    for prefix in ("module", "optimizer", "criterion"):
        target = params.get(prefix, getattr(proto, prefix, None))
        names = _init_arg_names(target)
        if names is None:
            continue
        for key in params:
            head, _, rest = key.partition("__")
            if head == prefix and rest and "__" not in rest and rest not in names:
                close = difflib.get_close_matches(rest, sorted(names), n=1)
                hint = f" (did you mean {prefix}__{close[0]}?)" if close else ""
                raise CLIError(f"--param {key}: {getattr(target, '__name__', target)} has "
                               f"no parameter {rest!r}{hint}; it takes "
                               f"{', '.join(sorted(names))}")


def _init_arg_names(cls):
    """Keyword names ``cls(...)`` accepts, or None when it takes **kwargs."""
    import inspect
    if not isinstance(cls, type):
        return None
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())[1:]
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


# ---------------------------------------------------------------- data
def _n_jobs_kw(args):
    return {} if args.n_jobs is None else {"n_jobs": args.n_jobs}


def _target_arg(args):
    if not args.target:
        return None
    return args.target[0] if len(args.target) == 1 else list(args.target)


def _target_names(target, y):
    import numpy as np
    if target is not None:
        return [target] if isinstance(target, str) else list(target)
    return ["target"] if np.ndim(y) == 1 else [f"target_{k}" for k in range(y.shape[1])]


def _load_training_data(args, progress):
    """(structures, y, target names) through skcrystal.datasets.load."""
    from skcrystal.datasets import load

    path = Path(args.data)
    if not path.exists():
        raise CLIError(f"data not found: {path}")
    target = _target_arg(args)
    with progress.stage(f"loading {path}"):
        structures, y = load(path, target=target, **_n_jobs_kw(args))
    names = _target_names(target, y)
    progress.say(f"  {len(structures)} structures, target {', '.join(names)}")
    if len(structures) == 0:
        raise CLIError(f"{path} holds no structures")
    return structures, y, names


def _check_targets_for_task(y, names, task):
    import numpy as np
    y = np.asarray(y)
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise CLIError(f"target {', '.join(names)} is not numeric (e.g. {y.ravel()[0]!r}); "
                           "for labels use --task classification")
        return y
    if y.ndim != 1:
        raise CLIError(f"--task classification needs one target column, got {len(names)}: "
                       f"{names}")
    return y


def _prepare_graphs(est, structures, progress, data):
    """Validate structures and build their graphs (and extras) into the cache.

    The estimator's ``fit``/``predict`` then find every graph in the
    (content-keyed) cache, so this costs nothing extra and shows where the
    time goes. Large inputs go through ``est.prepare`` in chunks to report
    a rate.
    """
    if not callable(getattr(est, "prepare", None)):
        return  # not a graph estimator (--model package.module:Class)
    n = len(structures)
    desc = (f"radius {getattr(est, 'radius', '?')} Å, max_neighbors "
            f"{getattr(est, 'max_neighbors', '?')}")
    t0 = time.perf_counter()
    progress.say(f"checking {n} structures and building their graphs ({desc}, "
                 f"n_jobs={getattr(est, 'n_jobs', None)})...")
    step = n if n <= 2000 else max(1000, -(-n // 10))
    for start in range(0, n, step):
        stop = min(start + step, n)
        try:
            est.prepare(structures[start:stop])
        except (ValueError, TypeError) as exc:
            if step == n:
                raise
            # prepare numbers the chunk from 0; say where the chunk starts
            raise CLIError(f"structures {start}-{stop - 1} of {data} (positions in "
                            f"the message count from {start}): {_first_line(exc)}") from exc
        if step < n:
            dt = time.perf_counter() - t0
            progress.say(f"  {stop}/{n} graphs, {stop / max(dt, 1e-9):.0f} structures/s")
    progress.say(f"  done in {_fmt_seconds(time.perf_counter() - t0)}")


def _read_prediction_data(path, args, progress):
    """(ids, structures, frame of the data's value columns) for predict.

    Targets are optional: anything :func:`skcrystal.datasets.load_structures`
    reads.
    """
    from skcrystal.datasets import load_structures

    path = Path(path)
    if not path.exists():
        raise CLIError(f"data not found: {path}")
    with progress.stage(f"loading {path}"):
        frame = load_structures(path, cif_column=args.cif_column, id_column=args.id_column,
                                as_frame=True, **_n_jobs_kw(args))
    progress.say(f"  {len(frame)} structures")
    if len(frame) == 0:
        raise CLIError(f"{path} holds no structures")
    return frame["id"].tolist(), list(frame["structure"]), frame


# ---------------------------------------------------------------- model files
def _check_out(path):
    """Fail before the long work when --out cannot be written."""
    if path in (None, "-"):
        return
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"--out {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise CLIError(f"--out {path}: folder {path.parent} does not exist")


def _save_model(est, path, metadata):
    import pickle

    est.cli_metadata_ = metadata
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(est, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def load_model(path):
    """Load a model saved by ``skcrystal fit`` (or any pickled estimator).

    Returns
    -------
    (estimator, dict)
        The estimator and its metadata (``{}`` when it was pickled outside
        the command line).
    """
    import pickle

    from skcrystal import pretrained

    # a reference CGCNN checkpoint (.pth.tar) or the name of a shipped one
    if pretrained.is_checkpoint_reference(path):
        try:
            est = pretrained.load(str(path)) if str(path) in pretrained.available() \
                else pretrained.load_cgcnn_checkpoint(path)
        except (OSError, ValueError) as exc:
            raise CLIError(str(exc)) from None
        info = est.checkpoint_info_
        target = (" ".join(pretrained.describe(info["name"])[1:]) if "name" in info
                  else info["args"].get("data_options", ["?"])[-1])
        return est, {"model": f"reference CGCNN checkpoint {path}", "target": target,
                     "n_train": info["args"].get("train_size", "?"),
                     "task": info["args"].get("task", "regression"),
                     "reference_checkpoint": True}
    path = Path(path)
    if not path.exists():
        raise CLIError(f"model file not found: {path}")
    if path.is_dir():
        raise CLIError(f"model file expected, got a folder: {path}")
    try:
        with open(path, "rb") as fh:
            est = pickle.load(fh)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as exc:
        raise CLIError(f"{path} is not a model saved by skcrystal fit "
                       f"({type(exc).__name__}: {exc})") from None
    if not hasattr(est, "predict"):
        raise CLIError(f"{path} holds a {type(est).__name__}, not an estimator")
    return est, dict(getattr(est, "cli_metadata_", {}) or {})


# ---------------------------------------------------------------- commands
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _PlainWriter:
    """A text stream that drops ANSI colour codes (for logs and pipes)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        return self.stream.write(_ANSI.sub("", text))

    def flush(self):
        self.stream.flush()


@contextlib.contextmanager
def _stdout_to_stderr():
    """skorch prints its epoch table to stdout; keep stdout for results.

    Colours (skorch's best-so-far highlighting) are kept on a terminal and
    dropped when stderr goes to a file.
    """
    err = sys.stderr
    isatty = getattr(err, "isatty", None)
    target = err if (isatty is not None and isatty()) else _PlainWriter(err)
    with contextlib.redirect_stdout(target):
        yield


def _score_line(task, y_true, y_pred):
    import numpy as np
    from sklearn.metrics import accuracy_score, mean_absolute_error
    if task == "classification":
        return "accuracy", float(accuracy_score(y_true, y_pred))
    return "MAE", float(mean_absolute_error(np.asarray(y_true, dtype=float), y_pred))


def _make_estimator(args):
    est_cls = get_estimator_class(args.model, args.task)
    params = _estimator_params(args, est_cls)
    try:
        return est_cls(**params), params
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid parameters for {est_cls.__name__}: "
                       f"{_first_line(exc)}") from exc


def cmd_fit(args, progress):
    import numpy as np

    import skcrystal

    _check_out(args.out)
    est, params = _make_estimator(args)
    structures, y, names = _load_training_data(args, progress)
    y = _check_targets_for_task(y, names, args.task)
    _prepare_graphs(est, structures, progress, args.data)
    t0 = time.perf_counter()
    progress.say(f"training {type(est).__name__} on {len(structures)} structures"
                 f" ({getattr(est, 'max_epochs', '?')} epochs)...")
    with _stdout_to_stderr():
        est.fit(structures, y)
    fit_time = time.perf_counter() - t0
    progress.say(f"  done in {_fmt_seconds(fit_time)}")
    metric, value = _score_line(args.task, y, est.predict(structures))
    if args.task == "classification":
        values, counts = np.unique(y, return_counts=True)
        baseline = float(counts.max() / counts.sum())
        base_name = "majority"
    else:
        yf = np.asarray(y, dtype=float)
        baseline = float(np.mean(np.abs(yf - yf.mean(axis=0))))
        base_name = "mean predictor"
    metadata = {
        "model": args.model, "task": args.task, "estimator": type(est).__name__,
        "target": names[0] if len(names) == 1 else names, "targets": names,
        "data": str(Path(args.data).resolve()), "n_train": len(structures),
        "params": {k: (v if isinstance(v, (int, float, str, bool, list, tuple,
                                           dict, type(None))) else repr(v))
                   for k, v in params.items()},
        "skcrystal_version": skcrystal.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_" + metric.lower(): value, "fit_seconds": round(fit_time, 2),
    }
    _save_model(est, args.out, metadata)
    print(f"{args.model} {args.task} on {len(structures)} structures "
          f"(target {', '.join(names)}): train {metric} {value:.4g} "
          f"({base_name} {baseline:.4g}), {_fmt_seconds(fit_time)}; saved {args.out}",
          flush=True)
    return 0


def cmd_predict(args, progress):
    import numpy as np
    import pandas as pd

    _check_out(args.out)
    est, meta = load_model(args.model_file)
    progress.say(f"model: {type(est).__name__}"
                 + (f" ({meta.get('model')}, target {meta.get('target')}, "
                    f"trained on {meta.get('n_train')} structures)" if meta else ""))
    if args.n_jobs is not None and hasattr(est, "n_jobs"):
        est.n_jobs = args.n_jobs
    ids, structures, frame = _read_prediction_data(args.data, args, progress)
    if meta.get("reference_checkpoint"):
        # the reference predict.py names a structure by its CIF file without .cif
        ids = [i[:-4] if isinstance(i, str) and i.endswith(".cif") else i for i in ids]
    # the true targets, when the data has them (reference predict.py does this)
    names = meta.get("targets") or []
    truth = _truth_columns(frame, names, args, len(ids))
    _prepare_graphs(est, structures, progress, args.data)
    is_clf = hasattr(est, "classes_") or meta.get("task") == "classification"
    with progress.stage(f"predicting {len(structures)} structures"), _stdout_to_stderr():
        pred = np.asarray(est.predict(structures))
        proba = est.predict_proba(structures) if is_clf and hasattr(est, "predict_proba") \
            else None
    out = pd.DataFrame({"id": ids})
    for name, values in truth.items():
        out[name] = values
    if pred.ndim == 1:
        out["prediction"] = pred
    else:
        cols = names if len(names) == pred.shape[1] else [str(k) for k in range(pred.shape[1])]
        for k, name in enumerate(cols):
            out[f"prediction_{name}"] = pred[:, k]
    if proba is not None:
        for k, cls in enumerate(est.classes_):
            out[f"proba_{cls}"] = proba[:, k]
    if args.out in (None, "-"):
        out.to_csv(sys.stdout, index=False)
    else:
        out.to_csv(args.out, index=False)
        progress.say(f"wrote {len(out)} rows to {args.out}")
    if truth and len(truth) == (1 if pred.ndim == 1 else pred.shape[1]):
        y_true = np.column_stack(list(truth.values()))
        y_true = y_true[:, 0] if pred.ndim == 1 else y_true
        try:
            metric, value = _score_line("classification" if is_clf else "regression",
                                        y_true, pred)
            progress.say(f"{metric} against the targets in {args.data}: {value:.4g}")
        except (TypeError, ValueError):
            pass  # targets of another kind (dummy ids...): nothing to compare
    return 0


def _truth_columns(frame, names, args, n):
    """Target columns present in the prediction data, by name."""
    if frame is None or len(frame) != n:
        return {}
    if args.target:
        missing = [t for t in args.target if t not in frame.columns]
        if missing:
            raise CLIError(f"--target {missing[0]!r} is not a column of {args.data}; "
                           f"columns: {[c for c in frame.columns if c != 'structure']}")
        return {t: frame[t].to_numpy() for t in args.target}
    found = {t: frame[t].to_numpy() for t in names if t in frame.columns}
    if len(found) == len(names) and found:
        return found
    # folder formats name their targets target / target_k
    generic = [c for c in frame.columns if c == "target" or re.fullmatch(r"target_\d+", str(c))]
    return {c: frame[c].to_numpy() for c in generic}


def cmd_cv(args, progress):
    import numpy as np
    from sklearn.base import clone
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.model_selection import KFold, StratifiedKFold

    if args.folds < 2:
        raise CLIError(f"--folds must be at least 2, got {args.folds}")
    est, _ = _make_estimator(args)
    structures, y, names = _load_training_data(args, progress)
    y = _check_targets_for_task(y, names, args.task)
    n = len(structures)
    if not 2 <= args.folds <= n:
        raise CLIError(f"--folds must be between 2 and the number of structures ({n}), "
                       f"got {args.folds}")
    seed = 0 if args.seed is None else args.seed
    if args.task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < args.folds:
            raise CLIError(f"--folds {args.folds}: the smallest class has only "
                           f"{counts.min()} structures")
        splitter = StratifiedKFold(args.folds, shuffle=True, random_state=seed)
        dummy, metric, base_name = DummyClassifier(strategy="most_frequent"), "accuracy", "majority"
    else:
        splitter = KFold(args.folds, shuffle=True, random_state=seed)
        dummy, metric, base_name = DummyRegressor(strategy="mean"), "MAE", "mean predictor"
    _prepare_graphs(est, structures, progress, args.data)
    X = np.empty(n, dtype=object)
    X[:] = structures
    scores, base = [], []
    print(f"{args.folds}-fold CV of {args.model} ({args.task}) on {n} structures, "
          f"target {', '.join(names)}", flush=True)
    print(f"{'fold':>4}  {'n_train':>7}  {'n_test':>6}  {metric:>10}  {base_name:>14}",
          flush=True)
    for k, (train, test) in enumerate(splitter.split(X, y if args.task ==
                                                     "classification" else None)):
        t0 = time.perf_counter()
        progress.say(f"fold {k + 1}/{args.folds}: training on {len(train)} structures...")
        model = clone(est)
        with _stdout_to_stderr():
            model.fit(list(X[train]), y[train])
            pred = model.predict(list(X[test]))
        _, score = _score_line(args.task, y[test], pred)
        d = clone(dummy).fit(np.zeros((len(train), 1)), y[train])
        _, b = _score_line(args.task, y[test], d.predict(np.zeros((len(test), 1))))
        scores.append(score)
        base.append(b)
        progress.say(f"  fold {k + 1} done in {_fmt_seconds(time.perf_counter() - t0)}")
        print(f"{k + 1:>4}  {len(train):>7}  {len(test):>6}  {score:>10.4g}  {b:>14.4g}",
              flush=True)
    s, b = np.array(scores), np.array(base)
    print(f"mean {metric}: {s.mean():.4g} ± {s.std():.4g}   "
          f"{base_name}: {b.mean():.4g} ± {b.std():.4g}", flush=True)
    return 0


def cmd_matbench(args, progress):
    """The matbench protocol on DATA's fixed folds (see skcrystal.benchmarks.matbench)."""
    from skcrystal.benchmarks.matbench import run_matbench

    if args.task != "regression":
        raise CLIError("matbench runs regression tasks only")
    est, _ = _make_estimator(args)
    command = ["skcrystal", "matbench", args.data, "--model", args.model]
    for p in args.param or []:
        command += ["--param", p]
    for flag, value in (("--epochs", args.epochs), ("--lr", args.lr),
                        ("--batch-size", args.batch_size), ("--seed", args.seed),
                        ("--label", args.label), ("--out-dir", args.out_dir),
                        ("--max-structures", args.max_structures)):
        if value is not None:
            command += [flag, str(value)]
    command += ["--folds", *map(str, args.folds)] if args.folds else []
    with _stdout_to_stderr():
        res = run_matbench(args.data, est, folds=args.folds, out_dir=args.out_dir,
                           resume=not args.no_resume, label=args.label,
                           fold_file=args.fold_file, target=_target_arg(args),
                           max_structures=args.max_structures,
                           command=" ".join(shlex.quote(c) for c in command),
                           verbose=0 if args.quiet else 1)
    progress.say(f"record: {res.path}")
    print(res.row, flush=True)
    return 0


def cmd_models(args, progress):
    from skcrystal.estimators import registry
    for spec in registry.specs():
        clf = spec.classifier.__name__ if spec.classifier else "-"
        print(f"{spec.name:<12} {spec.regressor.__name__} / {clf}  ({spec.paper})")
    return 0


# ---------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors raised instead of printed and exited."""

    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')")


def build_parser():
    """The argparse parser of the ``skcrystal`` command."""
    from skcrystal import __version__
    from skcrystal.datasets._files import _ID_CANDIDATES

    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress on stderr (results on stdout stay)")
    common.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors")
    common.add_argument("--n-jobs", type=int, default=None, metavar="N",
                        help="parallel workers for CIF parsing and graph building "
                             "(estimator n_jobs)")

    training = _Parser(add_help=False)
    training.add_argument("data", metavar="DATA",
                          help="folder (id_prop.csv + CIFs or POSCARs), CSV of CIF "
                               "strings, matbench .json.gz or mlearn .json")
    training.add_argument("--model", default="cgcnn",
                          help="registered model name (see 'skcrystal models') or "
                               "package.module:Class (default: cgcnn)")
    training.add_argument("--target", action="append", metavar="COL",
                          help="target column (CSV, matbench); repeat for several "
                               "targets; folders take theirs from id_prop.csv")
    training.add_argument("--task", choices=TASKS, default="regression",
                          help="regression (default) or classification")
    training.add_argument("--param", action="append", metavar="KEY=VALUE",
                          help="estimator parameter, repeatable: --param max_epochs=50 "
                               "--param module__n_conv=4 (values are Python literals, "
                               "else strings)")
    training.add_argument("--epochs", type=int, help="shortcut for --param max_epochs=N")
    training.add_argument("--lr", type=float, help="shortcut for --param lr=X")
    training.add_argument("--batch-size", type=int, help="shortcut for --param batch_size=N")
    training.add_argument("--seed", type=int,
                          help="shortcut for --param random_state=N (cv: also the folds)")

    parser = _Parser(
        prog="skcrystal",
        description="Train and apply crystal graph neural networks on structure files.",
        epilog="Examples:\n"
               "  skcrystal fit data/ --model cgcnn --epochs 50 --out model.pkl\n"
               "  skcrystal fit perovskites.csv --target heat_all --out model.pkl\n"
               "  skcrystal predict model.pkl new.csv --out predictions.csv\n"
               "  skcrystal cv perovskites.csv --target heat_all --folds 5\n"
               "See docs/cli.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"skcrystal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("fit", parents=[training, common], help="train a model and save it",
                       description="Train a model on DATA and save it (pickle) to --out.")
    p.add_argument("--out", "-o", required=True, metavar="MODEL.pkl",
                   help="where to save the fitted model")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", parents=[common], help="predict with a saved model",
                       description="Predict DATA with a model saved by 'skcrystal fit' and "
                                   "write a CSV: id, [true targets,] prediction(s) "
                                   "[, proba_<class>...].")
    p.add_argument("model_file", metavar="MODEL",
                   help="model file from skcrystal fit, a reference CGCNN checkpoint "
                        "(.pth.tar) or a shipped pre-trained model name (e.g. "
                        "formation-energy-per-atom)")
    p.add_argument("data", metavar="DATA",
                   help="folder (id_prop.csv with or without targets, or just CIF/POSCAR "
                        "files), CSV of CIF strings (target column optional), "
                        ".json[.gz] or one structure file")
    p.add_argument("--out", "-o", default="-", metavar="PREDICTIONS.csv",
                   help="output CSV (default: stdout)")
    p.add_argument("--target", action="append", metavar="COL",
                   help="true-target column to copy and score against (default: the "
                        "model's target, when present)")
    p.add_argument("--cif-column", default="cif", help="CSV column of CIF strings (default cif)")
    p.add_argument("--id-column", default=None,
                   help="CSV id column (default: the first of "
                        f"{', '.join(_ID_CANDIDATES)}, else the row number)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("cv", parents=[training, common], help="k-fold cross-validation",
                       description="k-fold cross-validated MAE (accuracy for classification) "
                                   "against the mean-predictor (majority) baseline on the "
                                   "same folds.")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("matbench", parents=[training, common],
                       help="matbench-protocol run, recorded and resumable",
                       description="Fit and score a model on each fixed fold of a task (a "
                                   "matbench json.gz with its fold file, or the perovskites "
                                   "folder), write the record (matbench results layout) and "
                                   "print its RESULTS.md row. Finished folds are skipped on "
                                   "a rerun with the same parameters.")
    p.add_argument("--folds", type=int, nargs="+", metavar="K",
                   help="fold numbers to run (default: every fold the task has)")
    p.add_argument("--out-dir", default="matbench_results", help="record folder")
    p.add_argument("--label", help="model name in the record (default: class name)")
    p.add_argument("--fold-file", default="auto",
                   help="official fold file (default: matbench_<task>_folds.json beside DATA)")
    p.add_argument("--max-structures", type=int, metavar="N",
                   help="first N rows only (quick checks)")
    p.add_argument("--no-resume", action="store_true", help="start a new record")
    p.set_defaults(func=cmd_matbench)

    p = sub.add_parser("models", parents=[common], help="list the known models",
                       description="List the registered models and whether they can be "
                                   "imported.")
    p.set_defaults(func=cmd_models)
    return parser


def _first_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# errors caused by the user's input or options -> exit code 2
_INPUT_ERRORS = (CLIError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                 PermissionError, ValueError, TypeError, KeyError)


def main(argv=None):
    """Run the ``skcrystal`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit code: 0 success, 2 usage or input error, 1 other failure,
        130 interrupted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            raise CLIError("a command is required: fit, predict, cv or models "
                           "(see 'skcrystal --help')")
        progress = _Progress(quiet=args.quiet)
        return args.func(args, progress)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("skcrystal: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            import traceback
            traceback.print_exc()
        code = 2 if isinstance(exc, _INPUT_ERRORS) else 1
        kind = "" if isinstance(exc, (CLIError, ValueError, TypeError)) \
            else f"{type(exc).__name__}: "
        if isinstance(exc, KeyError):
            kind = "missing key "
        print(f"skcrystal: error: {kind}{_first_line(exc)}", file=sys.stderr, flush=True)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

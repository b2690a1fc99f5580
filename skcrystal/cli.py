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
import importlib
import re
import shlex
import sys
import time
from pathlib import Path

__all__ = ["main", "run", "get_estimator_class", "parse_param", "build_parser", "load_model",
           "read_config", "resolve_device"]

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


def read_config(path):
    """Estimator parameters from a JSON or YAML file (``--config``).

    The file holds one mapping ``{name: value}`` of the names ``--param``
    takes (``max_epochs``, ``module__n_conv``, ``optimizer__weight_decay``,
    ``optimizer: SGD``...). YAML needs PyYAML (``.yaml``/``.yml``).

    Returns
    -------
    dict
    """
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"--config {path}: file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise CLIError(f"--config {path}: reading YAML needs PyYAML "
                           "(pip install pyyaml), or write the file as JSON") from None
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CLIError(f"--config {path} is not valid YAML: "
                           f"{_first_line(exc)}") from None
    else:
        import json
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(f"--config {path} is not valid JSON: {exc}") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise CLIError(f"--config {path} must hold a mapping of parameter names to "
                       f"values, got {type(config).__name__}")
    for key in config:
        if not isinstance(key, str) or not _KEY.match(key):
            raise CLIError(f"--config {path}: {key!r} is not a parameter name")
    return config


def _estimator_params(args, est_cls):
    """Parameters for ``est_cls`` from --config, --param and the shortcut options.

    --param overrides --config; a shortcut (--epochs...) that contradicts a
    --param is an error.
    """
    params, given = {}, {}
    config = read_config(args.config) if getattr(args, "config", None) else {}
    for key, value in config.items():
        params[key] = _resolve_class_param(key, value)
    for text in args.param or []:
        key, value = parse_param(text)
        if key in given and given[key] != value:
            raise CLIError(f"--param {key} given twice ({given[key]!r} and {value!r})")
        given[key] = value
        params[key] = _resolve_class_param(key, value)
    shortcuts = {"max_epochs": ("--epochs", args.epochs), "lr": ("--lr", args.lr),
                 "batch_size": ("--batch-size", args.batch_size),
                 "random_state": ("--seed", args.seed), "n_jobs": ("--n-jobs", args.n_jobs)}
    for key, (flag, value) in shortcuts.items():
        if value is None:
            continue
        if key in given and given[key] != value:
            raise CLIError(f"{flag} {value} conflicts with --param {key}={given[key]!r}")
        params[key] = value
    from ._validation import constructor_parameters
    if "verbose" in constructor_parameters(est_cls):  # not every estimator has it
        params.setdefault("verbose", 0 if args.quiet else 1)
    _check_param_names(est_cls, params, {key: flag for key, (flag, value) in shortcuts.items()
                                         if value is not None and key not in given})
    return params


def resolve_device(device):
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without
    a GPU is an error (raised before any data is read)."""
    import torch

    from .inference import _no_gpu
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        why = _no_gpu(device) if device.startswith("cuda") else None
    except (RuntimeError, TypeError):  # torch's "Invalid device string", unnamed
        raise CLIError(f"--device {device}: not a torch device (e.g. cpu, cuda, "
                       "cuda:1)") from None
    if why:
        raise CLIError(f"--device {device}: {why}; use --device cpu or auto")
    return device


def _check_param_names(est_cls, params, flags=None):
    """Unknown parameter names as one line, before the estimator sees them
    (the estimator's own checks, worded for the command line). ``flags``:
    the option that set a parameter (``{"max_epochs": "--epochs"}``)."""
    from ._validation import check_parameter_names
    from .estimators.base import check_prefixed_names, routed_prefixes
    try:
        proto = est_cls()
        prefixes = routed_prefixes(proto)
    except Exception:  # an estimator that cannot be built bare: let it judge
        return
    for key in sorted(params):
        try:
            check_parameter_names(proto, [key], prefixes)
        except ValueError as e:
            option = (flags or {}).get(key)
            raise CLIError(f"{option} sets {e}" if option else f"--param {e}") from None
    # module__x / optimizer__x / ... against the class they go to, so a typo
    # fails now rather than after loading data and building graphs
    if hasattr(proto, "get_params_for"):  # a skorch net
        try:
            check_prefixed_names(est_cls(**params))
        except TypeError as e:
            raise CLIError(f"--param {e}") from None


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


class _Skipped:
    """Inputs dropped by ``--on-error skip``, with why; reported at the end."""

    def __init__(self):
        self.items = []

    def add(self, where, reason):
        self.items.append((str(where), " ".join(str(reason).split())))

    def report(self, log_path, total):
        """Write every skipped input to ``log_path`` and list the first on stderr."""
        if not self.items:
            return
        log_path = Path(log_path)
        with open(log_path, "w", encoding="utf-8") as fh:
            fh.write("input\treason\n")
            for where, reason in self.items:
                fh.write(f"{where}\t{reason}\n")
        n = len(self.items)
        lines = [f"skcrystal: skipped {n} of {total} inputs (--on-error skip); "
                 f"the list with reasons is in {log_path}:"]
        lines += [f"  {where}: {reason}" for where, reason in self.items[:10]]
        if n > 10:
            lines.append(f"  ... and {n - 10} more")
        print("\n".join(lines), file=sys.stderr, flush=True)


def _error_log_path(args):
    if getattr(args, "error_log", None):
        return Path(args.error_log)
    out = getattr(args, "out", None)
    if out not in (None, "-"):
        return Path(str(out) + ".skipped.tsv")
    return Path("skcrystal-skipped.tsv")


class _Data:
    """What the command read from DATA: ids, structures, value columns, and how
    to name an item (its file, or its row of a CSV) in messages."""

    def __init__(self, path, kind, frame):
        self.path, self.kind = Path(path), kind
        self.ids = frame["id"].tolist()
        self.structures = list(frame["structure"])
        self.frame = frame

    def describe(self, i):
        ident = self.ids[i]
        if self.kind == "cgcnn":
            return str(self.path / f"{ident}.cif")
        if self.kind in ("alignn", "files"):
            return str(self.path / str(ident))
        if self.kind == "structure":
            return str(self.path)
        return f"{self.path} (id {ident})"

    def subset(self, keep):
        keep = list(keep)
        frame = self.frame.iloc[keep].reset_index(drop=True)
        return _Data(self.path, self.kind, frame)

    def __len__(self):
        return len(self.ids)


def _read_data(path, args, progress, skipped):
    """:class:`_Data` of ``path`` (any format load_structures reads).

    Files that cannot be parsed are raised (naming the file) or, with
    ``--on-error skip``, recorded in ``skipped``.
    """
    import warnings

    from skcrystal.datasets import SkippedRowsWarning, load_structures
    from skcrystal.datasets._files import _detect_format

    path = Path(path)
    if not path.exists():
        raise CLIError(f"data not found: {path}")
    kind = _detect_format(path)
    on_error = getattr(args, "on_error", "raise")
    with progress.stage(f"loading {path}"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = load_structures(path, cif_column=args.cif_column,
                                    id_column=args.id_column, on_error=on_error,
                                    as_frame=True, **_n_jobs_kw(args))
        except ValueError as exc:
            if "on_error='skip'" in str(exc):
                raise CLIError(str(exc).replace(
                    "pass on_error='skip' to drop unparsable rows",
                    "--on-error skip leaves out what cannot be parsed")) from exc
            raise
    for w in caught:
        if isinstance(w.message, SkippedRowsWarning):
            for row, ident, reason in w.message.skipped:
                if kind in ("cgcnn", "alignn", "files"):
                    where = path / str(ident)
                elif kind == "structure":
                    where = path
                else:
                    where = f"{path} row {row}" + ("" if ident is None else f" (id {ident})")
                skipped.add(where, f"cannot be parsed: {reason}")
        elif not issubclass(w.category, DeprecationWarning):
            progress.say(f"  note: {w.message}")
    data = _Data(path, kind, frame)
    if skipped.items:
        progress.say(f"  {len(data)} structures read, {len(skipped.items)} skipped")
    else:
        progress.say(f"  {len(data)} structures")
    if len(data) == 0:
        raise CLIError(f"{path} holds no structures" +
                       (" that could be read" if skipped.items else ""))
    return data


def _target_columns(data, args):
    """Names of the target columns of ``data`` (--target, else the format's own)."""
    columns = [c for c in data.frame.columns if c not in ("id", "structure")]
    if args.target:
        missing = [t for t in args.target if t not in columns]
        if missing:
            raise CLIError(f"--target {missing[0]!r} is not a column of {data.path}; "
                           f"columns: {columns}")
        return list(args.target)
    if data.kind in ("cgcnn", "alignn"):
        names = [c for c in columns if c == "target" or re.fullmatch(r"target_\d+", c)]
        if names:
            return names
        raise CLIError(f"{data.path}/id_prop.csv has ids only, no target column")
    if data.kind in ("files", "structure"):
        raise CLIError(f"{data.path} has structures but no targets (no id_prop.csv)")
    if data.kind == "json" and len(columns) == 1:
        return columns
    what = "a CSV file" if data.kind == "csv" else "this file"
    raise CLIError(f"--target is required for {what} ({data.path}); columns: {columns}")


def _training_data(est, args, progress):
    """``fit``'s and ``cv``'s data: (:class:`_Data`, y, target names,
    :class:`_Skipped`), read, the targets checked for the task, the
    structures screened with ``est`` and the skipped rows reported. With
    ``--n-jobs`` the graph workers start while the data is read."""
    skipped = _Skipped()
    with _workers_started_early(getattr(est, "n_jobs", None)):
        data, y, names = _load_training_data(args, progress, skipped)
        y = _check_targets_for_task(y, names, args.task)
        data, y = _screen_with_targets(est, data, y, args, progress, skipped)
    skipped.report(_error_log_path(args), len(data) + len(skipped.items))
    return data, y, names, skipped


def _load_training_data(args, progress, skipped):
    """(:class:`_Data`, y, target names); rows with a missing target are skipped
    (``--on-error skip``) or named."""
    import numpy as np

    data = _read_data(args.data, args, progress, skipped)
    names = _target_columns(data, args)
    values = data.frame[names].to_numpy()
    if args.task == "regression":
        import pandas as pd
        boolean = [n for n in names if pd.api.types.is_bool_dtype(data.frame[n])]
        if boolean:  # read as numbers, True/False would be regressed as 1/0
            raise CLIError(f"target {', '.join(boolean)} holds True/False: for classes use "
                           "--task classification (or write the column as numbers to "
                           "regress it)")
        numeric = data.frame[names].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        bad = ~np.isfinite(numeric).all(axis=1)
        if not bad.all():
            values = numeric
        else:  # nothing numeric: _check_targets_for_task says so
            bad = np.zeros(len(values), bool)
    else:
        bad = data.frame[names].isna().any(axis=1).to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)
        if args.on_error == "raise":
            raise CLIError(f"{data.describe(rows[0])}: target {names} is missing or not a "
                           f"number ({data.frame[names].iloc[rows[0]].tolist()}); "
                           f"{len(rows)} such rows; --on-error skip drops them")
        for i in rows:
            skipped.add(data.describe(i), f"target {names} missing or not a number "
                                          f"({data.frame[names].iloc[i].tolist()})")
        keep = np.flatnonzero(~bad)
        data, values = data.subset(keep), values[keep]
        if len(data) == 0:
            raise CLIError(f"{data.path}: no structure has a target")
    y = values[:, 0] if len(names) == 1 else values
    progress.say(f"  target {', '.join(names)}")
    return data, y, names


def _check_targets_for_task(y, names, task):
    import numpy as np
    y = np.asarray(y)
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise CLIError(f"target {', '.join(names)} is not numeric (e.g. {y.ravel()[0]!r}); "
                           "for labels use --task classification")
        return y.astype(float)
    if y.ndim != 1:
        raise CLIError(f"--task classification needs one target column, got {len(names)}: "
                       f"{names}")
    return y


_X0 = re.compile(r"\bX\[0\]\s*")


def _screen(est, data, progress, skipped, on_error, training=False):
    """Validate structures and build their graphs (and extras) into the cache.

    The estimator's ``fit``/``predict`` then find every graph in the
    (content-keyed) cache, so this costs nothing extra and shows where the
    time goes. A structure the estimator refuses (invalid, no neighbour,
    too large...) is named by its file and raised, or skipped with
    ``--on-error skip``. Returns the :class:`_Data` that remains and the
    positions kept.
    """
    if not callable(getattr(est, "prepare", None)):
        # not a graph estimator (--model package.module:Class)
        return data, list(range(len(data)))
    n = len(data)
    structures = data.structures
    desc = (f"radius {getattr(est, 'radius', '?')} Å, max_neighbors "
            f"{getattr(est, 'max_neighbors', '?')}")
    t0 = time.perf_counter()
    progress.say(f"checking {n} structures and building their graphs ({desc}, "
                 f"n_jobs={getattr(est, 'n_jobs', None)})...")
    step = n if n <= 2000 else max(1000, -(-n // 10))
    keep = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        try:
            _prepare(est, structures[start:stop], training)
            keep.extend(range(start, stop))
        except (ValueError, TypeError):
            # one by one, to name (or skip) each structure that fails
            for i in range(start, stop):
                try:
                    _prepare(est, structures[i:i + 1], training)
                except (ValueError, TypeError) as exc:
                    reason = _X0.sub("", _first_line(exc))
                    if on_error == "raise":
                        raise CLIError(f"{data.describe(i)}: {reason} (--on-error skip "
                                       "drops such structures)") from exc
                    skipped.add(data.describe(i), reason)
                    continue
                keep.append(i)
        if step < n:
            dt = time.perf_counter() - t0
            progress.say(f"  {stop}/{n} graphs, {stop / max(dt, 1e-9):.0f} structures/s")
    progress.say(f"  done in {_fmt_seconds(time.perf_counter() - t0)}")
    if not keep:
        raise CLIError(f"no structure of {data.path} could be used")
    return (data, keep) if len(keep) == n else (data.subset(keep), keep)


def _prepare(est, structures, training):
    import inspect
    if training and "training" in inspect.signature(est.prepare).parameters:
        return est.prepare(structures, training=True)
    return est.prepare(structures)


def _screen_with_targets(est, data, y, args, progress, skipped):
    """:func:`_screen` for training data, the targets kept aligned; class labels
    (continuous or missing ones) are checked before the graphs are built."""
    if args.task == "classification":
        from skcrystal._validation import check_targets
        try:
            check_targets(y, classification=True)
        except ValueError as exc:
            raise CLIError(f"--task classification, target of {data.path}: "
                           f"{_first_line(exc)}") from None
    data, keep = _screen(est, data, progress, skipped, args.on_error, training=True)
    return data, y[keep]


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
        return est, _checkpoint_meta(path, est.checkpoint_info_)
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


def _checkpoint_meta(path, info):
    """The metadata of a reference checkpoint (its ``checkpoint_info_``)."""
    from skcrystal import pretrained

    target = (" ".join(pretrained.describe(info["name"])[1:]) if "name" in info
              else info["args"].get("data_options", ["?"])[-1])
    return {"model": f"reference CGCNN checkpoint {path}", "target": target,
            "n_train": info["args"].get("train_size", "?"),
            "task": info["args"].get("task", "regression"),
            "reference_checkpoint": True}


#: ``predict`` on a folder of at least this many structure files starts
#: worker processes by default (measured on 2 cores with a reference
#: checkpoint, whose worker imports no torch and starts on the files while
#: this process loads the model: two processes take as long as one at 300
#: CIFs, 0.94 of it at 600, 0.90 at 1,000, 0.82 at 2,000)
AUTO_WORKERS_MIN_FILES = 1000


def _auto_n_jobs(data, n_items=None):
    """``--n-jobs`` when not given: one process per usable core (at most 8) for
    a folder of at least :data:`AUTO_WORKERS_MIN_FILES` structure files (or
    ``n_items`` CIFs of a CSV), else None (this process)."""
    import os

    from skcrystal.datasets._files import _listed_structure_file

    try:
        n_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n_cores = os.cpu_count() or 1
    if n_items is not None:
        return min(n_cores, 8) if n_cores >= 2 and n_items >= AUTO_WORKERS_MIN_FILES \
            else None
    if n_cores < 2 or not Path(data).is_dir():
        return None
    n_files = 0
    with os.scandir(data) as entries:
        for entry in entries:
            n_files += _listed_structure_file(entry.name)
            if n_files >= AUTO_WORKERS_MIN_FILES:
                return min(n_cores, 8)
    return None


def _early_file_chunks(args, n_jobs, kind, progress):
    """(listing, StartedChunks) of a reference regression checkpoint's
    prediction with workers, else (None, None).

    Its graph parameters and elements are read without torch
    (:func:`skcrystal.pretrained.reference_graph_needs`), so the data is
    listed and its first chunks handed to the workers before this process
    imports torch and loads the weights (about a second and a half, which
    the workers would otherwise spend waiting). ``predict_files`` uses them
    where the loaded model asks for the same graphs and the same files, and
    cancels them otherwise. ``listing``: :func:`_file_listing`'s; a plain
    folder (:func:`_quick_listing`) is listed once, the listing made after
    the chunks are handed over.
    """
    from skcrystal import pretrained

    if (args.device not in (None, "auto", "cpu") or not isinstance(n_jobs, int)
            or n_jobs in (0, 1) or not pretrained.is_checkpoint_reference(args.model_file)):
        return None, None
    needs = pretrained.reference_graph_needs(args.model_file)
    if needs is None:
        return None, None
    from skcrystal.graphs.builder import GraphBuilder
    from skcrystal.graphs.files import _builder_params, start_file_chunks

    quick = _quick_listing(Path(args.data), kind)
    if quick is None:
        listing = _file_listing(args, progress, kind)
        if listing is None:
            return None, None
        files = listing[1]
    else:
        listing, files = None, quick[1]
    if not files:
        return None, None
    params = _builder_params(GraphBuilder(**needs[0]).validate())
    started = start_file_chunks(files, params, needs[1], n_jobs)
    if quick is not None:
        listing = _file_listing(args, progress, kind, quick)
    return listing, started


def _quick_listing(folder, kind):
    """(id_prop.csv read, structure files) of a folder of ``kind`` read
    without pandas (~0.3 s of imports; see
    :func:`skcrystal.datasets._files._id_prop_quick`; the read is None for a
    folder without id_prop.csv): what :func:`_file_listing` reads; None
    where it must judge."""
    from skcrystal.datasets import _files

    if kind == "files":
        return None, _files._folder_structure_files(folder)
    read = _files._id_prop_quick(folder) if kind in ("cgcnn", "alignn") else None
    if read is None:
        return None
    try:
        return read, _files._folder_files(folder, kind, read[1], read[0])
    except FileNotFoundError:  # _file_listing says which
        return None


def _load_predictor(args, device, n_jobs=None):
    """A reference regression checkpoint as a GraphPredictor, or None.

    ``skcrystal predict CHECKPOINT FOLDER`` on the CPU needs neither the
    estimator nor scikit-learn, scipy and skorch (about 1.5 s of imports):
    the module, its graph parameters and target scaling are all it uses
    (see :mod:`skcrystal.inference`). None for everything else (a model
    file from ``skcrystal fit``, a classifier, a GPU): the estimator path.
    """
    from skcrystal import pretrained

    if device != "cpu" or not pretrained.is_checkpoint_reference(args.model_file):
        return None
    try:
        predictor, info = pretrained.load_cgcnn_predictor(args.model_file, n_jobs=n_jobs)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if predictor is None:
        return None
    return predictor, _checkpoint_meta(args.model_file, info)


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
def _workers_started_early(n_jobs, network=False):
    """With ``--n-jobs``, start the worker processes now: they start and
    import (see :func:`skcrystal.graphs.files.prepare_worker`; with
    ``network``, torch and the models too where the workers will run the
    network, see :func:`skcrystal.inference.predict_files`) while this
    process reads the data or loads the model, so the first chunks do not
    wait for them (:func:`skcrystal._parallel.start_workers`).

    Yields a callable that waits until they are ready. On leaving, also
    after an error, their start-up tasks are collected (joblib warns about
    results never collected).
    """
    ready = lambda: None  # noqa: E731
    if isinstance(n_jobs, int) and n_jobs not in (0, 1):
        from skcrystal._parallel import shared_processes, start_workers
        from skcrystal.graphs.files import network_in_workers, prepare_worker

        imports = ("skcrystal.inference", "skcrystal.nn") \
            if network and network_in_workers(shared_processes(n_jobs)[0]) else ()
        ready = start_workers(n_jobs, prepare_worker, imports=imports)
    try:
        yield ready
    finally:
        with contextlib.suppress(Exception):
            ready()


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
    if task != "classification":
        y_true = np.asarray(y_true, dtype=float)
        y_pred = np.asarray(y_pred)
        if y_true.shape == y_pred.shape and y_pred.dtype.kind == "f" and \
                np.isfinite(y_true).all() and np.isfinite(y_pred).all():
            # scikit-learn's mean_absolute_error on valid input (the mean per
            # target, then over targets), without importing it (~1 s)
            return "MAE", float(np.mean(np.mean(np.abs(y_pred - y_true), axis=0)))
    from sklearn.metrics import accuracy_score, mean_absolute_error
    if task == "classification":
        return "accuracy", float(accuracy_score(y_true, y_pred))
    return "MAE", float(mean_absolute_error(y_true, y_pred))


def _folder_atom_init(args, est_cls, params):
    """DATA/atom_init.json (a reference CGCNN folder's atom features), when the
    model takes ``atom_features`` and none was given."""
    data = Path(getattr(args, "data", "") or "")
    table = data / "atom_init.json"
    if not data.is_dir() or not table.is_file() or "module__atom_features" in params:
        return None
    try:
        module = params.get("module", est_cls().module)
    except Exception:  # an estimator that cannot be built bare
        return None
    names = _init_arg_names(module)
    if names is None or "atom_features" not in names:
        return None
    return table


def _make_estimator(args, progress=None):
    """(estimator, params): every parameter checked before any data is read."""
    est_cls = get_estimator_class(args.model, args.task)
    params = _estimator_params(args, est_cls)
    device = getattr(args, "device", None)
    if device is not None and "device" in params and params["device"] != device:
        raise CLIError(f"--device {device} conflicts with --param device={params['device']!r}")
    if "device" in _estimator_param_names(est_cls):
        params["device"] = resolve_device(device or params.get("device") or "auto")
    table = _folder_atom_init(args, est_cls, params)
    if table is not None:
        from skcrystal.atom_features import load_atom_init
        try:
            params["module__atom_features"] = load_atom_init(table)
        except (OSError, ValueError) as exc:
            raise CLIError(f"{table}: {_first_line(exc)}") from None
        if progress is not None:
            progress.say(f"atom features: {table} (the folder's table; "
                         "--param module__atom_features=cgcnn uses the built-in one)")
    try:
        est = est_cls(**params)
        if hasattr(est, "_check_params"):
            est._check_params()
    except (TypeError, ValueError) as exc:
        hint = ""
        if "'max_epochs'" in str(exc):
            hint = " (--epochs N takes a positive number of epochs)"
        raise CLIError(f"invalid parameters for {est_cls.__name__}: "
                       f"{_first_line(exc)}{hint}") from exc
    if table is not None:
        params["module__atom_features"] = f"atom_init.json of {args.data}"
    return est, params


def _estimator_param_names(est_cls):
    try:
        return set(est_cls().get_params(deep=False))
    except Exception:
        return set()


_XI = re.compile(r"\bX\[(\d+)\]")


@contextlib.contextmanager
def _files_in_errors(describe, positions=None):
    """Errors of the estimator name ``X[i]``: name the file instead."""
    try:
        yield
    except ValueError as exc:
        def name(m):
            i = int(m.group(1))
            try:
                return describe(positions[i] if positions is not None else i)
            except IndexError:
                return m.group(0)
        text = _XI.sub(name, str(exc))
        if text == str(exc):
            raise
        raise CLIError(text) from exc


def _check_fracs(args):
    for flag, value in (("--val-frac", args.val_frac), ("--test-frac", args.test_frac)):
        if value is not None and not 0 < value < 1:
            raise CLIError(f"{flag} must be between 0 and 1 (exclusive), got {value}")
    if (args.val_frac or 0) + (args.test_frac or 0) >= 1:
        raise CLIError("--val-frac and --test-frac together leave no training data")
    if args.patience is not None:
        if args.val_frac is None:
            raise CLIError("--patience needs a validation split: add --val-frac")
        if args.patience < 1:
            raise CLIError(f"--patience must be at least 1, got {args.patience}")


def _checkpoint_dir(args):
    return Path(args.checkpoint_dir) if args.checkpoint_dir else Path(str(args.out) + ".ckpt")


def _training_callbacks(est, args, ckdir):
    """Checkpoints (last epoch for --resume; best validation epoch with --val-frac)
    and early stopping, added to the estimator's callbacks."""
    if not hasattr(est, "resume"):
        if args.val_frac or args.resume:
            raise CLIError(f"--val-frac/--resume need a skcrystal estimator, not "
                           f"{type(est).__name__}")
        return
    from skorch.callbacks import EarlyStopping
    from skorch.dataset import ValidSplit

    from skcrystal.estimators.callbacks import Checkpoint

    callbacks = list(est.callbacks or [])
    callbacks.append(("checkpoint_last", Checkpoint.every_epoch(ckdir / "last")))
    if args.val_frac:
        seed = 0 if args.seed is None else args.seed
        est.set_params(train_split=ValidSplit(args.val_frac, stratified=args.task ==
                                              "classification", random_state=seed))
        callbacks.append(("checkpoint_best", Checkpoint(
            monitor="valid_loss_best", dirname=str(ckdir / "best"), f_optimizer=None,
            f_criterion=None, f_history=None, load_best=True)))
        callbacks.append(("early_stopping", EarlyStopping(
            monitor="valid_loss", patience=args.patience or 20)))
    est.set_params(callbacks=callbacks)


def _split_test(data, y, args):
    """(train positions, test positions) for --test-frac (stratified for labels)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(data))
    if not args.test_frac:
        return idx, idx[:0]
    seed = 0 if args.seed is None else args.seed
    try:
        return train_test_split(idx, test_size=args.test_frac, random_state=seed,
                                stratify=y if args.task == "classification" else None)
    except ValueError as exc:
        raise CLIError(f"--test-frac {args.test_frac}: {_first_line(exc)}") from None


def _run_record(args, params, data, n_train, n_test):
    """What must match for --resume to continue the same run."""
    return {"data": str(Path(args.data).resolve()), "model": args.model, "task": args.task,
            "targets": list(args.target or []), "n_structures": len(data),
            "n_train": n_train, "n_test": n_test, "val_frac": args.val_frac,
            "test_frac": args.test_frac, "seed": args.seed,
            "params": {k: repr(v) for k, v in sorted(params.items())
                       if k not in _RESUME_FREE}}


# parameters that may change between a fit and its --resume
_RESUME_FREE = ("verbose", "n_jobs", "device")


def _check_resume(ckdir, record, partial=False):
    import json
    last = ckdir / "last"
    if not (last / "params.pt").is_file() or not (last / "state.json").is_file():
        raise CLIError(f"--resume: no checkpoint in {last} (fit writes one after every "
                       "epoch; give --checkpoint-dir if it was elsewhere)")
    try:
        saved = json.loads((ckdir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CLIError(f"--resume: {ckdir / 'run.json'} is missing or unreadable") from None
    flat = lambda r: {**{k: v for k, v in r.items() if k != "params"},
                      **{f"parameter {k}": v for k, v in r.get("params", {}).items()}}
    then, now = flat(saved), flat(record)
    if partial:
        then = {k: v for k, v in then.items() if k in now or k.startswith("parameter ")}
    diff = [k for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)]
    if diff:
        k = diff[0]
        raise CLIError(f"--resume: this run differs from the checkpointed one in {k} "
                       f"({then.get(k, 'unset')} then, {now.get(k, 'unset')} now); resume "
                       "with the same data and options, or start anew without --resume")


def _prediction_columns(ids, names, truth, pred, est=None, proba=None):
    """The columns of a predictions CSV by name: id, the true targets where
    known, the predictions, the class probabilities."""
    import numpy as np

    out = {"id": ids}
    out.update(truth)
    pred = np.asarray(pred)
    if pred.ndim == 1:
        out["prediction"] = pred
    else:
        cols = names if len(names) == pred.shape[1] else [str(k) for k in range(pred.shape[1])]
        for k, name in enumerate(cols):
            out[f"prediction_{name}"] = pred[:, k]
    if proba is not None:
        for k, cls in enumerate(est.classes_):
            out[f"proba_{cls}"] = proba[:, k]
    return out


def _write_csv(columns, out):
    """``pandas.DataFrame(columns).to_csv(out, index=False)``, byte for byte.

    Where every column is float64 (written as pandas writes them: the
    shortest repr, NaN as an empty cell) or text and whole numbers (their
    ``str``), the file is written with the csv module as pandas does, so
    ``skcrystal predict`` never imports pandas (~0.3 s); other columns
    (booleans, objects...) go through pandas.

    Parameters
    ----------
    columns : dict
        Column name -> values (a list or an array), all of one length.
    out : str, Path or text stream
    """
    import csv
    import os

    import numpy as np

    def plain(values):
        if isinstance(values, np.ndarray):
            return values.dtype == np.float64 or (values.dtype.kind == "U")
        return all(type(v) is str or type(v) is int for v in values)

    if not all(plain(v) for v in columns.values()):
        import pandas as pd
        pd.DataFrame(columns).to_csv(out, index=False)
        return
    cells = []
    for values in columns.values():
        if isinstance(values, np.ndarray) and values.dtype == np.float64:
            text = values.astype(str)  # pandas' own conversion
            text[np.isnan(values)] = ""
            cells.append(text.tolist())
        else:
            cells.append([str(v) for v in values])
    with contextlib.ExitStack() as stack:
        fh = out if hasattr(out, "write") else stack.enter_context(
            open(out, "w", newline="", encoding="utf-8"))
        writer = csv.writer(fh, lineterminator=os.linesep)
        writer.writerow([str(name) for name in columns])
        writer.writerows(zip(*cells))


def _strip_cif(ids):
    """Ids as the reference predict.py writes them: file names without .cif.

    Files whose names differ only there (``x.cif`` and ``x.cif.gz``) keep
    their whole names, so every row's id stays unique.
    """
    from collections import Counter

    out = []
    for i in ids:
        if isinstance(i, str):
            low = i.lower()
            for ext in (".cif.gz", ".cif"):
                if low.endswith(ext):
                    i = i[:-len(ext)]
                    break
        out.append(i)
    counts = Counter(out)
    return [short if counts[short] == 1 else whole for short, whole in zip(out, ids)]


def cmd_fit(args, progress):
    import json

    import numpy as np

    import skcrystal

    _check_out(args.out)
    _check_fracs(args)
    est, params = _make_estimator(args, progress)
    ckdir = _checkpoint_dir(args)
    if args.resume:  # the options, before the data is read
        _check_resume(ckdir, {"params": _run_record(args, params, [], 0, 0)["params"]},
                      partial=True)
    data, y, names, skipped = _training_data(est, args, progress)
    train, test = _split_test(data, y, args)
    X_train = [data.structures[i] for i in train]
    y_train = y[train]
    _training_callbacks(est, args, ckdir)
    record = _run_record(args, params, data, len(train), len(test))
    if args.resume:
        _check_resume(ckdir, record)
    elif hasattr(est, "resume"):
        ckdir.mkdir(parents=True, exist_ok=True)
        (ckdir / "run.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    t0 = time.perf_counter()
    split = f", {args.val_frac:g} of them for validation" if args.val_frac else ""
    where = f"; checkpoints in {ckdir}" if hasattr(est, "resume") else ""
    progress.say(f"{'resuming' if args.resume else 'training'} {type(est).__name__} on "
                 f"{len(train)} structures{split} ({getattr(est, 'max_epochs', '?')} "
                 f"epochs{where})...")
    with _stdout_to_stderr(), _files_in_errors(data.describe, train):
        try:
            if args.resume:
                from skcrystal.estimators.callbacks import Checkpoint
                est.resume(X_train, y_train, Checkpoint.every_epoch(ckdir / "last"))
            else:
                est.fit(X_train, y_train)
        except KeyboardInterrupt:
            if not hasattr(est, "resume"):
                raise
            raise KeyboardInterrupt(
                f"no model written; the checkpoint of the last finished epoch is in "
                f"{ckdir / 'last'}: the same command with --resume goes on from it") from None
    fit_time = time.perf_counter() - t0
    progress.say(f"  done in {_fmt_seconds(fit_time)}")
    epochs = len(getattr(est, "history", []) or [])
    best = None
    if args.val_frac:
        if (ckdir / "best" / "params.pt").is_file():  # also when a resume had nothing left
            est.load_params(f_params=str(ckdir / "best" / "params.pt"))
        losses = [row.get("valid_loss") for row in est.history]
        best = int(np.nanargmin(np.array(losses, dtype=float))) + 1
        progress.say(f"  {epochs} epochs; best validation loss {min(losses):.4g} at epoch "
                     f"{best} (kept{', early stop' if epochs < est.max_epochs else ''})")
    metric, value = _score_line(args.task, y_train, est.predict(X_train))
    baseline, base_name = _baseline(args.task, y_train, y_train)
    test_part = ""
    extra = {}
    if len(test):
        X_test = [data.structures[i] for i in test]
        with _stdout_to_stderr():
            pred = est.predict(X_test)
            is_clf = args.task == "classification" and hasattr(est, "predict_proba")
            proba = est.predict_proba(X_test) if is_clf else None
        _, test_value = _score_line(args.task, y[test], pred)
        test_base, _ = _baseline(args.task, y_train, y[test])
        truth = {n: (y[test] if y.ndim == 1 else y[test][:, k]) for k, n in enumerate(names)}
        columns = _prediction_columns(_strip_cif([data.ids[i] for i in test]), names, truth,
                                      pred, est, proba)
        test_out = Path(args.test_out) if args.test_out else \
            Path(args.out).with_name(Path(args.out).stem + "_test_predictions.csv")
        _write_csv(columns, test_out)
        progress.say(f"wrote {len(test)} held-out predictions to {test_out}")
        test_part = f"; test {metric} {test_value:.4g} ({base_name} {test_base:.4g})"
        extra = {"test_" + metric.lower(): test_value, "n_test": int(len(test)),
                 "test_predictions": str(test_out)}
    metadata = {
        "model": args.model, "task": args.task, "estimator": type(est).__name__,
        "target": names[0] if len(names) == 1 else names, "targets": names,
        "data": str(Path(args.data).resolve()), "n_train": int(len(train)),
        "params": {k: (v if isinstance(v, (int, float, str, bool, list, tuple,
                                           dict, type(None))) else repr(v))
                   for k, v in params.items()},
        "skcrystal_version": skcrystal.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_" + metric.lower(): value, "fit_seconds": round(fit_time, 2),
        "epochs": epochs, "best_epoch": best, "val_frac": args.val_frac,
        "skipped": len(skipped.items), **extra,
    }
    _save_model(est, args.out, metadata)
    print(f"{args.model} {args.task} on {len(train)} structures "
          f"(target {', '.join(names)}): train {metric} {value:.4g} "
          f"({base_name} {baseline:.4g}){test_part}, {_fmt_seconds(fit_time)}; "
          f"saved {args.out}", flush=True)
    return 0


def _baseline(task, y_train, y_eval):
    """(score of the trivial predictor fitted on y_train, on y_eval; its name)."""
    import numpy as np
    if task == "classification":
        values, counts = np.unique(y_train, return_counts=True)
        return float(np.mean(np.asarray(y_eval) == values[counts.argmax()])), "majority"
    yt, ye = np.asarray(y_train, dtype=float), np.asarray(y_eval, dtype=float)
    return float(np.mean(np.abs(ye - yt.mean(axis=0)))), "mean predictor"


def _place_estimator(est, args, n_jobs, auto_jobs, device):
    """Set a loaded estimator's ``n_jobs`` and device for ``predict``; the device.

    ``--n-jobs`` always wins; the automatic worker count only where the
    model does not set its own ``n_jobs``.
    """
    if hasattr(est, "n_jobs") and (args.n_jobs is not None or
                                   (auto_jobs is not None and est.n_jobs is None)):
        est.n_jobs = n_jobs
    if hasattr(est, "device"):
        device = device or resolve_device("auto")
        est.device = device
        if getattr(est, "module_", None) is not None:
            est.module_.to(device)
    return device


def cmd_predict(args, progress):
    with contextlib.ExitStack() as stack:
        return _cmd_predict(args, progress, stack)


def _cmd_predict(args, progress, stack):
    import numpy as np

    _check_out(args.out)
    device = resolve_device(args.device) if args.device else None
    # without --n-jobs: workers for a large folder of files (a model that
    # sets its own n_jobs keeps it)
    auto_jobs = _auto_n_jobs(args.data) if args.n_jobs is None else None
    n_jobs = args.n_jobs if args.n_jobs is not None else auto_jobs
    streamed = _streamed_kind(args.data)
    workers_ready = None
    if streamed:
        # the workers start while this process imports torch and loads
        # the model
        workers_ready = stack.enter_context(_workers_started_early(n_jobs, network=True))
    early_listing, started = _early_file_chunks(args, n_jobs, streamed, progress) \
        if streamed else (None, None)
    # a folder of structure files with a reference regression checkpoint
    # on the CPU: predicted without the estimator (see _load_predictor)
    loaded = _load_predictor(args, device or resolve_device("auto"), n_jobs) \
        if streamed else None
    if loaded is not None:
        est, meta = loaded
    else:
        est, meta = load_model(args.model_file)
    progress.say(f"model: {est.name if loaded is not None else type(est).__name__}"
                 + (f" ({meta.get('model')}, target {meta.get('target')}, "
                    f"trained on {meta.get('n_train')} structures)" if meta else ""))
    if loaded is None:
        device = _place_estimator(est, args, n_jobs, auto_jobs, device)
    skipped = _Skipped()
    is_clf = hasattr(est, "classes_") or meta.get("task") == "classification"
    listing = None
    if loaded is not None or _streams_files(est):
        listing = early_listing or _file_listing(args, progress, streamed)
    elif started is not None:
        started.cancel()
    if loaded is not None and listing is None:
        # not a folder of structure files after all: the estimator reads it
        est, meta = load_model(args.model_file)
        device = _place_estimator(est, args, n_jobs, auto_jobs, device)
    if workers_ready is not None:
        workers_ready()
    if listing is not None:
        # a folder of structure files or a CSV of CIFs: parse, build graphs
        # and predict in chunks (workers with --n-jobs), no pymatgen
        # Structure kept
        columns, files, describe = listing
        _check_target_names(columns, args)  # before the files are read
        if args.n_jobs is None and getattr(est, "n_jobs", None) is None:
            # a large CSV: its rows are counted only now (workers that start
            # late cost little, this process predicts meanwhile)
            est.n_jobs = _auto_n_jobs(args.data, n_items=len(files))
        keep, pred, proba = _predict_files(est, files, describe, args, progress, skipped,
                                           is_clf, started)
        columns = {name: ([values[k] for k in keep] if isinstance(values, list)
                          else values[keep]) for name, values in columns.items()}
        n_rows = len(keep)
        skipped.report(_error_log_path(args), len(files))
    else:
        data = _read_data(args.data, args, progress, skipped)
        _check_target_names(data.frame, args)  # before the structures are predicted
        data, _ = _screen(est, data, progress, skipped, args.on_error)
        skipped.report(_error_log_path(args), len(data) + len(skipped.items))
        columns, n_rows = data.frame, len(data.frame)
        structures = data.structures
        with progress.stage(f"predicting {len(structures)} structures"), \
                _stdout_to_stderr(), _files_in_errors(data.describe):
            pred = np.asarray(est.predict(structures))
            proba = est.predict_proba(structures) if is_clf and \
                hasattr(est, "predict_proba") else None
    # the reference predict.py names a structure by its CIF file without .cif
    ids = _strip_cif(list(columns["id"]))
    # the true targets, when the data has them (reference predict.py does this)
    names = meta.get("targets") or []
    truth = _truth_columns(columns, n_rows, names, args, len(ids))
    out = _prediction_columns(ids, names, truth, pred, est, proba)
    if args.out in (None, "-"):
        _write_csv(out, sys.stdout)
    else:
        _write_csv(out, args.out)
        progress.say(f"wrote {len(ids)} rows to {args.out}")
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


# the input kinds read one structure file per row
_FILE_KINDS = ("cgcnn", "alignn", "files")


def _streams_files(est):
    """Whether ``est`` predicts from graphs alone (a fitted graph estimator
    without descriptors), so structure files can go straight to graphs."""
    from skcrystal.estimators.base import CrystalGraphNet

    return (isinstance(est, CrystalGraphNet) and getattr(est, "module_", None) is not None
            and getattr(est, "descriptors", None) is None
            and getattr(est, "descriptor_scaler_", None) is None)


def _streamed_kind(path):
    """The kind of ``path`` when ``predict`` streams it (a folder of structure
    files, a CSV of CIF texts), else None."""
    from skcrystal.datasets import _files

    try:
        kind = _files._detect_format(Path(path))
    except (OSError, ValueError):
        return None  # _read_data says what is wrong
    return kind if kind in _FILE_KINDS or kind == "csv" else None


def _file_listing(args, progress, kind, quick=None):
    """(columns, items, describe) of a folder of structure files (items: the
    files) or of a CSV of CIF texts (items: ``(row name, CIF text)``), or
    None for the other inputs (read by _read_data); ``kind`` is
    :func:`_streamed_kind` of the data. ``columns``: "id" (a list) and the
    value columns (arrays), by name.

    A folder is listed without pandas where its id_prop.csv is plain
    (:func:`skcrystal.datasets._files._id_prop_quick`), with the ids and
    targets pandas reads; ``quick``: :func:`_quick_listing` of the folder,
    already read.
    """
    import warnings

    from skcrystal.datasets import _files

    path = Path(args.data)
    if kind is None:
        return None
    values = {}
    if kind == "csv":
        df, id_name = _files._cif_csv_table(path, args.cif_column, args.id_column)
        ids = df[id_name].tolist() if id_name is not None else list(range(len(df)))
        names = [f"{path} row {i}" + ("" if id_name is None else f" (id {ident})")
                 for i, ident in enumerate(ids)]
        values = {c: df[c].to_numpy() for c in df.columns
                  if c not in (args.cif_column, id_name, "id", "structure")}
        return ({"id": ids, **values}, list(zip(names, df[args.cif_column].tolist())),
                names.__getitem__)
    if kind in ("cgcnn", "alignn"):
        read = _files._id_prop_quick(path) if quick is None else quick[0]
        if read is None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                read = _files._read_id_prop(path, targets=False)
            for w in caught:  # a header row in id_prop.csv...
                if not issubclass(w.category, DeprecationWarning):
                    progress.say(f"  note: {w.message}")
        id_prop, ids, y = read
        files = _files._folder_files(path, kind, ids, id_prop) if quick is None else quick[1]
        if y is not None:
            y2 = y.reshape(len(ids), -1)
            values = {name: y2[:, k] for k, name in enumerate(_files._target_names(y))}
    else:
        files = _files._folder_structure_files(path) if quick is None else quick[1]
        ids = [f.name for f in files]
    if not files:
        return None
    return {"id": ids, **values}, files, lambda i: str(files[i])


def _predict_files(est, files, describe, args, progress, skipped, is_clf, started=None):
    """Graphs of ``files`` built in chunks and predicted as they come (both in
    workers with ``--n-jobs``: see :func:`skcrystal.inference.predict_files`).

    ``est`` is an estimator or a :class:`~skcrystal.inference.GraphPredictor`
    (a reference checkpoint loaded without the estimator). A regressor's
    graphs are predicted by a GraphPredictor either way (the estimator's
    predictions without skorch's per-batch machinery); a classifier's (and
    a chunk with a non-finite output) by the estimator, whose error names
    the files.

    Returns
    -------
    (list of int, ndarray, ndarray or None)
        Positions in ``files`` predicted, predictions, probabilities.
    """
    import numpy as np

    from skcrystal.inference import GraphPredictor, predict_files, warn_untrained_elements

    n = len(files)
    if isinstance(est, GraphPredictor):
        predictor, estimator = est, None
        module, builder = est.module, est.builder
    else:
        est._check_graph_params()  # the builder below must be the fit's
        predictor, estimator = GraphPredictor.from_estimator(est), est
        module, builder = est._graph_module(), est._builder()
    n_jobs = getattr(est, "n_jobs", None)
    supported = getattr(module, "supported_elements", None)
    builder = builder.validate()
    trained = getattr(est, "trained_elements_", None)
    what = "CIFs of " + str(args.data) if isinstance(files[0], tuple) else "structure files"
    progress.say(f"reading {n} {what}, building their graphs ({builder.radius:g} "
                 f"Å, max_neighbors {builder.max_neighbors}, n_jobs={n_jobs}) and "
                 "predicting...")
    t0 = time.perf_counter()
    keep, preds, probas, numbers = [], [], [], []
    said = 0
    for chunk in predict_files(files, builder, predictor, supported, n_jobs,
                               numbers=trained is not None, started=started):
        offset, graphs, pred = chunk.offset, chunk.graphs, chunk.pred
        for j, err in chunk.errors:
            hint = ("--on-error skip leaves out what cannot be parsed" if err.parse
                    else "--on-error skip drops such structures")
            if args.on_error == "raise":
                raise CLIError(f"{describe(offset + j)}: {err.reason} ({hint})")
            skipped.add(describe(offset + j), err.reason)
        if not chunk.valid:
            continue
        positions = [offset + j for j in chunk.valid]
        if trained is not None:  # one warning for the run, after it
            numbers += chunk.atomic_numbers or [g.atomic_numbers for g in graphs]
        if pred is None:
            # a classifier, a GPU..., or a non-finite output: the estimator
            # predicts (and says which structure)
            from skcrystal.estimators.base import GraphDataset
            from skcrystal.graphs import attach_extras

            if estimator is None:
                estimator = load_model(args.model_file)[0]
            dataset = GraphDataset(attach_extras(
                graphs, getattr(module, "graph_extras", ()),
                labels=[describe(i) for i in positions]))
            with _stdout_to_stderr(), _files_in_errors(describe, positions):
                pred = np.asarray(estimator.predict(dataset))
                if is_clf and hasattr(estimator, "predict_proba"):
                    probas.append(np.asarray(estimator.predict_proba(dataset)))
        preds.append(pred)
        keep.extend(positions)
        if keep[-1] + 1 - said >= 2048 or keep[-1] + 1 == n:
            said = keep[-1] + 1
            progress.say(f"  {said}/{n} structures, "
                         f"{said / max(time.perf_counter() - t0, 1e-9):.0f} structures/s")
    progress.say(f"  done in {_fmt_seconds(time.perf_counter() - t0)}")
    if not keep:
        raise CLIError(f"no structure of {args.data} could be used")
    warn_untrained_elements(module, trained, numbers, lambda k: describe(keep[k]))
    pred = np.concatenate(preds)
    proba = np.concatenate(probas) if probas else None
    return keep, pred, proba


def _check_target_names(columns, args):
    """A CLIError naming the first ``--target`` that is not one of
    ``columns`` (a DataFrame or a dict of columns, by name)."""
    present = list(columns)
    missing = [t for t in args.target or () if t not in present]
    if missing:
        raise CLIError(f"--target {missing[0]!r} is not a column of {args.data}; "
                       f"columns: {[c for c in present if c != 'structure']}")


def _truth_columns(columns, n_rows, names, args, n):
    """Target columns present in the prediction data, by name.

    ``columns``: the data's columns by name (a DataFrame or a dict of
    arrays) and ``n_rows`` their length; ``n`` the number of predictions.
    ``--target`` names were checked against them before predicting
    (:func:`_check_target_names`).
    """
    import numpy as np

    if columns is None or n_rows != n:
        return {}
    present = list(columns)
    if args.target:
        return {t: np.asarray(columns[t]) for t in args.target}
    found = {t: np.asarray(columns[t]) for t in names if t in present}
    if len(found) == len(names) and found:
        return found
    # folder formats name their targets target / target_k
    generic = [c for c in present if c == "target" or re.fullmatch(r"target_\d+", str(c))]
    return {c: np.asarray(columns[c]) for c in generic}


def cmd_cv(args, progress):
    import numpy as np
    from sklearn.base import clone
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.model_selection import KFold, StratifiedKFold

    if args.folds < 2:
        raise CLIError(f"--folds must be at least 2, got {args.folds}")
    est, _ = _make_estimator(args, progress)
    data, y, names, skipped = _training_data(est, args, progress)
    structures = data.structures
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
        with _stdout_to_stderr(), _files_in_errors(data.describe, train):
            model.fit(list(X[train]), y[train])
        with _stdout_to_stderr(), _files_in_errors(data.describe, test):
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
                           checkpoint=not args.no_checkpoint,
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
                             "(estimator n_jobs; predict on a folder of structure files "
                             "or a CSV of CIFs: N processes in all, this one included, "
                             "that read and build; one per core by default from "
                             "1,000 files or rows, up to 8)")

    compute = _Parser(add_help=False)
    compute.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                         help="where the network runs: auto (a CUDA GPU when usable, "
                              "else the CPU; the default), cpu or cuda (an error, before "
                              "any data is read, when no GPU is usable)")

    reading = _Parser(add_help=False)
    reading.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                         help="a file or row that cannot be read, or a structure the "
                              "model refuses: raise (stop, naming it; the default) or "
                              "skip it (listed on stderr and in --error-log)")
    reading.add_argument("--error-log", metavar="FILE",
                         help="where --on-error skip lists the skipped inputs and why "
                              "(default: OUT.skipped.tsv beside --out, else "
                              "skcrystal-skipped.tsv)")
    reading.add_argument("--cif-column", default="cif",
                         help="CSV data: column of CIF strings (default cif)")
    reading.add_argument("--id-column", default=None,
                         help="CSV data: id column (default: the first of "
                              f"{', '.join(_ID_CANDIDATES)}, else the row number)")

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
    training.add_argument("--config", metavar="FILE",
                          help="estimator parameters from a JSON or YAML mapping "
                               "({max_epochs: 50, module__n_conv: 4, ...}); --param "
                               "and the shortcut options override it")
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

    p = sub.add_parser("fit", parents=[training, reading, compute, common],
                       help="train a model and save it",
                       description="Train a model on DATA and save it (pickle) to --out. "
                                   "A checkpoint is written after every epoch (--resume "
                                   "continues from it).")
    p.add_argument("--out", "-o", required=True, metavar="MODEL.pkl",
                   help="where to save the fitted model")
    p.add_argument("--val-frac", type=float, metavar="F",
                   help="hold out this fraction of the training structures for "
                        "validation: the epoch with the best validation loss is kept "
                        "and training stops early (--patience)")
    p.add_argument("--patience", type=int, metavar="N",
                   help="with --val-frac: stop after N epochs without a better "
                        "validation loss (default 20)")
    p.add_argument("--test-frac", type=float, metavar="F",
                   help="hold out this fraction of DATA before training; report the "
                        "held-out score and write its predictions (--test-out)")
    p.add_argument("--test-out", metavar="CSV",
                   help="held-out predictions (default: MODEL_test_predictions.csv)")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="checkpoints: DIR/last after every epoch, DIR/best with "
                        "--val-frac (default: MODEL.pkl.ckpt)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted fit from its last checkpoint (same "
                        "data and options)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", parents=[reading, compute, common],
                       help="predict with a saved model",
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
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("cv", parents=[training, reading, compute, common],
                       help="k-fold cross-validation",
                       description="k-fold cross-validated MAE (accuracy for classification) "
                                   "against the mean-predictor (majority) baseline on the "
                                   "same folds.")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("matbench", parents=[training, compute, common],
                       help="matbench-protocol run, recorded and resumable",
                       description="Fit and score a model on each fixed fold of a task (a "
                                   "matbench json.gz with its fold file, or the perovskites "
                                   "folder), write the record (matbench results layout) and "
                                   "print its RESULTS.md row. Finished folds are skipped on "
                                   "a rerun with the same parameters, and a fold stopped "
                                   "part way resumes at its last finished epoch.")
    p.add_argument("--folds", type=int, nargs="+", metavar="K",
                   help="fold numbers to run (default: every fold the task has)")
    p.add_argument("--out-dir", default="matbench_results", help="record folder")
    p.add_argument("--label", help="model name in the record (default: class name)")
    p.add_argument("--fold-file", default="auto",
                   help="official fold file (default: matbench_<task>_folds.json beside DATA)")
    p.add_argument("--max-structures", type=int, metavar="N",
                   help="first N rows only (quick checks)")
    p.add_argument("--no-resume", action="store_true",
                   help="start a new record, and interrupted folds from their first epoch")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="do not checkpoint each fold's fit after every epoch (an "
                        "interrupted fold then restarts from its first epoch)")
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


@contextlib.contextmanager
def _warnings_as_lines(debug):
    """Library warnings as ``skcrystal: warning: ...`` lines on stderr (with
    ``--debug``, Python's format with the source line)."""
    import warnings

    if debug:
        yield
        return
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"skcrystal: warning: {message}", file=file or sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


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
        if getattr(args, "n_jobs", None) is not None:  # named as the option, up front
            from ._validation import check_n_jobs
            check_n_jobs(args.n_jobs, "--n-jobs")
        progress = _Progress(quiet=args.quiet)
        with _warnings_as_lines(debug):
            return args.func(args, progress)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt as exc:
        detail = f": {exc}" if str(exc) else ""
        print(f"skcrystal: interrupted{detail}", file=sys.stderr)
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


def run(argv=None):
    """The ``skcrystal`` command as a process: :func:`main`, then exit.

    A finished command lets its worker processes finish and exit (they are
    killed after an error or an interrupt, dropping queued work), and the
    interpreter's teardown skips the garbage collector's passes over
    everything loaded (``gc.freeze``; the workers freeze what they import,
    see :func:`skcrystal.graphs.files.prepare_worker`): with torch loaded,
    the teardowns took longer than predicting a few thousand files (see
    ``benchmarks/RESULTS.md``). Exit handlers still run, so output streams,
    logs and the workers' shared resources are closed as usual.

    Parameters
    ----------
    argv : list of str, optional
        As for :func:`main`.
    """
    code = main(argv)
    import gc

    from ._parallel import stop_workers

    stop_workers(kill=code != 0)
    gc.disable()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()

"""The matbench protocol on local files: folds, scores, records, resumable runs.

:func:`run_matbench` fits an estimator on the training rows of each fold of
a task, predicts the fold's test rows and scores them, exactly as
matbench's ``MatbenchTask.record`` does (matbench v0.1: official 5 folds,
``KFold(5, shuffle=True, random_state=18012019)`` over the task in load
order, the fold file authoritative). Each finished fold is written to the
record at once (atomic replace), and each fold's fit is checkpointed after
every epoch, so an interrupted run resumes where it stopped, in the middle
of a fold too; a rerun with other estimator parameters refuses to mix them.

Tasks
-----
- :func:`matbench_task`: a matbench ``json.gz`` plus its official fold
  file. When the file holds only part of the task (the jdft2d file of fold
  0's training set: 508 of 636 rows), the folds whose test rows are present
  are run, each trained on its official training rows that are present;
  the record says how many rows that is against the official count.
- :func:`perovskites_task`: the Castelli cubic perovskites as two CSVs
  (3,787 + 1,024 rows, CDVAE's split of the set), concatenated in that order
  and split by ``KFold(5, shuffle=True, random_state=18012019)`` -- the
  splitter matbench uses -- so the folds are fixed and reproducible. This
  is 4,811 of the 18,928 rows of ``matbench_perovskites``: scores are not
  the leaderboard's (whose training sets have ~15,000 rows).
- :class:`BenchmarkTask`: any structures, targets and fold indices.

Record layout
-------------
The record (``<out_dir>/<task>__<label>.json.gz``) is matbench's
``MatbenchBenchmark.as_dict()`` layout (matbench 0.6)::

    {"@module": "matbench.bench", "@class": "MatbenchBenchmark",
     "version": "0.6", "benchmark_name": "matbench_v0.1",
     "tasks": {"matbench_jdft2d": {
         "@module": "matbench.task", "@class": "MatbenchTask",
         "benchmark_name": "matbench_v0.1", "dataset_name": "matbench_jdft2d",
         "results": {"fold_1": {
             "data": {"mb-jdft2d-002": 41.7, ...},        # id -> prediction
             "scores": {"mae": .., "rmse": .., "mape": .., "max_error": ..},
             "parameters": {"estimator": "...CGCNNRegressor",
                            "estimator_params": {...}, "n_train": 381,
                            "n_test": 127, "n_train_official": 509,
                            "n_test_official": 127, "fit_time_s": ..,
                            "predict_time_s": .., "mae_mad": ..,
                            "epochs_run": 100, "epoch_time_s": ..,
                            "graph_cache": {"hits": .., "misses": ..},
                            "loadavg_start": [1, 5, 15 min], "loadavg_end": [..],
                            "torch_threads": 1, "finished_at": "..."}},
             ...}}},
     "user_metadata": {"skcrystal": {
         "label": .., "estimator": .., "params_summary": ..,
         "task": {source, unit, n_rows, folds_available, folds_official,
                  split, published_as},
         "scores": {"mae": {"mean", "max", "min", "std"}, "rmse": ..,
                    "mape": .., "max_error": .., "mae_mad": ..,
                    "fit_time_s": .., "predict_time_s": ..},
         "folds_done": [1, 2, 3, 4], "complete": false,
         "runs": [{"command", "started_at", "id", "environment": {skcrystal,
                   torch, python, ..., torch_threads, OMP_NUM_THREADS,
                   cpu_count}, "loadavg_start", "loadavg_end",
                   "folds_run", "graph_time_s", "wall_time_s"}]}},
     "datestamp": "2026.11.22 04:30.00", "hash": "<sha256>"}

Per fold, ``scores`` holds matbench's four regression metrics and nothing
else, and ``data``/``scores``/``parameters`` are the only keys, because
matbench's validation rejects extra keys; everything else of ours is in
the free-form ``parameters`` and ``user_metadata``. The across-fold
statistics that matbench computes on the fly (``MatbenchTask.scores``:
``np.mean``, ``np.max``, ``np.min``, ``np.std`` -- population std -- of the
per-fold values) are stored in ``user_metadata["skcrystal"]["scores"]``.
``hash`` is computed as matbench computes it, so a complete run of a real
matbench task can be read with ``MatbenchBenchmark.from_file``; a record
of a partial task (missing folds) or of a non-matbench task (benchmark
name ``"custom"``) is in the same layout but matbench would not validate
it.

MAE/MAD is the fold's MAE over the mean absolute deviation of the fold's
test targets (:func:`skcrystal.metrics.mae_mad_score`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gzip
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .._logging import verbose_logging
from .._signals import noting_interrupts
from ..datasets._io import _as_path

_log = logging.getLogger(__name__)

__all__ = ["PUBLISHED", "MARKDOWN_HEADER", "BenchmarkTask", "RunResult", "matbench_task",
           "perovskites_task", "load_task", "run_matbench", "read_record", "markdown_row",
           "fold_progress"]

#: matbench v0.1 leaderboard, MAE averaged over the 5 official folds
PUBLISHED = {
    "matbench_jdft2d": {"unit": "meV/atom",
                        "models": {"CGCNN": 49.2, "ALIGNN": 43.4, "MODNet": 33.2}},
    "matbench_perovskites": {"unit": "eV/cell", "models": {"CGCNN": 0.0452, "ALIGNN": 0.0288}},
    "matbench_phonons": {"unit": "cm^-1", "models": {"CGCNN": 57.8}},
}

#: target units of the matbench v0.1 structure regression tasks
UNITS = {"matbench_jdft2d": "meV/atom", "matbench_perovskites": "eV/cell",
         "matbench_phonons": "cm^-1", "matbench_dielectric": "1",
         "matbench_log_gvrh": "log10(GPa)", "matbench_log_kvrh": "log10(GPa)",
         "matbench_mp_e_form": "eV/atom", "matbench_mp_gap": "eV"}

#: header of the RESULTS.md table that :func:`markdown_row` fills
MARKDOWN_HEADER = ("| task | model | params summary | MAE mean ± std | RMSE | MAE/MAD | folds "
                   "| wall time | load avg | published (matbench v0.1 MAE) |\n"
                   "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

MATBENCH_SPLIT = {"n_splits": 5, "shuffle": True, "random_state": 18012019}
_MATBENCH_LAYOUT_VERSION = "0.6"
_REG_METRICS = ("mae", "rmse", "mape", "max_error")
# estimator parameters that do not change the predictions: a resumed run may
# differ in them
_RESUME_IGNORED = frozenset({"verbose", "n_jobs", "cache_dir", "distributed"})


# ---------------------------------------------------------------- tasks
@dataclasses.dataclass
class BenchmarkTask:
    """A regression task: structures, targets and fixed folds.

    Parameters
    ----------
    name : str
        Task name (``"matbench_jdft2d"``); names the record file.
    structures : list of Structure
    y : ndarray of shape (n,)
        Targets, in ``unit``.
    ids : list of str
        Unique row identifiers (the keys of the recorded predictions).
    folds : dict of int -> (ndarray, ndarray), or list of (ndarray, ndarray)
        Fold number -> (train positions, test positions) into
        ``structures``; a list (e.g. ``list(KFold(5).split(X))``) numbers
        its folds from 0.
    unit : str, optional
        Unit of ``y`` (``"meV/atom"``).
    source : str
        Where the rows came from (file names), for the record.
    split : str
        How the folds were made, for the record.
    official_sizes : dict of int -> (int, int), optional
        Fold -> (training rows, test rows) of the complete official fold,
        when only part of the task is present.
    n_folds_official : int, optional
        Number of folds of the full protocol (5 for matbench).
    benchmark_name : str
        ``"matbench_v0.1"`` for a matbench task read with its fold file,
        ``"custom"`` otherwise.
    published_as : str, optional
        Key of :data:`PUBLISHED` whose numbers to show beside the results.
    published_note : str, optional
        Why the published numbers are not directly comparable, if so.
    """

    name: str
    structures: list
    y: np.ndarray
    ids: list
    folds: dict
    unit: str | None = None
    source: str = ""
    split: str = ""
    official_sizes: dict | None = None
    n_folds_official: int | None = None
    benchmark_name: str = "custom"
    published_as: str | None = None
    published_note: str | None = None

    def __post_init__(self):
        n = len(self.structures)
        if np.asarray(self.y).dtype == bool:  # matbench's classification tasks
            raise ValueError(f"task {self.name!r}: the target holds True/False (a "
                             "classification task); this runner scores regression (MAE, "
                             "RMSE, MAE/MAD)")
        self.y = np.asarray(self.y, dtype=np.float64)
        if self.y.ndim != 1:
            raise ValueError(f"task {self.name!r}: y must be 1-D (one target), got shape "
                             f"{self.y.shape}")
        if len(self.y) != n or len(self.ids) != n:
            raise ValueError(f"task {self.name!r}: {n} structures, {len(self.y)} targets "
                             f"and {len(self.ids)} ids; they must match")
        self.ids = [str(i) for i in self.ids]
        if len(set(self.ids)) != n:
            seen, dup = set(), None
            for i in self.ids:
                if i in seen:
                    dup = i
                    break
                seen.add(i)
            raise ValueError(f"task {self.name!r}: ids must be unique; {dup!r} repeats")
        bad = np.flatnonzero(~np.isfinite(self.y))
        if len(bad):
            raise ValueError(f"task {self.name!r}: y is NaN/inf at rows {bad[:10].tolist()} "
                             f"(ids {[self.ids[i] for i in bad[:3]]})")
        if isinstance(self.folds, (list, tuple)):  # scikit-learn's cv= list of pairs
            self.folds = dict(enumerate(self.folds))
        if not self.folds:
            raise ValueError(f"task {self.name!r} has no folds")
        folds = {}
        for k, (train, test) in self.folds.items():
            train = np.asarray(train, dtype=np.int64)
            test = np.asarray(test, dtype=np.int64)
            for part, idx in (("train", train), ("test", test)):
                if len(idx) == 0:
                    raise ValueError(f"task {self.name!r}: fold {k} has an empty {part} set")
                if idx.min() < 0 or idx.max() >= n:
                    raise ValueError(f"task {self.name!r}: fold {k} {part} positions must be "
                                     f"in 0..{n - 1}")
            both = np.intersect1d(train, test)
            if len(both):
                raise ValueError(f"task {self.name!r}: fold {k} has rows in both train and "
                                 f"test, e.g. {self.ids[both[0]]!r}")
            folds[int(k)] = (train, test)
        self.folds = dict(sorted(folds.items()))

    def describe(self):
        """JSON-ready summary of the task for the record."""
        return {"name": self.name, "source": self.source, "unit": self.unit,
                "n_rows": len(self.ids), "split": self.split,
                "folds_available": list(self.folds),
                "folds_official": self.n_folds_official,
                "benchmark_name": self.benchmark_name,
                "published_as": self.published_as,
                "published_note": self.published_note}


def _task_from_ids(ids):
    """matbench task key from row ids (``mb-log-gvrh-0001`` -> ``matbench_log_gvrh``)."""
    prefix = str(ids[0]).rsplit("-", 1)[0] if len(ids) else ""
    if not prefix.startswith("mb-"):
        return None
    return "matbench_" + prefix[3:].replace("-", "_")


def matbench_task(path, fold_file="auto", target=None, max_structures=None):
    """A matbench task from its ``json.gz`` and official fold file.

    Parameters
    ----------
    path : str or Path
        ``matbench_<task>.json.gz`` (pandas split orient, matbench ids as
        index), or any part of it.
    fold_file : str or Path or "auto"
        ``matbench_<task>_folds.json`` (``{"splits": {task: {"fold_k":
        {"train": ids, "test": ids}}}}``); ``"auto"`` looks beside ``path``.
    target : str, optional
        Target column; by default the only non-structure column.
    max_structures : int, optional
        Keep only the first rows of the file (quick tests). The folds are
        then cut to those rows.

    Returns
    -------
    BenchmarkTask
        With the folds that have at least one test row in the file, each
        training on its official training rows present in the file.

    Raises
    ------
    ValueError
        A row id in no test fold of the fold file, no fold with a test row,
        a bad ``max_structures``.
    FileNotFoundError
        No fold file (``"auto"`` names the file it looked for).
    """
    from ..datasets import load_matbench_json, matbench_test_fold
    from ..datasets._matbench import _read_fold_file

    path = _as_path(path)
    df = load_matbench_json(path, target=target, as_frame=True)
    if max_structures is not None:
        if isinstance(max_structures, bool) or not isinstance(max_structures, (int, np.integer)) \
                or max_structures < 2:
            raise ValueError(f"max_structures must be an integer >= 2, got {max_structures!r}")
        df = df.iloc[:int(max_structures)].reset_index(drop=True)
    ids = [str(i) for i in df["id"]]
    key = _task_from_ids(ids)
    if isinstance(fold_file, str) and fold_file == "auto":
        if key is None:
            raise ValueError(f"{path}: ids such as {ids[0]!r} are not matbench ids "
                             "(mb-<task>-<row>); pass fold_file=")
        fold_file = path.with_name(f"{key}_folds.json")
        if not fold_file.exists():
            raise FileNotFoundError(f"fold_file='auto' looked for {fold_file} beside {path}; "
                                    "pass the fold file's path as fold_file=")
    test_fold = matbench_test_fold(fold_file, ids)
    fold_path, key, official = _read_fold_file(fold_file, ids)
    folds, sizes = {}, {}
    for k, (train_ids, test_ids) in official.items():
        test_idx = np.flatnonzero(test_fold == k)
        if len(test_idx) == 0:
            continue
        train_idx = np.array([j for j, i in enumerate(ids) if i in train_ids], dtype=np.int64)
        folds[k] = (train_idx, test_idx)
        sizes[k] = (len(train_ids), len(test_ids))
    if not folds:
        raise ValueError(f"none of the {len(ids)} rows of {path} is a test row of a fold "
                         f"of {fold_path}")
    y_col = [c for c in df.columns if c not in ("id", "structure")][0]
    missing = sorted(set(official) - set(folds))
    split = (f"official matbench folds from {Path(fold_path).name}"
             + (f"; fold(s) {missing} absent (no test row in the file)" if missing else ""))
    return BenchmarkTask(
        name=key, structures=list(df["structure"]), y=df[y_col].to_numpy(),
        ids=ids, folds=folds, unit=UNITS.get(key), source=path.name, split=split,
        official_sizes=sizes, n_folds_official=len(official), benchmark_name="matbench_v0.1",
        published_as=key if key in PUBLISHED else None)


def perovskites_task(folder=None, target="heat_all", max_structures=None,
                     files=("perovskites_part1.csv", "perovskites_part2.csv")):
    """The Castelli perovskites (3,787 + 1,024 rows) with a fixed 5-fold split.

    The two CSVs (one CIF string per row, ``material_id`` ids) are
    concatenated in the order of ``files`` and split with
    ``KFold(n_splits=5, shuffle=True, random_state=18012019)``, matbench's
    splitter, so every run sees the same folds.

    Parameters
    ----------
    folder : str or Path, optional
        Folder holding ``files``; by default ``perovskites/`` in the
        project's shared data folder
        (:func:`skcrystal.datasets.shared_data_path`).
    target : str, default "heat_all"
        ``heat_all``: heat of formation, eV per 5-atom cell (the
        matbench_perovskites target).
    max_structures : int, optional
        Keep only the first rows of the concatenation (quick tests; the
        split then differs from the full task's).
    files : tuple of str

    Returns
    -------
    BenchmarkTask
        Named ``perovskites_castelli``; published numbers are those of
        matbench_perovskites (18,928 rows, ~15,000 training rows per fold),
        shown for orientation only.
    """
    import pandas as pd
    from sklearn.model_selection import KFold

    from ..datasets import load_csv, shared_data_path

    if folder is None:
        shared = shared_data_path()
        if shared is None:
            raise FileNotFoundError("perovskites_task: no folder given and no shared data "
                                    "folder found (set SKCRYSTAL_SHARED_DATA)")
        folder = shared / "perovskites"
    folder = _as_path(folder)
    frames = [load_csv(folder / f, target=target, id_column="material_id", as_frame=True)
              for f in files]
    df = pd.concat(frames, ignore_index=True)
    if max_structures is not None:
        if isinstance(max_structures, bool) or not isinstance(max_structures, (int, np.integer)) \
                or max_structures < 5:
            raise ValueError(f"max_structures must be an integer >= 5, got {max_structures!r}")
        df = df.iloc[:int(max_structures)].reset_index(drop=True)
    splitter = KFold(**MATBENCH_SPLIT)
    folds = {k: (tr, te) for k, (tr, te) in enumerate(splitter.split(np.arange(len(df))))}
    n_rows = " + ".join(str(len(f)) for f in frames)
    return BenchmarkTask(
        name="perovskites_castelli", structures=list(df["structure"]),
        y=df[target].to_numpy(dtype=np.float64), ids=[str(i) for i in df["material_id"]],
        folds=folds, unit="eV/cell" if target == "heat_all" else "eV",
        source=f"{' + '.join(files)} ({n_rows} rows"
               + (f", first {len(df)} kept)" if max_structures is not None else ")"),
        split="KFold(n_splits=5, shuffle=True, random_state=18012019) over the rows in "
              "file order",
        n_folds_official=5, published_as="matbench_perovskites" if target == "heat_all"
        else None,
        published_note="matbench_perovskites has 18,928 rows (~15,000 training rows per "
                       f"fold); this task has {len(df)}")


def load_task(source, fold_file="auto", target=None, max_structures=None):
    """A :class:`BenchmarkTask` from a task, a file or a folder.

    Parameters
    ----------
    source : BenchmarkTask, str or Path
        A task (returned as is); a matbench ``.json``/``.json.gz`` (see
        :func:`matbench_task`); a folder holding ``perovskites_part1.csv``
        and ``perovskites_part2.csv`` (see :func:`perovskites_task`) or
        exactly one matbench ``.json.gz``.
    fold_file, target, max_structures
        Passed on.

    Returns
    -------
    BenchmarkTask
    """
    if isinstance(source, BenchmarkTask):
        if max_structures is not None:
            raise ValueError("max_structures applies to files, not to a BenchmarkTask")
        return source
    path = _as_path(source)
    if not path.exists():
        raise FileNotFoundError(f"task source {path} does not exist")
    if path.is_dir():
        if (path / "perovskites_part1.csv").exists() and (path / "perovskites_part2.csv").exists():
            return perovskites_task(path, target=target or "heat_all",
                                    max_structures=max_structures)
        candidates = sorted(p for p in path.iterdir()
                            if p.name.startswith("matbench_") and
                            p.name.endswith((".json.gz", ".json")) and
                            not p.name.endswith("_folds.json"))
        if len(candidates) != 1:
            raise ValueError(f"{path}: expected one matbench_*.json[.gz] task file or the "
                             f"perovskites CSVs, found {[p.name for p in candidates]}")
        path = candidates[0]
    return matbench_task(path, fold_file=fold_file, target=target,
                         max_structures=max_structures)


# ---------------------------------------------------------------- metrics
def _mape(y_true, y_pred, threshold=1e-5):
    """matbench's masked MAPE: rows with |y_true| <= threshold are left out."""
    mask = np.abs(y_true) > threshold
    if not mask.any():
        return float("nan")
    return float(np.mean(np.abs((y_true[mask] - y_pred[mask]) / y_true[mask])))


def fold_scores(y_true, y_pred):
    """matbench's four regression scores of one fold.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``mape`` (fraction, rows with ``|y| <= 1e-5``
        left out as matbench does), ``max_error``; in the unit of ``y``
        except ``mape``.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    err = t - p
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "mape": _mape(t, p), "max_error": float(np.max(np.abs(err)))}


def _stats(values):
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.mean(v)), "max": float(np.max(v)), "min": float(np.min(v)),
            "std": float(np.std(v))}


# ---------------------------------------------------------------- estimator
def _resolve_estimator(estimator, params):
    from sklearn.base import clone

    params = dict(params or {})
    if isinstance(estimator, str):
        from ..cli import CLIError, get_estimator_class
        try:
            estimator = get_estimator_class(estimator)
        except CLIError as exc:
            raise ValueError(str(exc)) from None
    if isinstance(estimator, type):
        # through set_params: a misspelt name is an error now, not at the first fold's fit
        return estimator().set_params(**params)
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise TypeError(f"estimator must be a model name, an estimator class or an object "
                        f"with fit/predict; got {type(estimator).__name__}")
    est = clone(estimator)
    if params:
        est.set_params(**params)
    return est


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _jsonable(value):
    """JSON value of a parameter; repr (memory addresses dropped) otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    # one line: the record's table row and the resume comparison need it
    return re.sub(r"\s+", " ", _ADDRESS.sub("", repr(value))).strip()


def estimator_params(est):
    """The estimator's ``get_params(deep=False)`` as JSON values.

    Private keys (leading underscore) are left out; values that are not
    JSON (classes, transformers, callables) are their ``repr`` without
    memory addresses, so two equal configurations compare equal.
    """
    return {k: _jsonable(v) for k, v in sorted(est.get_params(deep=False).items())
            if not k.startswith("_")}


def _default_params(est):
    """:func:`estimator_params` of the estimator's class built bare ({} if it cannot be)."""
    try:
        return estimator_params(type(est)())
    except Exception:  # an estimator that cannot be built bare
        return {}


def _params_summary(est, params):
    """Non-default parameters as ``k=v, ...`` (``defaults`` when none)."""
    default = _default_params(est)
    diff = [f"{k}={v}" for k, v in params.items()
            if k not in ("verbose",) and (k not in default or default[k] != v)]
    return ", ".join(diff) if diff else "defaults"


def _class_path(est):
    return f"{type(est).__module__}.{type(est).__qualname__}"


# ---------------------------------------------------------------- record I/O
def _immutify(d):
    """matbench's ``immutify_dictionary``: keys sorted in dicts reachable via dicts."""
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, dict):
            out[k] = _immutify(v)
        elif hasattr(v, "dtype"):
            out[k] = v.item()
        else:
            out[k] = v
    return dict(sorted(out.items(), key=lambda item: item[0]))


def _matbench_hash(d):
    body = {k: v for k, v in d.items() if k != "hash"}
    return hashlib.sha256(json.dumps(_immutify(body)).encode("utf-8")).hexdigest()


def _atomic_write(path, text):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode("utf-8")
    with open(tmp, "wb") as fh:
        fh.write(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_record(path):
    """Read a record written by :func:`run_matbench` (``.json`` or ``.json.gz``)."""
    path = _as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no matbench record at {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not a JSON record ({exc})") from None
    if not (isinstance(record, dict) and "tasks" in record and "user_metadata" in record):
        raise ValueError(f"{path} is not a matbench results record (no 'tasks' / "
                         "'user_metadata')")
    return record


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_") or "model"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _environment():
    import sklearn

    import skcrystal
    env = {"skcrystal": skcrystal.__version__, "python": platform.python_version(),
           "numpy": np.__version__, "scikit-learn": sklearn.__version__,
           "platform": platform.platform(), "machine": platform.machine(),
           "cpu_count": os.cpu_count(),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    try:
        import torch
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        env["torch"] = None
    try:
        import skorch
        env["skorch"] = skorch.__version__
    except ImportError:  # pragma: no cover
        pass
    return env


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _new_record(task, label, est, params, summary):
    task_entry = {"@module": "matbench.task", "@class": "MatbenchTask",
                  "benchmark_name": task.benchmark_name, "dataset_name": task.name,
                  "results": {}}
    return {"@module": "matbench.bench", "@class": "MatbenchBenchmark",
            "version": _MATBENCH_LAYOUT_VERSION, "benchmark_name": task.benchmark_name,
            "tasks": {task.name: task_entry},
            "user_metadata": {"skcrystal": {
                "label": label, "estimator": _class_path(est), "estimator_params": params,
                "params_summary": summary, "task": task.describe(), "scores": {},
                "folds_done": [], "complete": False, "runs": []}},
            "datestamp": "", "hash": ""}


def _refresh(record, task):
    """Recompute the across-fold statistics, the datestamp and the hash."""
    meta = record["user_metadata"]["skcrystal"]
    results = record["tasks"][task.name]["results"]
    done = sorted(int(k.rsplit("_", 1)[1]) for k in results)
    meta["folds_done"] = done
    params = [results[f"fold_{k}"]["parameters"] for k in done]
    # the protocol exactly: every official fold, each with all its rows
    meta["complete"] = bool(
        task.n_folds_official is not None and len(done) == task.n_folds_official
        and all(p["n_train"] == p["n_train_official"] and p["n_test"] == p["n_test_official"]
                for p in params))
    scores = {}
    if done:
        folds = [results[f"fold_{k}"] for k in done]
        for m in _REG_METRICS:
            scores[m] = _stats([f["scores"][m] for f in folds])
        for m in ("mae_mad", "fit_time_s", "predict_time_s"):
            scores[m] = _stats([f["parameters"][m] for f in folds])
    meta["scores"] = scores
    record["datestamp"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y.%m.%d %H:%M.%S")
    record["hash"] = _matbench_hash(record)


@contextlib.contextmanager
def _file_lock(lock_path, busy=None):
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``; none elsewhere).

    With ``busy`` (a message), do not wait for a lock another process holds:
    raise ``RuntimeError(busy + " (pid N)")`` instead.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: one process per record
        yield
        return
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (fcntl.LOCK_NB if busy else 0))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise RuntimeError(f"{busy} (pid {holder})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _record_lock(path):
    """Hold an exclusive lock on ``<record>.lock``."""
    return _file_lock(path.with_name(path.name + ".lock"))


def _save(record, task, path, row_path, merge=None):
    """Write the record and its row; with ``merge=(estimator, params)``, first take in
    the folds and runs that other processes wrote to the file since it was read.

    Several processes can then run different folds of one record at once
    (``folds=``), e.g. one per core. Folds run with other estimator
    parameters are refused (the record is written beside, as
    ``<record>.conflict-<pid>.json.gz``) instead of mixed in.
    """
    with _record_lock(path):
        if merge is not None and path.exists():
            disk = read_record(path)
            try:
                _check_resumable(disk, path, task, *merge)
            except ValueError as exc:
                side = path.with_name(f"{path.name[:-len('.json.gz')]}.conflict-{os.getpid()}"
                                      ".json.gz")
                _write_record(record, task, side)
                raise ValueError(f"{exc} (another process wrote it meanwhile; this run's "
                                 f"folds are in {side})") from None
            _merge_record(record, disk, task)
        _write_record(record, task, path)
        _atomic_write(row_path, markdown_row(record) + "\n")


def _write_record(record, task, path):
    _refresh(record, task)
    _atomic_write(path, json.dumps(record, indent=1, allow_nan=True))


def _in_fold_order(results):
    """``{"fold_k": ...}`` with the keys in numeric order, whatever order they ran in."""
    return dict(sorted(results.items(), key=lambda kv: int(kv[0].rsplit("_", 1)[1])))


def _merge_record(record, disk, task):
    """Add ``disk``'s folds and runs that ``record`` lacks (another process's)."""
    results = record["tasks"][task.name]["results"]
    for key, fold in disk["tasks"][task.name]["results"].items():
        results.setdefault(key, fold)
    record["tasks"][task.name]["results"] = _in_fold_order(results)
    # a run by its id; the copy with more folds is the newer

    def key(r):
        return r.get("id") or (r.get("started_at"), r.get("command"))

    runs = record["user_metadata"]["skcrystal"]["runs"]
    where = {key(r): i for i, r in enumerate(runs)}
    for r in disk["user_metadata"]["skcrystal"]["runs"]:
        i = where.get(key(r))
        if i is None:
            runs.append(r)
        elif len(r.get("folds_run", ())) > len(runs[i].get("folds_run", ())):
            runs[i] = r
    runs.sort(key=lambda r: r.get("started_at") or "")


_UNSET = object()


def _param_diff(old, new, limit=6):
    """``"name: old -> new, ..."`` for the parameters that differ (the first ``limit``)."""
    diff = sorted(k for k in set(old) | set(new) if old.get(k, _UNSET) != new.get(k, _UNSET))
    return ", ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
                     for k in diff[:limit])


def _check_resumable(record, path, task, est, params):
    """Raise when the saved folds were run with another estimator or rows."""
    if task.name not in record.get("tasks", {}):
        raise ValueError(f"{path} records task(s) {sorted(record.get('tasks', {}))}, not "
                         f"{task.name!r}; use another out_dir or label")
    results = record["tasks"][task.name]["results"]
    now_cls = _class_path(est)
    defaults = _default_params(est)
    for fold_key, fold in results.items():
        p = fold["parameters"]
        if p.get("estimator") != now_cls:
            raise ValueError(f"cannot resume {path}: {fold_key} was run with "
                             f"{p.get('estimator')}, not {now_cls}; use another label or "
                             "out_dir, or resume=False to start afresh")
        old = {k: v for k, v in p.get("estimator_params", {}).items()
               if k not in _RESUME_IGNORED}
        # a parameter added to the estimator after the record was written
        # ran as its default then: left out when it still is
        new = {k: v for k, v in params.items() if k not in _RESUME_IGNORED
               and (k in old or k not in defaults or defaults[k] != v)}
        if old != new:
            raise ValueError(f"cannot resume {path}: {fold_key} was run with other "
                             f"estimator parameters ({_param_diff(old, new)}); use another "
                             "label or out_dir, or resume=False to start afresh")
        k = int(fold_key.rsplit("_", 1)[1])
        if k in task.folds:
            want = {task.ids[i] for i in task.folds[k][1]}
            if set(fold["data"]) != want or p.get("n_train") != len(task.folds[k][0]):
                raise ValueError(f"cannot resume {path}: {fold_key} was run on other rows "
                                 f"({len(fold['data'])} test / {p.get('n_train')} train "
                                 f"rows, now {len(want)} / {len(task.folds[k][0])}); use "
                                 "another out_dir or resume=False")


# ---------------------------------------------------------------- fold checkpoints
def _checkpointable(est):
    """Whether ``est``'s fit can be checkpointed every epoch and resumed.

    skcrystal's estimators can (``resume``), except with a ``descriptors``
    transformer, whose fitted state a checkpoint cannot hold.
    """
    callbacks = getattr(est, "callbacks", None)
    return (hasattr(est, "resume") and getattr(est, "descriptors", None) is None
            and not (isinstance(callbacks, str) and callbacks == "disable"))


def _fold_checkpoint(ckdir, est, params, train_ids, resume):
    """Prepare a fold's checkpoint folder.

    ``ckdir/fold.json`` says which fit the folder checkpoints (estimator
    class, parameters, training rows) and lists the parts the fold ran in
    (start time, epochs done before, load average); a folder of another fit
    is an error with ``resume`` (it is removed without). A folder without a
    finished epoch (no history yet) is started afresh.

    Returns
    -------
    checkpoint : Checkpoint or None
        The checkpoint to resume from (None: fit from the start).
    done : int
        Epochs done before this part.
    parts : list of dict
        Every part of the fold so far, this one last.
    """
    from ..estimators.callbacks import Checkpoint

    meta = json.loads(json.dumps({
        "estimator": _class_path(est),
        "estimator_params": {k: v for k, v in params.items() if k not in _RESUME_IGNORED},
        "train_rows": len(train_ids),
        "train_ids_sha256": hashlib.sha256("\n".join(map(str, train_ids)).encode()).hexdigest(),
    }, default=str))
    meta_path = ckdir / "fold.json"
    start, done, parts = None, 0, []
    if ckdir.exists() and resume:
        try:
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None  # killed before the description was written: nothing saved
        if saved is not None:
            parts = saved.pop("parts", [])
        if saved is not None and saved != meta:
            old, new = saved.get("estimator_params", {}), meta["estimator_params"]
            what = _param_diff(old, new) if old != new else ", ".join(
                sorted(k for k in set(saved) | set(meta) if saved.get(k) != meta.get(k)))
            raise ValueError(f"cannot resume from {ckdir}: it checkpoints a fit with other "
                             f"{what}; remove the folder, or resume=False to start afresh")
        if saved is not None and (ckdir / "history.json").exists():
            start = Checkpoint.every_epoch(ckdir)
            done = len(json.loads((ckdir / "history.json").read_text(encoding="utf-8")))
            if not parts:  # written by a version that did not list them
                parts = [{"started_at": None, "after_epoch": 0, "loadavg_start": None}]
    if start is None:
        if ckdir.exists():
            shutil.rmtree(ckdir)
        ckdir.mkdir(parents=True)
        parts = []
    parts.append({"started_at": _now(), "after_epoch": done, "loadavg_start": _loadavg()})
    _atomic_write(meta_path, json.dumps({**meta, "parts": parts}, indent=1))
    return start, done, parts


def fold_progress(out_dir="matbench_results"):
    """The folds stopped or running part way in ``out_dir``, from their checkpoints.

    Parameters
    ----------
    out_dir : str or Path
        A :func:`run_matbench` output folder.

    Returns
    -------
    list of dict
        One per fold checkpoint folder, sorted by name: ``record`` (the
        record's file stem), ``fold``, ``epochs_done``, ``max_epochs``,
        ``epoch_s`` (median epoch time, s), ``eta_s`` (the remaining epochs
        at that time, s), ``parts`` (how many parts it ran in so far) and
        ``updated_at`` (when the last epoch ended, UTC).
    """
    rows = []
    for ckdir in sorted(_as_path(out_dir).glob("*.fold*.checkpoint")):
        stem, _, fold = ckdir.name[:-len(".checkpoint")].rpartition(".fold")
        try:
            meta = json.loads((ckdir / "fold.json").read_text(encoding="utf-8"))
            history = json.loads((ckdir / "history.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # no finished epoch yet
        durations = [float(row["dur"]) for row in history if row.get("dur") is not None]
        max_epochs = meta.get("estimator_params", {}).get("max_epochs")
        epoch_s = float(np.median(durations)) if durations else None
        left = max(int(max_epochs) - len(history), 0) if max_epochs is not None else None
        stamp = datetime.datetime.fromtimestamp((ckdir / "history.json").stat().st_mtime,
                                                datetime.timezone.utc)
        rows.append({"record": stem, "fold": int(fold), "epochs_done": len(history),
                     "max_epochs": max_epochs, "epoch_s": epoch_s,
                     "eta_s": None if epoch_s is None or left is None else epoch_s * left,
                     "parts": len(meta.get("parts", [])) or 1,
                     "updated_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return rows


def _fold_dir(out_dir, stem, k):
    """The checkpoint folder of fold ``k`` of the record ``stem``."""
    return Path(out_dir) / f"{stem}.fold{k}.checkpoint"


def _fit_fold(est, X, y, start):
    """Fit ``est``, or resume it from the checkpoint ``start``; whether a Ctrl-C
    stopped it (skcrystal's estimators raise it after fit, skorch's end fit quietly)."""
    with noting_interrupts() as interrupted:
        try:
            if start is not None:
                est.resume(X, y, start)
            else:
                est.fit(X, y)
        except KeyboardInterrupt:
            if not interrupted:
                raise
    return bool(interrupted)


def _with_checkpoint(est, ckdir):
    """``est`` with a callback checkpointing every epoch into ``ckdir``."""
    from ..estimators.callbacks import Checkpoint

    return est.set_params(callbacks=[*(est.callbacks or []),
                                     ("matbench_checkpoint", Checkpoint.every_epoch(ckdir))])


# ---------------------------------------------------------------- runner
def _epoch_times(est):
    """Durations (s) of the epochs of a fitted skorch net, else None."""
    history = getattr(est, "history_", None) or getattr(est, "history", None)
    try:
        return [float(d) for d in history[:, "dur"]] if history else None
    except (KeyError, TypeError, IndexError):
        return None


@dataclasses.dataclass
class RunResult:
    """What :func:`run_matbench` did.

    Attributes
    ----------
    record : dict
        The record as saved (matbench layout, see the module docstring).
    path : Path
        The record file.
    row : str
        Its RESULTS.md row (also saved beside the record as ``.md``).
    ran : list of int
        Folds run now.
    skipped : list of int
        Folds found finished in the record and not run again.
    """

    record: dict
    path: Path
    row: str
    ran: list
    skipped: list

    @property
    def scores(self):
        """Across-fold statistics: ``{"mae": {"mean", "max", "min", "std"}, ...}``."""
        return self.record["user_metadata"]["skcrystal"]["scores"]


def run_matbench(task, estimator, folds=None, out_dir="matbench_results", resume=True, *,
                 params=None, label=None, fold_file="auto", target=None, max_structures=None,
                 prepare_graphs=True, checkpoint=True, command=None, on_fold_end=None,
                 verbose=1):
    """Cross-validate an estimator on a task's fixed folds and record the result.

    Per fold: clone the estimator, fit it on the fold's training rows,
    predict its test rows, score (MAE, RMSE, MAPE, max error -- matbench's
    scores -- and MAE/MAD), time ``fit`` and ``predict`` separately, and
    write the record at once (atomic replace). Structures are parsed once;
    graphs are built once up front (``estimator.prepare``, timed apart) and
    served from the process-wide graph cache to every fold (the per-fold
    cache hits and misses are recorded).

    Parameters
    ----------
    task : BenchmarkTask, str or Path
        A task, a matbench ``json.gz`` (its fold file beside it or given as
        ``fold_file``), or a folder (see :func:`load_task`).
    estimator : str, estimator class or estimator object
        A registered model name (``"cgcnn"``, see :mod:`skcrystal.estimators.registry`) or
        ``package.module:Class``, built with ``params``; a class, built
        with ``params``; or an unfitted estimator, cloned per fold (with
        ``params`` set on the clone).
    folds : sequence of int, optional
        Fold numbers to run; all the task's folds by default.
    out_dir : str or Path
        Folder of the record ``<task>__<label>.json.gz`` and its
        ``<task>__<label>.md`` row.
    resume : bool, default True
        Keep the folds already in the record and run only the others, and
        continue an interrupted fold from its checkpoint (see
        ``checkpoint``); the record's estimator class and parameters must
        equal the current ones (``verbose``, ``n_jobs``, ``cache_dir`` may
        differ) or a ``ValueError`` says what differs. ``False`` starts a new record,
        replacing the file when the first fold finishes. Processes running
        other folds of the same record at the same time (e.g. ``folds=[0,
        1]`` and ``folds=[2, 3, 4]``, one per core) each add their folds
        to it as they finish.
    params : dict, optional
        Estimator parameters (see ``estimator``).
    label : str, optional
        Model name in the record, file name and table; the estimator's
        class name by default.
    fold_file, target, max_structures
        For file tasks, see :func:`matbench_task` / :func:`perovskites_task`.
    prepare_graphs : bool, default True
        Build every structure's graph before the first fold (when the
        estimator has ``prepare``), so ``fit_time_s`` is training alone.
    checkpoint : bool, default True
        Checkpoint each fold's fit after every epoch, in
        ``<out_dir>/<task>__<label>.fold<k>.checkpoint/`` (removed when
        the fold is recorded), so a run stopped in the middle of a fold
        resumes at its last finished epoch (with ``resume``). With an
        integer ``random_state`` the resumed fold's predictions equal an
        uninterrupted fold's (the checkpoint holds the random number
        generator too); the fold's record lists the parts it ran in
        (``parts``: start time, epochs done before, load average), and its
        ``fit_time_s`` adds the epochs run before. Skipped for estimators
        that cannot resume (not skcrystal's, or with a ``descriptors``
        transformer). One process runs a fold at a time: another process
        asked for the same fold raises ``RuntimeError`` naming it.
    command : str, optional
        Command line to record; ``sys.argv`` by default.
    on_fold_end : callable, optional
        ``on_fold_end(fold_number, fold_result)`` after each fold is saved.
    verbose : int, default 1
        1 prints a line per fold to stderr.

    Returns
    -------
    RunResult

    Raises
    ------
    ValueError
        Unknown fold numbers, a record that cannot be resumed, a bad task.
    """
    from sklearn.base import clone

    from ..graphs.cache import default_cache
    from ..metrics import mae_mad_score

    t_start = time.perf_counter()
    loadavg_start = _loadavg()
    task = load_task(task, fold_file=fold_file, target=target, max_structures=max_structures)
    base = _resolve_estimator(estimator, params)
    est_params = estimator_params(base)
    label = label or type(base).__name__
    if folds is None:
        todo = list(task.folds)
    else:
        todo = []
        for k in folds:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
                    or int(k) not in task.folds:
                raise ValueError(f"folds: {k!r} is not a fold of {task.name} here; available "
                                 f"folds: {list(task.folds)}")
            if int(k) not in todo:
                todo.append(int(k))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{task.name}__{_slug(label)}"
    path, row_path = out_dir / f"{stem}.json.gz", out_dir / f"{stem}.md"

    summary = _params_summary(base, est_params)
    record = None
    if resume and path.exists():
        record = read_record(path)
        _check_resumable(record, path, task, base, est_params)
    if record is None:
        record = _new_record(task, label, base, est_params, summary)
    meta = record["user_metadata"]["skcrystal"]
    results = record["tasks"][task.name]["results"]
    skipped = [k for k in todo if f"fold_{k}" in results]
    todo = [k for k in todo if k not in skipped]

    def say(msg):
        if verbose:
            with verbose_logging(verbose):
                _log.info(msg)

    run = {"command": command if command is not None else " ".join(
               shlex.quote(a) for a in sys.argv),
           "started_at": _now(), "id": f"{platform.node()}-{os.getpid()}-{time.time_ns()}",
           "environment": _environment(),
           "loadavg_start": loadavg_start, "loadavg_end": None, "folds_run": [],
           "graph_time_s": 0.0, "wall_time_s": None}
    if skipped:
        say(f"{task.name} / {label}: fold(s) {skipped} already in {path}, skipped")
        for k in skipped:  # a run stopped after recording the fold, before removing it
            shutil.rmtree(_fold_dir(out_dir, stem, k), ignore_errors=True)
    if not todo:
        row = markdown_row(record)
        return RunResult(record=record, path=path, row=row, ran=[], skipped=skipped)
    meta["runs"].append(run)

    X = np.empty(len(task.structures), dtype=object)
    X[:] = task.structures
    if prepare_graphs and hasattr(base, "prepare"):
        rows = np.unique(np.concatenate([np.concatenate(task.folds[k]) for k in todo]))
        t0 = time.perf_counter()
        clone(base).prepare(list(X[rows]))
        run["graph_time_s"] = round(time.perf_counter() - t0, 3)
        say(f"{task.name}: graphs of {len(rows)} structures ready in "
            f"{run['graph_time_s']:.1f} s")

    checkpoint = bool(checkpoint) and _checkpointable(base)
    ran = []
    for k in todo:
        # one process per fold: a second one would overwrite its checkpoint
        with _file_lock(out_dir / f".{stem}.fold{k}.lock",
                        busy=f"fold {k} of {path} is being run by another process"):
            train, test = task.folds[k]
            est = clone(base)
            hits0, misses0 = default_cache.hits, default_cache.misses
            fold_load0 = _loadavg()
            say(f"{task.name} / {label}: fold {k} ({len(train)} train, {len(test)} test)...")
            ckdir, start, done, parts = _fold_dir(out_dir, stem, k), None, 0, []
            if checkpoint:
                start, done, parts = _fold_checkpoint(
                    ckdir, base, est_params, [task.ids[i] for i in train], resume)
                _with_checkpoint(est, ckdir)
            if start is not None:
                say(f"  fold {k}: resuming after epoch {done}, from {ckdir}")
            t0 = time.perf_counter()
            if _fit_fold(est, list(X[train]), task.y[train], start):
                where = (f"; its checkpoint after epoch {len(est.history)} is in {ckdir}: "
                         "rerun to resume" if checkpoint else "")
                raise KeyboardInterrupt(f"fold {k} interrupted, not recorded{where}")
            t1 = time.perf_counter()
            pred = np.asarray(est.predict(list(X[test])), dtype=np.float64).reshape(-1)
            t2 = time.perf_counter()
            if len(pred) != len(test):
                raise ValueError(f"fold {k}: {type(est).__name__}.predict returned {len(pred)} "
                                 f"values for {len(test)} test structures (one target expected)")
            y_test = task.y[test]
            epochs = _epoch_times(est)
            # a resumed fold's fit time counts the epochs run before it stopped
            before = float(np.sum(epochs[:done])) if done and epochs else 0.0
            official = (task.official_sizes or {}).get(k, (len(train), len(test)))
            fold_result = {
                "data": {task.ids[i]: float(p) for i, p in zip(test, pred)},
                "parameters": {
                    "estimator": _class_path(est), "estimator_params": est_params,
                    "n_train": int(len(train)), "n_test": int(len(test)),
                    "n_train_official": int(official[0]), "n_test_official": int(official[1]),
                    "fit_time_s": round(t1 - t0 + before, 3),
                    "predict_time_s": round(t2 - t1, 3),
                    "mae_mad": float(mae_mad_score(y_test, pred)),
                    "epochs_run": len(epochs) if epochs is not None else None,
                    "epoch_time_s": round(float(np.mean(epochs)), 4) if epochs else None,
                    "graph_cache": {"hits": default_cache.hits - hits0,
                                    "misses": default_cache.misses - misses0},
                    "loadavg_start": fold_load0, "loadavg_end": _loadavg(),
                    "torch_threads": run["environment"].get("torch_threads"),
                    "finished_at": _now(),
                    # a fold run in parts: when each started, after which epoch, its load
                    **({"parts": parts} if len(parts) > 1 else {})},
                "scores": fold_scores(y_test, pred)}
            results[f"fold_{k}"] = fold_result
            record["tasks"][task.name]["results"] = results = _in_fold_order(results)
            run["folds_run"].append(k)
            run["loadavg_end"] = _loadavg()
            run["wall_time_s"] = round(time.perf_counter() - t_start, 3)
            # resume=False replaces the file at the first save, then merges too
            _save(record, task, path, row_path,
                  merge=(base, est_params) if resume or ran else None)
            if checkpoint:
                shutil.rmtree(ckdir, ignore_errors=True)
            ran.append(k)
            s = fold_result["scores"]
            say(f"  fold {k}: MAE {s['mae']:.4g} RMSE {s['rmse']:.4g} MAE/MAD "
                f"{fold_result['parameters']['mae_mad']:.3f} (fit {t1 - t0:.1f} s, predict "
                f"{t2 - t1:.1f} s, load {fold_load0} -> {run['loadavg_end']})")
            if on_fold_end is not None:
                on_fold_end(k, fold_result)
    return RunResult(record=record, path=path, row=markdown_row(record), ran=ran,
                     skipped=skipped)


# ---------------------------------------------------------------- markdown
def _fmt(x):
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def _fmt_time(s):
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def markdown_row(record):
    """The RESULTS.md table row of a record (see :data:`MARKDOWN_HEADER`).

    Columns: task (unit), model label, non-default parameters, MAE mean ±
    std over the finished folds, mean RMSE, mean MAE/MAD, folds (done of
    the protocol's, with training rows against the official count when
    fewer), wall time (graphs + fit + predict, and fit per fold), the
    1-minute load average range seen at the folds' starts and ends, and the
    published matbench v0.1 MAEs of the task (the model's own first).

    Parameters
    ----------
    record : dict or str or Path
        A record or its file.

    Returns
    -------
    str
    """
    if not isinstance(record, dict):
        record = read_record(record)
    meta = record["user_metadata"]["skcrystal"]
    task = meta["task"]
    name = task["name"]
    results = record["tasks"][name]["results"]
    scores = meta.get("scores") or {}
    unit = f" ({task['unit']})" if task.get("unit") else ""
    label = meta["label"]
    if not scores:
        return (f"| {name}{unit} | {label} | {meta['params_summary']} | no fold finished "
                "| | | | | | |")
    folds = [results[f"fold_{k}"]["parameters"] for k in meta["folds_done"]]
    n_train = int(np.mean([p["n_train"] for p in folds]))
    n_off = int(np.mean([p["n_train_official"] for p in folds]))
    total = task.get("folds_official") or len(task["folds_available"])
    folds_txt = f"{len(folds)}/{total}"
    if len(folds) < total:
        folds_txt += f" ({', '.join(str(k) for k in meta['folds_done'])})"
    folds_txt += f", ~{n_train} train"
    if n_train != n_off:
        folds_txt += f" of {n_off} official"
    graph = sum(r.get("graph_time_s") or 0.0 for r in meta["runs"])
    fit = [p["fit_time_s"] for p in folds]
    pred = [p["predict_time_s"] for p in folds]
    wall = f"{_fmt_time(graph + sum(fit) + sum(pred))} (fit {_fmt_time(np.mean(fit))}/fold)"
    loads = [p[key][0] for p in folds for key in ("loadavg_start", "loadavg_end")
             if p.get(key)]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"
    published = "n/a"
    ref = PUBLISHED.get(task.get("published_as") or "")
    if ref:
        models = ref["models"]
        own = next((m for m in models if label.lower().startswith(m.lower())), None)
        order = ([own] if own else []) + [m for m in models if m != own]
        published = " · ".join(f"{m} {models[m]}" for m in order)
        if task.get("published_note"):
            published += f" ({task['published_note']})"
    mae = scores["mae"]
    summary = meta["params_summary"].replace("|", "\\|")
    return (f"| {name}{unit} | {label} | {summary} | "
            f"{_fmt(mae['mean'])} ± {_fmt(mae['std'])} | {_fmt(scores['rmse']['mean'])} | "
            f"{scores['mae_mad']['mean']:.3f} | {folds_txt} | {wall} | {load} | "
            f"{published} |")

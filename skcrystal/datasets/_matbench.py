"""matbench tasks: local json.gz files, official folds, and matminer download.

Official matbench folds are ``KFold(5, shuffle=True, random_state=18012019)``
(``StratifiedKFold`` for classification) over the full task in load order;
the fold file (``matbench_<task>_folds.json``) is authoritative and is what
these helpers read. Its layout::

    {"metadata": {"n_splits": 5, "random_state": 18012019, "shuffle": true},
     "splits": {"matbench_<task>": {"fold_0": {"train": [ids], "test": [ids]},
                                    ...}}}
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._io import _check_path, _load_json

__all__ = ["load_matbench_json", "load_matbench", "matbench_folds", "matbench_test_fold"]

# matbench v0.1 tasks whose inputs are structures (the others, expt_gap,
# expt_is_metal, glass and steels, are compositions only)
_STRUCTURE_TASKS = ("dielectric", "jdft2d", "log_gvrh", "log_kvrh", "mp_e_form",
                    "mp_gap", "mp_is_metal", "perovskites", "phonons")
_COMPOSITION_TASKS = ("expt_gap", "expt_is_metal", "glass", "steels")


def _short_task(task):
    task = str(task)
    return task[len("matbench_"):] if task.startswith("matbench_") else task


def _matbench_ids(task, n):
    """Ids matbench gives rows of a task: mb-<task with dashes>-<1-based, zero-padded>."""
    short = _short_task(task).replace("_", "-")
    width = len(str(n))
    return [f"mb-{short}-{i + 1:0{width}d}" for i in range(n)]


def _read_fold_file(fold_file, ids, task=None):
    """Return (task key, {fold number: (train id set, test id set)})."""
    fold_file = _check_path(fold_file)
    content = _load_json(fold_file)
    splits = content.get("splits") if isinstance(content, dict) else None
    if not isinstance(splits, dict) or not splits:
        raise ValueError(f"{fold_file} is not a matbench fold file (no 'splits' mapping "
                         "of task -> fold_k -> {train, test})")
    if task is not None:
        key = "matbench_" + _short_task(task)
        if key not in splits:
            raise ValueError(f"task={task!r} is not in {fold_file}; it has {sorted(splits)}")
    elif len(splits) == 1:
        key = next(iter(splits))
    else:
        # several tasks in one file: use the task named by the ids (mb-<task>-001)
        prefix = str(ids[0]).rsplit("-", 1)[0] if len(ids) else ""
        matches = [k for k in splits if "mb-" + _short_task(k).replace("_", "-") == prefix]
        if len(matches) != 1:
            raise ValueError(f"{fold_file} holds several tasks {sorted(splits)}; pass task=")
        key = matches[0]
    folds = {}
    for name, fold in splits[key].items():
        k = int(str(name).rsplit("_", 1)[-1])
        folds[k] = (set(fold["train"]), set(fold["test"]))
    return fold_file, key, dict(sorted(folds.items()))


def matbench_test_fold(fold_file, ids, task=None):
    """The official fold in which each row is a test row.

    Parameters
    ----------
    fold_file : str or Path
        ``matbench_<task>_folds.json``.
    ids : sequence of str
        matbench ids of the rows you have (e.g. ``mb-jdft2d-001``), in your
        row order.
    task : str, optional
        Task name (``"jdft2d"`` or ``"matbench_jdft2d"``); needed only when
        the file holds several tasks and the ids do not tell which.

    Returns
    -------
    test_fold : ndarray of int, shape (n_rows,)
        Fold number (0-4) per row; usable as
        ``sklearn.model_selection.PredefinedSplit(test_fold)``, which gives
        the same splits as :func:`matbench_folds`.

    Raises
    ------
    ValueError
        An id is not in the task's folds, or is a test row of no fold
        (or of several).
    """
    ids = [str(i) for i in ids]
    fold_file, key, folds = _read_fold_file(fold_file, ids, task)
    test_fold = np.full(len(ids), -1, dtype=int)
    for k, (_, test) in folds.items():
        hit = np.array([i in test for i in ids], dtype=bool)
        if np.any(hit & (test_fold >= 0)):
            row = int(np.flatnonzero(hit & (test_fold >= 0))[0])
            raise ValueError(f"ids[{row}] ({ids[row]!r}) is a test row of several folds "
                             f"in {fold_file}; the file is not a partition")
        test_fold[hit] = k
    missing = np.flatnonzero(test_fold < 0)
    if len(missing):
        listed = ", ".join(f"ids[{i}]={ids[i]!r}" for i in missing[:5])
        raise ValueError(f"{len(missing)} ids are in no test fold of {key} in "
                         f"{fold_file}: {listed}{' ...' if len(missing) > 5 else ''}")
    return test_fold


def matbench_folds(fold_file, ids, task=None, *, _stacklevel=2):
    """Official matbench folds restricted to the rows you have, for ``cv=``.

    Parameters
    ----------
    fold_file : str or Path
        ``matbench_<task>_folds.json``.
    ids : sequence of str
        matbench ids of your rows, in row order (``load_matbench_json(...,
        as_frame=True)["id"]``).
    task : str, optional
        See :func:`matbench_test_fold`.

    Returns
    -------
    cv : list of (train_idx, test_idx)
        One pair of int arrays (positions in ``ids``) per official fold,
        in fold order; pass it as ``cv=`` to
        ``sklearn.model_selection.cross_val_score``. ``train_idx`` are your
        rows in the fold's official training set, ``test_idx`` your rows in
        its test set, so the pairs are disjoint and every row is a test row
        exactly once.

    Notes
    -----
    With the whole task loaded these are exactly the official folds. With
    only part of it (the shared jdft2d file holds fold 0's training set,
    508 of 636 rows) each fold is cut down to the rows present: a fold
    with no test row present (fold 0 there) is dropped, with a warning,
    because scikit-learn cannot score an empty test set; the other folds
    train on fewer rows than officially (about 381 instead of 509), so
    scores are comparable between models run this way but not to the
    published leaderboard.
    """
    ids = [str(i) for i in ids]
    test_fold = matbench_test_fold(fold_file, ids, task)
    fold_file, key, folds = _read_fold_file(fold_file, ids, task)
    cv, dropped = [], []
    for k, (train, _) in folds.items():
        test_idx = np.flatnonzero(test_fold == k)
        train_idx = np.array([j for j, i in enumerate(ids) if i in train], dtype=int)
        if len(test_idx) == 0 or len(train_idx) == 0:
            dropped.append(k)
            continue
        cv.append((train_idx, test_idx))
    if dropped:
        warnings.warn(
            f"{key}: dropped fold(s) {dropped} of {fold_file}: none of their "
            f"test rows are among the {len(ids)} rows given (only part of the "
            f"task is loaded); {len(cv)} folds remain",
            UserWarning, stacklevel=_stacklevel)
    return cv


def _structures_from_dicts(dicts, path, ids):
    from pymatgen.core import Structure

    out = []
    for i, d in enumerate(dicts):
        if isinstance(d, Structure):
            out.append(d)
            continue
        try:
            out.append(Structure.from_dict(d))
        except Exception as exc:
            raise ValueError(f"row {i} (id {ids[i]!r}) of {path}: not a Structure "
                             f"dict ({type(exc).__name__}: {exc})") from None
    return out


def _matbench_from_split(data, path, target=None, folds=None, as_frame=False):
    import pandas as pd

    columns = list(data["columns"])
    if "structure" not in columns:
        raise ValueError(f"{path} has no 'structure' column (columns: {columns}); "
                         "composition-only matbench tasks are not supported")
    targets = [c for c in columns if c != "structure"]
    if target is None:
        if len(targets) != 1:
            raise ValueError(f"{path} has several target columns {targets}; pass target=")
        target = targets[0]
    if target not in targets:
        raise ValueError(f"target={target!r} is not a column of {path}; available "
                         f"columns: {columns}")
    if len(data["data"]) == 0:
        raise ValueError(f"{path} has no data rows (columns {columns})")
    ids = [str(i) for i in data["index"]]
    s_col, t_col = columns.index("structure"), columns.index(target)
    structures = _structures_from_dicts([row[s_col] for row in data["data"]], path, ids)
    y = np.array([row[t_col] for row in data["data"]])
    cv = test_fold = None
    if folds is not None:
        if isinstance(folds, str) and folds == "auto":
            task = ids[0].rsplit("-", 1)[0][3:].replace("-", "_") if ids else ""
            folds = Path(path).with_name(f"matbench_{task}_folds.json")
            if not folds.exists():
                raise FileNotFoundError(f"folds='auto' looked for {folds} (beside {path}); "
                                        "pass the fold file's path as folds=")
        test_fold = matbench_test_fold(folds, ids)
        if not as_frame:
            # warn at the user's call (load_matbench_json or load)
            cv = matbench_folds(folds, ids, _stacklevel=4)
    if as_frame:
        df = pd.DataFrame({"id": ids, "structure": structures, target: y})
        if test_fold is not None:
            df["test_fold"] = test_fold
        return df
    return (structures, y) if cv is None else (structures, y, cv)


def load_matbench_json(path, target=None, folds=None, as_frame=False):
    """Load a matbench task file (``matbench_<task>.json.gz``).

    The file is a pandas split-orient JSON (``index`` = matbench ids such as
    ``mb-jdft2d-001``, ``columns = [structure, <target>]``, each structure a
    pymatgen ``Structure.as_dict()``), gzipped or not; what matminer
    downloads and what matbench publishes.

    Parameters
    ----------
    path : str or Path
    target : str, optional
        Target column; by default the single non-structure column.
    folds : str or Path or "auto", optional
        The official fold file (``matbench_<task>_folds.json``), or
        ``"auto"`` to use the one beside ``path``. Then also return the
        official folds restricted to the loaded rows (see
        :func:`matbench_folds`, including what happens when only part of
        the task is present).
    as_frame : bool
        Return a DataFrame ``id, structure, <target>`` (plus ``test_fold``,
        the official test fold of each row, when ``folds`` is given;
        ``PredefinedSplit(df.test_fold)`` is then the cv).

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,)
        In the task's unit (e.g. meV/atom for jdft2d ``exfoliation_en``).
    cv : list of (train_idx, test_idx)
        Only when ``folds`` is given and ``as_frame`` is False.
    """
    path = _check_path(path)
    data = _load_json(path)
    if not (isinstance(data, dict) and {"index", "columns", "data"} <= set(data)):
        raise ValueError(f"{path} is not a matbench file: expected pandas split-orient "
                         "JSON with 'index', 'columns' and 'data'")
    return _matbench_from_split(data, path, target=target, folds=folds, as_frame=as_frame)


def load_matbench(task, as_frame=False, data_home=None):
    """Download (or read matminer's cache of) a matbench task with matminer.

    Parameters
    ----------
    task : str
        ``"jdft2d"``, ``"perovskites"``... (or ``"matbench_jdft2d"``); one of
        the structure tasks ``dielectric, jdft2d, log_gvrh, log_kvrh,
        mp_e_form, mp_gap, mp_is_metal, perovskites, phonons``.
    as_frame : bool
        Return a DataFrame ``id, structure, <target>`` (ids as in matbench).
    data_home : str, optional
        matminer's download folder.

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,)

    Raises
    ------
    ValueError
        Unknown or composition-only task.
    OSError
        matminer cannot download the file (no network...). The message
        names the offline alternative: fetch ``matbench_<task>.json.gz``
        elsewhere and use :func:`load_matbench_json`.
    """
    short = _short_task(task)
    if short in _COMPOSITION_TASKS:
        raise ValueError(f"task={task!r}: matbench_{short} has compositions, not "
                         "structures; graph models need structures")
    if short not in _STRUCTURE_TASKS:
        raise ValueError(f"task={task!r} is not a matbench structure task; choose "
                         f"from {list(_STRUCTURE_TASKS)}")
    name = f"matbench_{short}"
    url = f"https://ml.materialsproject.org/projects/{name}.json.gz"
    try:
        import matminer.datasets as mds
        kwargs = {} if data_home is None else {"data_home": data_home}
        df = mds.load_dataset(name, **kwargs)
    except Exception as exc:  # network, proxy, corrupt cache, missing matminer...
        # one readable message: the chained traceback would bury the hint
        raise OSError(
            f"could not load {name} with matminer.datasets.load_dataset "
            f"({type(exc).__name__}: {exc}). Offline? Download {name}.json.gz "
            f"elsewhere ({url}) and load the local file with "
            f"skcrystal.datasets.load_matbench_json('{name}.json.gz')") from None
    targets = [c for c in df.columns if c != "structure"]
    target = targets[0]
    structures = list(df["structure"])
    y = df[target].to_numpy()
    if as_frame:
        import pandas as pd
        return pd.DataFrame({"id": _matbench_ids(short, len(df)),
                             "structure": structures, target: y})
    return structures, y

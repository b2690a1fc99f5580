"""The demo data set shipped inside the package, and the shared-data locator."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["load_perovskites", "shared_data_path"]

_DATA = Path(__file__).resolve().parent / "data"
PEROVSKITES_FILE = _DATA / "perovskites_demo.csv.gz"


def load_perovskites(n=None, target="heat_all", as_frame=False, random_state=None,
                     n_jobs=None):
    """A 1,000-row subset of the Castelli cubic perovskites, bundled (no download).

    Rows are the first 1,000 of the CDVAE split's ``perovskites_part1.csv``
    (Castelli et al. 2012, the CGCNN paper's perovskite study; MIT). Every
    structure is a 5-atom ABX3 cell, kept as written.

    Parameters
    ----------
    n : int, optional
        Number of rows (at most 1000); all by default.
    target : str or list of str, default "heat_all"
        ``heat_all``: heat of formation (eV per 5-atom cell, the
        matbench_perovskites target); ``heat_ref`` (eV); ``dir_gap``,
        ``ind_gap``: direct and indirect band gap (eV). A list gives a
        2-D ``y``.
    as_frame : bool
        Return a DataFrame with all columns ``material_id, formula,
        heat_all, heat_ref, dir_gap, ind_gap`` and ``structure``.
    random_state : int, RandomState or None
        With ``n``: ``None`` takes the first ``n`` rows (the file is already
        in random order); otherwise ``n`` rows drawn without replacement,
        kept in file order.
    n_jobs : int, optional
        joblib workers for CIF parsing (rarely worth it: ~0.3 s for all rows).

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n,) or (n, n_targets)
        Or a DataFrame with ``as_frame=True``.
    """
    import pandas as pd

    from ._cif import structures_from_cif
    from ._files import _missing_columns, _targets_as_list

    df = pd.read_csv(PEROVSKITES_FILE)
    names, two_d = _targets_as_list(target)
    _missing_columns(names, [c for c in df.columns if c != "cif"], PEROVSKITES_FILE, "target")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= len(df):
            raise ValueError(f"n must be an integer in 1..{len(df)}, got {n!r}")
        if random_state is None:
            df = df.iloc[:n]
        else:
            from sklearn.utils import check_random_state
            rows = check_random_state(random_state).choice(len(df), size=n, replace=False)
            df = df.iloc[np.sort(rows)]
    df = df.reset_index(drop=True)
    structures = structures_from_cif(df["cif"], n_jobs=n_jobs, ids=df["material_id"])
    if as_frame:
        out = df.drop(columns="cif")
        out.insert(1, "structure", structures)
        return out
    values = df[names].to_numpy(dtype=float)
    return structures, (values if two_d else values[:, 0])


def shared_data_path():
    """Locate the project's shared data folder, or ``None``.

    Looks at the ``SKCRYSTAL_SHARED_DATA`` environment variable first, then
    at ``../shared/data`` beside the repository checkout that holds this
    package.

    Returns
    -------
    Path or None
    """
    env = os.environ.get("SKCRYSTAL_SHARED_DATA")
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    path = Path(__file__).resolve().parents[3] / "shared" / "data"
    return path if path.is_dir() else None

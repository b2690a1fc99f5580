"""Loaders for the on-disk formats crystal-ML users have.

Every loader returns ``(structures, y)`` (a list of pymatgen ``Structure``
and a numpy array) or, with ``as_frame=True``, a DataFrame with a
``structure`` column plus the id and target columns.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from ._cif import _parse_many, _resolve_errors

__all__ = ["load_csv", "load_cgcnn_folder", "load_alignn_folder", "load_mlearn", "load"]

_ID_CANDIDATES = ("material_id", "id", "mbid", "jid", "mp_id", "task_id")


def _check_path(path, kind="file"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} not found: {path}")
    if kind == "folder" and not path.is_dir():
        raise NotADirectoryError(f"expected a folder, got a file: {path}")
    if kind == "file" and path.is_dir():
        raise IsADirectoryError(f"expected a file, got a folder: {path}")
    return path


def _targets_as_list(target, name="target"):
    if isinstance(target, str):
        return [target], False
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, str) for t in target):
        return list(target), True
    raise TypeError(f"{name} must be a column name or a non-empty list of column "
                    f"names, got {target!r}")


def _missing_columns(wanted, columns, path, param):
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(
            f"{param}={missing[0]!r} is not a column of {path}; available "
            f"columns: {list(columns)}")


def _frame(structures, y, id_name, ids, target_names):
    import pandas as pd
    data = {}
    if id_name is not None:
        data[id_name] = list(ids)
    data["structure"] = structures
    y2 = np.asarray(y).reshape(len(structures), -1)
    for k, name in enumerate(target_names):
        data[name] = y2[:, k]
    return pd.DataFrame(data)


def load_csv(path, target, cif_column="cif", id_column=None, as_frame=False,
             n_jobs=None, on_error="raise", parser="auto"):
    """Load a CSV with one CIF string per row (perovskites, carbon_24, supercon).

    Parameters
    ----------
    path : str or Path
        CSV file (``.csv`` or compressed, e.g. ``.csv.gz``).
    target : str or list of str
        Target column(s). A list gives a 2-D ``y`` of shape
        (n_samples, n_targets), in the order given.
    cif_column : str
        Column holding the CIF texts.
    id_column : str, optional
        Column of row identifiers (used in error messages and as the id
        column of the frame). ``None`` picks the first present of
        ``material_id, id, mbid, jid, mp_id, task_id``, if any.
    as_frame : bool
        Return a DataFrame ``[id_column,] structure, *targets``.
    n_jobs : int, optional
        joblib workers for CIF parsing (see :func:`structures_from_cif`).
    on_error : {"raise", "skip"}
        A row whose CIF cannot be parsed raises ``ValueError`` naming the row
        (0-based data row, header excluded) and its id; ``"skip"`` drops
        such rows with one warning listing them.
    parser : {"auto", "pymatgen"}
        See :func:`structures_from_cif`.

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Or a DataFrame with ``as_frame=True``.
    """
    import pandas as pd

    path = _check_path(path)
    names, two_d = _targets_as_list(target)
    df = pd.read_csv(path)
    _missing_columns([cif_column], df.columns, path, "cif_column")
    _missing_columns(names, df.columns, path, "target")
    if id_column is None:
        id_column = next((c for c in _ID_CANDIDATES if c in df.columns), None)
    else:
        _missing_columns([id_column], df.columns, path, "id_column")
    ids = df[id_column].tolist() if id_column is not None else None
    structures, errors = _parse_many(df[cif_column].tolist(), n_jobs=n_jobs, parser=parser)
    structures, keep = _resolve_errors(structures, errors, on_error, ids=ids,
                                       where=f" of {path}")
    values = df[names].to_numpy()[keep]
    y = values if two_d else values[:, 0]
    if as_frame:
        kept_ids = [ids[i] for i in keep] if ids is not None else None
        return _frame(structures, y, id_column, kept_ids, names)
    return structures, y


def _read_id_prop(folder):
    import pandas as pd

    id_prop = folder / "id_prop.csv"
    if not id_prop.exists():
        raise FileNotFoundError(f"{id_prop} not found (expected id_prop.csv in {folder})")
    # no header; the first column is an identifier and must stay text
    # ("0012" or "1000041" are ids, not numbers)
    table = pd.read_csv(id_prop, header=None, dtype={0: str})
    if table.shape[1] < 2:
        raise ValueError(f"{id_prop} needs at least two columns (id, target), "
                         f"got {table.shape[1]}")
    ids = table[0].str.strip().tolist()
    y = table.iloc[:, 1:].to_numpy(dtype=float)
    return id_prop, ids, (y[:, 0] if y.shape[1] == 1 else y)


def _target_names(y):
    return ["target"] if np.ndim(y) == 1 else [f"target_{k}" for k in range(y.shape[1])]


def _read_text(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        return fh.read()


def load_cgcnn_folder(path, as_frame=False, n_jobs=None, on_error="raise"):
    """Load a folder in the reference CGCNN input format.

    The folder holds ``id_prop.csv`` (no header; ``id,target[,target2...]``)
    and one ``<id>.cif`` per row. Other files (``atom_init.json``, the
    reference code's element feature table) are ignored.

    Parameters
    ----------
    path : str or Path
        The folder.
    as_frame : bool
        Return a DataFrame ``id, structure, target`` (``target_0``,
        ``target_1``... for several target columns).
    n_jobs : int, optional
        joblib workers for CIF parsing.
    on_error : {"raise", "skip"}
        What to do with a CIF that cannot be parsed (see :func:`load_csv`).

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Targets in id_prop.csv order, as float.
    """
    folder = _check_path(path, "folder")
    id_prop, ids, y = _read_id_prop(folder)
    texts = []
    for i, ident in enumerate(ids):
        cif = folder / f"{ident}.cif"
        if not cif.exists():
            raise FileNotFoundError(
                f"{cif} not found (row {i} of {id_prop} names id {ident!r})")
        texts.append(_read_text(cif))
    structures, errors = _parse_many(texts, n_jobs=n_jobs)
    structures, keep = _resolve_errors(structures, errors, on_error, ids=ids,
                                       where=f" of {id_prop}")
    y = y[keep]
    if as_frame:
        return _frame(structures, y, "id", [ids[i] for i in keep], _target_names(y))
    return structures, y


def _parse_structure_file(path):
    """One structure file: CIF by extension, otherwise VASP POSCAR."""
    from pymatgen.core import Structure

    name = path.name.lower()
    if name.endswith(".cif") or name.endswith(".cif.gz"):
        structures, errors = _parse_many([_read_text(path)])
        if errors[0] is not None:
            raise ValueError(errors[0])
        return structures[0]
    return Structure.from_str(_read_text(path), fmt="poscar")


def load_alignn_folder(path, as_frame=False, on_error="raise"):
    """Load a folder in the reference ALIGNN input format.

    The folder holds ``id_prop.csv`` (no header; ``filename,target[,...]``)
    and the structure files it names: VASP POSCAR files (e.g.
    ``POSCAR-JVASP-10.vasp``), or CIFs when the name ends in ``.cif``.

    Parameters
    ----------
    path : str or Path
        The folder.
    as_frame : bool
        Return a DataFrame ``id, structure, target``; ``id`` is the file
        name as written in id_prop.csv.
    on_error : {"raise", "skip"}
        What to do with a file that cannot be parsed.

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
    """
    import warnings

    folder = _check_path(path, "folder")
    id_prop, ids, y = _read_id_prop(folder)
    structures, errors = [], []
    for i, name in enumerate(ids):
        file = folder / name
        if not file.exists():
            raise FileNotFoundError(f"{file} not found (row {i} of {id_prop})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structures.append(_parse_structure_file(file))
            errors.append(None)
        except Exception as exc:  # reported per row below
            structures.append(None)
            errors.append(f"{type(exc).__name__}: {exc}")
    structures, keep = _resolve_errors(structures, errors, on_error, ids=ids,
                                       where=f" of {id_prop}")
    y = y[keep]
    if as_frame:
        return _frame(structures, y, "id", [ids[i] for i in keep], _target_names(y))
    return structures, y


def _load_json(path):
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _mlearn_from_records(records, path, per_atom=True, as_frame=False):
    from pymatgen.core import Lattice, Structure

    structures, energies, jids = [], [], []
    for i, rec in enumerate(records):
        try:
            atoms = rec["atoms"]
            structures.append(Structure(
                Lattice(atoms["lattice_mat"]), atoms["elements"], atoms["coords"],
                coords_are_cartesian=bool(atoms.get("cartesian", False))))
            energies.append(float(rec["total_energy"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"entry {i} (jid {rec.get('jid') if isinstance(rec, dict) else None!r}) "
                f"of {path} is not an mlearn record with atoms{{lattice_mat, "
                f"coords, elements, cartesian}} and total_energy: {exc}") from None
        jids.append(str(rec.get("jid", i)))
    n_atoms = np.array([len(s) for s in structures])
    y = np.array(energies)
    if not per_atom:
        y = y * n_atoms
    if as_frame:
        import pandas as pd
        return pd.DataFrame({
            "jid": jids, "structure": structures, "n_atoms": n_atoms,
            ("energy_per_atom" if per_atom else "energy"): y,
            "forces": [r.get("forces") for r in records],
            "stresses": [r.get("stresses") for r in records]})
    return structures, y


def load_mlearn(path, per_atom=True, as_frame=False):
    """Load an mlearn interatomic-potential file (e.g. ``Si.id_prop.json``).

    The file is a JSON list of ``{jid, atoms: {lattice_mat, coords,
    elements, cartesian}, total_energy, forces, stresses}``;
    ``total_energy`` is stored per atom.

    Parameters
    ----------
    path : str or Path
        The JSON file (optionally gzipped).
    per_atom : bool, default True
        ``True``: ``y`` is the energy per atom as stored (eV/atom).
        ``False``: the extensive cell energy, ``total_energy * n_atoms``
        (eV per cell).
    as_frame : bool
        Return a DataFrame ``jid, structure, n_atoms,
        energy_per_atom`` (or ``energy`` with ``per_atom=False``),
        ``forces`` (eV/Å, n_atoms x 3 lists) and ``stresses`` (as stored).

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,)
    """
    path = _check_path(path)
    records = _load_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path} is not an mlearn file: expected a JSON list of "
                         f"records, got a {type(records).__name__}")
    return _mlearn_from_records(records, path, per_atom=per_atom, as_frame=as_frame)


def _folder_kind(folder):
    """'cgcnn' or 'alignn', from where id_prop.csv's first column points."""
    id_prop, ids, _ = _read_id_prop(folder)
    if ids and all((folder / f"{i}.cif").exists() for i in ids[:5]):
        return "cgcnn"
    if ids and all((folder / i).exists() for i in ids[:5]):
        return "alignn"
    raise ValueError(
        f"cannot tell the format of {folder}: the first ids of {id_prop} "
        f"({ids[:3]}) are neither <id>.cif files (CGCNN) nor file names "
        "(ALIGNN) in that folder")


def load(path, target=None, **kwargs):
    """Load any supported format, chosen from what ``path`` is.

    ========================================  ===========================
    ``path``                                   loader
    ========================================  ===========================
    folder with id_prop.csv + ``<id>.cif``     :func:`load_cgcnn_folder`
    folder with id_prop.csv + named files      :func:`load_alignn_folder`
    ``.csv`` / ``.csv.gz``                     :func:`load_csv` (needs
                                               ``target``)
    ``.json[.gz]`` in pandas split orient      :func:`load_matbench_json`
    ``.json[.gz]`` list of mlearn records      :func:`load_mlearn`
    ========================================  ===========================

    Parameters
    ----------
    path : str or Path
    target : str or list of str, optional
        Target column(s) for CSV (required) and matbench files (optional
        there: the single non-structure column by default). Folders and
        mlearn files have fixed targets; passing one raises ``ValueError``.
    **kwargs
        Passed to the chosen loader (``as_frame``, ``on_error``...).
        ``n_jobs`` is accepted for every format and ignored by loaders that
        do not parse CIFs (POSCAR, matbench and mlearn files are quick).

    Returns
    -------
    Whatever the chosen loader returns.
    """
    from ._matbench import _matbench_from_split

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    n_jobs = kwargs.pop("n_jobs", None)

    def no_target(kind):
        if target is not None:
            raise ValueError(f"target={target!r} does not apply to {kind} ({path}): "
                             "its targets are fixed by the format")

    if path.is_dir():
        kind = _folder_kind(path)
        no_target(f"a {kind.upper()} folder")
        if kind == "cgcnn":
            return load_cgcnn_folder(path, n_jobs=n_jobs, **kwargs)
        return load_alignn_folder(path, **kwargs)
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")):
        if target is None:
            import pandas as pd
            columns = list(pd.read_csv(path, nrows=0).columns)
            raise ValueError(f"target is required for a CSV file ({path}); "
                             f"available columns: {columns}")
        return load_csv(path, target=target, n_jobs=n_jobs, **kwargs)
    if name.endswith((".json", ".json.gz")):
        data = _load_json(path)
        if isinstance(data, dict) and {"index", "columns", "data"} <= set(data):
            return _matbench_from_split(data, path, target=target, **kwargs)
        if isinstance(data, list) and (not data or (isinstance(data[0], dict) and "atoms" in data[0])):
            no_target("an mlearn file")
            return _mlearn_from_records(data, path, **kwargs)
        raise ValueError(f"{path} is JSON but neither a matbench file (pandas "
                         "split orient: index, columns, data) nor an mlearn "
                         "list of {jid, atoms, total_energy} records")
    raise ValueError(
        f"unknown format for {path}: expected a folder with id_prop.csv, a "
        ".csv file of CIFs, a matbench .json.gz or an mlearn .json")


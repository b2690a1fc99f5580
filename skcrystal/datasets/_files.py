"""Loaders for the on-disk formats crystal-ML users have.

Every loader with targets returns ``(structures, y)`` (a list of pymatgen
``Structure`` and a numpy array) or, with ``as_frame=True``, a DataFrame
with a ``structure`` column plus the id and target columns.
:func:`load_structures` returns ``(ids, structures)`` for any format, with
or without targets. Format detection (:func:`_detect_format`) and the
parsing of CSVs, id_prop.csv folders and structure files are shared by
all of them.
"""
from __future__ import annotations

import gzip
import os
import re

import numpy as np

from ._cif import _parse_many, _resolve_errors
from ._io import _as_path, _check_path, _load_json, _parse_poscar
from ._matbench import _matbench_from_split, _structures_from_dicts

__all__ = ["load_csv", "load_cgcnn_folder", "load_alignn_folder", "load_mlearn", "load",
           "load_structures"]

_ID_CANDIDATES = ("material_id", "id", "mbid", "jid", "mp_id", "task_id")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")
# structure files recognised by name (folders without id_prop.csv, single files)
_STRUCTURE_SUFFIXES = (".cif", ".cif.gz", ".vasp", ".poscar")
_STRUCTURE_PREFIXES = ("poscar", "contcar")


def _targets_as_list(target, name="target"):
    if isinstance(target, str):
        return [target], False
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, str) for t in target):
        return list(target), True
    raise TypeError(f"{name} must be a column name or a non-empty list of column "
                    f"names, got {target!r}")


def _missing_columns(wanted, columns, path, param):
    for c in wanted:  # a list or dict is no column name (pandas: "unhashable type")
        if not isinstance(c, (str, int)):
            raise TypeError(f"{param} must be a column name, got {type(c).__name__}: {c!r:.60}")
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


def _cif_csv_table(path, cif_column, id_column, target=()):
    """The table of a CSV of CIF strings, its columns checked, and the name of
    its id column (``None`` when there is none)."""
    import pandas as pd

    df = pd.read_csv(path)
    if len(df) == 0:
        raise ValueError(f"{path} has no data rows (columns {list(df.columns)})")
    _missing_columns([cif_column], df.columns, path, "cif_column")
    _missing_columns(target, df.columns, path, "target")
    if id_column is None:
        id_column = next((c for c in _ID_CANDIDATES if c in df.columns), None)
    else:
        _missing_columns([id_column], df.columns, path, "id_column")
    return df, id_column


def _read_cif_csv(path, cif_column, id_column, n_jobs, on_error, parser, target=()):
    """Read a CSV of CIF strings and parse the CIF column.

    Checks ``cif_column``, ``id_column`` and the ``target`` column names
    before parsing (parsing is the slow part). Returns the table, the id
    column's name (``None`` when there is none) and the parsed structures
    with their row positions (rows that fail are dropped with
    ``on_error="skip"``).
    """
    df, id_column = _cif_csv_table(path, cif_column, id_column, target)
    ids = df[id_column].tolist() if id_column is not None else None
    structures, errors = _parse_many(df[cif_column].tolist(), n_jobs=n_jobs, parser=parser)
    structures, keep = _resolve_errors(structures, errors, on_error, ids=ids,
                                       where=f" of {path}")
    return df, id_column, structures, keep


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
    path = _check_path(path)
    names, two_d = _targets_as_list(target)
    df, id_column, structures, keep = _read_cif_csv(
        path, cif_column, id_column, n_jobs, on_error, parser, target=names)
    values = df[names].to_numpy()[keep]
    y = values if two_d else values[:, 0]
    if as_frame:
        kept_ids = df[id_column].to_numpy()[keep] if id_column is not None else None
        return _frame(structures, y, id_column, kept_ids, names)
    return structures, y


def _read_id_prop(folder, targets=True):
    """(id_prop path, ids, y) of a CGCNN/ALIGNN folder.

    ``y`` is ``None`` when id_prop.csv has ids only, which is an error
    unless ``targets=False``.
    """
    import pandas as pd

    id_prop = folder / "id_prop.csv"
    if not id_prop.exists():
        raise FileNotFoundError(f"{id_prop} not found (expected id_prop.csv in {folder})")
    # no header; the first column is an identifier and must stay text
    # ("0012" or "1000041" are ids, not numbers)
    try:
        table = pd.read_csv(id_prop, header=None, dtype={0: str})
    except pd.errors.EmptyDataError:
        raise ValueError(f"{id_prop} is empty") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{id_prop} is not a CSV of id,target rows: {exc}") from None
    table = _drop_header_row(table, id_prop)
    ids = table[0].str.strip().tolist()
    if table.shape[1] < 2:
        if targets:
            raise ValueError(
                f"{id_prop} needs at least two columns (id, target), got "
                f"{table.shape[1]}; skcrystal.datasets.load_structures reads "
                "folders whose id_prop.csv has ids only")
        return id_prop, ids, None
    y = table.iloc[:, 1:].to_numpy(dtype=float)
    return id_prop, ids, (y[:, 0] if y.shape[1] == 1 else y)


# the target cells _id_prop_quick answers for: plain decimal numbers, which
# pandas reads as numbers too (no spaces, "1_000", "inf", "1.5(2)"); groups:
# integer digits, fraction digits, exponent
_PLAIN_NUMBER = re.compile(r"[+-]?(?=\.?\d)(\d*)\.?(\d*)(?:[eE]([+-]?\d+))?\Z")
# the cells pandas.read_csv reads as missing by default (its STR_NA_VALUES)
_PANDAS_NA = frozenset((
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"))


def _plain_float(cell):
    """``cell`` as the float pandas.read_csv reads from it, or None where that
    is not certain to be ``float(cell)``.

    pandas' default converter gathers up to 17 digits into a double and
    scales it by one power of ten. While the digits hold at most 15
    significant figures (an exact integer) and the power is at most
    1e22 (exact), that is one correctly rounded operation: ``float``'s
    value. Longer or more extreme numbers are left to pandas.
    """
    match = _PLAIN_NUMBER.match(cell)
    if match is None:
        return None
    whole, frac, exp = match.groups()
    digits = whole + frac
    scale = (int(exp) if exp else 0) - len(frac)
    if len(digits) > 17 or len(digits.lstrip("0")) > 15 or not -22 <= scale <= 22:
        return None
    return float(cell)


def _id_prop_quick(folder):
    """``_read_id_prop(folder, targets=False)`` of a plain id_prop.csv, read
    without pandas: (id_prop path, ids, y); None where :func:`_read_id_prop`
    must judge.

    ``skcrystal predict`` reads a folder without importing pandas (~0.3 s
    beside torch). Only a file whose every row has the same number of
    cells, with no quote, no blank-looking id, no cell pandas reads as
    missing and, past the id, plain decimal numbers whose value pandas
    reads exactly (:func:`_plain_float`; so no header row) is answered;
    anything else is None.
    """
    id_prop = folder / "id_prop.csv"
    try:
        with open(id_prop, encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeError):
        return None
    if '"' in text or "'" in text:
        return None
    ids, values, width = [], [], None
    for line in text.split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        if not line:
            continue  # pandas skips blank lines
        cells = line.split(",")
        if width is None:
            width = len(cells)
        ident = cells[0].strip()
        if (len(cells) != width or "\r" in line or not ident or ident in _PANDAS_NA
                or cells[0] in _PANDAS_NA):
            return None
        row = [_plain_float(c) for c in cells[1:]]
        if None in row:
            return None
        ids.append(ident)
        values.append(row)
    if not ids:
        return None
    if width == 1:
        return id_prop, ids, None
    y = np.array(values, dtype=float)
    return id_prop, ids, (y[:, 0] if width == 2 else y)


def _drop_header_row(table, id_prop):
    """id_prop.csv has no header in the reference codes; one is read and dropped.

    A first row whose target cells are text while every other row's are
    numbers is a header (``id,target``); a non-numeric target elsewhere is
    an error naming its row.
    """
    import pandas as pd

    if table.shape[1] < 2 or len(table) == 0:
        return table
    values = table.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    text = values.isna() & table.iloc[:, 1:].notna()
    bad_rows = text.any(axis=1).to_numpy()
    if bad_rows[0] and len(table) == 1:
        raise ValueError(
            f"{id_prop} has no data row: its only row {table.iloc[0].tolist()} has a "
            "non-numeric target (a header?); id_prop.csv holds id,target rows")
    if bad_rows[0] and not bad_rows[1:].any():
        import warnings
        warnings.warn(f"{id_prop}: the first row {table.iloc[0].tolist()} is read as a "
                      "header (the reference format has none)", UserWarning, stacklevel=4)
        return table.iloc[1:].reset_index(drop=True)
    if bad_rows.any():
        i = int(np.flatnonzero(bad_rows)[0])
        raise ValueError(
            f"{id_prop} row {i} ({table.iloc[i].tolist()}) has a non-numeric target; "
            "id_prop.csv holds id,target[,target...] rows with numeric targets")
    return table


def _target_names(y):
    return ["target"] if np.ndim(y) == 1 else [f"target_{k}" for k in range(y.shape[1])]


def _read_text(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _is_cif_file(name):
    return name.lower().endswith((".cif", ".cif.gz"))


def _is_structure_file(name):
    low = name.lower()
    return low.endswith(_STRUCTURE_SUFFIXES) or low.startswith(_STRUCTURE_PREFIXES)


def _listed_structure_file(name):
    """A structure file a folder scan takes: not hidden (macOS copies leave binary
    ``._name.cif`` files beside the real ones)."""
    return not name.startswith(".") and _is_structure_file(name)


def _folder_structure_files(folder):
    """The structure files of a folder without id_prop.csv, sorted by name."""
    return sorted((f for f in folder.iterdir()
                   if f.is_file() and _listed_structure_file(f.name)), key=lambda f: f.name)


def _parse_files(files, ids, where, n_jobs=None, on_error="raise"):
    """Parse structure files: CIF by extension, otherwise VASP POSCAR.

    CIFs go through the CIF parser (fast path, optional workers); a file
    that fails is reported (or skipped) as its row, like a CSV row.

    Returns
    -------
    structures : list of Structure
    keep : ndarray of int
        Positions in ``files`` of the returned structures.
    """
    import warnings

    structures, errors = [None] * len(files), [None] * len(files)
    cifs = [i for i, f in enumerate(files) if _is_cif_file(f.name)]
    parsed, failed = _parse_many([_read_text(files[i]) for i in cifs], n_jobs=n_jobs)
    for i, s, e in zip(cifs, parsed, failed):
        structures[i], errors[i] = s, e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's per-file POSCAR warnings
        for i in sorted(set(range(len(files))) - set(cifs)):
            try:
                structures[i] = _parse_poscar(_read_text(files[i]))
            except Exception as exc:  # reported per row by _resolve_errors
                errors[i] = f"{type(exc).__name__}: {exc}"
    what = "CIF" if len(cifs) == len(files) else "structure file"
    return _resolve_errors(structures, errors, on_error, ids=ids, where=where, what=what)


def _folder_files(folder, kind, ids, id_prop):
    """The structure file of each id of a CGCNN (``<id>.cif``) or ALIGNN folder.

    Raises ``FileNotFoundError`` naming the file and the ``id_prop`` row.
    """
    try:
        # one directory scan instead of a stat per id;
        # a name it does not list is still asked of the file system (a
        # path in a sub-folder, a case-insensitive file system)
        present = {e.name for e in os.scandir(folder) if e.is_file()}
    except OSError:
        present = set()
    files = []
    for i, ident in enumerate(ids):
        name = f"{ident}.cif" if kind == "cgcnn" else str(ident)
        file = folder / name
        if name not in present and not file.is_file():
            raise FileNotFoundError(
                f"{file} not found (row {i} of {id_prop} names id {ident!r})")
        files.append(file)
    return files


def _read_folder(folder, kind, n_jobs=None, on_error="raise", targets=True):
    """(ids, structures, y or None) of a CGCNN or ALIGNN folder, rows kept."""
    id_prop, ids, y = _read_id_prop(folder, targets=targets)
    files = _folder_files(folder, kind, ids, id_prop)
    # errors and skip reports name the file
    structures, keep = _parse_files(files, [f.name for f in files], f" of {id_prop}",
                                    n_jobs, on_error)
    return [ids[i] for i in keep], structures, (None if y is None else y[keep])


def _folder_result(ids, structures, y, as_frame):
    if as_frame:
        return _frame(structures, y, "id", ids, _target_names(y))
    return structures, y


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
    return _folder_result(*_read_folder(folder, "cgcnn", n_jobs, on_error), as_frame)


def load_alignn_folder(path, as_frame=False, on_error="raise", n_jobs=None):
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
    n_jobs : int, optional
        joblib workers for the CIF files among them (POSCARs are quick).

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
    """
    folder = _check_path(path, "folder")
    return _folder_result(*_read_folder(folder, "alignn", n_jobs, on_error), as_frame)


def _mlearn_entry(i, rec, path):
    jid = rec.get("jid") if isinstance(rec, dict) else None
    return f"entry {i} (jid {jid!r}) of {path}"


def _mlearn_structures(records, path):
    """(jids, structures) of mlearn records; energies are not needed."""
    from pymatgen.core import Lattice, Structure

    structures, jids = [], []
    for i, rec in enumerate(records):
        try:
            atoms = rec["atoms"]
            structures.append(Structure(
                Lattice(atoms["lattice_mat"]), atoms["elements"], atoms["coords"],
                coords_are_cartesian=bool(atoms.get("cartesian", False))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{_mlearn_entry(i, rec, path)} is not an mlearn record with "
                f"atoms{{lattice_mat, coords, elements, cartesian}}: {exc}") from None
        jids.append(str(rec.get("jid", i)))
    return jids, structures


def _mlearn_energies(records):
    """(total_energy per record in eV/atom, None), or (None, first entry without one)."""
    energies = []
    for i, rec in enumerate(records):
        try:
            energies.append(float(rec["total_energy"]))
        except (KeyError, TypeError, ValueError):
            return None, i
    return np.array(energies), None


def _mlearn_from_records(records, path, per_atom=True, as_frame=False):
    jids, structures = _mlearn_structures(records, path)
    y, i = _mlearn_energies(records)
    if y is None:
        raise ValueError(f"{_mlearn_entry(i, records[i], path)} has no numeric "
                         "total_energy; skcrystal.datasets.load_structures reads "
                         "structures without energies")
    n_atoms = np.array([len(s) for s in structures])
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
    import warnings
    quick = _id_prop_quick(folder)
    if quick is not None:
        id_prop, ids, _ = quick
    else:
        with warnings.catch_warnings():  # a header row is reported once, by the reader
            warnings.simplefilter("ignore")
            id_prop, ids, _ = _read_id_prop(folder, targets=False)
    if ids and all((folder / f"{i}.cif").exists() for i in ids[:5]):
        return "cgcnn"
    if ids and all((folder / i).exists() for i in ids[:5]):
        return "alignn"
    raise ValueError(
        f"cannot tell the format of {folder}: the first ids of {id_prop} "
        f"({ids[:3]}) are neither <id>.cif files (CGCNN) nor file names "
        "(ALIGNN) in that folder")


def _detect_format(path):
    """What ``path`` holds, from its name (and id_prop.csv for folders).

    Returns one of ``"cgcnn"``, ``"alignn"`` (folders with id_prop.csv),
    ``"files"`` (a folder of structure files without id_prop.csv),
    ``"csv"``, ``"json"`` (matbench or mlearn, told apart by content) and
    ``"structure"`` (one CIF or POSCAR file).
    """
    if not path.exists():
        raise FileNotFoundError(f"not found: {path}")
    if path.is_dir():
        return _folder_kind(path) if (path / "id_prop.csv").exists() else "files"
    name = path.name.lower()
    if name == "id_prop.csv":  # read as a CSV, its first row would be the header
        raise ValueError(f"{path} is the id_prop.csv of a CGCNN or ALIGNN folder: "
                         f"give the folder, {path.parent}")
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith((".json", ".json.gz")):
        return "json"
    if _is_structure_file(name):
        return "structure"
    raise ValueError(
        f"unknown format for {path}: expected a folder (with id_prop.csv, or of "
        "CIF/POSCAR files), a .csv file of CIFs, a matbench .json.gz, an mlearn "
        ".json or one structure file (.cif, .vasp, POSCAR)")


def _read_json_kind(path):
    """("matbench" or "mlearn", the parsed JSON)."""
    data = _load_json(path)
    if isinstance(data, dict) and {"index", "columns", "data"} <= set(data):
        return "matbench", data
    if isinstance(data, list) and (not data or (isinstance(data[0], dict) and "atoms" in data[0])):
        return "mlearn", data
    raise ValueError(f"{path} is JSON but neither a matbench file (pandas "
                     "split orient: index, columns, data) nor an mlearn "
                     "list of {jid, atoms, total_energy} records")


def load(path, target=None, **kwargs):
    """Load any supported format with targets, chosen from what ``path`` is.

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

    Structures without targets (an id-only id_prop.csv, a folder of CIF or
    POSCAR files, a single structure file) are read by
    :func:`load_structures`.

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
        do not parse CIFs (matbench and mlearn files are quick).

    Returns
    -------
    Whatever the chosen loader returns.
    """
    path = _as_path(path)
    kind = _detect_format(path)
    n_jobs = kwargs.pop("n_jobs", None)

    def no_target(what):
        if target is not None:
            raise ValueError(f"target={target!r} does not apply to {what} ({path}): "
                             "its targets are fixed by the format")

    if kind in ("cgcnn", "alignn"):
        no_target(f"a {kind.upper()} folder")
        loader = load_cgcnn_folder if kind == "cgcnn" else load_alignn_folder
        return loader(path, n_jobs=n_jobs, **kwargs)
    if kind in ("files", "structure"):
        raise ValueError(f"{path} has structures but no targets (no id_prop.csv); "
                         "read it with skcrystal.datasets.load_structures")
    if kind == "csv":
        if target is None:
            import pandas as pd
            columns = list(pd.read_csv(path, nrows=0).columns)
            raise ValueError(f"target is required for a CSV file ({path}); "
                             f"available columns: {columns}")
        return load_csv(path, target=target, n_jobs=n_jobs, **kwargs)
    json_kind, data = _read_json_kind(path)
    if json_kind == "matbench":
        return _matbench_from_split(data, path, target=target, **kwargs)
    no_target("an mlearn file")
    return _mlearn_from_records(data, path, **kwargs)


def load_structures(path, cif_column="cif", id_column=None, n_jobs=None,
                    on_error="raise", as_frame=False):
    """Load structures, with or without targets (e.g. new ones to predict).

    Reads every format :func:`load` reads, without needing (or returning)
    targets, plus the formats that have none:

    =============================================  ============================
    ``path``                                        ids
    =============================================  ============================
    folder with id_prop.csv (targets optional)      first column of id_prop.csv
    folder of ``.cif`` / ``.vasp`` / ``POSCAR*``    file names, sorted
    files (no id_prop.csv)
    ``.csv`` with a CIF column (targets optional)   ``id_column``, else row
                                                    numbers (0-based)
    matbench ``.json[.gz]``                         matbench ids (mb-...)
    mlearn ``.json`` (total_energy optional)        jid
    one ``.cif[.gz]``, ``.vasp``, ``.poscar``,      the file name
    ``POSCAR*`` or ``CONTCAR*`` file
    =============================================  ============================

    Files are CIF when their name ends in ``.cif`` or ``.cif.gz``, VASP
    POSCAR otherwise. Cells are kept as written.

    Parameters
    ----------
    path : str or Path
    cif_column : str, default "cif"
        CSV only: the column of CIF texts.
    id_column : str, optional
        CSV only: the id column; ``None`` picks the first present of
        ``material_id, id, mbid, jid, mp_id, task_id``, else row numbers.
    n_jobs : int, optional
        joblib workers for CIF parsing (see :func:`structures_from_cif`).
    on_error : {"raise", "skip"}
        A CIF or POSCAR that cannot be parsed raises ``ValueError`` naming
        its row (position in the CSV, id_prop.csv or sorted file list) and
        id; ``"skip"`` drops it with one warning. Structures in matbench
        and mlearn files are always checked strictly (``ValueError``).
    as_frame : bool, default False
        Return a DataFrame ``id, structure`` followed by the value columns
        the source has: the CSV's other columns, ``target`` (or
        ``target_0``...) from id_prop.csv, the matbench target column,
        mlearn's ``energy_per_atom`` (when every record has one). Source
        columns named ``id`` or ``structure`` are left out.

    Returns
    -------
    ids : list
        One identifier per returned structure, in input order.
    structures : list of Structure
        Or, with ``as_frame=True``, a DataFrame.

    Raises
    ------
    FileNotFoundError
        ``path``, or a file named by id_prop.csv, does not exist.
    ValueError
        Unknown format, missing ``cif_column``/``id_column``, a folder
        without structure files, or an unparsable structure.
    """
    path = _as_path(path)
    kind = _detect_format(path)
    values = {}
    if kind in ("cgcnn", "alignn"):
        ids, structures, y = _read_folder(path, kind, n_jobs, on_error, targets=False)
        if y is not None:
            y2 = y.reshape(len(ids), -1)
            values = {name: y2[:, k] for k, name in enumerate(_target_names(y))}
    elif kind in ("files", "structure"):
        files = [path] if kind == "structure" else _folder_structure_files(path)
        if not files:
            raise ValueError(
                f"{path} has no id_prop.csv and no structure files "
                f"({', '.join(_STRUCTURE_SUFFIXES)}, POSCAR*, CONTCAR*)")
        names = [f.name for f in files]
        structures, keep = _parse_files(files, names, f" of {path}", n_jobs, on_error)
        ids = [names[i] for i in keep]
    elif kind == "csv":
        df, id_name, structures, keep = _read_cif_csv(
            path, cif_column, id_column, n_jobs, on_error, "auto")
        ids = df[id_name].to_numpy()[keep].tolist() if id_name is not None else keep.tolist()
        values = {c: df[c].to_numpy()[keep] for c in df.columns
                  if c not in (cif_column, id_name)}
    else:
        json_kind, data = _read_json_kind(path)
        if json_kind == "matbench":
            ids, structures, values = _matbench_structures(data, path)
        else:
            ids, structures = _mlearn_structures(data, path)
            energies, _ = _mlearn_energies(data)
            if energies is not None:
                values = {"energy_per_atom": energies}
    if not as_frame:
        return ids, structures
    import pandas as pd
    frame = pd.DataFrame({"id": ids, "structure": structures})
    for name, column in values.items():
        if name not in ("id", "structure"):
            frame[name] = column
    return frame


def _matbench_structures(data, path):
    """(ids, structures, {column: values}) of a matbench split-orient table."""
    columns = list(data["columns"])
    if "structure" not in columns:
        raise ValueError(f"{path} has no 'structure' column (columns: {columns})")
    ids = [str(i) for i in data["index"]]
    rows = data["data"]
    s_col = columns.index("structure")
    structures = _structures_from_dicts([row[s_col] for row in rows], path, ids)
    values = {c: np.array([row[k] for row in rows]) for k, c in enumerate(columns)
              if k != s_col}
    return ids, structures, values

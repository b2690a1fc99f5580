"""File helpers shared by the loaders (paths, possibly gzipped JSON, POSCARs)."""
from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import numpy as np


def _as_path(path):
    """``path`` as a Path; a TypeError saying what a path is otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file or folder path (str or pathlib.Path), got "
                        f"{type(path).__name__}: {path!r:.60}")
    return Path(path)


def _check_path(path, kind="file"):
    path = _as_path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} not found: {path}")
    if kind == "folder" and not path.is_dir():
        raise NotADirectoryError(f"expected a folder, got a file: {path}")
    if kind == "file" and path.is_dir():
        raise IsADirectoryError(f"expected a file, got a folder: {path}")
    return path


def _load_json(path):
    """The JSON in ``path`` (gzipped or not); a broken file is a ValueError naming it."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    gzipped = head == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON{' (after gunzip)' if gzipped else ''}: "
                         f"{e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}); expected JSON"
                         f"{' (gzipped or not)' if not gzipped else ''}") from None
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, gzip.BadGzipFile) and e.errno:
            raise  # a read error of the file system, already named by the OS
        raise ValueError(f"{path} is a damaged gzip file ({e}); download it again") from None


def _parse_poscar(text):
    """The structure of a VASP POSCAR text.

    pymatgen reads a POSCAR whose elements it cannot determine (a VASP 4
    file: no element line above the counts, no symbols after the
    coordinates) as H, He, Li... with only a warning, which the loaders
    silence with pymatgen's other per-file warnings; here that is an error.
    A plain VASP 5 file is read by :func:`_fast_poscar_arrays` (the same
    Structure, without pymatgen's per-line parsing; figures in
    ``benchmarks/RESULTS.md``).
    """
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.vasp import Poscar

    from ._cif import _NotSimple

    try:
        symbols, lattice, frac = _fast_poscar_arrays(text)
    except _NotSimple:
        pass
    else:  # the Structure Poscar builds, without its per-line parsing
        return Structure(Lattice(lattice), symbols, frac, to_unit_cell=False,
                         validate_proximity=False)
    poscar = Poscar.from_str(text, read_velocities=False)  # as Structure.from_str reads it
    if not poscar.true_names:
        raise ValueError(
            "the POSCAR does not name its elements (a VASP 4 file: no element line above "
            "the atom counts, no symbols after the coordinates); pymatgen would read them "
            f"as {', '.join(sorted({str(el) for el in poscar.structure.species}, key=str))}: "
            "add the element line")
    return poscar.structure


def _fast_poscar_arrays(text):
    """The arrays of a plain VASP 5 POSCAR, exactly as pymatgen's ``Poscar`` reads them.

    The layout handled is what VASP and pymatgen write: a comment line, a
    positive scale factor, three lattice rows, one line of element symbols
    (POTCAR suffixes such as ``Fe_pv`` or ``Si/79d99`` cut as pymatgen cuts
    them), one line of counts, ``Direct`` coordinates; lines after the
    sites (velocities...) are ignored, as with ``read_velocities=False``.
    The lattice is the rows times the scale and the fractional coordinates
    are the numbers as written (not wrapped), the values ``Poscar.from_str``
    gives the ``Structure``.

    Returns
    -------
    symbols : list of str
        Element of each site, in file order.
    lattice : ndarray, shape (3, 3)
        Lattice vectors as rows, Å.
    frac : ndarray, shape (n_sites, 3)
        Fractional coordinates.

    Raises
    ------
    _NotSimple
        Anything else: VASP 4 files, Cartesian coordinates (pymatgen converts
        them site by site), selective dynamics, a negative scale (a volume),
        comments or blank lines inside the header or the sites; the caller
        then uses pymatgen.
    """
    from ._cif import _NotSimple, _plain_element

    lines = text.split("\n")
    if len(lines) < 9 or not lines[0].strip():
        raise _NotSimple("short, or a blank first line")
    head = [line.split() for line in lines[1:8]]
    if any(not tokens for tokens in head) or any("#" in line for line in lines[1:8]):
        raise _NotSimple("blank line or comment in the header")
    scale_line, rows, names, counts, kind = head[0], head[1:4], head[4], head[5], head[6]
    if len(scale_line) != 1 or any(len(row) != 3 for row in rows) \
            or kind[0][0] not in "dD":
        raise _NotSimple("not one scale, three lattice rows and Direct coordinates")
    try:
        scale = float(scale_line[0])
        lattice = np.array([[float(t) for t in row] for row in rows])
        n_atoms = [int(t) for t in counts]
    except ValueError:
        raise _NotSimple("a number that does not parse") from None
    if not 0 < scale < math.inf:
        raise _NotSimple("scale is not a positive number")
    lattice *= scale
    try:
        [int(t) for t in names]
    except ValueError:
        pass
    else:
        raise _NotSimple("VASP 4: counts without an element line")
    symbols = [name.split("/")[0].split("_")[0] for name in names]
    if len(symbols) != len(n_atoms) or min(n_atoms) < 0 or sum(n_atoms) < 1 \
            or not all(_plain_element(s) for s in symbols):
        raise _NotSimple("symbols and counts do not pair up into elements")
    n_sites = sum(n_atoms)
    sites = lines[8:8 + n_sites]
    if len(sites) != n_sites:
        raise _NotSimple("fewer site lines than atoms")
    coords = []
    for line in sites:
        tokens = line.split()
        if len(tokens) < 3 or "#" in line:
            raise _NotSimple("site line without three coordinates")
        coords.append(tokens[:3])
    try:
        frac = np.array([[float(t) for t in row] for row in coords])
    except ValueError:
        raise _NotSimple("a coordinate that does not parse") from None
    per_site = [s for s, n in zip(symbols, n_atoms) for _ in range(n)]
    return per_site, lattice, frac

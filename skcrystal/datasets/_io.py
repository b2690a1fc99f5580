"""File helpers shared by the loaders (paths, possibly gzipped JSON, POSCARs)."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path


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
    """
    from pymatgen.io.vasp import Poscar

    poscar = Poscar.from_str(text, read_velocities=False)  # as Structure.from_str reads it
    if not poscar.true_names:
        raise ValueError(
            "the POSCAR does not name its elements (a VASP 4 file: no element line above "
            "the atom counts, no symbols after the coordinates); pymatgen would read them "
            f"as {', '.join(sorted({str(el) for el in poscar.structure.species}, key=str))}: "
            "add the element line")
    return poscar.structure

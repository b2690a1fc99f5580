"""Data sets and loaders for crystal structures, with or without targets.

Each loader with targets returns ``(structures, y)`` -- a list of pymatgen
``Structure`` and a numpy array -- or, with ``as_frame=True``, a pandas
DataFrame with a ``structure`` column plus the id and target columns.
:func:`load_structures` returns ``(ids, structures)`` and also reads
structures that have no target (new structures to predict).

Formats
-------
- :func:`load_csv`: CSV with one CIF string per row (CDVAE-style files).
- :func:`load_cgcnn_folder`: reference CGCNN folder (id_prop.csv + CIFs).
- :func:`load_alignn_folder`: reference ALIGNN folder (id_prop.csv + POSCARs).
- :func:`load_matbench_json`, :func:`matbench_folds`,
  :func:`matbench_test_fold`: matbench task files and official folds.
- :func:`load_matbench`: a matbench task via matminer (needs network once).
- :func:`load_mlearn`: mlearn interatomic-potential JSON.
- :func:`load`: any of the above, chosen from the path.
- :func:`load_structures`: ids and structures from any of the above, or
  from inputs without targets (id-only id_prop.csv, a folder of CIF/POSCAR
  files, a CSV without target column, one structure file).
- :func:`load_perovskites`: the bundled 1,000-structure demo set.
- :func:`structures_from_cif`: parse CIF strings (fast, parallel).
- :func:`make_carbon_chains`: synthetic carbon chains in vacuum.
- :func:`shared_data_path`: the project's shared data folder, if present.
"""
from ._bundled import load_perovskites, shared_data_path
from ._cif import SkippedRowsWarning, structures_from_cif
from ._files import (load, load_alignn_folder, load_cgcnn_folder, load_csv, load_mlearn,
                     load_structures)
from ._matbench import load_matbench, load_matbench_json, matbench_folds, matbench_test_fold
from .synthetic import make_carbon_chains

__all__ = [
    "SkippedRowsWarning",
    "load",
    "load_alignn_folder",
    "load_cgcnn_folder",
    "load_csv",
    "load_matbench",
    "load_matbench_json",
    "load_mlearn",
    "load_structures",
    "load_perovskites",
    "make_carbon_chains",
    "matbench_folds",
    "matbench_test_fold",
    "shared_data_path",
    "structures_from_cif",
]

"""Descriptor values of one structure, grouped by what they need.

Each group function returns a dict name -> float. The definitions follow
matminer 0.10 line by line (file and class named in each docstring);
only the Voronoi tessellation is shared instead of redone per site.
"""
from __future__ import annotations

import math

import numpy as np

from ._voronoi import voronoi_faces

#: matminer GlobalSymmetryFeatures.crystal_idx (its ``crystal_system_int``).
CRYSTAL_SYSTEMS = {
    "cubic": 1, "hexagonal": 2, "trigonal": 3, "tetragonal": 4,
    "orthorhombic": 5, "monoclinic": 6, "triclinic": 7,
}

VORONOI = (
    "MAD_in_rela_bond_len", "max_rela_bond_len", "min_rela_bond_len",
    "max_neighb_dist_var", "min_neighb_dist_var", "range_neighb_dist_var",
    "mean_neighb_dist_var", "dev_neighb_dist_var",
    "mean_avg_bond_len", "std_avg_bond_len", "MAD_in_rela_atom_vol",
    "mean_avg_bond_ang", "std_avg_bond_ang", "mean_CN_Voronoi", "std_CN_Voronoi",
)
DENSITY = ("density", "vpa")
PACKING = ("packing_frac",)
COMPLEXITY = ("struct_comp_atom", "struct_comp_cell")
LATTICE = ("natoms", "a", "b", "c", "alpha", "beta", "gamma")
SYMMETRY = ("crys_sys", "space_group_num")

GROUPS = {"voronoi": VORONOI, "density": DENSITY, "packing": PACKING,
          "complexity": COMPLEXITY,
          "lattice": LATTICE, "symmetry": SYMMETRY}
ALL_DESCRIPTORS = VORONOI + DENSITY + PACKING + COMPLEXITY + LATTICE + SYMMETRY


def _std(values):
    # matminer PropertyStats.std_dev: population std, 0 for one entry
    return 0.0 if len(values) == 1 else float(np.std(values))


def _avg_dev(values, weights=None):
    # matminer PropertyStats.avg_dev
    mean = np.average(values, weights=weights)
    return np.average(np.abs(values - mean), weights=weights)


def _segment_mean(values, weights, seg, n):
    return (np.bincount(seg, weights=values * weights, minlength=n)
            / np.bincount(seg, weights=weights, minlength=n))


def voronoi_group(structure, cutoff):
    """StructuralHeterogeneity + SiteStatsFingerprint(mean, std_dev) of
    AverageBondLength, AverageBondAngle and CoordinationNumber, all with
    VoronoiNN (matminer structure/bonding.py, site/bonding.py,
    site/misc.py; pymatgen VoronoiNN with tol=0).
    """
    n = len(structure)
    f = voronoi_faces(structure, cutoff)
    centre = f["centre"]
    out = {}

    # --- StructuralHeterogeneity: VoronoiNN(weight="area"), faces with area > 0
    m = f["area"] > 0
    c, w = centre[m], f["area"][m]
    w = w / np.maximum.reduceat(w, _starts(c))[_rank(c)]
    lengths = f["face_dist"][m] * 2
    mean_bl = _segment_mean(lengths, w, c, n)
    dev = np.abs(lengths - mean_bl[c])
    bl_var = _segment_mean(dev, w, c, n) / mean_bl
    rel = mean_bl / mean_bl.mean()
    out["MAD_in_rela_bond_len"] = _avg_dev(rel)
    out["max_rela_bond_len"] = rel.max()
    out["min_rela_bond_len"] = rel.min()
    out["min_neighb_dist_var"] = bl_var.min()
    out["max_neighb_dist_var"] = bl_var.max()
    out["range_neighb_dist_var"] = bl_var.max() - bl_var.min()
    out["mean_neighb_dist_var"] = np.mean(bl_var)
    out["dev_neighb_dist_var"] = _avg_dev(bl_var)
    cell_vol = np.bincount(c, weights=f["volume"][m], minlength=n)
    out["MAD_in_rela_atom_vol"] = _avg_dev(cell_vol) / np.mean(cell_vol)

    # --- site featurizers: VoronoiNN() weight="solid_angle", faces with angle > 0
    m = f["solid_angle"] > 0
    c, w = centre[m], f["solid_angle"][m]
    w = w / np.maximum.reduceat(w, _starts(c))[_rank(c)]
    cn = np.bincount(c, minlength=n).astype(float)
    avg_bl = _segment_mean(f["dist"][m], w, c, n)
    out["mean_avg_bond_len"] = np.mean(avg_bl)
    out["std_avg_bond_len"] = _std(avg_bl)

    # AverageBondAngle: per site, mean over neighbours of the smallest angle
    # to any other neighbour; neighbours padded to a (n, k, 3) block
    k = int(cn.max())
    slot = np.arange(len(c)) - _starts(c)[_rank(c)]
    vec = np.full((n, k, 3), np.nan)
    vec[c, slot] = f["vec"][m]
    unit = vec / np.linalg.norm(vec, axis=2, keepdims=True)
    dot = np.einsum("nid,njd->nij", unit, unit)
    with np.errstate(invalid="ignore"):
        ang = np.arccos(dot)
        # matminer retries arccos on the dot rounded to 5 decimals when it is NaN
        ang = np.where(np.isnan(ang) & ~np.isnan(dot), np.arccos(np.round(dot, 5)), ang)
    ang[:, np.arange(k), np.arange(k)] = np.nan
    with np.errstate(invalid="ignore"), _quiet():
        min_ang = np.nanmin(ang, axis=2)
        avg_ang = np.degrees(np.nanmean(min_ang, axis=1))
    out["mean_avg_bond_ang"] = np.mean(avg_ang)
    out["std_avg_bond_ang"] = _std(avg_ang)
    out["mean_CN_Voronoi"] = np.mean(cn)
    out["std_CN_Voronoi"] = _std(cn)
    return out


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def _starts(sorted_ids):
    """Index of the first row of each run in a sorted id array, per run."""
    return np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])


def _rank(sorted_ids):
    """Run number of every row of a sorted id array."""
    return np.cumsum(np.r_[False, sorted_ids[1:] != sorted_ids[:-1]])


def density_group(structure):
    """matminer DensityFeatures density and vpa (structure/order.py)."""
    return {"density": float(structure.density), "vpa": structure.volume / len(structure)}


def packing_group(structure):
    """matminer DensityFeatures packing fraction: spheres of pymatgen's
    ``Element.atomic_radius``, which is undefined for some elements
    (e.g. the noble gases), where this group fails."""
    radii = [site.specie.atomic_radius for site in structure]
    missing = sorted({site.specie.symbol for site, r in zip(structure, radii) if r is None})
    if missing:
        raise ValueError(f"no atomic radius for {', '.join(missing)} in pymatgen")
    total = sum(r ** 3 for r in radii)
    return {"packing_frac": 4 * math.pi * total / (3 * structure.volume)}


def complexity_group(structure, symprec=0.1):
    """matminer StructuralComplexity(symprec=0.1) (structure/order.py)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    n = len(structure)
    sym = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetrized_structure()
    p = np.array([len(eq) for eq in sym.equivalent_indices]) / n
    ig = float(-(p * np.log2(p)).sum()) + 0.0  # no -0.0
    return {"struct_comp_atom": ig, "struct_comp_cell": ig * n}


def symmetry_group(structure):
    """matminer GlobalSymmetryFeatures (structure/symmetry.py), default symprec."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    sga = SpacegroupAnalyzer(structure)
    return {"crys_sys": CRYSTAL_SYSTEMS[sga.get_crystal_system()],
            "space_group_num": sga.get_space_group_number()}


def lattice_group(structure):
    """Niggli-reduced primitive cell: atom count and sorted lattice parameters."""
    prim = structure.get_primitive_structure().get_reduced_structure("niggli")
    abc = sorted(prim.lattice.abc, reverse=True)
    angles = sorted(prim.lattice.angles, reverse=True)
    return dict(zip(LATTICE, [len(prim), *abc, *angles]))

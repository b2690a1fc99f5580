"""The stock matminer featurizers behind :class:`DescriptorBank`, for validation.

Slow (one Voronoi tessellation per site and featurizer); used by the tests
and ``benchmarks/bench_descriptors.py`` to check that the bank reproduces
the stock values, never by the bank itself.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["STOCK_NAMES", "stock_descriptors"]

#: Bank names of the values :func:`stock_descriptors` returns, in its order.
STOCK_NAMES = [
    "MAD_in_rela_bond_len", "max_rela_bond_len", "min_rela_bond_len",
    "min_neighb_dist_var", "max_neighb_dist_var", "range_neighb_dist_var",
    "mean_neighb_dist_var", "dev_neighb_dist_var", "MAD_in_rela_atom_vol",
    "mean_avg_bond_len", "std_avg_bond_len", "mean_avg_bond_ang", "std_avg_bond_ang",
    "mean_CN_Voronoi", "std_CN_Voronoi", "density", "vpa", "packing_frac",
    "struct_comp_atom", "struct_comp_cell", "space_group_num", "crys_sys",
]


def stock_descriptors(s):
    """Descriptor values of structure ``s`` from the stock featurizers.

    Returns an array in the order of :data:`STOCK_NAMES`, bond angles
    converted to degrees as the bank reports them. Two adjustments, both
    documented in :mod:`skcrystal.descriptors.bank`: StructuralHeterogeneity
    gets the structure with its sites wrapped into the cell (stock
    tessellates a site at fractional coordinate -1e-7 twice), and, when its
    fixed 13 Å Voronoi cutoff fails (2D materials, slabs), is rerun with a
    cutoff of the cell's longest diagonal.
    """
    import matminer.featurizers.structure.bonding as mb
    from matminer.featurizers.site import AverageBondAngle, AverageBondLength, CoordinationNumber
    from matminer.featurizers.structure import (DensityFeatures, GlobalSymmetryFeatures,
                                                SiteStatsFingerprint, StructuralComplexity,
                                                StructuralHeterogeneity)
    from pymatgen.analysis.local_env import VoronoiNN
    from pymatgen.core import Structure

    frac = s.frac_coords % 1.0
    frac[frac >= 1.0] = 0.0
    wrapped = Structure(s.lattice, s.species, frac)
    try:
        out = list(StructuralHeterogeneity().featurize(wrapped))
    except RuntimeError:
        diag = max(np.linalg.norm(s.lattice.get_cartesian_coords(c))
                   for c in ([1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]))
        orig = mb.VoronoiNN
        mb.VoronoiNN = functools.partial(orig, cutoff=diag + 0.011)
        try:
            out = list(StructuralHeterogeneity().featurize(wrapped))
        finally:
            mb.VoronoiNN = orig
    for f in (AverageBondLength(VoronoiNN()), AverageBondAngle(VoronoiNN()),
              CoordinationNumber.from_preset("VoronoiNN")):
        out += SiteStatsFingerprint(f, stats=("mean", "std_dev")).featurize(s)
    out[11:13] = np.degrees(out[11:13])
    out += list(DensityFeatures().featurize(s)) + list(StructuralComplexity().featurize(s))
    out += GlobalSymmetryFeatures(["spacegroup_num", "crystal_system_int"]).featurize(s)
    return np.array(out, dtype=float)

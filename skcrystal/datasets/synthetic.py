"""Synthetic quasi-1D carbon chains for the periodicity study.

Follows the pseudocode of section 9 of the supporting information of the
periodicity paper (``../shared/papers/gnn-descriptors-periodicity.txt``):
atoms are placed one after another with random steps of 0-3 Å (3 Å =
2 x 1.5 Å, about twice a C-C bond) along x, y and z; odd-numbered atoms
step back in y and z so that the chain zigzags around the x axis and
stays compact. The lattice is orthorhombic with ``a`` = x of the last atom
(the chain's period along x) and ``b = c = 100`` Å of vacuum.
"""
from __future__ import annotations

import numbers

import numpy as np

from .._validation import MIN_INTERATOMIC_DISTANCE

__all__ = ["make_carbon_chains", "VACUUM"]

#: Lattice lengths b and c perpendicular to the chain, Å.
VACUUM = 100.0
#: Largest random step per Cartesian component, Å.
_STEP = 3.0


def _check_range(n_atoms):
    if (isinstance(n_atoms, (tuple, list)) and len(n_atoms) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                    for v in n_atoms)):
        lo, hi = int(n_atoms[0]), int(n_atoms[1])
        if 2 <= lo < hi:
            return lo, hi
    raise ValueError(
        "n_atoms must be a pair of integers (low, high) with 2 <= low < high, "
        f"the half-open range of atoms per chain, e.g. (2, 9); got {n_atoms!r}")


def _closest_distance(pos, a):
    """Smallest distance between two atoms of a chain with period ``a`` along x, Å."""
    diff = pos[:, None, :] - pos[None, :, :]
    best = np.inf
    for k in (-1.0, 0.0, 1.0):
        shifted = diff.copy()
        shifted[..., 0] += k * a
        d = np.linalg.norm(shifted, axis=-1)
        if k == 0.0:
            d[np.diag_indices(len(pos))] = np.inf
        best = min(best, float(d.min()))
    return best


def _chain_positions(n, rng):
    """Cartesian positions (n, 3), Å, following the paper's pseudocode."""
    u = rng.random((n, 3)) * _STEP
    # step j: +x always; +y,+z for even j, -y,-z for odd j (j = 0 is the start)
    sign = np.ones((n, 3))
    sign[1::2, 1:] = -1.0
    return np.cumsum(u * sign, axis=0)


def make_carbon_chains(n_samples, n_atoms=(2, 9), double=False, random_state=None):
    """Random quasi-1D carbon chains along x with vacuum along y and z.

    Parameters
    ----------
    n_samples : int
        Number of chains (>= 1).
    n_atoms : tuple of int (low, high)
        Half-open range of atoms per single chain, drawn uniformly:
        ``(2, 9)`` gives 2-8 atoms (the paper's short chains), ``(37, 51)``
        gives 37-50 (its long chains). ``low >= 2``.
    double : bool or "mixed"
        False: single chains. True: double chains, i.e. two independent
        single chains with the same number of atoms sharing one cell, the
        second shifted by 3-6 Å along y so the strands do not overlap; the
        period is the longer of the two strands' periods, so a double chain
        has about the same ``a`` as a single chain with twice the atoms
        (the paper's Fig. 3d / Fig. S3). "mixed": the paper's "single and
        double chains" data sets, half single and half double (the first
        ``n_samples // 2`` are single), in random order.
    random_state : int, numpy Generator or None
        Seed for reproducible chains.

    Returns
    -------
    structures : list of pymatgen.core.Structure
        ``n_samples`` carbon chains; lattice ``a`` along x, ``b = c = 100`` Å.
    a : ndarray of float, shape (n_samples,)
        Lattice length along the chain, Å.

    Notes
    -----
    The paper gives pseudocode for single chains only; how double chains are
    built (a rigid lateral copy of the strand) is this module's choice.
    Positions are the pseudocode's Cartesian coordinates unchanged (not
    wrapped into the cell): the first atom lies in [0, 3) Å, the last at
    x = a, i.e. on the periodic image of x = 0. A draw in which two atoms
    (periodic images included) come closer than 0.5 Å (the library's overlap bound) is
    drawn again: the pseudocode allows it, but it is not a physical chain
    and the library's structure checks reject it.
    """
    from pymatgen.core import Lattice, Structure

    if (not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool)
            or n_samples < 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    lo, hi = _check_range(n_atoms)
    if isinstance(double, str):
        if double != "mixed":
            raise ValueError(f"double must be True, False or 'mixed', got {double!r}")
    elif not isinstance(double, (bool, np.bool_)):
        raise ValueError(f"double must be True, False or 'mixed', got {double!r}")
    rng = np.random.default_rng(random_state)

    if double == "mixed":
        kinds = np.zeros(n_samples, dtype=bool)
        kinds[n_samples // 2:] = True
        rng.shuffle(kinds)
    else:
        kinds = np.full(n_samples, bool(double))

    structures, lengths = [], np.empty(n_samples)
    for i, is_double in enumerate(kinds):
        n = int(rng.integers(lo, hi))
        # the pseudocode's random steps can put two atoms (or an atom and an
        # image) on top of each other; such a draw is not a physical chain
        # and is drawn again
        while True:
            pos = _chain_positions(n, rng)
            a = pos[-1, 0]
            if _closest_distance(pos, a) >= MIN_INTERATOMIC_DISTANCE:
                break
        if is_double:
            extent = pos[:, 1].max() - pos[:, 1].min()
            shift = extent + 0.5 * _STEP * (1 + rng.random())
            pos = np.concatenate([pos, pos + [0.0, shift, 0.0]])
        lattice = Lattice.from_parameters(a, VACUUM, VACUUM, 90, 90, 90)
        structures.append(Structure(lattice, ["C"] * len(pos), pos,
                                    coords_are_cartesian=True))
        lengths[i] = a
    return structures, lengths

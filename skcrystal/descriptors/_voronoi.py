"""One Voronoi tessellation per structure, reproducing pymatgen's VoronoiNN.

matminer's site featurizers call ``VoronoiNN.get_nn_info`` once per site
and per featurizer, and each call tessellates every image within 13 Å of
that site. Here all sites of a structure are tessellated together once,
and the per-face quantities pymatgen stores (``solid_angle``, ``volume``,
``face_dist``, ``area``) are computed with the same formulas, vectorized
over faces.

Cutoff. The point set holds every periodic image within ``cutoff`` of any
site of the cell. The Voronoi cell of a site computed from such a set is
exact when all its vertices lie within ``cutoff / 2`` of the site (a point
that could cut a vertex at distance d must lie within 2 d of the site).
The first attempt uses pymatgen's 13 Å, so bulk structures see the same
neighbourhoods as the stock featurizers; when a cell is unbounded or the
condition fails (2D materials and slabs: the cells of surface atoms reach
half-way across the vacuum), the cutoff doubles (or grows to twice the
farthest vertex, if that is less) and the tessellation is redone; so it
does when Qhull finds the images within the cutoff flat (the atoms of a
one-atom-thick layer, their images across the vacuum not yet included). Doubling
rather than jumping to twice the farthest vertex matters: with too few
images, nearly parallel faces of surface atoms can meet hundreds of Å
away, a vertex that a larger cutoff removes. The cutoff never exceeds
twice the cell's longest diagonal plus 13 Å (pymatgen stops at one
diagonal).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import QhullError, Voronoi

__all__ = ["voronoi_faces", "DEFAULT_CUTOFF"]

#: pymatgen's VoronoiNN default cutoff, Å.
DEFAULT_CUTOFF = 13.0


def _point_set(structure, cutoff):
    """Sites of the cell first, then every other image within ``cutoff`` Å."""
    n = len(structure)
    frac = structure.frac_coords
    _, idx, images, _ = structure.get_neighbor_list(cutoff)
    keys = np.concatenate([
        np.column_stack([np.arange(n), np.zeros((n, 3))]),
        np.column_stack([idx, images])]).astype(np.int64)
    keys = np.unique(keys, axis=0)
    root = np.all(keys[:, 1:] == 0, axis=1)
    # roots first and in site order: np.unique sorted them by site index
    keys = np.concatenate([keys[root], keys[~root]])
    coords = (frac[keys[:, 0]] + keys[:, 1:]) @ structure.lattice.matrix
    return coords, keys[:, 0]


def _faces(coords, n):
    """Faces of the cells of points ``0..n-1``, or None when one is unbounded."""
    voro = Voronoi(coords)
    rp = voro.ridge_points
    lengths = np.fromiter((len(v) for v in voro.ridge_vertices), dtype=np.int64,
                          count=len(rp))
    sel = np.flatnonzero((rp < n).any(axis=1))
    # each face seen from each root site it belongs to
    centre = np.concatenate([rp[sel, 0], rp[sel, 1]])
    other = np.concatenate([rp[sel, 1], rp[sel, 0]])
    ridge = np.concatenate([sel, sel])
    keep = centre < n
    centre, other, ridge = centre[keep], other[keep], ridge[keep]
    flat = np.concatenate([np.asarray(voro.ridge_vertices[r], dtype=np.int64)
                           for r in np.unique(ridge)]) if len(ridge) else np.zeros(0, int)
    if (flat < 0).any():
        return None
    starts_all = np.zeros(len(rp), dtype=np.int64)
    ur = np.unique(ridge)
    starts_all[ur] = np.concatenate([[0], np.cumsum(lengths[ur])[:-1]])
    start, length = starts_all[ridge], lengths[ridge]

    # fan triangulation (v0, vj, vj+1) of each face, as pymatgen does
    ntri = length - 2
    face_of_tri = np.repeat(np.arange(len(ridge)), ntri)
    offs = np.arange(ntri.sum()) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    verts = voro.vertices
    v0 = verts[flat[start[face_of_tri]]]
    vj = verts[flat[start[face_of_tri] + offs]]
    vk = verts[flat[start[face_of_tri] + offs + 1]]
    c = coords[centre[face_of_tri]]

    # pymatgen's vol_tetra(center, v0, vj, vk)
    vol_tri = np.abs(np.einsum("ij,ij->i", c - vk, np.cross(v0 - vk, vj - vk))) / 6
    # pymatgen's solid_angle: Van Oosterom-Strackee per triangle
    d0, di, dj = v0 - c, vj - c, vk - c
    r0, ri, rj = (np.linalg.norm(d, axis=1) for d in (d0, di, dj))
    tp = np.abs(np.einsum("ij,ij->i", d0, np.cross(di, dj)))
    de = (r0 * ri * rj + rj * np.einsum("ij,ij->i", d0, di)
          + ri * np.einsum("ij,ij->i", d0, dj) + r0 * np.einsum("ij,ij->i", di, dj))
    with np.errstate(divide="ignore", invalid="ignore"):
        ang = np.where(de == 0, np.where(tp > 0, 0.5 * math.pi, -0.5 * math.pi),
                       np.arctan(tp / de))
    ang = np.where(ang > 0, ang, ang + math.pi) * 2

    nf = len(ridge)
    volume = np.bincount(face_of_tri, weights=vol_tri, minlength=nf)
    solid = np.bincount(face_of_tri, weights=ang, minlength=nf)
    vec = coords[other] - coords[centre]
    dist = np.linalg.norm(vec, axis=1)
    face_dist = dist / 2
    area = 3 * volume / face_dist
    # farthest vertex of each cell, for the exactness check
    far = np.zeros(n)
    np.maximum.at(far, centre[face_of_tri],
                  np.maximum(np.maximum(r0, ri), rj))
    order = np.lexsort((other, centre))
    return dict(centre=centre[order], other=other[order], vec=vec[order],
                dist=dist[order], face_dist=face_dist[order], volume=volume[order],
                area=area[order], solid_angle=solid[order], far=far)


def voronoi_faces(structure, cutoff=DEFAULT_CUTOFF):
    """Voronoi faces of every site of ``structure`` from one tessellation.

    Parameters
    ----------
    structure : pymatgen.core.Structure
        Ordered, periodic structure with ``n`` sites.
    cutoff : float
        First cutoff radius for the images in the tessellation, Å.

    Returns
    -------
    faces : dict of ndarray
        One row per (site, neighbour) face, sorted by site: ``centre`` (site
        index), ``other`` (index in the point set), ``vec`` (neighbour minus
        site, Å, shape (m, 3)), ``dist`` (Å), ``face_dist`` (Å), ``volume``
        (Å^3), ``area`` (Å^2), ``solid_angle`` (sr); plus ``cutoff``, the
        radius that was used (Å).

    Raises
    ------
    RuntimeError
        No exact tessellation within the largest cutoff.
    """
    n = len(structure)
    diag = max(np.linalg.norm(structure.lattice.get_cartesian_coords(c))
               for c in ([1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]))
    max_cutoff = 2 * diag + DEFAULT_CUTOFF
    while True:
        coords, _ = _point_set(structure, cutoff)
        try:
            faces = _faces(coords, n) if len(coords) > 4 else None
        except QhullError:
            # no 3-D tessellation of these points: all in one plane (a
            # one-atom-thick layer whose vacuum is wider than the cutoff) or
            # too close to it for Qhull. Images across the vacuum, at a
            # larger cutoff, make the set three-dimensional.
            faces = None
        need = np.inf if faces is None else 2 * faces["far"].max() * (1 + 1e-9)
        if need <= cutoff:
            faces["cutoff"] = cutoff
            return faces
        if cutoff >= max_cutoff:
            raise RuntimeError(
                "no exact Voronoi tessellation within a cutoff of "
                f"{max_cutoff:.1f} Å (twice the cell diagonal + 13 Å)")
        cutoff = min(2 * cutoff, need, max_cutoff)

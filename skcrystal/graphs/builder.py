"""Structure -> periodic crystal graph, vectorized.

The builder asks pymatgen's Cython neighbour search
(``find_points_in_spheres``, what
:meth:`~pymatgen.core.Structure.get_neighbor_list` wraps) for every pair
within the cut-off, then keeps the ``max_neighbors`` nearest of each atom
with a sort and a few index operations: there is no Python loop over atoms
or edges. Given many structures (:func:`~skcrystal.graphs.get_graphs`, the
estimators' path), it searches each one and cuts the pairs of up to 64
structures in one pass, because for small cells numpy's per-call overhead,
not the arithmetic, was most of the cut; the graphs are those of
:meth:`GraphBuilder.build` on each structure, to the bit.

Ties
----
The ``max_neighbors`` cut keeps every neighbour whose distance is within
``tie_tol`` of the k-th nearest one, so a tied shell is never cut in the
middle. Cutting it at exactly k (as the reference CGCNN code does with a
Python ``sorted`` per atom) makes the graph depend on the order in which the
neighbour search returns equidistant atoms, i.e. on atom order, cell choice
and orientation. In rocksalt NaCl with ``max_neighbors=12`` a Na atom keeps
its 6 Cl at a/2 *and all 12* Na at a/sqrt(2) (18 edges), not 6 of the 12.

Reference neighbour lists
-------------------------
``neighbor_mode="reference"`` reproduces the reference CGCNN code's list
(``CIFData`` in txie-93/cgcnn) for its published checkpoints: each atom's
neighbours within ``radius`` in the order pymatgen's neighbour search
returns them, stably sorted by distance and cut at *exactly*
``max_neighbors`` (a tied shell can be cut in the middle, as above). An atom
with fewer neighbours is padded up to ``max_neighbors`` with edges to atom 0
of the structure at the nominal distance ``radius + 1`` Å (their
``vectors`` and ``offsets`` are those of atom 0 in the home cell, not a
geometric bond). No atom is isolated in this mode, so it never raises for
one.

Isolated atoms
--------------
An atom with no neighbour inside ``radius`` cannot exchange messages. By
default (``grow_radius=False``) the builder raises a ``ValueError`` naming
the structure's position in the input, the atom and the radius. With
``grow_radius=True`` the radius of *that structure* is multiplied by 1.5
until every atom has at least ``max_neighbors`` neighbours (the CrysToGraph
convention), never beyond :data:`MAX_RADIUS`; the radius used is stored in
:attr:`CrystalGraph.radius`.

Symmetrization
--------------
The ``max_neighbors`` cut is per centre atom, so atom ``i`` may keep ``j``
while ``j`` does not keep ``i``: an edge without a reverse.
``symmetrize="union"`` adds the missing reverse edges (the reference ALIGNN
graph), ``symmetrize="both"`` adds the reverse of every edge (the reference
CrystalNet graph, where a bond both atoms list is stored twice each way);
see :mod:`skcrystal.graphs.symmetrize`. The default ``None`` leaves the
graph as cut.

Radius bound
------------
``radius`` may not exceed :data:`MAX_RADIUS` (30 Å), and growth stops there:
the edge count grows as radius^3 (a 300 Å sphere in a dense crystal holds
about 10^7 neighbours per atom, enough to exhaust memory), and an atom
with fewer than ``max_neighbors`` neighbours within 30 Å is an isolated
atom in vacuum, not a crystal; the error names the structure and atom.
"""
from __future__ import annotations

import numpy as np

from .._validation import _site_species, check_positive
from .graph import CrystalGraph
from .symmetrize import MODES as SYMMETRIZE_MODES
from .symmetrize import symmetrize_graph

__all__ = ["GraphBuilder", "build_graph", "MAX_RADIUS"]

#: Largest neighbour cut-off, asked for or grown to, Å.
MAX_RADIUS = 30.0

# structures cut in one pass by GraphBuilder._build_many: fewer leave numpy's
# per-call overhead, more make the sorts and gathers leave the CPU's caches
# (benchmarks/RESULTS.md, "Graph building")
_BATCH = 64


class GraphBuilder:
    """Parameters of the structure -> graph conversion.

    Parameters
    ----------
    radius : float, default=8.0
        Neighbour cut-off in Å, at most :data:`MAX_RADIUS`.
    max_neighbors : int or None, default=12
        Keep the ``max_neighbors`` nearest neighbours of each atom (plus any
        tied with the last one); ``None`` keeps every neighbour in
        ``radius``.
    tie_tol : float, default=1e-3
        Distances within ``tie_tol`` Å of the k-th nearest count as tied.
    grow_radius : bool, default=False
        Grow the radius of a structure that has an atom with too few
        neighbours instead of raising (see the module docstring).
    neighbor_mode : {"keep_ties", "reference"}, default="keep_ties"
        ``"keep_ties"``: the ``max_neighbors`` cut keeps whole tied shells;
        ``"reference"``: exactly ``max_neighbors`` per atom in the reference
        CGCNN code's order, padded (see the module docstring;
        ``max_neighbors`` must then be an int and ``grow_radius`` is
        ignored).
    symmetrize : {None, "union", "both"}, default=None
        Add reverse edges after the cut (see the module docstring):
        ``"union"`` the missing ones, ``"both"`` the reverse of every edge.
    """

    _modes = ("keep_ties", "reference")

    _growth = 1.5

    def __init__(self, radius=8.0, max_neighbors=12, tie_tol=1e-3, grow_radius=False,
                 neighbor_mode="keep_ties", symmetrize=None):
        self.radius = radius
        self.max_neighbors = max_neighbors
        self.tie_tol = tie_tol
        self.grow_radius = grow_radius
        self.neighbor_mode = neighbor_mode
        self.symmetrize = symmetrize

    def validate(self):
        check_positive(self.radius, "radius")
        if not self.radius <= MAX_RADIUS:
            raise ValueError(
                f"radius must be at most {MAX_RADIUS:g} Å, got {self.radius!r}: "
                "the edge count grows as radius^3")
        check_positive(self.max_neighbors, "max_neighbors", integer=True, allow_none=True)
        if not (isinstance(self.tie_tol, (int, float)) and self.tie_tol >= 0):
            raise ValueError(f"tie_tol must be a number >= 0, got {self.tie_tol!r}")
        if self.neighbor_mode not in self._modes:
            raise ValueError(f"neighbor_mode must be one of {self._modes}, got "
                             f"{self.neighbor_mode!r}")
        if self.neighbor_mode == "reference" and self.max_neighbors is None:
            raise ValueError("neighbor_mode='reference' needs an int max_neighbors "
                             "(the reference pads every atom to exactly that many)")
        if self.symmetrize is not None and self.symmetrize not in SYMMETRIZE_MODES:
            raise ValueError(f"symmetrize must be None or one of {SYMMETRIZE_MODES}, got "
                             f"{self.symmetrize!r}")
        if self.symmetrize is not None and self.neighbor_mode == "reference":
            raise ValueError("symmetrize applies to neighbor_mode='keep_ties' (the "
                             "'reference' mode is the CGCNN checkpoints' padded graph)")
        self._validated_ = self._params()
        return self

    def _params(self):
        return (self.radius, self.max_neighbors, self.tie_tol, self.grow_radius,
                self.neighbor_mode, self.symmetrize)

    def key(self):
        """Hashable description of the parameters (part of the cache key)."""
        key = ("v1", float(self.radius),
               None if self.max_neighbors is None else int(self.max_neighbors),
               float(self.tie_tol), bool(self.grow_radius))
        # the default mode keeps the keys of graphs cached before the options existed
        if self.neighbor_mode == "reference":
            # "cart": reference graphs cut since Cartesian coordinates are
            # pymatgen's to the bit (see _cartesian); earlier ones could break
            # an exact tie the other way, so they are not read back
            key += (self.neighbor_mode, "cart")
        if self.symmetrize is not None:
            key += (("symmetrize", str(self.symmetrize)),)
        return key

    def __repr__(self):
        return (f"GraphBuilder(radius={self.radius}, max_neighbors={self.max_neighbors}, "
                f"tie_tol={self.tie_tol}, grow_radius={self.grow_radius}, "
                f"neighbor_mode={self.neighbor_mode!r}, symmetrize={self.symmetrize!r})")

    def build(self, structure, index=None):
        """Build the graph of one structure.

        Parameters
        ----------
        structure : pymatgen.core.Structure
        index : int, optional
            Position of the structure in the user's input, for errors.

        Returns
        -------
        CrystalGraph
        """
        from .._validation import _check_lattice

        where = "structure" if index is None else f"structure {index}"
        # frac_coords looked up on the class: on a Structure it is a property
        # that builds the array
        if not hasattr(structure, "lattice") or not (
                hasattr(type(structure), "frac_coords") or hasattr(structure, "frac_coords")):
            raise TypeError(f"{where} is a {type(structure).__name__}, not a pymatgen "
                            "Structure")
        # parameters set after construction (without validate()) are checked too;
        # callers that validated once do not pay it per structure
        if getattr(self, "_validated_", None) != self._params():
            self.validate()
        arrays = _structure_arrays(structure, where)
        # cheap guard for direct calls (check_structures has already run
        # for estimator input): a singular lattice divides by zero below
        _, frac, _, lattice, pbc = arrays
        _check_lattice(lattice, frac, pbc,
                       lambda: f"{where} ({structure.composition.reduced_formula})")
        return self._build(arrays, where, lambda: structure.composition.reduced_formula,
                           lambda atom: structure[atom].specie)

    def build_arrays(self, numbers, frac_coords, lattice, where="structure",
                     formula=None, symbols=None, on_pairs=None):
        """Build the graph of a structure given as arrays (no pymatgen object).

        The same graph as :meth:`build` on a ``Structure`` holding these
        arrays (periodic in all three directions). The caller has checked
        the lattice (see ``skcrystal._validation``).

        Parameters
        ----------
        numbers : array of int, shape (n_atoms,)
            Atomic numbers.
        frac_coords : array of float, shape (n_atoms, 3)
            Fractional coordinates, as the structure stores them.
        lattice : array of float, shape (3, 3)
            Lattice vectors as rows, Å.
        where : str
            How errors name the structure.
        formula : str or callable, optional
            Reduced formula for errors (a callable is called only then).
        symbols : sequence of str, optional
            Element symbol of each atom, for errors.
        on_pairs : callable, optional
            Called as ``on_pairs(distances, radius)`` with the distances of
            all neighbour pairs within ``radius`` (Å) once they are found,
            before any graph error: a check that needs them (close atoms)
            costs no second neighbour search.

        Returns
        -------
        CrystalGraph
        """
        return self._build(_input_arrays(numbers, frac_coords, lattice), where,
                           formula if callable(formula) else lambda: formula or "?",
                           lambda atom: symbols[atom] if symbols is not None else "?",
                           on_pairs)

    def _build_arrays_many(self, items):
        """:meth:`build_arrays` over several structures.

        Parameters
        ----------
        items : list of dict
            The keyword arguments of each :meth:`build_arrays` call.

        Returns
        -------
        list of CrystalGraph or Exception
            Per item, its graph or the ``ValueError``/``TypeError`` it
            raised. The cut of all of them runs as one pass
            (:meth:`_build_many`).
        """
        arrays_list, where = [], []
        for j, kw in enumerate(items):
            try:
                arrays_list.append(_input_arrays(kw["numbers"], kw["frac_coords"],
                                                 kw["lattice"]))
            except (ValueError, TypeError):  # build_arrays below gives its error
                continue
            where.append(j)
        out = [None] * len(items)
        built = self._build_many(arrays_list, [items[j].get("on_pairs") for j in where])
        for j, graph in zip(where, built):
            out[j] = graph
        for j, kw in enumerate(items):
            if out[j] is None:  # grown, or the error naming it
                try:
                    out[j] = self.build_arrays(**kw)
                except (ValueError, TypeError) as exc:
                    out[j] = exc
        return out

    def _build_many(self, arrays_list, on_pairs=None):
        """The graphs of several structures' arrays, the cut in one pass.

        One neighbour search per structure, then the cut of all their pairs
        at once: a small cell's cut is a few dozen numpy calls, whose
        overhead, not the arithmetic, was most of its graph's time. The
        graphs are those :meth:`_build` makes one at a time.

        Parameters
        ----------
        arrays_list : list of tuple
            :func:`_structure_arrays` of each structure (lattice checked).
        on_pairs : list of callable or None, optional
            Per structure, as for :meth:`build_arrays`.

        Returns
        -------
        list of CrystalGraph, Exception or None
            Per structure, its graph; the ``ValueError``/``TypeError`` its
            ``on_pairs`` raised; or None where :meth:`_build` must run (an
            atom with too few neighbours: an error, or a grown radius).
        """
        if len(arrays_list) > _BATCH:
            return [g for j in range(0, len(arrays_list), _BATCH) for g in self._build_many(
                arrays_list[j:j + _BATCH], None if on_pairs is None else on_pairs[j:j + _BATCH])]
        out = [None] * len(arrays_list)
        if not arrays_list:
            return out
        radius = float(self.radius)
        pairs = _Pairs.search(arrays_list, radius)
        ok = pairs.sizes > 0
        if on_pairs is not None:
            for j, ((lo, hi), check) in enumerate(zip(pairs.pair_slices(), on_pairs)):
                if check is None:
                    continue
                try:
                    check(pairs.dist[lo:hi], radius)
                except (ValueError, TypeError) as exc:
                    out[j], ok[j] = exc, False
        k = self.max_neighbors
        if self.neighbor_mode != "reference" and ok.any():
            need = self._min_neighbors()
            counts = np.bincount(pairs.global_center, minlength=int(pairs.sizes.sum()))
            fewest = np.minimum.reduceat(counts, np.minimum(pairs.first_atom, len(counts) - 1))
            ok &= fewest >= need
        done = np.flatnonzero(ok)
        if not len(done):
            return out
        if len(done) < len(arrays_list):
            arrays_list = [arrays_list[j] for j in done]
            pairs = pairs.take(done)
        if self.neighbor_mode == "reference":
            graphs = _reference_graphs(arrays_list, pairs, int(k), radius)
        else:
            graphs = _keep_ties_graphs(arrays_list, pairs, k, self.tie_tol, radius)
            if self.symmetrize is not None:
                graphs = [symmetrize_graph(g, mode=self.symmetrize) for g in graphs]
        for j, graph in zip(done.tolist(), graphs):
            out[j] = graph
        return out

    def _min_neighbors(self):
        """Neighbours every atom needs within the radius: ``max_neighbors``
        where the radius grows to reach them, else one."""
        k = self.max_neighbors
        return 1 if (k is None or not self.grow_radius) else k

    def _build(self, arrays, where, formula, specie, on_pairs=None):
        """The graph of ``arrays`` (see :func:`_structure_arrays`); ``formula()``
        and ``specie(atom)`` name the structure and an atom in errors."""
        n_atoms = len(arrays[0])
        radius = float(self.radius)
        k = self.max_neighbors
        pairs = _Pairs.search([arrays], radius)
        if on_pairs is not None:
            on_pairs(pairs.dist, radius)
        if self.neighbor_mode == "reference":
            return _reference_graphs([arrays], pairs, int(k), radius)[0]
        need = self._min_neighbors()
        while True:
            counts = np.bincount(pairs.center, minlength=n_atoms)
            if counts.min() >= need:
                break
            if not self.grow_radius:
                atom = int(np.argmin(counts))
                raise ValueError(
                    f"{where} ({formula()}): atom "
                    f"{atom} ({specie(atom)}) has no neighbour within "
                    f"radius={radius:g} Å; increase radius or pass "
                    "grow_radius=True")
            if radius >= MAX_RADIUS:
                atom = int(np.argmin(counts))
                raise ValueError(
                    f"{where} ({formula()}): atom "
                    f"{atom} ({specie(atom)}) has {counts[atom]} "
                    f"neighbour(s) within {radius:g} Å (the largest radius), "
                    f"fewer than max_neighbors={need}: an isolated atom in "
                    "vacuum? Lower max_neighbors or check the structure")
            radius = min(radius * self._growth, MAX_RADIUS)
            pairs = _Pairs.search([arrays], radius)
        graph = _keep_ties_graphs([arrays], pairs, k, self.tie_tol, radius)[0]
        if self.symmetrize is not None:
            graph = symmetrize_graph(graph, mode=self.symmetrize)
        return graph


def _structure_arrays(structure, where="structure"):
    """(atomic numbers, fractional, Cartesian coordinates, lattice, pbc), read
    once; a ValueError naming ``where`` and the site for a disordered one."""
    species = _site_species(structure, where)
    lattice_ = structure.lattice
    lattice = np.ascontiguousarray(lattice_.matrix, dtype=np.float64)
    frac = np.ascontiguousarray(structure.frac_coords, dtype=np.float64)
    cart = _cartesian(frac, lattice)
    pbc = np.ascontiguousarray(lattice_.pbc, dtype=np.int64)
    numbers = np.fromiter((sp.Z for sp in species), dtype=np.int64, count=len(species))
    return numbers, frac, cart, lattice, pbc


def _input_arrays(numbers, frac_coords, lattice):
    """:func:`_structure_arrays` of a structure given as arrays (periodic in
    all three directions)."""
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    frac = np.ascontiguousarray(frac_coords, dtype=np.float64)
    return (np.asarray(numbers, dtype=np.int64), frac, _cartesian(frac, lattice),
            lattice, np.ones(3, dtype=np.int64))


def _cartesian(frac, lattice):
    """Cartesian coordinates, Å, shape (n_atoms, 3), equal to the bit to
    pymatgen's ``Structure.cart_coords``.

    pymatgen multiplies each site's fractional vector by the lattice on its
    own; one (n, 3) @ (3, 3) matrix product can round differently in the last
    bit where BLAS fuses multiply-adds (measured on an AVX-512 CPU: 97% of
    random cells differ). A distance then moves by ~1e-15 Å, which reverses
    two exactly tied neighbours, and the reference cut (the 12th of a tied
    shell) keeps another atom than the reference code does. A stack of
    vector-by-matrix products rounds as pymatgen does.
    """
    return np.matmul(frac[:, None, :], lattice)[:, 0]


def _starts(counts):
    """Index of each group's first item, given the group sizes."""
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


class _Pairs:
    """The neighbour pairs of several structures, concatenated.

    Attributes
    ----------
    sizes : array of int, shape (n_structures,)
        Atoms of each structure.
    first_atom : array of int, shape (n_structures,)
        Offset of each structure's atoms in the concatenated atoms.
    center, neighbor : array of int, shape (n_pairs,)
        Atom indices within the pair's own structure.
    images : array of float, shape (n_pairs, 3)
        Lattice translation of the neighbour (whole numbers).
    dist : array of float, shape (n_pairs,)
        Distance, Å.
    owner : array of int, shape (n_pairs,)
        The pair's structure.
    """

    __slots__ = ("sizes", "center", "neighbor", "images", "dist", "owner")

    def __init__(self, sizes, center, neighbor, images, dist, owner):
        self.sizes = sizes
        self.center, self.neighbor, self.images, self.dist = center, neighbor, images, dist
        self.owner = owner

    @property
    def first_atom(self):
        return _starts(self.sizes)

    @classmethod
    def concat(cls, arrays_list, found, numerical_tol=1e-8):
        """The pairs of ``found[j] = (center, neighbor, images, dist)``, the
        search's output for ``arrays_list[j]``, without the zero-distance
        pair of each atom with itself (its periodic images are kept)."""
        sizes = np.array([len(a[0]) for a in arrays_list], dtype=np.int64)
        if len(found) == 1:
            center, neighbor, images, dist = found[0]
            owner = None
        else:
            center, neighbor, images, dist = (np.concatenate(p) for p in zip(*found))
            owner = np.repeat(np.arange(len(found), dtype=np.int64),
                              [len(f[0]) for f in found])
        keep = np.flatnonzero((center != neighbor) | (dist > numerical_tol))
        owner = np.zeros(len(keep), dtype=np.int64) if owner is None else owner.take(keep)
        # take: faster than fancy indexing on small arrays, the same values
        return cls(sizes, center.take(keep).astype(np.int64, copy=False),
                   neighbor.take(keep).astype(np.int64, copy=False), images.take(keep, axis=0),
                   dist.take(keep), owner)

    @classmethod
    def search(cls, arrays_list, radius, numerical_tol=1e-8):
        """All pairs within ``radius`` Å of each structure of ``arrays_list``
        (see :func:`_structure_arrays`), self excluded.

        Calls pymatgen's Cython ``find_points_in_spheres`` on the arrays
        directly (what ``Structure.get_neighbor_list`` wraps, minus its
        per-call Python overhead, which dominated for small cells).
        """
        from pymatgen.optimization.neighbors import find_points_in_spheres

        found = [find_points_in_spheres(a[2], a[2], r=radius, pbc=a[4], lattice=a[3],
                                        tol=numerical_tol) for a in arrays_list]
        return cls.concat(arrays_list, found, numerical_tol)

    @property
    def global_center(self):
        """Centre indices in the concatenated atoms."""
        return self.center + self.first_atom[self.owner] if len(self.sizes) > 1 \
            else self.center

    def pair_slices(self):
        """(start, stop) of each structure's pairs (they are grouped by structure)."""
        stops = np.cumsum(np.bincount(self.owner, minlength=len(self.sizes))).tolist()
        return zip([0] + stops[:-1], stops)

    def grouped(self):
        """These pairs grouped by (global) centre, each centre's in their order."""
        center = self.global_center
        if len(center) < 2 or (center[1:] >= center[:-1]).all():
            return self  # as the search lists them
        order = np.argsort(center, kind="stable")
        return _Pairs(self.sizes, self.center[order], self.neighbor[order],
                      self.images[order], self.dist[order], self.owner[order])

    def take(self, structures):
        """The pairs of the structures at positions ``structures`` (ascending)."""
        new = np.full(len(self.sizes), -1, dtype=np.int64)
        new[structures] = np.arange(len(structures))
        keep = np.flatnonzero(new[self.owner] >= 0)
        return _Pairs(self.sizes[structures], self.center[keep], self.neighbor[keep],
                      self.images[keep], self.dist[keep], new[self.owner[keep]])


def _graphs_of_edges(arrays_list, pairs, order, radius):
    """One CrystalGraph per structure from the pairs at ``order`` (grouped by
    structure, each structure's edges in graph order)."""
    center, neighbor = pairs.center.take(order), pairs.neighbor.take(order)
    dist = pairs.dist.take(order)
    images = np.rint(pairs.images.take(order, axis=0))  # whole numbers, as floats
    stops = [len(order)] if len(arrays_list) == 1 else \
        np.cumsum(np.bincount(pairs.owner[order], minlength=len(arrays_list))).tolist()
    graphs, lo = [], 0
    for arrays, hi in zip(arrays_list, stops):
        graphs.append(_graph(arrays, center[lo:hi], neighbor[lo:hi], dist[lo:hi],
                             images[lo:hi], radius))
        lo = hi
    return graphs


def _keep_ties_graphs(arrays_list, pairs, k, tie_tol, radius):
    """The graphs of the ``k`` nearest neighbours of each atom plus those tied
    with the ``k``-th, for all the structures of a batch in one pass.

    Each atom's edges are in order of ``own centre index * (2 radius + 1) +
    distance``, ties in search order: the order of the graphs built before
    the cut was batched (the key's rounding merges distances a few 1e-15 Å
    apart; keeping it keeps those graphs, and their caches, bit for bit),
    and the same whatever batch a structure is cut in. Every atom must have
    a pair.
    """
    if len(arrays_list) == 1:
        # one structure: one argsort of all its pairs is fewer numpy calls
        # than the partition below (the k-th in key order is the k-th
        # nearest, to the key's rounding)
        order = np.argsort(pairs.center * (2.0 * radius + 1.0) + pairs.dist, kind="stable")
        if k is not None and len(order):
            counts = np.bincount(pairs.center, minlength=int(pairs.sizes[0]))
            sorted_dist = pairs.dist[order]
            kth = sorted_dist[_starts(counts) + np.minimum(counts, k) - 1]
            order = order[sorted_dist <= kth[pairs.center[order]] + tie_tol]
        return _graphs_of_edges(arrays_list, pairs, order, radius)
    # many: sort only the pairs up to each atom's tied shell
    pairs = pairs.grouped()
    center, dist = pairs.global_center, pairs.dist
    if k is None:
        cand = np.arange(len(dist))
    else:
        counts = np.bincount(center, minlength=int(pairs.sizes.sum()))
        cand = np.flatnonzero(dist <= _kth_smallest(center, dist, counts, k)[center] + tie_tol)
    key = pairs.center[cand] * (2.0 * radius + 1.0) + dist[cand]
    return _graphs_of_edges(arrays_list, pairs, cand[np.lexsort((key, center[cand]))], radius)


# table cells (atoms x the most pairs of any atom) of one partition in
# _kth_smallest; more atoms are done in blocks (8 bytes a cell)
_TABLE_CELLS = 2 ** 22


def _kth_smallest(center, dist, counts, k):
    """Each atom's ``k``-th smallest pair distance, Å (inf where it has at most
    ``k`` pairs, so that all of them are kept).

    Parameters
    ----------
    center : array of int, shape (n_pairs,)
        Pair centres, grouped (non-decreasing).
    dist : array of float, shape (n_pairs,)
    counts : array of int, shape (n_atoms,)
        Pairs of each atom.
    k : int
    """
    n = len(counts)
    kth = np.full(n, np.inf)
    width = int(counts.max(initial=0))
    if width <= k:
        return kth
    starts = _starts(counts)
    rank = np.arange(len(center)) - starts[center]
    step = max(1, _TABLE_CELLS // width)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        p0, p1 = int(starts[lo]), (int(starts[hi]) if hi < n else len(center))
        table = np.full((hi - lo, width), np.inf)
        table[center[p0:p1] - lo, rank[p0:p1]] = dist[p0:p1]
        kth[lo:hi] = np.partition(table, k - 1, axis=1)[:, k - 1]
    return kth


def _reference_graphs(arrays_list, pairs, k, radius):
    """The reference graphs of several structures, the cut in one pass.

    The reference sorts each atom's neighbour list (in the order of
    pymatgen's neighbour search, which :class:`_Pairs` keeps) with Python's
    stable ``sorted`` by distance and keeps the first ``k``, compared on
    exact distances. Here each atom's ``k``-th smallest distance is found by
    a partition, and only the pairs up to it are sorted (a stable lexsort on
    centre and distance): the same ``k`` pairs in the same order, for all
    the structures of a batch at once, because numpy's per-call overhead,
    not the arithmetic, was most of a small cell's cut. Atoms with fewer
    than ``k`` pairs are padded with edges to atom 0 at ``radius + 1`` Å.

    Parameters
    ----------
    arrays_list : list of tuple
        :func:`_structure_arrays` of each structure.
    pairs : _Pairs
        Their pairs within ``radius``.
    k : int
    radius : float

    Returns
    -------
    list of CrystalGraph
    """
    pairs = pairs.grouped()
    sizes, first_atom = pairs.sizes, pairs.first_atom
    n = int(sizes.sum())
    center, dist = pairs.global_center, pairs.dist
    counts = np.bincount(center, minlength=n)
    cand = np.flatnonzero(dist <= _kth_smallest(center, dist, counts, k)[center])
    cand = cand[np.lexsort((dist[cand], center[cand]))]
    rank = np.arange(len(cand)) - _starts(np.bincount(center[cand], minlength=n))[center[cand]]
    cand, rank = cand[rank < k], rank[rank < k]
    # k slots per atom, its kept pairs first, then the padding; a padding
    # slot reads the extra last row: atom 0, radius + 1 Å, image (0, 0, 0)
    slot = np.full(n * k, len(dist), dtype=np.int64)
    slot[center[cand] * k + rank] = cand
    neighbor = np.append(pairs.neighbor, 0)[slot]
    dist = np.append(dist, radius + 1.0)[slot]
    images = np.rint(np.concatenate([pairs.images, np.zeros((1, 3))]).take(slot, axis=0))
    local = np.repeat(np.arange(n, dtype=np.int64) - np.repeat(first_atom, sizes), k)
    graphs = []
    for arrays, lo, hi in zip(arrays_list, (first_atom * k).tolist(),
                              ((first_atom + sizes) * k).tolist()):
        graphs.append(_graph(arrays, local[lo:hi], neighbor[lo:hi], dist[lo:hi],
                             images[lo:hi], radius))
    return graphs


def _graph(arrays, center, neighbor, dist, images, radius):
    """The CrystalGraph of the chosen (centre, neighbour, distance, image) edges;
    ``images`` are the lattice translations as whole-number floats (kept as
    floats for the vectors: adding an int64 array to a float one is several
    times slower, with the same values)."""
    numbers, frac, cart, lattice, _ = arrays
    vectors = (frac.take(neighbor, axis=0) + images) @ lattice - cart.take(center, axis=0)
    return CrystalGraph(atomic_numbers=numbers, positions=cart, lattice=lattice,
                        center=center, neighbor=neighbor,
                        distances=dist.astype(np.float64), offsets=images.astype(np.int64),
                        vectors=vectors, radius=radius)


def build_graph(structure, radius=8.0, max_neighbors=12, tie_tol=1e-3, grow_radius=False,
                neighbor_mode="keep_ties", symmetrize=None):
    """Build one crystal graph; see :class:`GraphBuilder` for the parameters."""
    return GraphBuilder(radius, max_neighbors, tie_tol, grow_radius,
                        neighbor_mode, symmetrize).validate().build(structure)


def check_builder(builder, name="builder", validate=True):
    """``builder`` (validated unless ``validate=False``: a per-read key lookup); a
    TypeError naming ``name`` for anything else than a :class:`GraphBuilder` (not an
    AttributeError on ``.validate``)."""
    if not (hasattr(builder, "validate") and hasattr(builder, "key")):
        raise TypeError(f"{name} must be a GraphBuilder, got {type(builder).__name__}")
    return builder.validate() if validate else builder

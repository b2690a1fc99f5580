"""Input checks shared by every public entry point.

Errors name the offending item by its position in the user's input, so a
bad row in a 10,000-structure CSV can be found.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import sys

import numpy as np

__all__ = ["check_structures", "check_targets", "check_consistent_length", "as_structure_list",
           "split_input", "descriptor_values", "structure_key"]


def first_line(exc):
    """An exception's message on one line, for errors reported one per line
    (its type's name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(obj):
    text = repr(obj)
    return text if len(text) < 60 else text[:57] + "..."


def as_structure_list(X, name="X"):
    """Turn a list, tuple, numpy object array or pandas Series into a list.

    Does not check the items (see :func:`check_structures`).
    """
    # a DataFrame or Series exists only where pandas was imported: the
    # check imports nothing (pandas takes ~0.3 s, which `skcrystal predict`
    # does not spend)
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(X, pd.DataFrame):
        raise TypeError(
            f"{name} is a DataFrame; pass the structure column (a Series) or "
            "use an estimator that accepts DataFrames with descriptor columns")
    if pd is not None and isinstance(X, pd.Series):
        return list(X.to_numpy())
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            hint = ""
            if X.dtype == object and X.size and type(X.flat[0]).__name__ == "PeriodicSite":
                hint = (": np.array(structures, dtype=object) split each Structure "
                        "into its sites; make the array with a = np.empty(n, "
                        "dtype=object); a[:] = structures")
            raise ValueError(
                f"{name} must be one-dimensional (one structure per row), "
                f"got an array of shape {X.shape}{hint}")
        return list(X)
    if isinstance(X, (list, tuple)):
        return list(X)
    from pymatgen.core import Structure
    if isinstance(X, Structure):
        raise TypeError(
            f"{name} is a single Structure; pass a list of structures, "
            f"e.g. [{name}]")
    try:
        return list(X)
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of pymatgen Structures, got "
            f"{type(X).__name__}") from None


def split_input(X, structure_column="structure", name="X", descriptor_columns=True):
    """The one place where user input becomes structures (+ descriptor columns).

    Parameters
    ----------
    X : sequence of Structure, pandas Series, or DataFrame
        A DataFrame holds the structures in ``structure_column`` and,
        optionally, numeric descriptor columns.
    structure_column : str
    descriptor_columns : bool
        Read the other columns of a DataFrame as descriptors (else ignore
        them).

    Returns
    -------
    structures : list
        The items (not yet validated, see :func:`check_structures`).
    block : ndarray of float64, shape (n, k), or None
        The other columns of a DataFrame.
    names : list of str
        Their names.
    """
    # a DataFrame or Series exists only where pandas was imported: the
    # check imports nothing (pandas takes ~0.3 s, which `skcrystal predict`
    # does not spend)
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(X, pd.DataFrame):
        if structure_column not in X.columns:
            raise ValueError(
                f"{name} is a DataFrame without the structure column "
                f"structure_column={structure_column!r}; columns are {list(X.columns)}")
        other = X.drop(columns=[structure_column])
        if not descriptor_columns:
            return list(X[structure_column]), None, []
        non_numeric = [c for c in other.columns
                       if not pd.api.types.is_numeric_dtype(other[c])]
        if non_numeric:
            raise ValueError(
                f"descriptor columns of {name} must be numeric; not numeric: {non_numeric}")
        block = other.to_numpy(dtype=np.float64) if other.shape[1] else None
        return list(X[structure_column]), block, [str(c) for c in other.columns]
    return as_structure_list(X, name), None, []


def _is_bare_matminer(obj):
    return (type(obj).__module__.startswith("matminer.")
            and callable(getattr(obj, "featurize", None)))


def _refuse_bare_matminer(transformer):
    """A matminer featurizer must come wrapped (it fits, then fails at predict).

    matminer featurizers set no fitted attributes, so scikit-learn's
    ``Pipeline`` reports them unfitted at predict time, and their
    multiprocessing, NaN rows and input types are not a transformer's.
    """
    steps = getattr(transformer, "steps", None)
    parts = [s[1] for s in steps] if isinstance(steps, list) else [transformer]
    for part in parts:
        if _is_bare_matminer(part):
            name = type(part).__name__
            raise TypeError(
                f"descriptors: {name} is a bare matminer featurizer; wrap it as "
                f"skcrystal.descriptors.MatminerFeaturizer({name}(...), "
                "on='structure' or 'composition'), which converts the structures, "
                "imputes missing values and names failing structures")


def descriptor_values(transformer, structures, fit):
    """Run a descriptor transformer: (values (n, k) float64, column names).

    Parameters
    ----------
    transformer : transformer
        Structures -> numbers; ``fit_transform`` when ``fit`` else
        ``transform``.
    structures : list of Structure
    fit : bool
    """
    if fit:
        _refuse_bare_matminer(transformer)
    values = transformer.fit_transform(structures) if fit else transformer.transform(structures)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(structures):
        raise ValueError(
            f"descriptors transformer {type(transformer).__name__} returned shape "
            f"{values.shape}, expected ({len(structures)}, n_descriptors)")
    try:
        names = [str(n) for n in transformer.get_feature_names_out()]
    except (AttributeError, TypeError, ValueError):
        names = [f"descriptor_{i}" for i in range(values.shape[1])]
    return values, names


#: Smallest accepted volume per atom, Å^3. Far below any solid at ambient
#: pressure (diamond, among the densest, has 5.7 Å^3/atom); a cell below it
#: is a unit mistake (bohr/nm read as Å), a collapsed lattice or a
#: degenerate one (zero-volume lattices crash spglib, killing the process).
MIN_VOLUME_PER_ATOM = 1.0

#: Smallest accepted distance between two atoms (periodic images included),
#: Å. The shortest real bond, H-H in H2, is 0.74 Å; two sites closer than this
#: are a duplicated line in a POSCAR/CIF or a symmetry-expansion error, and
#: make bond angles 0/0 (NaN predictions for every structure of a batch).
MIN_INTERATOMIC_DISTANCE = 0.5

#: Smallest accepted ``volume / (|a| |b| |c|)`` (1 for orthogonal vectors,
#: 0 for coplanar ones). Nearly coplanar lattice vectors make neighbour
#: searches enumerate huge numbers of periodic images; 1e-4 is about a
#: 0.006 degree angle between two equal vectors. A valid but badly chosen
#: basis is fixed with ``structure.get_reduced_structure()``.
MIN_LATTICE_REGULARITY = 1e-4

#: Largest accepted span of a structure, Å: the extent of its sites and of
#: its cell along x, y or z. Crystal cells are far smaller (complex
#: intermetallics and MOFs reach ~100 Å); beyond this, neighbour searches
#: (which bin the whole span) need gigabytes. Sites far outside the cell
#: (unwrapped coordinates) count: wrap them with
#: ``Structure.from_sites(s, to_unit_cell=True)``.
MAX_SPAN = 500.0

#: Structure subclasses rejected: they carry meaning (a vacuum gap, a
#: surface normal, an interface) that graphs and descriptors would silently
#: read as part of a bulk crystal.
_SURFACE_CLASSES = ("Slab", "Interface")


def _item(name, i, s=None, sources=None):
    """``X[3] (NaCl, file 'POSCAR_3')``: how errors name one structure."""
    parts = []
    if s is not None:
        try:
            parts.append(s.composition.reduced_formula)
        except Exception:  # noqa: BLE001 - an unreadable composition is no reason to hide the index
            pass
    if sources is not None:
        parts.append(f"file {str(sources[i])!r}")
    return f"{name}[{i}]" + (f" ({', '.join(parts)})" if parts else "")


def _check_lattice(matrix, frac, pbc, where):
    """Finite, non-degenerate lattice and finite coordinates (arrays: lattice
    rows in Å, fractional coordinates, periodic flags); returns None.

    ``where`` names the structure in errors: a str, or a callable making
    it (so the formula is only computed on failure).
    """
    if callable(where):
        try:
            _check_lattice_arrays(matrix, frac, pbc, "")
        except ValueError:
            where = where()  # failed: redo with the name, unchained
        else:
            return
    _check_lattice_arrays(matrix, frac, pbc, where)


def _faces(rows):
    """(b x c, c x a, a x b) of the lattice rows ``a, b, c`` (lists of floats, Å)
    and the cell volume |a . (b x c)| (Å^3), in Python floats."""
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = rows
    crosses = ((b2 * c3 - b3 * c2, b3 * c1 - b1 * c3, b1 * c2 - b2 * c1),
               (c2 * a3 - c3 * a2, c3 * a1 - c1 * a3, c1 * a2 - c2 * a1),
               (a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1))
    return crosses, abs(a1 * crosses[0][0] + a2 * crosses[0][1] + a3 * crosses[0][2])


def _check_lattice_arrays(matrix, frac, pbc, where):
    """:func:`_check_lattice` with ``where`` a str."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{where} has a non-finite lattice (NaN or inf): "
                         f"{matrix.tolist()}")
    frac = np.asarray(frac, dtype=np.float64)
    n_sites = len(frac)
    if not np.isfinite(frac).all():
        bad = ~np.all(np.isfinite(frac), axis=1)
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where} has non-finite coordinates (NaN or inf) at site "
                         f"{j}: {frac[j].tolist()}")
    # a 3 x 3 matrix in Python floats: numpy's per-call overhead (norm, det,
    # stacking the cell's corners) cost more than the arithmetic, on every
    # structure of every estimator call
    rows = matrix.tolist()
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = rows
    lengths = [math.sqrt(a1 * a1 + a2 * a2 + a3 * a3), math.sqrt(b1 * b1 + b2 * b2 + b3 * b3),
               math.sqrt(c1 * c1 + c2 * c2 + c3 * c3)]
    _, volume = _faces(rows)
    pbc = np.asarray(pbc, dtype=bool).tolist()
    short = [j for j in range(3) if pbc[j] and lengths[j] < MIN_INTERATOMIC_DISTANCE]
    if short:
        j = short[0]
        raise ValueError(
            f"{where}: lattice vector {'abc'[j]} is {lengths[j]:.3g} Å long (< "
            f"{MIN_INTERATOMIC_DISTANCE} Å), so every atom overlaps its own "
            "periodic image; the lattice is degenerate")
    per_atom = volume / n_sites
    if not per_atom >= MIN_VOLUME_PER_ATOM:
        raise ValueError(
            f"{where} has a singular or collapsed lattice: {per_atom:.3g} Å^3 per "
            f"atom (volume {volume:.3g} Å^3, {n_sites} sites), below the physical "
            f"minimum of {MIN_VOLUME_PER_ATOM} Å^3/atom (lattice in bohr or nm "
            "instead of Å? coplanar lattice vectors?)")
    cart = frac @ matrix
    # the cell's corners reach, along each axis, from the sum of the lattice
    # vectors' negative components to the sum of their positive ones
    span = max(max(hi, max(x, 0.0) + max(y, 0.0) + max(z, 0.0))
               - min(lo, min(x, 0.0) + min(y, 0.0) + min(z, 0.0))
               for lo, hi, x, y, z in zip(cart.min(axis=0).tolist(), cart.max(axis=0).tolist(),
                                          (a1, a2, a3), (b1, b2, b3), (c1, c2, c3)))
    if not span <= MAX_SPAN:
        j = int(np.argmax(np.abs(frac - 0.5).max(axis=1)))
        raise ValueError(
            f"{where} spans {span:.4g} Å (sites and cell), more than {MAX_SPAN:g} Å: "
            "larger than any crystal's cell, and its neighbour search would need "
            f"gigabytes. Site {j} is at fractional coordinates {frac[j].tolist()}; "
            "wrap unwrapped coordinates with Structure.from_sites(s, "
            "to_unit_cell=True) (a molecule in a vacuum box is not a crystal)")
    regularity = volume / (lengths[0] * lengths[1] * lengths[2])
    if not regularity >= MIN_LATTICE_REGULARITY:
        raise ValueError(
            f"{where} has nearly coplanar lattice vectors (volume / (|a||b||c|) = "
            f"{regularity:.3g} < {MIN_LATTICE_REGULARITY}); reduce the cell first, "
            "e.g. structure.get_reduced_structure()")


def _lattices_pass(arrays_list):
    """Whether each structure passes :func:`_check_lattice_arrays`, for many
    at once.

    The same checks in a few numpy calls for the whole list (one at a time,
    Python's float arithmetic is faster, but numpy's per-call overhead then
    came to ~20 µs a structure). The few structures they fail are checked
    again one at a time, so that a threshold hit to the last bit gets the
    verdict of :func:`_check_lattice_arrays` (which also names what is wrong,
    for a caller that needs the message).

    Parameters
    ----------
    arrays_list : list of tuple
        ``(numbers, frac, cart, lattice, pbc)`` of each structure: atomic
        numbers, fractional and Cartesian coordinates (Å), lattice rows (Å),
        periodic flags.

    Returns
    -------
    array of bool, shape (n_structures,)
    """
    if not arrays_list:
        return np.zeros(0, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # NaN/inf fail
        ok = _lattices_pass_unguarded(arrays_list)
    for j in np.flatnonzero(~ok).tolist():
        a = arrays_list[j]
        try:
            _check_lattice_arrays(a[3], a[1], a[4], "")
        except ValueError:
            continue
        ok[j] = True
    return ok


def _lattices_pass_unguarded(arrays_list):
    """:func:`_lattices_pass` of a non-empty list, numpy's warnings left as set."""
    matrix = np.stack([a[3] for a in arrays_list])
    pbc = np.stack([a[4] for a in arrays_list]).astype(bool)
    n_sites = np.array([len(a[1]) for a in arrays_list])
    ok = np.isfinite(matrix).all(axis=(1, 2)) & (n_sites > 0)
    if not ok.all():  # the rest need a finite lattice and a site
        good = np.flatnonzero(ok)
        if len(good):
            ok[good] = _lattices_pass_unguarded([arrays_list[j] for j in good])
        return ok
    first = np.zeros(len(n_sites), dtype=np.int64)
    np.cumsum(n_sites[:-1], out=first[1:])
    frac = np.concatenate([a[1] for a in arrays_list])
    ok &= np.logical_and.reduceat(np.isfinite(frac).all(axis=1), first)
    lengths = np.sqrt((matrix ** 2).sum(axis=2))
    ok &= ~((lengths < MIN_INTERATOMIC_DISTANCE) & pbc).any(axis=1)
    volume = np.abs((matrix[:, 0] * np.cross(matrix[:, 1], matrix[:, 2])).sum(axis=1))
    ok &= volume / n_sites >= MIN_VOLUME_PER_ATOM
    cart = np.concatenate([a[2] for a in arrays_list])
    # as in _check_lattice_arrays: sites and the cell's corners along each axis
    low = np.minimum(np.minimum.reduceat(cart, first), np.minimum(matrix, 0.0).sum(axis=1))
    high = np.maximum(np.maximum.reduceat(cart, first), np.maximum(matrix, 0.0).sum(axis=1))
    ok &= (high - low).max(axis=1) <= MAX_SPAN
    ok &= volume / lengths.prod(axis=1) >= MIN_LATTICE_REGULARITY
    return ok


# cells of at most this many sites are first checked by direct distances
_DIRECT_OVERLAP_SITES = 32


def _no_close_pair(matrix, frac, pbc):
    """True when no two sites of a small periodic cell (wrapped fractional
    coordinates) are closer than the minimum distance, checked by direct
    distances to the 27 nearest cells; False when there may be one (then
    the neighbour search decides and names it).

    pymatgen's neighbour search has a fixed cost that dominates for small
    cells; the direct distances cost less there (figures in
    ``benchmarks/RESULTS.md``). It is exact only where every interplanar spacing
    exceeds the minimum distance (a pair that close then lies within one
    cell of each other), so other cells, and any distance within 1e-9 Å of
    the minimum, go to the search.
    """
    n = len(frac)
    if n > _DIRECT_OVERLAP_SITES or not pbc.all():
        return False
    # interplanar spacings: volume / area of the face spanned by the other two
    crosses, volume = _faces(matrix.tolist())
    areas = [math.sqrt(x * x + y * y + z * z) for x, y, z in crosses]
    if not min(areas) > 0 or min(volume / area for area in areas) \
            <= MIN_INTERATOMIC_DISTANCE + 1e-6:
        return False
    diff = (frac[None, :, :] - frac[:, None, :])[None] + _CELL_OFFSETS[:, None, None, :]
    vec = diff.reshape(-1, 3) @ matrix
    d2 = np.einsum("ij,ij->i", vec, vec).reshape(27, n, n)
    # a site and itself in the same cell
    d2[13, np.arange(n), np.arange(n)] = np.inf
    return bool(d2.min() > (MIN_INTERATOMIC_DISTANCE + 1e-9) ** 2)


# the 27 cell offsets in {-1, 0, 1}^3, the zero offset at index 13
_CELL_OFFSETS = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1)
                          for k in (-1, 0, 1)], dtype=np.float64)


def _check_overlaps_arrays(matrix, frac, pbc, where, specie):
    """No two sites (periodic images included) closer than the minimum, for a
    structure given as arrays; ``specie(j)`` names site ``j``'s element,
    ``where`` (a str, or a callable making it) the structure."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    frac = np.array(frac, dtype=np.float64)
    # wrapping along periodic directions changes no distance, and keeps the
    # search box (hence its memory) to the cell
    frac[:, pbc] -= np.floor(frac[:, pbc])
    if _no_close_pair(matrix, frac, pbc):
        return
    cart = np.ascontiguousarray(frac @ matrix)
    # the neighbour search bins the box into cubes of the search radius: in
    # a large sparse cell, 0.5 Å cubes would need gigabytes, so search
    # further (at most ~2e6 cubes) and keep the close pairs
    extent = np.ptp(cart, axis=0) + 2 * np.abs(matrix).sum(axis=0) * pbc + 1.0
    r = max(MIN_INTERATOMIC_DISTANCE, float(np.cbrt(np.prod(extent) / 2e6)))
    center, neighbor, images, dist = find_points_in_spheres(
        cart, cart, r=r, pbc=np.ascontiguousarray(pbc, dtype=np.int64), lattice=matrix,
        tol=1e-8)
    # drop each atom's pair with itself in the same cell (its images stay)
    keep = ((center != neighbor) | np.any(np.round(images) != 0, axis=1)) & (
        dist < MIN_INTERATOMIC_DISTANCE)
    if not keep.any():
        return
    center, neighbor, dist = center[keep], neighbor[keep], dist[keep]
    k = int(np.argmin(dist))
    if callable(where):
        where = where()
    a, b = sorted((int(center[k]), int(neighbor[k])))
    if a == b:
        raise ValueError(
            f"{where}: site {a} ({specie(a)}) is {dist[k]:.3f} Å from its own "
            f"periodic image (< {MIN_INTERATOMIC_DISTANCE} Å); the lattice is "
            "degenerate")
    raise ValueError(
        f"{where}: sites {a} and {b} ({specie(a)}, {specie(b)}) are "
        f"{dist[k]:.3f} Å apart (< {MIN_INTERATOMIC_DISTANCE} Å): overlapping "
        "atoms, e.g. a duplicated line in the structure file")


def _site_species(s, where):
    """The species of each site of an ordered structure; a ValueError naming
    ``where`` (a str, or a callable making it) and the first disordered site
    otherwise.

    One pass over the sites: a site is ordered when its composition is one
    species at occupancy 1 (pymatgen's ``Site.is_ordered``);
    ``Structure.is_ordered``, ``.species`` and ``.atomic_numbers`` would each
    walk the sites again (a third of the checks' time on small cells).
    """
    out = []
    for j, site in enumerate(s):
        comp = site.species
        if len(comp) != 1 or comp.num_atoms != 1:
            raise ValueError(
                f"{where() if callable(where) else where} is disordered: "
                f"site {j} has partial occupancy {comp}; graphs and "
                "descriptors need ordered structures (order it first, e.g. with "
                "pymatgen's OrderDisorderedStructureTransformation)")
        out.append(next(iter(comp)))
    return out


def check_structures(X, name="X", supported_elements=None, sources=None):
    """Validate a sequence of pymatgen structures, before any expensive work.

    Every public entry point that takes structures runs this check, so a
    structure that is not a physical crystal is reported by its position
    (and file) instead of crashing a C library or giving NaN predictions.

    Parameters
    ----------
    X : list, tuple, ndarray of object or pandas Series of Structure
    name : str
        How the argument is called in error messages.
    supported_elements : set of int, optional
        Atomic numbers that have features; others raise ``ValueError``.
    sources : sequence of str, optional
        Where each structure came from (file names), same length as ``X``;
        errors quote the file.

    Returns
    -------
    list of Structure
        ``IStructure`` items are converted to (mutable) ``Structure``.

    Raises
    ------
    TypeError
        An item is not a ``Structure`` (a ``Molecule``, a CIF string...).
    ValueError
        Empty input, or an item that is empty, disordered, a ``Slab`` or
        ``Interface``, holds dummy species or elements without features,
        has non-finite coordinates or lattice, a singular, collapsed
        (< :data:`MIN_VOLUME_PER_ATOM` Å^3/atom) or degenerate lattice, spans
        more than :data:`MAX_SPAN` Å (cell or unwrapped sites), or
        two sites closer than :data:`MIN_INTERATOMIC_DISTANCE` Å. The
        message names the item: ``X[i] (formula, file ...)``.
    """
    from pymatgen.core import Structure

    items = as_structure_list(X, name)
    if len(items) == 0:
        raise ValueError(f"{name} is empty: at least one structure is needed")
    if sources is not None:
        sources = list(sources)
        if len(sources) != len(items):
            raise ValueError(f"sources has {len(sources)} entries but {name} has "
                             f"{len(items)} structures")
    # the checks of all structures at once, in a few numpy calls; the ones
    # that cannot be cleared so are checked one by one, in order: the first
    # error raised is the one checking every structure with _check_one would
    # raise, with its message
    for i in np.flatnonzero(~_quick_pass(items, supported_elements)).tolist():
        _check_one(items, i, name, supported_elements, sources)
    for i, s in enumerate(items):
        if not isinstance(s, Structure):
            items[i] = Structure.from_sites(s, properties=s.properties)
    return items


def _quick_pass(items, supported_elements=None):
    """Per structure, True where every check of :func:`check_structures`
    surely passes, for all the structures at once.

    The per-structure reads stay in Python (types, species); the lattice
    and overlap checks run as a few numpy calls for all of them
    (:func:`_lattices_pass`, :func:`_no_close_pairs`), where one at a time
    numpy's per-call overhead cost more than the arithmetic. False means
    "check it alone" (:func:`_check_one`), which decides and names the
    problem: a structure this cannot clear may still pass.

    Returns
    -------
    array of bool, shape (len(items),)
    """
    from pymatgen.core import DummySpecies, IStructure

    ok = np.zeros(len(items), dtype=bool)
    arrays, where = [], []
    for i, s in enumerate(items):
        if not isinstance(s, IStructure) or len(s) == 0 or any(
                c.__name__ in _SURFACE_CLASSES for c in type(s).__mro__):
            continue
        try:
            species = _site_species(s, "")
        except ValueError:
            continue
        if any(isinstance(sp, DummySpecies) for sp in species) or (
                supported_elements is not None
                and not all(sp.Z in supported_elements for sp in species)):
            continue
        lattice = s.lattice
        matrix, frac = lattice.matrix, s.frac_coords
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf: checked alone
            arrays.append((None, frac, frac @ matrix, matrix, np.asarray(lattice.pbc)))
        where.append(i)
    if arrays:
        lattice_ok = _lattices_pass(arrays)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf: not cleared
            clear = _no_close_pairs(arrays)
        for j in np.flatnonzero(lattice_ok & ~clear).tolist():
            # a cell the direct check cannot clear (more than 32 sites, thin,
            # or a close pair): the neighbour search decides, unnamed here
            try:
                _check_overlaps_arrays(arrays[j][3], arrays[j][1], arrays[j][4], "", str)
            except ValueError:
                continue
            clear[j] = True
        ok[where] = lattice_ok & clear
    return ok


def _no_close_pairs(arrays_list):
    """:func:`_no_close_pair` of many structures, in a few numpy calls per
    site count: True where no two sites are closer than the minimum
    distance, checked by direct distances; False where there may be one.

    Parameters
    ----------
    arrays_list : list of tuple
        ``(numbers, frac, cart, lattice, pbc)`` of each structure (see
        :func:`_lattices_pass`; lattices finite).
    """
    out = np.zeros(len(arrays_list), dtype=bool)
    sizes = np.array([len(a[1]) for a in arrays_list])
    periodic = np.stack([np.asarray(a[4], dtype=bool) for a in arrays_list]).all(axis=1)
    for n in np.unique(sizes[(sizes <= _DIRECT_OVERLAP_SITES) & periodic]).tolist():
        group = np.flatnonzero((sizes == n) & periodic)
        # at most ~1e6 distances per pass
        step = max(1, 2 ** 20 // (27 * n * n))
        for lo in range(0, len(group), step):
            idx = group[lo:lo + step]
            matrix = np.stack([arrays_list[j][3] for j in idx]).astype(np.float64)
            frac = np.stack([arrays_list[j][1] for j in idx]).astype(np.float64)
            frac = frac - np.floor(frac)
            # interplanar spacings (volume / face area) above the minimum:
            # a close pair then lies within one cell of each other
            a, b, c = matrix[:, 0], matrix[:, 1], matrix[:, 2]
            faces = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)
            areas = np.sqrt((faces ** 2).sum(axis=2))
            volume = np.abs((a * faces[:, 0]).sum(axis=1))
            with np.errstate(divide="ignore", invalid="ignore"):
                thick = (areas.min(axis=1) > 0) & (
                    (volume[:, None] / areas).min(axis=1) > MIN_INTERATOMIC_DISTANCE + 1e-6)
            diff = (frac[:, None, :, :] - frac[:, :, None, :])[:, None] \
                + _CELL_OFFSETS[None, :, None, None, :]
            vec = diff.reshape(len(idx), -1, 3) @ matrix
            d2 = np.einsum("mki,mki->mk", vec, vec).reshape(len(idx), 27, n, n)
            d2[:, 13, np.arange(n), np.arange(n)] = np.inf  # a site and itself
            far = d2.reshape(len(idx), -1).min(axis=1) > (MIN_INTERATOMIC_DISTANCE + 1e-9) ** 2
            out[idx] = thick & far
    return out


def _check_one(items, i, name, supported_elements, sources):
    """The checks of :func:`check_structures` on ``items[i]``, raising the
    first that fails, its message naming the item."""
    from pymatgen.core import DummySpecies, IStructure

    s = items[i]
    if not isinstance(s, IStructure):
        hint = ""
        if isinstance(s, str):
            hint = (" (a string: parse CIFs first, e.g. with "
                    "skcrystal.datasets.structures_from_cif)")
        elif any(c.__name__ == "Atoms" and c.__module__.split(".")[0] == "ase"
                 for c in type(s).__mro__):
            hint = (" (an ASE Atoms: convert it with pymatgen's "
                    "AseAtomsAdaptor.get_structure(atoms), from pymatgen.io.ase)")
        elif type(s).__name__ in ("Molecule", "IMolecule"):
            hint = (" (a Molecule has no lattice; these models take periodic crystals: "
                    "put it in a box with Molecule.get_boxed_structure)")
        src = "" if sources is None else f" (file {str(sources[i])!r})"
        kind = type(s).__name__
        article = "an" if kind[:1].upper() in "AEIOU" else "a"
        raise TypeError(
            f"{name}[{i}]{src} is {article} {kind}, not a pymatgen "
            f"Structure{hint}: {_describe(s)}")
    if len(s) == 0:
        raise ValueError(f"{_item(name, i, None, sources)} is an empty structure "
                         "(no sites)")

    def where(i=i, s=s):
        # the formula costs as much as the checks: made for an error only
        return _item(name, i, s, sources)

    kind = type(s).__name__
    if any(c.__name__ in _SURFACE_CLASSES for c in type(s).__mro__):
        raise ValueError(
            f"{where()} is a pymatgen {kind}: its vacuum gap and surface would be "
            "read as one bulk crystal (density, symmetry, graph). To do that "
            f"on purpose, pass Structure.from_sites({kind.lower()})")
    species = _site_species(s, where)
    j = next((j for j, sp in enumerate(species) if isinstance(sp, DummySpecies)), None)
    if j is not None:
        raise ValueError(
            f"{where()} has a dummy species {species[j]} (site {j}), which is "
            "not an element; replace it with a real element or remove it")
    # read once for both checks (frac_coords walks the sites each time)
    lattice = s.lattice
    matrix, frac, pbc = lattice.matrix, s.frac_coords, lattice.pbc
    _check_lattice(matrix, frac, pbc, where)
    if supported_elements is not None:
        zs = {sp.Z for sp in species}
        missing = zs.difference(supported_elements)
        if missing:
            from pymatgen.core import Element
            names = ", ".join(Element.from_Z(z).symbol for z in sorted(missing))
            raise ValueError(
                f"{where()} contains element(s) with no atom features: {names}")
    _check_overlaps_arrays(matrix, frac, pbc, where, species.__getitem__)


def check_targets(y, n_samples=None, name="y", allow_nan=False, classification=False):
    """Validate targets: shape, finiteness and length.

    Returns
    -------
    ndarray
        ``y`` as an array of shape (n,) or (n, n_targets) (float for
        regression, unchanged dtype for classification).
    """
    if y is None:
        raise ValueError(f"{name} is required (got None)")
    try:
        import pandas as pd
        if isinstance(y, (pd.Series, pd.DataFrame)):
            y = y.to_numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        arr = np.asarray(y)
    except ValueError:
        # numpy refuses rows of different lengths ("inhomogeneous shape")
        raise ValueError(f"{name} is ragged: {_ragged_row(y)}") from None
    if arr.dtype == object and arr.ndim >= 1 and any(
            np.ndim(v) > 0 for v in arr.reshape(-1)[:10000]):
        raise ValueError(f"{name} is ragged: {_ragged_row(y)}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must be a 1-D or 2-D array, got a scalar")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty: at least one target is needed")
    if arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if classification:
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D for a classifier, got shape {arr.shape}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr))
            raise ValueError(f"{name} has NaN/inf labels at rows {bad[:10].tolist()}")
        _check_labels(arr, name)
    else:
        if arr.dtype == object or arr.dtype.kind in "USb":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                flat = arr.reshape(len(arr), -1)
                rows = [i for i in range(len(flat)) if not all(_is_number(v) for v in flat[i])]
                shown = []
                for i in rows[:5]:
                    row = flat[i].tolist()  # Python values: 'N/A', not np.str_('N/A')
                    shown.append(f"{i} ({(row[0] if len(row) == 1 else row)!r})")
                shown = ", ".join(shown)
                raise TypeError(
                    f"{name} must be numeric for a regressor, got dtype "
                    f"{np.asarray(y).dtype} with values that are no numbers at rows "
                    f"{shown}{' ...' if len(rows) > 5 else ''}") from None
        arr = arr.astype(np.float64)
        if not allow_nan:
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
                raise ValueError(
                    f"{name} contains NaN or inf at rows {rows[:10].tolist()}"
                    f"{' ...' if len(rows) > 10 else ''}")
    if n_samples is not None:
        check_consistent_length(n_samples, len(arr), "X", name)
    return arr


def as_numbers(values, name):
    """``values`` as a float64 array; a ValueError naming ``name`` if some are no numbers."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers: {exc}") from None


def _is_number(v):
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _is_missing(v):
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, pandas NA
    except (TypeError, ValueError):
        return False


def _check_labels(arr, name):
    """Class labels: no missing ones, and no continuous floats."""
    if arr.dtype == object:
        missing = [i for i, v in enumerate(arr) if _is_missing(v)]
        if missing:
            raise ValueError(
                f"{name} has missing labels (None/NaN) at rows {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}; every structure needs a class")
        floats = [i for i, v in enumerate(arr)
                  if isinstance(v, (float, np.floating)) and not float(v).is_integer()]
    elif arr.dtype.kind == "f":
        floats = np.flatnonzero(arr != np.round(arr)).tolist()
    else:
        return
    if floats:
        i = floats[0]
        raise ValueError(
            f"{name} has continuous values (e.g. {float(arr[i])!r} at row {i}; "
            f"{len(floats)} non-integer values, {len(set(arr.tolist()))} distinct): a "
            "classifier needs discrete class labels. Use the regressor for a "
            "continuous target, or bin the values into classes first")


def _ragged_row(y):
    """Describe the first row of ``y`` whose length differs from row 0's."""
    def length(v):
        return len(v) if np.ndim(v) > 0 else None
    rows = list(y)
    ref = length(rows[0]) if rows else None
    for i, v in enumerate(rows):
        if length(v) != ref:
            what = lambda n: ("a scalar" if n is None  # noqa: E731
                              else f"{n} value{'' if n == 1 else 's'}")
            return f"row {i} has {what(length(v))} but row 0 has {what(ref)}"
    return "rows of different lengths or nested sequences"


def check_keyword_names(target, params, prefix="", owner=None):
    """Raise if ``target`` (a class or function) takes none of some ``params``.

    Python's own error ("got an unexpected keyword argument 'hiden'") names
    neither the object nor the prefixed name the user wrote
    (``module__hiden``); this one names both and lists what is accepted.

    Parameters
    ----------
    target : class or function
        Its signature decides; anything else (an instance, None), a
        signature with ``**kwargs`` or one that :func:`inspect.signature`
        cannot read accepts every name.
    params : iterable of str
        Keyword names to be passed to ``target``.
    prefix : str
        Written before each name in the message (``"module__"``).
    owner : str, optional
        The name of ``target`` in the message (default: its ``__name__``).

    Raises
    ------
    TypeError
        ``"<prefix><name>: <owner> has no parameter '<name>' (did you mean
        ...?). Its parameters: ..."``, for the first unknown name.
    """
    import inspect
    if not (isinstance(target, type) or inspect.isfunction(target)):
        return
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    known = [n for n, p in signature.parameters.items()
             if n != "self" and p.kind is not p.VAR_POSITIONAL]
    unknown = [n for n in params if n not in known]
    if not unknown:
        return
    import difflib
    name = unknown[0]
    owner = owner or getattr(target, "__name__", type(target).__name__)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
    raise TypeError(f"{prefix + name}: {owner} has no parameter {name!r}{hint}. "
                    f"Its parameters: {', '.join(known)}")


def constructor_parameters(cls):
    """Names the constructors along ``cls``'s hierarchy take.

    A subclass passes ``**kwargs`` on to its base (skorch's ``NeuralNet``
    takes ``device``, ``lr``...), so its own signature is not the whole set.
    """
    import inspect
    return {n for klass in cls.__mro__ if "__init__" in vars(klass)
            for n, p in inspect.signature(klass.__init__).parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def check_parameter_names(estimator, names, prefixes):
    """Raise if ``estimator`` takes none of some parameter ``names``.

    A name is taken when a constructor along its class hierarchy names it
    or it starts with one of ``prefixes`` and a double underscore
    (``module__hidden``); skorch's own check says only "unexpected
    argument(s)", without the estimator or the nearest valid name.

    Parameters
    ----------
    estimator : scikit-learn estimator
    names : iterable of str
    prefixes : iterable of str
        Routed prefixes (``"module"``, ``"optimizer"``...), without ``__``.

    Raises
    ------
    ValueError
        ``"<name>: <Estimator> has no parameter '<name>' (did you mean
        '<closest>'?); ..."`` for the first unknown name; a known prefix
        with one underscore (``optimizer_lr``) is told its double one.
    """
    import difflib
    prefixes = sorted(set(prefixes), key=lambda p: (-len(p), p))
    valid = constructor_parameters(type(estimator))
    cls = type(estimator).__name__
    for name in sorted(names):
        # "_params_to_validate" and other skorch internals that get_params returns
        if name in valid or name.endswith("_") or name.startswith("_"):
            continue
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is not None:
            if name.startswith(prefix + "__") or name == prefix:
                continue
            meant = prefix + "__" + name[len(prefix):].lstrip("_")
            raise ValueError(f"{name}: {cls} has no parameter {name!r} (did you mean "
                             f"{meant!r}?)")
        head, sep, rest = name.partition("__")
        if sep:  # a misspelt prefix: modul__hidden
            close = [c + "__" + rest for c in difflib.get_close_matches(head, prefixes, n=1)]
        else:
            close = difflib.get_close_matches(name, sorted(valid), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        routed = (f"; prefixed parameters start with one of "
                  f"{', '.join(sorted(p + '__' for p in prefixes))}") if prefixes else ""
        raise ValueError(f"{name}: {cls} has no parameter {name!r}{hint}{routed}")


def check_consistent_length(n_x, n_y, name_x="X", name_y="y"):
    if n_x != n_y:
        raise ValueError(
            f"{name_x} and {name_y} have different lengths: {n_x} structures "
            f"but {n_y} targets")


def check_positive(value, name, integer=False, allow_none=False, allow_zero=False):
    """Check a numeric parameter (> 0, or >= 0 with ``allow_zero``); the error names it."""
    if value is None and allow_none:
        return value
    kind = numbers.Integral if integer else numbers.Real
    if not isinstance(value, kind) or isinstance(value, bool) or not (
            value >= 0 if allow_zero else value > 0):
        what = ("a non-negative " if allow_zero else "a positive ") + \
            ("integer" if integer else "number")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_n_jobs(n_jobs, name="n_jobs"):
    """``n_jobs`` for joblib: None or a non-zero int (-1: all cores); the error names it."""
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral)
                               or n_jobs == 0):
        raise ValueError(f"{name} must be None or a non-zero integer (-1: all cores), got "
                         f"{n_jobs!r}")
    return n_jobs


def structure_key(structure):
    """Content hash of a structure (hex SHA-256).

    Two structures with the same lattice matrix, periodic directions,
    atomic numbers and fractional coordinates (bitwise) share a key;
    anything else differs. A disordered structure has no key (a ValueError
    naming its first disordered site).
    """
    try:
        n_sites = len(structure)
        matrix = structure.lattice.matrix
        pbc = structure.lattice.pbc
        numbers = [sp.Z for sp in _site_species(structure, "structure")]
        frac = structure.frac_coords
    except (AttributeError, TypeError):  # not "'str' object has no attribute 'lattice'"
        raise TypeError(f"structure must be a pymatgen Structure, got "
                        f"{type(structure).__name__}") from None
    return _arrays_key(n_sites, matrix, pbc, numbers, frac)


def _arrays_key(n_sites, matrix, pbc, numbers, frac):
    """:func:`structure_key` of a structure's arrays: site count, lattice rows
    (Å), periodic flags, atomic numbers, fractional coordinates."""
    h = hashlib.sha256()
    h.update(b"skcrystal-structure")
    h.update(np.int64(n_sites).tobytes())
    h.update(np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    h.update(np.asarray(pbc, dtype=np.uint8).tobytes())
    h.update(np.asarray(numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(frac, dtype=np.float64).tobytes())
    return h.hexdigest()

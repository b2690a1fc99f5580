"""CIF strings -> pymatgen structures, quickly and in parallel.

Most CIFs in crystal-ML data sets (the CDVAE CSVs, Materials Project dumps)
were written by pymatgen's ``CifWriter``: one data block, space group P1
with the single operation ``x, y, z``, one fully occupied atom per row.
pymatgen's general ``CifParser`` spends ~2.4 ms on each of them (tokenizer,
symmetry expansion, stoichiometry check); the fast path here reads that
layout directly and builds the same ``Structure`` (same lattice matrix, site
order, coordinates and labels, checked against ``CifParser`` on every row of
the perovskite, carbon_24 and supercon files) in a fraction of the time.
Anything it does not recognise (symmetry operations, partial occupancy,
oxidation-state symbols, multi-line values, several blocks, overlapping
sites...) goes to ``CifParser`` unchanged, so the fast path can only make
the common case faster, never parse a different file differently.
"""
from __future__ import annotations

import itertools
import math
import re
import warnings
from functools import partial

import numpy as np

from .._parallel import map_chunks
from .._validation import _faces

__all__ = ["structures_from_cif", "SkippedRowsWarning"]


class SkippedRowsWarning(UserWarning):
    """Rows dropped by a loader with ``on_error="skip"``.

    Attributes
    ----------
    skipped : list of (int, object, str)
        ``(row, id, reason)`` of every dropped row (``id`` is None when
        the source has no ids).
    """

    def __init__(self, message, skipped=()):
        super().__init__(message)
        self.skipped = list(skipped)


# pymatgen's defaults (CifParser site_tolerance / frac_tolerance; the
# minimal lattice thickness below which it refuses a structure).
_SITE_TOL = 1e-4
_FRAC_TOL = 1e-4
_MIN_THICKNESS = 0.01

_CELL_KEYS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
              "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
_SYMOP_KEYS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
_SYMOP_ID_KEYS = ("_symmetry_equiv_pos_site_id", "_space_group_symop_id")
_SYMOP_LOOP_KEYS = frozenset(_SYMOP_KEYS + _SYMOP_ID_KEYS)
_ATOM_KEYS = {"_atom_site_type_symbol", "_atom_site_label",
              "_atom_site_symmetry_multiplicity", "_atom_site_fract_x",
              "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"}
_SYMBOL = re.compile(r"^[A-Z][a-z]?$")
_ELECTRONEG = None
_PLAIN = None


def _electronegativities():
    """Pauling electronegativity by symbol (NaN where pymatgen has none)."""
    global _ELECTRONEG
    if _ELECTRONEG is None:
        from pymatgen.core import Element
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No Pauling electronegativity for He"
            _ELECTRONEG = {e.symbol: float(e.X) for e in Element}
    return _ELECTRONEG


def _plain_elements():
    """Electronegativity by bare element symbol pymatgen knows (no charge, no
    label): the symbols the fast readers take as a site's species."""
    global _PLAIN
    if _PLAIN is None:
        _PLAIN = {s: x for s, x in _electronegativities().items() if _SYMBOL.match(s)}
    return _PLAIN


def _plain_element(symbol):
    """Whether ``symbol`` is a bare element symbol pymatgen knows (see
    :func:`_plain_elements`)."""
    return symbol in _plain_elements()


class _NotSimple(Exception):
    """The CIF is outside the layout the fast path handles."""


def _fast_parse(text):
    """Parse a P1, fully ordered CIF as pymatgen's ``CifParser`` would.

    Raises ``_NotSimple`` for anything else (the caller then uses
    ``CifParser``); never returns a structure ``CifParser`` would build
    differently.
    """
    from pymatgen.core import Structure

    symbols, labels, matrix, frac = _fast_parse_arrays(text)
    return Structure(matrix, symbols, frac, labels=labels)


def _fast_parse_arrays(text):
    """:func:`_fast_parse` without building the ``Structure``.

    Returns
    -------
    symbols : list of str
        Element of each site, in ``CifParser``'s site order.
    labels : list of str
        Site labels, same order.
    matrix : ndarray, shape (3, 3)
        Lattice vectors as rows (Å), the matrix of the lattice ``CifParser``
        builds (:func:`_lattice_matrix`).
    frac : ndarray, shape (n_sites, 3)
        Fractional coordinates as ``CifParser`` stores them (snapped to
        1/3 and 2/3, wrapped into [0, 1)), same order.

    Raises
    ------
    _NotSimple
        Anything outside the layout handled (see :func:`_fast_parse`).
    """
    read = _fast_parse_arrays_many([text])[0]
    if isinstance(read, Exception):
        raise read
    return read


# the most (structures x sites^2) of one batched overlap check (8 bytes x 3
# a cell)
_OVERLAP_CELLS = 2 ** 16


def _fast_parse_arrays_many(texts):
    """:func:`_fast_parse_arrays` of several CIF texts.

    Each text's lines are read on their own; the numbers of all of them
    are then converted, snapped, wrapped and checked for overlapping sites
    in a few numpy calls (numpy's per-call cost, not the arithmetic, was
    most of a small cell's read). Those steps are elementwise, so every
    result is the one-text result to the bit; each lattice is still built
    on its own, with the calls ``Lattice.from_parameters`` makes.

    Returns
    -------
    list
        Per text, ``(symbols, labels, matrix, frac)`` or the exception
        that declines it (``_NotSimple``, or an error of a malformed text).
    """
    out = [None] * len(texts)
    read = []  # (position, symbols, labels, params, coordinate strings)
    for i, text in enumerate(texts):
        try:
            read.append((i, *_read_cif_text(text)))
        except Exception as exc:  # noqa: BLE001 - the caller's to judge
            out[i] = exc
    if not read:
        return out
    counts = [len(r[1]) for r in read]
    try:
        frac = np.array([c for r in read for c in r[4]], dtype=float).reshape(-1, 3)
    except ValueError:  # a malformed number: convert text by text to know whose
        frac, kept = [], []
        for r, n in zip(read, counts):
            try:
                frac.append(np.array(r[4], dtype=float).reshape(n, 3))
                kept.append(r)
            except ValueError as exc:  # uncertainties "1.23(4)", '?' ...
                out[r[0]] = _NotSimple(str(exc))
        if not kept:
            return out
        read, counts = kept, [len(r[1]) for r in kept]
        frac = np.concatenate(frac)
    # CifParser snaps coordinates within 1e-4 (relative) of 1/3 or 2/3 to the
    # exact value, then wraps into [0, 1); do the same so both paths agree.
    for ideal in (1 / 3, 2 / 3):
        frac[np.abs(frac / ideal - 1) <= _FRAC_TOL] = ideal
    frac -= np.floor(frac)
    starts = [0, *itertools.accumulate(counts)]
    cells = []  # (record, matrix, its coordinates)
    for r, lo, hi in zip(read, starts[:-1], starts[1:]):
        try:
            matrix = _lattice_matrix(*r[3])
            # CifParser refuses a lattice thinner than _MIN_THICKNESS (its
            # interplanar spacings d_100, d_010, d_001: the volume over the
            # area of each face); NaN passes here as there, for the checks
            # after
            faces, volume = _faces(matrix.tolist())
            for fx, fy, fz in faces:
                area = math.sqrt(fx * fx + fy * fy + fz * fz)
                if area == 0.0 or volume / area < _MIN_THICKNESS:
                    raise _NotSimple("degenerate lattice")
        except Exception as exc:  # noqa: BLE001 - _NotSimple, overflow...: declined
            out[r[0]] = exc
            continue
        cells.append((r, matrix, frac[lo:hi]))
    overlapping = _overlapping_sites([c[2] for c in cells])
    plain = _plain_elements()
    for (r, matrix, coords), overlap in zip(cells, overlapping):
        i, symbols, labels = r[:3]
        if overlap:
            # CifParser merges sites closer than site_tolerance (fractional,
            # periodic) into one disordered site; leave such files to it.
            out[i] = _NotSimple("overlapping sites")
            continue
        # CifParser returns sites sorted as pymatgen's Site.__lt__ orders
        # them (electronegativity, then symbol; stable, so file order within
        # an element). Sorting here builds the Structure once instead of
        # twice.
        x = [plain[sym] for sym in symbols]
        if not all(math.isfinite(v) for v in x):
            # NaN electronegativity (noble gases...) makes the order depend
            # on CifParser's internals: leave such files to it
            out[i] = _NotSimple("element without electronegativity")
            continue
        order = sorted(range(len(symbols)), key=lambda k: (x[k], symbols[k]))
        out[i] = ([symbols[k] for k in order], [labels[k] for k in order], matrix,
                  coords[order])
    return out


def _overlapping_sites(fracs):
    """Per fractional-coordinate array, whether two of its sites lie within
    ``_SITE_TOL`` of each other in every coordinate (periodically); the
    arrays of one site count are checked together."""
    result = [False] * len(fracs)
    by_count = {}
    for j, f in enumerate(fracs):
        if len(f) > 1:
            by_count.setdefault(len(f), []).append(j)
    for n, which in by_count.items():
        step = max(1, _OVERLAP_CELLS // (n * n))
        for lo in range(0, len(which), step):
            block = which[lo:lo + step]
            f = fracs[block[0]][None] if len(block) == 1 else np.stack([fracs[j] for j in block])
            d = f[:, :, None, :] - f[:, None, :, :]
            d -= np.round(d)
            # every site is close to itself: more than n close pairs means
            # two sites overlap
            close = np.count_nonzero((np.abs(d) < _SITE_TOL + 1e-12).all(axis=-1), axis=(1, 2))
            for j, c in zip(block, close.tolist()):
                result[j] = c > n
    return result


def _read_cif_text(text):
    """The lines of a CIF in the layout :func:`_fast_parse` handles: (symbols,
    labels, the six cell parameters as floats, the fractional coordinates as
    strings, three per site); ``_NotSimple`` for anything else."""
    cell = {}
    loops = []  # list of (headers, rows)
    n_blocks = 0
    # stripped once: the loop below looks at most lines two or three times
    lines = [line.strip() for line in text.splitlines()]
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        i += 1
        if not line:
            continue
        first = line[0]
        if first == "_":
            parts = line.split(None, 1)
            if len(parts) == 1:
                # value on the next line(s): only pymatgen handles that
                raise _NotSimple("value on a separate line")
            if parts[0] in _CELL_KEYS:
                cell[parts[0]] = parts[1]
            continue
        if first == "#":
            continue
        if first == ";":
            raise _NotSimple("multi-line value")
        low = line.lower()
        if low.startswith("data_"):
            n_blocks += 1
            if n_blocks > 1:
                raise _NotSimple("several data blocks")
            continue
        if low == "loop_":
            start = i
            while i < n and lines[i][:1] == "_":
                i += 1
            headers = lines[start:i]
            start = i
            while i < n:
                row = lines[i]
                if not row or row[0] in "_#;" or row.lower() == "loop_" \
                        or row[:5].lower() == "data_":
                    break
                i += 1
            loops.append((headers, lines[start:i]))
            continue
        raise _NotSimple(f"unexpected line {line!r}")
    if n_blocks != 1 or len(cell) != 6:
        raise _NotSimple("no single block with a complete cell")

    symops = None
    atoms = None
    for headers, rows in loops:
        if any(h in _SYMOP_KEYS for h in headers):
            if not set(headers) <= _SYMOP_LOOP_KEYS:
                raise _NotSimple("unknown symmetry loop")
            symops = rows
        elif any(h.startswith("_atom_site_") for h in headers):
            if atoms is not None or not set(headers) <= _ATOM_KEYS:
                raise _NotSimple("unknown atom-site loop")
            atoms = (headers, rows)
    if symops is None or len(symops) != 1:
        raise _NotSimple("not a single symmetry operation")
    op = symops[0].replace("'", "").replace('"', "").replace(" ", "").lower()
    if not op.endswith("x,y,z") or op[:-5] not in ("", "1"):
        raise _NotSimple("symmetry operation is not the identity")
    if atoms is None:
        raise _NotSimple("no atom sites")
    headers, rows = atoms
    need = ("_atom_site_type_symbol", "_atom_site_fract_x",
            "_atom_site_fract_y", "_atom_site_fract_z")
    if any(h not in headers for h in need) or len(rows) == 0:
        raise _NotSimple("atom sites lack symbol or fractional coordinates")
    col = {h: k for k, h in enumerate(headers)}
    n_cols = len(headers)
    k_sym = col["_atom_site_type_symbol"]
    k_label = col.get("_atom_site_label", k_sym)
    k_occ = col.get("_atom_site_occupancy")
    k_mult = col.get("_atom_site_symmetry_multiplicity")
    k_xyz = (col["_atom_site_fract_x"], col["_atom_site_fract_y"], col["_atom_site_fract_z"])
    plain = _plain_elements()
    symbols, labels, coords = [], [], []
    for row in rows:
        tok = row.split()
        if len(tok) != n_cols or "'" in row or '"' in row:
            raise _NotSimple("atom row does not split into the loop's columns")
        sym = tok[k_sym]
        if sym not in plain:
            raise _NotSimple(f"symbol {sym!r} is not a plain element")
        if k_occ is not None and float(tok[k_occ]) != 1.0:
            raise _NotSimple("partial occupancy")
        if k_mult is not None and tok[k_mult] != "1":
            raise _NotSimple("multiplicity other than 1")
        symbols.append(sym)
        labels.append(tok[k_label])
        coords += (tok[k_xyz[0]], tok[k_xyz[1]], tok[k_xyz[2]])
    try:
        params = [float(cell[k]) for k in _CELL_KEYS]
    except ValueError as exc:  # uncertainties "1.23(4)", '?' ...
        raise _NotSimple(str(exc)) from None
    return symbols, labels, params, coords


def _lattice_matrix(a, b, c, alpha, beta, gamma):
    """The matrix of ``Lattice.from_parameters(a, b, c, alpha, beta, gamma)``,
    bit for bit (the same numpy calls on the same values), without building
    the ``Lattice``: lengths in Å, angles in degrees; rows are the vectors."""
    angles = np.radians([alpha, beta, gamma])
    cos_alpha, cos_beta, cos_gamma = np.cos(angles).tolist()
    sin_alpha, sin_beta, _ = np.sin(angles).tolist()
    if sin_alpha * sin_beta == 0.0:
        # numpy would divide by zero (a degenerate cell): CifParser decides
        raise _NotSimple("an angle of 0 degrees")
    val = (cos_alpha * cos_beta - cos_gamma) / (sin_alpha * sin_beta)
    # np.clip's bounds in Python floats (NaN stays NaN, as there)
    val = -1.0 if val < -1.0 else 1.0 if val > 1.0 else val
    gamma_star = np.arccos(val)
    return np.array([[a * sin_beta, 0.0, a * cos_beta],
                     [-b * sin_alpha * float(np.cos(gamma_star)),
                      b * sin_alpha * float(np.sin(gamma_star)), b * cos_alpha],
                     [0.0, 0.0, c]], dtype=np.float64)


_PARSE_KW = None


def _pymatgen_parse(text):
    global _PARSE_KW
    import inspect

    from pymatgen.io.cif import CifParser
    if _PARSE_KW is None:
        # primitive=False keeps the cell as written (5-atom perovskite cells
        # stay 5 atoms; pymatgen < 2024.2 defaulted to primitive=True);
        # on_error="raise" (newer pymatgen) surfaces the real reason for a
        # failure instead of "Invalid CIF file with no structures!".
        params = inspect.signature(CifParser.parse_structures).parameters
        _PARSE_KW = {"primitive": False}
        if "on_error" in params:
            _PARSE_KW["on_error"] = "raise"
    try:
        structures = CifParser.from_str(text).parse_structures(**_PARSE_KW)
    except Exception:
        if "on_error" not in _PARSE_KW:
            raise
        try:
            structures = _structure_blocks(text)
        except Exception:  # noqa: BLE001 - the strict error says more
            structures = None
        if not structures:
            raise
    if len(structures) > 1:
        # one file (or row) is one target: taking the first block would
        # silently drop the rest
        raise ValueError(f"the CIF holds {len(structures)} structures (data blocks); one "
                         "structure per file or row is read: split it into one CIF per "
                         "structure")
    return structures[0]


def _structure_blocks(text):
    """The structures of a CIF whose failing blocks hold no atom sites, else None.

    pymatgen's strict mode fails on any block without a structure (the
    publication block ``data_global`` of journal and CSD exports); such
    blocks are left out, a block with atom sites that fails is not.
    """
    from pymatgen.io.cif import CifFile, CifParser
    site_keys = ("_atom_site_fract_x", "_atom_site_Cartn_x")
    n_with_sites = sum(any(k in block.data for k in site_keys)
                       for block in CifFile.from_str(text).data.values())
    try:
        structures = CifParser.from_str(text).parse_structures(primitive=False,
                                                               on_error="ignore")
    except ValueError:  # "no structures": the strict error says why
        return None
    return structures if len(structures) == n_with_sites else None


def _parse_one(text, parser):
    _check_cif_cell(text)
    if parser == "auto":
        try:
            return _fast_parse(text)
        except _NotSimple:
            pass
    return _pymatgen_parse(text)


def _parse_pairs(texts, parser):
    """Parse a list of CIFs; returns a (structure or None, error or None) per CIF."""
    out = []
    with warnings.catch_warnings():
        # pymatgen warns per file (coordinates rounded to 1/3, stoichiometry
        # checks, deprecations); over thousands of rows that floods the
        # console and says nothing actionable for graph models. Failures
        # still surface as exceptions below.
        warnings.simplefilter("ignore")
        for text in texts:
            try:
                out.append((_parse_one(text, parser), None))
            except Exception as exc:  # any parser failure is reported per row
                out.append((None, f"{type(exc).__name__}: {exc}{_not_cif_hint(text)}"))
    return out


def _check_cif_cell(text, empty=ValueError):
    """A ``ValueError`` (``empty`` for a missing or blank one) unless ``text`` is
    text: a CSV cell is NaN when empty, and a number when the column is not the
    CIF column."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or \
            (isinstance(text, str) and not text.strip()):
        raise empty("empty or missing CIF text")
    if not isinstance(text, str):
        value = f" ({text})" if isinstance(text, (int, float, np.number)) else ""
        raise ValueError(f"holds a {type(text).__name__}{value}, not CIF text (is the "
                         "CIF column the right one?)")


def _not_cif_hint(text):
    """What a text that failed as a CIF looks like instead ("" when it looks like one)."""
    if not isinstance(text, str) or "data_" in text.lower():
        return ""
    stripped = text.strip()
    if stripped.startswith("{"):
        return (" (the text is JSON, not a CIF: a pymatgen Structure dict is read with "
                "Structure.from_dict(json.loads(text)))")
    lines = stripped.splitlines()
    if len(lines) == 1 and stripped.lower().endswith((".cif", ".cif.gz", ".vasp")):
        return (" (the text is a file name, not CIF text: read files with "
                "skcrystal.datasets.load_structures)")
    try:  # POSCAR: comment, scale, three lattice rows
        float(lines[1].split()[0])
        if all(len([float(v) for v in line.split()[:3]]) == 3 for line in lines[2:5]):
            return (" (the text looks like a VASP POSCAR, not a CIF: read it with "
                    "pymatgen's Structure.from_str(text, fmt='poscar'))")
    except (IndexError, ValueError):
        pass
    return ""


# texts whose numbers the fast path converts and checks together
_FAST_BATCH = 256


def _parse_many(texts, n_jobs=None, parser="auto"):
    """Parse CIF strings; returns (list of Structure or None, list of error or None)."""
    texts = list(texts)
    if parser not in ("auto", "pymatgen"):
        raise ValueError(f"parser must be 'auto' or 'pymatgen', got {parser!r}")
    structures = [None] * len(texts)
    errors = [None] * len(texts)
    slow = list(range(len(texts)))
    if parser == "auto":
        # The fast path costs about what shipping a Structure back from a
        # worker process costs (pickling), so it always runs here; only the
        # CIFs it declines (pymatgen's CifParser, ~2 ms each) are worth
        # spreading over workers.
        from pymatgen.core import Structure

        strings = [i for i, text in enumerate(texts) if isinstance(text, str)]
        slow = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lo in range(0, len(strings), _FAST_BATCH):
                batch = strings[lo:lo + _FAST_BATCH]
                for i, read in zip(batch, _fast_parse_arrays_many([texts[i] for i in batch])):
                    try:
                        if isinstance(read, Exception):
                            raise read
                        symbols, labels, matrix, frac = read
                        structures[i] = Structure(matrix, symbols, frac, labels=labels)
                    except Exception:  # _NotSimple, malformed numbers...: CifParser judges
                        slow.append(i)
            slow.sort()
    if not slow:
        return structures, errors
    parsed = map_chunks(partial(_parse_pairs, parser="pymatgen"),
                        [texts[i] for i in slow], n_jobs, min_items=64)
    for i, (st, err) in zip(slow, parsed):
        structures[i], errors[i] = st, err
    return structures, errors


def _describe_row(i, ids, where):
    ident = f" (id {ids[i]!r})" if ids is not None else ""
    return f"row {i}{ident}{where}"


def _resolve_errors(structures, errors, on_error, ids=None, where="", what="CIF"):
    """Raise for the first bad row, or drop bad rows with one warning.

    ``what`` names the text of a row in the messages ("CIF", "structure
    file"). Returns the kept structures and their positions in the input.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    bad = [i for i, e in enumerate(errors) if e is not None]
    if bad and on_error == "raise":
        i = bad[0]
        more = f" ({len(bad) - 1} more rows also failed)" if len(bad) > 1 else ""
        raise ValueError(
            f"could not parse the {what} at {_describe_row(i, ids, where)}: "
            f"{errors[i]}{more}; pass on_error='skip' to drop unparsable rows")
    keep = np.array([i for i, e in enumerate(errors) if e is None], dtype=int)
    if bad and len(keep) == 0:
        raise ValueError(
            f"none of the {len(errors)} rows{where} could be parsed; the first, "
            f"{_describe_row(bad[0], ids, '')}: {errors[bad[0]]}")
    if bad:
        listed = ", ".join(_describe_row(i, ids, "") for i in bad[:20])
        warnings.warn(SkippedRowsWarning(
            f"skipped {len(bad)} of {len(errors)} rows{where} whose {what} could "
            f"not be parsed: {listed}{' ...' if len(bad) > 20 else ''}",
            [(i, None if ids is None else ids[i], errors[i]) for i in bad]),
            stacklevel=3)
    return [structures[i] for i in keep], keep


def structures_from_cif(strings, n_jobs=None, on_error="raise", ids=None,
                        parser="auto", return_index=False):
    """Parse CIF strings into pymatgen structures.

    The cell is kept exactly as written (no reduction to a primitive or
    standard cell). pymatgen's per-file CIF warnings are suppressed.

    Parameters
    ----------
    strings : iterable of str
        CIF texts, one structure each (data blocks without a structure,
        e.g. a publication block, are ignored; a CIF holding several
        structures is an error for its row).
    n_jobs : int, optional
        Worker processes for joblib (``-1``: all cores) for the CIFs that
        need pymatgen's ``CifParser`` (symmetry operations, partial
        occupancy...; ~2 ms each). pymatgen-written P1 CIFs (~0.3 ms each)
        are always parsed in this process: sending a Structure back from a
        worker costs as much as parsing it. Workers start by importing
        pymatgen (seconds), so this pays only for thousands of such CIFs on
        idle cores (measured on a busy 2-core machine, 3,787 rows through
        CifParser: 9.1 s serial, 18.6 s with ``n_jobs=2``).
    on_error : {"raise", "skip"}
        ``"raise"``: a ``ValueError`` naming the first failing row (0-based
        position in ``strings``) and its id. ``"skip"``: drop failing rows
        and issue one warning listing them.
    ids : sequence, optional
        Identifiers used in error messages, aligned with ``strings``.
    parser : {"auto", "pymatgen"}
        ``"auto"`` reads pymatgen-written P1 CIFs directly and hands any
        other CIF to ``pymatgen.io.cif.CifParser``; ``"pymatgen"`` always
        uses ``CifParser``. Both give the same structures.
    return_index : bool
        Also return the positions (in ``strings``) of the returned
        structures, to align targets after ``on_error="skip"``.

    Returns
    -------
    structures : list of Structure
    index : ndarray of int, shape (n_kept,)
        Only with ``return_index=True``.

    Examples
    --------
    >>> from skcrystal.datasets import structures_from_cif
    >>> X = structures_from_cif(df["cif"], n_jobs=2)  # doctest: +SKIP
    """
    if isinstance(strings, str):
        raise TypeError("strings must be a sequence of CIF texts, got a single "
                        "str; wrap it in a list: [cif]")
    strings = list(strings)
    if ids is not None:
        ids = list(ids)
        if len(ids) != len(strings):
            raise ValueError(f"ids has {len(ids)} entries but strings has {len(strings)}")
    structures, errors = _parse_many(strings, n_jobs=n_jobs, parser=parser)
    structures, index = _resolve_errors(structures, errors, on_error, ids=ids)
    return (structures, index) if return_index else structures

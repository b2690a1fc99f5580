"""Structure files -> graphs, a chunk at a time (in this process or a worker's).

The path ``skcrystal predict`` takes on a folder of structure files: each
file is read, parsed, checked and turned into its graph in one go, and the
graphs are predicted where they were built or sent to the process that
runs the network as collated batches (see
:func:`skcrystal.inference.predict_files`).

A CIF in the layout pymatgen's ``CifWriter`` writes (one block, P1, ordered
sites: what :func:`skcrystal.datasets._cif._fast_parse` accepts), and a
plain VASP 5 POSCAR in Direct coordinates
(:func:`skcrystal.datasets._io._fast_poscar_arrays`), never become a
pymatgen ``Structure``: the fast readers return the elements, lattice and
fractional coordinates, exactly the arrays ``CifParser``'s or ``Poscar``'s
``Structure`` would hold, and the checks of
:func:`skcrystal._validation.check_structures` and the graph builder run on
those arrays. Building a ``Structure`` and reading its arrays back cost
more than parsing and building the graph together. Every other file (CIFs
with symmetry operations, partial occupancy..., other POSCARs) goes through
pymatgen and ``check_structures`` unchanged. Either way the graph is the
one :meth:`GraphBuilder.build` gives for the structure pymatgen reads.

The module imports numpy and pymatgen only (no torch), so worker processes
start quickly.
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from .._validation import (MIN_INTERATOMIC_DISTANCE, _check_lattice,
                           _check_overlaps_arrays, _lattices_pass, check_structures,
                           first_line)
from ..datasets._cif import (_check_cif_cell, _fast_parse_arrays_many, _not_cif_hint,
                             _pymatgen_parse)
from ..datasets._io import _fast_poscar_arrays, _parse_poscar
from .builder import GraphBuilder
from .collate import DEFAULT_BATCH_SIZE, collate_arrays

__all__ = ["read_file_graphs", "file_chunk_graphs", "collate_file_chunk", "file_chunks",
           "start_file_chunks", "prepare_worker"]

_X0 = re.compile(r"^X\[0\]\s*")
# what the fast readers return is periodic in all three directions
_PERIODIC = np.ones(3, dtype=np.int64)
_NUMBERS = {}


def _atomic_number(symbol):
    z = _NUMBERS.get(symbol)
    if z is None:
        from pymatgen.core import Element
        z = _NUMBERS[symbol] = Element(symbol).Z
    return z


def _formula(symbols):
    from pymatgen.core import Composition
    try:
        return Composition(" ".join(symbols)).reduced_formula
    except Exception:  # noqa: BLE001 - only names the structure in an error
        return "?"


class FileError(ValueError):
    """A structure file that cannot be read, or a structure the model refuses.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        Why, without the file name.
    parse : bool
        True when the file could not be parsed at all.
    """

    def __init__(self, path, reason, parse=False):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason, self.parse = str(path), reason, parse

    def __reduce__(self):
        # a worker sends it back pickled (the default would call __init__
        # with the message alone)
        return type(self), (self.path, self.reason, self.parse)


class _Empty(ValueError):
    """A file or CSV cell with no text."""


def _read_text(path):
    """A structure file's text (gzip-compressed where it ends in .gz): UTF-8,
    undecodable bytes replaced, newlines universal, as text mode reads it.
    Decoded whole from bytes: a third less time than a text-mode file."""
    import gzip
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        text = fh.read().decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _is_cif(path):
    return str(path).lower().endswith((".cif", ".cif.gz"))


def _fast_arrays_many(texts, cif):
    """Per text, (symbols, lattice rows in Å, fractional coordinates) of a
    CifWriter-layout CIF or a plain POSCAR (``cif[k]`` says which), read
    without a Structure; None where the fast readers decline the text (the
    caller then uses pymatgen). The CIFs are read together
    (:func:`~skcrystal.datasets._cif._fast_parse_arrays_many`)."""
    out = [None] * len(texts)
    cifs = [k for k, c in enumerate(cif) if c]
    for k, read in zip(cifs, _fast_parse_arrays_many([texts[k] for k in cifs])):
        if not isinstance(read, Exception):  # _NotSimple, malformed numbers...
            symbols, _, matrix, frac = read
            out[k] = symbols, matrix, frac
    for k, c in enumerate(cif):
        if not c:
            try:
                out[k] = _fast_poscar_arrays(texts[k])
            except Exception:  # noqa: BLE001 - pymatgen judges
                pass
    return out


def _fast_build_args(symbols, matrix, frac, supported, lattice_passed=False):
    """The :meth:`GraphBuilder.build_arrays` arguments of what
    :func:`_fast_arrays` read, after the checks of ``check_structures`` that
    can fail for it; ``lattice_passed``: the lattice checks have passed
    (:func:`~skcrystal._validation._lattices_pass` on a whole chunk)."""
    pbc = _PERIODIC

    def where():
        return f"({_formula(symbols)})"

    # the checks of check_structures that can fail for an ordered, periodic
    # structure of real elements (what the fast reader returns)
    if not lattice_passed:
        _check_lattice(matrix, frac, pbc, where)
    numbers = np.fromiter((_atomic_number(s) for s in symbols), dtype=np.int64,
                          count=len(symbols))
    if supported is not None:
        missing = set(numbers.tolist()).difference(supported)
        if missing:
            # by atomic number, as check_structures lists them
            names = ", ".join(s for _, s in sorted({(int(z), s) for s, z in
                                                    zip(symbols, numbers) if z in missing}))
            raise ValueError(f"{where()} contains element(s) with no atom features: "
                             f"{names}")

    def check_overlaps(distances, radius):
        # the graph's neighbour search already holds every pair closer than
        # the minimum distance (radius is larger): the exact check runs only
        # when one is close (it then names the sites), or for a tiny radius
        if radius >= MIN_INTERATOMIC_DISTANCE + 1e-6 and \
                not (distances < MIN_INTERATOMIC_DISTANCE + 1e-6).any():
            return
        try:
            _check_overlaps_arrays(matrix, frac, pbc, "", str)
        except ValueError:
            _check_overlaps_arrays(matrix, frac, pbc, where(), lambda j: symbols[j])

    return dict(numbers=numbers, frac_coords=frac, lattice=matrix, where="structure",
                formula=lambda: _formula(symbols), symbols=symbols, on_pairs=check_overlaps)


def _slow_graph(path, text, builder, supported, cif):
    """The graph through pymatgen: parse, check_structures, build."""
    try:
        structure = _pymatgen_parse(text) if cif else _parse_poscar(text)
    except Exception as exc:  # noqa: BLE001 - any parser failure names the file
        hint = _not_cif_hint(text) if cif else ""
        raise FileError(path, f"cannot be parsed: {type(exc).__name__}: {first_line(exc)}"
                        f"{hint}", parse=True) from None
    structure = check_structures([structure], supported_elements=supported)[0]
    return builder.build(structure)


def read_file_graphs(paths, builder_params, supported=None):
    """Graphs of a chunk of structure files or CIF texts (the worker function).

    Parameters
    ----------
    paths : list of str or (str, str)
        Files, or ``(name, CIF text)`` pairs (a CSV's CIF column; ``name``
        says where the text comes from in errors).
    builder_params : dict
        :class:`GraphBuilder` parameters.
    supported : set of int, optional
        Atomic numbers the model has features for.

    Returns
    -------
    list of (CrystalGraph or None, FileError or None)
        One per path, in order.
    """
    builder = GraphBuilder(**builder_params).validate()
    out = []
    fast = []  # (position in out, path, build_arrays arguments)
    with warnings.catch_warnings():
        # pymatgen's per-file warnings (rounded coordinates, stoichiometry)
        # say nothing actionable for graph models
        warnings.simplefilter("ignore")
        texts = []  # (position in out, path, text, whether a CIF)
        for item in paths:
            path, text = item if isinstance(item, tuple) else (item, None)
            cif = text is not None or _is_cif(path)
            try:
                if text is None:
                    try:
                        text = _read_text(path)
                    except (OSError, UnicodeError) as exc:
                        raise FileError(path, f"cannot be read: {exc}", parse=True) from None
                try:
                    _check_cif_cell(text, empty=_Empty)
                except _Empty:
                    raise FileError(path, "is empty", parse=True) from None
                except ValueError as exc:  # a CSV cell of another column
                    raise FileError(path, str(exc), parse=True) from None
                texts.append((len(out), path, text, cif))
                out.append(None)
            except FileError as exc:
                out.append((None, exc))
            except (ValueError, TypeError) as exc:
                out.append((None, _file_error(path, exc)))
        reads = _fast_arrays_many([t[2] for t in texts], [t[3] for t in texts])
        for (j, path, text, cif), read in zip(texts, reads):
            if read is not None:
                fast.append((j, path, read))
                continue
            try:
                out[j] = (_slow_graph(path, text, builder, supported, cif), None)
            except FileError as exc:
                out[j] = (None, exc)
            except (ValueError, TypeError) as exc:
                out[j] = (None, _file_error(path, exc))
        # the lattice checks of the whole chunk at once; a file they fail is
        # checked again alone, for the error naming what is wrong
        passed = _lattices_pass([(None, frac, frac @ matrix, matrix, _PERIODIC)
                                 for *_, (_, matrix, frac) in fast]).tolist()
        checked = []
        for (j, path, read), ok in zip(fast, passed):
            try:
                checked.append((j, path, _fast_build_args(*read, supported, ok)))
            except (ValueError, TypeError) as exc:
                out[j] = (None, _file_error(path, exc))
        built = builder._build_arrays_many([args for *_, args in checked])
    for (j, path, _), graph in zip(checked, built):
        out[j] = (None, _file_error(path, graph)) if isinstance(graph, Exception) \
            else (graph, None)
    return out


# ``skcrystal predict`` with workers: up to this many processes in all, the
# workers send collated batches and this process runs the network on all of
# them (a worker then never imports torch, about a second of CPU each); with
# more, each process predicts its own chunks, because the network (a quarter
# to a third of a file's CPU) would keep this one busy while the workers wait
NETWORK_HERE_UP_TO = 2


def network_in_workers(n_processes):
    """Whether the workers of :func:`skcrystal.inference.predict_files` run
    the network themselves (else they send batches to the calling process).

    Parameters
    ----------
    n_processes : int
        Processes in all, the calling one included.
    """
    return n_processes > NETWORK_HERE_UP_TO


def file_chunk_graphs(paths, builder_params, supported=None, extras=()):
    """:func:`read_file_graphs` of a chunk, sorted into refused and built.

    Parameters
    ----------
    paths, builder_params, supported
        As for :func:`read_file_graphs`.
    extras : sequence of GraphExtra
        Graph extras to compute on the built graphs.

    Returns
    -------
    errors : list of (int, FileError)
        Position in ``paths`` and why that file gave no graph.
    valid : list of int
        Positions of the files with a graph, in order.
    graphs : list of CrystalGraph
        Their graphs, with ``extras`` computed.
    """
    from .cache import attach_extras

    results = read_file_graphs(paths, builder_params, supported)
    errors = [(j, err) for j, (_, err) in enumerate(results) if err is not None]
    valid = [j for j, (_, err) in enumerate(results) if err is None]
    graphs = [results[j][0] for j in valid]
    if graphs and extras:
        labels = [paths[j][0] if isinstance(paths[j], tuple) else paths[j] for j in valid]
        graphs = attach_extras(graphs, extras, labels=labels)
    return errors, valid, graphs


#: Chunks handed to each worker before this process is ready to run the
#: network (:func:`start_file_chunks`): about what a worker builds while
#: torch is imported and a model loaded (~1-2 s, at ~70 ms per chunk of
#: 256 small cells). More is harmless (this process takes later chunks
#: itself once it is ready), fewer leave the worker waiting.
EARLY_CHUNKS_PER_WORKER = 24


def file_chunks(paths, batch_size=None, chunk_size=None):
    """``paths`` in the chunks :func:`skcrystal.inference.predict_files`
    reads: whole batches of ``batch_size`` (default
    :data:`~skcrystal.graphs.collate.DEFAULT_BATCH_SIZE`), about 256 files
    (``chunk_size`` sets it)."""
    paths = [p if isinstance(p, tuple) else str(p) for p in paths]
    if chunk_size is None:
        batch = batch_size or DEFAULT_BATCH_SIZE
        chunk_size = 256 if batch < 1 else batch * max(1, 256 // batch)
    return [paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size)]


def collate_kwargs(builder_params, supported, extras, batch_size, numbers):
    """The keyword arguments of :func:`collate_file_chunk` (one place, so that
    chunks started early match the call that uses them)."""
    return dict(builder_params=builder_params,
                supported=None if supported is None else set(supported),
                extras=tuple(extras), batch_size=batch_size, numbers=bool(numbers))


def start_file_chunks(paths, builder_params, supported, n_jobs, batch_size=None, extras=(),
                      numbers=False):
    """Hand the first chunks of ``paths`` to the workers now (graphs collated
    for this process's network), before this process imports torch and
    loads the model; pass the result to
    :func:`skcrystal.inference.predict_files` as ``started``.

    Parameters
    ----------
    paths : sequence of str or (str, str)
    builder_params : dict
        Full :class:`GraphBuilder` parameters (those of a validated builder).
    supported : set of int or None
    n_jobs : int
        Processes in all, as later given to ``predict_files``.
    batch_size, extras, numbers
        The predictor's batch size and graph extras, and whether atomic
        numbers are asked for, as ``predict_files`` will have them.

    Returns
    -------
    StartedChunks or None
        None where no worker would run them (one process, or workers that
        run the network themselves).
    """
    from .._parallel import shared_processes, start_chunks

    n, _ = shared_processes(n_jobs)
    if n == 1 or network_in_workers(n):
        return None
    chunks = file_chunks(paths, batch_size)
    if len(chunks) < 2:
        return None
    return start_chunks(collate_file_chunk, chunks[:EARLY_CHUNKS_PER_WORKER * (n - 1)], n_jobs,
                        **collate_kwargs(builder_params, supported, extras,
                                         batch_size or DEFAULT_BATCH_SIZE, numbers))


def collate_file_chunk(paths, builder_params, supported=None, extras=(), batch_size=None,
                       numbers=False):
    """Graphs of a chunk of structure files, collated batch by batch for the
    network of another process (the worker function of
    :func:`skcrystal.inference.predict_files` up to ``NETWORK_HERE_UP_TO``
    processes; no torch here).

    Parameters
    ----------
    paths, builder_params, supported, extras
        As for :func:`file_chunk_graphs`.
    batch_size : int, optional
        Structures per batch (the model's); None or -1: one batch.
    numbers : bool
        Return the atomic numbers of each valid file's structure.

    Returns
    -------
    errors, valid
        As from :func:`file_chunk_graphs`.
    batches : list of CollatedArrays
        The graphs of ``valid`` in consecutive batches, floats as float32
        (the tensors' dtype).
    atomic_numbers : list of ndarray or None
    """
    errors, valid, graphs = file_chunk_graphs(paths, builder_params, supported, extras)
    step = len(graphs) if batch_size in (None, -1) else int(batch_size)
    batches = [collate_arrays(graphs[i:i + step], extras=extras, float_dtype=np.float32)
               for i in range(0, len(graphs), max(step, 1))]
    return errors, valid, batches, ([g.atomic_numbers for g in graphs] if numbers else None)


def _file_error(path, exc):
    """The FileError of a structure the checks or the graph builder refused."""
    return FileError(path, re.sub(r"^structure ", "", _X0.sub("", first_line(exc))))


def prepare_worker(imports=()):
    """What a worker of :func:`skcrystal.inference.predict_files` needs before
    its first file:
    the element table of the fast CIF reader and pymatgen's neighbour search
    (for :func:`skcrystal._parallel.start_workers`).

    Parameters
    ----------
    imports : sequence of str
        Modules to import beside, e.g. ``("skcrystal.inference",
        "skcrystal.nn")`` for a worker that also runs the network (torch
        and the module classes a pickled model names).
    """
    import gc
    import importlib

    from pymatgen.optimization.neighbors import find_points_in_spheres  # noqa: F401

    from ..datasets._cif import _electronegativities

    _electronegativities()
    for name in imports:
        importlib.import_module(name)
    # what is loaded now lives as long as the worker: the garbage collector
    # stops passing over it, in the worker's chunks and at its exit (with
    # torch loaded, ~0.3 s of teardown a clean stop would wait for)
    gc.freeze()


def _builder_params(builder):
    return {"radius": builder.radius, "max_neighbors": builder.max_neighbors,
            "tie_tol": builder.tie_tol, "grow_radius": builder.grow_radius,
            "neighbor_mode": builder.neighbor_mode, "symmetrize": builder.symmetrize}

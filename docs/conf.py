"""Sphinx configuration of the skcrystal documentation.

Build with ``bash scripts/docs.sh`` (or ``sphinx-build -W --keep-going -b html
docs docs/_build/html`` with the ``docs`` extra installed). The example
gallery executes ``examples/gallery/plot_*.py``; with ``SKCRYSTAL_DOCS_FAST=1``
those scripts run at their smallest setting (the test suite does this).
"""
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if (ROOT / "skcrystal" / "__init__.py").exists():
    sys.path.insert(0, str(ROOT))

# the gallery scripts train small models: one thread keeps the build
# predictable on shared machines and matches the test suite's setting
os.environ.setdefault("OMP_NUM_THREADS", "1")

import skcrystal  # noqa: E402

project = "skcrystal"
author = "the skcrystal developers"
copyright = "the skcrystal developers"
release = skcrystal.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.napoleon",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.md5",
                    "auto_examples/*.json"]
templates_path = ["_templates"]
html_static_path = []

# -- HTML ---------------------------------------------------------------------
html_theme = "furo"
html_title = f"skcrystal {release}"

# -- API reference ------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # numpydoc Parameters sections carry the types
autodoc_member_order = "groupwise"
autodoc_inherit_docstrings = True
# class pages (_templates/autosummary/class.rst) list inherited members up to
# skorch's NeuralNet and torch's Module, so an estimator page shows fit,
# predict, transform, score, save_params... but not skorch's or torch's
# internals; the hooks at the end of this file skip the rest

# numpydoc-style docstrings through napoleon, which renders the free-form
# sections some docstrings have ("Shapes", "Memory", "Ties"...) instead of
# dropping them; those section names are collected from the package so a new
# one needs no change here
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
napoleon_preprocess_types = False

_STANDARD_SECTIONS = {
    "args", "arguments", "attention", "attributes", "caution", "danger", "error",
    "example", "examples", "hint", "important", "keyword args", "keyword arguments",
    "methods", "note", "notes", "other parameters", "parameters", "receive", "receives",
    "return", "returns", "raise", "raises", "references", "see also", "tip", "todo",
    "warning", "warnings", "warn", "warns", "yield", "yields",
}


def _docstring_sections():
    names = set()
    for path in sorted(Path(skcrystal.__file__).resolve().parent.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for above, line in zip(lines, lines[1:]):
            title, rule = above.strip(), line.strip()
            if (title and re.fullmatch(r"-{3,}", rule) and len(rule) == len(title)
                    and title.lower() not in _STANDARD_SECTIONS):
                names.add(title)
    return sorted(names)


napoleon_custom_sections = _docstring_sections()

# The API pages are written from each public module's ``__all__`` at every
# build, so the reference lists every public class and function and cannot
# go stale: a new top-level module gets its page without a change here.
API_TITLES = {
    "estimators": "Estimators",
    "nn": "Torch models",
    "graphs": "Graphs",
    "datasets": "Data sets and loaders",
    "descriptors": "Descriptors",
    "probes": "Learnability probes",
    "baselines": "Baselines",
    "metrics": "Metrics and scorers",
    "ensemble": "Ensembles",
    "transfer": "Transfer learning",
    "pretrain": "Pretraining",
    "plotting": "Plotting",
    "cli": "Command line",
}


def api_modules():
    """Public top-level modules of skcrystal: the known ones in reading order, then the rest."""
    import pkgutil

    found = {m.name for m in pkgutil.iter_modules(skcrystal.__path__)
             if not m.name.startswith("_")}
    return [n for n in API_TITLES if n in found] + sorted(found - set(API_TITLES))


def public_names(mod):
    """``__all__``, or the public classes and functions the module defines."""
    import inspect

    if hasattr(mod, "__all__"):
        return list(mod.__all__)
    return [n for n, obj in vars(mod).items() if not n.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj))
            and getattr(obj, "__module__", None) == mod.__name__]


def _api_page(short):
    import importlib
    import inspect

    modname = f"skcrystal.{short}"
    mod = importlib.import_module(modname)
    doc = inspect.getdoc(mod) or ""
    title = API_TITLES.get(short) or doc.split("\n")[0].rstrip(".") or modname
    groups = {"Classes": [], "Functions": [], "Data": []}
    for name in public_names(mod):
        obj = getattr(mod, name)
        if inspect.isclass(obj):
            groups["Classes"].append(name)
        elif callable(obj) and not hasattr(obj, "_score_func"):  # scorers are objects
            groups["Functions"].append(name)
        else:
            groups["Data"].append(name)
    heading = f"``{modname}``: {title}"
    lines = [heading, "=" * len(heading), "",
             f".. automodule:: {modname}", "   :no-members:", "",
             f".. currentmodule:: {modname}", ""]
    for group, members in groups.items():
        if members:
            lines += [group, "-" * len(group), "", ".. autosummary::",
                      "   :toctree: generated", "   :nosignatures:", ""]
            lines += [f"   {m}" for m in members] + [""]
    return "\n".join(lines)


def _write(path, text):
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _write_api_pages():
    out = HERE / "api"
    out.mkdir(exist_ok=True)
    modules = api_modules()
    for short in modules:
        _write(out / f"{short}.rst", _api_page(short))
    # the toctree of api/index.rst, included from a file Sphinx does not
    # read as a page of its own
    _write(out / "modules.inc", "\n".join(
        [".. toctree::", "   :maxdepth: 1", "", *[f"   {m}" for m in modules], ""]))


_write_api_pages()

# -- Markdown -----------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- Example gallery ----------------------------------------------------------
# sphinx-gallery re-runs only scripts that changed; a build in the other mode
# (SKCRYSTAL_DOCS_FAST set or not) would keep the previous mode's figures, so
# the generated gallery is dropped when the mode changes
_GALLERY_OUT = HERE / "auto_examples"
_MODE = "fast" if os.environ.get("SKCRYSTAL_DOCS_FAST") == "1" else "full"
_STAMP = _GALLERY_OUT / ".skcrystal-docs-mode"
if _GALLERY_OUT.exists() and (not _STAMP.exists()
                              or _STAMP.read_text(encoding="utf-8") != _MODE):
    import shutil

    shutil.rmtree(_GALLERY_OUT)
_GALLERY_OUT.mkdir(exist_ok=True)
_STAMP.write_text(_MODE, encoding="utf-8")

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples" / "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "remove_config_comments": True,
    "show_memory": False,
    "show_signature": False,
    "write_computation_times": False,
}


# -- Inherited scikit-learn members -------------------------------------------
# The estimator pages show the scikit-learn methods users call (score,
# set_output, get_params...) with scikit-learn's docstrings, which link to
# labels of scikit-learn's own documentation (:ref:`r2_score`,
# :term:`meta-estimator`). Those targets do not exist here (intersphinx would
# need the network at every build), so such roles in docstrings that
# skcrystal did not write are shown as plain text. skcrystal's own docstrings
# are left alone: a broken reference there is still an error.
_FOREIGN_ROLE = re.compile(r":(?:ref|term):`(?:([^`<]*?)\s*<[^`>]*>|([^`]*))`")


def _own_docstring(obj):
    module = getattr(obj, "__module__", "") or ""
    return module.startswith("skcrystal") and bool(getattr(obj, "__doc__", None))


def _plain_foreign_roles(app, what, name, obj, options, lines):
    if _own_docstring(obj):
        return
    for i, line in enumerate(lines):
        lines[i] = _FOREIGN_ROLE.sub(lambda m: f"*{(m.group(1) or m.group(2)).strip()}*", line)


# scikit-learn generates set_fit_request / set_score_request ... methods
# for metadata routing on every estimator; they say nothing about skcrystal
_ROUTING = ("get_metadata_routing",)


def _skip_routing(app, what, name, obj, skip, options):
    if name in _ROUTING or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


def _no_builtin_type_docs(app, what, name, obj, options, lines):
    # a module constant without a doc comment (``#:``) would otherwise show
    # the docstring of its type (dict, tuple...)
    own = type(obj).__doc__
    if what in ("data", "attribute") and own and "\n".join(lines).split() == own.split():
        lines[:] = []


# -- Estimator parameters -----------------------------------------------------
# The model estimators take their training and data parameters (lr,
# max_epochs, radius, descriptors...) from CrystalGraphNet, whose docstring
# documents them once. Each estimator page lists them under its own
# Parameters, with the estimator's actual default where it differs from the
# base's (e.g. CrysToGraph's lr); parameters the estimator documents itself
# are left as they are.
_SECTION_RULE = re.compile(r"-{3,}")


def _split_sections(lines):
    """``[(title or None, lines)]`` of a numpydoc docstring."""
    parts, title, body, i = [], None, [], 0
    while i < len(lines):
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if (lines[i].strip() and _SECTION_RULE.fullmatch(nxt)
                and len(nxt) == len(lines[i].strip())):
            parts.append((title, body))
            title, body, i = lines[i].strip(), [], i + 2
            continue
        body.append(lines[i])
        i += 1
    parts.append((title, body))
    return parts


def _entries(body):
    """Parameter entries of a Parameters section: ``{name: lines}``, in order."""
    entries, current = {}, None
    for line in body:
        if line.strip() and not line[:1].isspace():
            current = line
            entries[line] = [line]
        elif current is not None:
            entries[current].append(line)
    return {tuple(n.strip().lstrip("*") for n in header.split(":")[0].split(",")): block
            for header, block in entries.items()}


def _same(a, b):
    try:
        return a is b or bool(a == b)
    except Exception:  # arrays, objects without a truth value
        return False


def _with_base_parameters(app, what, name, obj, options, lines):
    import inspect

    try:
        from skcrystal.estimators.base import CrystalGraphNet
    except ImportError:  # the base moved: estimators document their own parameters
        return

    if what != "class" or not (inspect.isclass(obj) and issubclass(obj, CrystalGraphNet)) \
            or obj is CrystalGraphNet or inspect.isabstract(obj):
        return
    try:
        actual = obj().get_params(deep=False)
    except Exception:  # e.g. a base class that needs a module: keep its docstring as is
        return
    base_defaults = {k: p.default for k, p in
                     inspect.signature(CrystalGraphNet.__init__).parameters.items()}
    base = _entries(dict(_split_sections(
        inspect.getdoc(CrystalGraphNet).splitlines())).get("Parameters", []))
    parts = _split_sections(list(lines))
    own = _entries(dict(parts).get("Parameters", []))
    documented = {n for names in own for n in names}
    added = []
    for names, block in base.items():
        if set(names) & documented or names == ("kwargs",):
            continue
        block = list(block)
        key = names[0]
        if key in actual and key in base_defaults and not _same(actual[key], base_defaults[key]):
            value = actual[key]
            shown = getattr(value, "__name__", None) or repr(value)
            if re.search(r"default \S+", block[0]):
                block[0] = re.sub(r"default \S+", f"default {shown}", block[0])
            else:
                block[0] = f"{block[0].rstrip()}, default {shown}"
        added += block
    if not added:
        return
    out, placed = [], False
    for title, body in parts:
        if title == "Parameters":
            while body and not body[-1].strip():
                body = body[:-1]
            body = body + added + [""]
            placed = True
        elif title is not None and not placed:
            out += ["Parameters", "----------", *added, ""]
            placed = True
        if title is not None:
            out += [title, "-" * len(title)]
        out += body
    if not placed:
        out += ["", "Parameters", "----------", *added]
    lines[:] = out


# skorch's training hooks, overridden by the estimators: internals, not API
_SKORCH_HOOKS = {"get_iterator", "get_loss", "infer", "initialize_module", "initialize",
                 "get_dataset", "get_split_datasets", "train_step", "train_step_single",
                 "validation_step", "evaluation_step", "run_single_epoch", "notify"}


def _skip_internals(app, what, name, obj, skip, options):
    if name in _SKORCH_HOOKS or name.startswith("on_"):
        return True
    return _skip_routing(app, what, name, obj, skip, options)


def _no_torch_forward_doc(app, what, name, obj, options, lines):
    # a forward() without its own docstring would show torch's generic text
    import torch

    if what == "method" and name.endswith(".forward") and \
            "\n".join(lines).split() == (torch.nn.Module.forward.__doc__ or "").split():
        lines[:] = []


def setup(app):
    app.connect("autodoc-process-docstring", _no_builtin_type_docs, priority=100)
    app.connect("autodoc-process-docstring", _with_base_parameters, priority=100)
    app.connect("autodoc-process-docstring", _no_torch_forward_doc, priority=100)
    app.connect("autodoc-process-docstring", _plain_foreign_roles)
    app.connect("autodoc-skip-member", _skip_internals)

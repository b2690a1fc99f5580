"""The documentation builds without a warning and has what users look for.

The site is built once per test session (module-scoped fixture) from a copy
of ``docs/`` and ``examples/gallery/`` with ``sphinx-build -W`` (warnings
are errors), the gallery at its smallest setting (``SKCRYSTAL_DOCS_FAST=1``).
Skipped with the reason when the documentation tools (the ``docs`` extra)
are not installed.
"""
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_TOOLS = ["sphinx", "furo", "sphinx_gallery", "myst_parser", "matplotlib"]

# the estimators a user meets first: each must have its own API page with
# the scikit-learn methods documented on it
PUBLIC_ESTIMATORS = {
    "skcrystal.estimators": ["CGCNNRegressor", "CGCNNClassifier", "ALIGNNRegressor",
                             "ALIGNNClassifier", "CrystalNetRegressor",
                             "CrystalNetClassifier", "CrysToGraphRegressor",
                             "CrysToGraphClassifier"],
    "skcrystal.ensemble": ["EnsembleRegressor"],
    "skcrystal.transfer": ["FineTuner"],
    "skcrystal.descriptors": ["DescriptorBank"],
    "skcrystal.baselines": ["CompositionBaseline", "CompositionBaselineClassifier"],
}
# every public top-level module has an API page
API_MODULES = sorted(m.name for m in pkgutil.iter_modules(
    [str(ROOT / "skcrystal")]) if not m.name.startswith("_"))
# pages Sphinx writes besides the documents (indices, search)
GENERATED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}


def _missing_tools():
    return [m for m in DOCS_TOOLS if importlib.util.find_spec(m) is None]


def _generated(folder, names):
    """What a build writes into docs/ (left out of the copy, as in a fresh clone)."""
    skip = {"_build", "generated", "auto_examples", "sg_execution_times.rst"}
    if Path(folder).name == "api":  # API pages are written by conf.py
        skip |= {n for n in names if n == "modules.inc"
                 or (n.endswith(".rst") and n != "index.rst")}
    return skip & set(names)


def _build(work):
    # a copy, so the build's generated files (API stubs, gallery output)
    # never land in the checkout
    shutil.copytree(ROOT / "docs", work / "docs", ignore=_generated)
    shutil.copytree(ROOT / "examples" / "gallery", work / "examples" / "gallery")
    out = work / "html"
    env = dict(os.environ, SKCRYSTAL_DOCS_FAST="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                         os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(work / "docs"), str(out)],
        env=env, capture_output=True, text=True, timeout=900)
    return {"out": str(out), "returncode": proc.returncode, "log": proc.stdout + proc.stderr}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = _missing_tools()
    if missing:
        pytest.skip(f"documentation tools not installed ({', '.join(missing)}); "
                    "pip install -e '.[docs]'")
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers: the site is built once per run
    work, done = root / "skcrystal-docs", root / "skcrystal-docs.json"
    try:
        import fcntl
    except ImportError:  # no POSIX locks: each process builds its own
        fcntl = None
    with open(root / "skcrystal-docs.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if fcntl is not None and done.exists():
            result = json.loads(done.read_text(encoding="utf-8"))
        else:
            shutil.rmtree(work, ignore_errors=True)
            result = _build(work)
            done.write_text(json.dumps(result), encoding="utf-8")
    result["out"] = Path(result["out"])
    return result


def _html(site, page):
    path = site["out"] / page
    assert path.is_file(), f"{page} was not built"
    return path.read_text(encoding="utf-8")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.images, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if attrs.get("id"):
            self.ids.add(attrs["id"])


def _parse(text):
    parser = _Links()
    parser.feed(text)
    return parser


def test_docs_build_without_warnings(site):
    assert site["returncode"] == 0, "sphinx-build -W failed:\n" + site["log"][-6000:]
    assert not re.search(r"WARNING|ERROR", site["log"]), site["log"][-6000:]


@pytest.mark.parametrize("module, names", sorted(PUBLIC_ESTIMATORS.items()))
def test_public_estimators_have_api_pages(site, module, names):
    for name in names:
        page = _parse(_html(site, f"api/generated/{module}.{name}.html"))
        anchor = f"{module}.{name}"
        assert anchor in page.ids, f"{anchor} is not documented on its page"
        for method in ("fit", "predict" if "Bank" not in name else "transform"):
            assert f"{anchor}.{method}" in page.ids, f"{anchor}.{method} missing from its page"


def test_estimator_pages_list_the_training_parameters(site):
    text = _html(site, "api/generated/skcrystal.estimators.CGCNNRegressor.html")
    for param in ("max_epochs", "batch_size", "radius", "max_neighbors", "descriptors",
                  "random_state"):
        assert re.search(rf"<strong>{param}</strong>|>{param}<", text), \
            f"CGCNNRegressor's page does not document {param}"


@pytest.mark.parametrize("module", API_MODULES)
def test_every_public_name_is_in_the_api_reference(site, module):
    mod = importlib.import_module(f"skcrystal.{module}")
    assert f"module-skcrystal.{module}" in _parse(_html(site, f"api/{module}.html")).ids
    names = getattr(mod, "__all__", None)
    if names is None:  # the page lists what the module defines
        names = [n for n, obj in vars(mod).items() if not n.startswith("_")
                 and (inspect.isclass(obj) or inspect.isfunction(obj))
                 and obj.__module__ == mod.__name__]
    ids = set()
    for page in (site["out"] / "api" / "generated").glob(f"skcrystal.{module}.*.html"):
        ids |= _parse(page.read_text(encoding="utf-8")).ids
    missing = [n for n in names if f"skcrystal.{module}.{n}" not in ids]
    assert not missing, f"skcrystal.{module} names without an API entry: {missing}"


def test_every_page_is_reachable_from_the_index(site):
    out = site["out"]
    pages = {p.relative_to(out).as_posix() for p in out.rglob("*.html")
             if not p.relative_to(out).parts[0].startswith("_")}
    seen, todo = set(), ["index.html"]
    while todo:
        page = todo.pop()
        if page in seen or page not in pages:
            continue
        seen.add(page)
        base = Path(page).parent
        for href in _parse((out / page).read_text(encoding="utf-8")).hrefs:
            target = unquote(urldefrag(href)[0])
            if not target or "://" in target or target.startswith("mailto:"):
                continue
            todo.append(os.path.normpath(base / target).replace(os.sep, "/"))
    unreachable = sorted(pages - seen - GENERATED_PAGES)
    assert not unreachable, f"pages not reachable from index.html: {unreachable}"
    for page in ["installation.html", "guide/index.html", "cli.html", "api/index.html",
                 "auto_examples/index.html"]:
        assert page in seen


def test_gallery_rendered_its_figures(site):
    scripts = sorted((ROOT / "examples" / "gallery").glob("plot_*.py"))
    assert len(scripts) >= 3
    for script in scripts:
        png = site["out"] / "_images" / f"sphx_glr_{script.stem}_001.png"
        assert png.is_file(), f"{script.name} rendered no figure"
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, f"{png.name} is not a figure"
        page = _parse(_html(site, f"auto_examples/{script.stem}.html"))
        assert any(src.endswith(png.name) for src in page.images), \
            f"{script.stem}.html does not show {png.name}"


def test_user_guide_pages_say_what_users_need(site):
    install = _html(site, "installation.html")
    assert "https://download.pytorch.org/whl/cpu" in install
    # code is highlighted token by token: compare the text without the tags
    cli = " ".join(re.sub(r"<[^>]+>", "", _html(site, "cli.html")).split())
    for command in ("skcrystal fit", "skcrystal predict", "skcrystal cv"):
        assert command in cli
    estimators = _html(site, "guide/estimators.html")
    assert "Defaults and fidelity" in estimators

"""Installation script for skcrystal.

torch is listed with a lower bound only; install the wheel you want *before*
this package (the README does ``pip install torch==2.13.0`` first) so that pip
does not pull a multi-GB CUDA build on a CPU-only machine.
"""
from setuptools import find_packages, setup

# the documentation build is part of the test run (tests/test_docs.py)
DOCS_REQUIRES = ["sphinx>=8.1", "furo>=2024.8", "sphinx-gallery>=0.18",
                 "myst-parser>=4.0", "matplotlib>=3.6"]

setup(
    name="skcrystal",
    version="0.1.0",
    description="Graph neural networks for crystals as scikit-learn estimators",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["skcrystal", "skcrystal.*"]),
    package_data={"skcrystal.datasets": ["data/*"],
                  "skcrystal": ["pretrained_models/cgcnn/*"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "skorch>=1.0",
        "scikit-learn>=1.6",
        "pymatgen>=2024.1.1",
        "matminer>=0.9",
        "pandas>=1.5",
        "joblib>=1.3",
        "tqdm>=4.60",
        "numpy>=1.24",
        "scipy>=1.10",
    ],
    extras_require={
        "plot": ["matplotlib>=3.6"],
        "yaml": ["pyyaml>=5.4"],  # skcrystal fit --config params.yaml
        # the LMDB graph store (skcrystal.graphs.GraphStore) for data larger than memory
        "store": ["lmdb>=1.4"],
        # joblib's Dask backend for cross-validation and searches on a cluster
        "dask": ["dask[distributed]>=2024.1"],
        "docs": DOCS_REQUIRES,
        # alignn: the reference ALIGNN for tests/test_alignn_reference.py (its
        # pure-torch model and graph builder; DGL is not needed)
        # pyyaml: the CLI's --config params.yaml
        "test": ["pytest>=7", "pytest-xdist>=3", "matplotlib>=3.6", "hypothesis>=6.100",
                 "pyyaml>=5.4", "lmdb>=1.4", "dask>=2024.1", "distributed>=2024.1",
                 "alignn==2026.8.11", *DOCS_REQUIRES],
    },
    entry_points={"console_scripts": ["skcrystal=skcrystal.cli:run"]},
)

"""File helpers shared by the loaders (paths and possibly gzipped JSON)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path


def _check_path(path, kind="file"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} not found: {path}")
    if kind == "folder" and not path.is_dir():
        raise NotADirectoryError(f"expected a folder, got a file: {path}")
    if kind == "file" and path.is_dir():
        raise IsADirectoryError(f"expected a file, got a folder: {path}")
    return path


def _load_json(path):
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)

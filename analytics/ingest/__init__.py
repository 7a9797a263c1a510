"""Importers: one entry point, ``import_file(con, kind, path, options)``."""

from __future__ import annotations

import importlib

from analytics.ingest.common import ImportRefused, ImportResult, Options, run_import

# kind -> (module, loader function). Each loader: load(con, import_id, path, options) -> LoadCounts
LOADERS = {
    "mandats": ("analytics.ingest.mandats", "load"),
    "decp": ("analytics.ingest.decp", "load"),
    "sirene": ("analytics.ingest.sirene", "load"),
    "structures": ("analytics.ingest.lists", "load_structures"),
    "ess": ("analytics.ingest.lists", "load_ess"),
    "insertion": ("analytics.ingest.insertion", "load"),
}

__all__ = ["ImportRefused", "ImportResult", "Options", "import_file", "LOADERS"]


def import_file(con, kind: str, path, options: Options | None = None, *, file_name=None) -> ImportResult:
    """Import one file of the given kind; raises ImportRefused when refused."""
    if kind not in LOADERS:
        raise ImportRefused(f"Type d'import inconnu « {kind} » : {', '.join(LOADERS)}.")
    module, func = LOADERS[kind]
    load = getattr(importlib.import_module(module), func)
    return run_import(con, kind, path, load, options, file_name=file_name)

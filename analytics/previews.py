"""What an import would do, before it is done.

The importer of the chosen kind runs on the file inside a transaction that is always
rolled back: the preview shows exactly what the commit will load (detected format,
encoding, delimiter, header mapping, rejected lines with their reasons, duplicates),
from the same code, and leaves the database as it was. It costs one extra read of the
file, which is what the user wants to check anyway.

An importer module may offer its own cheaper ``preview(con, path, options)``; it is used
when present.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb
import pandas as pd

from analytics.ingest import LOADERS
from analytics.ingest.common import (
    ImportRefused,
    Options,
    check_size,
    previous_import_of,
    sha256_file,
)

PREVIEW_IMPORT_ID = -1  # never a real import id (the sequence starts at 1)

# kind -> the table its rows land in (a whitelist: the name enters SQL text).
TARGET_TABLE = {
    "mandats": "mandats",
    "decp": "contracts",
    "sirene": "sirene_etablissements",
    "structures": "structures",
    "ess": "ess_list",
    "insertion": "insertion_hours",
}

KIND_LABELS = {
    "mandats": "Mandats (dépenses payées, export comptable)",
    "decp": "Marchés notifiés (DECP, registre des contrats)",
    "sirene": "Extrait SIRENE (établissements ou unités légales des fournisseurs)",
    "structures": "Structures inclusives (SIAE, EA, ESAT)",
    "ess": "Liste ESS / ESUS",
    "insertion": "Suivi des heures d'insertion (clauses sociales)",
}


def mapping_fields(kind: str) -> list[str]:
    """The fields a header can be mapped to for this kind (empty when the importer has no
    header mapping)."""
    module, _ = LOADERS[kind]
    mod = importlib.import_module(module)
    for name in ("SYNONYMS", "FIELDS", "ETAB_FIELDS"):
        value = getattr(mod, name, None)
        if isinstance(value, dict):
            return sorted(value)
    return []


def preview(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    path: str | Path,
    options: Options | None = None,
    *,
    sample_rows: int = 20,
    max_rejects: int = 500,
) -> dict:
    """The outcome of importing ``path`` as ``kind``, without keeping anything.

    Returns rows_read, rows_loaded, rows_rejected, rows_duplicate, amount_total,
    contracts, details (the importer's: format, encoding, delimiter, columns…),
    already_imported (None or (import_id, finished_at)), rejected (DataFrame: line_number,
    column, raw_value, reason), reasons (DataFrame: reason, lines), sample (DataFrame).
    Raises ImportRefused with the importer's French sentence when the file is refused.
    """
    if kind not in LOADERS:
        raise ImportRefused(f"Type d'import inconnu « {kind} ».")
    path = Path(path)
    options = options or Options()
    check_size(path)
    module, func = LOADERS[kind]
    mod = importlib.import_module(module)
    own = getattr(mod, "preview", None)
    if callable(own):
        return own(con, path, options)
    load = getattr(mod, func)
    already = previous_import_of(con, sha256_file(path))
    table = TARGET_TABLE[kind]
    con.execute("BEGIN TRANSACTION")
    try:
        counts = load(con, PREVIEW_IMPORT_ID, path, options)
        params = {"i": PREVIEW_IMPORT_ID, "n": int(max_rejects)}
        rejected = con.execute(
            "SELECT line_number, column_name AS column, raw_value, reason FROM rejected_rows "
            "WHERE import_id = $i ORDER BY line_number LIMIT $n",
            params,
        ).df()
        reasons = con.execute(
            "SELECT reason, count(*) AS lines FROM rejected_rows WHERE import_id = $i "
            "GROUP BY reason ORDER BY lines DESC, reason",
            {"i": PREVIEW_IMPORT_ID},
        ).df()
        sample = con.execute(
            f"SELECT * EXCLUDE (import_id) FROM {table} WHERE import_id = $i LIMIT $n",
            {"i": PREVIEW_IMPORT_ID, "n": int(sample_rows)},
        ).df()
    finally:
        con.execute("ROLLBACK")
    return {
        "kind": kind,
        "rows_read": counts.rows_read,
        "rows_loaded": counts.rows_loaded,
        "rows_rejected": counts.rows_rejected,
        "rows_duplicate": counts.rows_duplicate,
        "amount_total": counts.amount_total,
        "contracts": counts.contracts,
        "details": dict(counts.details or {}),
        "already_imported": tuple(already[:2]) if already else None,
        "rejected": rejected,
        "reasons": reasons,
        "sample": _drop_empty(sample),
    }


def _drop_empty(df: pd.DataFrame) -> pd.DataFrame:
    """The sample without its all-empty columns (easier to read)."""
    if not len(df):
        return df
    keep = [c for c in df.columns if df[c].notna().any()]
    return df[keep]

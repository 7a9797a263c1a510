"""Supplier classification (supplier_class), buyer settings and reference lookups.

First version: keys, identifiers and names only; the full rules follow.
"""

from __future__ import annotations

import duckdb


def reclassify(con: duckdb.DuckDBPyConnection) -> int:
    """Rebuild supplier_class for every supplier seen in mandats or contract holders."""
    con.execute("DELETE FROM supplier_class")
    con.execute(
        """
        INSERT INTO supplier_class (supplier_key, siret, siren, name, identified, classified_at)
        WITH k AS (
            SELECT supplier_key AS key, supplier_name AS name FROM mandats
            UNION ALL
            SELECT coalesce(holder_siret, 'NOM:' || upper(trim(holder_name))), holder_name
            FROM contract_holders
            WHERE holder_siret IS NOT NULL OR holder_name IS NOT NULL
        )
        SELECT key,
               CASE WHEN regexp_full_match(key, '[0-9]{14}') THEN key END,
               CASE WHEN regexp_full_match(key, '[0-9]{14}') THEN left(key, 9)
                    WHEN key LIKE 'SIREN:%' THEN substr(key, 7) END,
               mode(name),
               regexp_full_match(key, '[0-9]{14}') OR key LIKE 'SIREN:%',
               current_timestamp
        FROM k GROUP BY key
        """
    )
    return con.execute("SELECT count(*) FROM supplier_class").fetchone()[0]

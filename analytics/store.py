"""DuckDB store: the database file, its schema and migrations, transactions.

The database holds the buyer's own records (imports ledger, mandats, contracts,
referential imports, settings, targets, snapshots). Shipped reference data
(communes, nomenclatures, geometries) stays in ``data/ref/*.parquet`` and is exposed
to every connection as temporary ``ref_*`` views, so a new release of the reference
data needs no migration.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import duckdb

from analytics import aggregates as _aggregates

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
REF_DIR = DATA_DIR / "ref"
DEFAULT_DB = DATA_DIR / "empreinte.duckdb"

# Reference tables shipped in data/ref/ (file stem -> view name).
REF_TABLES = {
    "communes": "ref_communes",
    "postcodes": "ref_postcodes",
    "epci": "ref_epci",
    "departements": "ref_departements",
    "regions": "ref_regions",
    "cpv": "ref_cpv",
    "cpv_divisions": "ref_cpv_divisions",
    "naf": "ref_naf",
    "naf2025": "ref_naf2025",
    "categories_juridiques": "ref_categories_juridiques",
    "siae": "ref_siae",
}

# Each step is applied once, in order, inside one transaction; never edit a released
# step: add a new one.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        CREATE SEQUENCE IF NOT EXISTS import_id_seq START 1;
        CREATE TABLE imports (
            import_id INTEGER PRIMARY KEY,
            kind VARCHAR NOT NULL,
            file_name VARCHAR,
            sha256 VARCHAR,
            size_bytes BIGINT,
            rows_read BIGINT DEFAULT 0,
            rows_loaded BIGINT DEFAULT 0,
            rows_rejected BIGINT DEFAULT 0,
            rows_duplicate BIGINT DEFAULT 0,
            amount_total DECIMAL(18, 2),
            contracts BIGINT,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            who VARCHAR,
            status VARCHAR NOT NULL,
            undone_at TIMESTAMP,
            undone_by VARCHAR,
            details JSON
        );
        CREATE TABLE rejected_rows (
            import_id INTEGER NOT NULL,
            line_number BIGINT,
            column_name VARCHAR,
            raw_value VARCHAR,
            reason VARCHAR
        );
        CREATE TABLE mandats (
            import_id INTEGER NOT NULL,
            line_number BIGINT,
            natural_key VARCHAR NOT NULL,
            buyer_siret VARCHAR,
            buyer_name VARCHAR,
            exercice INTEGER,
            budget VARCHAR,
            bordereau VARCHAR,
            mandat_number VARCHAR,
            line_no VARCHAR,
            mandat_date DATE,
            payment_date DATE,
            invoice_date DATE,
            spend_date DATE NOT NULL,
            date_imputed BOOLEAN DEFAULT FALSE,
            supplier_key VARCHAR NOT NULL,
            supplier_siret VARCHAR,
            supplier_siren VARCHAR,
            supplier_id_raw VARCHAR,
            supplier_name VARCHAR,
            supplier_postcode VARCHAR,
            supplier_city VARCHAR,
            supplier_identified BOOLEAN NOT NULL,
            amount DECIMAL(18, 2) NOT NULL,
            amount_basis VARCHAR NOT NULL,
            amount_ht DECIMAL(18, 2),
            amount_tva DECIMAL(18, 2),
            amount_ttc DECIMAL(18, 2),
            nature VARCHAR,
            fonction VARCHAR,
            objet VARCHAR,
            contract_number VARCHAR,
            service VARCHAR,
            category VARCHAR
        );
        CREATE TABLE contracts (
            import_id INTEGER NOT NULL,
            seq BIGINT NOT NULL,
            contract_key VARCHAR NOT NULL,
            uid VARCHAR,
            id VARCHAR,
            buyer_siret VARCHAR,
            buyer_name VARCHAR,
            nature VARCHAR,
            objet VARCHAR,
            cpv VARCHAR,
            cpv_division VARCHAR,
            procedure VARCHAR,
            lieu_code VARCHAR,
            lieu_type VARCHAR,
            duration_months DOUBLE,
            date_notification DATE,
            date_publication DATE,
            amount DECIMAL(18, 2),
            amount_initial DECIMAL(18, 2),
            modification_count INTEGER DEFAULT 0,
            end_date DATE,
            forme_prix VARCHAR,
            offers_received INTEGER,
            advance_rate DOUBLE,
            innovative BOOLEAN,
            subcontracting BOOLEAN,
            groupement VARCHAR,
            accord_cadre_id VARCHAR,
            considerations_sociales VARCHAR[],
            considerations_environnementales VARCHAR[],
            modalites_execution VARCHAR[],
            techniques VARCHAR[],
            has_social BOOLEAN,
            has_environmental BOOLEAN,
            is_reserved BOOLEAN,
            holder_count INTEGER,
            source_format VARCHAR
        );
        CREATE TABLE contract_holders (
            import_id INTEGER NOT NULL,
            seq BIGINT NOT NULL,
            contract_key VARCHAR NOT NULL,
            holder_rank INTEGER NOT NULL,
            holder_id VARCHAR,
            holder_id_type VARCHAR,
            holder_siret VARCHAR,
            holder_name VARCHAR,
            commune_code VARCHAR,
            departement_code VARCHAR,
            region_code VARCHAR,
            categorie VARCHAR
        );
        CREATE TABLE sirene_etablissements (
            import_id INTEGER NOT NULL,
            siret VARCHAR NOT NULL,
            siren VARCHAR,
            siege BOOLEAN,
            commune_code VARCHAR,
            postcode VARCHAR,
            commune_name VARCHAR,
            naf VARCHAR,
            tranche_effectifs VARCHAR,
            etat VARCHAR,
            enseigne VARCHAR,
            denomination_usuelle VARCHAR,
            date_creation DATE
        );
        CREATE TABLE sirene_unites (
            import_id INTEGER NOT NULL,
            siren VARCHAR NOT NULL,
            denomination VARCHAR,
            categorie_juridique VARCHAR,
            categorie_entreprise VARCHAR,
            tranche_effectifs VARCHAR,
            naf VARCHAR,
            ess VARCHAR,
            societe_mission VARCHAR,
            etat VARCHAR,
            nic_siege VARCHAR
        );
        CREATE TABLE structures (
            import_id INTEGER NOT NULL,
            siret VARCHAR NOT NULL,
            siren VARCHAR,
            name VARCHAR,
            kind VARCHAR NOT NULL,
            family VARCHAR NOT NULL,
            commune_code VARCHAR,
            postcode VARCHAR,
            city VARCHAR,
            departement_code VARCHAR,
            longitude DOUBLE,
            latitude DOUBLE,
            naf VARCHAR,
            source VARCHAR
        );
        CREATE TABLE ess_list (
            import_id INTEGER NOT NULL,
            siret VARCHAR,
            siren VARCHAR NOT NULL,
            name VARCHAR,
            label VARCHAR,
            source VARCHAR
        );
        CREATE TABLE insertion_hours (
            import_id INTEGER NOT NULL,
            line_number BIGINT,
            contract_id VARCHAR,
            holder_siret VARCHAR,
            period_date DATE NOT NULL,
            hours DOUBLE NOT NULL,
            beneficiaries INTEGER
        );
        CREATE TABLE supplier_class (
            supplier_key VARCHAR PRIMARY KEY,
            siret VARCHAR,
            siren VARCHAR,
            name VARCHAR,
            identified BOOLEAN NOT NULL,
            commune_code VARCHAR,
            epci_siren VARCHAR,
            departement_code VARCHAR,
            region_code VARCHAR,
            location_source VARCHAR,
            lon DOUBLE,
            lat DOUBLE,
            ess BOOLEAN,
            ess_reason VARCHAR,
            inclusive_kind VARCHAR,
            inclusive_family VARCHAR,
            size_class VARCHAR,
            size_source VARCHAR,
            categorie_juridique VARCHAR,
            naf VARCHAR,
            naf_section VARCHAR,
            naf_division VARCHAR,
            naf_label VARCHAR,
            societe_mission BOOLEAN,
            classified_at TIMESTAMP
        );
        CREATE TABLE settings (
            key VARCHAR PRIMARY KEY,
            value JSON,
            updated_at TIMESTAMP,
            updated_by VARCHAR
        );
        CREATE TABLE spaser_targets (
            indicator VARCHAR NOT NULL,
            year INTEGER NOT NULL,
            target DOUBLE NOT NULL,
            updated_at TIMESTAMP,
            updated_by VARCHAR,
            PRIMARY KEY (indicator, year)
        );
        CREATE SEQUENCE IF NOT EXISTS snapshot_id_seq START 1;
        CREATE TABLE snapshots (
            snapshot_id INTEGER PRIMARY KEY,
            month VARCHAR NOT NULL,
            created_at TIMESTAMP,
            created_by VARCHAR,
            comment VARCHAR,
            last_import_id INTEGER,
            indicators JSON
        );
        CREATE VIEW contracts_current AS
            SELECT * EXCLUDE (rn) FROM (
                SELECT c.*, row_number() OVER (
                    PARTITION BY c.contract_key
                    ORDER BY c.date_publication DESC NULLS LAST, c.import_id DESC, c.seq DESC
                ) AS rn
                FROM contracts c
            ) WHERE rn = 1;
        CREATE VIEW contract_holders_current AS
            SELECT h.* FROM contract_holders h
            JOIN contracts_current c USING (import_id, seq);
        CREATE VIEW sirene_etablissements_current AS
            SELECT * FROM sirene_etablissements
            QUALIFY row_number() OVER (PARTITION BY siret ORDER BY import_id DESC) = 1;
        CREATE VIEW sirene_unites_current AS
            SELECT * FROM sirene_unites
            QUALIFY row_number() OVER (PARTITION BY siren ORDER BY import_id DESC) = 1;
        """,
    ),
    (
        2,
        "mandats_monthly and supplier_first: payment lines summed per import, buyer, month and "
        "supplier; each buyer × supplier's first days",
        _aggregates.SUPERSEDED,
    ),
    (
        3,
        "mandats_monthly by purchase category too (the category breakdowns leave the lines)",
        _aggregates.SUPERSEDED,
    ),
    (
        4,
        "supplier_names: each import's lines counted per supplier, name and postcode (what the "
        "classification reads instead of every line)",
        _aggregates.NAMES_REBUILD,
    ),
    (
        5,
        "mandats_yearly: mandats_monthly summed per year (what whole-year queries read)",
        _aggregates.SUPERSEDED,
    ),
    (
        6,
        "mandats_monthly and mandats_yearly hold the excl.-VAT sums too (the footprint leaves the lines)",
        _aggregates.SUMS_REBUILD,
    ),
    (
        7,
        "spend_months and spend_years: the sums with every import and buyer merged, one row per "
        "month (year) and supplier (no grouping per supplier for one period)",
        _aggregates.MERGED_BUILD,
    ),
]

# Tables whose rows belong to one import (undo deletes them by import_id).
IMPORT_TABLES = (
    "mandats",
    "contracts",
    "contract_holders",
    "sirene_etablissements",
    "sirene_unites",
    "structures",
    "ess_list",
    "insertion_hours",
    "rejected_rows",
)


def db_path(explicit: str | os.PathLike | None = None) -> Path:
    """The database file: ``--db`` first, then ``EMPREINTE_DB``, else data/empreinte.duckdb."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("EMPREINTE_DB")
    return Path(env) if env else DEFAULT_DB


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = 'schema_version' AND table_schema = 'main'"
    ).fetchone()[0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply the missing migration steps; return the schema version reached."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)"
    )
    current = schema_version(con)
    for version, description, sql in MIGRATIONS:
        if version <= current:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_version VALUES ($v, $d, current_timestamp)",
                {"v": version, "d": description},
            )
        current = version
    return current


def _create_reference_views(con: duckdb.DuckDBPyConnection, create: str) -> None:
    """A ``ref_*`` view of every shipped reference file: ``create`` names the view
    (``{view}``), e.g. ``CREATE OR REPLACE TEMP VIEW {view}``."""
    for stem, view in REF_TABLES.items():
        path = REF_DIR / f"{stem}.parquet"
        if path.exists():
            # A path is not a value DuckDB accepts as a parameter in DDL: it is ours,
            # never user text, and quotes are escaped.
            literal = str(path).replace("'", "''")
            con.execute(f"{create.format(view=view)} AS SELECT * FROM read_parquet('{literal}')")


def attach_reference(con: duckdb.DuckDBPyConnection) -> None:
    """Expose shipped reference tables as temporary ``ref_*`` views on this connection."""
    _create_reference_views(con, "CREATE OR REPLACE TEMP VIEW {view}")


# The dashboard's shared connection keeps the ref_* views once, in an in-memory database
# attached to it: every cursor then names them through its search path (0.3 ms) instead
# of creating its own temporary views (9 ms: each reads its file's schema).
REF_CATALOG = "empreinte_ref"


def share_reference(con: duckdb.DuckDBPyConnection) -> bool:
    """Create the ``ref_*`` views in an in-memory database attached to ``con``, seen by
    every cursor of ``con`` that calls :func:`use_shared_reference`. False when it cannot
    be done (a read-only connection cannot attach one): cursors then take
    :func:`attach_reference`."""
    try:
        con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {REF_CATALOG}")
        _create_reference_views(con, f"CREATE OR REPLACE VIEW {REF_CATALOG}.{{view}}")
    except duckdb.Error:
        return False
    return True


def use_shared_reference(cur: duckdb.DuckDBPyConnection) -> None:
    """Name the shared ``ref_*`` views (:func:`share_reference`) on this cursor."""
    cur.execute(f"SET search_path = 'main,{REF_CATALOG}'")


def _memory_setting(text: str) -> str:
    """'2GB', '512MB', '80%': checked, since it goes into a SET statement."""
    import re

    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)", text.strip(), re.I):
        raise ValueError(f"EMPREINTE_MEMORY_LIMIT invalide : « {text} » (ex. 2GB).")
    return text.strip()


def connect(path: str | os.PathLike | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the database (creating and migrating it unless read-only)."""
    target = db_path(path)
    if str(target) != ":memory:":
        if read_only and not target.exists():
            raise FileNotFoundError(f"Base de données introuvable : {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(target), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise RuntimeError(
                f"La base {target} est ouverte en écriture par un autre processus "
                "(le tableau de bord ?). Importez depuis la page Import, ou arrêtez-le."
            ) from exc
        raise
    # DuckDB's own progress bar would end up in --json output and logs
    con.execute("SET enable_progress_bar = false")
    # DuckDB takes up to 80 % of RAM by default; a buyer's server runs other things, and
    # large imports spill to disk instead (EMPREINTE_MEMORY_LIMIT, e.g. '4GB', or '' for DuckDB's default).
    # The process needs about 0.5 GB more than DuckDB's limit (Python, allocator caches): 1.5GB
    # keeps a 10M-line import under 2 GB peak RSS (1,885 MB measured; 2,358 MB with 2GB).
    limit = os.environ.get("EMPREINTE_MEMORY_LIMIT", "1.5GB")
    if limit:
        con.execute(f"SET memory_limit = '{_memory_setting(limit)}'")
    if not read_only:
        migrate(con)
    attach_reference(con)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    """One explicit transaction: committed on success, rolled back on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


def last_import(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The most recent import still in force: import_id, kind, file_name, finished_at."""
    row = con.execute(
        "SELECT import_id, kind, file_name, finished_at FROM imports "
        "WHERE status = 'ok' ORDER BY import_id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("import_id", "kind", "file_name", "finished_at"), row))


def data_version(con: duckdb.DuckDBPyConnection) -> str:
    """A key that changes whenever data, settings, targets or snapshots change (for caches)."""
    row = con.execute(
        "SELECT coalesce(max(import_id), 0), count(*) FILTER (WHERE status = 'undone'),"
        " (SELECT coalesce(max(updated_at)::VARCHAR, '') FROM settings),"
        " (SELECT coalesce(max(updated_at)::VARCHAR, '') || count(*) FROM spaser_targets),"
        " (SELECT coalesce(max(snapshot_id), 0) FROM snapshots)"
        " FROM imports"
    ).fetchone()
    return "|".join(str(x) for x in row)

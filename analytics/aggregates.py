"""``mandats_monthly``: the payment lines summed per import, buyer, month, supplier and
purchase category (the chapter of the accounting nature, else the mandat's category).

A year of a large buyer is a million lines; the same year is about a third as many
supplier × month rows, and the history scan behind "new suppliers" reads a few rows per
supplier instead of every line. The indicator engine reads this table instead of
``mandats`` whenever the answer is the same (whole months, no filter on a line's
service, nature or amount: see ``indicators.spend_sql``), and only when the table is in
step with ``mandats`` (:func:`ready`), so a database filled by other means is still
answered from the lines.

Kept by the import itself, in the import's transaction (:func:`add_import`), removed by
undo (:func:`remove_import`), built for existing databases by the schema migration. Rows
are written in month order, so a period's query skips the row groups of other months.

``spend_months`` and ``spend_years`` (v7) hold the same sums with every import and buyer
merged: one row per month (year) and supplier. Without a buyer filter the engine reads
them, and a query of one month (year), or by month (year), then needs no grouping per
supplier, its costliest step (10M lines in one year: the monthly series 0.50 -> 0.25 s).
An import adds its own sums to them; an undo computes again the months it touched, and
their years.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import duckdb

# The summed columns of mandats_yearly, spend_months and spend_years (those of
# mandats_monthly, commented there).
_SUM_COLUMNS = """    lines BIGINT NOT NULL,
    lines_ttc BIGINT NOT NULL,
    net DECIMAL(38, 2) NOT NULL,
    pos DECIMAL(38, 2) NOT NULL,
    first_paid DATE,
    first_date DATE NOT NULL,
    raw_name VARCHAR,
    ht_known DECIMAL(38, 2) NOT NULL,
    ttc_no_ht DECIMAL(38, 2) NOT NULL
);"""

DDL = """
CREATE TABLE IF NOT EXISTS mandats_monthly (
    import_id INTEGER NOT NULL,
    buyer_siret VARCHAR,
    month DATE NOT NULL,
    supplier_key VARCHAR NOT NULL,
    category VARCHAR,   -- CATEGORY_SQL: what the category breakdowns group by
    lines BIGINT NOT NULL,
    lines_ttc BIGINT NOT NULL,
    net DECIMAL(38, 2) NOT NULL,
    pos DECIMAL(38, 2) NOT NULL,
    first_paid DATE,   -- first day with a positive line (NULL: credit notes only)
    first_date DATE NOT NULL,   -- first day with any line
    raw_name VARCHAR,   -- the smallest name as written in the lines
    -- the excl.-VAT spend of the footprint (v6), exactly: the amounts excl. VAT the lines
    -- give (amount_ht, else an amount on the HT basis), and the amounts of the other
    -- lines (incl. VAT, no amount excl. VAT), whose VAT the footprint estimates
    ht_known DECIMAL(38, 2) NOT NULL,
    ttc_no_ht DECIMAL(38, 2) NOT NULL
);
CREATE TABLE IF NOT EXISTS mandats_yearly (
    -- mandats_monthly summed per year (no category): what whole-year queries read, a
    -- quarter of the rows of the months (v5)
    import_id INTEGER NOT NULL,
    buyer_siret VARCHAR,
    year INTEGER NOT NULL,
    supplier_key VARCHAR NOT NULL,
{sums}
CREATE TABLE IF NOT EXISTS spend_months (
    -- mandats_monthly with every import, buyer and category merged (v7): one row per
    -- month and supplier; the columns are summed (min for the days and the name)
    month DATE NOT NULL,
    supplier_key VARCHAR NOT NULL,
{sums}
CREATE TABLE IF NOT EXISTS spend_years (
    -- spend_months summed per year (v7): one row per year and supplier
    year INTEGER NOT NULL,
    supplier_key VARCHAR NOT NULL,
{sums}
CREATE TABLE IF NOT EXISTS import_facets (
    -- what the sidebar filters offer, counted per import (v7), so that the first page of a
    -- session does not read every line for them: the years of its lines (with their first
    -- and last day), its services and natures (with their sums), its buyers (SIRET and name
    -- as written, with their line counts)
    import_id INTEGER NOT NULL,
    facet VARCHAR NOT NULL,   -- 'year', 'service', 'nature', 'buyer'
    key VARCHAR NOT NULL,
    label VARCHAR,
    amount DECIMAL(38, 2),
    lines BIGINT NOT NULL,
    first_day DATE,
    last_day DATE
);
CREATE TABLE IF NOT EXISTS supplier_names (
    -- each import's lines counted per supplier, name and postcode as written: what the
    -- classification reads (most frequent name, postcode) instead of every line
    import_id INTEGER NOT NULL,
    supplier_key VARCHAR NOT NULL,
    name VARCHAR,
    postcode VARCHAR,
    lines BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS supplier_first (
    buyer_key VARCHAR NOT NULL,   -- buyer_siret, '' when the lines carry none
    buyer_siret VARCHAR,
    supplier_key VARCHAR NOT NULL,
    first_paid DATE,
    first_date DATE NOT NULL,
    PRIMARY KEY (buyer_key, supplier_key)
)
""".replace("{sums}", _SUM_COLUMNS)

# The purchase category of a payment line: the chapter of its accounting nature (two ASCII
# digits first: a single-character comparison, about 25 % cheaper on 10M lines than a
# regexp, same answer), else the mandat's own purchase category.
CATEGORY_SQL = (
    "CASE WHEN substr(m.nature, 1, 1) BETWEEN '0' AND '9' AND substr(m.nature, 2, 1) BETWEEN '0' AND '9' "
    "THEN left(m.nature, 2) ELSE nullif(trim(m.category), '') END"
)

_SELECT = f"""
SELECT import_id, buyer_siret, date_trunc('month', spend_date)::DATE AS month, supplier_key,
       {CATEGORY_SQL} AS category,
       count(*) AS lines,
       count(*) FILTER (WHERE amount_basis = 'TTC') AS lines_ttc,
       sum(amount)::DECIMAL(38, 2) AS net,
       coalesce(sum(amount) FILTER (WHERE amount > 0), 0)::DECIMAL(38, 2) AS pos,
       min(spend_date) FILTER (WHERE amount > 0) AS first_paid,
       min(spend_date) AS first_date,
       min(supplier_name) AS raw_name,
       coalesce(sum(coalesce(amount_ht, CASE WHEN amount_basis = 'HT' THEN amount END)), 0)::DECIMAL(38, 2)
           AS ht_known,
       coalesce(sum(amount) FILTER (WHERE amount_ht IS NULL AND amount_basis <> 'HT'), 0)::DECIMAL(38, 2)
           AS ttc_no_ht
FROM mandats m
"""

# One row per buyer and supplier: the first day paid (positive line) and the first day
# with any line, over every import (the "new supplier" history, read in one small scan).
_FIRST = """
SELECT coalesce(buyer_siret, '') AS buyer_key, any_value(buyer_siret) AS buyer_siret, supplier_key,
       min(first_paid) AS first_paid, min(first_date) AS first_date
FROM mandats_monthly {where} GROUP BY 1, 3
"""

_YEARLY = """
INSERT INTO mandats_yearly
SELECT import_id, buyer_siret, year(month) AS year, supplier_key, sum(lines), sum(lines_ttc),
       sum(net), sum(pos), min(first_paid), min(first_date), min(raw_name), sum(ht_known), sum(ttc_no_ht)
FROM mandats_monthly {where} GROUP BY ALL ORDER BY year
"""

# The merged sums' columns, from rows of mandats_monthly (or of spend_months).
_MERGED = (
    "sum(lines)::BIGINT AS lines, sum(lines_ttc)::BIGINT AS lines_ttc, sum(net) AS net, sum(pos) AS pos, "
    "min(first_paid) AS first_paid, min(first_date) AS first_date, min(raw_name) AS raw_name, "
    "sum(ht_known) AS ht_known, sum(ttc_no_ht) AS ttc_no_ht"
)
# An import's own sums added into spend_months and spend_years: its month (year) x
# supplier sums are added to the rows that exist (the days and the name by least()), the
# others inserted. Only the rows the import touches are written, so a small monthly file
# does not rewrite a year of sums (a 2-line file into ten years of 1M lines: 1.04 s
# instead of 2.58 s when its year was deleted and summed again, 1.15 s of it the commit).
_ADD = (
    "lines = s.lines + n.lines, lines_ttc = s.lines_ttc + n.lines_ttc, net = s.net + n.net, "
    "pos = s.pos + n.pos, first_paid = least(s.first_paid, n.first_paid), "
    "first_date = least(s.first_date, n.first_date), raw_name = least(s.raw_name, n.raw_name), "
    "ht_known = s.ht_known + n.ht_known, ttc_no_ht = s.ttc_no_ht + n.ttc_no_ht"
)
_MERGED_ADD = (
    f"CREATE OR REPLACE TEMP TABLE _add_months AS SELECT month, supplier_key, {_MERGED} "
    "FROM mandats_monthly WHERE import_id = $i GROUP BY month, supplier_key",
    f"CREATE OR REPLACE TEMP TABLE _add_years AS SELECT year(month) AS year, supplier_key, {_MERGED} "
    "FROM _add_months GROUP BY 1, 2",
    f"UPDATE spend_months AS s SET {_ADD} FROM _add_months AS n "
    "WHERE s.month = n.month AND s.supplier_key = n.supplier_key",
    "INSERT INTO spend_months SELECT n.* FROM _add_months AS n "
    "ANTI JOIN spend_months AS s ON s.month = n.month AND s.supplier_key = n.supplier_key ORDER BY n.month",
    f"UPDATE spend_years AS s SET {_ADD} FROM _add_years AS n "
    "WHERE s.year = n.year AND s.supplier_key = n.supplier_key",
    "INSERT INTO spend_years SELECT n.* FROM _add_years AS n "
    "ANTI JOIN spend_years AS s ON s.year = n.year AND s.supplier_key = n.supplier_key ORDER BY n.year",
    "DROP TABLE _add_months",
    "DROP TABLE _add_years",
)
# spend_months and spend_years deleted, then summed again from mandats_monthly, for the
# months WHERE {months} and the years WHERE {years}: the months and years an undone
# import touched ($m_from..$m_to, first days of months), or all of them (migration,
# rebuild).
_MERGED_SUM_AGAIN = (
    "DELETE FROM spend_months WHERE {months}",
    f"INSERT INTO spend_months SELECT month, supplier_key, {_MERGED} FROM mandats_monthly "
    "WHERE {months} GROUP BY month, supplier_key ORDER BY month",
    "DELETE FROM spend_years WHERE {years}",
    f"INSERT INTO spend_years SELECT year(month) AS year, supplier_key, {_MERGED} FROM spend_months "
    "WHERE {years_of_months} GROUP BY 1, 2 ORDER BY 1",
)
_MERGED_REFRESH = tuple(
    sql.format(
        months="month BETWEEN $m_from AND $m_to",
        years="year BETWEEN year($m_from) AND year($m_to)",
        years_of_months="year(month) BETWEEN year($m_from) AND year($m_to)",
    )
    for sql in _MERGED_SUM_AGAIN
)
_MERGED_FILL = ";\n".join(
    sql.format(months="TRUE", years="TRUE", years_of_months="TRUE") for sql in _MERGED_SUM_AGAIN
)

# import_facets of the lines WHERE {cond}.
_FACETS = """
SELECT import_id, 'year', year(spend_date)::VARCHAR, NULL, sum(amount), count(*), min(spend_date), max(spend_date)
FROM mandats WHERE {cond} GROUP BY import_id, year(spend_date)
UNION ALL
SELECT import_id, 'service', service, NULL, sum(amount), count(*), NULL, NULL
FROM mandats WHERE {cond} AND service IS NOT NULL AND trim(service) <> '' GROUP BY import_id, service
UNION ALL
SELECT import_id, 'nature', nature, NULL, sum(amount), count(*), NULL, NULL
FROM mandats WHERE {cond} AND nature IS NOT NULL GROUP BY import_id, nature
UNION ALL
SELECT import_id, 'buyer', buyer_siret, buyer_name, NULL, count(*), NULL, NULL
FROM mandats WHERE {cond} AND buyer_siret IS NOT NULL GROUP BY import_id, buyer_siret, buyer_name
"""
_FACETS_FILL = "DELETE FROM import_facets;\nINSERT INTO import_facets " + _FACETS.format(cond="TRUE")

_NAMES = """
SELECT import_id, supplier_key, supplier_name, supplier_postcode, count(*) FROM mandats {where} GROUP BY ALL
"""

# supplier_first again from all of mandats_monthly (after a backfill or an undo)
_REFILL_FIRST = f"DELETE FROM supplier_first;\nINSERT INTO supplier_first {_FIRST.format(where='')}"

# Each kept table filled again from all of mandats (mandats_yearly from mandats_monthly).
_MONTHLY_FILL = (
    f"DELETE FROM mandats_monthly;\nINSERT INTO mandats_monthly {_SELECT} GROUP BY ALL ORDER BY month;\n"
    + _REFILL_FIRST
)
_NAMES_FILL = "DELETE FROM supplier_names;\nINSERT INTO supplier_names " + _NAMES.format(where="")
_YEARLY_FILL = "DELETE FROM mandats_yearly;\n" + _YEARLY.format(where="")

# The schema migrations. 6 drops mandats_monthly and mandats_yearly and builds them again
# (with supplier_first) from the lines: it does what 2, 3 and 5 did, so these are recorded
# without running (their statements, written for the tables of their time, would not
# fill today's tables). 4 fills the name counts.
SUPERSEDED = "SELECT 1 -- superseded by migration 6, which builds these tables again"
NAMES_REBUILD = f"{DDL};\n{_NAMES_FILL}"
SUMS_REBUILD = (
    f"DROP TABLE IF EXISTS mandats_yearly;\nDROP TABLE IF EXISTS mandats_monthly;\n{DDL};\n"
    f"{_MONTHLY_FILL};\n{_YEARLY_FILL}"
)
# Migration 7: the merged sums, from mandats_monthly.
MERGED_BUILD = f"{DDL};\n{_MERGED_FILL};\n{_FACETS_FILL}"
# Every kept table (``rebuild``).
REBUILD = f"{DDL};\n{_MONTHLY_FILL};\n{_NAMES_FILL};\n{_YEARLY_FILL};\n{_MERGED_FILL};\n{_FACETS_FILL}"


def _months_of(con: duckdb.DuckDBPyConnection, import_id: int) -> tuple | None:
    """(first, last) month of an import's sums, None when it has none."""
    row = con.execute(
        "SELECT min(month), max(month) FROM mandats_monthly WHERE import_id = $i", {"i": int(import_id)}
    ).fetchone()
    return None if row[0] is None else row


def _refresh_merged(con: duckdb.DuckDBPyConnection, months: tuple | None) -> None:
    if months is None:
        return
    for sql in _MERGED_REFRESH:
        con.execute(sql, {"m_from": months[0], "m_to": months[1]})


def add_import(con: duckdb.DuckDBPyConnection, import_id: int) -> int:
    """Sum one import's lines into the table (call once, after its lines are written)."""
    n = con.execute(
        f"INSERT INTO mandats_monthly {_SELECT} WHERE import_id = $i GROUP BY ALL ORDER BY month",
        {"i": int(import_id)},
    ).fetchone()[0]
    con.execute(
        f"INSERT INTO supplier_first {_FIRST.format(where='WHERE import_id = $i')} "
        "ON CONFLICT (buyer_key, supplier_key) DO UPDATE SET "
        "first_paid = least(supplier_first.first_paid, excluded.first_paid), "
        "first_date = least(supplier_first.first_date, excluded.first_date)",
        {"i": int(import_id)},
    )
    con.execute(_YEARLY.format(where="WHERE import_id = $i"), {"i": int(import_id)})
    con.execute(
        "INSERT INTO supplier_names " + _NAMES.format(where="WHERE import_id = $i"), {"i": int(import_id)}
    )
    con.execute("INSERT INTO import_facets " + _FACETS.format(cond="import_id = $i"), {"i": int(import_id)})
    for sql in _MERGED_ADD:
        con.execute(sql, {"i": int(import_id)} if "$i" in sql else None)
    return n


def remove_import(con: duckdb.DuckDBPyConnection, import_id: int) -> None:
    """Remove an import's sums; the first days, and the merged sums of its months, are
    computed again from what remains."""
    months = _months_of(con, import_id)
    con.execute("DELETE FROM mandats_monthly WHERE import_id = $i", {"i": int(import_id)})
    con.execute("DELETE FROM mandats_yearly WHERE import_id = $i", {"i": int(import_id)})
    con.execute("DELETE FROM supplier_names WHERE import_id = $i", {"i": int(import_id)})
    con.execute("DELETE FROM import_facets WHERE import_id = $i", {"i": int(import_id)})
    con.execute(_REFILL_FIRST)
    _refresh_merged(con, months)


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(REBUILD)


# ready() of each database file, by the cheap facts that change when lines are written:
# the two tables' row counts and the import ledger. Summing both tables costs about 30 ms
# at 10M lines, and every breakdown of a page asks.
_READY: dict[tuple, bool] = {}


# The dashboard's data version of the call being served (cached._cached_call): within one
# version its cached results stand for the database, so ready() is answered once per
# version instead of once per engine call (its check costs 10–16 ms at 10M lines, and a
# page makes about ten calls).
_DATA_VERSION: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "empreinte_version", default=None
)
_READY_BY_VERSION: dict[tuple, bool] = {}


@contextmanager
def serving(db: str, version: str):
    """Within this block (one thread), ``ready`` is checked once per (database, data version)."""
    token = _DATA_VERSION.set((db, version))
    try:
        yield
    finally:
        _DATA_VERSION.reset(token)


def ready(con) -> bool:
    """Whether mandats_monthly, mandats_yearly, spend_months and spend_years hold exactly
    the lines of ``mandats`` (same count, same total): False when they are missing, or when
    lines were written without the importers.

    Remembered per database file while its row counts and import ledger stay the same (a
    line inserted or deleted by hand changes a count; amounts are never updated in place
    by the product), and once per data version while the dashboard serves (``serving``)."""
    version = _DATA_VERSION.get()
    if version is not None and version in _READY_BY_VERSION:
        return _READY_BY_VERSION[version]
    out = _ready(con)
    if version is not None:
        if len(_READY_BY_VERSION) > 64:
            _READY_BY_VERSION.clear()
        _READY_BY_VERSION[version] = out
    return out


def _ready(con) -> bool:
    try:
        key = con.execute(
            "SELECT (SELECT path FROM duckdb_databases() WHERE database_name = current_database()),"
            " (SELECT count(*) FROM mandats), (SELECT count(*) FROM mandats_monthly),"
            " (SELECT count(*) FROM mandats_yearly), (SELECT count(*) FROM spend_months),"
            " (SELECT count(*) FROM spend_years),"
            " (SELECT max(import_id) FROM imports), (SELECT count(*) FROM imports WHERE status <> 'ok')"
        ).fetchone()
        if key[0] and key in _READY:
            return _READY[key]
        lines, total = con.execute("SELECT count(*), sum(amount) FROM mandats").fetchone()
        kept = con.execute(
            "SELECT "
            + ", ".join(
                f"(SELECT coalesce(sum(lines), 0) FROM {t}), (SELECT sum(net) FROM {t})"
                # the yearly tables are summed from the monthly ones in the same transaction:
                # their totals stand for both (a quarter of the rows to read)
                for t in ("mandats_yearly", "spend_years")
            )
        ).fetchone()
    except duckdb.CatalogException:
        return False
    out = lines > 0 and all(
        int(kept[i]) == int(lines) and kept[i + 1] == total for i in range(0, len(kept), 2)
    )
    if key[0]:
        if len(_READY) > 64:
            _READY.clear()
        _READY[key] = out
    return out


def _counts_every_line(con, counted: str) -> bool:
    """Whether the line count ``counted`` (a scalar subquery over a kept table) equals the
    number of lines of ``mandats``; False when the table is missing."""
    try:
        n, lines = con.execute(f"SELECT ({counted}), (SELECT count(*) FROM mandats)").fetchone()
    except duckdb.CatalogException:
        return False
    return int(n) == int(lines)


def names_ready(con) -> bool:
    """Whether supplier_names counts exactly the lines of ``mandats`` (the classification
    then reads it; lines written without the importers make it read the lines)."""
    return _counts_every_line(con, "SELECT coalesce(sum(lines), 0) FROM supplier_names")


def facets_ready(con) -> bool:
    """Whether import_facets counts exactly the lines of ``mandats`` (the sidebar's choices
    then come from it; lines written without the importers make them come from the lines)."""
    return _counts_every_line(con, "SELECT coalesce(sum(lines), 0) FROM import_facets WHERE facet = 'year'")

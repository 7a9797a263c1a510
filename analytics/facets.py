"""What the sidebar filters can offer: the years, services, buyers, purchase categories
present in the database. Small queries, read by the dashboard frame."""

from __future__ import annotations

import duckdb
import pandas as pd

from analytics import aggregates

# M57/M14 chapters of the accounting nature (first two digits), to label the filter.
NATURE_CHAPTERS = {
    "20": "Immobilisations incorporelles",
    "21": "Immobilisations corporelles",
    "23": "Immobilisations en cours",
    "60": "Achats et variation des stocks",
    "61": "Services extérieurs",
    "62": "Autres services extérieurs",
    "63": "Impôts et taxes",
    "64": "Charges de personnel",
    "65": "Autres charges de gestion courante",
    "67": "Charges exceptionnelles",
}

# Each choice from the lines, or (_KEPT) from their counts per import (import_facets,
# analytics.aggregates) when these count exactly the lines: the same answer without
# reading every line (ten years of 1M lines: about 0.3 s less on the first page).
YEARS = """
SELECT DISTINCT y FROM (
    -- the distinct days first: a few thousand values instead of every line
    SELECT year(d) AS y FROM (SELECT DISTINCT spend_date AS d FROM mandats)
    UNION ALL
    SELECT year(date_notification) FROM contracts_current WHERE date_notification IS NOT NULL
) WHERE y IS NOT NULL ORDER BY y
"""
YEARS_KEPT = """
SELECT DISTINCT y FROM (
    SELECT key::INTEGER AS y FROM import_facets WHERE facet = 'year'
    UNION ALL
    SELECT year(date_notification) FROM contracts_current WHERE date_notification IS NOT NULL
) WHERE y IS NOT NULL ORDER BY y
"""

MONTHS = """
SELECT min(d), max(d) FROM (
    SELECT spend_date AS d FROM mandats
    UNION ALL
    SELECT date_notification FROM contracts_current
)
"""
MONTHS_KEPT = """
SELECT min(d), max(d) FROM (
    SELECT first_day AS d FROM import_facets WHERE facet = 'year'
    UNION ALL
    SELECT last_day FROM import_facets WHERE facet = 'year'
    UNION ALL
    SELECT date_notification FROM contracts_current
)
"""

_SERVICES = """
SELECT service, sum(amount)::DOUBLE AS amount FROM ({sums})
GROUP BY service ORDER BY amount DESC, service LIMIT 200
"""
SERVICES = _SERVICES.format(
    sums="SELECT service, amount FROM mandats WHERE service IS NOT NULL AND trim(service) <> ''"
)
SERVICES_KEPT = _SERVICES.format(
    sums="SELECT key AS service, amount FROM import_facets WHERE facet = 'service'"
)

# The buyers of the lines and contracts, most frequent first, each named by its most
# frequent name (the smallest of equally frequent ones).
_BUYERS = """
SELECT buyer_siret, first(name ORDER BY k DESC, name) FILTER (WHERE name IS NOT NULL) AS name, sum(k) AS n
FROM (
    SELECT buyer_siret, name, sum(k) AS k FROM (
        {lines}
        UNION ALL
        SELECT buyer_siret, buyer_name, count(*) FROM contracts_current
        WHERE buyer_siret IS NOT NULL GROUP BY 1, 2
    ) GROUP BY 1, 2
) GROUP BY buyer_siret ORDER BY n DESC, buyer_siret LIMIT 100
"""
BUYERS = _BUYERS.format(
    lines="SELECT buyer_siret, buyer_name AS name, count(*) AS k FROM mandats WHERE buyer_siret IS NOT NULL GROUP BY 1, 2"
)
BUYERS_KEPT = _BUYERS.format(
    lines="SELECT key AS buyer_siret, label AS name, lines AS k FROM import_facets WHERE facet = 'buyer'"
)

CPV_DIVISIONS = """
SELECT c.cpv_division AS division, any_value(d.libelle_fr) AS label, count(*) AS n
FROM contracts_current c LEFT JOIN ref_cpv_divisions d ON d.division = c.cpv_division
WHERE c.cpv_division IS NOT NULL GROUP BY c.cpv_division ORDER BY c.cpv_division
"""

CPV_DIVISIONS_NO_REF = """
SELECT cpv_division AS division, NULL AS label, count(*) AS n FROM contracts_current
WHERE cpv_division IS NOT NULL GROUP BY cpv_division ORDER BY cpv_division
"""

_NATURES = """
SELECT left(nature, 3) AS prefix, sum(amount)::DOUBLE AS amount FROM (
    -- per nature first (a few hundred values), then per prefix: no string function per line
    SELECT nature, sum(amount) AS amount FROM ({sums}) GROUP BY nature
) WHERE length(nature) >= 3
GROUP BY prefix ORDER BY prefix
"""
NATURES = _NATURES.format(sums="SELECT nature, amount FROM mandats WHERE nature IS NOT NULL")
NATURES_KEPT = _NATURES.format(sums="SELECT key AS nature, amount FROM import_facets WHERE facet = 'nature'")


def facets(con: duckdb.DuckDBPyConnection) -> dict:
    """years (list of int), first/last (dates), services, buyers [(siret, name)],
    cpv_divisions [(code, label)], natures [(prefix, label)]."""
    kept = aggregates.facets_ready(con)
    years = [r[0] for r in con.execute(YEARS_KEPT if kept else YEARS).fetchall()]
    first, last = con.execute(MONTHS_KEPT if kept else MONTHS).fetchone()
    services = [r[0] for r in con.execute(SERVICES_KEPT if kept else SERVICES).fetchall()]
    buyers = [(r[0], r[1]) for r in con.execute(BUYERS_KEPT if kept else BUYERS).fetchall()]
    try:
        cpv = con.execute(CPV_DIVISIONS).fetchall()
    except duckdb.CatalogException:  # reference data not built
        cpv = con.execute(CPV_DIVISIONS_NO_REF).fetchall()
    natures = [
        (r[0], NATURE_CHAPTERS.get(r[0][:2], ""))
        for r in con.execute(NATURES_KEPT if kept else NATURES).fetchall()
    ]
    return {
        "years": years,
        "first": first,
        "last": last,
        "services": services,
        "buyers": buyers,
        "cpv_divisions": [(r[0], r[1] or "") for r in cpv],
        "natures": natures,
    }


def territory_choices(con: duckdb.DuckDBPyConnection, kind: str) -> list[tuple[str, str]]:
    """(code, label) of the départements, régions or EPCI, for the territory selector."""
    sql = {
        "dep": "SELECT code, code || ' ' || nom FROM ref_departements ORDER BY code",
        "reg": "SELECT code, nom FROM ref_regions ORDER BY nom",
        "epci": "SELECT siren_epci, nom FROM ref_epci ORDER BY nom",
    }.get(kind)
    if sql is None:
        return []
    try:
        return [(str(a), str(b)) for a, b in con.execute(sql).fetchall()]
    except duckdb.CatalogException:
        return []


TERRITORY_COLUMN = {
    "dep": "c.code_departement",
    "reg": "c.code_region",
    "epci": "c.epci_siren",
    "com": "s.commune_code",
}

STRUCTURES_SQL = """
WITH lists AS (
    SELECT siret, name, kind, naf, code_commune AS commune_code, city, longitude AS lon, latitude AS lat,
           'Référentiel SIAE' AS source, 1 AS pri
    FROM ref_siae
    UNION ALL
    SELECT siret, name, kind, naf, commune_code, city, longitude, latitude,
           coalesce(source, 'liste importée'), 0
    FROM structures
    UNION ALL
    SELECT e.siret, coalesce(u.denomination, e.enseigne), 'ESS', coalesce(e.naf, u.naf), e.commune_code,
           e.commune_name, NULL, NULL, 'SIRENE (ESS)', 2
    FROM sirene_etablissements_current e JOIN sirene_unites_current u USING (siren)
    WHERE u.ess = 'O' AND coalesce(e.etat, 'A') = 'A'
),
s AS (
    SELECT * FROM lists QUALIFY row_number() OVER (PARTITION BY siret ORDER BY pri) = 1
),
paid AS (
    SELECT supplier_key, sum(amount)::DOUBLE AS paid FROM mandats GROUP BY 1
),
div AS (
    SELECT division, any_value(division_label) AS label FROM ref_naf GROUP BY division
)
SELECT s.siret, s.name, s.kind,
       CASE WHEN s.kind IN ('EA', 'EATT', 'ESAT') THEN 'handicap'
            WHEN s.kind = 'ESS' THEN 'ESS' ELSE 'insertion' END AS family,
       s.naf, left(replace(s.naf, '.', ''), 2) AS naf_division, div.label AS naf_division_label, s.commune_code,
       coalesce(c.nom, s.city) AS commune, c.code_departement AS departement_code,
       coalesce(s.lon, c.centroid_lon) AS lon, coalesce(s.lat, c.centroid_lat) AS lat,
       s.source, coalesce(p.paid, 0) AS paid_all_time
FROM s
LEFT JOIN ref_communes c ON c.code_commune = s.commune_code
LEFT JOIN paid p ON p.supplier_key = s.siret
LEFT JOIN div ON div.division = left(replace(s.naf, '.', ''), 2)
WHERE list_contains($codes, {column})
ORDER BY CASE family WHEN 'insertion' THEN 0 WHEN 'handicap' THEN 1 ELSE 2 END, s.name
"""


def structures_in_territory(con: duckdb.DuckDBPyConnection, territory) -> pd.DataFrame:
    """Inclusive structures (shipped SIAE list and imported lists) and ESS establishments
    (SIRENE extract) located in the territory: siret, name, kind, family, naf,
    naf_division, naf_division_label, commune_code, commune, departement_code, lon, lat, source, paid_all_time."""
    if territory is None:
        return pd.DataFrame()
    column = TERRITORY_COLUMN[territory.kind]
    return con.execute(STRUCTURES_SQL.format(column=column), {"codes": list(territory.codes)}).df()

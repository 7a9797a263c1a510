"""Who each supplier is and where: the supplier classification, the buyer, reference lookups.

``supplier_class`` holds one row per supplier key seen in mandats or contract holders
(see docs/internals.md). It is rebuilt by ``reclassify(con)`` after every import, in
pure SQL (one ``INSERT … SELECT``), from the user's referential imports (SIRENE
extracts, inclusive-structure lists, ESS lists), the DECP holder columns, the postcode of
the spending export and the shipped reference data (``ref_*`` views). The same SQL,
restricted to one key, answers ``supplier_info`` for a SIRET not (yet) in the table.

Rules, in order of precedence (each fact keeps its source in a ``*_source`` / reason
column):

location (``location_source``)
    1. ``sirene``: commune of the establishment (SIRET) in the imported SIRENE extract
       (``sirene_siege`` when the setting ``location_mode`` is ``siege`` and the head
       office of the same SIREN is known, and always for a ``SIREN:`` key);
    2. ``decp``: commune / département / région columns of the DECP holder;
    3. ``structures``: location in an imported inclusive-structure list, else in the
       shipped SIAE list;
    4. ``export_cp``: the postcode of the spending export (its most populated commune);
    5. NULL: « non localisé ».
    Every commune code goes through ``ref_communes.current_code`` (merged communes,
    arrondissements → current commune); EPCI, département, région and the centroid
    (lon/lat) are those of the current commune.
ESS (``ess``, ``ess_reason``)
    ``sirene`` (economieSocialeSolidaireUniteLegale = 'O') > ``forme_juridique``
    (catégorie juridique with an ESS family, or an ESS legal-form label in the SIAE list)
    > ``liste`` (SIREN in an imported ESS/ESUS list) > false / ``aucune`` when the legal
    unit or its legal form is known; NULL with ``non_identifie`` (no SIRET/SIREN) or
    ``hors_referentiel`` (identified but absent from every referential that says
    anything about ESS). A SIRENE flag 'N' does not stop the later rules.
inclusive (``inclusive_kind``, ``inclusive_family``)
    latest imported structures list (exact SIRET) > shipped SIAE list (exact SIRET).
size (``size_class``, ``size_source``)
    ``categorieEntreprise`` ETI / GE; PME, or TPE when the legal unit's headcount band
    is under 10 employees (NN, 00, 01, 02, 03) (``categorie_entreprise``); category
    unknown: TPE under 10, PME from 10 to 249 employees (``tranche_effectifs``); with no
    legal unit, the headcount band of the head-office establishment
    (``tranche_etablissement_siege``); otherwise NULL (unknown, kept apart).
sector
    NAF of the establishment > legal unit > structures list > SIAE list, labelled from
    NAF rév. 2 (62.01Z or 6201Z) or NAF 2025; catégorie juridique and société à
    mission from the legal unit.
name
    SIRENE denomination (legal unit, else establishment's usual name / sign) >
    structure name (imported list, else shipped SIAE list) > most frequent name in the
    data (payments and contract holders) > name in an imported ESS / ESUS list.
Name-only suppliers (``NOM:`` keys) match no referential: location and ESS stay NULL.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import duckdb
import pandas as pd

from analytics import aggregates
from analytics.filters import Territory
from analytics.ids import clean_siren, clean_siret

INSERTION_KINDS = ("EI", "AI", "ACI", "ETTI", "EITI", "GEIQ")
HANDICAP_KINDS = ("EA", "EATT", "ESAT")
INCLUSIVE_KINDS = INSERTION_KINDS + HANDICAP_KINDS
TPE_BANDS = ("NN", "00", "01", "02", "03")
PME_BANDS = ("11", "12", "21", "22", "31")
LOCATION_MODES = ("etablissement", "siege")

# French labels of the reason / source codes stored in supplier_class (for pages).
ESS_REASON_LABELS = {
    "sirene": "indicateur ESS de SIRENE",
    "forme_juridique": "forme juridique de l'ESS",
    "liste": "liste ESS / ESUS importée",
    "aucune": "non ESS (unité légale connue)",
    "non_identifie": "fournisseur non identifié",
    "hors_referentiel": "absent des référentiels",
}
LOCATION_SOURCE_LABELS = {
    "sirene": "établissement (SIRENE)",
    "sirene_siege": "siège (SIRENE)",
    "decp": "titulaire des données DECP",
    "structures": "liste des structures inclusives",
    "export_cp": "code postal de l'export comptable",
    None: "non localisé",
}
SIZE_SOURCE_LABELS = {
    "categorie_entreprise": "catégorie d'entreprise (SIRENE)",
    "tranche_effectifs": "tranche d'effectifs de l'unité légale (SIRENE)",
    "tranche_etablissement_siege": "tranche d'effectifs du siège (SIRENE)",
    None: "inconnue",
}

CLASS_COLUMNS = (
    "supplier_key",
    "siret",
    "siren",
    "name",
    "identified",
    "commune_code",
    "epci_siren",
    "departement_code",
    "region_code",
    "location_source",
    "lon",
    "lat",
    "ess",
    "ess_reason",
    "inclusive_kind",
    "inclusive_family",
    "size_class",
    "size_source",
    "categorie_juridique",
    "naf",
    "naf_section",
    "naf_division",
    "naf_label",
    "societe_mission",
    "classified_at",
)

# Columns of the reference views used here: an empty view stands in for a missing file
# so that classification still runs (with fewer facts) on an incomplete installation.
_V, _I, _D, _B = "VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN"
_REF_FALLBACK: dict[str, tuple[tuple[str, str], ...]] = {
    "ref_communes": (
        ("code_commune", _V),
        ("nom", _V),
        ("type", _V),
        ("code_departement", _V),
        ("code_region", _V),
        ("siren_commune", _V),
        ("codes_postaux", _V),
        ("population", _I),
        ("zone", _V),
        ("epci_siren", _V),
        ("epci_nom", _V),
        ("current_code", _V),
        ("merged", _B),
        ("centroid_lon", _D),
        ("centroid_lat", _D),
    ),
    "ref_postcodes": (("postcode", _V), ("code_commune", _V), ("population", _I)),
    "ref_epci": (("siren_epci", _V), ("nom", _V), ("type_epci", _V), ("population", _I)),
    "ref_departements": (("code", _V), ("nom", _V), ("code_region", _V), ("chef_lieu", _V), ("zone", _V)),
    "ref_regions": (("code", _V), ("nom", _V), ("chef_lieu", _V), ("zone", _V)),
    "ref_naf": (
        ("naf", _V),
        ("naf_nodot", _V),
        ("naf_label", _V),
        ("division", _V),
        ("division_label", _V),
        ("section", _V),
        ("section_label", _V),
    ),
    "ref_naf2025": (
        ("niv5", _V),
        ("niv5_nodot", _V),
        ("niv5_libelle", _V),
        ("niv2", _V),
        ("niv1", _V),
        ("niv1_libelle", _V),
    ),
    "ref_categories_juridiques": (("code", _V), ("libelle", _V), ("ess_family", _V)),
    "ref_siae": (
        ("siret", _V),
        ("name", _V),
        ("kind", _V),
        ("legal_form", _V),
        ("naf", _V),
        ("post_code", _V),
        ("city", _V),
        ("departement", _V),
        ("longitude", _D),
        ("latitude", _D),
        ("code_commune", _V),
    ),
    "ref_cpv_divisions": (("division", _V), ("libelle_fr", _V), ("label_en", _V)),
}


def _ensure_ref_views(con: duckdb.DuckDBPyConnection) -> None:
    """Create an empty stand-in for every reference view whose file is missing."""
    present = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'ref\\_%' ESCAPE '\\'"
        ).fetchall()
    }
    for view, cols in _REF_FALLBACK.items():
        if view not in present:
            select = ", ".join(f"NULL::{typ} AS {name}" for name, typ in cols)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {select} WHERE false")


# --- the classification SQL (built once, parametrised by its source of keys) ------------


def norm_name_sql(x: str) -> str:
    """SQL twin of ``ingest.common.norm_name`` (NFKD + ASCII, upper case, legal-form words
    dropped); equal on real names (tested), except rare compatibility characters."""
    s = f"coalesce({x}, '')"
    s = (
        f"regexp_replace({s}, '[\\x{{00A0}}\\x{{2000}}-\\x{{200A}}\\x{{202F}}\\x{{205F}}\\x{{3000}}]',"
        " ' ', 'g')"
    )
    s = f"replace(replace(replace({s}, 'ﬁ', 'fi'), 'ﬂ', 'fl'), 'ﬀ', 'ff')"
    s = f"translate({s}, '¹²³ºª', '123oa')"
    s = f"upper(regexp_replace(strip_accents({s}), '[^\\x01-\\x7F]', '', 'g'))"
    s = f"trim(regexp_replace({s}, '[^A-Z0-9]+', ' ', 'g'))"
    s = (
        f"regexp_replace({s}, '\\b(SARL|SAS|SASU|SA|EURL|SCI|SNC|STE|SOCIETE|ETS|ETABLISSEMENTS)\\b',"
        " '', 'g')"
    )
    return f"trim(regexp_replace({s}, '\\s+', ' ', 'g'))"


# Key of a contract holder (alias h): its SIRET (the DECP importer keeps only valid ones),
# else NOM:<normalised name>, else INCONNU. Published for the indicators, which join
# contract holders to supplier_class with this very expression.
HOLDER_KEY_SQL = f"""CASE
    WHEN regexp_full_match(h.holder_siret, '[0-9]{{14}}') THEN h.holder_siret
    WHEN {norm_name_sql("h.holder_name")} <> '' THEN 'NOM:' || {norm_name_sql("h.holder_name")}
    ELSE 'INCONNU' END"""

# The supplier keys of the data with their names and postcodes as written, and how many
# lines (c) carry each: from the payment lines themselves, or from supplier_names, which
# counts them per import (aggregates.names_ready: in step with the lines).
_HOLDER_KEYS = f"""
    SELECT {HOLDER_KEY_SQL} AS supplier_key, h.holder_name AS name, NULL AS postcode, 1 AS c
    FROM contract_holders h
"""
_DATA_KEYS = f"""
    SELECT supplier_key, supplier_name AS name, supplier_postcode AS postcode, 1 AS c FROM mandats
    UNION ALL {_HOLDER_KEYS}
"""
_DATA_KEYS_COUNTED = f"""
    SELECT supplier_key, name, postcode, lines AS c FROM supplier_names
    UNION ALL {_HOLDER_KEYS}
"""

# The rows of the suppliers in _touched_keys (the keys of import $i): the import's own
# payment lines are read by import_id (no join over them), older lines through the keys.
_TOUCHED_KEYS = f"""
    SELECT supplier_key, supplier_name AS name, supplier_postcode AS postcode, 1 AS c FROM mandats
    WHERE import_id = $i
    UNION ALL
    SELECT supplier_key, supplier_name AS name, supplier_postcode AS postcode, 1 AS c FROM mandats
    WHERE import_id <> $i AND supplier_key IN (SELECT supplier_key FROM _touched_keys)
    UNION ALL
    SELECT * FROM ({_HOLDER_KEYS}) WHERE supplier_key IN (SELECT supplier_key FROM _touched_keys)
"""
# The same from supplier_names: a tenth of the rows of ten years of lines.
_TOUCHED_KEYS_COUNTED = f"""
    SELECT supplier_key, name, postcode, lines AS c FROM supplier_names
    WHERE supplier_key IN (SELECT supplier_key FROM _touched_keys)
    UNION ALL
    SELECT * FROM ({_HOLDER_KEYS}) WHERE supplier_key IN (SELECT supplier_key FROM _touched_keys)
"""


def _data_keys(con: duckdb.DuckDBPyConnection, touched: bool = False) -> str:
    if aggregates.names_ready(con):
        return _TOUCHED_KEYS_COUNTED if touched else _DATA_KEYS_COUNTED
    return _TOUCHED_KEYS if touched else _DATA_KEYS


def _naf_norm(expr: str) -> str:
    """'6201Z' / '62.01Z' / ' 62.01z' -> '62.01Z' (other codes kept as given, upper case)."""
    x = f"upper(replace(trim({expr}), ' ', ''))"
    return (
        f"CASE WHEN regexp_full_match({x}, '[0-9]{{4}}[A-Z]') "
        f"THEN substr({x}, 1, 2) || '.' || substr({x}, 3) ELSE nullif({x}, '') END"
    )


def _commune_norm(expr: str) -> str:
    """A commune code as 5 characters (a spreadsheet drops the leading zero)."""
    return (
        f"CASE WHEN regexp_full_match(trim({expr}), '[0-9]{{4}}') THEN '0' || trim({expr}) "
        f"ELSE nullif(upper(trim({expr})), '') END"
    )


def _dep_norm(expr: str) -> str:
    return (
        f"CASE WHEN regexp_full_match(trim({expr}), '[0-9]') THEN '0' || trim({expr}) "
        f"ELSE nullif(upper(trim({expr})), '') END"
    )


def _postcode_norm(expr: str) -> str:
    x = f"regexp_replace({expr}, '[^0-9]', '', 'g')"
    return f"CASE WHEN length({x}) = 4 THEN '0' || {x} WHEN length({x}) = 5 THEN {x} END"


_CLASS_SQL = """
WITH src AS ({keys}),
raw_np AS (
    -- group the raw lines first: the text clean-ups then run once per distinct value
    SELECT supplier_key, name, postcode, sum(c) AS c FROM src GROUP BY ALL
),
k AS (
    SELECT supplier_key,
           CASE WHEN regexp_full_match(supplier_key, '[0-9]{{14}}') THEN supplier_key END AS siret,
           CASE WHEN regexp_full_match(supplier_key, '[0-9]{{14}}') THEN left(supplier_key, 9)
                WHEN regexp_full_match(supplier_key, 'SIREN:[0-9]{{9}}') THEN substr(supplier_key, 7)
           END AS siren
    FROM (SELECT DISTINCT supplier_key FROM raw_np WHERE supplier_key IS NOT NULL)
),
data_name AS (
    SELECT supplier_key, first(name ORDER BY c DESC, name) AS name FROM (
        SELECT supplier_key, trim(name) AS name, sum(c) AS c FROM raw_np
        WHERE nullif(trim(name), '') IS NOT NULL GROUP BY ALL
    ) GROUP BY supplier_key
),
data_cp AS (
    SELECT supplier_key, first(postcode ORDER BY c DESC, postcode) AS postcode FROM (
        SELECT supplier_key, postcode, sum(c) AS c FROM (
            SELECT supplier_key, {cp_src} AS postcode, c FROM raw_np WHERE postcode IS NOT NULL
        ) WHERE postcode IS NOT NULL GROUP BY ALL
    ) GROUP BY supplier_key
),
mode AS (
    SELECT coalesce((SELECT value->>'$' FROM settings WHERE key = 'location_mode'),
                    'etablissement') = 'siege' AS siege_mode
),
cmap AS (SELECT code_commune, current_code FROM ref_communes),
cinfo AS (
    SELECT code_commune, code_departement, code_region, epci_siren, centroid_lon, centroid_lat
    FROM ref_communes WHERE code_commune = current_code
),
cp_best AS (
    SELECT postcode, first(code_commune ORDER BY population DESC NULLS LAST, code_commune)
           AS code_commune
    FROM ref_postcodes GROUP BY postcode
),
deps AS (SELECT code, code_region FROM ref_departements),
regs AS (SELECT code FROM ref_regions),
est AS (
    -- latest version of every establishment of the SIRENs concerned
    SELECT e.* FROM sirene_etablissements e
    WHERE e.siren IN (SELECT siren FROM k WHERE siren IS NOT NULL)
    QUALIFY row_number() OVER (PARTITION BY e.siret ORDER BY e.import_id DESC) = 1
),
etab AS (SELECT * FROM est WHERE siret IN (SELECT siret FROM k WHERE siret IS NOT NULL)),
unit AS (
    SELECT u.* FROM sirene_unites u
    WHERE u.siren IN (SELECT siren FROM k WHERE siren IS NOT NULL)
    QUALIFY row_number() OVER (PARTITION BY u.siren ORDER BY u.import_id DESC) = 1
),
siege AS (
    -- head office of each SIREN: the establishment named by the unit's nicSiege, else the
    -- one flagged etablissementSiege (latest import first)
    SELECT s.siren,
           first(s.commune_code ORDER BY (s.siret = s.siren || u.nic_siege) DESC NULLS LAST,
                 s.import_id DESC, s.siret) AS commune_code,
           first(s.tranche_effectifs ORDER BY (s.siret = s.siren || u.nic_siege) DESC NULLS LAST,
                 s.import_id DESC, s.siret) AS tranche_effectifs
    FROM est s LEFT JOIN unit u ON u.siren = s.siren
    WHERE s.siege OR s.siret = s.siren || u.nic_siege
    GROUP BY s.siren
),
decp AS (
    SELECT h.holder_siret AS siret,
           first({h_com} ORDER BY h.import_id DESC, h.seq DESC)
               FILTER (WHERE {h_com} IS NOT NULL) AS commune_code,
           first({h_dep} ORDER BY h.import_id DESC, h.seq DESC)
               FILTER (WHERE {h_dep} IS NOT NULL) AS departement_code,
           first({h_reg} ORDER BY h.import_id DESC, h.seq DESC)
               FILTER (WHERE {h_reg} IS NOT NULL) AS region_code
    FROM contract_holders h
    WHERE h.holder_siret IN (SELECT siret FROM k WHERE siret IS NOT NULL)
    GROUP BY h.holder_siret
),
struct AS (
    SELECT s.* FROM structures s
    WHERE s.siret IN (SELECT siret FROM k WHERE siret IS NOT NULL)
    QUALIFY row_number() OVER (PARTITION BY s.siret ORDER BY s.import_id DESC, s.rowid) = 1
),
siae AS (
    SELECT r.siret, r.name, r.kind, r.legal_form, r.naf, r.post_code, r.departement,
           r.code_commune, r.longitude, r.latitude
    FROM ref_siae r
    WHERE r.siret IN (SELECT siret FROM k WHERE siret IS NOT NULL)
    QUALIFY row_number() OVER (PARTITION BY r.siret ORDER BY r.kind, r.name) = 1
),
ess_l AS (
    SELECT DISTINCT siren FROM ess_list
    WHERE siren IN (SELECT siren FROM k WHERE siren IS NOT NULL)
),
ess_name AS (
    -- the name an ESS / ESUS list gives: the line of the same SIRET, else a line of the
    -- SIREN without SIRET, else another establishment's; latest import first
    SELECT k.supplier_key,
           first(trim(e.name) ORDER BY CASE WHEN e.siret = k.siret THEN 0 WHEN e.siret IS NULL THEN 1
                 ELSE 2 END, e.import_id DESC, trim(e.name)) AS name
    FROM k JOIN ess_list e ON e.siren = k.siren
    WHERE nullif(trim(e.name), '') IS NOT NULL
    GROUP BY k.supplier_key
),
b AS (
    SELECT k.supplier_key, k.siret, k.siren,
        -- candidate locations by source, communes mapped to the current commune
        CASE WHEN k.siret IS NULL OR (SELECT siege_mode FROM mode) THEN m_sg.current_code END
            AS sg_com,
        m_et.current_code AS et_com,
        m_d.current_code AS d_com,
        d_dep.code AS d_dep,
        coalesce(d_reg.code, d_dep.code_region) AS d_reg,
        coalesce(m_st.current_code, cp_st.code_commune, m_sa.current_code, cp_sa.code_commune)
            AS s_com,
        coalesce(s_dep.code, sa_dep.code) AS s_dep,
        coalesce(s_dep.code_region, sa_dep.code_region) AS s_reg,
        coalesce(struct.longitude, siae.longitude) AS s_lon,
        coalesce(struct.latitude, siae.latitude) AS s_lat,
        CASE WHEN k.siren IS NOT NULL THEN cp_data.code_commune END AS cp_com,
        -- facts
        coalesce(nullif(trim(unit.denomination), ''), nullif(trim(etab.denomination_usuelle), ''),
                 nullif(trim(etab.enseigne), ''), nullif(trim(struct.name), ''),
                 nullif(trim(siae.name), ''), data_name.name, ess_name.name) AS name,
        unit.siren IS NOT NULL AS unit_known,
        unit.ess AS unit_ess,
        unit.categorie_juridique,
        unit.categorie_entreprise,
        unit.tranche_effectifs AS unit_band,
        sg.tranche_effectifs AS siege_band,
        unit.societe_mission,
        cj.code IS NOT NULL AS cj_known,
        cj.ess_family IS NOT NULL AS cj_ess,
        unit.categorie_juridique IS NULL AND nullif(trim(siae.legal_form), '') IS NOT NULL
            AS lf_known,
        unit.categorie_juridique IS NULL AND {lf_ess} AS lf_ess,
        ess_l.siren IS NOT NULL AS in_ess_list,
        struct.kind AS st_kind,
        struct.family AS st_family,
        upper(siae.kind) AS siae_kind,
        coalesce({naf_e}, {naf_u}, {naf_s}, {naf_a}) AS naf_code
    FROM k
    LEFT JOIN etab ON etab.siret = k.siret
    LEFT JOIN unit ON unit.siren = k.siren
    LEFT JOIN siege sg ON sg.siren = k.siren
    LEFT JOIN decp ON decp.siret = k.siret
    LEFT JOIN struct ON struct.siret = k.siret
    LEFT JOIN siae ON siae.siret = k.siret
    LEFT JOIN ess_l ON ess_l.siren = k.siren
    LEFT JOIN data_name ON data_name.supplier_key = k.supplier_key
    LEFT JOIN ess_name ON ess_name.supplier_key = k.supplier_key
    LEFT JOIN data_cp ON data_cp.supplier_key = k.supplier_key
    LEFT JOIN ref_categories_juridiques cj ON cj.code = unit.categorie_juridique
    LEFT JOIN cmap m_sg ON m_sg.code_commune = {sg_com}
    LEFT JOIN cmap m_et ON m_et.code_commune = {et_com}
    LEFT JOIN cmap m_d ON m_d.code_commune = decp.commune_code
    LEFT JOIN deps d_dep ON d_dep.code = decp.departement_code
    LEFT JOIN regs d_reg ON d_reg.code = decp.region_code
    LEFT JOIN cmap m_st ON m_st.code_commune = {st_com}
    LEFT JOIN cp_best cp_st ON cp_st.postcode = {st_cp}
    LEFT JOIN cmap m_sa ON m_sa.code_commune = siae.code_commune
    LEFT JOIN cp_best cp_sa ON cp_sa.postcode = siae.post_code
    LEFT JOIN deps s_dep ON s_dep.code = {st_dep}
    LEFT JOIN deps sa_dep ON sa_dep.code = siae.departement
    LEFT JOIN cp_best cp_data ON cp_data.postcode = data_cp.postcode
),
l AS (
    SELECT b.*,
        CASE WHEN sg_com IS NOT NULL THEN 'sirene_siege'
             WHEN et_com IS NOT NULL THEN 'sirene'
             WHEN coalesce(d_com, d_dep, d_reg) IS NOT NULL THEN 'decp'
             WHEN coalesce(s_com, s_dep) IS NOT NULL THEN 'structures'
             WHEN cp_com IS NOT NULL THEN 'export_cp' END AS location_source
    FROM b
),
l2 AS (
    SELECT l.*,
        CASE location_source WHEN 'sirene_siege' THEN sg_com WHEN 'sirene' THEN et_com
             WHEN 'decp' THEN d_com WHEN 'structures' THEN s_com WHEN 'export_cp' THEN cp_com
        END AS commune,
        CASE location_source WHEN 'decp' THEN d_dep WHEN 'structures' THEN s_dep END AS dep_hint,
        CASE location_source WHEN 'decp' THEN d_reg WHEN 'structures' THEN s_reg END AS reg_hint,
        CASE location_source WHEN 'structures' THEN s_lon END AS lon_hint,
        CASE location_source WHEN 'structures' THEN s_lat END AS lat_hint
    FROM l
)
SELECT
    l2.supplier_key,
    l2.siret,
    l2.siren,
    l2.name,
    l2.siren IS NOT NULL AS identified,
    l2.commune AS commune_code,
    ci.epci_siren,
    coalesce(ci.code_departement, l2.dep_hint) AS departement_code,
    coalesce(ci.code_region, l2.reg_hint) AS region_code,
    l2.location_source,
    CASE WHEN l2.commune IS NULL THEN l2.lon_hint ELSE ci.centroid_lon END AS lon,
    CASE WHEN l2.commune IS NULL THEN l2.lat_hint ELSE ci.centroid_lat END AS lat,
    CASE WHEN unit_ess = 'O' OR cj_ess OR lf_ess OR in_ess_list THEN true
         WHEN unit_known OR cj_known OR lf_known THEN false END AS ess,
    CASE WHEN unit_ess = 'O' THEN 'sirene'
         WHEN cj_ess OR lf_ess THEN 'forme_juridique'
         WHEN in_ess_list THEN 'liste'
         WHEN unit_known OR cj_known OR lf_known THEN 'aucune'
         WHEN l2.siren IS NULL THEN 'non_identifie'
         ELSE 'hors_referentiel' END AS ess_reason,
    coalesce(st_kind, CASE WHEN siae_kind IN {kinds} THEN siae_kind END) AS inclusive_kind,
    CASE WHEN st_kind IS NOT NULL THEN st_family
         WHEN siae_kind IN {insertion} THEN 'insertion'
         WHEN siae_kind IN {handicap} THEN 'handicap' END AS inclusive_family,
    CASE WHEN categorie_entreprise IN ('ETI', 'GE') THEN categorie_entreprise
         WHEN categorie_entreprise = 'PME'
             THEN CASE WHEN unit_band IN {tpe} THEN 'TPE' ELSE 'PME' END
         WHEN unit_band IN {tpe} THEN 'TPE'
         WHEN unit_band IN {pme} THEN 'PME'
         WHEN NOT unit_known AND siege_band IN {tpe} THEN 'TPE'
         WHEN NOT unit_known AND siege_band IN {pme} THEN 'PME' END AS size_class,
    CASE WHEN categorie_entreprise IN ('PME', 'ETI', 'GE') THEN 'categorie_entreprise'
         WHEN unit_band IN {tpe} OR unit_band IN {pme} THEN 'tranche_effectifs'
         WHEN NOT unit_known AND (siege_band IN {tpe} OR siege_band IN {pme})
             THEN 'tranche_etablissement_siege' END AS size_source,
    l2.categorie_juridique,
    l2.naf_code AS naf,
    coalesce(rn.section, r25.niv1) AS naf_section,
    CASE WHEN regexp_full_match(l2.naf_code, '[0-9]{{2}}[.].*') THEN left(l2.naf_code, 2) END
        AS naf_division,
    coalesce(rn.naf_label, r25.niv5_libelle) AS naf_label,
    CASE WHEN societe_mission = 'O' THEN true WHEN unit_known THEN false END AS societe_mission,
    CAST(current_timestamp AS TIMESTAMP) AS classified_at
FROM l2
LEFT JOIN cinfo ci ON ci.code_commune = l2.commune
LEFT JOIN ref_naf rn ON rn.naf = l2.naf_code
LEFT JOIN ref_naf2025 r25 ON r25.niv5 = l2.naf_code
"""


def _sql_tuple(values) -> str:
    return "(" + ", ".join("'" + v + "'" for v in values) + ")"


def _class_sql(keys_sql: str) -> str:
    """The classification query for the keys produced by ``keys_sql`` (columns
    supplier_key, name, postcode). Every piece of text is ours, never user input."""
    lf = "upper(strip_accents(coalesce(siae.legal_form, '')))"
    lf_ess = (
        f"regexp_matches({lf}, "
        "'(^|[^A-Z])(ASSOCIATION|ASSOC|FONDATION|MUTUELLE|COOPERATIVE|SCOP|SCIC)([^A-Z]|$)')"
    )
    return _CLASS_SQL.format(
        keys=keys_sql,
        cp_src=_postcode_norm("postcode"),
        h_com=_commune_norm("h.commune_code"),
        h_dep=_dep_norm("h.departement_code"),
        h_reg=_dep_norm("h.region_code"),
        sg_com=_commune_norm("sg.commune_code"),
        et_com=_commune_norm("etab.commune_code"),
        st_com=_commune_norm("struct.commune_code"),
        st_cp=_postcode_norm("struct.postcode"),
        st_dep=_dep_norm("struct.departement_code"),
        lf_ess=lf_ess,
        naf_e=_naf_norm("etab.naf"),
        naf_u=_naf_norm("unit.naf"),
        naf_s=_naf_norm("struct.naf"),
        naf_a=_naf_norm("siae.naf"),
        kinds=_sql_tuple(INCLUSIVE_KINDS),
        insertion=_sql_tuple(INSERTION_KINDS),
        handicap=_sql_tuple(HANDICAP_KINDS),
        tpe=_sql_tuple(TPE_BANDS),
        pme=_sql_tuple(PME_BANDS),
    )


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Reference views present (empty stand-ins for missing files)."""
    _ensure_ref_views(con)


def reclassify(con: duckdb.DuckDBPyConnection, import_id: int | None = None) -> int:
    """Rebuild supplier_class for every supplier seen in mandats or contract holders.

    With ``import_id`` (a mandats or contracts import, which changes no referential),
    only the suppliers that import touches are classified again, from all their rows:
    the result is the same as a full rebuild, at the cost of the new lines only.
    No BEGIN/COMMIT here: callers (run_import, undo) hold the transaction.
    Returns the number of suppliers (re)classified.
    """
    _prepare(con)
    cols = ", ".join(CLASS_COLUMNS)
    if import_id is None:
        con.execute("DELETE FROM supplier_class")
        con.execute(f"INSERT INTO supplier_class ({cols}) SELECT {cols} FROM ({_class_sql(_data_keys(con))})")
        return con.execute("SELECT count(*) FROM supplier_class").fetchone()[0]
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _touched_keys AS
            SELECT DISTINCT supplier_key FROM mandats WHERE import_id = $i
            UNION SELECT DISTINCT {HOLDER_KEY_SQL} FROM contract_holders h WHERE h.import_id = $i""",
        {"i": import_id},
    )
    # Delete and insert again: an UPDATE in place took 28 s for 91k rows whose values
    # changed (an exercice imported over the previous one), this 0.5 s.
    con.execute("DELETE FROM supplier_class WHERE supplier_key IN (SELECT supplier_key FROM _touched_keys)")
    keys = _data_keys(con, touched=True)
    con.execute(
        f"INSERT INTO supplier_class ({cols}) SELECT {cols} FROM ({_class_sql(keys)})",
        {"i": import_id} if "$i" in keys else {},
    )
    n = con.execute("SELECT count(*) FROM _touched_keys").fetchone()[0]
    con.execute("DROP TABLE _touched_keys")
    return n


def classify_keys(con: duckdb.DuckDBPyConnection, keys: list[str]) -> list[dict]:
    """The classification of a few supplier keys, computed now (same SQL as reclassify)."""
    _prepare(con)
    keys_sql = (
        f"SELECT * FROM ({_data_keys(con)}) WHERE supplier_key IN (SELECT unnest($keys)) "
        "UNION ALL SELECT unnest($keys) AS supplier_key, NULL AS name, NULL AS postcode, 1 AS c"
    )
    cols = ", ".join(CLASS_COLUMNS)
    cur = con.execute(f"SELECT {cols} FROM ({_class_sql(keys_sql)})", {"keys": list(keys)})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _supplier_key(raw: str) -> str | None:
    text = str(raw or "").strip()
    if text.upper().startswith(("NOM:", "SIREN:")) or text.upper() == "INCONNU":
        head, _, tail = text.partition(":")
        return f"{head.upper()}:{tail}" if tail else text.upper()
    siret = clean_siret(text)
    if siret:
        return siret
    digits = re.sub(r"\D", "", text)
    if len(digits) in (8, 9):
        siren = clean_siren(digits)
        return f"SIREN:{siren}" if siren else None
    return None


def _known(con: duckdb.DuckDBPyConnection, key: str) -> bool:
    """Seen in the data or known to a referential (SIRENE, structures, SIAE, ESS list)."""
    siret = key if re.fullmatch(r"\d{14}", key) else None
    siren = siret[:9] if siret else (key[6:] if key.startswith("SIREN:") else None)
    row = con.execute(
        f"""SELECT EXISTS (SELECT 1 FROM supplier_class WHERE supplier_key = $k)
            OR EXISTS (SELECT 1 FROM ({_data_keys(con)}) WHERE supplier_key = $k)
            OR EXISTS (SELECT 1 FROM sirene_etablissements WHERE siret = $siret)
            OR EXISTS (SELECT 1 FROM sirene_unites WHERE siren = $siren)
            OR EXISTS (SELECT 1 FROM structures WHERE siret = $siret)
            OR EXISTS (SELECT 1 FROM ref_siae WHERE siret = $siret)
            OR EXISTS (SELECT 1 FROM ess_list WHERE siren = $siren OR siret = $siret)""",
        {"k": key, "siret": siret, "siren": siren},
    ).fetchone()
    return bool(row[0])


def supplier_info(con: duckdb.DuckDBPyConnection, siret: str) -> dict | None:
    """The classification of one supplier with its reasons, or None when unknown.

    ``siret`` may be a SIRET, a SIREN, or a supplier key (``SIREN:…``, ``NOM:…``).
    A supplier of the data is read from ``supplier_class``, which every import keeps in
    step (the card then says what the figures count). Any other key is classified now
    with the same SQL as ``reclassify``, so a SIRET that is only in a referential is
    answered too.
    """
    key = _supplier_key(siret)
    if key is None:
        raise ValueError(f"Identifiant invalide « {siret} » : SIRET (14 chiffres) ou SIREN attendu.")
    _prepare(con)
    cur = con.execute(
        f"SELECT {', '.join(CLASS_COLUMNS)} FROM supplier_class WHERE supplier_key = $k", {"k": key}
    )
    stored = cur.fetchone()
    if stored is not None:
        row = dict(zip([d[0] for d in cur.description], stored))
    else:
        if not _known(con, key):
            return None
        rows = classify_keys(con, [key])
        if not rows:
            return None
        row = rows[0]
    names = con.execute(
        """SELECT (SELECT nom FROM ref_communes WHERE code_commune = $c),
                  (SELECT nom FROM ref_epci WHERE siren_epci = $e),
                  (SELECT nom FROM ref_departements WHERE code = $d),
                  (SELECT nom FROM ref_regions WHERE code = $r),
                  (SELECT libelle FROM ref_categories_juridiques WHERE code = $j),
                  EXISTS (SELECT 1 FROM supplier_class WHERE supplier_key = $k)""",
        {
            "c": row["commune_code"],
            "e": row["epci_siren"],
            "d": row["departement_code"],
            "r": row["region_code"],
            "j": row["categorie_juridique"],
            "k": key,
        },
    ).fetchone()
    row.pop("classified_at", None)
    out = {
        "siret": row["siret"],
        "siren": row["siren"],
        "supplier_key": row["supplier_key"],
        "name": row["name"],
        "identified": row["identified"],
        "commune_code": row["commune_code"],
        "commune_name": names[0],
        "epci_siren": row["epci_siren"],
        "epci_name": names[1],
        "departement_code": row["departement_code"],
        "departement_name": names[2],
        "region_code": row["region_code"],
        "region_name": names[3],
        "location_source": row["location_source"],
        "lon": row["lon"],
        "lat": row["lat"],
        "ess": row["ess"],
        "ess_reason": row["ess_reason"],
        "inclusive_kind": row["inclusive_kind"],
        "inclusive_family": row["inclusive_family"],
        "size_class": row["size_class"],
        "size_source": row["size_source"],
        "naf": row["naf"],
        "naf_label": row["naf_label"],
        "naf_section": row["naf_section"],
        "naf_division": row["naf_division"],
        "categorie_juridique": row["categorie_juridique"],
        "categorie_juridique_label": names[4],
        "societe_mission": row["societe_mission"],
        "seen_in_data": bool(names[5]),
    }
    return out


def _frame(cur) -> pd.DataFrame:
    """A small result as a DataFrame (without DuckDB's pandas conversion warnings)."""
    return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])


def location_mode(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT value->>'$' FROM settings WHERE key = 'location_mode'").fetchone()
    return row[0] if row and row[0] in LOCATION_MODES else "etablissement"


def set_location_mode(con: duckdb.DuckDBPyConnection, mode: str, who: str | None = None) -> int:
    """Locate suppliers by their establishment (default) or their head office; reclassify."""
    from analytics import store

    if mode not in LOCATION_MODES:
        raise ValueError(f"Mode de localisation inconnu « {mode} » : etablissement ou siege.")
    with store.transaction(con):
        _put_setting(con, "location_mode", mode, who)
        return reclassify(con)


def _put_setting(con, key: str, value, who: str | None) -> None:
    con.execute(
        "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($k, $v, $t, $w) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        {"k": key, "v": json.dumps(value, ensure_ascii=False), "t": dt.datetime.now(), "w": who},
    )


# --- territories ------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def territory_predicate(t: Territory, alias: str = "s", param: str = "territory_codes") -> tuple[str, dict]:
    """SQL testing a supplier_class row (alias) against a territory, and its parameters.

    Only whitelisted names enter the text: the column from ``Territory.column`` and an
    alias / parameter name that must be plain identifiers.
    """
    if not _IDENT.fullmatch(alias) or not _IDENT.fullmatch(param):
        raise ValueError("alias / paramètre SQL invalide")
    return f"list_contains(${param}, {alias}.{t.column})", {param: list(t.codes)}


def territory_label(con: duckdb.DuckDBPyConnection, t: Territory | None) -> str:
    """'Nord (59)', 'Nord (59), Pas-de-Calais (62)', 'Hauts-de-France', an EPCI name…"""
    if t is None:
        return "aucun territoire"
    _ensure_ref_views(con)
    parts = []
    for code in t.codes:
        if t.kind == "dep":
            row = con.execute("SELECT nom FROM ref_departements WHERE code = $c", {"c": code}).fetchone()
            parts.append(f"{row[0]} ({code})" if row else f"département {code}")
        elif t.kind == "reg":
            row = con.execute("SELECT nom FROM ref_regions WHERE code = $c", {"c": code}).fetchone()
            parts.append(row[0] if row else f"région {code}")
        elif t.kind == "epci":
            row = con.execute("SELECT nom FROM ref_epci WHERE siren_epci = $c", {"c": code}).fetchone()
            parts.append(row[0] if row else f"EPCI {code}")
        else:
            row = con.execute("SELECT nom FROM ref_communes WHERE code_commune = $c", {"c": code}).fetchone()
            parts.append(f"{row[0]} ({code})" if row else f"commune {code}")
    return ", ".join(parts)


def _check_territory(con, t: Territory) -> None:
    _ensure_ref_views(con)
    table, col = {
        "dep": ("ref_departements", "code"),
        "reg": ("ref_regions", "code"),
        "epci": ("ref_epci", "siren_epci"),
        "com": ("ref_communes", "code_commune"),
    }[t.kind]
    if not con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]:
        return  # reference data not installed: cannot check
    known = {
        r[0]
        for r in con.execute(
            f"SELECT {col} FROM {table} WHERE list_contains($c, {col})", {"c": list(t.codes)}
        ).fetchall()
    }
    unknown = [c for c in t.codes if c not in known]
    if unknown:
        raise ValueError(f"Territoire {t} : code(s) inconnu(s) {', '.join(unknown)}.")


# SIRENs of the départements, régions and of the collectivités exercising their powers
# (Collectivité européenne d'Alsace, de Corse, de Guyane, de Martinique, Département de
# Mayotte). The shipped etalab tables do not carry them. Source: the SIRENE register
# (INSEE, Licence Ouverte), as listed in a public table compiled from SIRENE and the
# etalab découpage; every number is checked Luhn-valid by the tests. Paris (Ville de
# Paris, département and commune) is found through the communes table.
_COLLECTIVITES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "220100010": ("departement", ("01",), "Département de l'Ain"),
    "220200026": ("departement", ("02",), "Département de l'Aisne"),
    "220300016": ("departement", ("03",), "Département de l'Allier"),
    "220400014": ("departement", ("04",), "Département des Alpes-de-Haute-Provence"),
    "220500011": ("departement", ("05",), "Département des Hautes-Alpes"),
    "220600019": ("departement", ("06",), "Département des Alpes-Maritimes"),
    "220700017": ("departement", ("07",), "Département de l'Ardèche"),
    "220800049": ("departement", ("08",), "Département des Ardennes"),
    "220900013": ("departement", ("09",), "Département de l'Ariège"),
    "221000052": ("departement", ("10",), "Département de l'Aube"),
    "221100019": ("departement", ("11",), "Département de l'Aude"),
    "221200017": ("departement", ("12",), "Département de l'Aveyron"),
    "221300015": ("departement", ("13",), "Département des Bouches-du-Rhône"),
    "221401185": ("departement", ("14",), "Département du Calvados"),
    "221500010": ("departement", ("15",), "Département du Cantal"),
    "221600018": ("departement", ("16",), "Département de la Charente"),
    "221700016": ("departement", ("17",), "Département de la Charente-Maritime"),
    "221800014": ("departement", ("18",), "Département du Cher"),
    "221927205": ("departement", ("19",), "Département de la Corrèze"),
    "222100018": ("departement", ("21",), "Département de la Côte-d'Or"),
    "222200016": ("departement", ("22",), "Département des Côtes-d'Armor"),
    "222309627": ("departement", ("23",), "Département de la Creuse"),
    "222400012": ("departement", ("24",), "Département de la Dordogne"),
    "222500019": ("departement", ("25",), "Département du Doubs"),
    "222600017": ("departement", ("26",), "Département de la Drôme"),
    "222702292": ("departement", ("27",), "Département de l'Eure"),
    "222800013": ("departement", ("28",), "Département d'Eure-et-Loir"),
    "222900011": ("departement", ("29",), "Département du Finistère"),
    "223000019": ("departement", ("30",), "Département du Gard"),
    "223100017": ("departement", ("31",), "Département de la Haute-Garonne"),
    "223200015": ("departement", ("32",), "Département du Gers"),
    "223300013": ("departement", ("33",), "Département de la Gironde"),
    "223400011": ("departement", ("34",), "Département de l'Hérault"),
    "223500018": ("departement", ("35",), "Département d'Ille-et-Vilaine"),
    "223600016": ("departement", ("36",), "Département de l'Indre"),
    "223700014": ("departement", ("37",), "Département d'Indre-et-Loire"),
    "223800012": ("departement", ("38",), "Département de l'Isère"),
    "223900010": ("departement", ("39",), "Département du Jura"),
    "224000018": ("departement", ("40",), "Département des Landes"),
    "224100016": ("departement", ("41",), "Département du Loir-et-Cher"),
    "224200014": ("departement", ("42",), "Département de la Loire"),
    "224300012": ("departement", ("43",), "Département de la Haute-Loire"),
    "224400028": ("departement", ("44",), "Département de la Loire-Atlantique"),
    "224500017": ("departement", ("45",), "Département du Loiret"),
    "224600015": ("departement", ("46",), "Département du Lot"),
    "224700013": ("departement", ("47",), "Département du Lot-et-Garonne"),
    "224800011": ("departement", ("48",), "Département de la Lozère"),
    "224900019": ("departement", ("49",), "Département de Maine-et-Loire"),
    "225005024": ("departement", ("50",), "Département de la Manche"),
    "225100015": ("departement", ("51",), "Département de la Marne"),
    "225200013": ("departement", ("52",), "Département de la Haute-Marne"),
    "225300011": ("departement", ("53",), "Département de la Mayenne"),
    "225400019": ("departement", ("54",), "Département de Meurthe-et-Moselle"),
    "225500016": ("departement", ("55",), "Département de la Meuse"),
    "225600014": ("departement", ("56",), "Département du Morbihan"),
    "225700012": ("departement", ("57",), "Département de la Moselle"),
    "225800010": ("departement", ("58",), "Département de la Nièvre"),
    "225900018": ("departement", ("59",), "Département du Nord"),
    "226000016": ("departement", ("60",), "Département de l'Oise"),
    "226100014": ("departement", ("61",), "Département de l'Orne"),
    "226200012": ("departement", ("62",), "Département du Pas-de-Calais"),
    "226300010": ("departement", ("63",), "Département du Puy-de-Dôme"),
    "226400018": ("departement", ("64",), "Département des Pyrénées-Atlantiques"),
    "226500015": ("departement", ("65",), "Département des Hautes-Pyrénées"),
    "226600013": ("departement", ("66",), "Département des Pyrénées-Orientales"),
    "200094332": ("departement", ("67", "68"), "Collectivité européenne d'Alsace"),
    "226900017": ("departement", ("69",), "Département du Rhône"),
    "227000015": ("departement", ("70",), "Département de la Haute-Saône"),
    "227100013": ("departement", ("71",), "Département de Saône-et-Loire"),
    "227200029": ("departement", ("72",), "Département de la Sarthe"),
    "227300019": ("departement", ("73",), "Département de la Savoie"),
    "227400017": ("departement", ("74",), "Département de la Haute-Savoie"),
    "227605409": ("departement", ("76",), "Département de la Seine-Maritime"),
    "227700010": ("departement", ("77",), "Département de Seine-et-Marne"),
    "227806460": ("departement", ("78",), "Département des Yvelines"),
    "227900016": ("departement", ("79",), "Département des Deux-Sèvres"),
    "228000014": ("departement", ("80",), "Département de la Somme"),
    "228100012": ("departement", ("81",), "Département du Tarn"),
    "228200010": ("departement", ("82",), "Département du Tarn-et-Garonne"),
    "228300018": ("departement", ("83",), "Département du Var"),
    "228400016": ("departement", ("84",), "Département du Vaucluse"),
    "228500013": ("departement", ("85",), "Département de la Vendée"),
    "228600011": ("departement", ("86",), "Département de la Vienne"),
    "228708517": ("departement", ("87",), "Département de la Haute-Vienne"),
    "228800017": ("departement", ("88",), "Département des Vosges"),
    "228900015": ("departement", ("89",), "Département de l'Yonne"),
    "229000013": ("departement", ("90",), "Département du Territoire de Belfort"),
    "229102280": ("departement", ("91",), "Département de l'Essonne"),
    "229200506": ("departement", ("92",), "Département des Hauts-de-Seine"),
    "229300082": ("departement", ("93",), "Département de la Seine-Saint-Denis"),
    "229400288": ("departement", ("94",), "Département du Val-de-Marne"),
    "229501275": ("departement", ("95",), "Département du Val-d'Oise"),
    "229710017": ("departement", ("971",), "Département de la Guadeloupe"),
    "229740014": ("departement", ("974",), "Département de La Réunion"),
    "229850003": ("departement", ("976",), "Département de Mayotte"),
    "239710015": ("region", ("01",), "Région Guadeloupe"),
    "200055507": ("region", ("02",), "Collectivité territoriale de Martinique"),
    "200052678": ("region", ("03",), "Collectivité territoriale de Guyane"),
    "239740012": ("region", ("04",), "Région La Réunion"),
    "237500079": ("region", ("11",), "Région Île-de-France"),
    "234500023": ("region", ("24",), "Région Centre-Val de Loire"),
    "200053726": ("region", ("27",), "Région Bourgogne-Franche-Comté"),
    "200053403": ("region", ("28",), "Région Normandie"),
    "200053742": ("region", ("32",), "Région Hauts-de-France"),
    "200052264": ("region", ("44",), "Région Grand Est"),
    "234400034": ("region", ("52",), "Région Pays de la Loire"),
    "233500016": ("region", ("53",), "Région Bretagne"),
    "200053759": ("region", ("75",), "Région Nouvelle-Aquitaine"),
    "200053791": ("region", ("76",), "Région Occitanie"),
    "200053767": ("region", ("84",), "Région Auvergne-Rhône-Alpes"),
    "231300021": ("region", ("93",), "Région Provence-Alpes-Côte d'Azur"),
    "200076958": ("region", ("94",), "Collectivité de Corse"),
}


def public_body(con: duckdb.DuckDBPyConnection, siren: str | None) -> dict | None:
    """A commune, EPCI, département or région recognised from its SIREN.

    Returns {body_kind, name, territory (proposed), commune_code (communes only)}. The
    proposed territory of a commune or an EPCI is its département(s); of a département
    or a région, itself.
    """
    if not siren:
        return None
    _ensure_ref_views(con)
    if siren in _COLLECTIVITES:
        kind, codes, name = _COLLECTIVITES[siren]
        t = Territory("dep" if kind == "departement" else "reg", codes)
        return {"body_kind": kind, "name": name, "territory": t, "commune_code": None}
    row = con.execute(
        "SELECT code_commune, nom, code_departement FROM ref_communes "
        "WHERE siren_commune = $s ORDER BY code_commune = current_code DESC LIMIT 1",
        {"s": siren},
    ).fetchone()
    if row:
        return {
            "body_kind": "commune",
            "name": row[1],
            "territory": Territory("dep", (row[2],)),
            "commune_code": row[0],
        }
    row = con.execute("SELECT nom FROM ref_epci WHERE siren_epci = $s", {"s": siren}).fetchone()
    if row:
        deps = tuple(
            r[0]
            for r in con.execute(
                "SELECT code_departement FROM ref_communes WHERE epci_siren = $s "
                "AND code_commune = current_code GROUP BY 1 ORDER BY sum(population) DESC, 1",
                {"s": siren},
            ).fetchall()
        )
        return {
            "body_kind": "epci",
            "name": row[0],
            "territory": Territory("dep", deps) if deps else Territory("epci", (siren,)),
            "commune_code": None,
        }
    return None


def set_buyer(
    con: duckdb.DuckDBPyConnection,
    *,
    siret: str,
    territory: Territory | None = None,
    name: str | None = None,
    who: str | None = None,
) -> dict:
    """Store the buyer (settings key 'buyer') and return what was stored.

    ``siret``: the buyer's SIRET or SIREN. Without ``territory``, the territory of a
    recognised public body is proposed (see ``public_body``); otherwise none is stored.
    """
    raw = str(siret or "").strip()
    s14 = clean_siret(raw)
    siren = s14[:9] if s14 else clean_siren(raw)
    if siren is None:
        raise ValueError(f"SIRET/SIREN de l'acheteur invalide « {raw} ».")
    if isinstance(territory, str):
        territory = Territory.parse(territory)
    if territory is not None:
        _check_territory(con, territory)
    body = public_body(con, siren)
    source = "argument"
    if territory is None and body is not None:
        territory, source = body["territory"], "proposé"
    if not name:
        row = con.execute(
            "SELECT denomination FROM sirene_unites WHERE siren = $s ORDER BY import_id DESC LIMIT 1",
            {"s": siren},
        ).fetchone()
        name = (row[0] if row and row[0] else None) or (body["name"] if body else None)
    value = {
        "siret": s14 or siren,
        "siren": siren,
        "name": name,
        "territory": territory.as_dict() if territory else None,
        "territory_source": source if territory else None,
        "body_kind": body["body_kind"] if body else None,
    }
    _put_setting(con, "buyer", value, who)
    out = dict(value)
    out["territory_label"] = territory_label(con, territory) if territory else None
    return out


def get_buyer(con: duckdb.DuckDBPyConnection) -> dict | None:
    row = con.execute("SELECT value FROM settings WHERE key = 'buyer'").fetchone()
    if not row or row[0] is None:
        return None
    value = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    t = value.get("territory")
    value["territory_label"] = territory_label(con, Territory(t["kind"], tuple(t["codes"]))) if t else None
    return value


def _territory_of(value: dict | None) -> Territory | None:
    t = (value or {}).get("territory")
    return Territory(t["kind"], tuple(t["codes"])) if t else None


def default_territory(con: duckdb.DuckDBPyConnection, buyer_siret: str | None = None) -> Territory | None:
    """The configured territory; else that of a buyer recognised as a public body."""
    buyer = get_buyer(con)
    siren = None
    if buyer_siret:
        s14 = clean_siret(buyer_siret)
        siren = s14[:9] if s14 else clean_siren(buyer_siret)
    if buyer and (siren is None or siren == buyer.get("siren")):
        t = _territory_of(buyer)
        if t is not None:
            return t
        siren = siren or buyer.get("siren")
    body = public_body(con, siren)
    return body["territory"] if body else None


def _commune_point(con, code: str | None) -> tuple[float, float] | None:
    if not code:
        return None
    row = con.execute(
        "SELECT c.centroid_lon, c.centroid_lat FROM ref_communes m "
        "JOIN ref_communes c ON c.code_commune = m.current_code WHERE m.code_commune = $c",
        {"c": code},
    ).fetchone()
    if row and row[0] is not None and row[1] is not None:
        return float(row[0]), float(row[1])
    return None


def _territory_point(con, t: Territory | None) -> tuple[float, float] | None:
    if t is None:
        return None
    code = t.codes[0]
    if t.kind == "dep":
        row = con.execute("SELECT chef_lieu FROM ref_departements WHERE code = $c", {"c": code}).fetchone()
    elif t.kind == "reg":
        row = con.execute("SELECT chef_lieu FROM ref_regions WHERE code = $c", {"c": code}).fetchone()
    elif t.kind == "epci":
        row = con.execute(
            "SELECT code_commune FROM ref_communes WHERE epci_siren = $c "
            "AND code_commune = current_code ORDER BY population DESC NULLS LAST LIMIT 1",
            {"c": code},
        ).fetchone()
    else:
        row = (code,)
    return _commune_point(con, row[0] if row else None)


def buyer_point(con: duckdb.DuckDBPyConnection) -> tuple[float, float] | None:
    """Where the buyer is: its SIRENE establishment's commune, else its own commune
    (a commune buyer), else the chef-lieu of its body or territory."""
    _ensure_ref_views(con)
    buyer = get_buyer(con)
    if not buyer:
        return None
    siret = buyer.get("siret") if len(str(buyer.get("siret") or "")) == 14 else None
    if siret:
        row = con.execute(
            "SELECT commune_code FROM sirene_etablissements WHERE siret = $s ORDER BY import_id DESC LIMIT 1",
            {"s": siret},
        ).fetchone()
        pt = _commune_point(con, row[0] if row else None)
        if pt:
            return pt
    body = public_body(con, buyer.get("siren"))
    if body and body["commune_code"]:
        pt = _commune_point(con, body["commune_code"])
        if pt:
            return pt
    if body:
        pt = _territory_point(con, body["territory"])
        if pt:
            return pt
    return _territory_point(con, _territory_of(buyer))


# --- reference lookups for pages ------------------------------------------------------


def departements(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """code, nom, code_region, region_nom, chef_lieu, zone, label ('Nord (59)')."""
    _ensure_ref_views(con)
    return _frame(
        con.execute(
            "SELECT d.code, d.nom, d.code_region, r.nom AS region_nom, d.chef_lieu, d.zone, "
            "d.nom || ' (' || d.code || ')' AS label "
            "FROM ref_departements d LEFT JOIN ref_regions r ON r.code = d.code_region "
            "ORDER BY d.code"
        )
    )


def regions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """code, nom, chef_lieu, zone."""
    _ensure_ref_views(con)
    return _frame(con.execute("SELECT code, nom, chef_lieu, zone FROM ref_regions ORDER BY code"))


def naf_label(con: duckdb.DuckDBPyConnection, code: str | None) -> str | None:
    """Label of a NAF rév. 2 or NAF 2025 sub-class ('62.01Z' or '6201Z')."""
    if not code:
        return None
    _ensure_ref_views(con)
    c = re.sub(r"[\s.]", "", str(code)).upper()
    row = con.execute(
        "SELECT coalesce((SELECT naf_label FROM ref_naf WHERE naf_nodot = $c),"
        " (SELECT niv5_libelle FROM ref_naf2025 WHERE niv5_nodot = $c),"
        " (SELECT division_label FROM ref_naf WHERE left(naf, 2) = $c LIMIT 1),"
        " (SELECT section_label FROM ref_naf WHERE section = $c LIMIT 1))",
        {"c": c},
    ).fetchone()
    return row[0] if row else None


def cpv_division_label(con: duckdb.DuckDBPyConnection, code: str | None) -> str | None:
    """French label of a CPV division ('45' or any CPV code such as '45233140-2')."""
    if not code:
        return None
    _ensure_ref_views(con)
    digits = re.sub(r"\D", "", str(code))[:2]
    if len(digits) < 2:
        return None
    row = con.execute(
        "SELECT libelle_fr FROM ref_cpv_divisions WHERE division = $d", {"d": digits}
    ).fetchone()
    return row[0] if row else None

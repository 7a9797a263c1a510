"""The indicators of ../shared/INDICATORS.md for a period, a buyer scope and filters.

Value indicators (shares of €) rest on one relation of spend per supplier, built once per
call by ``spend_sql``: paid spend from ``mandats`` (basis ``paid``) or notified contract
amounts split 1/n among holders (basis ``notified``), joined to ``supplier_class`` (the
only source of supplier facts). Count rates rest on ``contracts_current``. A figure that
cannot be computed is ``None`` with a French reason in ``reasons``, never 0.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from decimal import Decimal

import duckdb
import pandas as pd

from analytics import aggregates
from analytics.filters import TERRITORY_KINDS, Filters, Territory
from analytics.fmt import fmt_date, fmt_eur, fmt_int, fmt_number, fmt_pct, fmt_points, fmt_value

# _long_df reads a result as Arrow; DuckDB 2.0 warns that it copies the rows (see there).
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)

Con = duckdb.DuckDBPyConnection

UNKNOWN_SUPPLIER = "INCONNU"
SME_CLASSES = ("TPE", "PME")
FTE_HOURS = 1607
ADVANCE_THRESHOLD = 0.30
ENV_2026_START = dt.date(2026, 8, 22)
EARTH_RADIUS_KM = 6371.0
TERRITORY_COLUMNS = ("departement_code", "region_code", "epci_siren", "commune_code")

# Holders are keyed like referential.reclassify keys them (valid SIRET, else NOM:name);
# the referential may publish its own expression (alias h) and then it wins.
DEFAULT_HOLDER_KEY_SQL = "coalesce(h.holder_siret, 'NOM:' || upper(trim(h.holder_name)))"

HEADLINE_KEYS = (
    "total_spend",
    "supplier_count",
    "local_share",
    "unlocated_share",
    "ess_share",
    "inclusive_share",
    "insertion_share",
    "disability_share",
    "sme_share",
    "sme_count_share",
    "new_supplier_share",
    "top10_share",
    "hhi",
    "median_distance_km",
    "contract_count",
    "social_clause_rate",
    "social_clause_rate_value",
    "environmental_clause_rate",
    "environmental_clause_rate_value",
    "reserved_contract_rate",
    "reserved_contract_rate_value",
    "single_offer_rate",
    "innovative_rate",
    "sme_advance_rate",
    "insertion_hours",
    "insertion_fte",
    "payment_delay_days",
    "payment_within_30_share",
    "env_2026_compliance_count",
)

# Value keys follow f.basis; the others always come from their own source.
VALUE_KEYS = (
    "total_spend",
    "supplier_count",
    "local_share",
    "unlocated_share",
    "ess_share",
    "inclusive_share",
    "insertion_share",
    "disability_share",
    "sme_share",
    "sme_count_share",
    "new_supplier_share",
    "top10_share",
    "hhi",
    "median_distance_km",
)


def _d(label, definition, unit, source, delta=None):
    return {
        "label": label,
        "definition": definition,
        "unit": unit,
        "source": source,
        # how a change against the previous period is expressed
        "delta": delta or ("points" if unit in ("share", "index") else "relative"),
    }


_BASIS_NOTE = (
    " Base « payé » (défaut) : montants des mandats (TTC si disponible, sinon HT), avoirs "
    "déduits, période sur la date de paiement. Base « montant notifié » : montants des "
    "contrats notifiés dans la période, partagés à parts égales entre cotitulaires."
)

DEFINITIONS: dict[str, dict] = {
    "total_spend": _d(
        "Dépense totale",
        "Somme des montants payés aux fournisseurs dans la période, avoirs (lignes négatives) déduits."
        + _BASIS_NOTE,
        "eur",
        "mandats",
    ),
    "supplier_count": _d(
        "Nombre de fournisseurs",
        "Fournisseurs distincts (SIRET, à défaut SIREN ou nom normalisé) ayant reçu au moins un "
        "paiement positif dans la période (base montant notifié : titulaires d'au moins un contrat). "
        "Les lignes sans aucune identité de fournisseur ne forment pas un fournisseur." + _BASIS_NOTE,
        "count",
        "mandats",
    ),
    "local_share": _d(
        "Part locale",
        "Dépense auprès de fournisseurs situés dans le territoire de l'acheteur (commune de "
        "l'établissement) / dépense auprès de fournisseurs localisés au niveau du territoire "
        "(département, région, EPCI ou commune). Les fournisseurs non localisés sont hors "
        "dénominateur ; leur part est donnée à côté." + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "unlocated_share": _d(
        "Part non localisée",
        "Dépense auprès de fournisseurs sans localisation connue (ni commune, ni département, ni "
        "région) / dépense totale." + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "ess_share": _d(
        "Part ESS",
        "Dépense auprès de fournisseurs de l'économie sociale et solidaire (SIRENE, forme "
        "juridique ou liste ESS/ESUS) / dépense totale. Fournisseurs au statut inconnu comptés "
        "au dénominateur ; la part de dépense au statut connu est donnée en couverture." + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "inclusive_share": _d(
        "Part inclusive",
        "Dépense auprès de structures inclusives (SIAE : EI, AI, ACI, ETTI, EITI, GEIQ ; "
        "handicap : EA, EATT, ESAT) figurant dans les listes importées / dépense totale." + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "insertion_share": _d(
        "Part insertion (SIAE)",
        "Dépense auprès de structures d'insertion (EI, AI, ACI, ETTI, EITI, GEIQ) / dépense totale."
        + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "disability_share": _d(
        "Part handicap (EA, ESAT)",
        "Dépense auprès d'entreprises adaptées et d'ESAT (EA, EATT, ESAT) / dépense totale." + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "sme_share": _d(
        "Part PME (dont TPE)",
        "Dépense auprès de PME et microentreprises / dépense auprès de fournisseurs de taille "
        "connue (catégorie d'entreprise SIRENE). Taille inconnue hors dénominateur." + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "sme_count_share": _d(
        "Part PME en nombre de fournisseurs",
        "Fournisseurs PME ou TPE / fournisseurs de taille connue, parmi les fournisseurs payés."
        + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "new_supplier_share": _d(
        "Part de nouveaux fournisseurs",
        "Fournisseurs payés dans la période qui n'avaient reçu aucun paiement avant le début de "
        "la période dans la base (pour l'acheteur choisi) / fournisseurs payés. Non calculable "
        "quand la base ne contient rien avant la période." + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "top10_share": _d(
        "Part des 10 premiers fournisseurs",
        "Dépense nette des 10 premiers fournisseurs / dépense nette de tous les fournisseurs au "
        "solde positif (fournisseurs au solde nul ou négatif et lignes sans fournisseur exclus)."
        + _BASIS_NOTE,
        "share",
        "mandats",
    ),
    "hhi": _d(
        "Indice de concentration (HHI)",
        "Somme des carrés des parts de chaque fournisseur dans la dépense nette (parts entre 0 et "
        "1, indice entre 0 et 1 ; multiplier par 10 000 pour l'échelle usuelle), sur les "
        "fournisseurs au solde positif." + _BASIS_NOTE,
        "index",
        "mandats",
    ),
    "median_distance_km": _d(
        "Distance médiane pondérée",
        "Distance à vol d'oiseau entre le point de l'acheteur et le centroïde de la commune de "
        "l'établissement fournisseur, médiane pondérée par la dépense : plus petite distance en "
        "deçà de laquelle se trouve au moins la moitié de la dépense. Lignes positives et "
        "fournisseurs localisés seulement." + _BASIS_NOTE,
        "km",
        "mandats",
    ),
    "contract_count": _d(
        "Contrats notifiés",
        "Contrats notifiés dans la période (date de notification), chaque contrat compté une fois "
        "quelle que soit le nombre de ses publications ou de ses titulaires.",
        "count",
        "contrats",
    ),
    "social_clause_rate": _d(
        "Taux de contrats avec considération sociale",
        "Contrats avec une considération sociale (clause sociale, critère social ou marché "
        "réservé) / contrats notifiés dont les considérations sont connues (les données DECP "
        "antérieures à 2024 ne les renseignent pas : comptées en couverture).",
        "share",
        "contrats",
    ),
    "social_clause_rate_value": _d(
        "Taux de considération sociale (montant notifié)",
        "Montant notifié des contrats avec une considération sociale / montant notifié des "
        "contrats aux considérations connues. Montant notifié : estimation ou plafond, pas un paiement.",
        "share",
        "contrats",
    ),
    "environmental_clause_rate": _d(
        "Taux de contrats avec considération environnementale",
        "Contrats avec une considération environnementale (clause ou critère environnemental) / "
        "contrats notifiés dont les considérations sont connues.",
        "share",
        "contrats",
    ),
    "environmental_clause_rate_value": _d(
        "Taux de considération environnementale (montant notifié)",
        "Montant notifié des contrats avec une considération environnementale / montant notifié "
        "des contrats aux considérations connues.",
        "share",
        "contrats",
    ),
    "reserved_contract_rate": _d(
        "Taux de marchés réservés",
        "Contrats réservés (marché réservé aux structures inclusives) / contrats notifiés dont les "
        "considérations sociales sont connues.",
        "share",
        "contrats",
    ),
    "reserved_contract_rate_value": _d(
        "Taux de marchés réservés (montant notifié)",
        "Montant notifié des marchés réservés / montant notifié des contrats aux considérations "
        "sociales connues.",
        "share",
        "contrats",
    ),
    "single_offer_rate": _d(
        "Taux d'offre unique",
        "Contrats ayant reçu une seule offre / contrats dont le nombre d'offres reçues est connu.",
        "share",
        "contrats",
    ),
    "innovative_rate": _d(
        "Taux de marchés innovants",
        "Contrats déclarés innovants / contrats dont le caractère innovant est renseigné.",
        "share",
        "contrats",
    ),
    "sme_advance_rate": _d(
        "Avance d'au moins 30 % aux PME",
        "Contrats dont un titulaire est une PME (taille SIRENE, à défaut catégorie déclarée dans "
        "les DECP) avec un taux d'avance d'au moins 30 % / contrats de PME au taux d'avance connu.",
        "share",
        "contrats",
    ),
    "insertion_hours": _d(
        "Heures d'insertion réalisées",
        "Somme des heures de travail d'insertion réalisées dans la période (fichier de suivi des "
        "clauses, date de la période déclarée).",
        "hours",
        "suivi insertion",
    ),
    "insertion_fte": _d(
        "Équivalents temps plein d'insertion",
        "Heures d'insertion réalisées / 1 607 heures (durée annuelle légale d'un temps plein).",
        "fte",
        "suivi insertion",
    ),
    "payment_delay_days": _d(
        "Délai de paiement moyen",
        "Moyenne, sur les lignes de paiement (positives) portant la date de réception de la facture "
        "et la date de paiement, du nombre de jours entre les deux.",
        "days",
        "mandats",
    ),
    "payment_within_30_share": _d(
        "Part payée en 30 jours au plus",
        "Lignes de paiement réglées en 30 jours ou moins après réception de la facture / lignes "
        "portant les deux dates.",
        "share",
        "mandats",
    ),
    "env_2026_compliance_count": _d(
        "Contrats sans considération environnementale depuis le 22/08/2026",
        "Contrats notifiés à partir du 22 août 2026 sans aucune considération environnementale. "
        "La loi Climat et résilience vise les procédures lancées à partir de cette date ; les DECP "
        "ne portent pas la date de lancement : la date de notification sert d'approximation "
        "(des procédures lancées avant peuvent y figurer).",
        "count",
        "contrats",
    ),
}


def describe(key: str, basis: str = "paid") -> dict:
    """DEFINITIONS[key] for a basis: value indicators on the notified basis are labelled
    "montant notifié" and sourced from contracts."""
    d = dict(DEFINITIONS[key])
    if basis == "notified" and key in VALUE_KEYS:
        d["label"] = _NOTIFIED_LABELS.get(key, f"{d['label']} (montant notifié)")
        d["source"] = "contrats"
    return d


_NOTIFIED_LABELS = {
    "total_spend": "Montant notifié total",
    "supplier_count": "Nombre de titulaires (contrats notifiés)",
    "new_supplier_share": "Part de nouveaux titulaires (contrats notifiés)",
}


SIZE_LABELS = {"TPE": "Microentreprise", "PME": "PME", "ETI": "ETI", "GE": "Grande entreprise"}

NAF_SECTIONS = {
    "A": "Agriculture, sylviculture et pêche",
    "B": "Industries extractives",
    "C": "Industrie manufacturière",
    "D": "Électricité, gaz, vapeur et air conditionné",
    "E": "Eau, assainissement, déchets et dépollution",
    "F": "Construction",
    "G": "Commerce ; réparation d'automobiles et de motocycles",
    "H": "Transports et entreposage",
    "I": "Hébergement et restauration",
    "J": "Information et communication",
    "K": "Activités financières et d'assurance",
    "L": "Activités immobilières",
    "M": "Activités spécialisées, scientifiques et techniques",
    "N": "Activités de services administratifs et de soutien",
    "O": "Administration publique",
    "P": "Enseignement",
    "Q": "Santé humaine et action sociale",
    "R": "Arts, spectacles et activités récréatives",
    "S": "Autres activités de services",
    "T": "Activités des ménages en tant qu'employeurs",
    "U": "Activités extra-territoriales",
}

# Chapters (2 first digits of the nature/compte) of the M57/M14 instructions.
NATURE_CHAPTERS = {
    "20": "Immobilisations incorporelles (dont subventions d'équipement)",
    "21": "Immobilisations corporelles",
    "23": "Immobilisations en cours (travaux)",
    "60": "Achats et variation des stocks",
    "61": "Services extérieurs",
    "62": "Autres services extérieurs",
    "63": "Impôts, taxes et versements assimilés",
    "64": "Charges de personnel",
    "65": "Autres charges de gestion courante",
    "66": "Charges financières",
    "67": "Charges spécifiques / exceptionnelles",
}

DISTANCE_BINS = ((0, 10), (10, 25), (25, 50), (50, 100), (100, 200), (200, 500), (500, None))

# INSEE catégories juridiques of cooperatives (niveau III).
COOPERATIVE_CJ = (
    "5192 5195 5196 5203 5307 5309 5443 5451 5453 5454 5455 5458 5459 5460 5543 5547 5551 5552 "
    "5553 5554 5555 5558 5559 5560 5643 5647 5651 5652 5653 5654 5655 5658 5659 5660 6316 6317 "
    "6318 6543 6551 6554 6558 6560"
).split()


# ---------------------------------------------------------------------------------------
# Filters -> SQL (written once; every query goes through it)


def _buyer_sql(f: Filters, column: str) -> tuple[str | None, dict]:
    if not f.buyer_siret:
        return None, {}
    buyer = f.buyer_siret.strip()
    if len(buyer) == 9 and buyer.isdigit():  # a SIREN scopes all its establishments
        return f"left({column}, 9) = $buyer", {"buyer": buyer}
    return f"{column} = $buyer", {"buyer": buyer}


def _territory_column(t: Territory) -> str:
    col = t.column
    if col not in TERRITORY_COLUMNS:
        raise ValueError(f"Territoire inconnu : {t}")
    return col


def _territory_sql(f: Filters) -> tuple[str, str, dict]:
    """(is_local, located_at_territory_level) expressions on alias s, and their parameters."""
    if f.territory is None:
        return "NULL::BOOLEAN", "NULL::BOOLEAN", {}
    col = _territory_column(f.territory)
    return (
        f"(s.{col} IS NOT NULL AND list_contains($territory_codes, s.{col}))",
        f"(s.{col} IS NOT NULL)",
        {"territory_codes": list(f.territory.codes)},
    )


CLASS_CONDITIONS = {
    "ess": "s.ess",
    "inclusive": "s.inclusive_family IS NOT NULL",
    "insertion": "s.inclusive_family = 'insertion'",
    "handicap": "s.inclusive_family = 'handicap'",
    "pme": "s.size_class IN ('TPE', 'PME')",
}


def filter_sql(f: Filters, on: str, period: str | None = None) -> tuple[str, dict]:
    """The WHERE conditions (never empty) and their parameters for one source.

    on = 'mandats' (alias m: period on spend_date, buyer, services, nature prefixes, amount
    range per line); 'contracts' (alias c: period on date_notification, buyer, CPV divisions,
    procedures — the count rates); 'contract_values' (the same plus the amount range, for
    the notified basis); 'classes' (alias s = supplier_class: supplier classes, any of them).
    Filters that do not apply to a source (services on contracts, CPV on mandats) are ignored.
    ``period``: the condition on the date instead of the filters' own dates (the caller
    gives its values), for 'mandats' and the contracts.
    """
    conds: list[str] = []
    params: dict = {}

    def add(cond: str | None, p: dict) -> None:
        if cond:
            conds.append(cond)
            params.update(p)

    if on == "mandats":
        add(
            period or "m.spend_date BETWEEN $date_from AND $date_to",
            {} if period else {"date_from": f.date_from, "date_to": f.date_to},
        )
        add(*_buyer_sql(f, "m.buyer_siret"))
        if f.services:
            add("list_contains($services, m.service)", {"services": list(f.services)})
        if f.natures:
            ors = " OR ".join(f"starts_with(m.nature, $nature_{i})" for i in range(len(f.natures)))
            add(f"({ors})", {f"nature_{i}": n.strip() for i, n in enumerate(f.natures)})
        amount_col = "m.amount"
    elif on in ("contracts", "contract_values"):
        add(
            period or "c.date_notification BETWEEN $date_from AND $date_to",
            {} if period else {"date_from": f.date_from, "date_to": f.date_to},
        )
        add(*_buyer_sql(f, "c.buyer_siret"))
        if f.cpv_divisions:
            add("list_contains($cpv_divisions, c.cpv_division)", {"cpv_divisions": list(f.cpv_divisions)})
        if f.procedures:
            add("list_contains($procedures, c.procedure)", {"procedures": list(f.procedures)})
        amount_col = "c.amount" if on == "contract_values" else None
    elif on == "classes":
        ors = []
        for name in f.supplier_classes:
            key = name.strip().lower()
            if key == "local":
                is_local, _, p = _territory_sql(f)
                ors.append(f"coalesce({is_local}, FALSE)")
                params.update(p)
            elif key in CLASS_CONDITIONS:
                ors.append(f"coalesce({CLASS_CONDITIONS[key]}, FALSE)")
            else:
                raise ValueError(
                    f"Classe de fournisseur inconnue « {name} » : ess, inclusive, insertion, "
                    "handicap, pme ou local."
                )
        if ors:
            conds.append("(" + " OR ".join(ors) + ")")
        amount_col = None
    else:
        raise ValueError(f"unknown filter source {on!r}")
    if amount_col and f.amount_min is not None:
        add(f"{amount_col} >= $amount_min", {"amount_min": f.amount_min})
    if amount_col and f.amount_max is not None:
        add(f"{amount_col} <= $amount_max", {"amount_max": f.amount_max})
    return " AND ".join(conds) or "TRUE", params


def _holder_key_sql() -> str:
    try:
        from analytics import referential
    except ImportError:
        return DEFAULT_HOLDER_KEY_SQL
    return getattr(referential, "HOLDER_KEY_SQL", None) or DEFAULT_HOLDER_KEY_SQL


PAID_CATEGORY_SQL = aggregates.CATEGORY_SQL

DIMENSIONS = {
    "paid": {
        "month": "date_trunc('month', m.spend_date)::DATE",
        "year": "year(m.spend_date)",
        "category": PAID_CATEGORY_SQL,
        "service": "m.service",
    },
    "notified": {
        "month": "date_trunc('month', c.date_notification)::DATE",
        "year": "year(c.date_notification)",
        "category": "c.cpv_division",
        "service": "NULL::VARCHAR",
    },
}

PAID_SPEND_SQL = """
SELECT m.supplier_key{dims},
       sum(m.amount) AS net,
       coalesce(sum(m.amount) FILTER (WHERE m.amount > 0), 0) AS pos,
       count(*) AS lines,
       count(*) FILTER (WHERE m.amount_basis = 'TTC') AS lines_ttc,
       bool_or(m.amount > 0) AS active{details}
FROM mandats m
WHERE {where}
GROUP BY ALL
"""

# The same per-supplier facts from mandats_monthly or mandats_yearly (analytics.aggregates),
# for whole months (years) without a line-level filter: equal to PAID_SPEND_SQL (tested),
# on about a third (a tenth) of the rows.
PAID_MONTHLY_SPEND_SQL = """
SELECT m.supplier_key{dims},
       sum(m.net) AS net,
       sum(m.pos) AS pos,
       sum(m.lines)::BIGINT AS lines,
       sum(m.lines_ttc)::BIGINT AS lines_ttc,
       bool_or({active}) AS active{details}
FROM {table} m
WHERE {where}
GROUP BY ALL
"""

MONTHLY_DIMENSIONS = {"month": "m.month", "year": "year(m.month)", "category": "m.category"}

# The same from spend_months or spend_years (one row per period and supplier) when the
# query keeps that period apart: a single month (year), or by month (year). No grouping.
PAID_MERGED_SPEND_SQL = """
SELECT m.supplier_key{dims},
       m.net,
       m.pos,
       m.lines,
       m.lines_ttc,
       m.first_paid IS NOT NULL AS active{details}
FROM {table} m
WHERE {where}
"""

# The detail columns (raw_name, first_date) of each per-supplier template: from the lines,
# from rows already one per supplier (merged sums, or the parts of a split period), from
# sums grouped again per supplier.
_LINE_DETAILS = (
    "min(m.supplier_name) AS raw_name, min(m.spend_date) FILTER (WHERE m.amount > 0) AS first_date"
)
_MERGED_DETAILS = "m.raw_name, m.first_paid AS first_date"
_SUMMED_DETAILS = "min(m.raw_name) AS raw_name, min(m.first_paid) AS first_date"


def _details(cols: str, details: bool) -> str:
    return f",\n       {cols}" if details else ""


def _sums_conditions(f: Filters, supplier_keys: bool) -> tuple[list[str], dict]:
    """The conditions (alias m) the kept sums and the lines share in ``spend_sql``: the
    buyer, and the ``$supplier_keys`` list when asked."""
    buyer, params = _buyer_sql(f, "m.buyer_siret")
    conds = [buyer] if buyer else []
    if supplier_keys:
        conds.append("list_contains($supplier_keys, m.supplier_key)")
    return conds, params


NOTIFIED_SPEND_SQL = """
SELECT coalesce({holder_key}, 'INCONNU') AS supplier_key{dims},
       coalesce(sum(c.amount / coalesce(h.n, 1)), 0) AS net,
       coalesce(sum(c.amount / coalesce(h.n, 1)) FILTER (WHERE c.amount > 0), 0) AS pos,
       count(*) AS lines,
       0 AS lines_ttc,
       bool_or(TRUE) AS active{details}
FROM contracts_current c
LEFT JOIN (
    SELECT *, count(*) OVER (PARTITION BY import_id, seq) AS n FROM contract_holders
) h USING (import_id, seq)
WHERE {where}
GROUP BY ALL
"""

SPEND_SQL = """
SELECT a.*,
       coalesce(s.name, {raw_name}) AS name,
       s.siret, s.identified, s.ess, s.ess_reason, s.inclusive_kind, s.inclusive_family,
       s.size_class, s.categorie_juridique, s.commune_code, s.epci_siren, s.departement_code,
       s.region_code, s.lon, s.lat, s.naf_section, s.naf_label,
       coalesce(s.commune_code IS NOT NULL OR s.departement_code IS NOT NULL
                OR s.region_code IS NOT NULL, FALSE) AS located,
       {terr_known} AS terr_known,
       coalesce({is_local}, FALSE) AS is_local
FROM ({agg}) a
LEFT JOIN supplier_class s ON s.supplier_key = a.supplier_key
WHERE {class_where}
"""


def monthly_ok(f: Filters, dims: tuple[str, ...] = ()) -> bool:
    """Whether mandats_monthly gives this spend exactly: paid basis, whole months, no filter
    on a line's service, nature or amount; dimensions among month, year and category."""
    last = f.date_to + dt.timedelta(days=1)
    return (
        f.basis == "paid"
        and not f.services
        and not f.natures
        and f.amount_min is None
        and f.amount_max is None
        and set(dims) <= set(MONTHLY_DIMENSIONS)
        and f.date_from.day == 1
        and last.day == 1
    )


def yearly_ok(f: Filters, dims: tuple[str, ...] = ()) -> bool:
    """Whether mandats_yearly gives it (``monthly_ok``, whole calendar years, no dimension
    but the year)."""
    return (
        monthly_ok(f, dims)
        and set(dims) <= {"year"}
        and (f.date_from.month, f.date_from.day) == (1, 1)
        and (f.date_to.month, f.date_to.day) == (12, 31)
    )


def sums_source(f: Filters, dims: tuple[str, ...] = ()) -> tuple[str, dict, str, dict]:
    """The kept sums that answer ``f`` when ``monthly_ok(f, dims)``: the table, its
    dimension expressions, the period condition (alias m) and its parameters. Whole years
    read the yearly sums (a quarter of the rows), other periods the monthly ones; without a
    buyer filter or a category, the merged ones (spend_years, spend_months: every import and
    buyer summed), else the per import and buyer ones (mandats_yearly, mandats_monthly)."""
    merged = not f.buyer_siret and "category" not in dims
    if yearly_ok(f, dims):
        return (
            "spend_years" if merged else "mandats_yearly",
            {"year": "m.year::BIGINT"},
            "m.year BETWEEN $year_from AND $year_to",
            {"year_from": f.date_from.year, "year_to": f.date_to.year},
        )
    return (
        "spend_months" if merged else "mandats_monthly",
        MONTHLY_DIMENSIONS,
        "m.month BETWEEN $date_from AND $date_to",
        {"date_from": f.date_from, "date_to": f.date_to},
    )


def months_then_days(f: Filters, dims: tuple[str, ...] = ()) -> tuple[Filters, Filters] | None:
    """For a period from the first of a month to a day before the end of a later month,
    with nothing else that keeps it from the sums (``monthly_ok`` of its whole months): the
    whole months and the days of the last month; else None."""
    first_of_last = f.date_to.replace(day=1)
    if f.date_from.day != 1 or first_of_last <= f.date_from or monthly_ok(f, dims):
        return None
    months = f.with_(date_to=first_of_last - dt.timedelta(days=1))
    if not monthly_ok(months, dims):
        return None
    return months, f.with_(date_from=first_of_last)


def _one_row_per_supplier(f: Filters, dims: tuple[str, ...], table: str) -> bool:
    """Whether ``table`` (sums_source) holds one row per supplier and ``dims``: a merged
    table (one row per period and supplier) read for one of its periods, or by it."""
    if table == "spend_years":
        return "year" in dims or f.date_from.year == f.date_to.year
    if table == "spend_months":
        return "month" in dims or (f.date_from.year, f.date_from.month) == (f.date_to.year, f.date_to.month)
    return False


def _monthly(con: Con) -> bool:
    return aggregates.ready(con)


def spend_sql(
    f: Filters,
    dims: tuple[str, ...] = (),
    details: bool = False,
    supplier_keys: bool = False,
    monthly: bool = False,
) -> tuple[str, dict]:
    """SELECT of spend per supplier (and dims: month, year, category, service) with its class.

    Columns: supplier_key, dims…, net (net amount), pos (positive amount), lines, lines_ttc,
    active (paid: a positive line; notified: holds a contract), name, class columns of
    supplier_class, located, terr_known, is_local; with details, raw_name and first_date
    (first positive line or notification in the period). With ``supplier_keys``, only the
    suppliers of the list parameter ``$supplier_keys`` are read (the caller passes it).
    ``monthly``: mandats_monthly is in step with the lines (``_monthly(con)``); it is read
    when it gives the same answer (``monthly_ok``), or for the whole months of a period
    that ends inside a month, whose last days are read from the lines (``months_then_days``).
    """
    dim_sql = "".join(f", {DIMENSIONS[f.basis][d]} AS {d}" for d in dims)
    if monthly and monthly_ok(f, dims):
        conds, params = _sums_conditions(f, supplier_keys)
        table, dimensions, where, p = sums_source(f, dims)
        params.update(p)
        where = " AND ".join([where, *conds])
        if _one_row_per_supplier(f, dims, table):  # already one row per supplier: no grouping
            template, detail_cols = PAID_MERGED_SPEND_SQL, _MERGED_DETAILS
        else:
            template, detail_cols = PAID_MONTHLY_SPEND_SQL, _SUMMED_DETAILS
        agg = template.format(
            active="m.first_paid IS NOT NULL",
            table=table,
            dims="".join(f", {dimensions[d]} AS {d}" for d in dims),
            where=where,
            details=_details(detail_cols, details),
        )
    elif monthly and (split := months_then_days(f, dims)):
        # a period from the first of a month to a day inside a later month (the year to
        # date of data that stop on the 20th): its whole months from the kept sums, the days
        # of its last month from the lines, added per supplier (tested equal to the lines)
        months, days = split
        conds, params = _sums_conditions(f, supplier_keys)
        table, dimensions, period, p = sums_source(months, dims)
        period, p = _suffixed(period, p, "months")
        params.update(p, days_from=days.date_from, days_to=days.date_to)
        month_where = " AND ".join([period, *conds])
        line_where = " AND ".join(["m.spend_date BETWEEN $days_from AND $days_to", *conds])
        # the whole months' rows (one per supplier, as PAID_MERGED_SPEND_SQL reads them) and
        # the last days' (PAID_SPEND_SQL) carry the same columns: summed again per supplier
        months_sql = PAID_MERGED_SPEND_SQL.format(
            table=table,
            dims="".join(f", {dimensions[d]} AS {d}" for d in dims),
            where=month_where,
            details=_details(_MERGED_DETAILS, details),
        )
        days_sql = PAID_SPEND_SQL.format(
            dims="".join(f", {DIMENSIONS['paid'][d]} AS {d}" for d in dims),
            where=line_where,
            details=_details(_LINE_DETAILS, details),
        )
        agg = PAID_MONTHLY_SPEND_SQL.format(
            active="m.active",
            table=f"({months_sql}UNION ALL BY NAME\n{days_sql})",
            dims="".join(f", m.{d}" for d in dims),
            where="TRUE",
            # the parts name their first positive day first_date
            details=_details("min(m.raw_name) AS raw_name, min(m.first_date) AS first_date", details),
        )
    elif f.basis == "paid":
        where, params = filter_sql(f, "mandats")
        if supplier_keys:
            where += " AND list_contains($supplier_keys, m.supplier_key)"
        agg = PAID_SPEND_SQL.format(
            dims=dim_sql,
            where=where,
            details=_details(_LINE_DETAILS, details),
        )
    else:
        where, params = filter_sql(f, "contract_values")
        if supplier_keys:
            where += f" AND list_contains($supplier_keys, coalesce({_holder_key_sql()}, 'INCONNU'))"
        agg = NOTIFIED_SPEND_SQL.format(
            holder_key=_holder_key_sql(),
            dims=dim_sql,
            where=where,
            details=_details(
                "min(h.holder_name) AS raw_name, min(c.date_notification) AS first_date", details
            ),
        )
    class_where, p = filter_sql(f, "classes")
    params.update(p)
    is_local, terr_known, p = _territory_sql(f)
    params.update(p)
    sql = SPEND_SQL.format(
        agg=agg,
        raw_name="a.raw_name" if details else "NULL::VARCHAR",
        terr_known=terr_known,
        is_local=is_local,
        class_where=class_where,
    )
    return sql, params


def _first_seen_sql(f: Filters, monthly: bool = False) -> tuple[str, dict]:
    """First positive payment (paid) or notification (notified) of each supplier before
    $first_seen_before, in the buyer scope: supplier_key, first_seen. ``monthly``: from
    supplier_first (each buyer × supplier's first positive day gives the same minimum)."""
    if f.basis == "paid" and monthly:
        buyer, params = _buyer_sql(f, "m.buyer_siret")
        sql = f"""
            SELECT m.supplier_key, min(m.first_paid) AS first_seen FROM supplier_first m
            WHERE m.first_paid < $first_seen_before {"AND " + buyer if buyer else ""}
            GROUP BY 1"""
    elif f.basis == "paid":
        buyer, params = _buyer_sql(f, "m.buyer_siret")
        sql = f"""
            SELECT m.supplier_key, min(m.spend_date) AS first_seen FROM mandats m
            WHERE m.spend_date < $first_seen_before AND m.amount > 0 {"AND " + buyer if buyer else ""}
            GROUP BY 1"""
    else:
        buyer, params = _buyer_sql(f, "c.buyer_siret")
        sql = f"""
            SELECT coalesce({_holder_key_sql()}, 'INCONNU') AS supplier_key, min(c.date_notification) AS first_seen
            FROM contracts_current c JOIN contract_holders h USING (import_id, seq)
            WHERE c.date_notification < $first_seen_before {"AND " + buyer if buyer else ""}
            GROUP BY 1"""
    return sql, params


def _history_sql(f: Filters, monthly: bool = False) -> tuple[str, dict]:
    """The first date of any data before the period (None: newness cannot be judged)."""
    if f.basis == "paid" and monthly:
        buyer, params = _buyer_sql(f, "m.buyer_siret")
        sql = (
            "SELECT min(m.first_date) FROM supplier_first m WHERE m.first_date < $date_from "
            f"{'AND ' + buyer if buyer else ''}"
        )
    elif f.basis == "paid":
        buyer, params = _buyer_sql(f, "m.buyer_siret")
        sql = f"SELECT min(m.spend_date) FROM mandats m WHERE m.spend_date < $date_from {'AND ' + buyer if buyer else ''}"
    else:
        buyer, params = _buyer_sql(f, "c.buyer_siret")
        sql = (
            "SELECT min(c.date_notification) FROM contracts_current c "
            f"WHERE c.date_notification < $date_from {'AND ' + buyer if buyer else ''}"
        )
    return sql, {**params, "date_from": f.date_from}


def _suffixed(sql: str, params: dict, suffix: str) -> tuple[str, dict]:
    """Rename every $parameter of a statement piece (two periods in one statement)."""
    if not params:
        return sql, {}
    names = sorted(params, key=len, reverse=True)
    pattern = re.compile(r"\$(" + "|".join(map(re.escape, names)) + r")\b")
    return pattern.sub(lambda m: f"${m.group(1)}_{suffix}", sql), {
        f"{k}_{suffix}": v for k, v in params.items()
    }


def _run(con: Con, sql: str, params: dict):
    """Execute with only the parameters the statement names (DuckDB refuses extra ones)."""
    named = set(re.findall(r"\$(\w+)", sql))
    used = {k: v for k, v in params.items() if k in named}
    return con.execute(sql, used)


def _df(con: Con, sql: str, params: dict) -> pd.DataFrame:
    return _run(con, sql, params).df()


def _long_df(con: Con, sql: str, params: dict) -> pd.DataFrame:
    """``_df`` for a result of many rows (the supplier table: 90,000 rows of 20 columns):
    read as Arrow and converted by pyarrow, which builds the text columns 0.1–0.15 s faster
    than DuckDB's conversion at that size. The dtypes are made those of ``.df()``: dates
    and timestamps as datetime64[us], decimals as float64, booleans and integers with a
    NULL as the nullable "boolean" and "Int64" (…), a NULL list as pd.NA, a text column
    without any value as object."""
    import pyarrow as pa

    # On an execute() result DuckDB 2.0 copies the rows into Arrow (as fast here as a
    # relation's con.sql(), which would refuse a connection with a result still open) and
    # warns about that copy: silenced once, at import.
    table = _run(con, sql, params).to_arrow_table()
    df = table.to_pandas(date_as_object=False)
    for field, column in zip(table.schema, table.columns):
        kind, name = field.type, field.name
        if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
            df[name] = df[name].astype("datetime64[us]")
        elif pa.types.is_decimal(kind):
            df[name] = df[name].astype("float64")
        elif pa.types.is_boolean(kind) and column.null_count:
            df[name] = df[name].astype("boolean")
        elif pa.types.is_integer(kind) and column.null_count:
            df[name] = df[name].astype(
                ("Int" if pa.types.is_signed_integer(kind) else "UInt") + str(kind.bit_width)
            )
        elif pa.types.is_nested(kind) and column.null_count:
            df[name] = df[name].where(df[name].notna(), pd.NA)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            if column.null_count == len(column):
                df[name] = pd.Series([None] * len(column), dtype=object, index=df.index)
    return df


def _row(con: Con, sql: str, params: dict) -> dict:
    cur = _run(con, sql, params)
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    return dict(zip(names, row)) if row else dict.fromkeys(names)


def _num(x):
    if x is None:
        return None
    if isinstance(x, Decimal):
        return float(x)
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _eur(x):
    return None if x is None else round(float(x), 2)


def _ref_names_sql(
    con: Con, view: str, code_cols=("code",), name_cols=("nom", "libelle_fr", "name", "libelle")
) -> str | None:
    """A (code, name) relation over a shipped reference view, or None when absent."""
    cols = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = $v", {"v": view}
        ).fetchall()
    }
    code = next((c for c in code_cols if c in cols), None)
    name = next((c for c in name_cols if c in cols), None)
    if not code or not name:
        return None
    return f"(SELECT {code}::VARCHAR AS code, min({name}) AS name FROM {view} GROUP BY 1)"


# ---------------------------------------------------------------------------------------
# Headline


def _haversine_sql(lon: str, lat: str) -> str:
    return (
        f"2 * {EARTH_RADIUS_KM} * asin(sqrt(pow(sin(radians({lat} - $buyer_lat) / 2), 2) + "
        f"cos(radians($buyer_lat)) * cos(radians({lat})) * pow(sin(radians({lon} - $buyer_lon) / 2), 2)))"
    )


# The value block of one period (CTE names suffixed by {i}): the totals and shares, then
# the ranks, distances and history (fs = first-seen relation), which light blocks skip.
# The totals and shares of a period, over its spend per supplier (spend_sql).
TOTALS_COLUMNS = """count(*) AS supplier_rows,
           sum(lines) AS lines,
           sum(lines_ttc) AS lines_ttc,
           sum(net) AS total,
           sum(pos) AS pos_total,
           count(*) FILTER (WHERE active AND supplier_key <> 'INCONNU') AS suppliers,
           count(*) FILTER (WHERE active AND supplier_key <> 'INCONNU' AND NOT coalesce(identified, FALSE))
               AS unidentified_suppliers,
           sum(net) FILTER (WHERE terr_known) AS territory_located_amount,
           sum(net) FILTER (WHERE is_local) AS local_amount,
           sum(net) FILTER (WHERE NOT located) AS unlocated_amount,
           sum(net) FILTER (WHERE ess) AS ess_amount,
           sum(net) FILTER (WHERE ess IS NOT NULL) AS ess_known_amount,
           sum(net) FILTER (WHERE identified) AS identified_amount,
           sum(net) FILTER (WHERE inclusive_family IS NOT NULL) AS inclusive_amount,
           sum(net) FILTER (WHERE inclusive_family = 'insertion') AS insertion_amount,
           sum(net) FILTER (WHERE inclusive_family = 'handicap') AS disability_amount,
           sum(net) FILTER (WHERE size_class IN ('TPE', 'PME')) AS sme_amount,
           sum(net) FILTER (WHERE size_class IS NOT NULL) AS size_known_amount,
           count(*) FILTER (WHERE active AND supplier_key <> 'INCONNU' AND size_class IN ('TPE', 'PME'))
               AS sme_suppliers,
           count(*) FILTER (WHERE active AND supplier_key <> 'INCONNU' AND size_class IS NOT NULL)
               AS size_known_suppliers"""

TOTALS_BLOCK = (
    """
ps{i} AS {materialized} ({ps}),
t{i} AS (
    SELECT """
    + TOTALS_COLUMNS
    + """
    FROM ps{i}
)"""
)

RANKS_BLOCK = """,
kc{i} AS (
    SELECT count(*) AS conc_suppliers,
           sum(net) AS conc_total,
           sum(net) FILTER (WHERE rn <= 10) AS top10_amount,
           sum(pow(net::DOUBLE, 2)) AS conc_sum_sq
    FROM (
        SELECT net, row_number() OVER (ORDER BY net DESC, supplier_key) AS rn
        FROM ps{i} WHERE net > 0 AND supplier_key <> 'INCONNU'
    )
),
dm{i} AS ({distance}),
nw{i} AS (
    SELECT ({history}) AS history_from,
           count(*) FILTER (WHERE ps.active AND ps.supplier_key <> 'INCONNU'
                            AND coalesce(fs.first_seen >= $date_from, TRUE)) AS new_suppliers
    FROM ps{i} ps LEFT JOIN fs USING (supplier_key)
)"""

DISTANCE_SQL = """
SELECT min(km) FILTER (WHERE cw >= tot / 2) AS median_km, max(tot) AS distance_amount
FROM (
    SELECT km, sum(w) OVER (ORDER BY km ROWS UNBOUNDED PRECEDING) AS cw, sum(w) OVER () AS tot
    FROM (SELECT pos AS w, {haversine} AS km FROM ps{i} WHERE pos > 0 AND lon IS NOT NULL AND lat IS NOT NULL)
)"""

NO_DISTANCE_SQL = """
SELECT NULL::DOUBLE AS median_km,
       (SELECT sum(pos) FROM ps{i} WHERE pos > 0 AND lon IS NOT NULL AND lat IS NOT NULL) AS distance_amount"""


VALUES_BLOCK = TOTALS_BLOCK + RANKS_BLOCK

# Light blocks (trends, SPASER tables): the supplier ranks, distances and history are not
# computed; the keys they give are None in the result (LIGHT_SKIPPED). Their ps{i} has one
# reader, so it is not materialized: DuckDB then reads only the class columns the totals
# use (ten yearly blocks on ten years of 1M lines: 0.65 -> 0.50 s).
LIGHT_SKIPPED_SQL = """
kc{i} AS (SELECT NULL::BIGINT AS conc_suppliers, NULL::DECIMAL(38, 2) AS conc_total,
                 NULL::DECIMAL(38, 2) AS top10_amount, NULL::DOUBLE AS conc_sum_sq),
dm{i} AS (SELECT NULL::DOUBLE AS median_km, NULL::DECIMAL(38, 2) AS distance_amount),
nw{i} AS (SELECT NULL::DATE AS history_from, NULL::BIGINT AS new_suppliers)"""
LIGHT_BLOCK = TOTALS_BLOCK + "," + LIGHT_SKIPPED_SQL

# The light facts of whole calendar years with the same other filters, in one pass: the
# spend per supplier and year (spend_sql by year), its totals per year. One join to the
# classes for all the years instead of one per year (ten years of 1M lines: about 0.5 ->
# 0.3 s; no grouping per supplier either when the merged yearly sums answer).
LIGHT_BY_YEAR_SQL = (
    "WITH ps AS ({ps}),"
    + LIGHT_SKIPPED_SQL.format(i="")
    + """
SELECT t.*, kc.*, dm.*, nw.*
FROM (SELECT year AS period_index, """
    + TOTALS_COLUMNS.replace("{", "{{").replace("}", "}}")
    + """
      FROM ps GROUP BY year) t, kc, dm, nw"""
)

LIGHT_SKIPPED = ("new_supplier_share", "top10_share", "hhi", "median_distance_km")


def _value_rows(con: Con, periods: list[Filters], point, light: bool = False) -> list[dict]:
    """The value facts of several periods (same basis and buyer) in one statement.

    The first-seen relation (the costly scan of the history) is computed once for all
    of them: a period and its previous year share it. ``light``: the totals and shares
    only (LIGHT_BLOCK).
    """
    monthly = _monthly(con)
    if light and monthly and len(periods) > 1 and _whole_years_alike(periods):
        return _light_by_year(con, periods, point)
    return _value_blocks(con, periods, point, light, monthly)


def _value_blocks(con: Con, periods: list[Filters], point, light: bool, monthly: bool) -> list[dict]:
    """``_value_rows`` with one block of CTEs per period."""
    head, params = "WITH ", {}
    if not light:
        fs, params = _first_seen_sql(periods[0], monthly)
        params["first_seen_before"] = max(f.date_from for f in periods)
        head = f"WITH fs AS MATERIALIZED ({fs}),"
    blocks, selects = [], []
    for i, f in enumerate(periods):
        ps, p = spend_sql(f, monthly=monthly)
        if light:
            block = LIGHT_BLOCK.format(i=i, ps=ps, materialized="NOT MATERIALIZED")
        else:
            history, hp = _history_sql(f, monthly)
            p.update(hp)
            if point is not None:
                distance = DISTANCE_SQL.format(i=i, haversine=_haversine_sql("lon", "lat"))
            else:
                distance = NO_DISTANCE_SQL.format(i=i)
            block = VALUES_BLOCK.format(
                i=i, ps=ps, materialized="MATERIALIZED", distance=distance, history=history
            )
        block, p = _suffixed(block, p, f"p{i}")
        blocks.append(block)
        params.update(p)
        selects.append(f"SELECT {i} AS period_index, * FROM t{i}, kc{i}, dm{i}, nw{i}")
    if point is not None and not light:
        params.update(buyer_lon=point[0], buyer_lat=point[1])
    sql = head + ",".join(blocks) + "\n" + "\nUNION ALL\n".join(selects)
    cur = _run(con, sql, params)
    names = [d[0] for d in cur.description]
    rows = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    return [rows[i] for i in range(len(periods))]


def _without_dates(f: Filters) -> Filters:
    """``f`` with fixed dates: equal for periods that differ only by their dates."""
    return f.with_(date_from=dt.date(2000, 1, 1), date_to=dt.date(2000, 1, 1))


def _whole_years_alike(periods: list[Filters]) -> bool:
    """Whether every period is a whole calendar year the yearly sums answer, the other
    filters all the same."""
    return len({_without_dates(f) for f in periods}) == 1 and all(
        yearly_ok(f, ("year",)) and f.date_from.year == f.date_to.year for f in periods
    )


def _light_by_year(con: Con, periods: list[Filters], point) -> list[dict]:
    """``_value_rows(light=True)`` of whole calendar years alike (``_whole_years_alike``)
    in one statement (LIGHT_BY_YEAR_SQL); a year without any spend takes the block path,
    which gives its empty totals."""
    years = sorted({f.date_from.year for f in periods})
    span = periods[0].with_(date_from=dt.date(years[0], 1, 1), date_to=dt.date(years[-1], 12, 31))
    ps, params = spend_sql(span, dims=("year",), monthly=True)
    cur = _run(con, LIGHT_BY_YEAR_SQL.format(ps=ps), params)
    names = [d[0] for d in cur.description]
    by_year = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    missing = [f for f in periods if f.date_from.year not in by_year]
    if missing:
        for f, row in zip(missing, _value_blocks(con, missing, point, light=True, monthly=True)):
            by_year[f.date_from.year] = row
    return [by_year[f.date_from.year] for f in periods]


CONTRACT_RATES_COLUMNS = """count(*) AS contracts,
       count(*) FILTER (WHERE has_social IS NOT NULL) AS social_known,
       count(*) FILTER (WHERE has_social) AS social,
       sum(amount) FILTER (WHERE has_social IS NOT NULL) AS social_known_amount,
       count(amount) FILTER (WHERE has_social IS NOT NULL) AS social_known_with_amount,
       sum(amount) FILTER (WHERE has_social) AS social_amount,
       count(*) FILTER (WHERE has_environmental IS NOT NULL) AS env_known,
       count(*) FILTER (WHERE has_environmental) AS env,
       sum(amount) FILTER (WHERE has_environmental IS NOT NULL) AS env_known_amount,
       count(amount) FILTER (WHERE has_environmental IS NOT NULL) AS env_known_with_amount,
       sum(amount) FILTER (WHERE has_environmental) AS env_amount,
       count(*) FILTER (WHERE is_reserved IS NOT NULL) AS reserved_known,
       count(*) FILTER (WHERE is_reserved) AS reserved,
       sum(amount) FILTER (WHERE is_reserved IS NOT NULL) AS reserved_known_amount,
       count(amount) FILTER (WHERE is_reserved IS NOT NULL) AS reserved_known_with_amount,
       sum(amount) FILTER (WHERE is_reserved) AS reserved_amount,
       count(offers_received) AS offers_known,
       count(*) FILTER (WHERE offers_received = 1) AS single_offer,
       count(innovative) AS innovative_known,
       count(*) FILTER (WHERE innovative) AS innovative,
       count(*) FILTER (WHERE date_notification >= $env_start) AS env2026_contracts,
       count(*) FILTER (WHERE date_notification >= $env_start AND has_environmental IS NOT NULL)
           AS env2026_known,
       count(*) FILTER (WHERE date_notification >= $env_start AND NOT has_environmental) AS env2026_missing"""

CONTRACT_RATES_SQL = f"""
SELECT {CONTRACT_RATES_COLUMNS}
FROM contracts_current c
WHERE {{where}}
"""

SME_CTE = """
sme AS (
    SELECT DISTINCT h.import_id, h.seq
    FROM contract_holders h SEMI JOIN c USING (import_id, seq)
    LEFT JOIN supplier_class s ON s.supplier_key = {holder_key}
    WHERE coalesce(s.size_class IN ('TPE', 'PME'), upper(trim(h.categorie)) IN ('PME', 'TPE'), FALSE)
)"""

SME_COLUMNS = """count(*) AS sme_contracts,
       count(c.advance_rate) AS sme_advance_known,
       count(*) FILTER (WHERE c.advance_rate >= $advance_threshold) AS sme_advance"""

SME_CONTRACTS_SQL = f"""
WITH c AS (SELECT * FROM contracts_current c WHERE {{where}}),{SME_CTE}
SELECT {SME_COLUMNS}
FROM c JOIN sme USING (import_id, seq)
"""

# The same facts for periods that differ only by their dates, in one statement:
# contracts_current (a window over every version of every contract) is computed once
# instead of twice per period. A ten-year trend with 5,000 contracts a year spent 0.8 s in
# the twenty per-period statements.
_PERIODS_CTE = (
    "p AS (SELECT unnest($p_index) AS period_index, unnest($p_from) AS p_from, unnest($p_to) AS p_to)"
)
CONTRACT_FACTS_SQL = f"""
WITH {_PERIODS_CTE},
c AS MATERIALIZED (SELECT p.period_index, c.* FROM p JOIN contracts_current c ON {{where}}),{SME_CTE},
r AS (SELECT period_index, {CONTRACT_RATES_COLUMNS} FROM c GROUP BY period_index),
s AS (SELECT c.period_index, {SME_COLUMNS} FROM c JOIN sme USING (import_id, seq) GROUP BY c.period_index)
SELECT p.period_index, r.period_index IS NOT NULL AS has_rates, s.period_index IS NOT NULL AS has_sme,
       r.* EXCLUDE (period_index), s.* EXCLUDE (period_index)
FROM p LEFT JOIN r ON r.period_index = p.period_index LEFT JOIN s ON s.period_index = p.period_index
"""

PAYMENT_SQL = """
SELECT count(*) AS payment_lines,
       count(*) FILTER (WHERE m.invoice_date IS NOT NULL AND m.payment_date IS NOT NULL) AS dated_lines,
       avg(date_diff('day', m.invoice_date, m.payment_date)) AS mean_days,
       count(*) FILTER (WHERE date_diff('day', m.invoice_date, m.payment_date) <= 30) AS within_30
FROM mandats m {class_join}
WHERE {where}
"""

PAYMENT_MONTHS_SQL = """
SELECT date_trunc('month', m.spend_date)::DATE AS month,
       avg(date_diff('day', m.invoice_date, m.payment_date)) AS mean_days,
       (count(*) FILTER (WHERE date_diff('day', m.invoice_date, m.payment_date) <= 30) / count(*))::DOUBLE
           AS share_30,
       count(*) AS lines
FROM mandats m {class_join}
WHERE {where} AND m.invoice_date IS NOT NULL AND m.payment_date IS NOT NULL
GROUP BY 1 ORDER BY 1
"""

INSERTION_SQL = """
SELECT count(*) AS rows, sum(hours) AS hours, count(DISTINCT contract_id) AS contracts
FROM insertion_hours WHERE period_date BETWEEN $date_from AND $date_to
"""


def _payment_sql(f: Filters, template: str = PAYMENT_SQL) -> tuple[str, dict]:
    """Positive mandat lines (payments) of the period, whatever the basis of value indicators."""
    where, params = filter_sql(f, "mandats")
    where += " AND m.amount > 0"
    class_where, p = filter_sql(f, "classes")
    class_join = ""
    if f.supplier_classes:
        params.update(p)
        params.update(_territory_sql(f)[2])
        class_join = "LEFT JOIN supplier_class s ON s.supplier_key = m.supplier_key"
        where = f"{where} AND {class_where}"
    return template.format(class_join=class_join, where=where), params


def _buyer_point(con: Con):
    try:
        from analytics import referential
    except ImportError:
        return None
    fn = getattr(referential, "buyer_point", None)
    if fn is None:
        return None
    try:
        point = fn(con)
    except Exception:  # a missing setting or reference view must not break the headline
        return None
    if not point or point[0] is None or point[1] is None:
        return None
    return float(point[0]), float(point[1])


class _Out:
    """Collects values, coverage and reasons; a share with a zero denominator is None."""

    def __init__(self) -> None:
        self.values: dict = {}
        self.coverage: dict = {}
        self.reasons: dict = {}

    def set(self, key: str, value, reason: str | None = None, coverage: dict | None = None) -> None:
        self.values[key] = value
        if value is None:
            self.reasons[key] = reason or "Donnée non disponible."
        if coverage is not None:
            self.coverage[key] = {k: _num(v) for k, v in coverage.items()}

    def share(self, key: str, num, den, reason: str, coverage: dict | None = None) -> None:
        num, den = _num(num), _num(den)
        if den is None or den <= 0:
            self.set(key, None, reason, coverage)
        else:
            self.set(key, float(num or 0) / float(den), None, coverage)


def _set_value_keys(out: _Out, f: Filters, v: dict, buyer_point) -> None:
    basis = f.basis
    no_rows = (
        "Aucun mandat dans la période et le périmètre choisis : rien à mesurer."
        if basis == "paid"
        else "Aucun contrat notifié dans la période et le périmètre choisis (base montant notifié)."
    )
    has_rows = (v["supplier_rows"] or 0) > 0
    total = _num(v["total"])
    if not has_rows:
        for key in VALUE_KEYS:
            out.set(key, None, no_rows)
        return
    cov_total = {"basis": basis, "lines": v["lines"]}
    if basis == "paid":
        cov_total.update(lines_ttc=v["lines_ttc"], lines_ht=v["lines"] - v["lines_ttc"])
    out.set("total_spend", _eur(total), coverage=cov_total)
    out.set(
        "supplier_count",
        int(v["suppliers"]),
        coverage={"unidentified_suppliers": v["unidentified_suppliers"]},
    )
    zero_total = "Dépense nette nulle ou négative dans la période : part non calculable."
    located = _num(v["territory_located_amount"])
    if f.territory is None:
        out.set(
            "local_share",
            None,
            "Territoire de l'acheteur non configuré : configurez l'acheteur ou donnez un territoire.",
        )
    else:
        out.share(
            "local_share",
            v["local_amount"],
            located,
            "Aucune dépense auprès de fournisseurs localisés : part locale non calculable "
            "(importez un extrait SIRENE).",
            {
                "territory": str(f.territory),
                "local_amount": _eur(v["local_amount"] or 0),
                "located_amount": _eur(located or 0),
                "total_amount": _eur(total),
                "unlocated_amount": _eur((total or 0) - (located or 0)),
                "located_fraction": (located or 0) / total if total and total > 0 else None,
            },
        )
    out.share(
        "unlocated_share",
        v["unlocated_amount"],
        total,
        zero_total,
        {"unlocated_amount": _eur(v["unlocated_amount"] or 0), "total_amount": _eur(total)},
    )
    out.share(
        "ess_share",
        v["ess_amount"],
        total,
        zero_total,
        {"known_amount": _eur(v["ess_known_amount"] or 0), "total_amount": _eur(total)},
    )
    cov_incl = {"identified_amount": _eur(v["identified_amount"] or 0), "total_amount": _eur(total)}
    out.share("inclusive_share", v["inclusive_amount"], total, zero_total, cov_incl)
    out.share("insertion_share", v["insertion_amount"], total, zero_total, cov_incl)
    out.share("disability_share", v["disability_amount"], total, zero_total, cov_incl)
    out.share(
        "sme_share",
        v["sme_amount"],
        v["size_known_amount"],
        "Taille d'entreprise inconnue pour toute la dépense : importez un extrait SIRENE.",
        {"known_amount": _eur(v["size_known_amount"] or 0), "total_amount": _eur(total)},
    )
    out.share(
        "sme_count_share",
        v["sme_suppliers"],
        v["size_known_suppliers"],
        "Taille d'entreprise inconnue pour tous les fournisseurs : importez un extrait SIRENE.",
        {"known_suppliers": v["size_known_suppliers"], "suppliers": v["suppliers"]},
    )
    if v["history_from"] is None:
        out.set(
            "new_supplier_share",
            None,
            "La base ne contient aucune donnée antérieure au "
            f"{fmt_date(f.date_from)} : impossible de distinguer les nouveaux fournisseurs.",
            {"suppliers": v["suppliers"]},
        )
    else:
        out.share(
            "new_supplier_share",
            v["new_suppliers"],
            v["suppliers"],
            "Aucun fournisseur payé dans la période.",
            {
                "suppliers": v["suppliers"],
                "new_suppliers": v["new_suppliers"],
                "history_from": v["history_from"].isoformat() if v["history_from"] else None,
            },
        )
    cov_conc = {
        "suppliers": v["conc_suppliers"],
        "amount": _eur(v["conc_total"] or 0),
        "excluded_suppliers": (v["suppliers"] or 0) - (v["conc_suppliers"] or 0),
    }
    no_conc = "Aucun fournisseur au solde positif : concentration non calculable."
    out.share("top10_share", v["top10_amount"], v["conc_total"], no_conc, cov_conc)
    conc_total = _num(v["conc_total"])
    if conc_total and conc_total > 0:
        out.set("hhi", float(v["conc_sum_sq"]) / conc_total**2, coverage=cov_conc)
    else:
        out.set("hhi", None, no_conc, cov_conc)
    cov_dist = {"weighted_amount": _eur(v["distance_amount"] or 0), "positive_amount": _eur(v["pos_total"])}
    if buyer_point is None:
        out.set(
            "median_distance_km",
            None,
            "Position de l'acheteur inconnue : configurez l'acheteur (SIRET ou commune).",
            cov_dist,
        )
    elif v["median_km"] is None:
        out.set(
            "median_distance_km",
            None,
            "Aucune dépense positive auprès de fournisseurs localisés à la commune.",
            cov_dist,
        )
    else:
        cov_dist["buyer_lon"], cov_dist["buyer_lat"] = buyer_point
        out.set("median_distance_km", round(float(v["median_km"]), 3), coverage=cov_dist)


def _set_contract_keys(out: _Out, f: Filters, c: dict, sme: dict) -> None:
    n = c["contracts"] or 0
    none = "Aucun contrat notifié dans la période et le périmètre choisis (importez les DECP)."
    if n == 0:
        for key in (
            "contract_count",
            "social_clause_rate",
            "social_clause_rate_value",
            "environmental_clause_rate",
            "environmental_clause_rate_value",
            "reserved_contract_rate",
            "reserved_contract_rate_value",
            "single_offer_rate",
            "innovative_rate",
            "sme_advance_rate",
        ):
            out.set(key, None, none)
    else:
        out.set("contract_count", int(n), coverage={"contracts": n})
        unknown = (
            "Considérations {} inconnues pour tous les contrats de la période (DECP antérieures à 2024)."
        )
        no_value = "Montant notifié inconnu ou nul pour les contrats aux considérations {} connues."
        for key, prefix, word in (
            ("social_clause_rate", "social", "sociales"),
            ("environmental_clause_rate", "env", "environnementales"),
            ("reserved_contract_rate", "reserved", "sociales"),
        ):
            known = c[f"{prefix}_known"]
            out.share(
                key,
                c[prefix],
                known,
                unknown.format(word),
                {"contracts": n, "known": known, "unknown": n - known},
            )
            out.share(
                f"{key}_value",
                c[f"{prefix}_amount"],
                c[f"{prefix}_known_amount"],
                no_value.format(word),
                {
                    "basis": "montant notifié",
                    "known_amount": _eur(c[f"{prefix}_known_amount"] or 0),
                    "contracts_with_amount": c[f"{prefix}_known_with_amount"],
                    "contracts": n,
                },
            )
        out.share(
            "single_offer_rate",
            c["single_offer"],
            c["offers_known"],
            "Nombre d'offres reçues inconnu pour tous les contrats de la période.",
            {"contracts": n, "known": c["offers_known"]},
        )
        out.share(
            "innovative_rate",
            c["innovative"],
            c["innovative_known"],
            "Caractère innovant non renseigné pour tous les contrats de la période.",
            {"contracts": n, "known": c["innovative_known"]},
        )
        out.share(
            "sme_advance_rate",
            sme["sme_advance"],
            sme["sme_advance_known"],
            "Aucun contrat de PME au taux d'avance connu dans la période.",
            {"sme_contracts": sme["sme_contracts"], "with_advance": sme["sme_advance_known"]},
        )
    cov_env = {
        "from": ENV_2026_START.isoformat(),
        "contracts": c["env2026_contracts"] or 0,
        "known": c["env2026_known"] or 0,
        "unknown": (c["env2026_contracts"] or 0) - (c["env2026_known"] or 0),
    }
    if f.date_to < ENV_2026_START:
        out.set(
            "env_2026_compliance_count",
            None,
            "La période s'achève avant le 22/08/2026, date d'application de l'obligation de "
            "considération environnementale (loi Climat et résilience).",
        )
    elif not c["env2026_known"]:
        out.set(
            "env_2026_compliance_count",
            None,
            "Aucun contrat notifié depuis le 22/08/2026 dans la période, aux considérations connues.",
            cov_env,
        )
    else:
        out.set("env_2026_compliance_count", int(c["env2026_missing"]), coverage=cov_env)


def headline(con: Con, f: Filters) -> dict:
    """Every headline key (number or None), plus ``coverage``, ``reasons``, ``basis``, ``period``."""
    point = _buyer_point(con)
    return _headline(con, f, _value_rows(con, [f], point)[0], point)


def headlines(con: Con, periods: list[Filters] | tuple[Filters, ...], light: bool = False) -> list[dict]:
    """``headline`` of several periods, the same dicts, for the cost of far fewer scans.

    Periods with the same basis and buyer share one statement for their value facts, so
    the history scan behind the new-supplier count (the costliest part on a database of
    many years) runs once for all of them instead of once per period. A yearly trend or a
    SPASER trajectory asks for every year at once.

    ``light``: every key except LIGHT_SKIPPED (the new-supplier share, concentration and
    median distance, which rank or place every supplier), which are None with a reason:
    about twice as fast, for trends and SPASER tables that do not show them.
    """
    periods = list(periods)
    if not periods:
        return []
    point = _buyer_point(con)
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(periods):
        groups.setdefault((f.basis, f.buyer_siret), []).append(i)
    values: list[dict | None] = [None] * len(periods)
    for idx in groups.values():
        for i, row in zip(idx, _value_rows(con, [periods[i] for i in idx], point, light)):
            values[i] = row
    facts = _contract_facts(con, periods)
    out = [_headline(con, f, v, point, c) for f, v, c in zip(periods, values, facts)]
    if light:
        for h in out:
            for k in LIGHT_SKIPPED:
                h[k] = None
                h["reasons"][k] = "Non calculé pour une série d'années (voir la période seule)."
                h["coverage"].pop(k, None)
    return out


def _contract_facts(con: Con, periods: list[Filters]) -> list[tuple[dict, dict]]:
    """(clause rates, SME contracts) of each period, one statement per group of periods
    that differ only by their dates (CONTRACT_FACTS_SQL); a period without contracts gets
    what CONTRACT_RATES_SQL and SME_CONTRACTS_SQL give over none (counts 0, sums NULL)."""
    constants = {"env_start": ENV_2026_START, "advance_threshold": ADVANCE_THRESHOLD}
    holder_key = _holder_key_sql()
    out: list[tuple[dict, dict] | None] = [None] * len(periods)
    groups: dict[Filters, list[int]] = {}
    for i, f in enumerate(periods):
        groups.setdefault(_without_dates(f), []).append(i)
    empty: dict[str, dict] = {}

    def none_of(kind: str) -> dict:
        if kind not in empty:
            sql = CONTRACT_RATES_SQL if kind == "rates" else SME_CONTRACTS_SQL
            empty[kind] = _row(con, sql.format(where="FALSE", holder_key=holder_key), constants)
        return empty[kind]

    for idx in groups.values():
        where, params = filter_sql(
            periods[idx[0]], "contracts", period="c.date_notification BETWEEN p.p_from AND p.p_to"
        )
        params.update(
            constants,
            p_index=list(idx),
            p_from=[periods[i].date_from for i in idx],
            p_to=[periods[i].date_to for i in idx],
        )
        cur = _run(con, CONTRACT_FACTS_SQL.format(where=where, holder_key=holder_key), params)
        names = [d[0] for d in cur.description]
        sme_names = ("sme_contracts", "sme_advance_known", "sme_advance")
        for row in cur.fetchall():
            d = dict(zip(names, row))
            rates = {k: v for k, v in d.items() if k not in sme_names and k not in names[:3]}
            sme = {k: d[k] for k in sme_names}
            out[int(d["period_index"])] = (
                rates if d["has_rates"] else none_of("rates"),
                sme if d["has_sme"] else none_of("sme"),
            )
    return out


def _headline(con: Con, f: Filters, values: dict, point, contracts: tuple[dict, dict] | None = None) -> dict:
    out = _Out()
    _set_value_keys(out, f, values, point)

    rates, sme = contracts if contracts is not None else _contract_facts(con, [f])[0]
    _set_contract_keys(out, f, rates, sme)

    ins = _row(con, INSERTION_SQL, {"date_from": f.date_from, "date_to": f.date_to})
    if not ins["rows"]:
        reason = "Aucun suivi des heures d'insertion importé pour la période."
        out.set("insertion_hours", None, reason)
        out.set("insertion_fte", None, reason)
    else:
        cov = {"rows": ins["rows"], "contracts": ins["contracts"], "hours_per_fte": FTE_HOURS}
        out.set("insertion_hours", float(ins["hours"]), coverage=cov)
        out.set("insertion_fte", float(ins["hours"]) / FTE_HOURS, coverage=cov)

    pay = _row(con, *_payment_sql(f))
    cov = {"lines_with_dates": pay["dated_lines"], "payment_lines": pay["payment_lines"]}
    if not pay["dated_lines"]:
        reason = (
            "Aucune ligne de paiement de la période ne porte à la fois la date de réception de "
            "la facture et la date de paiement."
        )
        out.set("payment_delay_days", None, reason, cov)
        out.set("payment_within_30_share", None, reason, cov)
    else:
        out.set("payment_delay_days", float(pay["mean_days"]), coverage=cov)
        out.share("payment_within_30_share", pay["within_30"], pay["dated_lines"], "", cov)

    result = {key: out.values.get(key) for key in HEADLINE_KEYS}
    result.update(basis=f.basis, period=f.period_dict(), coverage=out.coverage, reasons=out.reasons)
    return result


def _delta(key: str, current, previous):
    if current is None or previous is None:
        return None
    if DEFINITIONS[key]["delta"] == "points":
        return float(current) - float(previous)
    if previous == 0:
        return None
    return (float(current) - float(previous)) / abs(float(previous))


def headline_with_previous(con: Con, f: Filters) -> dict:
    """{'current', 'previous' (same period one year earlier), 'delta'}.

    delta: shares and the HHI as a difference of fractions (points); amounts, counts, days,
    km, hours as a relative change (0.1 = +10 %), None when the previous value is 0 or None.
    """
    prev_f = f.previous_year()
    point = _buyer_point(con)
    values = _value_rows(con, [f, prev_f], point)
    facts = _contract_facts(con, [f, prev_f])
    current = _headline(con, f, values[0], point, facts[0])
    previous = _headline(con, prev_f, values[1], point, facts[1])
    delta = {k: _delta(k, current[k], previous[k]) for k in HEADLINE_KEYS}
    return {"current": current, "previous": previous, "delta": delta}


# ---------------------------------------------------------------------------------------
# Breakdowns (DataFrames)

PLACE_LEVELS = {
    "departement": ("departement_code", "ref_departements", ("code",)),
    "region": ("region_code", "ref_regions", ("code",)),
    "epci": ("epci_siren", "ref_epci", ("siren_epci", "siren", "code")),
    "commune": ("commune_code", "ref_communes", ("code_commune", "code")),
}


def _spend_by_place(con: Con, f: Filters, level: str) -> pd.DataFrame:
    col, view, code_cols = PLACE_LEVELS[level]
    ref = _ref_names_sql(con, view, code_cols)
    name = "r.name" if ref else "NULL::VARCHAR"
    join = f"LEFT JOIN {ref} r ON r.code = g.code" if ref else ""
    ps, params = spend_sql(f, monthly=_monthly(con))
    sql = f"""
        WITH ps AS MATERIALIZED ({ps})
        SELECT g.code,
               CASE WHEN g.code IS NULL THEN 'Non localisé' ELSE {name} END AS name,
               g.amount::DOUBLE AS amount,
               (g.amount / nullif((SELECT sum(net) FROM ps), 0))::DOUBLE AS share,
               g.suppliers
        FROM (
            SELECT {col} AS code, sum(net) AS amount,
                   count(*) FILTER (WHERE active AND supplier_key <> 'INCONNU') AS suppliers
            FROM ps GROUP BY 1
        ) g {join}
        ORDER BY g.code IS NULL, g.amount DESC, g.code"""
    return _df(con, sql, params)


def spend_by_departement(con: Con, f: Filters) -> pd.DataFrame:
    """code, name, amount, share (of total spend), suppliers; unlocated spend as code None."""
    return _spend_by_place(con, f, "departement")


def spend_by_region(con: Con, f: Filters) -> pd.DataFrame:
    """code, name, amount, share (of total spend), suppliers; unlocated spend as code None."""
    return _spend_by_place(con, f, "region")


def spend_by_epci(con: Con, f: Filters) -> pd.DataFrame:
    """code (SIREN of the EPCI), name, amount, share, suppliers; unlocated as code None."""
    return _spend_by_place(con, f, "epci")


def spend_by_commune(con: Con, f: Filters) -> pd.DataFrame:
    """code (INSEE), name, amount, share, suppliers; unlocated spend as code None."""
    return _spend_by_place(con, f, "commune")


def _group(
    con: Con, f: Filters, key_sql: str, *, where: str = "TRUE", dims=(), extra: str = ""
) -> pd.DataFrame:
    ps, params = spend_sql(f, dims=dims, monthly=_monthly(con))
    sql = f"""
        WITH ps AS MATERIALIZED ({ps})
        SELECT {key_sql} AS code, sum(net)::DOUBLE AS amount,
               (sum(net) / nullif((SELECT sum(net) FROM ps), 0))::DOUBLE AS share,
               -- one row per supplier (and dim): the key is a supplier's attribute or the dim
               count(*) FILTER (WHERE active AND supplier_key <> 'INCONNU') AS suppliers
               {extra}
        FROM ps WHERE {where}
        GROUP BY 1 ORDER BY amount DESC, code"""
    return _df(con, sql, params)


def spend_by_size(con: Con, f: Filters) -> pd.DataFrame:
    """size_class (TPE, PME, ETI, GE or None), label, amount, share, suppliers."""
    df = _group(con, f, "size_class")
    df.insert(1, "label", [SIZE_LABELS.get(c, "Taille inconnue") for c in df["code"]])
    return df.rename(columns={"code": "size_class"})


def spend_by_naf_section(con: Con, f: Filters) -> pd.DataFrame:
    """code (NAF section letter or None), name, amount, share, suppliers."""
    df = _group(con, f, "naf_section")
    df.insert(1, "name", [NAF_SECTIONS.get(c, "Secteur inconnu") for c in df["code"]])
    return df


def spend_by_inclusive_kind(con: Con, f: Filters) -> pd.DataFrame:
    """kind (EI, AI, ACI, ETTI, EITI, GEIQ, EA, EATT, ESAT), family, amount, share (of total), suppliers."""
    df = _group(
        con,
        f,
        "inclusive_kind",
        where="inclusive_family IS NOT NULL",
        extra=", any_value(inclusive_family) AS family",
    )
    df = df.rename(columns={"code": "kind"})
    return df[["kind", "family", "amount", "share", "suppliers"]]


def _ess_family_sql() -> str:
    coops = ", ".join(f"'{c}'" for c in COOPERATIVE_CJ)
    return (
        "CASE WHEN categorie_juridique LIKE '92%' THEN 'Association' "
        "WHEN categorie_juridique LIKE '93%' THEN 'Fondation' "
        "WHEN categorie_juridique LIKE '82%' OR categorie_juridique = '6411' THEN 'Mutuelle' "
        f"WHEN categorie_juridique IN ({coops}) THEN 'Coopérative' "
        "ELSE 'Autre entreprise de l''ESS' END"
    )


def spend_by_ess_family(con: Con, f: Filters) -> pd.DataFrame:
    """family (Association, Fondation, Mutuelle, Coopérative, Autre), amount, share (of total), suppliers."""
    df = _group(con, f, _ess_family_sql(), where="ess")
    return df.rename(columns={"code": "family"})


def _category_names(con: Con, f: Filters, codes) -> list:
    if f.basis == "notified":
        ref = _ref_names_sql(
            con, "ref_cpv_divisions", ("division", "code"), ("libelle_fr", "libelle", "nom", "name")
        )
        names = dict(con.execute(f"SELECT code, name FROM {ref}").fetchall()) if ref else {}
        return [names.get(c, f"Division CPV {c}") if c else "CPV non renseigné" for c in codes]
    return [
        NATURE_CHAPTERS.get(c, f"Chapitre {c}" if c.isdigit() else c) if c else "Non renseigné" for c in codes
    ]


def spend_by_category(con: Con, f: Filters) -> pd.DataFrame:
    """code, name, kind ('cpv' on the notified basis; 'nature' or 'categorie' on paid), amount, share, suppliers.

    Paid basis: the chapter of the accounting nature (2 first digits), else the mandat's
    purchase category; notified basis: the CPV division.
    """
    df = _group(con, f, "category", dims=("category",))
    df.insert(1, "name", _category_names(con, f, df["code"]))
    kinds = [
        "cpv" if f.basis == "notified" else ("nature" if c and c.isdigit() else "categorie")
        for c in df["code"]
    ]
    df.insert(2, "kind", [k if c else None for k, c in zip(kinds, df["code"])])
    return df


def local_share_by_category(con: Con, f: Filters) -> pd.DataFrame:
    """code, name, amount, located_amount, local_amount, local_share (None without territory)."""
    ps, params = spend_sql(f, dims=("category",), monthly=_monthly(con))
    sql = f"""
        SELECT category AS code, sum(net)::DOUBLE AS amount,
               coalesce(sum(net) FILTER (WHERE terr_known), 0)::DOUBLE AS located_amount,
               coalesce(sum(net) FILTER (WHERE is_local), 0)::DOUBLE AS local_amount
        FROM ({ps}) GROUP BY 1 ORDER BY amount DESC, code"""
    df = _df(con, sql, params)
    df.insert(1, "name", _category_names(con, f, df["code"]))
    if f.territory is None:
        df["local_share"] = None
    else:
        df["local_share"] = [
            lo / la if la > 0 else None for lo, la in zip(df["local_amount"], df["located_amount"])
        ]
    return df


def spend_by_service(con: Con, f: Filters) -> pd.DataFrame:
    """service, amount, share, suppliers (paid basis: contracts carry no service)."""
    g = f if f.basis == "paid" else f.with_(basis="paid")
    df = _group(con, g, "service", dims=("service",))
    return df.rename(columns={"code": "service"})


def monthly_series(con: Con, f: Filters) -> pd.DataFrame:
    """month (first day), amount, ess_amount, inclusive_amount, local_amount (None without territory), located_amount, suppliers."""
    ps, params = spend_sql(f, dims=("month",), monthly=_monthly(con))
    local = "coalesce(sum(net) FILTER (WHERE is_local), 0)::DOUBLE" if f.territory else "NULL::DOUBLE"
    sql = f"""
        SELECT month, sum(net)::DOUBLE AS amount,
               coalesce(sum(net) FILTER (WHERE ess), 0)::DOUBLE AS ess_amount,
               coalesce(sum(net) FILTER (WHERE inclusive_family IS NOT NULL), 0)::DOUBLE AS inclusive_amount,
               {local} AS local_amount,
               coalesce(sum(net) FILTER (WHERE terr_known), 0)::DOUBLE AS located_amount,
               -- spend_sql gives one row per supplier and month: a count, not a DISTINCT
               count(*) FILTER (WHERE active AND supplier_key <> 'INCONNU') AS suppliers
        FROM ({ps}) GROUP BY 1 ORDER BY 1"""
    return _df(con, sql, params)


def concentration(con: Con, f: Filters) -> pd.DataFrame:
    """One row: top10_share, hhi, supplier_count (net > 0), top10_amount, amount (Σ positive nets)."""
    ps, params = spend_sql(f, monthly=_monthly(con))
    sql = f"""
        WITH k AS (
            SELECT net, row_number() OVER (ORDER BY net DESC, supplier_key) AS rn
            FROM ({ps}) WHERE net > 0 AND supplier_key <> 'INCONNU'
        )
        SELECT (sum(net) FILTER (WHERE rn <= 10) / nullif(sum(net), 0))::DOUBLE AS top10_share,
               (sum(pow(net::DOUBLE, 2)) / nullif(pow(sum(net)::DOUBLE, 2), 0)) AS hhi,
               count(*) AS supplier_count,
               sum(net) FILTER (WHERE rn <= 10)::DOUBLE AS top10_amount,
               sum(net)::DOUBLE AS amount
        FROM k"""
    return _df(con, sql, params)


def lorenz_curve(con: Con, f: Filters, points: int = 200) -> pd.DataFrame:
    """cum_suppliers_share, cum_spend_share from (0, 0) to (1, 1), suppliers by rising net spend (≤ points rows)."""
    # count(*) > 0 rather than EXISTS: DuckDB 2.0.0 answers EXISTS wrongly over an
    # aggregate LEFT JOINed to an empty table (here supplier_class before reclassify).
    ps, params = spend_sql(f, monthly=_monthly(con))
    sql = f"""
        WITH o AS (
            SELECT row_number() OVER w AS rn, count(*) OVER () AS n,
                   sum(net) OVER (w ROWS UNBOUNDED PRECEDING) AS cum, sum(net) OVER () AS tot
            FROM ({ps}) WHERE net > 0 AND supplier_key <> 'INCONNU'
            WINDOW w AS (ORDER BY net, supplier_key)
        )
        SELECT 0.0::DOUBLE AS cum_suppliers_share, 0.0::DOUBLE AS cum_spend_share
        WHERE (SELECT count(*) FROM o) > 0
        UNION ALL
        SELECT (rn / n)::DOUBLE, (cum / tot)::DOUBLE FROM o
        WHERE rn = n OR rn % greatest(1, ceil(n / $step_points)::BIGINT) = 0
        ORDER BY 1"""
    return _df(con, sql, {**params, "step_points": max(points - 2, 1)})


def top_suppliers(con: Con, f: Filters, n: int = 20) -> pd.DataFrame:
    """supplier_key, name, amount, share (of total), ess, inclusive_kind, departement_code, size_class."""
    ps, params = spend_sql(f, monthly=_monthly(con))
    sql = f"""
        WITH ps AS MATERIALIZED ({ps})
        SELECT supplier_key, name, net::DOUBLE AS amount,
               (net / nullif((SELECT sum(net) FROM ps), 0))::DOUBLE AS share,
               ess, inclusive_kind, departement_code, size_class
        FROM ps WHERE supplier_key <> 'INCONNU'
        ORDER BY net DESC, supplier_key LIMIT $limit"""
    df = _df(con, sql, {**params, "limit": int(n)})
    # The name as paid or notified, for the few top suppliers no referential names: read
    # for those keys only (reading it for every line of the period doubled the time).
    missing = [k for k, v in zip(df["supplier_key"], df["name"]) if pd.isna(v)]
    if missing:
        names = _raw_names(con, f, missing)
        df["name"] = [names.get(k) if pd.isna(v) else v for k, v in zip(df["supplier_key"], df["name"])]
    return df


def _raw_names(con: Con, f: Filters, keys: list[str]) -> dict:
    """supplier_key -> the name as written in the period's payments (paid) or contracts
    (notified), for the given keys (the smallest, as ``spend_sql(details=True)`` gives it)."""
    ps, params = spend_sql(f, details=True, supplier_keys=True, monthly=_monthly(con))
    rows = _run(con, f"SELECT supplier_key, raw_name FROM ({ps})", {**params, "supplier_keys": keys})
    return dict(rows.fetchall())


def supplier_history(con: Con, f: Filters, supplier_key: str) -> pd.DataFrame:
    """year, amount: one supplier's net spend per calendar year of the period (filters as
    for every spend figure; years without spend are absent)."""
    ps, params = spend_sql(f, dims=("year",), supplier_keys=True, monthly=_monthly(con))
    sql = f"SELECT year, sum(net)::DOUBLE AS amount FROM ({ps}) GROUP BY 1 ORDER BY 1"
    return _df(con, sql, {**params, "supplier_keys": [supplier_key]})


def new_suppliers(con: Con, f: Filters) -> pd.DataFrame:
    """supplier_key, name, amount, first_date: suppliers paid in the period never paid before it.

    Empty when the database holds nothing before the period (newness unknown).
    """
    monthly = _monthly(con)
    ps, params = spend_sql(f, details=True, monthly=monthly)
    fs, p = _first_seen_sql(f, monthly)
    params.update(p)
    history, p = _history_sql(f, monthly)
    params.update(p, first_seen_before=f.date_from)
    sql = f"""
        WITH ps AS ({ps}), fs AS ({fs})
        SELECT ps.supplier_key, ps.name, ps.net::DOUBLE AS amount, ps.first_date
        FROM ps LEFT JOIN fs USING (supplier_key)
        WHERE ps.active AND ps.supplier_key <> 'INCONNU' AND fs.supplier_key IS NULL
          AND ({history}) IS NOT NULL
        ORDER BY amount DESC, ps.supplier_key"""
    return _df(con, sql, params)


def _norm_number(col: str) -> str:
    return f"nullif(regexp_replace(upper({col}), '[^A-Z0-9]', '', 'g'), '')"


def reconciliation(con: Con, f: Filters) -> pd.DataFrame:
    """contract_number, contract_key, objet, notified, paid, ratio, contracts, lines.

    Mandats of the period carrying a contract number, matched (normalised: upper case,
    letters and digits only) to contracts_current.id or uid of the same buyer SIREN;
    several matching lots are summed. ratio = paid / notified.
    """
    where, params = filter_sql(f, "mandats")
    class_where, p = filter_sql(f, "classes")
    params.update(p)
    params.update(_territory_sql(f)[2])
    sql = f"""
        WITH m AS (
            SELECT {_norm_number("m.contract_number")} AS num, left(m.buyer_siret, 9) AS buyer_siren,
                   min(m.contract_number) AS contract_number, sum(m.amount) AS paid, count(*) AS lines
            FROM mandats m LEFT JOIN supplier_class s ON s.supplier_key = m.supplier_key
            WHERE {where} AND {class_where} AND m.contract_number IS NOT NULL
            GROUP BY 1, 2 HAVING num IS NOT NULL
        ),
        ids AS (
            SELECT contract_key, {_norm_number("id")} AS num FROM contracts_current
            UNION
            SELECT contract_key, {_norm_number("uid")} FROM contracts_current
        ),
        j AS (
            SELECT m.num, m.buyer_siren, c.contract_key, c.objet, c.amount
            FROM m JOIN ids USING (num) JOIN contracts_current c USING (contract_key)
            WHERE m.buyer_siren IS NULL OR c.buyer_siret IS NULL OR left(c.buyer_siret, 9) = m.buyer_siren
        ),
        jc AS (
            SELECT num, buyer_siren, string_agg(contract_key, ' | ' ORDER BY contract_key) AS contract_key,
                   min(objet) AS objet, sum(amount) AS notified, count(*) AS contracts
            FROM (SELECT DISTINCT * FROM j) GROUP BY 1, 2
        )
        SELECT m.contract_number, jc.contract_key, jc.objet, jc.notified::DOUBLE AS notified,
               m.paid::DOUBLE AS paid, (m.paid / nullif(jc.notified, 0))::DOUBLE AS ratio,
               coalesce(jc.contracts, 0) AS contracts, m.lines
        FROM m LEFT JOIN jc ON jc.num = m.num AND jc.buyer_siren IS NOT DISTINCT FROM m.buyer_siren
        ORDER BY m.paid DESC, m.contract_number"""
    return _df(con, sql, params)


def distance_distribution(con: Con, f: Filters) -> pd.DataFrame:
    """bin (label), km_min, km_max, amount (positive spend), share, suppliers; empty without a buyer point."""
    point = _buyer_point(con)
    columns = ["bin", "km_min", "km_max", "amount", "share", "suppliers"]
    if point is None:
        return pd.DataFrame(columns=columns)
    bins = " UNION ALL ".join(
        f"SELECT {i} AS i, {lo}::DOUBLE AS km_min, {'NULL' if hi is None else hi}::DOUBLE AS km_max"
        for i, (lo, hi) in enumerate(DISTANCE_BINS)
    )
    ps, params = spend_sql(f, monthly=_monthly(con))
    sql = f"""
        WITH d AS (
            SELECT supplier_key, pos, {_haversine_sql("lon", "lat")} AS km
            FROM ({ps}) WHERE pos > 0 AND lon IS NOT NULL AND lat IS NOT NULL
        ), b AS ({bins})
        SELECT b.i, b.km_min, b.km_max, coalesce(sum(d.pos), 0)::DOUBLE AS amount,
               (coalesce(sum(d.pos), 0) / nullif((SELECT sum(pos) FROM d), 0))::DOUBLE AS share,
               count(d.supplier_key) AS suppliers
        FROM b LEFT JOIN d ON d.km >= b.km_min AND (b.km_max IS NULL OR d.km < b.km_max)
        GROUP BY ALL ORDER BY b.i"""
    df = _df(con, sql, {**params, "buyer_lon": point[0], "buyer_lat": point[1]})
    df.insert(
        0,
        "bin",
        [
            f"{int(lo)}–{int(hi)} km" if not pd.isna(hi) else f"{int(lo)} km et plus"
            for lo, hi in zip(df["km_min"], df["km_max"])
        ],
    )
    return df[columns]


def payment_delays(con: Con, f: Filters) -> pd.DataFrame:
    """month, mean_days, share_30 (paid within 30 days), lines (positive lines with both dates)."""
    return _df(con, *_payment_sql(f, PAYMENT_MONTHS_SQL))


CONTRACTS_TABLE_SQL = """
WITH c AS (SELECT * FROM contracts_current c WHERE {where}),
hs AS (
    -- DECP v2 publishes no holder name: the referential's name, else the identifier
    SELECT h.import_id, h.seq,
           string_agg(coalesce(h.holder_name, s.name, h.holder_siret), ' ; ' ORDER BY h.holder_rank) AS holders,
           count(*) AS holders_n,
           bool_or(coalesce(s.size_class IN ('TPE', 'PME'), upper(trim(h.categorie)) IN ('PME', 'TPE'), FALSE))
               AS sme
    FROM contract_holders h SEMI JOIN c USING (import_id, seq)
    LEFT JOIN supplier_class s ON s.supplier_key = {holder_key}
    GROUP BY 1, 2
)
SELECT c.contract_key, c.id, c.uid, c.objet, c.buyer_siret, c.buyer_name AS buyer, c.date_notification,
       c.amount::DOUBLE AS amount, c.cpv, c.cpv_division, c.procedure, c.nature,
       hs.holders, coalesce(hs.holders_n, 0) AS holder_count, coalesce(hs.sme, FALSE) AS sme,
       c.has_social, c.has_environmental, c.is_reserved, c.innovative, c.offers_received,
       c.advance_rate, c.considerations_sociales, c.considerations_environnementales,
       (c.date_notification >= $env_start AND NOT c.has_environmental) AS env_2026_missing
FROM c LEFT JOIN hs USING (import_id, seq)
ORDER BY c.date_notification, c.contract_key
"""


def contracts_table(con: Con, f: Filters) -> pd.DataFrame:
    """The contracts notified in the period (one row each) with their holders and flags:
    contract_key, id, uid, objet, buyer_siret, buyer, date_notification, amount, cpv, cpv_division,
    procedure, nature, holders, holder_count, sme, has_social, has_environmental, is_reserved,
    innovative, offers_received, advance_rate, considerations_*, env_2026_missing."""
    where, params = filter_sql(f, "contracts")
    sql = CONTRACTS_TABLE_SQL.format(holder_key=_holder_key_sql(), where=where)
    return _df(con, sql, {**params, "env_start": ENV_2026_START})


def env_2026_compliance(con: Con, f: Filters) -> pd.DataFrame:
    """contract_key, id, objet, date_notification, amount, cpv_division, procedure, buyer:
    contracts notified on or after 2026-08-22 (notification date as the launch-date proxy)
    with no environmental consideration."""
    where, params = filter_sql(f, "contracts")
    sql = f"""
        SELECT c.contract_key, c.id, c.objet, c.date_notification, c.amount::DOUBLE AS amount,
               c.cpv_division, c.procedure, coalesce(c.buyer_name, c.buyer_siret) AS buyer
        FROM contracts_current c
        WHERE {where} AND c.date_notification >= $env_start AND NOT c.has_environmental
        ORDER BY c.date_notification, c.contract_key"""
    return _df(con, sql, {**params, "env_start": ENV_2026_START})


def suppliers_table(con: Con, f: Filters, search: str | None = None) -> pd.DataFrame:
    """All suppliers of the period with their classification, spend and contract count:
    supplier_key, siret, name, amount, share, lines, first_date, commune_code, epci_siren,
    departement_code, region_code, local, ess, ess_reason, inclusive_kind, inclusive_family,
    size_class, naf_section, naf_label, contracts (notified in the period)."""
    ps, params = spend_sql(f, details=True, monthly=_monthly(con))
    cwhere, p = filter_sql(f, "contracts")
    params.update(p)
    cond = "TRUE"
    if search and search.strip():
        cond = "(ps.name ILIKE $search OR ps.supplier_key ILIKE $search OR ps.siret ILIKE $search)"
        params["search"] = f"%{search.strip()}%"
    local = "ps.is_local" if f.territory else "NULL::BOOLEAN"
    sql = f"""
        WITH ps AS MATERIALIZED ({ps}),
        k AS (
            SELECT coalesce({_holder_key_sql()}, 'INCONNU') AS supplier_key, count(DISTINCT c.contract_key) AS contracts
            FROM contracts_current c JOIN contract_holders h USING (import_id, seq)
            WHERE {cwhere} GROUP BY 1
        )
        SELECT ps.supplier_key, ps.siret, ps.name, ps.net::DOUBLE AS amount,
               (ps.net / nullif((SELECT sum(net) FROM ps), 0))::DOUBLE AS share, ps.lines, ps.first_date,
               ps.commune_code, ps.epci_siren, ps.departement_code, ps.region_code, {local} AS local,
               ps.ess, ps.ess_reason, ps.inclusive_kind, ps.inclusive_family, ps.size_class,
               ps.naf_section, ps.naf_label, coalesce(k.contracts, 0) AS contracts
        FROM ps LEFT JOIN k USING (supplier_key)
        WHERE {cond}
        ORDER BY ps.net DESC, ps.supplier_key"""
    return _long_df(con, sql, params)


# ---------------------------------------------------------------------------------------
# JSON contract of the command line, and its French summary

JSON_KEYS = HEADLINE_KEYS


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, Decimal):
        return float(x)
    if isinstance(x, (dt.date, dt.datetime)):
        return x.isoformat()
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalars
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _records(df: pd.DataFrame) -> list[dict]:
    return [
        _json_safe({"code": r.code, "name": r.name, "amount": r.amount, "share": r.share})
        for r in df.itertuples(index=False)
    ]


def territory_label(con: Con, t: Territory | None) -> str | None:
    if t is None:
        return None
    try:
        from analytics import referential

        fn = getattr(referential, "territory_label", None)
        if fn is not None:
            return fn(con, t)
    except Exception:  # fall back on the codes
        pass
    return f"{TERRITORY_KINDS[t.kind]} {', '.join(t.codes)}"


def headline_json(con: Con, f: Filters) -> dict:
    """The command line contract: basis, period, scope, every headline key, coverage, reasons,
    previous, delta, spend_by_departement, spend_by_region."""
    both = headline_with_previous(con, f)
    cur, prev = both["current"], both["previous"]
    t = f.territory
    out: dict = {
        "basis": f.basis,
        "period": f.period_dict(),
        "scope": {
            "buyer": f.buyer_siret,
            "territory": None if t is None else {**t.as_dict(), "label": territory_label(con, t)},
        },
    }
    for key in JSON_KEYS:
        out[key] = _json_safe(cur[key])
    out["coverage"] = _json_safe(cur["coverage"])
    out["reasons"] = dict(cur["reasons"])
    out["previous"] = {"period": prev["period"], **{k: _json_safe(prev[k]) for k in JSON_KEYS}}
    out["delta"] = {k: _json_safe(both["delta"][k]) for k in JSON_KEYS}
    out["spend_by_departement"] = _records(spend_by_departement(con, f))
    out["spend_by_region"] = _records(spend_by_region(con, f))
    return out


BASIS_LABELS = {
    "paid": "dépenses payées (mandats)",
    "notified": "montants notifiés (contrats, partagés entre cotitulaires)",
}


def _fmt_delta(key: str, delta) -> str:
    if delta is None:
        return ""
    if DEFINITIONS[key]["delta"] == "points":
        if DEFINITIONS[key]["unit"] == "index":
            return f" ({fmt_number(delta, 3, sign=True)} sur un an)"
        return f" ({fmt_points(delta)} sur un an)"
    return f" ({fmt_pct(delta, sign=True)} sur un an)"


def format_summary(d: dict) -> str:
    """A readable French summary of a headline_json object."""
    period = d["period"]
    lines = [
        f"Indicateurs du {fmt_date(period['from'])} au {fmt_date(period['to'])}",
        f"Base : {BASIS_LABELS.get(d['basis'], d['basis'])}",
    ]
    scope = d.get("scope") or {}
    lines.append(f"Acheteur : {scope.get('buyer') or 'tous'}")
    terr = scope.get("territory")
    lines.append(f"Territoire : {terr['label'] if terr else 'non configuré'}")
    cov = (d.get("coverage") or {}).get("total_spend") or {}
    if d["basis"] == "paid" and cov.get("lines"):
        lines.append(
            f"Montants : {fmt_int(cov['lines_ttc'])} lignes TTC, {fmt_int(cov['lines_ht'])} lignes HT "
            "(TTC quand le fichier le donne)"
        )
    lines.append("")
    delta = d.get("delta") or {}
    for key in JSON_KEYS:
        if key not in d:
            continue
        label = describe(key, d["basis"])["label"]
        value = d[key]
        if value is None:
            reason = (d.get("reasons") or {}).get(key, "")
            lines.append(f"- {label} : non disponible — {reason}".rstrip(" —"))
            continue
        text = fmt_value(value, DEFINITIONS[key]["unit"])
        if key == "local_share":
            cov = (d.get("coverage") or {}).get(key) or {}
            if cov.get("located_fraction") is not None:
                text += f" (calculée sur les {fmt_pct(cov['located_fraction'])} de dépense localisée)"
        lines.append(f"- {label} : {text}{_fmt_delta(key, delta.get(key))}")
    deps = [r for r in d.get("spend_by_departement") or [] if r["amount"]]
    if deps:
        lines.append("")
        lines.append("Dépense par département du fournisseur :")
        for r in deps[:10]:
            name = r["name"] or ""
            code = r["code"] or ""
            where = f"{code} {name}".strip() if code else name
            lines.append(f"  {where} : {fmt_eur(r['amount'])} ({fmt_pct(r['share'])})")
    return "\n".join(lines)

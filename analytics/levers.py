"""The levers a buyer pulls to open its purchasing to the territory and the ESS.

1. renewals ahead (contracts ending in 6 / 12 / 18 months) with the ESS and inclusive
   structures of the territory able to answer;
2. reservation potential per purchase category (L.2113-12 and L.2113-13), by transparent
   rules with editable thresholds;
3. purchases under 40 000 € HT (negotiated without prior competition) against the rest;
4. lots and joint bids;
5. the sourcing directory of a category.

"Able to serve a category" rests on a documented CPV division → NAF divisions
correspondence (``CPV_NAF``), written from the two nomenclatures' labels.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import duckdb
import pandas as pd

from analytics.filters import Filters, Territory

# CPV 2008 division -> NAF rév.2 divisions whose firms typically supply it. Written from
# the labels of both nomenclatures (no official correspondence exists at this level).
CPV_NAF: dict[str, tuple[str, ...]] = {
    "03": ("01", "02", "03"),
    "09": ("19", "35"),
    "14": ("08",),
    "15": ("10", "11"),
    "16": ("28",),
    "18": ("14", "15"),
    "19": ("13", "15"),
    "22": ("18", "58"),
    "24": ("20",),
    "30": ("26", "46", "47"),
    "31": ("27",),
    "32": ("26",),
    "33": ("21", "32"),
    "34": ("29", "30", "45"),
    "35": ("25", "30", "80"),
    "37": ("32",),
    "38": ("26",),
    "39": ("31", "13", "20", "47"),
    "41": ("36",),
    "42": ("28",),
    "43": ("28",),
    "44": ("16", "23", "25"),
    "45": ("41", "42", "43"),
    "48": ("58", "62"),
    "50": ("33", "45", "95"),
    "51": ("33", "43"),
    "55": ("55", "56"),
    "60": ("49", "50", "51"),
    "63": ("52", "79"),
    "64": ("53", "61"),
    "65": ("35", "36"),
    "66": ("64", "65", "66"),
    "70": ("68",),
    "71": ("71",),
    "72": ("62", "63"),
    "73": ("72",),
    "75": ("84",),
    "76": ("09",),
    "77": ("01", "02", "81"),
    "79": ("18", "69", "70", "73", "74", "78", "80", "82"),
    "80": ("85",),
    "85": ("86", "87", "88"),
    "90": ("37", "38", "39", "81"),
    "92": ("59", "60", "90", "91", "93"),
    "98": ("94", "95", "96"),
}


@dataclass(frozen=True)
class ReservationRules:
    """Editable thresholds of the reservation recommendation."""

    reserve_min_structures: int = 5  # at least this many inclusive structures able to serve…
    absorb_max_per_structure: float = (
        300_000.0  # …and the yearly spend per structure under this → marché réservé
    )
    lot_min_structures: int = 2  # at least this many → lot réservé
    clause_min_structures: int = 1  # at least one → clause sociale
    under_threshold_ht: float = 40_000.0
    innovative_threshold_ht: float = 100_000.0
    large_single_lot: float = 500_000.0

    def recommend(self, n_structures: int, spend: float) -> tuple[str, str]:
        """(recommendation, the rule that produced it, in words)."""
        per = spend / n_structures if n_structures else float("inf")
        if n_structures >= self.reserve_min_structures and per <= self.absorb_max_per_structure:
            return "marché réservé", (
                f"{n_structures} structures inclusives ≥ {self.reserve_min_structures} et "
                f"{_eur(per)} par structure ≤ {_eur(self.absorb_max_per_structure)}"
            )
        if n_structures >= self.lot_min_structures:
            why = f"{n_structures} structures inclusives ≥ {self.lot_min_structures}"
            if n_structures >= self.reserve_min_structures:
                why += f", mais {_eur(per)} par structure > {_eur(self.absorb_max_per_structure)}"
            return "lot réservé", why
        if n_structures >= self.clause_min_structures:
            return (
                "clause sociale",
                f"{n_structures} structure(s) inclusive(s) ≥ {self.clause_min_structures}",
            )
        return "aucune", "aucune structure inclusive du territoire ne couvre cette catégorie"


def _eur(v: float) -> str:
    from analytics import fmt

    return fmt.fmt_eur(v)


def _naf_map_sql() -> str:
    rows = [f"('{cpv}', '{naf}')" for cpv, nafs in CPV_NAF.items() for naf in nafs]
    return f"(SELECT * FROM (VALUES {', '.join(rows)}) AS v(cpv_division, naf_division))"


def _territory_filter(t: Territory | None, alias: str) -> tuple[str, dict]:
    if t is None:
        return "FALSE", {}
    col = t.column
    return f"list_contains($terr_codes, {alias}.{col})", {"terr_codes": list(t.codes)}


# Actors of the territory: inclusive structures (imported lists, then the shipped SIAE)
# and ESS establishments known to a referential (SIRENE extract, ESS list, classification).
ACTORS_SQL = """
WITH inc AS (
    SELECT siret, name, kind, family, naf, commune_code, longitude AS lon, latitude AS lat, 1 AS prio
    FROM structures
    UNION ALL
    SELECT siret, name, kind,
           CASE WHEN kind IN ('EA', 'EATT', 'ESAT') THEN 'handicap' ELSE 'insertion' END,
           naf, code_commune, longitude, latitude, 2
    FROM ref_siae
), inc1 AS (
    SELECT * FROM inc QUALIFY row_number() OVER (PARTITION BY siret ORDER BY prio) = 1
), ess AS (
    SELECT e.siret, coalesce(u.denomination, e.enseigne, e.denomination_usuelle) AS name,
           coalesce(e.naf, u.naf) AS naf, e.commune_code
    FROM sirene_etablissements_current e
    JOIN sirene_unites_current u USING (siren)
    LEFT JOIN ref_categories_juridiques cj ON cj.code = u.categorie_juridique
    WHERE (u.ess = 'O' OR cj.ess_family IS NOT NULL) AND coalesce(e.etat, 'A') = 'A'
    UNION ALL
    SELECT siret, name, naf, commune_code FROM supplier_class WHERE ess AND siret IS NOT NULL
), all_actors AS (
    SELECT coalesce(i.siret, e.siret) AS siret, coalesce(e.name, i.name) AS name,
           i.kind AS inclusive_kind, i.family AS inclusive_family,
           e.siret IS NOT NULL AS ess, coalesce(e.naf, i.naf) AS naf,
           coalesce(i.commune_code, e.commune_code) AS commune_code, i.lon, i.lat
    FROM inc1 i FULL JOIN (SELECT * FROM ess QUALIFY row_number() OVER (PARTITION BY siret) = 1) e
         ON e.siret = i.siret
)
SELECT a.siret, a.name, a.inclusive_kind, a.inclusive_family, a.ess,
       CASE WHEN regexp_full_match(a.naf, '[0-9]{4}[A-Z]') THEN substr(a.naf, 1, 2)
            ELSE substr(a.naf, 1, 2) END AS naf_division,
       a.naf, coalesce(rc.current_code, a.commune_code) AS commune_code, rc.nom AS commune,
       rc.code_departement AS departement_code, rc.code_region AS region_code, rc.epci_siren,
       coalesce(a.lon, rc.centroid_lon) AS lon, coalesce(a.lat, rc.centroid_lat) AS lat
FROM all_actors a
LEFT JOIN ref_communes rc ON rc.code_commune = a.commune_code
"""


def territory_actors(con: duckdb.DuckDBPyConnection, territory: Territory | None) -> pd.DataFrame:
    """ESS and inclusive actors located in the territory: siret, name, inclusive_kind,
    inclusive_family, ess, naf_division, naf, commune_code, commune, departement_code, lon, lat."""
    cond, params = _territory_filter(territory, "t")
    return con.execute(f"SELECT * FROM ({ACTORS_SQL}) t WHERE {cond}", params).df()


def actors_by_cpv(con: duckdb.DuckDBPyConnection, territory: Territory | None) -> pd.DataFrame:
    """cpv_division, ess_structures, inclusive_structures (distinct SIRETs in the territory)."""
    cond, params = _territory_filter(territory, "t")
    return con.execute(
        f"""
        SELECT m.cpv_division,
               count(DISTINCT t.siret) FILTER (WHERE t.ess) AS ess_structures,
               count(DISTINCT t.siret) FILTER (WHERE t.inclusive_kind IS NOT NULL) AS inclusive_structures
        FROM ({ACTORS_SQL}) t JOIN {_naf_map_sql()} m ON m.naf_division = t.naf_division
        WHERE {cond}
        GROUP BY 1
        """,
        params,
    ).df()


def renewals(
    con: duckdb.DuckDBPyConnection, f: Filters, as_of: dt.date | None = None, months: int = 18
) -> pd.DataFrame:
    """Contracts ending within ``months`` of ``as_of``: contract_id, object, cpv_division,
    cpv_label, end_date, horizon (6/12/18), amount, ess_structures, inclusive_structures."""
    as_of = as_of or dt.date.today()
    end = _add_months(as_of, months)
    params = {"as_of": as_of, "end": end}
    buyer = ""
    if f.buyer_siret:
        buyer = "AND c.buyer_siret = $buyer"
        params["buyer"] = f.buyer_siret
    df = con.execute(
        f"""
        SELECT c.contract_key, coalesce(c.id, c.uid) AS contract_id, c.objet AS object, c.cpv_division,
               d.libelle_fr AS cpv_label, c.end_date, c.amount::DOUBLE AS amount,
               c.date_notification, c.duration_months
        FROM contracts_current c LEFT JOIN ref_cpv_divisions d ON d.division = c.cpv_division
        WHERE c.end_date > $as_of AND c.end_date <= $end {buyer}
        ORDER BY c.end_date, c.amount DESC
        """,
        params,
    ).df()
    df["end_date"] = [None if pd.isna(e) else pd.Timestamp(e).date() for e in df["end_date"]]
    actors = actors_by_cpv(con, f.territory)
    df = df.merge(actors, on="cpv_division", how="left")
    df[["ess_structures", "inclusive_structures"]] = (
        df[["ess_structures", "inclusive_structures"]].fillna(0).astype(int)
    )
    df["horizon"] = [
        6 if e <= _add_months(as_of, 6) else 12 if e <= _add_months(as_of, 12) else 18 for e in df["end_date"]
    ]
    return df


def reservation(
    con: duckdb.DuckDBPyConnection, f: Filters, rules: ReservationRules | None = None
) -> pd.DataFrame:
    """Per CPV division of the period's contracts: cpv_division, label, spend (notified),
    contracts, inclusive_structures, recommendation, rule."""
    from analytics import indicators

    rules = rules or ReservationRules()
    where, params = indicators.filter_sql(f, "contracts")
    df = con.execute(
        f"""
        SELECT c.cpv_division, any_value(d.libelle_fr) AS label, sum(c.amount)::DOUBLE AS spend,
               count(*) AS contracts
        FROM contracts_current c LEFT JOIN ref_cpv_divisions d ON d.division = c.cpv_division
        WHERE {where} AND c.cpv_division IS NOT NULL
        GROUP BY 1 ORDER BY spend DESC NULLS LAST
        """,
        params,
    ).df()
    actors = actors_by_cpv(con, f.territory)
    df = df.merge(actors, on="cpv_division", how="left")
    df["inclusive_structures"] = df["inclusive_structures"].fillna(0).astype(int)
    df["ess_structures"] = df["ess_structures"].fillna(0).astype(int)
    recs = [rules.recommend(int(n), float(s or 0)) for n, s in zip(df["inclusive_structures"], df["spend"])]
    df["recommendation"] = [r[0] for r in recs]
    df["rule"] = [r[1] for r in recs]
    return df


UNDER_SQL = """
WITH by_key AS (
    -- the lines summed per contract number, supplier, nature and year first: the purchase
    -- key is then written for these rows, not for every line (0.2 s a million lines)
    SELECT nullif(trim(m.contract_number), '') AS contract, m.supplier_key, m.nature,
           year(m.spend_date) AS year, sum(m.amount) AS amount,
           sum(coalesce(m.amount_ht, m.amount / 1.2)) AS amount_ht_est
    FROM mandats m WHERE {where}
    GROUP BY ALL
), lines AS (
    SELECT supplier_key, amount, coalesce(left(nature, 3), '?') AS category, amount_ht_est,
           coalesce(contract, supplier_key || '|' || coalesce(nature, '') || '|' || year) AS purchase
    FROM by_key
), g AS (
    -- one row per purchase, supplier and category before any join: far fewer than lines
    SELECT purchase, supplier_key, category, sum(amount) AS amount, sum(amount_ht_est) AS ht
    FROM lines GROUP BY ALL
), purchases AS (
    SELECT purchase, sum(ht) AS ht FROM g GROUP BY 1
)
SELECT CASE WHEN p.ht < $threshold THEN 'under' ELSE 'over' END AS side,
       g.category,
       sum(g.amount)::DOUBLE AS spend,
       sum(g.amount) FILTER (WHERE s.{terr_col} IS NOT NULL AND list_contains($terr_codes, s.{terr_col}))::DOUBLE AS local,
       sum(g.amount) FILTER (WHERE s.{terr_col} IS NOT NULL)::DOUBLE AS located,
       sum(g.amount) FILTER (WHERE s.ess)::DOUBLE AS ess,
       sum(g.amount) FILTER (WHERE s.inclusive_kind IS NOT NULL)::DOUBLE AS inclusive,
       count(DISTINCT g.purchase) AS purchases
FROM g JOIN purchases p USING (purchase)
LEFT JOIN supplier_class s ON s.supplier_key = g.supplier_key
GROUP BY ALL
"""


def purchases_by_threshold(
    con: duckdb.DuckDBPyConnection, f: Filters, rules: ReservationRules | None = None
) -> pd.DataFrame:
    """side ('under' < 40 000 € HT, 'over'), category (nature prefix), spend, local, located,
    ess, inclusive, purchases. A purchase is a contract number, else one supplier × accounting
    nature × year; its HT amount is HT where exported, else TTC / 1.2."""
    from analytics import indicators

    rules = rules or ReservationRules()
    where, params = indicators.filter_sql(f, "mandats")
    t = f.territory or Territory("dep", ("__none__",))
    sql = UNDER_SQL.format(where=where, terr_col=t.column)
    return con.execute(
        sql, {**params, "threshold": rules.under_threshold_ht, "terr_codes": list(t.codes)}
    ).df()


def _shares(df: pd.DataFrame, has_territory: bool) -> dict:
    spend = float(df["spend"].sum()) if len(df) else 0.0

    def ratio(num, den):
        return None if not den else float(num) / float(den)

    return {
        "spend": spend,
        "local_share": ratio(df["local"].sum(), df["located"].sum()) if has_territory else None,
        "ess_share": ratio(df["ess"].sum(), spend),
        "inclusive_share": ratio(df["inclusive"].sum(), spend),
        "purchases": int(df["purchases"].sum()) if len(df) else 0,
    }


# Accounts (3 first digits of the nature) of the M57/M14 instructions that carry purchases.
NATURE_ACCOUNTS = {
    "202": "Frais d'urbanisme",
    "203": "Frais d'études et de recherche",
    "205": "Logiciels, concessions et droits",
    "211": "Terrains",
    "212": "Agencements et aménagements de terrains",
    "213": "Constructions",
    "214": "Constructions sur sol d'autrui",
    "215": "Installations, matériel et outillage techniques",
    "216": "Collections et œuvres d'art",
    "218": "Autres immobilisations corporelles",
    "231": "Immobilisations corporelles en cours",
    "238": "Avances sur commandes d'immobilisations",
    "601": "Achats stockés de matières premières",
    "602": "Achats stockés d'autres approvisionnements",
    "604": "Achats d'études et prestations de services",
    "606": "Achats non stockés de matières et fournitures",
    "607": "Achats de marchandises",
    "611": "Contrats de prestations de services",
    "612": "Redevances de crédit-bail",
    "613": "Locations",
    "614": "Charges locatives et de copropriété",
    "615": "Entretien et réparations",
    "616": "Primes d'assurance",
    "617": "Études et recherches",
    "618": "Documentation, formation, divers",
    "621": "Personnel extérieur au service",
    "622": "Honoraires et rémunérations d'intermédiaires",
    "623": "Publicité, publications, relations publiques",
    "624": "Transports de biens et transports collectifs",
    "625": "Déplacements, missions et réceptions",
    "626": "Frais postaux et de télécommunications",
    "627": "Services bancaires",
    "628": "Autres services extérieurs",
}


def threshold_split(
    con: duckdb.DuckDBPyConnection, f: Filters, rules: ReservationRules | None = None
) -> dict:
    """Purchases under and over ``rules.under_threshold_ht``: ``under`` and ``over`` (spend,
    local_share, ess_share, inclusive_share, purchases: the figures of ``opportunities``) and
    ``by_category`` (category, label, spend_under, spend_over, under_share, purchases_under,
    then local_share, ess_share and inclusive_share each ``_under`` and ``_over``)."""
    thr = purchases_by_threshold(con, f, rules)
    has_t = f.territory is not None
    rows = []
    for cat, part in thr.groupby("category", sort=False):
        under, over = part[part["side"] == "under"], part[part["side"] == "over"]
        u, o = _shares(under, has_t), _shares(over, has_t)
        total = u["spend"] + o["spend"]
        row = {
            "category": cat,
            "label": NATURE_ACCOUNTS.get(cat, ""),
            "spend_under": u["spend"],
            "spend_over": o["spend"],
            "under_share": u["spend"] / total if total else None,
            "purchases_under": u["purchases"],
        }
        for k in ("local_share", "ess_share", "inclusive_share"):
            row[f"{k}_under"], row[f"{k}_over"] = u[k], o[k]
        rows.append(row)
    by_cat = pd.DataFrame(rows)
    if len(by_cat):
        by_cat = by_cat.sort_values("spend_under", ascending=False).reset_index(drop=True)
    return {
        "under": _shares(thr[thr["side"] == "under"], has_t),
        "over": _shares(thr[thr["side"] == "over"], has_t),
        "by_category": by_cat,
    }


def cpv_naf_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``CPV_NAF`` with the labels of both nomenclatures: cpv_division, cpv_label,
    naf_divisions (codes joined by ', '), naf_labels."""
    try:
        cpv = dict(con.execute("SELECT division, libelle_fr FROM ref_cpv_divisions").fetchall())
        naf = dict(con.execute("SELECT DISTINCT division, division_label FROM ref_naf").fetchall())
    except duckdb.CatalogException:  # reference data not built: codes only
        cpv, naf = {}, {}
    return pd.DataFrame(
        [
            {
                "cpv_division": c,
                "cpv_label": cpv.get(c),
                "naf_divisions": ", ".join(nafs),
                "naf_labels": " ; ".join(f"{n} {naf.get(n, '')}".strip() for n in nafs),
            }
            for c, nafs in CPV_NAF.items()
        ]
    )


def lots(con: duckdb.DuckDBPyConnection, f: Filters, rules: ReservationRules | None = None) -> dict:
    """contracts_with_lots_share, single_lot_large (list), joint (co-held contracts) and
    joint_with_ess. A contract belongs to a lot group when another contract of the same
    buyer was notified the same day under the same object (lot mention removed) or its
    object names a lot."""
    from analytics import indicators

    rules = rules or ReservationRules()
    where, params = indicators.filter_sql(f, "contracts")
    base = con.execute(
        f"""
        WITH c AS (
            SELECT c.*, regexp_replace(lower(coalesce(c.objet, '')), '\\s*[-–:,]?\\s*lot\\s*(n°|no|n)?\\s*\\d+.*$', '') AS obj_root,
                   regexp_matches(lower(coalesce(c.objet, '')), '\\blot\\s*(n°|no|n)?\\s*\\d+') AS names_lot
            FROM contracts_current c WHERE {where}
        ), g AS (
            SELECT *, count(*) OVER (PARTITION BY buyer_siret, date_notification, obj_root) AS group_size FROM c
        )
        SELECT contract_key, coalesce(id, uid) AS contract_id, objet AS object, cpv_division,
               amount::DOUBLE AS amount, date_notification, holder_count,
               (group_size > 1 OR names_lot) AS in_lots
        FROM g
        """,
        params,
    ).df()
    n = len(base)
    share = float(base["in_lots"].sum()) / n if n else None
    actors = actors_by_cpv(con, f.territory)
    smes = _local_smes_by_cpv(con, f.territory)
    big = base[(~base["in_lots"]) & (base["amount"] >= rules.large_single_lot)]
    big = big.merge(actors, on="cpv_division", how="left").merge(smes, on="cpv_division", how="left")
    for col in ("ess_structures", "inclusive_structures", "local_smes"):
        big[col] = big[col].fillna(0).astype(int)
    big = big[(big["ess_structures"] + big["local_smes"] + big["inclusive_structures"]) > 0]
    joint = con.execute(
        f"""
        SELECT coalesce(c.id, c.uid) AS contract_id, c.objet AS object, c.holder_count,
               bool_or(s.ess) AS with_ess
        FROM contracts_current c
        JOIN contract_holders_current h USING (import_id, seq)
        LEFT JOIN supplier_class s ON s.supplier_key = coalesce(h.holder_siret, 'NOM:' || upper(h.holder_name))
        WHERE {where} AND c.holder_count > 1
        GROUP BY ALL
        """,
        params,
    ).df()
    return {
        "contracts": n,
        "contracts_with_lots_share": share,
        "single_lot_large": big.sort_values("amount", ascending=False),
        "joint": joint,
        "joint_share": (len(joint) / n) if n else None,
        "joint_with_ess": int(joint["with_ess"].fillna(False).sum()) if len(joint) else 0,
    }


def _local_smes_by_cpv(con, territory: Territory | None) -> pd.DataFrame:
    """cpv_division, local_smes: SMEs of the SIRENE extract located in the territory."""
    if territory is None:
        return pd.DataFrame({"cpv_division": pd.Series(dtype=str), "local_smes": pd.Series(dtype=int)})
    cond, params = _territory_filter(territory, "rc2")
    col = territory.column
    col_map = {
        "departement_code": "code_departement",
        "region_code": "code_region",
        "epci_siren": "epci_siren",
        "commune_code": "current_code",
    }[col]
    cond = cond.replace(f"rc2.{col}", f"rc2.{col_map}")
    return con.execute(
        f"""
        SELECT m.cpv_division, count(DISTINCT e.siret) AS local_smes
        FROM sirene_etablissements_current e
        JOIN sirene_unites_current u USING (siren)
        JOIN ref_communes rc2 ON rc2.code_commune = e.commune_code
        JOIN {_naf_map_sql()} m ON m.naf_division = substr(replace(coalesce(e.naf, u.naf), '.', ''), 1, 2)
        WHERE {cond} AND (u.categorie_entreprise = 'PME' OR u.categorie_entreprise IS NULL)
        GROUP BY 1
        """,
        params,
    ).df()


def sourcing_directory(
    con: duckdb.DuckDBPyConnection, f: Filters, cpv_division: str | None = None
) -> pd.DataFrame:
    """ESS and inclusive actors of the territory for a category: siret, name, type,
    inclusive_family, naf, commune, departement_code, distance_km (from the buyer),
    past_spend (all years, with the buyer), lon, lat."""
    from analytics import referential

    actors = territory_actors(con, f.territory)
    if cpv_division:
        nafs = set(CPV_NAF.get(cpv_division, ()))
        actors = actors[actors["naf_division"].isin(nafs)]
    spend = con.execute(
        "SELECT supplier_siret AS siret, sum(amount)::DOUBLE AS past_spend FROM mandats "
        "WHERE supplier_siret IS NOT NULL GROUP BY 1"
    ).df()
    df = actors.merge(spend, on="siret", how="left")
    df["past_spend"] = df["past_spend"].fillna(0.0)
    point = referential.buyer_point(con)
    if point is not None and len(df):
        import numpy as np

        lon0, lat0 = np.radians(point[0]), np.radians(point[1])
        lon, lat = np.radians(df["lon"].astype(float)), np.radians(df["lat"].astype(float))
        a = np.sin((lat - lat0) / 2) ** 2 + np.cos(lat0) * np.cos(lat) * np.sin((lon - lon0) / 2) ** 2
        df["distance_km"] = 2 * 6371.0 * np.arcsin(np.sqrt(a))
    else:
        df["distance_km"] = None
    df["type"] = [
        (k if isinstance(k, str) else "") + (" · ESS" if e and isinstance(k, str) else "ESS" if e else "")
        for k, e in zip(df["inclusive_kind"], df["ess"])
    ]
    cols = [
        "siret",
        "name",
        "type",
        "inclusive_family",
        "naf",
        "commune",
        "departement_code",
        "distance_km",
        "past_spend",
        "lon",
        "lat",
    ]
    return df[cols].sort_values(["past_spend", "distance_km"], ascending=[False, True]).reset_index(drop=True)


def _add_months(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    import calendar

    return dt.date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _records(df: pd.DataFrame, cols: list[str]) -> list[dict]:
    out = []
    for r in df[cols].to_dict(orient="records"):
        out.append(
            {
                k: (
                    v.isoformat()
                    if isinstance(v, (dt.date, pd.Timestamp))
                    else (None if v != v else v)
                    if isinstance(v, float)
                    else v
                )
                for k, v in r.items()
            }
        )
    return out


def opportunities(
    con: duckdb.DuckDBPyConnection,
    f: Filters,
    rules: ReservationRules | None = None,
    as_of: dt.date | None = None,
) -> dict:
    """The CLI contract: renewals, reservation, under_40k / over_40k, lots (+ rules)."""
    rules = rules or ReservationRules()
    ren = renewals(con, f, as_of=as_of)
    res = reservation(con, f, rules)
    thr = purchases_by_threshold(con, f, rules)
    lot = lots(con, f, rules)
    has_t = f.territory is not None
    ren_out = ren.copy()
    ren_out["end_date"] = [d.isoformat() if d is not None else None for d in ren_out["end_date"]]
    return {
        "as_of": (as_of or dt.date.today()).isoformat(),
        "territory": str(f.territory) if f.territory else None,
        "period": f.period_dict(),
        "renewals": _records(
            ren_out,
            [
                "contract_id",
                "object",
                "cpv_division",
                "end_date",
                "amount",
                "ess_structures",
                "inclusive_structures",
                "horizon",
            ],
        ),
        "reservation": _records(
            res, ["cpv_division", "label", "spend", "inclusive_structures", "recommendation", "rule"]
        ),
        "under_40k": _shares(thr[thr["side"] == "under"], has_t),
        "over_40k": _shares(thr[thr["side"] == "over"], has_t),
        "lots": {
            "contracts_with_lots_share": lot["contracts_with_lots_share"],
            "single_lot_large": _records(
                lot["single_lot_large"],
                [
                    "contract_id",
                    "object",
                    "cpv_division",
                    "amount",
                    "ess_structures",
                    "inclusive_structures",
                    "local_smes",
                ],
            ),
            "joint_share": lot["joint_share"],
            "joint_with_ess": lot["joint_with_ess"],
        },
        "rules": asdict(rules),
    }


def format_summary(d: dict) -> str:
    from analytics import fmt

    out = [f"Leviers — période du {fmt.fmt_date(d['period']['from'])} au {fmt.fmt_date(d['period']['to'])}"]
    by_h = {h: [r for r in d["renewals"] if r["horizon"] == h] for h in (6, 12, 18)}
    out.append("Renouvellements : " + ", ".join(f"{len(v)} dans {h} mois" for h, v in by_h.items()))
    for r in d["renewals"][:10]:
        out.append(
            f"  - {fmt.fmt_date(r['end_date'])} {r['object'] or r['contract_id']} ({fmt.fmt_eur(r['amount'])}) : "
            f"{r['ess_structures']} ESS, {r['inclusive_structures']} inclusives sur le territoire"
        )
    out.append("Potentiel de réservation :")
    for r in d["reservation"][:15]:
        out.append(
            f"  - {r['cpv_division']} {r['label'] or ''} : {fmt.fmt_eur(r['spend'])}, "
            f"{r['inclusive_structures']} structures → {r['recommendation']} ({r['rule']})"
        )
    for key, label in (("under_40k", "Achats < 40 000 € HT"), ("over_40k", "Achats ≥ 40 000 € HT")):
        v = d[key]
        out.append(
            f"{label} : {fmt.fmt_eur(v['spend'])} ; local {fmt.fmt_pct(v['local_share'])}, "
            f"ESS {fmt.fmt_pct(v['ess_share'])}, inclusif {fmt.fmt_pct(v['inclusive_share'])}"
        )
    lot = d["lots"]
    out.append(
        f"Marchés allotis : {fmt.fmt_pct(lot['contracts_with_lots_share'])} ; "
        f"grands marchés non allotis avec offre locale : {len(lot['single_lot_large'])}"
    )
    return "\n".join(out)

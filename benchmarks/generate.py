"""Generate mandats exports in the real shape, and the matching SIRENE extract.

Windows-1252, ';', decimal comma with no-break-space thousands, dd/mm/yyyy, valid
SIRETs, 16 columns; 100k suppliers with heavy-tailed (Pareto) spend. Deterministic.

    python benchmarks/generate.py --lines 1000000 --out benchmarks/out
"""

from __future__ import annotations

import argparse
import codecs
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd


def luhn_complete(bodies: np.ndarray, width: int) -> np.ndarray:
    """Append the Luhn check digit to integer bodies of ``width`` digits (vectorised)."""
    digits = np.array([(bodies // 10**k) % 10 for k in range(width)])  # k=0 is the last digit
    # the check digit will sit at position 0, so body digits at even k are doubled
    doubled = digits * np.where(np.arange(width)[:, None] % 2 == 0, 2, 1)
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    check = (10 - doubled.sum(axis=0) % 10) % 10
    return bodies * 10 + check


NATURES = ["60632", "6068", "611", "6156", "6231", "2313", "2315", "6288", "65111", "6042"]
# chef-lieu commune (COG) of each département used
CHEF_LIEU = {
    "59": "59350",
    "62": "62041",
    "80": "80021",
    "02": "02408",
    "75": "75056",
    "92": "92050",
    "69": "69123",
    "13": "13055",
    "33": "33063",
    "67": "67482",
}
SERVICES = [
    "Direction des routes",
    "Direction des collèges",
    "Direction de l'autonomie",
    "Direction de l'enfance",
    "Direction des systèmes d'information",
    "Direction du patrimoine",
    "Direction de l'insertion",
    "Direction de la culture",
]
DEPS = ["59"] * 50 + ["62"] * 10 + ["80", "02", "75", "92", "69", "13", "33", "67"] * 5


def make_suppliers(con: duckdb.DuckDBPyConnection, n_suppliers: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    i = np.arange(n_suppliers, dtype=np.int64)
    siren = luhn_complete(10_000_000 + i * 37, 8)
    siret = luhn_complete(siren * 10_000 + 1, 13)
    sup = pd.DataFrame(
        {
            "i": i,
            "siren": [f"{x:09d}" for x in siren],
            "siret": [f"{x:014d}" for x in siret],
            "dep": rng.choice(DEPS, n_suppliers),
            # Pareto weights: a few suppliers take most of the spend
            "w": rng.pareto(1.16, n_suppliers) + 1,
            "name": [f"FOURNISSEUR {x}" for x in i],
        }
    )
    sup["commune"] = sup["dep"].map(CHEF_LIEU)
    con.execute("CREATE OR REPLACE TABLE sup AS SELECT * FROM sup")
    con.execute(
        "CREATE OR REPLACE TABLE sup_cdf AS SELECT i, sum(w) OVER (ORDER BY i) / sum(w) OVER () AS c FROM sup"
    )
    con.execute("SELECT setseed(0.42)")


def write_mandats(
    path: Path, n_lines: int, n_suppliers: int = 100_000, seed: int = 42, year: int = 2025
) -> dict:
    """Write one export of n_lines for one exercice (``year``); returns size and timing.

    The same 100k suppliers every year (a buyer's suppliers recur); each year draws its
    own amounts, dates and supplier mix."""
    t0 = time.perf_counter()
    con = duckdb.connect()
    make_suppliers(con, n_suppliers, seed)
    if year != 2025:  # 2025 keeps the draw of the earlier benchmark runs
        con.execute("SELECT setseed(?)", [(year % 97) / 100])
    year = int(year)
    tmp = path.with_suffix(".utf8.csv")
    natures = "[" + ",".join(f"'{n}'" for n in NATURES) + "]"
    services = "[" + ",".join("'" + s.replace("'", "''") + "'" for s in SERVICES) + "]"
    con.execute(
        f"""
        COPY (
            WITH l AS (
                SELECT i, random() AS r, random() AS a, random() AS d, random() AS s
                FROM range({n_lines}) t(i)
            ), j AS (
                SELECT l.*, c.i AS sup_i FROM l ASOF JOIN sup_cdf c ON c.c >= l.r
            )
            SELECT {year} AS "Exercice",
                   'PRINCIPAL' AS "Budget",
                   CAST(1 + j.i // 200 AS VARCHAR) AS "N° bordereau",
                   CAST(1 + j.i // 2 AS VARCHAR) AS "N° mandat",
                   CAST(1 + j.i % 2 AS VARCHAR) AS "N° ligne",
                   strftime(DATE '{year}-01-01' + CAST(floor(d * 360) AS INT), '%d/%m/%Y') AS "Date émission",
                   strftime(DATE '{year}-01-01' + CAST(floor(d * 360) AS INT) - 20, '%d/%m/%Y') AS "Date réception facture",
                   strftime(DATE '{year}-01-01' + CAST(floor(d * 360) AS INT) + 5, '%d/%m/%Y') AS "Date paiement",
                   sup.name AS "Tiers",
                   sup.siret AS "SIRET",
                   sup.dep || '000' AS "Code postal",
                   -- a supplier bills mostly one nature (its trade), as in real ledgers:
                   -- 85 % of its lines on its own nature, the rest spread over all ten
                   {natures}[1 + CASE WHEN hash(j.i) % 100 < 85 THEN j.sup_i ELSE j.i END % {len(NATURES)}] AS "Imputation",
                   {services}[1 + CAST(floor(s * {len(SERVICES)}) AS INT)] AS "Direction",
                   'Prestation n° ' || j.i AS "Objet",
                   replace(replace(format('{{:,.2f}}', round(50 + pow(a, 3) * 20000, 2)), ',', chr(160)), '.', ',') AS "Montant HT",
                   replace(replace(format('{{:,.2f}}', round((50 + pow(a, 3) * 20000) * 1.2, 2)), ',', chr(160)), '.', ',') AS "Montant TTC"
            FROM j JOIN sup ON sup.i = j.sup_i
            ORDER BY j.i
        ) TO '{tmp}' (HEADER, DELIMITER ';', QUOTE '"')
        """
    )
    # the real shape is Windows-1252
    enc = codecs.getincrementalencoder("cp1252")()
    with open(tmp, encoding="utf-8") as src, open(path, "wb") as dst:
        for chunk in iter(lambda: src.read(1 << 23), ""):
            dst.write(enc.encode(chunk))
    tmp.unlink()
    return {"lines": n_lines, "bytes": path.stat().st_size, "seconds": time.perf_counter() - t0}


# The official flat CSV of the DECP (data.gouv.fr "decp augmenté"), as in
# ../shared/data/decp/decp-processing__decp_augmente_valides_2022_test.csv: 58 columns, one
# row per contract, "CDL" / "MQ" for empty values.
DECP_COLUMNS = (
    "titulaire_id_1;titulaire_typeIdentifiant_1;titulaire_id_2;titulaire_typeIdentifiant_2;"
    "titulaire_id_3;titulaire_typeIdentifiant_3;id;nature;objet;codeCPV;procedure;dureeMois;"
    "dateNotification;datePublicationDonnees;montant;formePrix;attributionAvance;offresRecues;"
    "marcheInnovant;ccag;sousTraitanceDeclaree;typeGroupementOperateurs;idAccordCadre;source;"
    "acheteur.id;lieuExecution.code;lieuExecution.typeCode;considerationsSociales;"
    "considerationsEnvironnementales;modalitesExecution;techniques;typesPrix;tauxAvance;"
    "origineUE;origineFrance;idActeSousTraitance;dureeMoisActeSousTraitance;"
    "dateNotificationActeSousTraitance;datePublicationDonneesActeSousTraitance;"
    "montantActeSousTraitance;variationPrixActeSousTraitance;idSousTraitant;"
    "typeIdentifiantSousTraitant;idModification;montantModification;dureeMoisModification;"
    "idTitulaireModification;typeIdentifiantTitulaireModification;"
    "dateNotificationModificationModification;datePublicationDonneesModificationModification;"
    "idModificationActeSousTraitance;dureeMoisModificationActeSousTraitance;"
    "dateNotificationModificationSousTraitanceModificationActeSousTraitance;"
    "montantModificationActeSousTraitance;datePublicationDonneesModificationActeSousTraitance"
).split(";")
CPV = [
    "45233140-2", "90910000-9", "79710000-4", "72000000-5", "30192000-1", "55523100-3",
    "71000000-8", "45210000-2", "09134100-8", "34144900-7", "80500000-9", "77310000-6",
    "45262522-6", "50110000-9", "66510000-8", "79341000-6",
]  # fmt: skip
PROCEDURES = [
    "Procédure adaptée",
    "Appel d'offres ouvert",
    "Procédure adaptée",
    "Marché négocié sans publicité",
]
BUYER_SIRET = "22590001000015"  # a département's SIRET shape (the mandats carry none)


def write_decp(
    path: Path, years: list[int], per_year: int, n_suppliers: int = 100_000, seed: int = 42
) -> dict:
    """Contracts notified over ``years`` (``per_year`` each) in the official flat CSV
    (UTF-8, ';'), held by the same suppliers as the mandats (heavier suppliers hold more
    contracts), 10 % held jointly by two; 15 % with a social clause, 2 % reserved, 25 %
    with an environmental clause. Deterministic."""
    t0 = time.perf_counter()
    con = duckdb.connect()
    make_suppliers(con, n_suppliers, seed)
    n = per_year * len(years)
    years_sql = "[" + ",".join(str(int(y)) for y in years) + "]"
    cpv = "[" + ",".join(f"'{c}'" for c in CPV) + "]"
    procs = "[" + ",".join("'" + p.replace("'", "''") + "'" for p in PROCEDURES) + "]"
    known = {
        "titulaire_id_1": "s1.siret",
        "titulaire_typeIdentifiant_1": "'SIRET'",
        "titulaire_id_2": "CASE WHEN k.i % 10 = 0 THEN s2.siret ELSE 'CDL' END",
        "titulaire_typeIdentifiant_2": "CASE WHEN k.i % 10 = 0 THEN 'SIRET' ELSE 'CDL' END",
        "id": "CAST(k.y AS VARCHAR) || '-' || lpad(CAST(k.i AS VARCHAR), 6, '0')",
        "nature": "'Marché'",
        "objet": "'Marché n° ' || k.i || ' : prestations'",
        "codeCPV": f"{cpv}[1 + k.i % {len(CPV)}]",
        "procedure": f"{procs}[1 + (k.i // 7) % {len(PROCEDURES)}]",
        "dureeMois": "CAST(12 + (k.i % 4) * 12 AS VARCHAR)",
        "dateNotification": "strftime(make_date(k.y, 1, 1) + CAST(floor(k.d * 360) AS INT), '%Y-%m-%d')",
        "datePublicationDonnees": "strftime(make_date(k.y, 1, 1) + CAST(floor(k.d * 360) AS INT) + 10, '%Y-%m-%d')",
        "montant": "CAST(round(5000 + pow(k.a, 4) * 2000000, 2) AS VARCHAR)",
        "formePrix": "'Unitaire'",
        "offresRecues": "CAST(1 + k.i % 6 AS VARCHAR)",
        "marcheInnovant": "'false'",
        "ccag": "'Fournitures courantes et services'",
        "typeGroupementOperateurs": "CASE WHEN k.i % 10 = 0 THEN 'Conjoint' ELSE 'Pas de groupement' END",
        "source": "'benchmark'",
        "acheteur.id": f"'{BUYER_SIRET}'",
        "lieuExecution.code": "s1.dep",
        "lieuExecution.typeCode": "'Code département'",
        "considerationsSociales": "CASE WHEN k.i % 50 = 3 THEN '[''Marché réservé'']' "
        "WHEN k.i % 100 < 15 THEN '[''Clause sociale'']' ELSE '[''Pas de considération sociale'']' END",
        "considerationsEnvironnementales": "CASE WHEN k.i % 4 = 1 THEN '[''Clause environnementale'']' "
        "ELSE '[''Pas de considération environnementale'']' END",
        "tauxAvance": "CASE WHEN k.i % 3 = 0 THEN '0.2' ELSE '0.0' END",
    }
    empty = "'CDL'"
    cols = ",\n".join(known.get(c, empty) + f' AS "{c}"' for c in DECP_COLUMNS)
    con.execute(
        f"""
        COPY (
            WITH k AS (
                SELECT i, {years_sql}[1 + i // {per_year}] AS y, random() AS d, random() AS a,
                       random() AS r1, random() AS r2
                FROM range({n}) t(i)
            ), j AS (
                SELECT k.*, c1.i AS s1_i FROM k ASOF JOIN sup_cdf c1 ON c1.c >= k.r1
            ), jj AS (
                SELECT j.*, c2.i AS s2_i FROM j ASOF JOIN sup_cdf c2 ON c2.c >= j.r2
            )
            SELECT {cols}
            FROM jj k JOIN sup s1 ON s1.i = k.s1_i JOIN sup s2 ON s2.i = k.s2_i
            ORDER BY k.i
        ) TO '{path}' (HEADER, DELIMITER ';', QUOTE '"')
        """
    )
    return {"contracts": n, "bytes": path.stat().st_size, "seconds": time.perf_counter() - t0}


def write_sirene(path: Path, n_suppliers: int = 100_000, seed: int = 42) -> dict:
    """A StockEtablissement-shaped extract for the generated suppliers (UTF-8, ',')."""
    con = duckdb.connect()
    make_suppliers(con, n_suppliers, seed)
    con.execute(
        f"""
        COPY (
            SELECT siren, substr(siret, 10, 5) AS nic, siret, 'true' AS etablissementSiege,
                   commune AS codeCommuneEtablissement, dep || '000' AS codePostalEtablissement,
                   ['62.01Z', '43.21A', '81.21Z', '71.12B', '56.29A', '49.41A'][1 + i % 6]
                       AS activitePrincipaleEtablissement,
                   ['01', '03', '11', '21', '32', '42'][1 + i % 6] AS trancheEffectifsEtablissement,
                   'A' AS etatAdministratifEtablissement, name AS denominationUniteLegale,
                   ['5710', '5499', '9220', '5458'][1 + i % 4] AS categorieJuridiqueUniteLegale,
                   ['PME', 'PME', 'PME', 'ETI', 'GE', ''][1 + i % 6] AS categorieEntreprise,
                   CASE WHEN i % 25 = 0 THEN 'O' ELSE 'N' END AS economieSocialeSolidaireUniteLegale
            FROM sup
        ) TO '{path}' (HEADER, DELIMITER ',')
        """
    )
    return {"rows": n_suppliers, "bytes": path.stat().st_size}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--suppliers", type=int, default=100_000)
    p.add_argument("--year", type=int, default=2025)
    p.add_argument("--out", default="benchmarks/out")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(write_sirene(out / "sirene.csv", a.suppliers))
    print(write_mandats(out / f"mandats_{a.year}_{a.lines}.csv", a.lines, a.suppliers, year=a.year))


if __name__ == "__main__":
    main()

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

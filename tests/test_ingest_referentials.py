"""Importers of referentials: SIRENE extracts, inclusive-structure and ESS lists,
insertion-hours follow-up."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import duckdb
import pytest
from stdnum.fr import siren as stdnum_siren
from stdnum.fr import siret as stdnum_siret

from analytics import ingest, referential, store
from analytics.ingest.common import ImportRefused, Options
from analytics.ingest.sirene import siren_valid_sql, siret_valid_sql

ROOT = Path(__file__).resolve().parent.parent
ETAB_SAMPLE = "sirene/data-fair-processing-sirene__test_stock_etablissement_sample.csv"
UNIT_SAMPLE = "sirene/joao-sdx-mailing__StockUniteLegale_echantillon_2026.csv"
ESS_FLAGS = "sirene/ess-numerique-database__04_ess_flag_insee.csv"
ESS_ENRICHED = "sirene/ess-numerique-database__x_label_studio_sirene_enriched.csv"
SIAE = "inclusion/le-marche__fixtures_siaes.csv"
needs_ref = pytest.mark.skipif(
    not (store.REF_DIR / "communes.parquet").exists(), reason="data/ref absent"
)


def _luhn_digit(body: str) -> str:
    return next(d for d in "0123456789" if stdnum_siren.luhn.is_valid(body + d))


def siren_of(n: int) -> str:
    body = f"{n:08d}"
    return body + _luhn_digit(body)


def siret_of(siren: str, nic: int = 1) -> str:
    body = siren + f"{nic:04d}"
    return body + _luhn_digit(body)


def imp(con, kind, path, **opts):
    return ingest.import_file(con, kind, path, Options(**opts))


def snapshot(con) -> dict:
    tables = ("imports", "rejected_rows", "sirene_etablissements", "sirene_unites", "structures",
              "ess_list", "insertion_hours", "supplier_class")
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


# --- identifier checks in SQL -------------------------------------------------------------


def test_sql_identifier_checks_equal_stdnum():
    rng = random.Random(7)
    values = ["".join(rng.choice("0123456789") for _ in range(14)) for _ in range(30000)]
    values += ["356000000" + "".join(rng.choice("0123456789") for _ in range(5)) for _ in range(5000)]
    values += ["35600000000048", "35600000049837", "73282932000074", "1234567890123", "", "7328293200007A",
               "abcdefghijklmn"]
    values += [siret_of(siren_of(n), k) for n in range(50) for k in range(3)]
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest($v) AS s", {"v": values})
    got = dict(con.execute(f"SELECT s, {siret_valid_sql('s')} FROM t").fetchall())
    assert [v for v in values if bool(got[v]) != stdnum_siret.is_valid(v)] == []
    assert sum(1 for v in values if v.startswith("356") and got[v]) > 500  # La Poste exception used
    sirens = sorted({v[:9] for v in values})
    con.execute("CREATE TABLE u AS SELECT unnest($v) AS s", {"v": sirens})
    got = dict(con.execute(f"SELECT s, {siren_valid_sql('s')} FROM u").fetchall())
    assert [v for v in sirens if bool(got[v]) != stdnum_siren.is_valid(v)] == []


# --- SIRENE ---------------------------------------------------------------------------


@needs_ref
def test_sirene_real_samples(con, shared):
    r = imp(con, "sirene", shared / ETAB_SAMPLE)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.rows_duplicate) == (99, 99, 0, 0)
    assert r.details["extract"] == "StockEtablissement" and r.details["unites"] == 0
    n_siege, n_communes, n_naf = con.execute(
        "SELECT count(*) FILTER (WHERE siege), count(commune_code), count(naf) FROM sirene_etablissements"
    ).fetchone()
    assert n_communes > 90 and n_naf > 90 and n_siege > 0
    assert con.execute(
        "SELECT commune_code, postcode, naf, etat, date_creation::VARCHAR FROM sirene_etablissements "
        "WHERE siret = '00032517500016'"
    ).fetchone() == ("98727", "98770", "32.12Z", "F", "2000-09-26")
    r = imp(con, "sirene", shared / UNIT_SAMPLE)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (9, 9, 0)
    assert r.details["extract"] == "StockUniteLegale"
    assert con.execute(
        "SELECT denomination, categorie_juridique, categorie_entreprise, tranche_effectifs, naf, ess,"
        " nic_siege FROM sirene_unites WHERE siren = '016750697'"
    ).fetchone() == ("ETS J VIRLY S A", "5710", "ETI", "31", "77.39Z", "N", "00050")
    r = imp(con, "sirene", shared / ESS_FLAGS)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (3375, 3375, 0)
    assert con.execute(
        "SELECT count(*) FROM sirene_unites WHERE import_id = $i AND ess = 'O'", {"i": r.import_id}
    ).fetchone()[0] == 3375
    # a supplier of that list seen in the data: ESS by the SIRENE flag
    siren = con.execute("SELECT min(siren) FROM sirene_unites WHERE import_id = $i",
                        {"i": r.import_id}).fetchone()[0]
    info = referential.supplier_info(con, siren)
    assert (info["ess"], info["ess_reason"]) == (True, "sirene")


@needs_ref
def test_sirene_rejects_duplicates_and_la_poste(con, tmp_path):
    la_poste = next(f"356000000{n:05d}" for n in range(100, 99999) if stdnum_siret.is_valid(f"356000000{n:05d}"))
    good = siret_of(siren_of(123456))
    lines = [
        "siret;codeCommuneEtablissement;activitePrincipaleEtablissement;etablissementSiege",
        f"{good};59350;6201Z;true",
        f"{la_poste};75056;53.10Z;false",
        f"{good[:-1]}{(int(good[-1]) + 1) % 10};59350;;",  # bad check digit
        "1234;59350;;",
        ";59350;;",
        f"{good};33063;;",  # same SIRET again: the first is kept
        f"{good[1:]};1001;;",  # 13 digits (lost leading zero) when good starts with 0
    ]
    path = tmp_path / "etab.csv"
    path.write_text("\n".join(lines) + "\n", encoding="cp1252")
    before = snapshot(con)
    r = imp(con, "sirene", path)
    assert r.rows_read == 7
    assert r.rows_rejected == 3
    reasons = {x["line_number"]: x["reason"] for x in r.rejected_sample}
    assert "Luhn" in reasons[4] and "14 chiffres" in reasons[5] and reasons[6] == "SIRET manquant"
    assert r.rows_loaded == 2 and r.rows_duplicate == 2  # line 7 and line 8 (= good)
    assert con.execute(
        "SELECT commune_code, naf, siege FROM sirene_etablissements WHERE siret = $s", {"s": good}
    ).fetchone() == ("59350", "6201Z", True)
    assert snapshot(con)["rejected_rows"] == before["rejected_rows"] + 3


def test_sirene_refused_without_identifier(con, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("nom;commune\nA;Lille\n", encoding="utf-8")
    before = snapshot(con)
    with pytest.raises(ImportRefused, match="siret"):
        imp(con, "sirene", path)
    assert snapshot(con) == before


@needs_ref
def test_sirene_parquet_numeric_ids_and_unit_columns(con, tmp_path):
    # a Parquet extract whose siret / siren / codes were written as numbers (zeros lost),
    # carrying legal-unit columns too: both tables are filled
    s = siret_of(siren_of(4321))  # starts with 000
    assert s.startswith("000")
    path = tmp_path / "stock.parquet"
    duckdb.sql(
        f"""COPY (SELECT {int(s)}::BIGINT AS siret, {int(s[:9])}::BIGINT AS siren,
                   1033::INTEGER AS codeCommuneEtablissement, 'true' AS etablissementSiege,
                   '43.21A' AS activitePrincipaleEtablissement, 1::INTEGER AS trancheEffectifsEtablissement,
                   'ELEC PLUS' AS denominationUniteLegale, 5499.0::DOUBLE AS categorieJuridiqueUniteLegale,
                   'PME' AS categorieEntreprise, 'N' AS economieSocialeSolidaireUniteLegale,
                   'O' AS societeMissionUniteLegale)
            TO '{path}' (FORMAT parquet)"""
    )
    r = imp(con, "sirene", path)
    assert (r.rows_loaded, r.details["unites"], r.details["format"]) == (1, 1, "parquet")
    assert con.execute(
        "SELECT siret, commune_code, tranche_effectifs FROM sirene_etablissements"
    ).fetchone() == (s, "01033", "01")
    assert con.execute(
        "SELECT denomination, categorie_juridique, ess, societe_mission, nic_siege FROM sirene_unites"
    ).fetchone() == ("ELEC PLUS", "5499", "N", "O", s[9:])
    info = referential.supplier_info(con, s)
    # categorieEntreprise PME, the unit's own headcount band unknown: PME (not TPE)
    assert (info["name"], info["commune_code"], info["size_class"], info["societe_mission"]) == (
        "ELEC PLUS", "01033", "PME", True)


@needs_ref
def test_sirene_zip_utf16_and_tab(con, tmp_path):
    s = siret_of(siren_of(777))
    text = f"siret\tcodeCommuneEtablissement\tenseigne1Etablissement\n{s}\t2A004\tCAFÉ ŒUVRE\n"
    raw = tmp_path / "StockEtablissement_utf16.csv"
    raw.write_text(text, encoding="utf-16")
    z = tmp_path / "stock.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(raw, raw.name)
    r = imp(con, "sirene", z)
    assert r.rows_loaded == 1
    assert con.execute("SELECT commune_code, enseigne FROM sirene_etablissements").fetchone() == (
        "2A004", "CAFÉ ŒUVRE")


@needs_ref
def test_sirene_newest_import_wins_and_undo(con, tmp_path):
    from analytics.ingest.common import undo_import

    s = siret_of(siren_of(888))
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_siret,"
        " supplier_identified, amount, amount_basis) VALUES (0, 'x', DATE '2025-01-01', $s, $s, true, 1, 'HT')",
        {"s": s},
    )
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(f"siret,codeCommuneEtablissement\n{s},59350\n")
    b.write_text(f"siret,codeCommuneEtablissement\n{s},33063\n")
    imp(con, "sirene", a)
    assert con.execute("SELECT commune_code FROM supplier_class").fetchone()[0] == "59350"
    r = imp(con, "sirene", b)
    assert con.execute("SELECT commune_code FROM supplier_class").fetchone()[0] == "33063"
    undo_import(con, r.import_id)
    assert con.execute("SELECT commune_code FROM supplier_class").fetchone()[0] == "59350"


# --- inclusive structures ---------------------------------------------------------------


@needs_ref
def test_structures_siae_fixture(con, shared):
    r = imp(con, "structures", shared / SIAE)
    assert r.rows_read == 3853
    # 13 rows carry a SIRET whose check digit is wrong: rejected with their reason
    assert r.rows_rejected == 13 and r.rows_loaded == 3840 and r.rows_duplicate == 0
    assert all("SIRET invalide" in x["reason"] for x in r.rejected_sample)
    assert r.details["kinds"]["ACI"] > 1800 and r.details["kinds"]["EA"] == 2
    fam = dict(con.execute("SELECT family, count(*) FROM structures GROUP BY 1").fetchall())
    assert fam == {"insertion": 3838, "handicap": 2}
    resolved = con.execute("SELECT count(commune_code) FROM structures").fetchone()[0]
    assert resolved > 3700  # postcode (+ city) resolved to a commune code
    assert con.execute(
        "SELECT commune_code, departement_code, longitude IS NOT NULL FROM structures "
        "WHERE siret = '80746931700018'"
    ).fetchone() == ("93063", "93", True)


@needs_ref
def test_structures_synonyms_full_names_and_unknown_kinds(con, tmp_path):
    s1, s2, s3, s4 = (siret_of(siren_of(n)) for n in (501, 502, 503, 504))
    path = tmp_path / "esat.csv"
    path.write_text(
        "N° SIRET;Raison sociale;Type de structure;Code postal;Ville\n"
        f"{s1};ESAT DES FLANDRES;Établissement et service d'aide par le travail;59000;Lille\n"
        f"{s2};EA NORD;Entreprise adaptée;59100;Roubaix\n"
        f"{s3};MYSTERE;Scop;59000;Lille\n"
        f"{s4};;;59000;Lille\n"
        "123;BAD;EI;59000;Lille\n",
        encoding="utf-8",
    )
    r = imp(con, "structures", path)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (5, 2, 3)
    by_line = {x["line_number"]: x for x in r.rejected_sample}
    assert "inconnu" in by_line[4]["reason"] and by_line[4]["raw_value"] == "Scop"
    assert "manquant" in by_line[5]["reason"]
    assert "SIRET" in by_line[6]["reason"]
    assert dict(con.execute("SELECT siret, kind FROM structures").fetchall()) == {s1: "ESAT", s2: "EA"}
    assert con.execute("SELECT commune_code FROM structures WHERE siret = $s", {"s": s2}).fetchone()[0] == "59512"


@needs_ref
def test_structures_default_kind_and_xlsx(con, tmp_path):
    import openpyxl

    s1 = siret_of(siren_of(601))
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Liste des ESAT du Nord", None])
    ws.append(["SIRET", "Nom"])
    ws.append([int(s1), "ESAT UN"])
    path = tmp_path / "esat.xlsx"
    wb.save(path)
    with pytest.raises(ImportRefused, match="type de structure"):
        imp(con, "structures", path)
    r = ingest.import_file(con, "structures", path, Options(extra={"kind": "ESAT"}))
    assert r.rows_loaded == 1
    assert con.execute("SELECT siret, kind, family FROM structures").fetchone() == (s1, "ESAT", "handicap")


# --- ESS lists ------------------------------------------------------------------------


@needs_ref
def test_ess_list_real_file_and_classification(con, shared):
    r = imp(con, "ess", shared / ESS_ENRICHED)
    assert r.rows_read == 3667 and r.rows_loaded + r.rows_rejected + r.rows_duplicate == 3667
    assert r.rows_loaded > 3600
    siren = con.execute("SELECT min(siren) FROM ess_list").fetchone()[0]
    info = referential.supplier_info(con, siren)
    assert (info["ess"], info["ess_reason"]) == (True, "liste")


def test_ess_list_siren_or_siret(con, tmp_path):
    sn = siren_of(901)
    st = siret_of(siren_of(902))
    path = tmp_path / "esus.csv"
    path.write_text(
        "siren,siret,nom,agrément\n"
        f"{sn},,ASSO,ESUS\n"
        f",{st},COOP,ESUS\n"
        "12345,,BAD,ESUS\n"
        ",,VIDE,\n"
        f"{sn},,ASSO BIS,ESUS\n",
        encoding="utf-8",
    )
    r = imp(con, "ess", path)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.rows_duplicate) == (5, 2, 2, 1)
    assert sorted(con.execute("SELECT siren, siret, label FROM ess_list").fetchall(), key=str) == sorted(
        [(sn, None, "ESUS"), (st[:9], st, "ESUS")], key=str)


# --- insertion hours --------------------------------------------------------------------


def test_insertion_hours_formats_and_rejects(con, tmp_path):
    s = siret_of(siren_of(1111))
    path = tmp_path / "suivi.csv"
    path.write_text(
        "N° de marché;SIRET entreprise;Période;Heures d'insertion réalisées;Nb bénéficiaires\n"
        f"2025-001;{s};01/2025;1 234,5;3\n"
        f"2025-001;{s};février 2025;35h30;1\n"
        "2025-002;12345678901234;2025;12;\n"
        "2025-002;;31/03/2025;abc;1\n"
        ";;;;\n"
        "2025-003;;13/2025;5;1\n"
        "2025-003;;2025-04;-3;1\n"
        "2025-004;;15/04/25;1.234,5;2\n"
        ";;01/05/2025;7;1\n",
        encoding="cp1252",
    )
    r = imp(con, "insertion", path)
    assert (r.rows_loaded, r.rows_rejected, r.details["blank_lines"]) == (4, 4, 1)
    reasons = {x["line_number"]: x["reason"] for x in r.rejected_sample}
    assert reasons == {
        5: "Nombre d'heures illisible",
        7: "Période illisible (attendu JJ/MM/AAAA, MM/AAAA ou AAAA)",
        8: "Nombre d'heures négatif",
        10: "N° de marché manquant",
    }
    rows = con.execute(
        "SELECT line_number, contract_id, holder_siret, period_date::VARCHAR, hours, beneficiaries "
        "FROM insertion_hours ORDER BY line_number"
    ).fetchall()
    assert rows == [
        (2, "2025-001", s, "2025-01-31", 1234.5, 3),
        (3, "2025-001", s, "2025-02-28", 35.5, 1),
        (4, "2025-002", None, "2025-12-31", 12.0, None),  # invalid SIRET kept as unknown
        (9, "2025-004", None, "2025-04-15", 1234.5, 2),
    ]
    assert r.details["hours_total"] == 2516.5 and r.details["invalid_sirets_kept_without_siret"] == 1


def test_insertion_overlapping_reexport_not_counted_twice(con, tmp_path):
    head = "Marché;Mois;Heures\n"
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text(head + "M1;01/2025;35\nM1;01/2025;35\nM1;02/2025;20\n")
    b.write_text(head + "M1;01/2025;35\nM1;01/2025;35\nM1;02/2025;20\nM1;03/2025;10\nM1;01/2025;35\n")
    imp(con, "insertion", a)
    r = imp(con, "insertion", b)
    assert (r.rows_loaded, r.rows_duplicate) == (2, 3)
    assert con.execute("SELECT sum(hours) FROM insertion_hours").fetchone()[0] == 35 * 3 + 20 + 10


def test_insertion_refused_without_hours(con, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Marché;Mois\nM1;01/2025\n")
    before = snapshot(con)
    with pytest.raises(ImportRefused, match="heures"):
        imp(con, "insertion", path)
    assert snapshot(con) == before


def test_insertion_xlsx_dates(con, tmp_path):
    import datetime as dt

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Référence du marché", "Date de réalisation", "Nombre d'heures réalisées"])
    ws.append(["M9", dt.datetime(2025, 6, 30), 151.67])
    ws.append(["M9", "07/2025", "12,5"])
    path = tmp_path / "suivi.xlsx"
    wb.save(path)
    r = imp(con, "insertion", path)
    assert r.rows_loaded == 2
    assert con.execute(
        "SELECT period_date::VARCHAR, hours FROM insertion_hours ORDER BY 1"
    ).fetchall() == [("2025-06-30", 151.67), ("2025-07-31", 12.5)]


# --- command line -----------------------------------------------------------------------


@needs_ref
def test_cli_import_structures_json(db_path, shared):
    out = subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db_path), "import", "structures",
         str(shared / SIAE), "--json"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["kind"], got["rows_read"], got["rows_loaded"], got["rows_rejected"]) == (
        "structures", 3853, 3840, 13)


# --- speed: 1,000,000 StockEtablissement rows --------------------------------------------


def write_stock(path: Path, n: int, seed: int = 0) -> None:
    """A StockEtablissement CSV (official 48-column header) of n valid SIRETs, built in SQL."""
    header = (ROOT.parent / "shared" / "data" / ETAB_SAMPLE)
    cols = header.read_text(encoding="utf-8").splitlines()[0].split(",") if header.exists() else [
        "siren", "nic", "siret", "etablissementSiege", "codeCommuneEtablissement",
        "activitePrincipaleEtablissement", "trancheEffectifsEtablissement"]
    con = duckdb.connect()
    # SIREN body = 8 digits, check digit by Luhn; SIRET = SIREN + 4-digit NIC + check digit
    luhn = lambda x, n: "(" + " + ".join(  # noqa: E731
        f"(CASE WHEN ({n} - {i} + 1) % 2 = 0 THEN ((ascii(substr({x}, {i}, 1)) - 48) * 2) % 10"
        f" + ((ascii(substr({x}, {i}, 1)) - 48) * 2) // 10 ELSE ascii(substr({x}, {i}, 1)) - 48 END)"
        for i in range(1, n + 1)) + ")"
    communes = ("59350", "59163", "62041", "75056", "2A004", "97209", "50001", "33063")
    values = {
        "siren": "sr",
        "nic": "right(st, 5)",
        "siret": "st",
        "etablissementSiege": "CASE WHEN i % 3 = 0 THEN 'true' ELSE 'false' END",
        "codeCommuneEtablissement": f"(ARRAY{list(communes)})[1 + i % {len(communes)}]",
        "codePostalEtablissement": "'59000'",
        "activitePrincipaleEtablissement": "'62.01Z'",
        "trancheEffectifsEtablissement": "(ARRAY['NN','01','02','11','21'])[1 + i % 5]",
        "etatAdministratifEtablissement": "'A'",
        "dateCreationEtablissement": "'2015-03-01'",
        "libelleCommuneEtablissement": "'LILLE'",
        "enseigne1Etablissement": "'ENSEIGNE ' || i",
    }
    select = ", ".join(f"{values.get(c, 'NULL')} AS \"{c}\"" for c in cols)
    con.execute(
        f"""COPY (
            WITH b AS (SELECT i, lpad(((i * 7919 + {seed}) % 100000000)::VARCHAR, 8, '0') AS b8
                       FROM range({n}) t(i)),
            s AS (SELECT i, b8 || ((10 - {luhn("(b8 || '0')", 9)} % 10) % 10)::VARCHAR AS sr FROM b),
            t AS (SELECT i, sr, sr || lpad((i % 10000)::VARCHAR, 4, '0') AS b13 FROM s),
            u AS (SELECT i, sr, b13 || ((10 - {luhn("(b13 || '0')", 14)} % 10) % 10)::VARCHAR AS st
                  FROM t)
            SELECT {select} FROM u ORDER BY i
        ) TO '{path}' (HEADER, DELIMITER ',')"""
    )


def test_generated_stock_is_valid(tmp_path):
    path = tmp_path / "stock.csv"
    write_stock(path, 500)
    rows = duckdb.sql(f"SELECT siret, siren FROM read_csv('{path}', all_varchar=true)").fetchall()
    assert len(rows) == 500 and all(stdnum_siret.is_valid(s) and s[:9] == sn for s, sn in rows)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EMPREINTE_BENCH"), reason="set EMPREINTE_BENCH=1 (≈1 min)")
@needs_ref
def test_speed_one_million_stock_etablissement(con, tmp_path):
    """1,000,000 StockEtablissement rows imported and classified (100,000 paid suppliers)."""
    path = tmp_path / "StockEtablissement_1M.csv"
    write_stock(path, 1_000_000)
    con.execute(
        f"""INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_siret,
               supplier_identified, amount, amount_basis)
            SELECT 0, 'k' || row_number() OVER (), DATE '2025-01-01', siret, siret, true, 10, 'HT'
            FROM (SELECT siret FROM read_csv('{path}', all_varchar=true) LIMIT 100000)"""
    )
    t = time.perf_counter()
    r = imp(con, "sirene", path)
    elapsed = time.perf_counter() - t
    print(f"\n[speed] SIRENE 1M rows import + classify: {elapsed:.1f} s "
          f"({r.rows_loaded} loaded, {r.rows_duplicate} duplicates)")
    assert r.rows_read == 1_000_000 and r.rows_rejected == 0
    assert con.execute(
        "SELECT count(*) FROM supplier_class WHERE location_source = 'sirene'"
    ).fetchone()[0] == 100_000


def test_mapping_and_fuzzy_headers(con, tmp_path):
    s = siret_of(siren_of(2468))
    path = tmp_path / "etab.csv"
    path.write_text(f"NUM_ETAB;COMMUNE_INSEE\n{s};59350\n", encoding="utf-8")
    with pytest.raises(ImportRefused):
        imp(con, "sirene", path)
    r = imp(con, "sirene", path, mapping={"NUM_ETAB": "siret", "COMMUNE_INSEE": "codeCommuneEtablissement"})
    assert r.rows_loaded == 1
    assert con.execute("SELECT commune_code FROM sirene_etablissements").fetchone()[0] == "59350"
    path = tmp_path / "suivi.csv"
    path.write_text(
        "Opération;N° du marché public;Date de notification du marché;Mois de réalisation;"
        "Heures d'insertion réalisées (h);Bénéficiaires (nb)\n"
        "OP1;M-77;01/01/2025;03/2025;70;2\n",
        encoding="utf-8",
    )
    r = imp(con, "insertion", path)
    cols = r.details["columns"]
    assert cols["contract_id"] == "N° du marché public"
    assert cols["hours"] == "Heures d'insertion réalisées (h)"
    assert cols["period"] == "Mois de réalisation"
    assert cols["beneficiaries"] == "Bénéficiaires (nb)"
    assert con.execute(
        "SELECT period_date::VARCHAR, hours, beneficiaries FROM insertion_hours"
    ).fetchone() == ("2025-03-31", 70.0, 2)


# --- hostile header text: never SQL ------------------------------------------------------

DROP = '"; DROP TABLE x; --'


class _RecordingConnection:
    """A connection that records every SQL text it is given (and delegates the rest)."""

    def __init__(self, con):
        self._con = con
        self.sql: list[str] = []

    def execute(self, sql, *args, **kw):
        self.sql.append(sql)
        self._con.execute(sql, *args, **kw)
        return self

    def executemany(self, sql, *args, **kw):
        self.sql.append(sql)
        self._con.executemany(sql, *args, **kw)
        return self

    def __getattr__(self, name):
        return getattr(self._con, name)


def _cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}


@needs_ref
def test_hostile_headers_are_data_and_never_sql(con, tmp_path):
    """Headers with quotes, semicolons, a DROP TABLE and non-ASCII text (and headers that
    look like the generated names c0 / _line) import as data; none reaches the SQL text."""
    con.execute("CREATE TABLE x (a INTEGER)")  # the table the headers try to drop
    con.execute("INSERT INTO x VALUES (1)")
    before = _tables(con)
    good, bad = siret_of(siren_of(7001)), "73282932000075"  # bad: wrong check digit
    h_siret = 'N° "SIRET"; DROP TABLE sirene_etablissements; --'
    h_name = "Dénomination « œuvre » l'établissement; é"
    heads = [h_siret, DROP, "c0", "_line", "codeCommuneÉtablissement", h_name]
    sirene = tmp_path / "sirene.csv"
    sirene.write_text(
        ";".join(_cell(h) for h in heads) + "\n"
        f"{good};ENSEIGNE;62.01Z;NN;59350;Société Générale d'œuvres\n"
        f"{bad};X;;;59350;Autre\n"
        f"{good};DOUBLON;;;59350;Doublon\n",
        encoding="utf-8",
    )
    mapping = {h_siret: "siret", DROP: "enseigne", "c0": "naf", "_line": "trancheEffectifsEtablissement",
               h_name: "denominationUniteLegale"}
    rec = _RecordingConnection(con)
    r = ingest.import_file(rec, "sirene", sirene, Options(mapping=mapping))
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.rows_duplicate) == (3, 1, 1, 1)
    assert con.execute(
        "SELECT siret, enseigne, naf, tranche_effectifs, commune_code FROM sirene_etablissements"
    ).fetchone() == (good, "ENSEIGNE", "62.01Z", "NN", "59350")
    assert con.execute("SELECT denomination FROM sirene_unites").fetchone()[0] == "Société Générale d'œuvres"
    assert [(x["column"], x["raw_value"]) for x in r.rejected_sample] == [(h_siret, bad)]

    # a list of structures and an ESS list with hostile headers too
    h_kind = "Type'); DROP TABLE structures; --"
    heads = ['SIRET ; "n°"', DROP, h_kind, "c1", "_line", "Code postal"]
    structures = tmp_path / "structures.csv"
    structures.write_text(
        ";".join(_cell(h) for h in heads) + "\n"
        f"{good};Ésat « Les Près »;ACI;source;9;59000\n"
        f"{siret_of(siren_of(7002))};Autre;PAS UN TYPE;;;59000\n",
        encoding="utf-8",
    )
    r = ingest.import_file(rec, "structures", structures, Options(
        mapping={'SIRET ; "n°"': "siret", DROP: "name", h_kind: "kind", "c1": "source"}))
    assert (r.rows_loaded, r.rows_rejected) == (1, 1)
    assert con.execute("SELECT name, kind, source, postcode FROM structures").fetchone() == (
        "Ésat « Les Près »", "ACI", "source", "59000")
    assert [(x["column"], x["raw_value"]) for x in r.rejected_sample] == [(h_kind, "PAS UN TYPE")]
    ess = tmp_path / f"ess{DROP}.csv"
    ess.write_text(f"{_cell(DROP)};{_cell(h_name)}\n{siren_of(7003)};Asso\n12;Bad\n", encoding="utf-8")
    r = ingest.import_file(rec, "ess", ess, Options(mapping={DROP: "siren", h_name: "name"}))
    assert (r.rows_loaded, r.rows_rejected) == (1, 1)
    assert r.rejected_sample[0]["column"] == DROP
    assert con.execute("SELECT name, source FROM ess_list").fetchone() == ("Asso", ess.name)

    assert _tables(con) == before and con.execute("SELECT a FROM x").fetchall() == [(1,)]
    texts = "\n".join(rec.sql)
    for h in (h_siret, h_name, h_kind, 'SIRET ; "n°"', DROP, "TABLE x", "Dénomination", "œuvre"):
        assert h not in texts, h

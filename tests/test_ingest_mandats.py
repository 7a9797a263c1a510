"""Mandats importer: encodings, delimiters, layouts, amounts, dates, keys, ledger, CLI."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import openpyxl
import pytest

from analytics.ingest import Options, import_file
from analytics.ingest import mandats as m
from analytics.ingest.common import ImportRefused, undo_import

ROOT = Path(__file__).resolve().parent.parent

# Valid SIRETs (Luhn) and one valid SIREN, used across the tests.
SIRET_A = "73282932000074"
SIRET_B = "35600000000048"  # La Poste's exception
SIREN_C = "552100554"


def imp(con, path, **kw) -> object:
    return import_file(con, "mandats", path, Options(**kw))


def rows(con, sql="SELECT * FROM mandats ORDER BY line_number") -> list[dict]:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def write(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --- encodings and delimiters ------------------------------------------------------


HELIOS = (
    "Export des mandats – exercice 2025\r\n"
    "Exercice;Budget;N° bordereau;N° mandat;N° ligne;Date d'émission;Date de paiement;Tiers;"
    "SIRET;Code postal;Imputation;Fonction;Objet;Montant HT;Montant TVA;Montant TTC\r\n"
    f"2025;Principal;12;101;1;03/02/2025;14/02/2025;Société Générale d’Études;{SIRET_A};"
    "5000;6068;020;Fournitures œuvres;1\u00a0000,00;200,00;1\u00a0200,00 €\r\n"
    f"2025;Principal;12;101;2;03/02/2025;;Société Générale d’Études;{SIRET_A};"
    "75001;6068;020;Livraison;100,00;20,00;120,00\r\n"
    f"2025;Principal;12;102;1;04/02/2025;;La Poste;{SIRET_B};"
    "75015;6261;020;Affranchissement;;;12 345,67\r\n"
    f"2025;Principal;13;103;1;05/02/2025;;Boulangerie Dupont SARL;{SIREN_C}12345;"
    ";6232;020;Réception;80,00;;\r\n"
    "2025;Principal;13;104;1;06/02/2025;;Dupont & Fils;123;;6068;020;Avoir;;;(50,00)\r\n"
    "2025;Principal;13;105;1;07/02/2025;;;;;6068;020;Sans tiers;;;10,00\r\n"
)


def test_helios_cp1252_semicolon_nbsp(con, tmp_path):
    path = write(tmp_path / "helios.csv", HELIOS, "cp1252")
    r = imp(con, path)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.rows_duplicate) == (6, 6, 0, 0)
    d = r.details
    assert d["encoding"] == "cp1252" and d["delimiter"] == ";" and d["header_line"] == 2
    assert d["columns"]["amount_ttc"] == "Montant TTC"
    assert d["columns"]["payment_date"] == "Date de paiement"
    assert d["columns"]["mandat_date"] == "Date d'émission"
    assert d["line_numbers"] == "exact"
    got = rows(con)
    assert [x["line_number"] for x in got] == [3, 4, 5, 6, 7, 8]
    first = got[0]
    assert first["supplier_name"] == "Société Générale d’Études"  # ’ and é survive
    assert first["objet"] == "Fournitures œuvres"
    assert first["amount"] == Decimal("1200.00") and first["amount_basis"] == "TTC"
    assert (first["amount_ht"], first["amount_tva"], first["amount_ttc"]) == (
        Decimal("1000.00"),
        Decimal("200.00"),
        Decimal("1200.00"),
    )
    assert first["spend_date"] == dt.date(2025, 2, 14)  # payment date first
    assert first["mandat_date"] == dt.date(2025, 2, 3)
    assert first["supplier_postcode"] == "05000"  # leading zero restored
    assert first["supplier_key"] == SIRET_A and first["supplier_identified"]
    assert got[1]["spend_date"] == dt.date(2025, 2, 3)  # no payment date: mandat date
    assert got[2]["amount"] == Decimal("12345.67")  # space thousands
    assert got[2]["supplier_key"] == SIRET_B  # La Poste's Luhn exception
    # Invalid SIRET but its 9 first digits are not taken as a SIREN: name key.
    assert got[3]["amount"] == Decimal("80.00") and got[3]["amount_basis"] == "HT"
    assert got[3]["supplier_key"] == "NOM:BOULANGERIE DUPONT" and not got[3]["supplier_identified"]
    assert got[4]["supplier_key"] == "NOM:DUPONT FILS" and got[4]["amount"] == Decimal("-50.00")
    assert got[4]["supplier_id_raw"] == "123"
    assert got[5]["supplier_key"] == "INCONNU"
    assert r.amount_total == pytest.approx(1200 + 120 + 12345.67 + 80 - 50 + 10)
    assert d["unidentified_lines"] == 3 and d["unidentified_suppliers"] == 3
    assert {x["natural_key"].split("|")[0] for x in got} == {"M"}


def test_utf8_bom_comma_delimiter_dot_decimals(con, tmp_path):
    text = (
        "Date,Fournisseur,SIRET,Montant TTC\n"
        f'25/11/2026,"ACME, Inc",{SIRET_A},1234.56\n'
        '26/11/2026,Bidule,,"1,234.50"\n'
    )
    r = imp(con, write(tmp_path / "bom.csv", text, "utf-8-sig"))
    assert r.details["encoding"] == "utf-8-sig" and r.details["delimiter"] == ","
    got = rows(con)
    assert got[0]["supplier_name"] == "ACME, Inc" and got[0]["amount"] == Decimal("1234.56")
    assert got[1]["amount"] == Decimal("1234.50")
    assert r.amount_total == pytest.approx(2469.06)


def test_utf16_tab(con, tmp_path):
    text = f"Date paiement\tFournisseur\tSIRET\tMontant HT\n25/11/2026\tÉtablissements Œuf\t{SIRET_A}\t1 234,56\n"
    r = imp(con, write(tmp_path / "u16.csv", text, "utf-16"))
    assert r.details["encoding"] == "utf-16" and r.details["delimiter"] == "tab"
    got = rows(con)
    assert got[0]["supplier_name"] == "Établissements Œuf"
    assert got[0]["amount"] == Decimal("1234.56") and got[0]["amount_basis"] == "HT"
    assert got[0]["payment_date"] == dt.date(2026, 11, 25)


def test_pipe_delimiter_crlf(con, tmp_path):
    text = "Date|Fournisseur|Montant\r\n2026-11-25|ACME|12,50\r\n2026-11-26|Bidule|7\r\n"
    r = imp(con, write(tmp_path / "pipe.csv", text))
    assert r.details["delimiter"] == "|" and r.rows_loaded == 2
    assert r.amount_total == pytest.approx(19.5)


def test_quoted_newline_and_blank_lines_keep_physical_line_numbers(con, tmp_path):
    text = (
        "Date;Fournisseur;Objet;Montant\n"  # line 1
        '25/11/2026;ACME;"sur\ndeux lignes";10,00\n'  # lines 2-3
        "\n"  # line 4 (blank)
        '26/11/2026;Bidule;"a ""citation""";abc\n'  # line 5: bad amount
        '27/11/2026;Truc;"trois\nlignes\nici";5,00\n'  # lines 6-8
        "32/11/2026;Machin;x;1,00\n"  # line 9: bad date
    )
    r = imp(con, write(tmp_path / "nl.csv", text))
    assert r.details["line_numbers"] == "exact"
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (4, 2, 2)
    got = rows(con)
    assert [(x["line_number"], x["objet"]) for x in got] == [
        (2, "sur\ndeux lignes"),
        (6, "trois\nlignes\nici"),
    ]
    rej = con.execute(
        "SELECT line_number, column_name, raw_value, reason FROM rejected_rows ORDER BY 1"
    ).fetchall()
    assert rej == [
        (5, "Montant", "abc", "montant illisible"),
        (9, "Date", "32/11/2026", m.DATE_UNREADABLE),
    ]


def test_line_numbers_exact_on_a_large_file(con, tmp_path):
    """Parallel CSV reading keeps the file's order: rejected lines point at the right line."""
    n = 150_000
    bad = {3, 70_001, 149_999}  # record ranks (0-based) whose amount is unreadable
    out = ["Date;Fournisseur;Montant\n"]
    for i in range(n):
        out.append(f"25/11/2026;F{i % 97};{'x' + str(i) if i in bad else str(i % 1000) + ',5'}\n")
    path = write(tmp_path / "big.csv", "".join(out))
    r = imp(con, path)
    assert r.details["line_numbers"] == "exact"
    assert r.rows_rejected == 3 and r.rows_loaded == n - 3
    rej = con.execute("SELECT line_number, raw_value FROM rejected_rows ORDER BY 1").fetchall()
    assert rej == [(i + 2, f"x{i}") for i in sorted(bad)]
    lines = con.execute(
        "SELECT min(line_number), max(line_number), count(DISTINCT line_number) FROM mandats"
    ).fetchall()
    assert lines == [(2, n, n - 3)]  # the last record (line n + 1) is rejected


# --- XLSX, Marché de l'inclusion -----------------------------------------------------


def test_xlsx_serial_dates_float_siret_and_sheet_choice(con, tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    wb.active.append(["Ce classeur contient les mandats"])
    ws = wb.create_sheet("Mandats 2026")
    ws.append(["Extraction du 01/12/2026"])
    ws.append([])
    ws.append(["Date de mandat", "Tiers", "SIRET", "Montant TTC", "Exercice"])
    ws.append([dt.datetime(2026, 11, 25), "ACME", float(SIRET_A), 1234.56, 2026])  # row 4
    ws.append([46000, "Serial", None, -10.0, 2026.0])  # row 5: serial date 46000
    ws.append([None, None, None, None, None])  # row 6: empty
    ws.append(["pas une date", "X", None, 5, 2026])  # row 7
    path = tmp_path / "m.xlsx"
    wb.save(path)
    r = imp(con, path)
    assert r.details["format"] == "xlsx" and r.details["sheet"] == "Mandats 2026"
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (3, 2, 1)
    got = rows(con)
    assert got[0]["line_number"] == 4 and got[0]["supplier_key"] == SIRET_A
    assert got[0]["spend_date"] == dt.date(2026, 11, 25) and got[0]["amount"] == Decimal("1234.56")
    assert got[1]["spend_date"] == dt.date(2025, 12, 9)  # Excel serial 46000
    assert got[1]["exercice"] == 2026
    rej = con.execute("SELECT line_number, column_name, raw_value FROM rejected_rows").fetchall()
    assert rej == [(7, "Date de mandat", "pas une date")]


def test_marche_inclusion_csv_needs_exercice(con, shared):
    path = shared / "inclusion" / "le-marche__tests_sample_purchases.csv"
    with pytest.raises(ImportRefused, match="--exercice"):
        imp(con, path)
    r = imp(con, path, extra={"exercice": 2024})
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (5, 5, 0)
    assert r.amount_total == pytest.approx(15000.50 + 2500 + 75000 + 1200.75 + 50000)
    got = rows(con)
    assert all(x["spend_date"] == dt.date(2024, 12, 31) and x["date_imputed"] for x in got)
    # The sample's SIRETs are fictitious: kept, not identified.
    assert not any(x["supplier_identified"] for x in got)
    assert got[0]["supplier_key"] == "NOM:ENTREPRISE TEST 1"
    assert got[0]["category"] == "Services informatiques" and got[0]["service"] == "Service IT"
    assert r.details["columns"]["amount"] == "Dépense achat (€)"


def test_marche_inclusion_json_fixture(con, shared):
    path = shared / "inclusion" / "le-marche__fixtures_23_purchases.json"
    r = imp(con, path)
    raw = json.loads(path.read_text())
    assert r.rows_loaded == len(raw) == 11
    expected = sum(Decimal(x["fields"]["purchase_amount"]) for x in raw)
    assert Decimal(str(r.amount_total)) == expected
    got = rows(con)
    years = sorted(x["fields"]["purchase_year"] for x in raw)
    assert sorted(x["exercice"] for x in got) == years  # purchase_year
    assert all(x["date_imputed"] and x["spend_date"] == dt.date(x["exercice"], 12, 31) for x in got)
    assert next(x for x in got if x["supplier_name"] == "LA COLLECTERIE")["supplier_key"] == "75187049400026"


def test_mapping_for_an_exotic_layout(con, tmp_path):
    text = "Bénéf.;Valeur payée;Jour;Code;Remarque\nACME;12,00;25/11/2026;6068;x\nBidule;3,00;26/11/2026;6232;y\n"
    path = write(tmp_path / "exotic.csv", text)
    with pytest.raises(ImportRefused, match="Valeur payée"):
        imp(con, path)
    mapping = {
        "Bénéf.": "supplier_name",
        "Valeur payée": "amount_ttc",
        "Jour": "payment_date",
        "Code": "nature",
    }
    r = imp(con, path, mapping=mapping)
    assert r.rows_loaded == 2 and r.amount_total == pytest.approx(15.0)
    assert r.details["columns"]["amount_ttc"] == "Valeur payée"
    assert rows(con)[0]["nature"] == "6068"


def test_mapping_overrides_a_synonym_and_can_ignore(con, tmp_path):
    text = "Fournisseur;Montant;Montant réel;Date\nACME;1,00;2,00;25/11/2026\n"
    path = write(tmp_path / "over.csv", text)
    r = imp(con, path, mapping={"Montant réel": "amount", "Montant": "ignorer"})
    assert r.amount_total == 2.0
    with pytest.raises(ImportRefused, match="champs possibles"):
        imp(con, write(tmp_path / "o2.csv", text + "\n"), mapping={"Montant": "prix"})


# --- amounts, dates, headers ---------------------------------------------------------

AMOUNTS = [
    ("1234,56", "1234.56"),
    ("1 234,56", "1234.56"),
    ("1\u00a0234,56", "1234.56"),
    ("1\u202f234,56", "1234.56"),
    ("1 234,56 €", "1234.56"),
    ("1\u00a0234,56\u00a0€", "1234.56"),
    ("€ 12,5", "12.50"),
    ("12,50 EUR", "12.50"),
    ("1.234,56", "1234.56"),
    ("1.234.567,89", "1234567.89"),
    ("1234.56", "1234.56"),
    ("1,234.56", "1234.56"),
    ("1,234,567.89", "1234567.89"),
    ("1 234 567", "1234567.00"),
    ("-12,50", "-12.50"),
    ("(12,50)", "-12.50"),
    ("12,50-", "-12.50"),
    ("- 1 234,56 €", "-1234.56"),
    ("−12,50", "-12.50"),
    ("+7", "7.00"),
    ("0", "0.00"),
    (",5", "0.50"),
    ("1'234.50", "1234.50"),
    ("12,345", "12.35"),
]
BAD_AMOUNTS = ["abc", "12,5,3", "1.2.3,4.5", "--", "12 ans", "(12"]


@pytest.mark.parametrize("raw,expected", AMOUNTS)
def test_amount_macro(raw, expected):
    c = duckdb.connect()
    c.execute(m.MACROS_SQL)
    assert c.execute("SELECT m_parse_amount($s)", {"s": raw}).fetchall()[0][0] == Decimal(expected)


@pytest.mark.parametrize("raw", BAD_AMOUNTS)
def test_amount_macro_refuses(raw):
    c = duckdb.connect()
    c.execute(m.MACROS_SQL)
    assert c.execute("SELECT m_parse_amount($s)", {"s": raw}).fetchall()[0][0] is None


def test_every_amount_form_through_an_import(con, tmp_path):
    """Fast path and fall-back together, as the loader runs them."""
    lines = ["Date;Fournisseur;Montant"]
    lines += [
        f"25/11/2026;F{i};{raw}" for i, (raw, _) in enumerate(AMOUNTS + [(b, None) for b in BAD_AMOUNTS])
    ]
    r = imp(con, write(tmp_path / "amounts.csv", "\n".join(lines) + "\n", "cp1252" if False else "utf-8"))
    got = {x["line_number"]: x["amount"] for x in rows(con)}
    for i, (_, expected) in enumerate(AMOUNTS):
        assert got[i + 2] == Decimal(expected), AMOUNTS[i]
    assert r.rows_rejected == len(BAD_AMOUNTS)
    assert r.amount_total == pytest.approx(float(sum(Decimal(e) for _, e in AMOUNTS)))


DATES = [
    ("25/11/2026", dt.date(2026, 11, 25)),
    ("5/3/2026", dt.date(2026, 3, 5)),
    ("25/11/26", dt.date(2026, 11, 25)),
    ("2026-11-25", dt.date(2026, 11, 25)),
    ("25-11-2026", dt.date(2026, 11, 25)),
    ("25.11.2026", dt.date(2026, 11, 25)),
    ("2026-11-25T10:30:00", dt.date(2026, 11, 25)),
    ("2026-11-25 10:30:00", dt.date(2026, 11, 25)),
    ("2026-11-25T10:30:00.000Z", dt.date(2026, 11, 25)),
    ("25/11/2026 10:30", dt.date(2026, 11, 25)),
    ("2026/11/25", dt.date(2026, 11, 25)),
    ("20261125", dt.date(2026, 11, 25)),
    ("46000", dt.date(2025, 12, 9)),  # Excel serial
    ("46000.75", dt.date(2025, 12, 9)),
]
BAD_DATES = ["31/02/2026", "2026-13-01", "hier", "12345", "25/11/0026", "1/1/1900", "99999"]


@pytest.mark.parametrize("raw,expected", DATES)
def test_date_macro(raw, expected):
    c = duckdb.connect()
    c.execute(m.MACROS_SQL)
    assert c.execute("SELECT m_parse_date($s)", {"s": raw}).fetchall()[0][0] == expected


@pytest.mark.parametrize("raw", BAD_DATES)
def test_date_macro_refuses(raw):
    c = duckdb.connect()
    c.execute(m.MACROS_SQL)
    assert c.execute("SELECT m_parse_date($s)", {"s": raw}).fetchall()[0][0] is None


def test_every_date_form_through_an_import(con, tmp_path):
    lines = ["Date de paiement;Fournisseur;Montant"]
    lines += [f"{raw};F{i};1" for i, (raw, _) in enumerate(DATES + [(b, None) for b in BAD_DATES])]
    r = imp(con, write(tmp_path / "dates.csv", "\n".join(lines) + "\n"))
    got = {x["line_number"]: x["spend_date"] for x in rows(con)}
    assert got == {i + 2: d for i, (_, d) in enumerate(DATES)}
    assert r.rows_rejected == len(BAD_DATES)


@pytest.mark.parametrize(
    "header,field",
    [
        ("N° Mandat", "mandat_number"),
        ("numero_mandat", "mandat_number"),
        ("Date d'émission", "mandat_date"),
        ("DATE_PAIEMENT", "payment_date"),
        ("Date de réception facture", "invoice_date"),
        ("Raison sociale du Fournisseur", "supplier_name"),
        ("tiers_nom", "supplier_name"),
        ("N° SIRET du titulaire", "supplier_siret"),
        ("SIRET de l'acheteur", "buyer_siret"),
        ("Montant TTC (€)", "amount_ttc"),
        ("Montant TTC en euros", "amount_ttc"),
        ("Mt HT", "amount_ht"),
        ("Montant mandaté", "amount"),
        ("Dépense achat (€)", "amount"),
        ("Montant TVA", "amount_tva"),
        ("Imputation", "nature"),
        ("Catégorie d'achat (optionnelle)", "category"),
        ("Entité acheteuse (optionnelle)", "service"),
        ("N° de marché", "contract_number"),
        ("Code postal du tiers", "supplier_postcode"),
        ("Libellé", "objet"),
        ("Couleur préférée", None),
    ],
)
def test_header_synonyms(header, field):
    assert m.match_header(header) == field


# --- keys, duplicates, ledger --------------------------------------------------------


def test_credit_notes_net_off(con, tmp_path):
    text = (
        "Date;Fournisseur;Montant TTC\n"
        "01/03/2026;ACME;1 000,00\n"
        "02/03/2026;ACME;(300,00)\n"
        "03/03/2026;ACME;200,00-\n"
        "04/03/2026;ACME;-0,50\n"
    )
    r = imp(con, write(tmp_path / "avoirs.csv", text))
    assert r.rows_loaded == 4
    assert r.amount_total == pytest.approx(499.50)
    assert con.execute("SELECT sum(amount) FROM mandats").fetchall()[0][0] == Decimal("499.50")


def _mandat_lines(ids_: list[int], numbered: bool) -> str:
    head = (
        "Exercice;N° mandat;N° ligne;Date;Fournisseur;Montant\n" if numbered else "Date;Fournisseur;Montant\n"
    )
    out = [head]
    for i in ids_:
        if numbered:
            out.append(f"2026;{i};1;0{1 + i % 9}/03/2026;F{i};{i}0,00\n")
        else:
            out.append(f"0{1 + i % 9}/03/2026;F{i};{i}0,00\n")
    return "".join(out)


@pytest.mark.parametrize("numbered", [True, False], ids=["mandat-key", "line-hash"])
def test_overlapping_exports_count_duplicates(con, tmp_path, numbered):
    a = write(tmp_path / "a.csv", _mandat_lines([1, 2, 3, 4, 5], numbered))
    b = write(tmp_path / "b.csv", _mandat_lines([3, 4, 5, 6, 7], numbered))
    ra = imp(con, a)
    rb = imp(con, b)
    assert (ra.rows_loaded, ra.rows_duplicate) == (5, 0)
    assert (rb.rows_read, rb.rows_loaded, rb.rows_duplicate) == (5, 2, 3)
    assert rb.amount_total == pytest.approx(60 + 70)
    assert con.execute("SELECT count(*), count(DISTINCT natural_key) FROM mandats").fetchall() == [(7, 7)]
    prefix = "M" if numbered else "H"
    assert con.execute(f"SELECT bool_and(natural_key LIKE '{prefix}|%') FROM mandats").fetchall()[0][0]


@pytest.mark.parametrize("numbered", [True, False], ids=["mandat-key", "line-hash"])
def test_repeated_lines_found_across_exercices_and_imports(con, tmp_path, numbered):
    """The repeated-line check reads only the stored lines of the file's exercices: a file
    spanning two exercices finds its lines of each, whatever import holds them."""

    def lines(year: int, ids_: list[int]) -> list[str]:
        if numbered:
            return [f"{year};{i};1;0{1 + i % 9}/12/{year};F{i};{i}0,00\n" for i in ids_]
        return [f"0{1 + i % 9}/12/{year};F{i};{i}0,00\n" for i in ids_]

    head = "Exercice;N° mandat;N° ligne;Date;Fournisseur;Montant\n" if numbered else "Date;Fournisseur;Montant\n"
    imp(con, write(tmp_path / "y24.csv", head + "".join(lines(2024, [1, 2, 3]))))
    imp(con, write(tmp_path / "y25.csv", head + "".join(lines(2025, [1, 2]))))
    imp(con, write(tmp_path / "y22.csv", head + "".join(lines(2022, [1]))))
    both = write(tmp_path / "both.csv", head + "".join(lines(2024, [2, 3, 4]) + lines(2025, [2, 5])))
    r = imp(con, both)
    assert (r.rows_read, r.rows_loaded, r.rows_duplicate) == (5, 2, 3)
    got = con.execute("SELECT exercice, count(*) FROM mandats GROUP BY 1 ORDER BY 1").fetchall()
    assert got == [(2022, 1), (2024, 4), (2025, 3)]


def test_identical_lines_are_kept_and_matched_by_occurrence(con, tmp_path):
    line = "01/03/2026;ACME;Ticket;5,00\n"
    head = "Date;Fournisseur;Objet;Montant\n"
    r1 = imp(con, write(tmp_path / "a.csv", head + line * 2))
    assert r1.rows_loaded == 2  # two genuine identical tickets
    r2 = imp(con, write(tmp_path / "b.csv", head + line * 3))
    assert (r2.rows_loaded, r2.rows_duplicate) == (1, 2)
    keys = sorted(x[0].rsplit("#", 1)[1] for x in con.execute("SELECT natural_key FROM mandats").fetchall())
    assert keys == ["1", "2", "3"]


def test_keys_are_scoped_by_buyer_siret(con, tmp_path):
    text = (
        "SIRET de l'acheteur;Exercice;N° mandat;Date;Fournisseur;Montant\n"
        f"{SIRET_A};2026;1;01/03/2026;ACME;10,00\n"
        f"{SIRET_B};2026;1;01/03/2026;ACME;10,00\n"
    )
    r = imp(con, write(tmp_path / "buyers.csv", text))
    assert r.rows_loaded == 2
    assert {x["buyer_siret"] for x in rows(con)} == {SIRET_A, SIRET_B}


def test_same_bytes_twice_is_refused_naming_the_first_import(con, tmp_path):
    path = write(tmp_path / "a.csv", _mandat_lines([1, 2], True))
    first = imp(con, path)
    copy = write(tmp_path / "copy.csv", path.read_text())
    with pytest.raises(ImportRefused, match=rf"import n° {first.import_id} du"):
        imp(con, copy)
    assert con.execute("SELECT count(*) FROM imports").fetchall()[0][0] == 1


def test_undo_then_reimport(con, tmp_path):
    path = write(tmp_path / "a.csv", _mandat_lines([1, 2, 3], True))
    first = imp(con, path)
    out = undo_import(con, first.import_id)
    assert out["removed"]["mandats"] == 3
    assert con.execute("SELECT count(*) FROM mandats").fetchall()[0][0] == 0
    again = imp(con, path)
    assert again.rows_loaded == 3 and again.rows_duplicate == 0
    status = con.execute("SELECT import_id, status FROM imports ORDER BY 1").fetchall()
    assert status == [(first.import_id, "undone"), (again.import_id, "ok")]


def _snapshot(con) -> dict:
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
    ]
    return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}


def test_strict_refuses_and_leaves_the_database_unchanged(con, tmp_path):
    imp(con, write(tmp_path / "ok.csv", _mandat_lines([1], True)))
    before = _snapshot(con)
    text = "Date;Fournisseur;Montant\n01/03/2026;ACME;1,00\n02/03/2026;ACME;abc\n"
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ImportRefused, match=r"Mode strict : 1 ligne\(s\) rejetée\(s\) \(ligne 3, Montant"):
        imp(con, path, strict=True)
    assert _snapshot(con) == before
    assert imp(con, path).rows_rejected == 1  # without --strict the same file imports


def test_progress_is_reported(con, tmp_path):
    seen = []
    imp(con, write(tmp_path / "a.csv", _mandat_lines([1], True)), progress=lambda msg, f: seen.append(f))
    assert seen[0] < seen[-1] == 1.0 and len(seen) >= 4


def test_dateless_file_with_exercice_column(con, tmp_path):
    text = "Exercice;Fournisseur;Montant\n2025;ACME;1,00\n;Bidule;2,00\nvingt;Truc;3,00\n"
    r = imp(con, write(tmp_path / "ex.csv", text))
    assert (r.rows_loaded, r.rows_rejected) == (1, 2)
    reasons = [x[0] for x in con.execute("SELECT reason FROM rejected_rows ORDER BY line_number").fetchall()]
    assert reasons == ["exercice absent", "exercice illisible"]
    r2 = imp(con, write(tmp_path / "ex2.csv", text + "\n"), extra={"exercice": 2024})
    assert r2.rows_loaded == 2 and r2.rows_duplicate == 1  # 2025 line already there


# --- command line -------------------------------------------------------------------


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_import_and_imports_json(tmp_path):
    db = tmp_path / "cli.duckdb"
    path = write(tmp_path / "a.csv", HELIOS, "cp1252")
    out = _cli(db, "import", "mandats", str(path), "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    keys = {
        "import_id",
        "kind",
        "rows_read",
        "rows_loaded",
        "rows_rejected",
        "rows_duplicate",
        "amount_total",
        "contracts",
    }
    assert keys <= set(d)
    assert (d["kind"], d["rows_read"], d["rows_loaded"], d["contracts"]) == ("mandats", 6, 6, None)
    assert d["amount_total"] == pytest.approx(13705.67)
    listing = _cli(db, "imports", "--json")
    assert listing.returncode == 0, listing.stderr
    entries = json.loads(listing.stdout)
    keys = {
        "import_id",
        "kind",
        "file",
        "sha256",
        "status",
        "rows_loaded",
        "rows_rejected",
        "amount_total",
        "finished_at",
    }
    assert keys <= set(entries[0])
    assert (entries[0]["file"], entries[0]["status"], entries[0]["rows_loaded"]) == ("a.csv", "ok", 6)
    again = _cli(db, "import", "mandats", str(path), "--json")
    assert again.returncode == 2 and "déjà été importé (import n° 1" in again.stderr


def test_cli_mapping_and_exercice(tmp_path, shared):
    db = tmp_path / "cli.duckdb"
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"Bénéf.": "supplier_name", "Valeur": "montant ttc"}), encoding="utf-8")
    path = write(tmp_path / "x.csv", "Bénéf.;Valeur;Exercice\nACME;12,00;2025\n")
    out = _cli(db, "import", "mandats", str(path), "--mapping", str(mapping), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["amount_total"] == 12.0
    sample = shared / "inclusion" / "le-marche__tests_sample_purchases.csv"
    refused = _cli(db, "import", "mandats", str(sample))
    assert refused.returncode == 2 and "--exercice" in refused.stderr
    ok = _cli(db, "import", "mandats", str(sample), "--exercice", "2024", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["rows_loaded"] == 5

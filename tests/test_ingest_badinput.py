"""Bad-input corpus for mandats files: each case has a defined outcome.

A refused file leaves every table and the imports ledger exactly as they were; a file
with unreadable lines is imported and its rejected lines are listed with their line
numbers.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import openpyxl
import pytest

from analytics.ingest import Options, common, import_file

SIRET_A = "73282932000074"
GOOD = f"Date;Fournisseur;SIRET;Montant\n25/11/2026;ACME;{SIRET_A};12,00\n"


def _xlsx_bytes() -> bytes:
    wb = openpyxl.Workbook()
    wb.active.append(["Date", "Fournisseur", "Montant"])
    wb.active.append(["25/11/2026", "ACME", 12])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "pas un classeur")
    return buf.getvalue()


def _fake_xlsx_bytes() -> bytes:
    """A zip with an xl/workbook.xml that is not XML: passes the zip checks, not openpyxl."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types")
        z.writestr("xl/workbook.xml", "pas du XML")
    return buf.getvalue()


# name -> (file name, bytes, expected fragment of the refusal message)
REFUSED = {
    "empty": ("vide.csv", b"", "vide"),
    "binary garbage with NULs": ("bin.csv", bytes(range(256)) * 40, "pas un fichier texte"),
    "binary garbage without NULs": (
        "bin2.csv",
        bytes(range(1, 32)) * 200 + b"\xff\xfe" * 100,
        "pas un fichier texte",
    ),
    "html page saved as csv": (
        "page.csv",
        b"<!DOCTYPE html><html><head><title>Mandats</title></head><body><table></table></body></html>",
        "page web (HTML)",
    ),
    "truncated xlsx": ("t.xlsx", _xlsx_bytes()[:700], "illisible ou tronqué"),
    "zip that is not an xlsx": ("z.xlsx", _zip_bytes(), "n'est pas un classeur Excel"),
    "xlsx with a damaged workbook part": ("d.xlsx", _fake_xlsx_bytes(), "Le classeur Excel est illisible"),
    "old .xls": ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "97-2003"),
    "parquet": ("p.csv", b"PAR1" + b"\x00" * 100 + b"PAR1", "Parquet"),
    "header only": ("h.csv", b"Date;Fournisseur;Montant\r\n", "aucune ligne de donn"),
    "header and blank lines only": ("hb.csv", b"Date;Fournisseur;Montant\n\n\n;;\n", "aucune ligne de donn"),
    "no usable header": (
        "words.csv",
        b"le chat;dort bien\nsur le;tapis rouge\nmais pas;ici\n",
        "Aucune ligne d'en-tête reconnue",
    ),
    "title lines only": (
        "titles.csv",
        "Export des mandats\nÉdité le 01/12/2026\n".encode(),
        "Aucune ligne d'en-tête",
    ),
    "missing amount column": (
        "noamount.csv",
        b"Date;Fournisseur;Prix;Code\n25/11/2026;ACME;12;A\n",
        "en-têtes lus : « Date », « Fournisseur », « Prix », « Code »",
    ),
    "missing supplier column": (
        "nosupplier.csv",
        b"Date;Montant;Objet\n25/11/2026;12;x\n",
        "fournisseur (nom ou SIRET)",
    ),
    "all amounts unreadable": (
        "allbad.csv",
        b"Date;Fournisseur;Montant\n25/11/2026;ACME;douze\n26/11/2026;B;\n",
        "Aucune des 2 lignes n'a pu être lue (ligne 2, colonne « Montant » « douze »",
    ),
    "dateless file without exercice": (
        "nodate.csv",
        "Fournisseur;Dépense achat (€)\nACME;12\n".encode(),
        "--exercice",
    ),
    "json that is not a list of purchases": ("x.json", b'{"a": 1, "b": 2}', "Aucune ligne d'en-tête"),
    "invalid json": ("bad.json", b'[{"supplier_name": "A", ', "JSON est illisible"),
    "json list of scalars": ("s.json", b"[1, 2, 3]", "liste d'achats"),
}


def snapshot(con) -> dict:
    """Row counts of every table, plus the ledger itself."""
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
    ]
    out = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}
    out["_ledger"] = con.execute("SELECT import_id, status, sha256 FROM imports ORDER BY 1").fetchall()
    return out


@pytest.fixture
def seeded(con, tmp_path):
    """A database that already holds one import, so 'unchanged' is not trivially empty."""
    path = tmp_path / "seed.csv"
    path.write_text(GOOD, encoding="utf-8")
    import_file(con, "mandats", path, Options())
    return con


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_files_leave_the_database_unchanged(seeded, tmp_path, case):
    name, data, fragment = REFUSED[case]
    path = tmp_path / name
    path.write_bytes(data)
    before = snapshot(seeded)
    with pytest.raises(common.ImportRefused) as info:
        import_file(seeded, "mandats", path, Options())
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and message.endswith(".")  # one sentence
    assert snapshot(seeded) == before
    # The connection is still usable after the rolled-back transaction.
    assert seeded.execute("SELECT count(*) FROM mandats").fetchall()[0][0] == 1


def test_missing_amount_lists_headers_seen_and_expected(seeded, tmp_path):
    path = tmp_path / "noamount.csv"
    path.write_text("Exercice;Tiers;Prix unitaire\n2026;ACME;12\n", encoding="utf-8")
    with pytest.raises(common.ImportRefused) as info:
        import_file(seeded, "mandats", path, Options())
    msg = str(info.value)
    assert "« Exercice », « Tiers », « Prix unitaire »" in msg
    assert "Montant TTC" in msg and "Dépense achat (€)" in msg and "--mapping" in msg


def test_oversize_file_is_refused(seeded, tmp_path, monkeypatch):
    # check_size binds MAX_UPLOAD_BYTES as its default when defined: patch that default.
    monkeypatch.setattr(common, "MAX_UPLOAD_BYTES", 10)
    monkeypatch.setattr(common.check_size, "__defaults__", (10,))
    path = tmp_path / "big.csv"
    path.write_text(GOOD, encoding="utf-8")
    before = snapshot(seeded)
    with pytest.raises(common.ImportRefused, match="taille maximale"):
        import_file(seeded, "mandats", path, Options())
    assert snapshot(seeded) == before


def test_bad_dates_are_rejected_with_line_numbers(seeded, tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text(
        "Date;Fournisseur;Montant\n"
        "25/11/2026;A;1\n"  # 2 ok
        "31/02/2026;B;2\n"  # 3 impossible date
        ";C;3\n"  # 4 no date
        "demain;D;4\n"  # 5 words
        "26/11/2026;E;5\n",  # 6 ok
        encoding="utf-8",
    )
    r = import_file(seeded, "mandats", path, Options())
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (5, 2, 3)
    rej = seeded.execute(
        "SELECT line_number, column_name, raw_value, reason FROM rejected_rows "
        "WHERE import_id = $i ORDER BY 1",
        {"i": r.import_id},
    ).fetchall()
    assert [(x[0], x[1], x[2]) for x in rej] == [
        (3, "Date", "31/02/2026"),
        (4, "Date", None),
        (5, "Date", "demain"),
    ]
    assert rej[1][3] == "date absente" and rej[0][3].startswith("date illisible")
    assert [x["line_number"] for x in r.rejected_sample] == [3, 4, 5]


def test_invalid_sirets_are_kept_unidentified(seeded, tmp_path):
    path = tmp_path / "sirets.csv"
    path.write_text(
        "Date;Fournisseur;SIRET;Montant\n"
        "25/11/2026;A;12345678901234;1\n"
        "25/11/2026;B;pas de siret;2\n"
        "25/11/2026;;;3\n"
        "25/11/2026;D;552 100 554;4\n",
        encoding="utf-8",
    )
    r = import_file(seeded, "mandats", path, Options())
    assert (r.rows_loaded, r.rows_rejected) == (4, 0)
    got = seeded.execute(
        "SELECT supplier_key, supplier_identified, supplier_id_raw FROM mandats "
        "WHERE import_id = $i ORDER BY line_number",
        {"i": r.import_id},
    ).fetchall()
    assert got == [
        ("NOM:A", False, "12345678901234"),
        ("NOM:B", False, "pas de siret"),
        ("INCONNU", False, None),
        ("SIREN:552100554", True, "552 100 554"),
    ]
    assert r.details["unidentified_lines"] == 3


INJECTION = '"; DROP TABLE mandats; --'


def test_sql_like_headers_and_values_are_data(seeded, tmp_path):
    quoted = '"' + INJECTION.replace('"', '""') + '"'  # CSV quoting of the text
    path = tmp_path / "inject.csv"
    path.write_text(
        f"Date;Fournisseur;Montant;{quoted};Objet\n"
        f'25/11/2026;"Robert\'); DROP TABLE mandats; --";12,00;x;{quoted}\n',
        encoding="utf-8",
    )
    r = import_file(seeded, "mandats", path, Options(mapping={INJECTION: "service"}))
    assert r.rows_loaded == 1
    row = seeded.execute(
        "SELECT supplier_name, objet, service FROM mandats WHERE import_id = $i", {"i": r.import_id}
    ).fetchall()
    assert row == [("Robert'); DROP TABLE mandats; --", INJECTION, "x")]
    assert r.details["columns"]["service"] == INJECTION
    assert seeded.execute("SELECT count(*) FROM mandats").fetchall()[0][0] == 2


def test_injection_in_unmapped_header_is_listed_not_run(seeded, tmp_path):
    path = tmp_path / "inject2.csv"
    path.write_text(f"{INJECTION};Prix\nA;1\n", encoding="utf-8")
    before = snapshot(seeded)
    with pytest.raises(common.ImportRefused):
        import_file(seeded, "mandats", path, Options())
    assert snapshot(seeded) == before


def test_unbalanced_quote_rejects_from_its_line(seeded, tmp_path):
    """A quote never closed swallows the rest of the file into one field: that record is
    rejected at the line where it starts, the lines before are imported."""
    path = tmp_path / "quote.csv"
    path.write_text(
        'Date;Fournisseur;Montant\n25/11/2026;A;1\n25/11/2026;"B;2\n25/11/2026;C;3\n', encoding="utf-8"
    )
    r = import_file(seeded, "mandats", path, Options())
    assert (r.rows_loaded, r.rows_rejected) == (1, 1)
    assert [x["line_number"] for x in r.rejected_sample] == [3]


def test_windows1252_undefined_bytes_fall_back_to_latin1(seeded, tmp_path):
    path = tmp_path / "undef.csv"
    path.write_bytes(b"Date;Fournisseur;Montant\n25/11/2026;A\x81B;\x80 12,00\n")
    r = import_file(seeded, "mandats", path, Options())
    assert r.rows_loaded == 1 and r.amount_total == 12.0
    name = seeded.execute(
        "SELECT supplier_name FROM mandats WHERE import_id = $i", {"i": r.import_id}
    ).fetchall()
    assert name == [("A\x81B",)]


@pytest.mark.parametrize("value", ["deux mille", "1789", "20250"])
def test_invalid_exercice_option_is_refused(seeded, tmp_path, value):
    path = tmp_path / "ex.csv"
    path.write_text("Fournisseur;Montant\nA;1\n", encoding="utf-8")
    before = snapshot(seeded)
    with pytest.raises(common.ImportRefused, match="Exercice invalide"):
        import_file(seeded, "mandats", path, Options(extra={"exercice": value}))
    assert snapshot(seeded) == before


def test_mapping_to_unknown_field_is_refused(seeded, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("Nom;Valeur\nA;1\n", encoding="utf-8")
    with pytest.raises(common.ImportRefused, match="Correspondance invalide"):
        import_file(seeded, "mandats", path, Options(mapping={"Valeur": "prix"}))


def test_no_temporary_file_is_left_behind(seeded, tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    path = tmp_path / "cp.csv"
    path.write_bytes("Date;Fournisseur;Montant\n25/11/2026;Éé;1\n".encode("cp1252"))
    import_file(seeded, "mandats", path, Options())
    bad = tmp_path / "cp_bad.csv"
    bad.write_bytes("Date;Fournisseur;Montant\n25/11/2026;Éé;x\n".encode("cp1252"))
    with pytest.raises(common.ImportRefused):
        import_file(seeded, "mandats", bad, Options())
    assert os.listdir(tmp_path / "tmp") == []


def test_json_with_purchases_key(seeded, tmp_path):
    path = tmp_path / "p.json"
    data = {"purchases": [{"supplier_name": "A", "purchase_amount": "1.5", "purchase_year": 2025}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    r = import_file(seeded, "mandats", path, Options())
    assert r.rows_loaded == 1 and r.amount_total == 1.5


def test_refusals_do_not_leak_temp_objects(seeded, tmp_path):
    path = tmp_path / "allbad.csv"
    path.write_text("Date;Fournisseur;Montant\n25/11/2026;A;x\n", encoding="utf-8")
    with pytest.raises(common.ImportRefused):
        import_file(seeded, "mandats", path, Options())
    temp = seeded.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '\\_m\\_%' ESCAPE '\\'"
    ).fetchall()
    assert temp == []

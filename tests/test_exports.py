"""CSV/XLSX downloads: formula-like text neutralised, numbers and dates kept as such."""

from __future__ import annotations

import datetime as dt
import decimal
import io

import openpyxl
import pandas as pd

from analytics import exports

DANGEROUS = ['=HYPERLINK("http://x","clic")', "+33 1 23", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


def sample() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "fournisseur": DANGEROUS + ["SARL Dupont"],
            "montant": [1234.5, -10.0, 0.0, 3.0, 4.0, 5.0, 1_234_567.89],
            "part_locale": [0.123, 0.5, None, 1.0, 0.0, 0.25, 0.75],
            "date": [dt.date(2026, 11, 25)] * 7,
            "n": [1, 2, 3, 4, 5, 6, 7],
        }
    )


def test_neutralise():
    for text in DANGEROUS:
        assert exports.neutralise(text) == "'" + text
    assert exports.neutralise("Dupont") == "Dupont"
    assert exports.neutralise(-3) == -3  # a number is not text
    assert exports.neutralise("") == ""


def test_csv_neutralises_and_keeps_numbers():
    raw = exports.to_csv_bytes(sample())
    assert raw.startswith("\ufeff".encode())
    text = raw.decode("utf-8-sig")
    lines = text.split("\r\n")
    assert lines[0] == "fournisseur;montant;part_locale;date;n"
    for line in lines[1:7]:
        assert line.startswith("'") or line.startswith("\"'")
    assert "1234567,89" in text  # numeric, French decimal mark, no thousands separator
    assert "-10,0" in text
    back = pd.read_csv(io.BytesIO(raw), sep=";", decimal=",", encoding="utf-8-sig")
    assert back["montant"].sum() == sum(sample()["montant"])


def test_xlsx_cells_are_typed_and_safe():
    raw = exports.to_xlsx_bytes({"Fournisseurs": sample(), "Vide": pd.DataFrame({"a": []})})
    wb = openpyxl.load_workbook(io.BytesIO(raw))
    assert wb.sheetnames == ["Fournisseurs", "Vide"]
    ws = wb["Fournisseurs"]
    assert [c.value for c in ws[1]] == ["fournisseur", "montant", "part_locale", "date", "n"]
    for row in range(2, 8):
        cell = ws.cell(row=row, column=1)
        assert cell.data_type == "s"
        if row <= 7 and ws.cell(row=row, column=1).value != "SARL Dupont":
            assert cell.value.startswith("'")
    assert ws.cell(row=2, column=2).value == 1234.5
    assert ws.cell(row=2, column=2).data_type == "n"
    assert "€" in ws.cell(row=2, column=2).number_format
    assert ws.cell(row=2, column=3).number_format == "0.0%"
    assert ws.cell(row=4, column=3).value is None  # missing share stays empty, not 0
    assert ws.cell(row=2, column=4).value == dt.datetime(2026, 11, 25)
    # No formula anywhere.
    for r in ws.iter_rows():
        for c in r:
            assert c.data_type != "f"


def test_decimals_and_odd_values():
    df = pd.DataFrame(
        {
            "amount": [decimal.Decimal("10.25"), decimal.Decimal("-1.00")],
            "codes": [["a", "b"], None],
            "ok": [True, False],
        }
    )
    raw = exports.to_xlsx_bytes(df)
    ws = openpyxl.load_workbook(io.BytesIO(raw)).active
    assert ws.cell(row=2, column=1).value == 10.25
    assert ws.cell(row=2, column=2).value == "a, b"
    assert ws.cell(row=2, column=3).value is True
    assert "10,25" in exports.to_csv_bytes(df).decode("utf-8-sig")


def test_sheet_names_and_stems():
    used: set[str] = set()
    assert exports._sheet_name("Top: fournisseurs/2025", used) == "Top  fournisseurs 2025"
    assert exports._sheet_name("Top: fournisseurs/2025", used) == "Top  fournisseurs 2025 (2)"
    assert exports.file_stem("Dépenses par département 2025") == "depenses_par_departement_2025"

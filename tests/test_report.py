"""The SPASER annual report of the demo year 2025, produced by the command line in HTML,
XLSX and PDF: its figures are the engine's (headline and SPASER table), its PDF has a
summary first page and numbered pages, and formula-like text is neutralised in the XLSX.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analytics import fmt, indicators, referential, spaser, store
from analytics.filters import Filters

ROOT = Path(__file__).resolve().parent.parent
YEAR = 2025
FORMULA = '=HYPERLINK("http://exemple.invalid/x","cliquez")'


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    """A private copy of the demo database (built once per session, as test_pages does)."""
    from analytics import demo

    shared = tmp_path_factory.getbasetemp() / "demo_shared" / "demo.duckdb"
    shared.parent.mkdir(exist_ok=True)
    if not shared.exists():
        try:
            demo.build(shared, force=True)
        except Exception as exc:  # the demo builder depends on shipped data
            pytest.skip(f"base de démonstration indisponible : {type(exc).__name__}: {exc}")
    path = tmp_path_factory.mktemp("report") / "demo.duckdb"
    shutil.copy(shared, path)
    return path


def cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def reports(demo_db, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report_out")
    files = {}
    for f in ("html", "xlsx", "pdf"):
        files[f] = out / f"rapport_{YEAR}.{f}"
        done = cli(demo_db, "report", "--year", str(YEAR), "--format", f, "--out", str(files[f]))
        assert done.returncode == 0, done.stderr
        assert f"Rapport SPASER {YEAR} écrit" in done.stdout
        assert files[f].stat().st_size > 0
    return files


@pytest.fixture(scope="module")
def engine(demo_db) -> dict:
    """The engine's figures for the report's year and territory."""
    con = store.connect(demo_db, read_only=True)
    try:
        f = Filters.year(YEAR, territory=referential.default_territory(con, None))
        return {"headline": indicators.headline(con, f), "spaser": spaser.spaser_table(con, YEAR, f)}
    finally:
        con.close()


def test_xlsx_indicators_are_the_engine_figures(reports, engine):
    import openpyxl

    wb = openpyxl.load_workbook(reports["xlsx"])
    ws = wb["Indicateurs"]
    header = [c.value for c in ws[1]]
    col = header.index(f"valeur_{YEAR}")
    h = engine["headline"]
    seen = set()
    for row in ws.iter_rows(min_row=2):
        key, cell = row[0].value, row[col]
        seen.add(key)
        expected = h[key]
        if expected is None:
            assert cell.value is None, key
        else:
            assert cell.data_type == "n", f"{key} écrit comme texte"
            assert cell.value == pytest.approx(float(expected), rel=1e-12, abs=1e-12), key
    # Every indicator with a definition is in the sheet.
    assert seen == {k for k in indicators.DEFINITIONS if k in h}
    assert {"total_spend", "social_clause_rate", "environmental_clause_rate", "insertion_hours"} <= seen
    assert h["total_spend"] > 0  # the demo year has data: the comparison is not vacuous
    # One sheet per table, among them the SPASER table with its statuses.
    assert {"Acheteur", "SPASER", "Départements", "Conformité 2026", "Sources", "Définitions"} <= set(
        wb.sheetnames
    )
    rows = list(wb["SPASER"].iter_rows(values_only=True))
    table = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [r["indicator"] for r in table] == engine["spaser"]["indicator"].tolist()
    assert [r["status"] for r in table] == engine["spaser"]["status"].tolist()
    for r, e in zip(table, engine["spaser"].itertuples()):
        assert r["actual"] == pytest.approx(e.actual, rel=1e-12), r["indicator"]


def test_html_shows_the_engine_figures_in_french(reports, engine):
    page = reports["html"].read_text(encoding="utf-8")
    h = engine["headline"]
    assert fmt.fmt_eur(h["total_spend"]) in page  # e.g. "497 443 806 €"
    assert fmt.fmt_pct(h["social_clause_rate"]) in page  # e.g. "27,1 %"
    assert fmt.fmt_pct(h["environmental_clause_rate"]) in page
    assert fmt.fmt_value(h["insertion_hours"], "hours") in page
    sp = engine["spaser"]
    assert len(sp) >= 3
    for r in sp.itertuples():
        unit = indicators.DEFINITIONS[r.indicator]["unit"]
        assert f">{r.status}<" in page, r.indicator
        assert fmt.fmt_value(r.actual, unit) in page, r.indicator
        if r.trajectory is not None and not math.isnan(r.trajectory):
            assert fmt.fmt_value(r.trajectory, unit) in page, r.indicator
    for title in ("Synthèse", "Cibles SPASER", "Empreinte géographique", "Conformité 2026", "Définitions"):
        assert title in page
    assert "<svg" in page and 'class="map"' in page  # the map is inline


def test_pdf_has_a_summary_page_and_numbered_pages(reports):
    pdf = reports["pdf"]
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True).stdout
        pages = text.split("\f")
        pages = [p for p in pages if p.strip()]
        assert len(pages) >= 3
        assert "Rapport SPASER — page 1" in pages[0]
        assert "Synthèse" in pages[0] and "Cibles SPASER" in pages[0]
        assert f"Rapport SPASER — page {len(pages)} / {len(pages)}" in pages[-1]
    else:  # same HTML, laid out again by WeasyPrint
        from weasyprint import HTML

        page = reports["html"].read_text(encoding="utf-8")
        assert len(HTML(string=page).render().pages) >= 3
        assert 'content: "Rapport SPASER — page " counter(page)' in page
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_formula_like_text_is_neutralised_in_the_xlsx(demo_db, tmp_path):
    import openpyxl

    db = tmp_path / "formula.duckdb"
    shutil.copy(demo_db, db)
    con = store.connect(db)
    try:
        # A copy of a 2025 contract, without any environmental consideration, whose object
        # is a spreadsheet formula: it is listed in the sheet "Marchés sans environnement".
        con.execute(
            """INSERT INTO contracts
               SELECT * REPLACE ('FORMULE-1' AS contract_key, 'FORMULE-1' AS uid, 'FORMULE-1' AS id,
                                 $objet AS objet, 900000 + seq AS seq,
                                 ['Pas de considération environnementale'] AS considerations_environnementales,
                                 FALSE AS has_environmental)
               FROM contracts_current WHERE year(date_notification) = $y LIMIT 1""",
            {"objet": FORMULA, "y": YEAR},
        )
    finally:
        con.close()
    out = tmp_path / "rapport.xlsx"
    done = cli(db, "report", "--year", str(YEAR), "--format", "xlsx", "--out", str(out))
    assert done.returncode == 0, done.stderr
    wb = openpyxl.load_workbook(out)
    found = []
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"formule en {ws.title}!{cell.coordinate}"
                if isinstance(cell.value, str) and "HYPERLINK" in cell.value:
                    found.append((ws.title, cell.value))
    assert ("Marchés sans environnement", "'" + FORMULA) in found


def test_report_refuses_an_unknown_format(demo_db, tmp_path):
    done = cli(demo_db, "report", "--year", str(YEAR), "--format", "doc", "--out", str(tmp_path / "x.doc"))
    assert done.returncode != 0

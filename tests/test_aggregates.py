"""mandats_monthly (analytics.aggregates): kept by imports and undo, rebuilt by the
migration, read by the engine only when in step with the lines, and giving exactly the
figures the lines give."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from analytics import aggregates, footprint, indicators, store
from analytics.filters import Filters, Territory
from analytics.ingest import import_file
from analytics.ingest.common import undo_import
from benchmarks.generate import write_mandats, write_sirene

BREAKDOWNS = (
    "spend_by_departement",
    "spend_by_region",
    "spend_by_commune",
    "spend_by_size",
    "spend_by_naf_section",
    "spend_by_category",
    "spend_by_inclusive_kind",
    "spend_by_ess_family",
    "monthly_series",
    "concentration",
    "lorenz_curve",
    "top_suppliers",
    "new_suppliers",
    "suppliers_table",
    "local_share_by_category",
)


# A second buyer's export over the same months (another budget, so other mandats): the
# merged sums (spend_months, spend_years) add two imports and two buyers together.
OTHER_BUYER = "21590350100017"


def _write_other_buyer(path, sirets: list[str]) -> None:
    rows = [
        "Exercice;Budget;N° mandat;N° ligne;Date émission;Tiers;SIRET;Code postal;Imputation;"
        "Montant TTC;SIRET de l'acheteur;Nom de l'acheteur;Direction"
    ]
    for i in range(600):
        day = dt.date(2024, 11, 1) + dt.timedelta(days=(i * 7) % 240)
        amount = f"{(i % 37) * 91.5 + 12.25:.2f}".replace(".", ",")
        sign = "-" if i % 29 == 0 else ""  # a few credit notes
        rows.append(
            f"{day.year};ANNEXE;{i + 1};1;{day:%d/%m/%Y};FOURNISSEUR {i % 50};{sirets[i % len(sirets)]};"
            f"59000;6068;{sign}{amount};{OTHER_BUYER};{'Syndicat des eaux' if i % 3 else 'SYNDICAT DES EAUX'};"
            f"{'Direction des routes' if i % 4 else ''}"
        )
    path.write_text("\n".join(rows) + "\n", encoding="cp1252")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agg")
    write_sirene(folder / "sirene.csv", n_suppliers=400)
    for year in (2024, 2025):
        write_mandats(folder / f"m{year}.csv", 3000, n_suppliers=400, year=year)
    return folder


@pytest.fixture
def db(files, tmp_path):
    con = store.connect(tmp_path / "agg.duckdb")
    import_file(con, "sirene", files / "sirene.csv")
    ids = [import_file(con, "mandats", files / f"m{y}.csv").import_id for y in (2024, 2025)]
    sirets = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT supplier_siret FROM mandats WHERE supplier_siret IS NOT NULL ORDER BY 1 LIMIT 60"
        ).fetchall()
    ]
    _write_other_buyer(tmp_path / "annexe.csv", sirets)
    other = import_file(con, "mandats", tmp_path / "annexe.csv")
    assert other.rows_loaded == 600, other
    ids.append(other.import_id)
    store.attach_reference(con)
    return con, ids


def _both(con, monkeypatch, fn):
    out = []
    for monthly in (False, True):
        monkeypatch.setattr(indicators, "_monthly", lambda c, m=monthly: m)
        out.append(fn())
    monkeypatch.undo()
    return out


def _same_headline(a: dict, b: dict) -> None:
    for k in indicators.HEADLINE_KEYS:
        if a[k] is None:
            assert b[k] is None, k
        else:
            assert b[k] == pytest.approx(a[k], rel=1e-12, abs=1e-12), k
    assert a["coverage"] == b["coverage"] and a["reasons"] == b["reasons"]


def test_kept_by_import_and_undo(db):
    con, ids = db
    assert aggregates.ready(con)
    lines, total = con.execute("SELECT count(*), sum(amount) FROM mandats").fetchone()
    agg = con.execute("SELECT sum(lines), sum(net), count(*) FROM mandats_monthly").fetchone()
    assert (agg[0], agg[1]) == (lines, total) and 0 < agg[2] < lines  # fewer rows than lines
    _first_days_match_the_lines(con)
    undo_import(con, ids[0])
    assert aggregates.ready(con)
    assert (
        con.execute("SELECT count(*) FROM mandats_monthly WHERE import_id = ?", [ids[0]]).fetchone()[0] == 0
    )
    _first_days_match_the_lines(con)
    _names_match_the_lines(con)
    _years_match_the_lines(con)
    _merged_match_the_lines(con)


def _same_rows(con, from_lines: str, kept: str) -> None:
    """The rows a kept table holds are the ones its definition gives from the lines."""
    expected = con.execute(from_lines + " ORDER BY ALL").fetchall()
    assert con.execute(kept + " ORDER BY ALL").fetchall() == expected and len(expected) > 100


def _merged_match_the_lines(con) -> None:
    """spend_months and spend_years: one row per month (year) and supplier, every import
    and buyer summed, as the lines give them."""
    cols = (
        "count(*), count(*) FILTER (WHERE amount_basis = 'TTC'), sum(amount), "
        "coalesce(sum(amount) FILTER (WHERE amount > 0), 0), min(spend_date) FILTER (WHERE amount > 0), "
        "min(spend_date), min(supplier_name)"
    )
    kept = "lines, lines_ttc, net, pos, first_paid, first_date, raw_name"
    _same_rows(
        con,
        f"SELECT date_trunc('month', spend_date)::DATE, supplier_key, {cols} FROM mandats GROUP BY 1, 2",
        f"SELECT month, supplier_key, {kept} FROM spend_months",
    )
    _same_rows(
        con,
        f"SELECT year(spend_date), supplier_key, {cols} FROM mandats GROUP BY 1, 2",
        f"SELECT year, supplier_key, {kept} FROM spend_years",
    )


def test_merged_sums_follow_imports_and_undo(db):
    """Two imports and two buyers share months: the merged sums add them; undoing either
    computes its months again from what remains, the other import's rows kept."""
    con, ids = db
    assert (
        con.execute(
            "SELECT count(*) FROM (SELECT month, supplier_key FROM mandats_monthly GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        > 10
    )  # the merge has work to do
    _merged_match_the_lines(con)
    undo_import(con, ids[2])
    assert aggregates.ready(con)
    _merged_match_the_lines(con)
    undo_import(con, ids[1])
    assert aggregates.ready(con)
    _merged_match_the_lines(con)
    assert con.execute("SELECT count(*) FROM spend_years WHERE year = 2025").fetchone()[0] == 0


def _facets_match_the_lines(con, monkeypatch) -> None:
    """The sidebar's choices from import_facets are the ones the lines give."""
    from analytics import facets

    assert aggregates.facets_ready(con)
    kept = facets.facets(con)
    with monkeypatch.context() as m:
        m.setattr(aggregates, "facets_ready", lambda c: False)
        lines = facets.facets(con)
    assert kept == lines
    assert kept["services"] and kept["natures"] and kept["years"]


def test_facets_counted_per_import(db, monkeypatch):
    """import_facets follows imports and undo; the buyers of the lines carry their most
    frequent name; lines written otherwise send the choices back to the lines."""
    from analytics import facets

    con, ids = db
    _facets_match_the_lines(con, monkeypatch)
    assert (OTHER_BUYER, "Syndicat des eaux") in facets.facets(con)["buyers"]
    assert facets.facets(con)["first"] == con.execute("SELECT min(spend_date) FROM mandats").fetchone()[0]
    undo_import(con, ids[0])
    _facets_match_the_lines(con, monkeypatch)
    assert 2024 in facets.facets(con)["years"]  # the other buyer's lines of 2024 remain
    undo_import(con, ids[2])
    _facets_match_the_lines(con, monkeypatch)
    assert facets.facets(con)["years"] == [2025] and facets.facets(con)["buyers"] == []
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_identified, "
        "amount, amount_basis, service) VALUES (99, 'x', DATE '2019-05-05', 'NOM:HORS IMPORT', FALSE, 10, 'TTC', 'Hors import')"
    )
    assert not aggregates.facets_ready(con)
    got = facets.facets(con)
    assert 2019 in got["years"] and "Hors import" in got["services"]
    aggregates.rebuild(con)
    _facets_match_the_lines(con, monkeypatch)


def _years_match_the_lines(con) -> None:
    _same_rows(
        con,
        "SELECT import_id, buyer_siret, year(spend_date), supplier_key, count(*), sum(amount), "
        "min(spend_date) FILTER (WHERE amount > 0), min(spend_date) FROM mandats GROUP BY ALL",
        "SELECT import_id, buyer_siret, year, supplier_key, lines, net, first_paid, first_date FROM mandats_yearly",
    )


def _names_match_the_lines(con) -> None:
    assert aggregates.names_ready(con)
    _same_rows(
        con,
        "SELECT import_id, supplier_key, supplier_name, supplier_postcode, count(*) FROM mandats GROUP BY ALL",
        "SELECT * FROM supplier_names",
    )


def test_classification_reads_supplier_names_only_when_in_step(db):
    """The classification counts names and postcodes from supplier_names (a tenth of the
    rows) when it counts exactly the lines; a line written otherwise sends it back to the
    lines, and the classes are the same either way."""
    from analytics import referential

    con, _ = db
    _names_match_the_lines(con)
    assert referential._data_keys(con) is referential._DATA_KEYS_COUNTED
    cols = ", ".join(c for c in referential.CLASS_COLUMNS if c != "classified_at")
    counted, lines = (
        con.execute(f"SELECT {cols} FROM ({referential._class_sql(k)}) ORDER BY supplier_key").fetchall()
        for k in (referential._DATA_KEYS_COUNTED, referential._DATA_KEYS)
    )
    assert counted == lines and len(lines) > 100
    con.execute(
        "INSERT INTO mandats SELECT * REPLACE ('x' || natural_key AS natural_key, 'AUTRE NOM' AS supplier_name)"
        " FROM mandats LIMIT 5"
    )
    assert not aggregates.names_ready(con)
    assert referential._data_keys(con) is referential._DATA_KEYS
    aggregates.rebuild(con)
    _names_match_the_lines(con)


def _first_days_match_the_lines(con) -> None:
    _same_rows(
        con,
        "SELECT coalesce(buyer_siret, ''), supplier_key, min(spend_date) FILTER (WHERE amount > 0), "
        "min(spend_date) FROM mandats GROUP BY 1, 2",
        "SELECT buyer_key, supplier_key, first_paid, first_date FROM supplier_first",
    )


def test_lines_written_otherwise_are_read_from_mandats(db, monkeypatch):
    con, _ = db
    f = Filters.year(2025)
    before = indicators.headline(con, f)["total_spend"]
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_identified, "
        "amount, amount_basis) VALUES (99, 'x', DATE '2025-05-05', 'NOM:HORS IMPORT', FALSE, 1000, 'TTC')"
    )
    assert not aggregates.ready(con)  # out of step: the engine reads the lines
    assert indicators.headline(con, f)["total_spend"] == pytest.approx(before + 1000)
    aggregates.rebuild(con)
    assert aggregates.ready(con)
    assert indicators.headline(con, f)["total_spend"] == pytest.approx(before + 1000)


def test_ready_checked_once_per_data_version_while_serving(db, monkeypatch):
    """While the dashboard serves one data version (aggregates.serving), ready() is checked
    once, not at every engine call; another version, or no version, checks again."""
    con, _ = db
    checks = []
    real = aggregates._ready
    monkeypatch.setattr(aggregates, "_ready", lambda c: checks.append(1) or real(c))
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()[0]
    with aggregates.serving(path, "v1"):
        assert aggregates.ready(con) and aggregates.ready(con)
        indicators.headline(con, Filters.year(2025))
    assert len(checks) == 1
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_identified, "
        "amount, amount_basis) VALUES (99, 'x', DATE '2025-05-05', 'NOM:HORS IMPORT', FALSE, 1000, 'TTC')"
    )
    assert not aggregates.ready(con)  # outside the dashboard: checked at every call
    with aggregates.serving(path, "v2"):
        assert not aggregates.ready(con)
    with aggregates.serving(path, "v1"):  # what was checked for that version
        assert aggregates.ready(con)
    assert len(checks) == 3


def test_migration_builds_it_for_an_existing_database(db, tmp_path):
    con, _ = db
    path = tmp_path / "agg.duckdb"
    con.execute("DROP TABLE mandats_monthly")
    con.execute("DELETE FROM schema_version WHERE version >= 2")
    con.close()
    con = store.connect(path)
    assert store.schema_version(con) >= 2 and aggregates.ready(con)


@pytest.mark.parametrize("below", [2, 3, 5, 6, 7])
def test_migration_from_an_older_schema_builds_todays_tables(db, tmp_path, below):
    """A database of schema v1 to v6 (sums without the excl.-VAT columns before v6; no
    yearly sums before v5; no merged sums before v7) reaches today's version with every
    kept table in step with the lines (the statements of migrations 2, 3 and 5, written for
    the tables of their time, failed on it)."""
    con, _ = db
    path = tmp_path / "agg.duckdb"
    con.execute("DROP TABLE spend_years; DROP TABLE spend_months; DROP TABLE import_facets")
    if below <= 6:
        old_ddl = "\n".join(
            line
            for line in aggregates.DDL.split("CREATE TABLE IF NOT EXISTS spend_months")[0].splitlines()
            if "ht_known" not in line and "ttc_no_ht" not in line and not line.strip().startswith("--")
        ).replace("raw_name VARCHAR,\n)", "raw_name VARCHAR\n)")
        con.execute("DROP TABLE mandats_yearly; DROP TABLE mandats_monthly")
        con.execute(old_ddl)
    if below <= 5:
        con.execute("DROP TABLE mandats_yearly")
    con.execute("DELETE FROM schema_version WHERE version >= $v", {"v": below})
    con.close()
    con = store.connect(path)
    assert store.schema_version(con) == store.MIGRATIONS[-1][0] and aggregates.ready(con)
    _years_match_the_lines(con)
    _first_days_match_the_lines(con)
    _merged_match_the_lines(con)
    assert aggregates.facets_ready(con)
    assert con.execute("SELECT sum(ht_known) + sum(ttc_no_ht) > 0 FROM mandats_yearly").fetchone()[0]


@pytest.mark.parametrize(
    "f",
    [
        Filters.year(2025, territory=Territory("dep", ("59",))),
        Filters.year(2024),
        Filters.year(2025, territory=Territory("reg", ("32",))).with_(supplier_classes=("ess", "local")),
        Filters.year(2025).with_(date_from=dt.date(2025, 3, 1), date_to=dt.date(2025, 3, 31)),
        Filters.year(2025).with_(date_from=dt.date(2024, 7, 1), date_to=dt.date(2025, 6, 30)),
        Filters.year(2025, territory=Territory("dep", ("59",))).with_(date_from=dt.date(2024, 1, 1)),
        # to a day inside a month: the whole months from the sums, the last days from the lines
        Filters.year(2025).with_(date_to=dt.date(2025, 6, 17)),
        Filters.year(2025, territory=Territory("dep", ("59",))).with_(
            date_to=dt.date(2025, 10, 3), supplier_classes=("ess", "local")
        ),
        Filters.year(2025).with_(date_from=dt.date(2024, 1, 1), date_to=dt.date(2025, 1, 15)),
        Filters.year(2025).with_(
            buyer_siret=OTHER_BUYER, date_from=dt.date(2024, 11, 1), date_to=dt.date(2025, 2, 14)
        ),
        # not whole months, or a line-level filter: read from the lines either way
        Filters.year(2025).with_(date_from=dt.date(2025, 3, 5), date_to=dt.date(2025, 4, 30)),
        Filters.year(2025).with_(services=("Direction des routes",)),
        # one buyer: the per buyer sums (the merged ones add every buyer)
        Filters.year(2025).with_(buyer_siret=OTHER_BUYER),
        Filters.year(2025).with_(
            buyer_siret=OTHER_BUYER, date_from=dt.date(2025, 3, 1), date_to=dt.date(2025, 3, 31)
        ),
    ],
    ids=[
        "dep59",
        "2024",
        "classes",
        "march",
        "rolling",
        "two-years",
        "to-date",
        "to-date-classes",
        "year-then-days",
        "to-date-buyer",
        "days",
        "service",
        "buyer",
        "buyer-march",
    ],  # fmt: skip
)
def test_same_figures_as_the_lines(db, monkeypatch, f):
    # whole years read mandats_yearly, other whole months mandats_monthly
    con, _ = db
    lines, monthly = _both(con, monkeypatch, lambda: indicators.headline_with_previous(con, f))
    _same_headline(lines["current"], monthly["current"])
    _same_headline(lines["previous"], monthly["previous"])
    for name in BREAKDOWNS:
        a, b = _both(con, monkeypatch, lambda name=name: getattr(indicators, name)(con, f))
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, obj=name)
    key = indicators.top_suppliers(con, f, n=1)["supplier_key"].iloc[0]
    whole = f.with_(date_from=dt.date(2024, 1, 1), date_to=dt.date(2025, 12, 31))
    a, b = _both(con, monkeypatch, lambda: indicators.supplier_history(con, whole, key))
    pd.testing.assert_frame_equal(a, b)


def test_footprint_spend_from_the_sums_is_the_lines_spend(db, monkeypatch):
    """The footprint's spend excl. VAT per supplier, from mandats_yearly / mandats_monthly
    (schema v6), is the one the lines give, over a mix of lines: amount excl. VAT known,
    an amount on the HT basis, an amount incl. VAT alone (VAT estimated)."""
    con, _ = db
    con.execute("UPDATE mandats SET amount_ht = NULL WHERE line_number % 3 = 0")
    con.execute("UPDATE mandats SET amount_ht = NULL, amount_basis = 'HT' WHERE line_number % 5 = 0")
    aggregates.rebuild(con)
    assert aggregates.ready(con)
    ht = "coalesce(sum(coalesce(amount_ht, CASE WHEN amount_basis = 'HT' THEN amount END)), 0)"
    ttc = "coalesce(sum(amount) FILTER (WHERE amount_ht IS NULL AND amount_basis <> 'HT'), 0)"
    _same_rows(
        con,
        f"SELECT import_id, date_trunc('month', spend_date)::DATE, supplier_key, {aggregates.CATEGORY_SQL}, "
        f"{ht}, {ttc} FROM mandats m GROUP BY ALL",
        "SELECT import_id, month, supplier_key, category, ht_known, ttc_no_ht FROM mandats_monthly",
    )
    _same_rows(
        con,
        f"SELECT import_id, year(spend_date), supplier_key, {ht}, {ttc} FROM mandats GROUP BY ALL",
        "SELECT import_id, year, supplier_key, ht_known, ttc_no_ht FROM mandats_yearly",
    )
    mixed = con.execute(
        "SELECT count(DISTINCT supplier_key) FROM mandats_yearly WHERE ht_known > 0 AND ttc_no_ht > 0"
    ).fetchone()[0]
    assert mixed > 50  # suppliers with both kinds of lines
    sets = [
        Filters.year(2025, territory=Territory("dep", ("59",))),  # mandats_yearly
        Filters.year(2025).with_(date_from=dt.date(2024, 7, 1), date_to=dt.date(2025, 6, 30)),  # monthly
        Filters.year(2024, territory=Territory("reg", ("32",))).with_(supplier_classes=("ess", "local")),
    ]
    for f in sets:
        monkeypatch.setattr(aggregates, "ready", lambda c: False)
        lines, _ = footprint.spend_rows(con, f)
        monkeypatch.undo()
        sums, _ = footprint.spend_rows(con, f)
        assert len(lines) > 10
        order = ["supplier_key"]
        pd.testing.assert_frame_equal(
            lines.sort_values(order).reset_index(drop=True),
            sums.sort_values(order).reset_index(drop=True),
            check_exact=False,
            rtol=1e-12,
        )
    assert sums["spend_vat_estimated"].sum() > 0
    f = sets[0]
    monkeypatch.setattr(aggregates, "ready", lambda c: False)
    lines = footprint.footprint_json(con, f)
    monkeypatch.undo()
    _same_json(footprint.footprint_json(con, f), lines)


def _same_json(a, b, path="") -> None:
    """Equal JSON; a rounded float may differ by one unit of its last decimal (a sum of sums
    is not the sum of the lines to the last bit, and 0.005 rounds either way)."""
    if isinstance(b, float):
        text = repr(b)
        unit = 10.0 ** -len(text.split(".")[1]) if "." in text and "e" not in text else 0.0
        assert a == pytest.approx(b, rel=1e-9, abs=unit * 1.01 + 1e-9), path
    elif isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), path
        for k in b:
            _same_json(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same_json(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_yearly_ok_rules():
    y = Filters.year(2025)
    assert indicators.yearly_ok(y) and indicators.yearly_ok(y, ("year",))
    assert indicators.yearly_ok(y.with_(date_from=dt.date(2016, 1, 1)))
    assert not indicators.yearly_ok(y, ("month",)) and not indicators.yearly_ok(y, ("category",))
    assert not indicators.yearly_ok(y.with_(date_to=dt.date(2025, 11, 30)))
    assert not indicators.yearly_ok(y.with_(date_from=dt.date(2024, 7, 1), date_to=dt.date(2025, 6, 30)))
    assert not indicators.yearly_ok(y.with_(services=("Voirie",)))


def test_monthly_ok_rules():
    y = Filters.year(2025)
    assert indicators.monthly_ok(y) and indicators.monthly_ok(y, ("month", "year"))
    assert indicators.monthly_ok(y, ("category",)) and indicators.monthly_ok(y, ("month", "category"))
    assert not indicators.monthly_ok(y, ("service",))
    assert not indicators.monthly_ok(y.with_(date_to=dt.date(2025, 12, 30)))
    assert not indicators.monthly_ok(y.with_(amount_min=100))
    assert not indicators.monthly_ok(y.with_(natures=("60",)))
    assert not indicators.monthly_ok(y.with_(basis="notified"))
    assert indicators.monthly_ok(y.with_(date_from=dt.date(2024, 2, 1), date_to=dt.date(2024, 2, 29)))


def test_months_then_days_rules():
    """A period from the first of a month to a day inside a later month reads its whole
    months from the sums and its last days from the lines (the figures: above)."""
    y = Filters.year(2025)
    months, days = indicators.months_then_days(y.with_(date_to=dt.date(2025, 11, 20)))
    assert (months.date_from, months.date_to) == (dt.date(2025, 1, 1), dt.date(2025, 10, 31))
    assert (days.date_from, days.date_to) == (dt.date(2025, 11, 1), dt.date(2025, 11, 20))
    months, _ = indicators.months_then_days(
        y.with_(date_from=dt.date(2024, 1, 1), date_to=dt.date(2025, 1, 9))
    )
    assert indicators.yearly_ok(months)  # the whole year 2024 from the yearly sums
    assert indicators.months_then_days(y.with_(date_to=dt.date(2025, 11, 20)), ("month", "category"))
    assert indicators.months_then_days(y) is None  # whole months: the sums alone
    assert (
        indicators.months_then_days(y.with_(date_from=dt.date(2025, 1, 2), date_to=dt.date(2025, 6, 5)))
        is None
    )
    assert (
        indicators.months_then_days(y.with_(date_from=dt.date(2025, 6, 1), date_to=dt.date(2025, 6, 5)))
        is None
    )
    assert indicators.months_then_days(y.with_(date_to=dt.date(2025, 6, 5), services=("Voirie",))) is None
    assert indicators.months_then_days(y.with_(date_to=dt.date(2025, 6, 5), basis="notified")) is None
    assert indicators.months_then_days(y.with_(date_to=dt.date(2025, 6, 5)), ("service",)) is None
    sql, params = indicators.spend_sql(y.with_(date_to=dt.date(2025, 6, 5)), monthly=True)
    assert "UNION ALL BY NAME" in sql and params["days_from"] == dt.date(2025, 6, 1)
    assert "UNION ALL BY NAME" not in indicators.spend_sql(y.with_(date_to=dt.date(2025, 6, 5)))[0]

"""The levers on screen (issue 10) and the SPASER report button (issue 8), under AppTest on
the demo database: renewals and reservation tables filled, every recommendation beside
its rule, a threshold edit changing a recommendation, the sourcing directory of a
category, the report as a PDF."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_pages import assert_clean, demo_database  # tests/ is on sys.path (pytest rootdir import)

TIMEOUT = 180


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    return demo_database(tmp_path_factory)


@pytest.fixture
def at(demo_db, monkeypatch, tmp_path) -> AppTest:
    monkeypatch.delenv("EMPREINTE_ROLE", raising=False)
    monkeypatch.setenv("EMPREINTE_ROLES", str(tmp_path / "no_roles.toml"))
    monkeypatch.setenv("EMPREINTE_DB", str(demo_db))
    return AppTest.from_file("../dashboard.py", default_timeout=TIMEOUT).run()


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The on-screen table that has ``column`` (AppTest reads the data under the French headers)."""
    for df in at.dataframe:
        value = df.value
        if column in value.columns:
            return value
    raise AssertionError(f"aucun tableau avec la colonne « {column} »")


def recommendations(at: AppTest) -> pd.DataFrame:
    return table_with(at, "rule").set_index("category")


def test_levers_page_on_demo(at):
    at.switch_page("pages/leviers.py").run()
    assert_clean(at, "leviers")
    assert [t.value for t in at.title] == ["Leviers d'action"]
    assert [s.value for s in at.subheader] == [
        "Renouvellements à venir",
        "Potentiel de réservation",
        "Achats de moins de 40 000 € HT",
        "Allotissement et cotraitance",
    ]
    renewals = table_with(at, "end_date")
    assert len(renewals) > 0
    assert {"object", "category", "amount", "ess_structures", "inclusive_structures"} <= set(renewals.columns)
    assert (renewals["ess_structures"] + renewals["inclusive_structures"]).gt(0).any()
    res = recommendations(at)
    assert len(res) > 0
    # Every recommendation is shown with the rule that produced it, side by side.
    assert res["recommendation"].isin(["marché réservé", "lot réservé", "clause sociale", "aucune"]).all()
    assert res["rule"].str.len().gt(0).all()
    assert res["rule"].str.contains("structures inclusives ≥").any()
    # The under-40 k€ cards and the lots figures.
    labels = [m.label for m in at.metric]
    assert labels.count("Part ESS") == 2 and "Marchés allotis" in labels
    by_account = table_with(at, "spend_under")
    assert by_account["account"].str.match(r"\d{3} \S").all()  # "615 Entretien et réparations"
    assert by_account["ess_pair"].str.contains(r"% \| ").all()  # under | over, side by side
    # A narrower horizon lists fewer contracts.
    at.segmented_control(key="lev_horizon").set_value(6).run()
    assert_clean(at, "6 mois")
    assert 0 < len(table_with(at, "end_date")) < len(renewals)


def test_threshold_edit_changes_a_recommendation(at):
    at.switch_page("pages/leviers.py").run()
    before = recommendations(at)["recommendation"]
    reserved = before[before == "marché réservé"].index
    assert len(reserved), "aucun marché réservé recommandé sur la démo"
    # Asking for far more structures than any category has: no more marché réservé.
    at.number_input(key="lev_reserve_min").set_value(10_000).run()
    assert_clean(at, "seuil modifié")
    after = recommendations(at)
    assert (after.loc[reserved, "recommendation"] == "lot réservé").all()
    assert after.loc[reserved, "rule"].str.contains("≥ 2").all()
    assert any("au moins 10 000 structures" in m.value for m in at.markdown)
    # Back to the defaults.
    at.button(key="lev_rules_reset").click().run()
    assert recommendations(at)["recommendation"].equals(before)


def test_sourcing_directory_for_a_category(at):
    at.switch_page("pages/sourcing.py").run()
    assert_clean(at, "sourcing")
    at.selectbox(key="src_cpv").set_value("90").run()  # cleaning, waste: many SIAE in the demo
    assert_clean(at, "sourcing CPV 90")
    directory = table_with(at, "distance_km")
    assert len(directory) > 0
    assert {"name", "type", "commune", "past_spend", "siret"} <= set(directory.columns)
    assert directory["distance_km"].str.endswith(" km").any()
    assert directory["type"].str.contains("EI|ACI|EA|ESAT|ESS").all()
    assert any("réunion de sourcing" in c.value for c in at.caption)
    assert at.download_button(key="src_directory_csv")


def test_sourcing_directory_follows_the_notified_category(at):
    at.radio(key="f_basis").set_value("notified").run()
    at.switch_page("pages/sourcing.py").run()
    at.selectbox(key="src_cat").set_value("90").run()
    assert_clean(at, "sourcing notifié")
    assert at.selectbox(key="src_cpv").value == "90"
    at.selectbox(key="src_cpv").set_value("85").run()  # the user's own choice then stays
    assert at.selectbox(key="src_cpv").value == "85"
    assert len(table_with(at, "distance_km")) > 0


def test_spaser_report_button(at, demo_db):
    at.switch_page("pages/spaser.py").run()
    assert_clean(at, "spaser")
    button = at.download_button(key="spaser_report_dl")
    assert "PDF" in button.label
    year = at.selectbox(key="spaser_report_year").value
    at.segmented_control(key="spaser_report_fmt").set_value("xlsx").run()
    assert "XLSX" in at.download_button(key="spaser_report_dl").label
    # AppTest has no media server to run the deferred download: call what the button calls.
    from analytics import report, store

    con = store.connect(demo_db)
    try:
        pdf = report.report_bytes(con, year=int(year), fmt="pdf")
    finally:
        con.close()
    assert pdf.startswith(b"%PDF")


def test_reader_may_download_the_report(demo_db, monkeypatch, tmp_path):
    monkeypatch.setenv("EMPREINTE_DB", str(demo_db))
    monkeypatch.setenv("EMPREINTE_ROLES", str(tmp_path / "no_roles.toml"))
    monkeypatch.setenv("EMPREINTE_ROLE", "reader")
    at = AppTest.from_file("../dashboard.py", default_timeout=TIMEOUT).run()
    at.switch_page("pages/spaser.py").run()
    assert_clean(at, "spaser lecteur")
    assert at.download_button(key="spaser_report_dl")
    assert not at.data_editor


def test_levers_page_on_an_empty_database(monkeypatch, tmp_path):
    monkeypatch.delenv("EMPREINTE_ROLE", raising=False)
    monkeypatch.setenv("EMPREINTE_ROLES", str(tmp_path / "no_roles.toml"))
    monkeypatch.setenv("EMPREINTE_DB", str(tmp_path / "empty.duckdb"))
    at = AppTest.from_file("../dashboard.py", default_timeout=TIMEOUT).run()
    at.switch_page("pages/leviers.py").run()
    assert_clean(at, "leviers, base vide")
    hints = " ".join(i.value for i in at.info)
    assert "Importez vos marchés" in hints and "Importez vos mandats" in hints
    at.switch_page("pages/spaser.py").run()
    assert not at.exception
    assert not at.download_button  # no data, no report to publish

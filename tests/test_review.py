"""Monthly review: a snapshot stays frozen when a later import corrects the month, and the
review reports the difference as a revision, with the data changes since the snapshot.

The database is built with the importers from small generated files:

* mandats of September and October 2025 (4 lines, 1 700 € in October);
* DECP (JSON v2): 5 contracts notified in September 2025, 1 with a social clause (20 %);
  10 in October 2025, 3 with a social consideration (30 %): the rate moves +10 points
  against the previous month, beyond the 2-point threshold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics import review, spaser, store
from analytics.ingest import import_file
from analytics.ingest.common import Options, undo_import

ROOT = Path(__file__).resolve().parent.parent
BUYER = "21590163800019"
MONTH = "2025-10"

MANDATS_HEAD = (
    "Exercice;N° mandat;Date de paiement;SIRET fournisseur;Nom fournisseur;Montant TTC;Nature;Service\n"
)
MANDATS = MANDATS_HEAD + (
    "2025;1;15/09/2025;35600000000048;LA POSTE;1 000,00;6261;Direction générale\n"
    "2025;2;10/10/2025;35600000000048;LA POSTE;1 200,00;6261;Direction générale\n"
    "2025;3;20/10/2025;55208131766522;EDF;500,00;60612;Bâtiments\n"
    "2025;4;22/09/2025;55208131766522;EDF;300,00;60612;Bâtiments\n"
)
# The correcting file: one more October payment (+800 €) to a supplier known by its name
# only (a new unidentified supplier), and one line refused (unreadable date).
CORRECTION = MANDATS_HEAD + (
    "2025;5;28/10/2025;;BOULANGERIE DUPONT;800,00;6068;Restauration\n"
    "2025;6;pas une date;35600000000048;LA POSTE;50,00;6261;Direction générale\n"
)
OCT_SPEND = 1200.0 + 500.0
CORRECTED_OCT_SPEND = OCT_SPEND + 800.0


def contract(n: int, day: str, social: bool) -> dict:
    return {
        "id": f"2025C{n:03d}",
        "acheteur": {"id": BUYER},
        "nature": "Marché",
        "objet": f"Marché de test n° {n}",
        "codeCPV": "45000000-7",
        "procedure": "Appel d'offres ouvert",
        "dureeMois": 12,
        "dateNotification": day,
        "datePublicationDonnees": day,
        "montant": 10000 + n,
        "offresRecues": 3,
        "titulaires": [{"titulaire": {"typeIdentifiant": "SIRET", "id": "35600000000048"}}],
        "considerationsSociales": {
            "considerationSociale": ["Clause sociale" if social else "Pas de considération sociale"]
        },
        "considerationsEnvironnementales": {
            "considerationEnvironnementale": ["Pas de considération environnementale"]
        },
    }


def decp_json() -> str:
    sept = [contract(i, "2025-09-10", social=i == 0) for i in range(5)]  # 1 / 5 = 20 %
    octo = [contract(10 + i, "2025-10-10", social=i < 3) for i in range(10)]  # 3 / 10 = 30 %
    return json.dumps({"marches": {"marche": sept + octo}}, ensure_ascii=False)


def imp(con, kind: str, path: Path, text: str):
    path.write_text(text, encoding="utf-8")
    return import_file(con, kind, path, Options(who="test"))


@pytest.fixture
def base(con, tmp_path):
    """The small database: mandats and DECP imported; a 2025 environmental target of 50 %."""
    m = imp(con, "mandats", tmp_path / "mandats.csv", MANDATS)
    d = imp(con, "decp", tmp_path / "decp.json", decp_json())
    assert (m.rows_loaded, m.rows_rejected) == (4, 0)
    assert d.rows_loaded == 15
    spaser.set_target(con, "environmental_clause_rate", 2025, 0.5)
    return con


def stored(con, sid: int) -> str:
    return con.execute(
        "SELECT indicators::VARCHAR FROM snapshots WHERE snapshot_id = $i", {"i": sid}
    ).fetchone()[0]


def test_snapshot_freezes_the_month(base):
    snap = review.take_snapshot(base, MONTH, comment="Revue d'octobre", who="analyste")
    assert snap["indicators"]["month"]["total_spend"] == pytest.approx(OCT_SPEND)
    assert snap["indicators"]["month"]["social_clause_rate"] == pytest.approx(3 / 10)
    # Year to date: 1 000 + 300 in September, 1 700 in October; 4 social contracts of 15.
    assert snap["indicators"]["ytd"]["total_spend"] == pytest.approx(3000.0)
    assert snap["indicators"]["ytd"]["social_clause_rate"] == pytest.approx(4 / 15)
    (listed,) = review.snapshots(base, MONTH)
    assert listed["comment"] == "Revue d'octobre" and listed["created_by"] == "analyste"
    assert listed["indicators"] == json.loads(json.dumps(snap["indicators"]))
    r = review.review(base, MONTH)
    assert r["snapshot"]["snapshot_id"] == snap["snapshot_id"]
    assert r["revisions"] == []
    assert r["data_changes"]["imports"] == []


def test_correcting_import_is_a_revision_not_a_change_of_snapshot(base, tmp_path):
    snap = review.take_snapshot(base, MONTH, comment="avant correction")
    frozen = stored(base, snap["snapshot_id"])

    fix = imp(base, "mandats", tmp_path / "correction.csv", CORRECTION)
    assert (fix.rows_loaded, fix.rows_rejected) == (1, 1)

    # The snapshot is untouched: same JSON, byte for byte.
    assert stored(base, snap["snapshot_id"]) == frozen
    assert review.snapshots(base, MONTH)[0]["indicators"] == json.loads(frozen)

    r = review.review(base, MONTH)
    rev = {(v["scope"], v["key"]): v for v in r["revisions"]}
    assert rev[("month", "total_spend")]["snapshot"] == pytest.approx(OCT_SPEND)
    assert rev[("month", "total_spend")]["now"] == pytest.approx(CORRECTED_OCT_SPEND)
    assert rev[("ytd", "total_spend")]["now"] == pytest.approx(3000.0 + 800.0)
    assert ("month", "social_clause_rate") not in rev  # contracts did not change
    assert r["current"]["month"]["total_spend"] == pytest.approx(CORRECTED_OCT_SPEND)

    dc = r["data_changes"]
    assert dc["since_import_id"] == snap["last_import_id"]
    assert [i["import_id"] for i in dc["imports"]] == [fix.import_id]
    assert dc["imports"][0]["file"] == "correction.csv" and dc["imports"][0]["status"] == "ok"
    assert dc["rows_rejected"] == 1
    assert sum(x["rows"] for x in dc["rejected_by_reason"]) == 1
    assert dc["new_unidentified_suppliers"] == 1  # BOULANGERIE DUPONT, no SIRET

    text = review.format_review(r)
    assert "Révisions depuis l'instantané" in text and "1 700 € → 2 500 €" in text

    # Undoing the correction brings the values back to the snapshot's; the undo is listed.
    undo_import(base, fix.import_id, who="test")
    r = review.review(base, MONTH)
    assert r["revisions"] == []
    assert [(i["import_id"], i["status"]) for i in r["data_changes"]["imports"]] == [
        (fix.import_id, "undone")
    ]
    assert stored(base, snap["snapshot_id"]) == frozen


def test_undoing_an_import_older_than_the_snapshot_is_listed(base):
    snap = review.take_snapshot(base, MONTH)
    decp_id = base.execute("SELECT import_id FROM imports WHERE kind = 'decp'").fetchone()[0]
    undo_import(base, decp_id)
    r = review.review(base, MONTH)
    assert (decp_id, "undone") in [(i["import_id"], i["status"]) for i in r["data_changes"]["imports"]]
    rev = {(v["scope"], v["key"]): v for v in r["revisions"]}
    assert rev[("month", "contract_count")]["snapshot"] == 10
    assert rev[("month", "contract_count")]["now"] is None  # no contract left in the month
    assert stored(base, snap["snapshot_id"]) == json.dumps(snap["indicators"])


def test_alerts_beyond_thresholds_and_behind_trajectory(base):
    r = review.review(base, MONTH)
    comp = {c["key"]: c for c in r["comparisons"]}
    # Social clause rate: 30 % in October against 20 % in September = +10 points.
    assert comp["social_clause_rate"]["value"] == pytest.approx(0.30)
    assert comp["social_clause_rate"]["previous_month"] == pytest.approx(0.20)
    assert comp["social_clause_rate"]["delta_previous"] == pytest.approx(0.10)
    # Spend: 1 700 € against 1 300 € = +30.8 % (> 10 %).
    assert comp["total_spend"]["delta_previous"] == pytest.approx(1700 / 1300 - 1)
    variations = {(a["key"], a["against"]) for a in r["alerts"] if a["kind"] == "variation"}
    assert ("social_clause_rate", "mois précédent") in variations
    assert ("total_spend", "mois précédent") in variations
    # Contracts notified: 10 against 5 = +100 %; the single-offer rate did not move (0 %).
    assert ("contract_count", "mois précédent") in variations
    assert not any(k == "single_offer_rate" for k, _ in variations)
    # No contract has an environmental consideration: 0 % since January, target 50 % in 2025.
    (traj,) = [a for a in r["alerts"] if a["kind"] == "trajectoire"]
    assert traj["key"] == "environmental_clause_rate"
    assert traj["value"] == 0 and traj["trajectory"] == pytest.approx(0.5)
    assert "sous la trajectoire SPASER (50,0 %" in review.alert_text(traj)


def test_threshold_is_two_points_for_shares_and_ten_percent_for_amounts():
    assert review._moved("local_share", 0.021) and review._moved("local_share", -0.021)
    assert not review._moved("local_share", 0.019)
    assert review._moved("total_spend", 0.11) and not review._moved("total_spend", 0.09)
    assert review._delta("ess_share", 0.25, 0.22) == pytest.approx(0.03)  # points
    assert review._delta("total_spend", 110.0, 100.0) == pytest.approx(0.10)  # relative
    assert review._delta("total_spend", 5.0, 0.0) is None


def test_default_month_is_the_last_complete_month(base):
    import datetime as dt

    assert review.months_with_data(base) == ["2025-09", "2025-10"]
    assert review.default_month(base, today=dt.date(2025, 10, 25)) == "2025-09"
    assert review.default_month(base, today=dt.date(2026, 1, 5)) == "2025-10"


def test_review_tables_for_the_xlsx(base):
    from analytics import exports

    review.take_snapshot(base, MONTH, comment='=HYPERLINK("http://x")')
    tables = review.review_tables(review.review(base, MONTH))
    assert set(tables) == {"Revue", "Comparaisons", "Alertes", "Révisions", "Imports"}
    assert len(tables["Comparaisons"]) == len(review.HEADLINE_KEYS)
    assert exports.to_xlsx_bytes(tables)[:2] == b"PK"


def cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_snapshot_then_review(base, db_path, tmp_path):
    base.close()  # one writer per database file: the command line opens it next
    out = cli(db_path, "snapshot", "--month", MONTH, "--comment", "Revue CLI")
    assert out.returncode == 0, out.stderr
    assert "Instantané n° 1" in out.stdout

    (tmp_path / "correction.csv").write_text(CORRECTION, encoding="utf-8")
    assert cli(db_path, "import", "mandats", str(tmp_path / "correction.csv")).returncode == 0

    out = cli(db_path, "review", "--month", MONTH, "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert {"month", "snapshot", "current", "revisions", "comparisons", "alerts", "data_changes"} <= set(r)
    assert r["month"] == MONTH
    assert r["snapshot"]["comment"] == "Revue CLI"
    assert any(
        v["key"] == "total_spend" and v["now"] == pytest.approx(CORRECTED_OCT_SPEND) for v in r["revisions"]
    )
    assert len(r["data_changes"]["imports"]) == 1
    assert any(a["key"] == "social_clause_rate" for a in r["alerts"])

    out = cli(db_path, "review", "--month", MONTH)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Revue mensuelle des indicateurs — octobre 2025")

    assert cli(db_path, "review", "--month", "2025-13").returncode == 2


def test_page_takes_a_snapshot_for_analysts_only(base, db_path, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    base.close()
    monkeypatch.setenv("EMPREINTE_DB", str(db_path))
    monkeypatch.setenv("EMPREINTE_ROLES", str(tmp_path / "no_roles.toml"))
    monkeypatch.setenv("EMPREINTE_ROLE", "analyst")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180).run()
    at.switch_page("pages/revue.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="rev_month").value == "2025-10"
    at.text_area(key="rev_comment").set_value("Revue depuis la page")
    [b for b in at.button if b.label == "Prendre l'instantané"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Instantané n° 1" in s.value for s in at.success)
    assert any("Revue depuis la page" in c.value for c in at.caption)

    monkeypatch.setenv("EMPREINTE_ROLE", "reader")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180).run()
    at.switch_page("pages/revue.py").run()
    assert not at.exception
    assert not [b for b in at.button if b.label == "Prendre l'instantané"]

    con = store.connect(db_path)
    try:
        assert [s["comment"] for s in review.snapshots(con)] == ["Revue depuis la page"]
    finally:
        con.close()

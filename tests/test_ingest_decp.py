"""Contracts (DECP) importer: real samples, every format, keys, versions, duplicates.

Counts of the real samples in ../shared/data/decp/ (computed independently below):
- moreymat Ville de Croix (v1): 159 records; 158 contracts — one record is published
  twice verbatim (id 202108000000000B), 33 records have no id (kept, keyed by buyer,
  date, amount and objet), several ids are reused by different lots (split by date and
  amount);
- megalis-bretagne (v2): 5 contracts;
- official v2 example with modifications: 2 contracts; the concessions example: the same
  2 contracts + 2 concessions (skipped);
- decp-processing flat CSV: 9 rows, 9 contracts.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from analytics.ids import clean_siret
from analytics.ingest import ImportRefused, import_file
from analytics.ingest import decp as decp_mod
from analytics.ingest.common import run_import

DECP = "decp"

# The 58 columns of the consolidated tabular DECP (decp-processing reference schema).
TAB_COLUMNS = [
    "uid", "id", "nature", "acheteur_id", "acheteur_nom", "titulaire_id",
    "titulaire_typeIdentifiant", "titulaire_nom", "objet", "montant", "type", "codeCPV",
    "procedure", "techniques", "dureeMois", "dureeRestanteMois", "offresRecues",
    "dateNotification", "datePublicationDonnees", "formePrix", "typesPrix",
    "attributionAvance", "tauxAvance", "marcheInnovant", "modalitesExecution",
    "considerationsSociales", "considerationsEnvironnementales", "ccag",
    "sousTraitanceDeclaree", "typeGroupementOperateurs", "origineUE", "origineFrance",
    "lieuExecution_code", "lieuExecution_typeCode", "idAccordCadre", "titulaire_distance",
    "acheteur_categorie", "acheteur_commune_code", "acheteur_commune_nom",
    "acheteur_departement_code", "acheteur_departement_nom", "acheteur_region_code",
    "acheteur_region_nom", "acheteur_latitude", "acheteur_longitude", "titulaire_categorie",
    "titulaire_commune_code", "titulaire_commune_nom", "titulaire_departement_code",
    "titulaire_departement_nom", "titulaire_region_code", "titulaire_region_nom",
    "titulaire_latitude", "titulaire_longitude", "modification_id", "donneesActuelles",
    "sourceDataset", "sourceFile",
]  # fmt: skip

BUYER = "21590163800019"  # Ville de Croix, a valid SIRET
S1, S2, S3 = "40799550500010", "33970714300022", "75279580700011"  # valid SIRETs (Croix file)


def imp(con, path, **kw):
    return import_file(con, DECP, path, **kw)


def q(con, sql, params=None):
    return con.execute(sql, params or {}).fetchall()


def one(con, sql, params=None):
    return con.execute(sql, params or {}).fetchone()


def db_state(con) -> tuple:
    return tuple(
        one(con, f"SELECT count(*) FROM {t}")[0]
        for t in ("imports", "contracts", "contract_holders", "rejected_rows")
    )


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def v2_marche(id_, *, montant=100000, date="2024-03-01", pub="2024-03-10", holders=(S1,), **extra):
    rec = {
        "id": id_,
        "acheteur": {"id": BUYER},
        "nature": "Marché",
        "objet": f"Objet {id_}",
        "codeCPV": "45000000-7",
        "procedure": "Procédure adaptée",
        "lieuExecution": {"code": "59170", "typeCode": "Code postal"},
        "dureeMois": 12,
        "dateNotification": date,
        "datePublicationDonnees": pub,
        "montant": montant,
        "formePrix": "Forfaitaire",
        "offresRecues": 2,
        "tauxAvance": 0.3,
        "marcheInnovant": False,
        "sousTraitanceDeclaree": False,
        "typeGroupementOperateurs": "Pas de groupement",
        "titulaires": [{"titulaire": {"id": h, "typeIdentifiant": "SIRET"}} for h in holders],
        "considerationsSociales": {"considerationSociale": ["Pas de considération sociale"]},
        "considerationsEnvironnementales": {
            "considerationEnvironnementale": ["Pas de considération environnementale"]
        },
        "modifications": [],
    }
    rec.update(extra)
    return rec


def v2_file(path: Path, marches, concessions=()) -> Path:
    return write_json(path, {"marches": {"marche": list(marches), "contrat-concession": list(concessions)}})


def tab_row(**kw) -> dict:
    row = dict.fromkeys(TAB_COLUMNS, "")
    row.update(
        acheteur_id=BUYER,
        acheteur_nom="Ville de Croix",
        nature="Marché",
        codeCPV="45000000-7",
        procedure="Procédure adaptée",
        dureeMois="12",
        offresRecues="3",
        formePrix="Forfaitaire",
        titulaire_typeIdentifiant="SIRET",
        datePublicationDonnees="2024-06-30",
        lieuExecution_code="59170",
        lieuExecution_typeCode="Code postal",
        modification_id="0",
        donneesActuelles="true",
        considerationsSociales="",
        considerationsEnvironnementales="",
    )
    row.update({k: str(v) for k, v in kw.items()})
    if not row["uid"] and row["id"]:
        row["uid"] = row["acheteur_id"] + row["id"]
    return row


def write_tab_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=TAB_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def tabular_sample() -> list[dict]:
    """U1 reused for two lots (two dates), U2 held jointly by two holders (same
    uid/date/montant), U3 with a modification row, one row with a bad date."""
    return [
        tab_row(id="U1", objet="Lot 1 voirie", montant="1000.0", dateNotification="2024-01-10",
                titulaire_id=S1, titulaire_nom="PAREDES", titulaire_departement_code="59",
                titulaire_region_code="32", titulaire_commune_code="59163",
                considerationsSociales="Clause sociale, Critère social",
                considerationsEnvironnementales="Critère environnemental"),
        tab_row(id="U1", objet="Lot 2 éclairage", montant="2000.0", dateNotification="2024-02-20",
                titulaire_id=S2, titulaire_nom="ATC", titulaire_departement_code="49",
                titulaire_region_code="52",
                considerationsSociales="Pas de considération sociale"),
        tab_row(id="U2", objet="Groupement", montant="9000.0", dateNotification="2024-03-05",
                titulaire_id=S1, titulaire_nom="PAREDES", considerationsSociales="Marché réservé"),
        tab_row(id="U2", objet="Groupement", montant="9000.0", dateNotification="2024-03-05",
                titulaire_id=S3, titulaire_nom="FLORE ANDOLE", titulaire_categorie="PME"),
        tab_row(id="U3", objet="Entretien", montant="5000.0", dateNotification="2024-04-01",
                datePublicationDonnees="2024-04-05", titulaire_id=S2, modification_id="0",
                donneesActuelles="false"),
        tab_row(id="U3", objet="Entretien", montant="6500.0", dateNotification="2024-09-01",
                datePublicationDonnees="2024-09-03", titulaire_id=S2, modification_id="1",
                dureeMois="18"),
        tab_row(id="U4", objet="Mauvaise date", montant="10", dateNotification="31/13/2024",
                titulaire_id=S3),
    ]  # fmt: skip


# --- real samples --------------------------------------------------------------------


def test_croix_v1_real_sample(con, shared):
    path = shared / "decp" / "moreymat__decp_ville-de-croix_21590163800019_2019-2021.json"
    records = json.loads(path.read_text(encoding="utf-8"))["marches"]
    assert len(records) == 159
    # independent count: distinct records by their whole content (one is published twice)
    distinct = {json.dumps(r, sort_keys=True) for r in records}
    assert len(distinct) == 158
    # ids are reused by distinct lots and sometimes missing: the id alone is not the key
    assert len({r["id"] for r in records}) == 112
    assert sum(1 for r in records if not r["id"].strip()) == 33

    r = imp(con, path)
    assert (r.rows_read, r.rows_loaded, r.rows_duplicate, r.rows_rejected) == (159, 158, 1, 0)
    assert r.contracts == 158
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 158
    assert r.details["format"] == "decp_json_v1"
    assert r.details["sans_identifiant"] == 33
    expected_total = sum(Decimal(_final_amount_v1(json.loads(x))) for x in distinct)
    assert Decimal(str(r.amount_total)) == expected_total
    # v1 has no considerations: unknown (NULL), not false
    assert (
        one(
            con,
            "SELECT count(*) FROM contracts WHERE considerations_sociales IS NULL AND has_social IS NULL "
            "AND has_environmental IS NULL AND is_reserved IS NULL",
        )[0]
        == 158
    )
    assert "note_considerations" in r.details
    # holders: 'Siret' / '' types, names kept, SIRETs checked
    assert one(con, "SELECT count(*) FROM contract_holders WHERE holder_id = '81809944200019'")[0] == 1
    assert one(
        con, "SELECT holder_siret, holder_name FROM contract_holders WHERE holder_id = '81809944200019'"
    ) == ("81809944200019", "DECOPUB")
    # three lots under id 202117F000000000 are three contracts
    assert one(con, "SELECT count(*) FROM contracts WHERE id = '202117F000000000'")[0] == 3
    # a record without holders: holder_count 0
    assert one(con, "SELECT count(*) FROM contracts WHERE holder_count = 0")[0] == 3


def _final_amount_v1(rec: dict) -> str:
    amount = rec["montant"]
    for m in rec.get("modifications") or []:
        if m.get("montant") not in (None, ""):
            amount = m["montant"]
    return amount


def test_megalis_v2_real_sample(con, shared):
    path = shared / "decp" / "megalis-bretagne__decp-59920013600241-2024-07-09-01.json"
    marches = json.loads(path.read_text(encoding="utf-8"))["marches"]["marche"]
    ids = {(m["acheteur"]["id"], m["id"]) for m in marches}
    assert len(ids) == 5
    r = imp(con, path)
    assert (r.rows_read, r.rows_loaded, r.contracts) == (5, 5, 5)
    assert r.amount_total == pytest.approx(sum(m["montant"] for m in marches))
    rows = q(con, "SELECT has_social, has_environmental, is_reserved, offers_received, cpv_division, "
                  "lieu_code, end_date FROM contracts ORDER BY seq")  # fmt: skip
    assert rows[0] == (False, False, False, 11, "45", "22", dt.date(2024, 9, 30))
    # subcontracting acts are ignored: one holder each, the titulaire
    assert q(con, "SELECT DISTINCT holder_count FROM contracts") == [(1,)]
    assert one(con, "SELECT holder_siret FROM contract_holders WHERE seq = 1") == ("32933888305269",)


def test_official_examples_modifications_and_concessions(con, shared):
    mods = shared / "decp" / "format-commande-publique__exemples_json_marches_avec_modifications.json"
    data = json.loads(mods.read_text(encoding="utf-8"))["marches"]["marche"]
    assert len({(m["acheteur"]["id"], m["id"]) for m in data}) == 2
    r = imp(con, mods)
    assert (r.contracts, r.rows_loaded) == (2, 2)
    row = one(
        con,
        "SELECT amount, amount_initial, modification_count, duration_months, end_date, "
        "considerations_sociales, considerations_environnementales, has_social, has_environmental, "
        "techniques, modalites_execution, innovative, subcontracting "
        "FROM contracts_current WHERE id = 'TEST2022'",
    )
    assert row == (
        Decimal("123457.87"), Decimal("575000.00"), 1, 12.0, dt.date(2025, 5, 15),
        ["Clause sociale", "Critère social"], ["Clause environnementale"], True, True,
        ["Concours", "Accord-cadre"], ["Tranches"], True, True,
    )  # fmt: skip
    # the modification replaced the holder (15 digits: not a SIRET)
    assert q(con, "SELECT holder_id, holder_siret FROM contract_holders_current WHERE seq = 1") == [
        ("868768687576575", None)
    ]
    assert r.amount_total == pytest.approx(2 * 123457.87)

    conc = shared / "decp" / "format-commande-publique__exemples_json_marches_concessions.json"
    body = json.loads(conc.read_text(encoding="utf-8"))["marches"]
    assert (len(body["marche"]), len(body["contrat-concession"])) == (2, 2)
    r2 = imp(con, conc)
    # same two marchés already stored (identical versions): duplicates; concessions skipped
    assert r2.details["concessions_ignorees"] == 2
    assert "concession" in r2.details["note_concessions"]
    assert (r2.rows_read, r2.rows_loaded, r2.rows_duplicate, r2.contracts) == (2, 0, 2, 0)
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 2


def test_concessions_example_alone(con, shared):
    conc = shared / "decp" / "format-commande-publique__exemples_json_marches_concessions.json"
    r = imp(con, conc)
    assert (r.contracts, r.details["concessions_ignorees"]) == (2, 2)


def test_flat_csv_real_sample(con, shared):
    path = shared / "decp" / "decp-processing__decp_augmente_valides_2022_test.csv"
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    assert len(rows) == 9
    assert len({(x["acheteur.id"], x["id"]) for x in rows}) == 9
    r = imp(con, path)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.contracts) == (9, 9, 0, 9)
    assert r.details["format"] == "decp_csv_plat"
    assert r.amount_total == pytest.approx(sum(float(x["montant"]) for x in rows))
    # considerations parsed from "['Critère environnemental', 'Clause environnementale']"
    assert one(
        con,
        "SELECT considerations_sociales, considerations_environnementales, has_social, "
        "has_environmental, is_reserved, innovative, subcontracting, offers_received "
        "FROM contracts WHERE id = '24-1065297-2'",
    ) == (["Clause sociale"], ["Critère environnemental", "Clause environnementale"], True, True,
          False, False, False, 39)  # fmt: skip
    # MQ / CDL placeholders are empty values
    assert one(
        con, "SELECT innovative, subcontracting, accord_cadre_id FROM contracts WHERE id = '202404'"
    ) == (None, None, None)
    # 'INX ' flag stripped; TVA holder kept without SIRET
    assert one(con, "SELECT cpv, cpv_division FROM contracts WHERE id = '2023AOVOI40 L1'") == (
        "67151000-0",
        "67",
    )
    assert one(
        con, "SELECT holder_id, holder_id_type, holder_siret FROM contract_holders WHERE holder_id LIKE 'FR%'"
    ) == ("FR32918951849", "TVA", None)
    assert one(con, "SELECT count(*) FROM contract_holders WHERE holder_siret IS NOT NULL")[0] == 8


@pytest.mark.parametrize(
    "name",
    [
        "format-commande-publique__schema_decp_v2.0.3.json",
        "format-commande-publique__v1.5.0_marches.json",
        "decp-processing__reference_schema_base.json",
        "format-commande-publique__schema_decp_v2.0.2.xsd",
    ],
)
def test_schemas_are_not_data(con, shared, name):
    before = db_state(con)
    with pytest.raises(ImportRefused):
        imp(con, shared / "decp" / name)
    assert db_state(con) == before


def test_reference_schema_has_the_58_columns(shared):
    fields = json.loads((shared / "decp" / "decp-processing__reference_schema_base.json").read_text())[
        "fields"
    ]
    assert [f["name"] for f in fields] == TAB_COLUMNS


# --- JSON v2 / v1 --------------------------------------------------------------------


def test_v2_republication_latest_wins_counted_once(con, tmp_path):
    later = v2_marche("R1", pub="2024-06-01", montant=50000,
                      modifications=[{"modification": {"id": 1, "montant": 60000, "dureeMois": 24,
                                                       "datePublicationDonneesModification": "2024-06-01"}}])  # fmt: skip
    earlier = v2_marche("R1", pub="2024-03-10", montant=50000)
    # the later version comes first in the file: the publication date decides, not the order
    r = imp(con, v2_file(tmp_path / "rep.json", [later, earlier, v2_marche("R2")]))
    assert r.contracts == 2
    assert r.rows_loaded == 3  # both versions of R1 are kept
    assert one(con, "SELECT count(*) FROM contracts WHERE id = 'R1'")[0] == 2
    assert q(con, "SELECT amount, amount_initial, modification_count, date_publication, duration_months "
                  "FROM contracts_current WHERE id = 'R1'") == [
        (Decimal("60000.00"), Decimal("50000.00"), 1, dt.date(2024, 6, 1), 24.0)
    ]  # fmt: skip
    assert r.amount_total == pytest.approx(60000 + 100000)
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 2


def test_multi_holder_split(con, tmp_path):
    r = imp(con, v2_file(tmp_path / "g.json", [v2_marche("G1", montant=90000, holders=(S1, S2, S3),
                                                         typeGroupementOperateurs="Conjoint")]))  # fmt: skip
    assert r.contracts == 1
    assert r.amount_total == pytest.approx(90000)
    assert q(con, "SELECT holder_rank, holder_siret FROM contract_holders ORDER BY holder_rank") == [
        (1, S1), (2, S2), (3, S3)
    ]  # fmt: skip
    per_holder = q(
        con,
        "SELECT h.holder_siret, c.amount / c.holder_count FROM contract_holders_current h "
        "JOIN contracts_current c USING (import_id, seq) ORDER BY 1",
    )
    assert [float(x[1]) for x in per_holder] == pytest.approx([30000.0] * 3)
    assert one(con, "SELECT holder_count, groupement FROM contracts") == (3, "Conjoint")


def test_modifications_applied_in_id_order(con, tmp_path):
    rec = v2_marche(
        "M1", montant=100000, date="2024-01-31",
        modifications=[
            {"modification": {"id": 2, "montant": 130000, "datePublicationDonneesModification": "2024-08-01"}},
            {"modification": {"id": 1, "montant": 110000, "dureeMois": 13,
                              "titulaires": [{"titulaire": {"id": S2, "typeIdentifiant": "SIRET"}}],
                              "datePublicationDonneesModification": "2024-05-01"}},
        ],
    )  # fmt: skip
    imp(con, v2_file(tmp_path / "m.json", [rec]))
    row = one(con, "SELECT amount, amount_initial, modification_count, duration_months, end_date, "
                   "date_publication, holder_count FROM contracts_current")  # fmt: skip
    assert row == (Decimal("130000.00"), Decimal("100000.00"), 2, 13.0, dt.date(2025, 2, 28),
                   dt.date(2024, 8, 1), 1)  # fmt: skip
    assert q(con, "SELECT holder_siret FROM contract_holders") == [(S2,)]


def test_considerations_normalised(con, tmp_path):
    recs = [
        v2_marche("C1", considerationsSociales={"considerationSociale": ["clause SOCIALE", "Marche reserve"]},
                  considerationsEnvironnementales={"considerationEnvironnementale": ["CRITERE ENVIRONNEMENTAL"]}),
        v2_marche("C2", considerationsSociales={"considerationSociale": "Critère social"},
                  considerationsEnvironnementales={"considerationEnvironnementale": ["Pas de considération environnementale"]}),
        v2_marche("C3", considerationsSociales=["Pas de considération sociale", "Inventé"]),
        v2_marche("C4"),
    ]  # fmt: skip
    del recs[3]["considerationsSociales"], recs[3]["considerationsEnvironnementales"]
    r = imp(con, v2_file(tmp_path / "c.json", recs))
    got = {
        x[0]: x[1:]
        for x in q(
            con,
            "SELECT id, considerations_sociales, considerations_environnementales, has_social, "
            "is_reserved, has_environmental FROM contracts",
        )  # fmt: skip
    }
    assert got["C1"] == (["Clause sociale", "Marché réservé"], ["Critère environnemental"], True, True, True)
    assert got["C2"] == (["Critère social"], ["Pas de considération environnementale"], True, False, False)
    assert got["C3"] == (
        ["Pas de considération sociale"],
        ["Pas de considération environnementale"],
        False,
        False,
        False,
    )
    assert got["C4"] == (None, None, None, None, None)
    assert r.details["considerations_inconnues"] == {"Inventé": 1}


def test_label_parsing_variants():
    unknown: dict = {}
    soc = decp_mod.SOCIAL_LABELS
    assert decp_mod._labels("['Clause sociale', 'Critère social']", soc, unknown) == [
        "Clause sociale",
        "Critère social",
    ]
    assert decp_mod._labels("Clause sociale, critere social", soc, unknown) == [
        "Clause sociale",
        "Critère social",
    ]
    assert decp_mod._labels("[Marché réservé]", soc, unknown) == ["Marché réservé"]
    assert decp_mod._labels({"considerationSociale": ["Clauses sociales"]}, soc, unknown) == [
        "Clause sociale"
    ]
    assert decp_mod._labels("", soc, unknown) is None
    assert decp_mod._labels("MQ", soc, unknown) is None
    assert decp_mod._labels([], soc, unknown) is None
    assert unknown == {}


def test_v1_format_from_schema_1_5(con, tmp_path):
    data = {
        "marches": [
            {
                "id": "2019-001", "uid": "210100000000162019-001", "_type": "Marché",
                "acheteur": {"id": "21010000000016", "nom": "Commune test"},
                "nature": "Marché", "objet": "Travaux de voirie", "codeCPV": "45233140-2",
                "procedure": "Procédure adaptée",
                "lieuExecution": {"code": "1000", "typeCode": "Code postal", "nom": "Bourg"},
                "dureeMois": 6, "dateNotification": "2019-04-02+02:00",
                "datePublicationDonnees": "2019-04-10", "montant": 120000.5, "formePrix": "Ferme",
                "titulaires": [{"typeIdentifiant": "SIRET", "id": S1, "denominationSociale": "PAREDES"},
                               {"typeIdentifiant": "TVA", "id": "FR32918951849", "denominationSociale": "EU SA"}],
                "modifications": [{"objetModification": "avenant 1", "dateNotificationModification": "2019-09-01",
                                   "datePublicationDonneesModification": "2019-09-05", "montant": 125000,
                                   "dureeMois": 8}],
            },
            {
                "id": "DSP-1", "_type": "Contrat de concession",
                "autoriteConcedante": {"id": "21010000000016", "nom": "Commune test"},
                "nature": "Délégation de service public", "objet": "Eau", "valeurGlobale": 1e6,
                "dateSignature": "2019-01-01", "datePublicationDonnees": "2019-01-10",
                "concessionnaires": [{"typeIdentifiant": "SIRET", "id": S2, "denominationSociale": "X"}],
            },
        ]
    }  # fmt: skip
    r = imp(con, write_json(tmp_path / "v1.json", data))
    assert (r.rows_read, r.contracts, r.details["concessions_ignorees"]) == (1, 1, 1)
    row = one(con, "SELECT contract_key, buyer_siret, buyer_name, lieu_code, amount, amount_initial, "
                   "modification_count, end_date, source_format, considerations_sociales, has_social, holder_count "
                   "FROM contracts")  # fmt: skip
    assert row == ("210100000000162019-001", None, "Commune test", "01000", Decimal("125000.00"),
                   Decimal("120000.50"), 1, dt.date(2019, 12, 2), "decp_json_v1", None, None, 2)  # fmt: skip
    assert q(con, "SELECT holder_id_type, holder_siret, holder_name FROM contract_holders ORDER BY holder_rank") == [
        ("SIRET", S1, "PAREDES"), ("TVA", None, "EU SA")
    ]  # fmt: skip


def test_flattened_json_variants(con, tmp_path):
    rec = {
        "id": "F1", "acheteur.id": BUYER, "objet": "x", "montant": "1 234,50",
        "dateNotification": "15/03/2024", "datePublicationDonnees": "2024-03-20",
        "titulaires": [{"id": S1, "typeIdentifiant": "SIRET"}],
        "considerationsSociales.considerationSociale": ["Clause sociale"],
        "lieuExecution.code": "59", "lieuExecution.typeCode": "Code département",
    }  # fmt: skip
    r = imp(con, write_json(tmp_path / "flat.json", {"marches": [rec]}))
    assert r.contracts == 1
    assert one(con, "SELECT buyer_siret, amount, date_notification, has_social, lieu_code, contract_key FROM contracts") == (
        BUYER, Decimal("1234.50"), dt.date(2024, 3, 15), True, "59", BUYER + "F1"
    )  # fmt: skip


def test_json_bad_records_rejected(con, tmp_path):
    good = v2_marche("OK1")
    bad_date = v2_marche("B1", date="2024-02-31")
    bad_amount = v2_marche("B2", montant="beaucoup")
    negative = v2_marche("B3", montant=-5)
    no_id = v2_marche("", objet=None)
    far = v2_marche("B4", date="2204-01-01")
    r = imp(con, v2_file(tmp_path / "bad.json", [good, bad_date, bad_amount, negative, no_id, far]))
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.contracts) == (6, 1, 5, 1)
    assert q(con, "SELECT line_number, column_name, raw_value, reason FROM rejected_rows ORDER BY line_number") == [
        (2, "dateNotification", "2024-02-31", "date de notification illisible"),
        (3, "montant", "beaucoup", "montant illisible"),
        (4, "montant", "-5", "montant négatif"),
        (5, "id", None, "identifiant du marché absent (ni uid, ni id, ni objet)"),
        (6, "dateNotification", "2204-01-01", "date de notification invraisemblable"),
    ]  # fmt: skip


def test_malformed_json_refused_db_unchanged(con, tmp_path):
    imp(con, v2_file(tmp_path / "ok.json", [v2_marche("A1")]))
    before = db_state(con)
    bad = tmp_path / "bad.json"
    bad.write_text('{"marches": {"marche": [{"id": "X", "montant": 12,', encoding="utf-8")
    with pytest.raises(ImportRefused, match="JSON est illisible"):
        imp(con, bad)
    assert db_state(con) == before
    for payload in ({"foo": [1, 2]}, [1, 2, 3], {"marches": {"marche": []}}, {"marches": [{"a": 1}]}):
        with pytest.raises(ImportRefused):
            imp(con, write_json(tmp_path / "shape.json", payload))
        assert db_state(con) == before
    with pytest.raises(ImportRefused, match="concession"):
        imp(con, write_json(tmp_path / "c.json", {"marches": {"contrat-concession": [{"id": "C"}]}}))
    assert db_state(con) == before
    assert one(con, "SELECT count(*) FROM imports WHERE status <> 'ok'")[0] == 0


def test_unknown_text_and_binary_refused(con, tmp_path):
    before = db_state(con)
    p = tmp_path / "x.csv"
    p.write_text("nom;montant\nA;12\n", encoding="utf-8")
    with pytest.raises(ImportRefused, match="Colonnes DECP introuvables"):
        imp(con, p)
    p2 = tmp_path / "x.html"
    p2.write_text("<html><body>no</body></html>", encoding="utf-8")
    with pytest.raises(ImportRefused):
        imp(con, p2)
    assert db_state(con) == before


# --- re-import, overlapping files, reused ids across files ----------------------------


def test_reimport_overlapping_file_counts_duplicates(con, shared, tmp_path):
    path = shared / "decp" / "moreymat__decp_ville-de-croix_21590163800019_2019-2021.json"
    imp(con, path)
    records = json.loads(path.read_text(encoding="utf-8"))["marches"]
    # overlap: 20 records already stored (incl. lots of a reused id and id-less records),
    # one new contract, one new version (a later publication with a modification)
    subset = records[:20] + [records[60], records[66]]
    changed = dict(records[5])
    changed["datePublicationDonnees"] = "2022-03-01"
    changed["modifications"] = [{"objetModification": "avenant", "montant": "7000.00",
                                 "datePublicationDonneesModification": "2022-03-01"}]  # fmt: skip
    new = dict(records[5], id="NOUVEAU-2022", objet="Nouveau marché", dateNotification="2022-02-01")
    r = imp(con, write_json(tmp_path / "overlap.json", {"marches": subset + [changed, new]}))
    assert r.rows_duplicate == 22
    assert (r.rows_loaded, r.contracts) == (2, 2)
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 159
    assert one(con, "SELECT amount FROM contracts_current WHERE id = $i", {"i": records[5]["id"]}) == (
        Decimal("7000.00"),
    )


def test_reused_id_across_files_is_split(con, tmp_path):
    a = v2_marche("L", montant=1000, date="2024-01-10", objet="Lot 1")
    imp(con, v2_file(tmp_path / "a.json", [a]))
    assert q(con, "SELECT contract_key FROM contracts") == [(BUYER + "L",)]
    b = v2_marche("L", montant=2000, date="2024-05-10", objet="Lot 2", holders=(S2,))
    r = imp(con, v2_file(tmp_path / "b.json", [b]))
    assert r.contracts == 1 and r.details["versions_anterieures_recles"] == 1
    keys = sorted(x[0] for x in q(con, "SELECT contract_key FROM contracts_current"))
    assert keys == [BUYER + "L|2024-01-10|1000.00", BUYER + "L|2024-05-10|2000.00"]
    # holders follow their contract's new key
    assert one(con, "SELECT count(*) FROM contract_holders h JOIN contracts c USING (import_id, seq) "
                    "WHERE h.contract_key <> c.contract_key")[0] == 0  # fmt: skip
    # a third file republishing lot 1 unchanged: a duplicate, not a third contract
    r3 = imp(con, v2_file(tmp_path / "c.json", [a, v2_marche("Z")]))
    assert (r3.rows_duplicate, r3.contracts) == (1, 1)
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 3


# --- tabular DECP (decp.info) ----------------------------------------------------------


def test_tabular_csv_reused_ids_joint_holders_and_modifications(con, tmp_path):
    rows = tabular_sample()
    r = imp(con, write_tab_csv(tmp_path / "decp.csv", rows))
    assert r.details["format"] == "decp_tabulaire"
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (7, 6, 1)
    # U1 twice (two dates) -> 2 contracts; U2 (2 rows) -> 1; U3 (initial + modification) -> 1
    assert r.contracts == 4
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 4
    assert sorted(x[0] for x in q(con, "SELECT contract_key FROM contracts_current WHERE id = 'U1'")) == [
        BUYER + "U1|2024-01-10|1000.00", BUYER + "U1|2024-02-20|2000.00"
    ]  # fmt: skip
    u2 = one(
        con, "SELECT holder_count, amount, is_reserved, has_social FROM contracts_current WHERE id = 'U2'"
    )
    assert u2 == (2, Decimal("9000.00"), True, True)
    assert q(con, "SELECT holder_siret, holder_name, categorie FROM contract_holders_current h "
                  "JOIN contracts_current c USING (import_id, seq) WHERE c.id = 'U2' ORDER BY holder_rank") == [
        (S1, "PAREDES", None), (S3, "FLORE ANDOLE", "PME")
    ]  # fmt: skip
    # the modification row is the current version of U3, not a new contract
    u3 = one(con, "SELECT contract_key, amount, amount_initial, modification_count, date_notification, "
                  "duration_months, end_date FROM contracts_current WHERE id = 'U3'")  # fmt: skip
    assert u3 == (BUYER + "U3", Decimal("6500.00"), Decimal("5000.00"), 1, dt.date(2024, 4, 1), 18.0,
                  dt.date(2025, 10, 1))  # fmt: skip
    # amount_total: current versions, once per contract
    assert r.amount_total == pytest.approx(1000 + 2000 + 9000 + 6500)
    # holder location from the file
    assert one(con, "SELECT commune_code, departement_code, region_code FROM contract_holders "
                    "WHERE holder_siret = $s AND contract_key LIKE '%2024-01-10%'", {"s": S1}) == (
        "59163", "59", "32")  # fmt: skip
    assert one(con, "SELECT considerations_sociales, considerations_environnementales, has_environmental "
                    "FROM contracts WHERE contract_key LIKE '%2024-01-10%'") == (
        ["Clause sociale", "Critère social"], ["Critère environnemental"], True
    )  # fmt: skip
    # empty considerations = unknown
    assert one(con, "SELECT has_social FROM contracts_current WHERE id = 'U3'") == (None,)
    assert q(con, "SELECT line_number, column_name, raw_value, reason FROM rejected_rows") == [
        (8, "dateNotification", "31/13/2024", "date de notification illisible")
    ]


def test_tabular_without_modification_columns_follows_the_convention(con, tmp_path):
    rows = [tab_row(id="W", objet="Entretien", montant="5000", dateNotification="2024-04-01", titulaire_id=S2),
            tab_row(id="W", objet="Entretien", montant="6500", dateNotification="2024-09-01", titulaire_id=S2)]  # fmt: skip
    cols = [c for c in TAB_COLUMNS if c not in ("modification_id", "donneesActuelles")]
    path = tmp_path / "w.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore", delimiter=";")
        w.writeheader()
        w.writerows(rows)
    r = imp(con, path)
    assert r.contracts == 2  # same uid, another date and amount: distinct contracts


def test_tabular_parquet(con, tmp_path):
    csv_path = write_tab_csv(tmp_path / "t.csv", tabular_sample())
    pq = tmp_path / "t.parquet"
    c = duckdb.connect()
    c.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv_path}', all_varchar=true)")
    # typed columns as decp.info publishes them: integer SIRETs, double amounts, dates
    c.execute(
        f"""COPY (SELECT * REPLACE (
                CAST(acheteur_id AS BIGINT) AS acheteur_id, CAST(titulaire_id AS BIGINT) AS titulaire_id,
                CAST(montant AS DOUBLE) AS montant, TRY_CAST(dateNotification AS DATE) AS dateNotification,
                CAST(datePublicationDonnees AS DATE) AS datePublicationDonnees,
                CAST(modification_id AS INTEGER) AS modification_id,
                CAST(lieuExecution_code AS INTEGER) AS lieuExecution_code,
                CAST(donneesActuelles AS BOOLEAN) AS donneesActuelles)
            FROM t) TO '{pq}' (FORMAT parquet)"""
    )
    c.close()
    r = imp(con, pq)
    assert (r.rows_read, r.rows_loaded, r.contracts) == (7, 6, 4)
    assert r.rows_rejected == 1  # the unreadable date became NULL in Parquet: date absent
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 4
    assert one(con, "SELECT amount, modification_count FROM contracts_current WHERE id = 'U3'") == (
        Decimal("6500.00"),
        1,
    )
    assert one(con, "SELECT count(DISTINCT holder_siret) FROM contract_holders")[0] == 3
    # re-importing the same contracts from the CSV: all duplicates
    r2 = imp(con, csv_path)
    assert (r2.rows_loaded, r2.rows_duplicate, r2.contracts) == (0, 6, 0)
    assert one(con, "SELECT count(*) FROM contracts_current")[0] == 4


def test_flat_csv_placeholders_modifications_and_considerations(con, tmp_path):
    header = ("titulaire_id_1;titulaire_typeIdentifiant_1;titulaire_id_2;titulaire_typeIdentifiant_2;"
              "titulaire_id_3;titulaire_typeIdentifiant_3;id;nature;objet;codeCPV;procedure;dureeMois;"
              "dateNotification;datePublicationDonnees;montant;formePrix;offresRecues;marcheInnovant;"
              "acheteur.id;lieuExecution.code;lieuExecution.typeCode;considerationsSociales;"
              "considerationsEnvironnementales;techniques;tauxAvance;idModification;montantModification;"
              "dureeMoisModification;idTitulaireModification;typeIdentifiantTitulaireModification;"
              "datePublicationDonneesModificationModification")  # fmt: skip
    lines = [
        f"{S1};SIRET;{S2};SIRET;{S3};SIRET;P1;Marché;Groupement;45000000-7;Procédure adaptée;12;"
        f"2024-02-01;2024-02-10;30000.0;Forfaitaire;3;MQ;{BUYER};59170;Code postal;"
        "\"['clause sociale', 'Marche reserve']\";['CDL'];['Accord-cadre'];CDL;CDL;CDL;CDL;CDL;CDL;CDL",
        f"{S1};SIRET;CDL;CDL;CDL;CDL;P2;Marché;Travaux;INX 45111100;Procédure adaptée;MQ;"
        f"2024-03-01;2024-03-05;1000;Unitaire;MQ;True;{BUYER};59;Code département;"
        "['Pas de considération sociale'];['Critère environnemental'];MQ;0.05;1;1500.5;6;"
        f"{S2};SIRET;2024-07-01",
        f"{S1};SIRET;CDL;CDL;CDL;CDL;P3;Marché;Sans montant lisible;45000000;Procédure adaptée;1;"
        f"2024-03-01;2024-03-05;mille;Unitaire;1;False;{BUYER};59;Code département;CDL;CDL;CDL;CDL;"
        "CDL;CDL;CDL;CDL;CDL;CDL",
    ]
    path = tmp_path / "flat.csv"
    path.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="cp1252")  # Windows-1252
    r = imp(con, path)
    assert r.details["format"] == "decp_csv_plat"
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.contracts) == (3, 2, 1, 2)
    p1 = one(con, "SELECT holder_count, considerations_sociales, considerations_environnementales, has_social, "
                  "is_reserved, has_environmental, innovative, advance_rate, techniques, duration_months "
                  "FROM contracts WHERE id = 'P1'")  # fmt: skip
    assert p1 == (3, ["Clause sociale", "Marché réservé"], None, True, True, None, None, None,
                  ["Accord-cadre"], 12.0)  # fmt: skip
    p2 = one(con, "SELECT amount, amount_initial, modification_count, duration_months, date_publication, "
                  "cpv, cpv_division, innovative, advance_rate, has_environmental, has_social, holder_count "
                  "FROM contracts WHERE id = 'P2'")  # fmt: skip
    assert p2 == (Decimal("1500.50"), Decimal("1000.00"), 1, 6.0, dt.date(2024, 7, 1), "45111100", "45",
                  True, pytest.approx(0.05), True, False, 1)  # fmt: skip
    assert q(
        con, "SELECT holder_siret FROM contract_holders WHERE contract_key = $k", {"k": BUYER + "P2"}
    ) == [(S2,)]
    assert q(con, "SELECT line_number, column_name, raw_value, reason FROM rejected_rows") == [
        (4, "montant", "mille", "montant illisible")
    ]


# --- vectorised SQL helpers stay in step with the Python ones -------------------------


def test_sql_siret_matches_clean_siret():
    rnd = random.Random(7)
    vals = [BUYER, S1, "35600000000048", "356000000 12345", "FR32918951849", "1234", " 4079955050001 "]
    for _ in range(3000):
        n = rnd.choice([9, 13, 14, 14, 14, 15])
        vals.append("".join(rnd.choice("0123456789") for _ in range(n)))
        vals.append("356000000" + "".join(rnd.choice("0123456789") for _ in range(5)))
    c = duckdb.connect()
    c.register("v", pa.table({"x": vals}))
    got = dict(c.execute(decp_mod.sql_clean_siret_table("SELECT x FROM v")).fetchall())
    assert any(clean_siret(v) for v in vals)
    for v in set(vals):
        assert got.get(v) == clean_siret(v), v


def test_tabular_speed_is_vectorised(con, tmp_path):
    """20 000 rows (about 13 000 contracts) load in a few seconds, not row by row."""
    rnd = random.Random(1)
    rows = []
    sirets = [S1, S2, S3, BUYER]
    i = 0
    while len(rows) < 20000:
        i += 1
        for h in range(rnd.choice([1, 1, 2, 3])):
            rows.append(tab_row(id=f"K{i}", objet=f"Objet {i}", montant=f"{1000 + i}.5",
                                dateNotification=f"2024-{1 + i % 12:02d}-15", titulaire_id=sirets[h],
                                considerationsSociales=rnd.choice(["", "Clause sociale"])))  # fmt: skip
    path = write_tab_csv(tmp_path / "big.csv", rows)
    t0 = time.perf_counter()
    r = run_import(con, DECP, path, decp_mod.load, reclassify=False)
    elapsed = time.perf_counter() - t0
    assert r.contracts == i
    assert r.rows_loaded == len(rows)
    assert elapsed < 30, elapsed


def test_json_with_bom_or_utf16_is_json(con, tmp_path):
    payload = json.dumps({"marches": {"marche": [v2_marche("B1")]}}, ensure_ascii=False)
    p = tmp_path / "bom.json"
    p.write_bytes(b"\xef\xbb\xbf" + payload.encode("utf-8"))
    assert imp(con, p).contracts == 1
    p2 = tmp_path / "u16.json"
    p2.write_bytes(json.dumps({"marches": {"marche": [v2_marche("B2")]}}).encode("utf-16"))
    assert imp(con, p2).contracts == 1


def test_broken_tabular_files_refused_db_unchanged(con, tmp_path):
    good = write_tab_csv(tmp_path / "good.csv", tabular_sample())
    imp(con, good)
    before = db_state(con)
    text = good.read_text(encoding="utf-8")
    broken = tmp_path / "broken.csv"
    broken.write_text(text + 'x,"jamais fermé,\n' * 3, encoding="utf-8")
    with pytest.raises(ImportRefused):
        imp(con, broken)
    assert db_state(con) == before
    c = duckdb.connect()
    pq = tmp_path / "t.parquet"
    c.execute(f"COPY (SELECT * FROM read_csv('{good}', all_varchar=true)) TO '{pq}' (FORMAT parquet)")
    c.close()
    truncated = tmp_path / "trunc.parquet"
    truncated.write_bytes(pq.read_bytes()[:300])
    with pytest.raises(ImportRefused):
        imp(con, truncated)
    assert db_state(con) == before


def test_v1_labels_normalised(con, shared):
    imp(con, shared / "decp" / "moreymat__decp_ville-de-croix_21590163800019_2019-2021.json")
    assert {x[0] for x in q(con, "SELECT DISTINCT procedure FROM contracts")} == {
        "Procédure adaptée", "Appel d'offres ouvert",
        "Marché négocié sans publicité ni mise en concurrence préalable", None,
    }  # fmt: skip
    assert {x[0] for x in q(con, "SELECT DISTINCT nature FROM contracts")} == {
        "Marché", "Accord-cadre", "Marché subséquent", None,
    }  # fmt: skip
    assert {x[0] for x in q(con, "SELECT DISTINCT lieu_type FROM contracts")} == {"Code postal", None}

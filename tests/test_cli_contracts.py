"""The command line, exactly as issues 2, 3, 4, 8, 9 and 10 write it.

Automation relies on these command lines, options and JSON keys ("contracts are exact:
implement them as written; add to them, never rename"). Every command runs as a
subprocess (``python -m analytics --db X …``) on one small database built here from the
real samples of ../shared/data (a DECP v2 file, the SIAE list, the SIRENE extracts, an
ESS list), a hand-written mandats CSV and a DECP record ending next year (for renewals).
Commands that change the database run on a copy of it.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import SHARED

ROOT = Path(__file__).resolve().parent.parent

# --- the contracts, as the issues write them ------------------------------------------

IMPORT_KEYS = {
    "import_id", "kind", "rows_read", "rows_loaded", "rows_rejected", "rows_duplicate",
    "amount_total", "contracts",
}  # fmt: skip
IMPORTS_KEYS = {
    "import_id", "kind", "file", "sha256", "status", "rows_loaded", "rows_rejected",
    "amount_total", "finished_at",
}  # fmt: skip
SUPPLIER_KEYS = {
    "siret", "name", "commune_code", "epci_siren", "departement_code", "region_code",
    "location_source", "ess", "ess_reason", "inclusive_kind", "inclusive_family", "size_class",
    "naf", "naf_label",
}  # fmt: skip
HEADLINE_KEYS = (
    "total_spend", "supplier_count", "local_share", "unlocated_share", "ess_share",
    "inclusive_share", "insertion_share", "disability_share", "sme_share", "new_supplier_share",
    "top10_share", "hhi", "median_distance_km", "contract_count", "social_clause_rate",
    "social_clause_rate_value", "environmental_clause_rate", "environmental_clause_rate_value",
    "reserved_contract_rate", "single_offer_rate", "innovative_rate", "sme_advance_rate",
    "insertion_hours", "insertion_fte", "payment_delay_days", "env_2026_compliance_count",
)  # fmt: skip
PLACE_KEYS = {"code", "name", "amount", "share"}
RANGE_KEYS = {"low", "central", "high"}
FOOTPRINT_KEYS = {
    "jobs_direct", "jobs_indirect", "jobs_induced", "carbon_tco2e", "spend", "by_branch",
    "by_departement", "method", "data_years",
}  # fmt: skip
RENEWAL_KEYS = {
    "contract_id", "object", "cpv_division", "end_date", "amount", "ess_structures",
    "inclusive_structures",
}  # fmt: skip
RESERVATION_KEYS = {"cpv_division", "label", "spend", "inclusive_structures", "recommendation", "rule"}
THRESHOLD_KEYS = {"spend", "local_share", "ess_share", "inclusive_share"}
RECOMMENDATIONS = {"marché réservé", "lot réservé", "clause sociale", "aucune"}

# --- the data -------------------------------------------------------------------------

BUYER = "59920013600241"  # the acheteur of the Mégalis DECP sample
INSERSOL = "37839168400032"  # ACI in Lille (SIAE list)
S2C = "33483579000018"  # EI in Nord (SIAE list)
ACME = "00180725400014"  # SIRENE sample establishment, Toul (54)
SIRENE_ONLY = "00032517500016"  # in the SIRENE extract only (Polynésie française)
ESS_LIST_SIRET = "10002917200010"  # its SIREN 100029172 is in the ESS list only
UNKNOWN_SIRET = "73282932000074"  # valid, known to no referential and absent from the data

MANDATS = (
    "Exercice;Budget;N° bordereau;N° mandat;N° ligne;Date d'émission;Date de paiement;Tiers;"
    "SIRET;Code postal;Imputation;Fonction;Objet;Montant HT;Montant TVA;Montant TTC\n"
    f"2024;Principal;1;101;1;03/02/2024;14/02/2024;INSERSOL;{INSERSOL};59000;6068;020;"
    "Espaces verts;1 000,00;200,00;1 200,00\n"
    f"2024;Principal;1;102;1;04/03/2024;15/03/2024;S2C;{S2C};59000;6068;020;"
    "Nettoyage;2 000,00;400,00;2 400,00\n"
    f"2024;Principal;1;103;1;05/04/2024;16/04/2024;ACME;{ACME};54000;6156;020;"
    "Maintenance;5 000,00;1 000,00;6 000,00\n"
    "2024;Principal;1;104;1;06/05/2024;17/05/2024;Sans Siret SARL;;59000;6156;020;"
    "Divers;500,00;100,00;600,00\n"
    f"2024;Principal;1;105;1;07/06/2024;18/06/2024;ACME;{ACME};54000;6156;020;"
    "Avoir;-250,00;-50,00;-300,00\n"
    "2024;Principal;1;106;1;07/06/2024;18/06/2024;Illisible;;59000;6156;020;Erreur;abc;;\n"
)
MANDATS_TOTAL = 1200 + 2400 + 6000 + 600 - 300  # the credit note nets off; line 7 rejected
MEGALIS_TOTAL = 247122.22  # the 5 lots notified on 30/05/2024


@dataclass
class Built:
    db: Path
    files: dict[str, Path]
    results: dict[str, dict] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def cli(db: Path | None, *args: str, env: dict | None = None, timeout: int = 300):
    """``python -m analytics [--db db] args…`` from the repository root."""
    cmd = [sys.executable, "-m", "analytics"]
    if db is not None:
        cmd += ["--db", str(db)]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        cmd + [str(a) for a in args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_json(db: Path | None, *args: str, env: dict | None = None):
    """Run a --json command; its whole stdout must be one JSON document."""
    out = cli(db, *args, env=env)
    assert out.returncode == 0, f"{args}: rc={out.returncode}\n{out.stderr[-2000:]}"
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError as exc:  # progress text or a print on stdout
        raise AssertionError(f"{args}: stdout is not pure JSON ({exc}):\n{out.stdout[:500]}") from None


def assert_refused(out: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code ≠ 0, nothing on stdout, a French sentence (no traceback) on stderr."""
    assert out.returncode != 0, out.stdout
    assert out.stdout.strip() == "", out.stdout[:500]
    err = out.stderr
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("Refusé : ") or " : erreur : " in last, err[-1000:]
    for f in fragments:
        assert f in err, (f, err[-1000:])
    return last


def copy_db(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copy2(src, dst)
    wal = src.with_name(src.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, dst.with_name(dst.name + ".wal"))
    return dst


def _renewal_decp(shared: Path, path: Path) -> Path:
    """One DECP v2 record, cloned from the Mégalis sample, notified 60 days ago for 12
    months: it ends within 6–12 months of today, so `opportunities` lists a renewal."""
    src = json.loads(
        (shared / "decp" / "megalis-bretagne__decp-59920013600241-2024-07-09-01.json").read_text()
    )
    rec = copy.deepcopy(src["marches"]["marche"][0])
    notified = dt.date.today() - dt.timedelta(days=60)
    rec.update(
        id="AUDIT2099R0001",
        objet="Entretien des espaces verts du lycée",
        codeCPV="77310000",
        dureeMois=12,
        dateNotification=notified.isoformat(),
        datePublicationDonnees=notified.isoformat(),
        montant=30000.0,
        titulaires=[{"titulaire": {"typeIdentifiant": "SIRET", "id": INSERSOL}}],
        considerationsSociales={"considerationSociale": ["Clause sociale"]},
        actesSousTraitance=[],
        modifications=[],
    )
    path.write_text(json.dumps({"marches": {"marche": [rec]}}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    if not SHARED.exists():
        pytest.skip("../shared/data absent: the real samples are needed")
    work = tmp_path_factory.mktemp("cli")
    mandats = work / "mandats_2024.csv"
    mandats.write_text(MANDATS, encoding="utf-8")
    files = {
        "decp": SHARED / "decp" / "megalis-bretagne__decp-59920013600241-2024-07-09-01.json",
        "structures": SHARED / "inclusion" / "le-marche__fixtures_siaes.csv",
        "sirene": SHARED / "sirene" / "data-fair-processing-sirene__test_stock_etablissement_sample.csv",
        "sirene_ul": SHARED / "sirene" / "joao-sdx-mailing__StockUniteLegale_echantillon_2026.csv",
        "ess": SHARED / "sirene" / "ess-numerique-database__04_ess_flag_insee.csv",
        "mandats": mandats,
        "decp_renewal": _renewal_decp(SHARED, work / "decp_renewal.json"),
    }
    b = Built(db=work / "base.duckdb", files=files)
    for name, path in files.items():
        kind = name.split("_")[0]
        out = cli(b.db, "import", kind, path, "--json")
        if out.returncode != 0:
            b.failures[name] = out.stderr.strip()[-1500:]
            continue
        b.results[name] = json.loads(out.stdout)
    setup = cli(b.db, "buyer", "set", "--siret", BUYER, "--territory", "dep:59", "--name", "Lycée test")
    assert setup.returncode == 0, setup.stderr
    return b


def need(b: Built, *names: str) -> None:
    """Skip (with the importer's own message) when a file of the base could not be imported."""
    for n in names:
        if n in b.failures:
            pytest.skip(f"import {n} impossible, partie ignorée : {b.failures[n]}")


@pytest.fixture
def db_copy(built, tmp_path) -> Path:
    return copy_db(built.db, tmp_path)


# --- issue 2: import, imports, undo -----------------------------------------------------


def test_every_referential_and_decp_import_exits_0_with_the_json_keys(built):
    for name in ("decp", "structures", "sirene", "sirene_ul", "ess", "decp_renewal"):
        assert name not in built.failures, built.failures[name]
        d = built.results[name]
        assert IMPORT_KEYS <= set(d), (name, IMPORT_KEYS - set(d))
        assert d["kind"] == name.split("_")[0]
        assert isinstance(d["import_id"], int)
        for k in ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate"):
            assert isinstance(d[k], int) and d[k] >= 0, (name, k, d[k])
        assert d["rows_loaded"] + d["rows_rejected"] + d["rows_duplicate"] <= d["rows_read"]
    decp = built.results["decp"]
    assert (decp["rows_loaded"], decp["contracts"]) == (5, 5)
    assert decp["amount_total"] == pytest.approx(MEGALIS_TOTAL)
    assert built.results["decp_renewal"]["contracts"] == 1
    for name in ("structures", "sirene", "sirene_ul", "ess"):
        assert built.results[name]["amount_total"] is None  # no money in a referential
        assert built.results[name]["contracts"] is None
    assert built.results["structures"]["rows_loaded"] > 3000  # the 3,853 real SIAE


def test_mandats_import_json(built):
    need(built, "mandats")
    d = built.results["mandats"]
    assert IMPORT_KEYS <= set(d)
    assert (d["kind"], d["rows_read"], d["rows_loaded"], d["rows_rejected"], d["rows_duplicate"]) == (
        "mandats", 6, 5, 1, 0,
    )  # fmt: skip
    assert d["amount_total"] == pytest.approx(MANDATS_TOTAL)
    assert d["contracts"] is None


def test_same_bytes_twice_refused_naming_the_first_import(built, db_copy):
    need(built, "mandats")
    before = cli_json(db_copy, "imports", "--json")
    out = cli(db_copy, "import", "mandats", built.files["mandats"], "--json")
    first = built.results["mandats"]["import_id"]
    last = assert_refused(out, f"import n° {first} du ")
    assert re.search(r"du \d{2}/\d{2}/\d{4}", last), last
    assert cli_json(db_copy, "imports", "--json") == before


def test_strict_refuses_the_file_and_default_keeps_it(built, tmp_path, db_copy):
    need(built, "mandats")
    path = tmp_path / "strict.csv"
    path.write_text("Date;Fournisseur;Montant\n25/11/2024;ACME;12,50\n26/11/2024;Bidule;pas un montant\n")
    before = cli_json(db_copy, "imports", "--json")
    assert_refused(cli(db_copy, "import", "mandats", path, "--strict", "--json"), "strict")
    assert cli_json(db_copy, "imports", "--json") == before
    d = cli_json(db_copy, "import", "mandats", path, "--json")
    assert (d["rows_loaded"], d["rows_rejected"]) == (1, 1)


def test_mapping_option_json_and_toml(built, tmp_path, db_copy):
    need(built, "mandats")
    path = tmp_path / "odd.csv"
    path.write_text("Quand;Qui;Combien\n25/11/2024;ACME;12,50\n")
    # without a mapping: refused, the reason lists the headers seen
    assert_refused(cli(db_copy, "import", "mandats", path), "Combien")
    m_json = tmp_path / "map.json"
    m_json.write_text(json.dumps({"Quand": "payment_date", "Qui": "supplier_name", "Combien": "amount_ttc"}))
    d = cli_json(db_copy, "import", "mandats", path, "--mapping", m_json, "--json")
    assert (d["rows_loaded"], d["amount_total"]) == (1, 12.5)
    path2 = tmp_path / "odd2.csv"
    path2.write_text("Quand;Qui;Combien\n26/11/2024;ACME;7,50\n")
    m_toml = tmp_path / "map.toml"
    m_toml.write_text('[mapping]\nQuand = "payment_date"\nQui = "supplier_name"\nCombien = "amount_ttc"\n')
    d = cli_json(db_copy, "import", "mandats", path2, "--mapping", m_toml, "--json")
    assert (d["rows_loaded"], d["amount_total"]) == (1, 7.5)
    # a mapping file that is missing or not JSON/TOML: a French refusal, not a traceback
    assert_refused(
        cli(db_copy, "import", "mandats", path2, "--mapping", tmp_path / "absent.json"), "introuvable"
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{ pas du json")
    assert_refused(cli(db_copy, "import", "mandats", path2, "--mapping", bad), "correspondance")


def test_imports_json_lists_the_ledger(built):
    rows = cli_json(built.db, "imports", "--json")
    assert isinstance(rows, list) and rows
    by_id = {r["import_id"]: r for r in rows}
    for name, d in built.results.items():
        r = by_id[d["import_id"]]
        assert IMPORTS_KEYS <= set(r), IMPORTS_KEYS - set(r)
        path = built.files[name]
        assert r["kind"] == d["kind"] and r["file"] == path.name
        assert r["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert r["status"] == "ok"
        assert (r["rows_loaded"], r["rows_rejected"]) == (d["rows_loaded"], d["rows_rejected"])
        assert r["amount_total"] == (
            pytest.approx(d["amount_total"]) if d["amount_total"] is not None else None
        )
        dt.datetime.fromisoformat(r["finished_at"])  # a timestamp, not free text
    out = cli(built.db, "imports")  # the readable form works too
    assert out.returncode == 0 and out.stdout.strip()


def test_undo_removes_the_rows_and_keeps_the_record(built, db_copy):
    need(built, "mandats")
    import_id = built.results["mandats"]["import_id"]
    before = cli_json(db_copy, "indicators", "--year", "2024", "--json")
    assert before["total_spend"] == pytest.approx(MANDATS_TOTAL)
    out = cli(db_copy, "undo", import_id)
    assert out.returncode == 0, out.stderr
    row = next(r for r in cli_json(db_copy, "imports", "--json") if r["import_id"] == import_id)
    assert row["status"] == "undone"
    after = cli_json(db_copy, "indicators", "--year", "2024", "--json")
    assert after["total_spend"] is None and after["reasons"]["total_spend"]
    assert_refused(cli(db_copy, "undo", import_id), "annulé")
    assert_refused(cli(db_copy, "undo", 999), "inconnu")
    # undone: the same bytes may come back, as a new import
    again = cli_json(db_copy, "import", "mandats", built.files["mandats"], "--json")
    assert again["import_id"] != import_id and again["rows_loaded"] == 5


# --- issue 3: supplier, buyer --------------------------------------------------------------


def test_supplier_json_keys_and_values(built):
    d = cli_json(built.db, "supplier", INSERSOL, "--json")
    assert SUPPLIER_KEYS <= set(d), SUPPLIER_KEYS - set(d)
    assert (d["siret"], d["commune_code"], d["epci_siren"], d["departement_code"], d["region_code"]) == (
        INSERSOL, "59350", "200093201", "59", "32",
    )  # fmt: skip
    assert (d["inclusive_kind"], d["inclusive_family"]) == ("ACI", "insertion")
    assert d["location_source"] and d["ess_reason"]
    assert d["ess"] in (True, False, None)
    assert d["size_class"] in ("TPE", "PME", "ETI", "GE", None)
    # known to the SIRENE extract only, never seen in the data
    d = cli_json(built.db, "supplier", SIRENE_ONLY, "--json")
    assert SUPPLIER_KEYS <= set(d)
    assert (d["departement_code"], d["location_source"]) == ("987", "sirene")
    assert d["naf"] and d["naf_label"]
    # known to the ESS list only (by its SIREN)
    d = cli_json(built.db, "supplier", ESS_LIST_SIRET, "--json")
    assert (d["ess"], d["siret"]) == (True, ESS_LIST_SIRET) and d["ess_reason"]


def test_supplier_unknown_or_invalid_is_refused(built):
    assert_refused(cli(built.db, "supplier", UNKNOWN_SIRET, "--json"), UNKNOWN_SIRET)
    assert_refused(cli(built.db, "supplier", "12345678901234", "--json"), "invalide")


@pytest.mark.parametrize(
    "territory, expected",
    [
        ("dep:59", {"kind": "dep", "codes": ["59"]}),
        ("dep:59,62", {"kind": "dep", "codes": ["59", "62"]}),
        ("reg:32", {"kind": "reg", "codes": ["32"]}),
        ("epci:200093201", {"kind": "epci", "codes": ["200093201"]}),
        ("com:59163,59350", {"kind": "com", "codes": ["59163", "59350"]}),
    ],
)
def test_buyer_set_and_show(built, db_copy, territory, expected):
    out = cli(db_copy, "buyer", "set", "--siret", BUYER, "--territory", territory)
    assert out.returncode == 0, out.stderr
    d = cli_json(db_copy, "buyer", "show", "--json")
    assert d["siret"] == BUYER
    assert d["territory"] == expected
    assert d["territory_label"]


def test_buyer_set_refusals(built, db_copy):
    before = cli_json(db_copy, "buyer", "show", "--json")
    assert_refused(cli(db_copy, "buyer", "set", "--siret", "123"), "invalide")
    assert_refused(cli(db_copy, "buyer", "set", "--siret", BUYER, "--territory", "dep:999"), "999")
    assert_refused(
        cli(db_copy, "buyer", "set", "--siret", BUYER, "--territory", "pays:FR"), "Territoire invalide"
    )
    assert cli_json(db_copy, "buyer", "show", "--json") == before


# --- issue 4: indicators -------------------------------------------------------------------


def _check_indicators_shape(d: dict) -> None:
    for k in ("basis", "period", "scope", "coverage", "reasons", "spend_by_departement", "spend_by_region"):
        assert k in d, k
    assert set(d["period"]) >= {"from", "to"}
    missing = [k for k in HEADLINE_KEYS if k not in d]
    assert not missing, missing
    for k in HEADLINE_KEYS:
        v = d[k]
        assert v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)), (k, v)
        if v is None:  # never a silent null: a reason beside it
            assert isinstance(d["reasons"].get(k), str) and d["reasons"][k], k
    assert isinstance(d["coverage"], dict) and isinstance(d["reasons"], dict)
    for table in ("spend_by_departement", "spend_by_region"):
        assert isinstance(d[table], list)
        for row in d[table]:
            assert PLACE_KEYS <= set(row), (table, row)


def test_indicators_year_json(built):
    need(built, "mandats")
    d = cli_json(built.db, "indicators", "--year", "2024", "--json")
    _check_indicators_shape(d)
    assert d["basis"] == "paid"
    assert d["period"] == {"from": "2024-01-01", "to": "2024-12-31"}
    assert d["total_spend"] == pytest.approx(MANDATS_TOTAL)
    assert d["supplier_count"] == 4  # INSERSOL, S2C, ACME, the name-only supplier
    assert d["contract_count"] == 5
    # --territory omitted: the configured buyer's territory (dep:59)
    assert d["scope"]["territory"]["kind"] == "dep" and d["scope"]["territory"]["codes"] == ["59"]
    located = MANDATS_TOTAL - 600
    assert d["local_share"] == pytest.approx((1200 + 2400) / located)
    assert d["unlocated_share"] == pytest.approx(600 / MANDATS_TOTAL)
    deps = {r["code"]: r for r in d["spend_by_departement"]}
    assert deps["59"]["amount"] == pytest.approx(3600) and deps["54"]["amount"] == pytest.approx(5700)
    assert deps["59"]["name"] == "Nord"
    assert sum(r["amount"] for r in d["spend_by_departement"]) == pytest.approx(MANDATS_TOTAL)
    assert sum(r["share"] for r in d["spend_by_departement"]) == pytest.approx(1)
    regs = {r["code"]: r["amount"] for r in d["spend_by_region"]}
    assert regs["32"] == pytest.approx(3600) and regs["44"] == pytest.approx(5700)


def test_indicators_from_to_buyer_territory_basis(built):
    need(built, "mandats")
    d = cli_json(
        built.db,
        "indicators",
        "--from",
        "2024-03-01",
        "--to",
        "2024-04-30",
        "--territory",
        "reg:44",
        "--json",
    )
    _check_indicators_shape(d)
    assert d["period"] == {"from": "2024-03-01", "to": "2024-04-30"}
    assert d["total_spend"] == pytest.approx(2400 + 6000)
    assert d["scope"]["territory"]["kind"] == "reg" and d["scope"]["territory"]["codes"] == ["44"]
    assert d["local_share"] == pytest.approx(6000 / 8400)
    # French dates are accepted too
    d2 = cli_json(built.db, "indicators", "--from", "01/03/2024", "--to", "30/04/2024", "--json")
    assert d2["period"] == d["period"]
    n = cli_json(built.db, "indicators", "--year", "2024", "--basis", "notified", "--buyer", BUYER, "--json")
    _check_indicators_shape(n)
    assert n["basis"] == "notified"
    assert n["scope"]["buyer"] == BUYER
    assert n["total_spend"] == pytest.approx(MEGALIS_TOTAL)
    assert n["contract_count"] == 5
    other = cli_json(
        built.db, "indicators", "--year", "2024", "--basis", "notified", "--buyer", UNKNOWN_SIRET, "--json"
    )
    assert other["contract_count"] in (0, None)


def test_indicators_territory_of_a_public_buyer_without_configuration(tmp_path):
    """No buyer configured, --territory omitted, --buyer a public body: its own département."""
    d = cli_json(
        tmp_path / "vide.duckdb", "indicators", "--year", "2024", "--buyer", "22590001800014", "--json"
    )
    _check_indicators_shape(d)
    assert d["scope"]["buyer"] == "22590001800014"
    assert (d["scope"]["territory"]["kind"], d["scope"]["territory"]["codes"]) == ("dep", ["59"])
    assert d["total_spend"] is None and d["reasons"]["total_spend"]  # an empty base: null, with a reason


def test_indicators_readable_summary_and_refusals(built):
    out = cli(built.db, "indicators", "--year", "2024")
    assert out.returncode == 0 and out.stdout.strip()
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.stdout)
    db = built.db
    assert_refused(cli(db, "indicators", "--year", "2024", "--from", "2024-01-01", "--to", "2024-02-01"))
    assert_refused(cli(db, "indicators", "--from", "2024-01-01"), "--to")
    assert_refused(cli(db, "indicators", "--from", "2024-05-01", "--to", "2024-01-01"), "précède")
    assert_refused(cli(db, "indicators", "--from", "2024/05/01", "--to", "2024-06-01"), "Date invalide")
    assert_refused(
        cli(db, "indicators", "--year", "2024", "--territory", "dep:59;DROP"), "Territoire invalide"
    )
    assert_refused(cli(db, "indicators", "--year", "2024", "--territory", "dep:999"), "inconnu")
    assert_refused(cli(db, "opportunities", "--territory", "epci:123456789"), "inconnu")
    assert_refused(cli(db, "indicators", "--basis", "ttc"), "choix invalide")
    assert_refused(cli(db, "indicators", "--year", "deux-mille"), "valeur invalide")


# --- issue 9: footprint --------------------------------------------------------------------


def test_footprint_json(built):
    need(built, "mandats")
    d = cli_json(built.db, "footprint", "--year", "2024", "--json")
    assert FOOTPRINT_KEYS <= set(d), FOOTPRINT_KEYS - set(d)
    reasons = d.get("reasons") or {}
    for k in ("jobs_direct", "jobs_indirect", "jobs_induced", "carbon_tco2e"):
        v = d[k]
        if v is None:
            assert reasons.get(k), f"{k} is null without a reason"
            continue
        assert set(v) == RANGE_KEYS, (k, v)
        assert all(isinstance(v[x], (int, float)) for x in RANGE_KEYS), (k, v)
        assert v["low"] <= v["central"] <= v["high"], (k, v)
    assert d["carbon_tco2e"]["central"] > 0
    assert isinstance(d["by_branch"], list) and d["by_branch"]
    assert isinstance(d["by_departement"], list) and {r["code"] for r in d["by_departement"]} >= {"59", "54"}
    assert isinstance(d["method"], str) and len(d["method"]) > 100
    assert isinstance(d["data_years"], dict) and d["data_years"]
    out = cli(built.db, "footprint", "--year", "2024")
    assert out.returncode == 0 and out.stdout.strip()


# --- issue 10: opportunities ---------------------------------------------------------------


def test_opportunities_json(built):
    need(built, "decp_renewal")
    d = cli_json(built.db, "opportunities", "--year", "2024", "--json")
    for k in ("renewals", "reservation", "under_40k", "over_40k", "lots"):
        assert k in d, k
    assert d["renewals"], "the contract ending next year is a renewal ahead"
    for r in d["renewals"]:
        assert RENEWAL_KEYS <= set(r), RENEWAL_KEYS - set(r)
    mine = next(r for r in d["renewals"] if r["contract_id"] == "AUDIT2099R0001")
    assert mine["cpv_division"] == "77" and mine["amount"] == pytest.approx(30000)
    assert isinstance(mine["ess_structures"], int) and isinstance(mine["inclusive_structures"], int)
    assert d["reservation"]
    for r in d["reservation"]:
        assert RESERVATION_KEYS <= set(r), RESERVATION_KEYS - set(r)
        assert r["recommendation"] in RECOMMENDATIONS and r["rule"]
    for k in ("under_40k", "over_40k"):
        assert THRESHOLD_KEYS <= set(d[k]), (k, d[k])
    if "mandats" not in built.failures:
        assert d["under_40k"]["spend"] == pytest.approx(MANDATS_TOTAL)  # every line is < 40 k€
    assert {"contracts_with_lots_share", "single_lot_large"} <= set(d["lots"])
    assert isinstance(d["lots"]["single_lot_large"], list)
    t = cli_json(built.db, "opportunities", "--year", "2024", "--territory", "reg:32", "--json")
    assert t["renewals"] and THRESHOLD_KEYS <= set(t["under_40k"])
    assert cli(built.db, "opportunities").returncode == 0  # every option is optional


# --- issue 8: report, snapshot, review -------------------------------------------------------


@pytest.mark.parametrize("fmt, magic", [("xlsx", b"PK\x03\x04"), ("html", b"<"), ("pdf", b"%PDF")])
def test_report_formats(built, tmp_path, fmt, magic):
    out_file = tmp_path / f"rapport.{fmt}"
    out = cli(built.db, "report", "--year", "2024", "--format", fmt, "--out", out_file)
    assert out.returncode == 0, out.stderr
    assert out_file.read_bytes().lstrip()[: len(magic)] == magic
    if fmt == "xlsx":
        import openpyxl

        wb = openpyxl.load_workbook(out_file)
        assert len(wb.sheetnames) > 3


def test_report_refusals(built, tmp_path):
    assert_refused(
        cli(built.db, "report", "--year", "2024", "--out", tmp_path / "r.docx", "--format", "docx")
    )
    assert_refused(cli(built.db, "report", "--year", "2024"), "--out")


def test_snapshot_and_review(built, db_copy):
    out = cli(db_copy, "snapshot", "--month", "2024-04", "--comment", "Revue d'avril : RAS")
    assert out.returncode == 0, out.stderr
    r = cli_json(db_copy, "review", "--month", "2024-04", "--json")
    assert isinstance(r, dict) and r["month"] == "2024-04"
    assert r["snapshot"]["comment"] == "Revue d'avril : RAS"
    out = cli(db_copy, "review", "--month", "2024-04")
    assert out.returncode == 0 and out.stdout.strip()
    assert_refused(cli(db_copy, "snapshot", "--month", "2024-13"), "Mois invalide")
    assert_refused(cli(db_copy, "review", "--month", "avril"), "Mois invalide")


# --- the database option -------------------------------------------------------------------


def test_db_option_and_environment(built, tmp_path):
    listing = cli_json(built.db, "imports", "--json")
    sentinel = tmp_path / "never.duckdb"
    # EMPREINTE_DB alone selects the database
    assert cli_json(None, "imports", "--json", env={"EMPREINTE_DB": str(built.db)}) == listing
    # --db wins over EMPREINTE_DB
    assert cli_json(built.db, "imports", "--json", env={"EMPREINTE_DB": str(sentinel)}) == listing
    assert not sentinel.exists()


def test_import_refusals_leave_the_database_unchanged(built, tmp_path, db_copy):
    before = cli_json(db_copy, "imports", "--json")
    empty = tmp_path / "vide.csv"
    empty.write_bytes(b"")
    html = tmp_path / "page.csv"
    html.write_text("<!DOCTYPE html><html><body>Erreur 404</body></html>")
    assert_refused(cli(db_copy, "import", "mandats", empty, "--json"), "vide")
    assert_refused(cli(db_copy, "import", "decp", empty, "--json"), "vide")
    assert_refused(cli(db_copy, "import", "mandats", html, "--json"))
    assert_refused(cli(db_copy, "import", "sirene", html, "--json"))
    assert_refused(cli(db_copy, "import", "mandats", tmp_path / "absent.csv"), "introuvable")
    assert_refused(cli(db_copy, "import", "factures", empty), "choix invalide")
    assert cli_json(db_copy, "imports", "--json") == before


# --- import --json: progress on stderr, stdout pure JSON ---------------------------------

PROGRESS_LINE = re.compile(r"\[(\d{1,3})%\] (\S.*)")


def _progress_stages(stderr: str) -> list[tuple[int, str]]:
    """(percent, stage) of every stderr line, each of which must be a progress line."""
    stages = []
    for ln in stderr.splitlines():
        m = PROGRESS_LINE.fullmatch(ln)
        assert m, f"not a progress line: {ln!r}\n{stderr}"
        stages.append((int(m[1]), m[2]))
    return stages


def test_import_json_prints_progress_lines_on_stderr(tmp_path):
    mandats = tmp_path / "mandats.csv"
    mandats.write_text(MANDATS, encoding="utf-8")
    db = tmp_path / "p.duckdb"
    out = cli(db, "import", "mandats", mandats, "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)  # stdout: the JSON document only
    assert IMPORT_KEYS <= set(d) and d["rows_loaded"] == 5
    stages = _progress_stages(out.stderr)
    names = [s for _, s in stages]
    assert len(names) >= 4 and len(set(names)) == len(names), names  # one line per stage
    assert [p for p, _ in stages] == sorted(p for p, _ in stages)
    assert stages[-1] == (100, "Import terminé")
    # the referential importers report their stages too
    csv = tmp_path / "liste.csv"
    csv.write_text(f"siret;type\n{INSERSOL};ACI\n", encoding="utf-8")
    out = cli(db, "import", "structures", csv, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows_loaded"] == 1
    assert _progress_stages(out.stderr) == [
        (0, "Lecture de la liste"), (30, "Contrôle des SIRET et des types"), (100, "Liste chargée"),
        (100, "Import terminé"),
    ]

"""Supplier classification rules and precedence, the buyer, territories, lookups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stdnum.fr import siren as stdnum_siren
from stdnum.fr import siret as stdnum_siret

from analytics import referential, store
from analytics.filters import Territory
from analytics.ingest.common import norm_name

ROOT = Path(__file__).resolve().parent.parent
needs_ref = pytest.mark.skipif(
    not (store.REF_DIR / "communes.parquet").exists(), reason="data/ref absent"
)


# --- helpers ---------------------------------------------------------------------------


def _luhn_digit(body: str) -> str:
    for d in "0123456789":
        if stdnum_siren.luhn.is_valid(body + d):
            return d
    raise AssertionError


def siren_of(n: int) -> str:
    body = f"{n:08d}"
    return body + _luhn_digit(body)


def siret_of(siren: str, nic: int = 1) -> str:
    body = siren + f"{nic:04d}"
    s = body + _luhn_digit(body)
    assert stdnum_siret.is_valid(s)
    return s


_seq = iter(range(1, 10**6))


def add_mandat(con, key, *, name=None, postcode=None, amount=100.0):
    siret = key if key.isdigit() else None
    siren = siret[:9] if siret else (key[6:] if key.startswith("SIREN:") else None)
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_siret,"
        " supplier_siren, supplier_name, supplier_postcode, supplier_identified, amount, amount_basis)"
        " VALUES (0, $nk, DATE '2025-03-01', $k, $siret, $siren, $n, $cp, $ident, $a, 'HT')",
        {"nk": f"t{next(_seq)}", "k": key, "siret": siret, "siren": siren, "n": name,
         "cp": postcode, "ident": siren is not None, "a": amount},
    )


def add_holder(con, *, siret=None, name=None, commune=None, dep=None, reg=None):
    seq = next(_seq)
    con.execute(
        "INSERT INTO contracts (import_id, seq, contract_key, amount) VALUES (0, $s, $k, 1000)",
        {"s": seq, "k": f"C{seq}"},
    )
    con.execute(
        "INSERT INTO contract_holders (import_id, seq, contract_key, holder_rank, holder_siret,"
        " holder_name, commune_code, departement_code, region_code)"
        " VALUES (0, $s, $k, 1, $siret, $n, $c, $d, $r)",
        {"s": seq, "k": f"C{seq}", "siret": siret, "n": name, "c": commune, "d": dep, "r": reg},
    )


def add_etab(con, siret, *, commune=None, siege=None, naf=None, band=None, import_id=0,
             enseigne=None, postcode=None):
    con.execute(
        "INSERT INTO sirene_etablissements (import_id, siret, siren, siege, commune_code, postcode,"
        " naf, tranche_effectifs, enseigne) VALUES ($i, $s, $sn, $sg, $c, $cp, $naf, $b, $e)",
        {"i": import_id, "s": siret, "sn": siret[:9], "sg": siege, "c": commune, "cp": postcode,
         "naf": naf, "b": band, "e": enseigne},
    )


def add_unit(con, siren, *, name="UNITE", cj=None, cat=None, band=None, ess=None, mission=None,
             nic_siege=None, naf=None, import_id=0):
    con.execute(
        "INSERT INTO sirene_unites (import_id, siren, denomination, categorie_juridique,"
        " categorie_entreprise, tranche_effectifs, naf, ess, societe_mission, nic_siege)"
        " VALUES ($i, $s, $n, $cj, $cat, $b, $naf, $ess, $m, $nic)",
        {"i": import_id, "s": siren, "n": name, "cj": cj, "cat": cat, "b": band, "naf": naf,
         "ess": ess, "m": mission, "nic": nic_siege},
    )


def add_structure(con, siret, kind, *, import_id=0, commune=None, postcode=None, dep=None):
    family = "handicap" if kind in ("EA", "EATT", "ESAT") else "insertion"
    con.execute(
        "INSERT INTO structures (import_id, siret, siren, name, kind, family, commune_code,"
        " postcode, departement_code) VALUES ($i, $s, $sn, 'STRUCT', $k, $f, $c, $cp, $d)",
        {"i": import_id, "s": siret, "sn": siret[:9], "k": kind, "f": family, "c": commune,
         "cp": postcode, "d": dep},
    )


def add_ess(con, siren, siret=None):
    con.execute(
        "INSERT INTO ess_list (import_id, siret, siren, label) VALUES (0, $st, $s, 'ESUS')",
        {"s": siren, "st": siret},
    )


def cls(con, key) -> dict:
    cur = con.execute("SELECT * FROM supplier_class WHERE supplier_key = $k", {"k": key})
    rows = cur.fetchall()
    assert len(rows) == 1, key
    return dict(zip([d[0] for d in cur.description], rows[0]))


def reclassify(con) -> int:
    with store.transaction(con):
        return referential.reclassify(con)


# --- ESS -------------------------------------------------------------------------------


@needs_ref
def test_ess_precedence_sirene_over_legal_form_over_list(con):
    a, b, c, d, e = (siren_of(n) for n in (11111, 22222, 33333, 44444, 55555))
    add_unit(con, a, ess="O", cj="9220")  # flag + association + list
    add_ess(con, a)
    add_unit(con, b, ess="N", cj="9220")  # association + list, flag N
    add_ess(con, b)
    add_unit(con, c, ess="N", cj="5710")  # SAS in the list
    add_ess(con, c, siret_of(c))
    add_unit(con, d, ess="N", cj="5710")  # SAS, nothing else
    add_unit(con, e, ess=None, cj="5458")  # SCOP (SARL coopérative de production)
    for s in (a, b, c, d, e):
        add_mandat(con, siret_of(s), name="X")
    lonely = siret_of(siren_of(66666))
    add_mandat(con, lonely, name="ABSENT", postcode=None)
    add_mandat(con, "NOM:DUPONT", name="Dupont")
    reclassify(con)
    assert (cls(con, siret_of(a))["ess"], cls(con, siret_of(a))["ess_reason"]) == (True, "sirene")
    assert (cls(con, siret_of(b))["ess"], cls(con, siret_of(b))["ess_reason"]) == (True, "forme_juridique")
    assert (cls(con, siret_of(c))["ess"], cls(con, siret_of(c))["ess_reason"]) == (True, "liste")
    assert (cls(con, siret_of(d))["ess"], cls(con, siret_of(d))["ess_reason"]) == (False, "aucune")
    assert (cls(con, siret_of(e))["ess"], cls(con, siret_of(e))["ess_reason"]) == (True, "forme_juridique")
    assert (cls(con, lonely)["ess"], cls(con, lonely)["ess_reason"]) == (None, "hors_referentiel")
    assert (cls(con, "NOM:DUPONT")["ess"], cls(con, "NOM:DUPONT")["ess_reason"]) == (None, "non_identifie")


@needs_ref
def test_ess_from_siae_legal_form_when_sirene_absent(con):
    # The shipped SIAE list carries a legal-form label: it feeds the legal-form rule
    # when SIRENE does not know the unit (a test row is added to this connection's view).
    assoc = siret_of(siren_of(77777))
    sarl = "80746931700018"  # in the shipped list, legal_form SARL
    con.execute(
        "CREATE OR REPLACE TEMP VIEW ref_siae AS "
        f"SELECT * FROM read_parquet('{store.REF_DIR / 'siae.parquet'}') UNION ALL BY NAME "
        f"SELECT '{assoc}' AS siret, 'ASSO TEST' AS name, 'ACI' AS kind, 'Association' AS legal_form"
    )
    add_mandat(con, assoc)
    add_mandat(con, sarl)
    reclassify(con)
    r = cls(con, assoc)
    assert (r["ess"], r["ess_reason"], r["inclusive_kind"], r["inclusive_family"]) == (
        True, "forme_juridique", "ACI", "insertion")
    r = cls(con, sarl)
    assert (r["ess"], r["ess_reason"], r["inclusive_kind"]) == (False, "aucune", "EI")
    # SIRENE known: its catégorie juridique wins over the list's label
    add_unit(con, assoc[:9], cj="5710")
    reclassify(con)
    assert (cls(con, assoc)["ess"], cls(con, assoc)["ess_reason"]) == (False, "aucune")


# --- location --------------------------------------------------------------------------


@needs_ref
def test_location_precedence(con):
    s1, s2, s3, s4, s5 = (siret_of(siren_of(n)) for n in (1001, 1002, 1003, 1004, 1005))
    for s in (s1, s2, s3, s4, s5):
        add_mandat(con, s, name="F", postcode="75001")
    # s1: SIRENE + DECP + structure + postcode -> sirene
    add_etab(con, s1, commune="59350")
    add_holder(con, siret=s1, commune="33063")
    add_structure(con, s1, "EI", commune="13055")
    # s2: DECP commune
    add_holder(con, siret=s2, commune="33063")
    add_structure(con, s2, "EI", commune="13055")
    # s3: DECP département only (decp.info tabular): département + région, no commune
    add_holder(con, siret=s3, dep="2B")
    # s4: structures list (postcode resolved to a commune)
    add_structure(con, s4, "AI", postcode="20000")
    # s5: only the export's postcode
    reclassify(con)
    r = cls(con, s1)
    assert (r["commune_code"], r["departement_code"], r["region_code"], r["location_source"]) == (
        "59350", "59", "32", "sirene")
    assert r["epci_siren"] == "200093201" and r["lon"] and r["lat"]
    assert (cls(con, s2)["commune_code"], cls(con, s2)["location_source"]) == ("33063", "decp")
    r = cls(con, s3)
    assert (r["commune_code"], r["departement_code"], r["region_code"], r["location_source"]) == (
        None, "2B", "94", "decp")
    r = cls(con, s4)
    assert (r["commune_code"], r["departement_code"], r["location_source"]) == ("2A004", "2A", "structures")
    r = cls(con, s5)
    assert (r["commune_code"], r["departement_code"], r["region_code"], r["location_source"]) == (
        "75056", "75", "11", "export_cp")


@needs_ref
@pytest.mark.parametrize(
    "commune, dep, region",
    [("2A004", "2A", "94"), ("2B033", "2B", "94"), ("97101", "971", "01"), ("97209", "972", "02"),
     ("97302", "973", "03"), ("97411", "974", "04"), ("97608", "976", "06"),
     ("98727", "987", "987")],
)
def test_overseas_and_corsica(con, commune, dep, region):
    s = siret_of(siren_of(int(commune.replace("A", "1").replace("B", "2"))))
    add_etab(con, s, commune=commune)
    add_mandat(con, s)
    reclassify(con)
    r = cls(con, s)
    assert (r["commune_code"], r["departement_code"], r["region_code"]) == (commune, dep, region)
    if dep != "987":  # French Polynesia: no EPCI, no centroid shipped
        assert r["epci_siren"] and r["lon"] is not None


@needs_ref
def test_overseas_postcodes(con):
    a, b = siret_of(siren_of(4242)), siret_of(siren_of(4343))
    add_mandat(con, a, postcode="97200")
    add_mandat(con, b, postcode="20000")
    reclassify(con)
    assert (cls(con, a)["commune_code"], cls(con, a)["departement_code"]) == ("97209", "972")
    assert (cls(con, b)["commune_code"], cls(con, b)["departement_code"]) == ("2A004", "2A")


@needs_ref
def test_merged_commune_and_arrondissement(con):
    old = con.execute(
        "SELECT code_commune, current_code FROM ref_communes WHERE type = 'ancienne-commune' LIMIT 1"
    ).fetchone()
    cases = {
        "50001": "50041",  # Acqueville, commune déléguée of La Hague
        old[0]: old[1],  # a 2018 code absent from the 2026 list
        "75101": "75056",  # Paris 1er arrondissement
        "69381": "69123",  # Lyon 1er
        "1033": "01033",  # lost leading zero
    }
    keys = {}
    for i, code in enumerate(cases):
        s = siret_of(siren_of(9000 + i))
        keys[code] = s
        add_etab(con, s, commune=code)
        add_mandat(con, s)
    reclassify(con)
    for code, current in cases.items():
        r = cls(con, keys[code])
        assert r["commune_code"] == current, code
        assert r["departement_code"] == current[:2]


@needs_ref
def test_siret_absent_from_every_referential(con):
    s = siret_of(siren_of(31337))
    assert referential.supplier_info(con, s) is None
    add_mandat(con, s, name="Inconnu SA")
    reclassify(con)
    r = cls(con, s)
    assert r["identified"] is True
    assert r["commune_code"] is None and r["location_source"] is None
    assert r["ess"] is None and r["size_class"] is None and r["inclusive_kind"] is None
    assert r["name"] == "Inconnu SA"
    info = referential.supplier_info(con, s)
    assert info["seen_in_data"] is True and info["location_source"] is None


@needs_ref
def test_name_only_supplier(con):
    add_mandat(con, "NOM:" + norm_name("Dupont SARL"), name="Dupont SARL", postcode="59000")
    add_mandat(con, "NOM:" + norm_name("Dupont SARL"), name="DUPONT", postcode="59000")
    add_holder(con, name="Société Dupont", commune="59350")  # same normalised name
    add_holder(con, name="Martin & Fils", commune="59350")
    reclassify(con)
    r = cls(con, "NOM:DUPONT")
    assert r["identified"] is False and r["siret"] is None
    assert r["commune_code"] is None and r["location_source"] is None and r["ess"] is None
    assert r["name"] in ("Dupont SARL", "DUPONT", "Société Dupont")
    assert cls(con, "NOM:MARTIN FILS")["location_source"] is None
    n = con.execute("SELECT count(*) FROM supplier_class").fetchone()[0]
    assert n == 2
    info = referential.supplier_info(con, "NOM:DUPONT")
    assert info["identified"] is False and info["ess_reason"] == "non_identifie"


@needs_ref
def test_siren_only_supplier_uses_head_office(con):
    sn = siren_of(24680)
    add_unit(con, sn, cat="PME", band="12", nic_siege=siret_of(sn, 2)[9:])
    add_etab(con, siret_of(sn, 1), commune="59350")
    add_etab(con, siret_of(sn, 2), commune="33063")
    add_mandat(con, "SIREN:" + sn, postcode="75001")
    reclassify(con)
    r = cls(con, "SIREN:" + sn)
    assert (r["siren"], r["commune_code"], r["location_source"], r["size_class"]) == (
        sn, "33063", "sirene_siege", "PME")


@needs_ref
def test_siege_option(con):
    sn = siren_of(13579)
    branch, head = siret_of(sn, 1), siret_of(sn, 2)
    add_etab(con, branch, commune="59350", siege=False)
    add_etab(con, head, commune="75056", siege=True)
    add_mandat(con, branch)
    other = siret_of(siren_of(97531))  # head office unknown: stays on its establishment
    add_etab(con, other, commune="2A004", siege=False)
    add_mandat(con, other)
    reclassify(con)
    assert (cls(con, branch)["commune_code"], cls(con, branch)["location_source"]) == ("59350", "sirene")
    assert referential.location_mode(con) == "etablissement"
    referential.set_location_mode(con, "siege", who="test")
    assert referential.location_mode(con) == "siege"
    assert (cls(con, branch)["commune_code"], cls(con, branch)["location_source"]) == (
        "75056", "sirene_siege")
    assert cls(con, other)["commune_code"] == "2A004"
    assert referential.supplier_info(con, branch)["commune_code"] == "75056"
    referential.set_location_mode(con, "etablissement")
    assert cls(con, branch)["commune_code"] == "59350"
    with pytest.raises(ValueError):
        referential.set_location_mode(con, "partout")


# --- inclusive, size, sector ------------------------------------------------------------


@needs_ref
def test_inclusive_latest_list_wins_over_shipped_list(con):
    s = "80746931700018"  # EI in the shipped SIAE list
    other = siret_of(siren_of(555))
    add_mandat(con, s)
    add_mandat(con, other)
    reclassify(con)
    assert (cls(con, s)["inclusive_kind"], cls(con, s)["inclusive_family"]) == ("EI", "insertion")
    assert cls(con, other)["inclusive_kind"] is None
    add_structure(con, s, "ACI", import_id=1)
    add_structure(con, s, "ESAT", import_id=2)
    add_structure(con, other, "EA", import_id=1)
    reclassify(con)
    assert (cls(con, s)["inclusive_kind"], cls(con, s)["inclusive_family"]) == ("ESAT", "handicap")
    assert (cls(con, other)["inclusive_kind"], cls(con, other)["inclusive_family"]) == ("EA", "handicap")


@needs_ref
def test_size_rules(con):
    cases = {
        "pme_micro": (dict(cat="PME", band="02"), "TPE", "categorie_entreprise"),
        "pme_nn": (dict(cat="PME", band="NN"), "TPE", "categorie_entreprise"),
        "pme": (dict(cat="PME", band="21"), "PME", "categorie_entreprise"),
        "eti": (dict(cat="ETI", band="01"), "ETI", "categorie_entreprise"),
        "ge": (dict(cat="GE", band="53"), "GE", "categorie_entreprise"),
        "band_small": (dict(cat=None, band="03"), "TPE", "tranche_effectifs"),
        "band_mid": (dict(cat=None, band="12"), "PME", "tranche_effectifs"),
        "band_big": (dict(cat=None, band="41"), None, None),
        "unknown": (dict(cat=None, band=None), None, None),
    }
    keys = {}
    for i, (label, (kw, _, _)) in enumerate(cases.items()):
        sn = siren_of(70000 + i)
        keys[label] = siret_of(sn)
        add_unit(con, sn, **kw)
        add_mandat(con, keys[label])
    # no legal unit: the head office's headcount band
    sn = siren_of(79999)
    keys["siege_band"] = siret_of(sn)
    add_etab(con, keys["siege_band"], siege=True, band="01")
    add_mandat(con, keys["siege_band"])
    cases["siege_band"] = ({}, "TPE", "tranche_etablissement_siege")
    reclassify(con)
    for label, (_, size, source) in cases.items():
        r = cls(con, keys[label])
        assert (r["size_class"], r["size_source"]) == (size, source), label


@needs_ref
def test_sector_naf_and_mission(con):
    a, b, c = (siren_of(n) for n in (60001, 60002, 60003))
    add_etab(con, siret_of(a), naf="6201Z")  # no dot
    add_unit(con, a, naf="70.22Z", mission="O", cj="5710")
    add_unit(con, b, naf="62.10Y")  # NAF 2025 only (unit)
    add_structure(con, siret_of(c), "EI")
    con.execute("UPDATE structures SET naf = '8899B'")
    for s in (a, b, c):
        add_mandat(con, siret_of(s))
    reclassify(con)
    r = cls(con, siret_of(a))
    assert (r["naf"], r["naf_division"], r["naf_section"]) == ("62.01Z", "62", "J")
    assert r["naf_label"].startswith("Programmation informatique")
    assert r["societe_mission"] is True and r["categorie_juridique"] == "5710"
    r = cls(con, siret_of(b))
    assert (r["naf"], r["naf_division"], r["naf_label"]) == (
        "62.10Y", "62", "Activités de programmation informatique")
    assert r["societe_mission"] is False
    r = cls(con, siret_of(c))
    assert (r["naf"], r["naf_section"]) == ("88.99B", "Q")


@needs_ref
def test_name_precedence(con):
    a, b = siren_of(81001), siren_of(81002)
    add_unit(con, a, name="DENOMINATION SIRENE")
    add_etab(con, siret_of(b), enseigne="ENSEIGNE")
    c = "80746931700018"
    for s in (siret_of(a), siret_of(b), c):
        add_mandat(con, s, name="Nom dans l'export")
        add_mandat(con, s, name="Nom dans l'export")
        add_mandat(con, s, name="Autre nom")
    d = siret_of(siren_of(81004))
    add_mandat(con, d, name="Rare")
    add_mandat(con, d, name="Fréquent")
    add_mandat(con, d, name="Fréquent")
    reclassify(con)
    assert cls(con, siret_of(a))["name"] == "DENOMINATION SIRENE"
    assert cls(con, siret_of(b))["name"] == "ENSEIGNE"
    assert cls(con, c)["name"] == "BALUCHON A TABLE CITOYENS"
    assert cls(con, d)["name"] == "Fréquent"


@needs_ref
def test_reclassify_keys_and_idempotence(con):
    s = siret_of(siren_of(90001))
    add_mandat(con, s)
    add_mandat(con, s)
    add_holder(con, siret=s)
    h = siret_of(siren_of(90002))
    add_holder(con, siret=h)
    add_holder(con, name=None)
    add_mandat(con, "INCONNU")
    assert reclassify(con) == 3
    assert reclassify(con) == 3
    keys = {r[0] for r in con.execute("SELECT supplier_key FROM supplier_class").fetchall()}
    assert keys == {s, h, "INCONNU"}


def test_reclassify_without_reference_data(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "REF_DIR", tmp_path / "nothing")
    c = store.connect(tmp_path / "x.duckdb")
    try:
        add_mandat(c, siret_of(siren_of(5)), postcode="59000")
        add_mandat(c, "NOM:X")
        assert reclassify(c) == 2
        assert referential.territory_label(c, Territory.parse("dep:59")) == "département 59"
    finally:
        c.close()


def test_holder_key_sql_matches_norm_name(con):
    names = ["Sœur Marie SARL", "L'Échoppe  d'Élise (SAS)", "STÉ  GÉNÉRALE", "ﬁnance",
             "Zürich GmbH", "Café–Crème — SA", "DUPONT\u00a0SARL", "N°1 Ménage", "Cycle²", "  ", "SA"]
    got = dict(con.execute(
        f"SELECT n, {referential.norm_name_sql('n')} FROM (SELECT unnest($n) AS n)", {"n": names}
    ).fetchall())
    assert {n: got[n] for n in names} == {n: norm_name(n) for n in names}


# --- supplier_info and CLI ---------------------------------------------------------------

INFO_KEYS = {"siret", "name", "commune_code", "epci_siren", "departement_code", "region_code",
             "location_source", "ess", "ess_reason", "inclusive_kind", "inclusive_family",
             "size_class", "naf", "naf_label"}


@needs_ref
def test_supplier_info_for_referential_only_siret(con):
    info = referential.supplier_info(con, "807 469 317 00018")  # shipped SIAE list only
    assert INFO_KEYS <= set(info)
    assert info["inclusive_kind"] == "EI" and info["commune_code"] == "93063"
    assert info["seen_in_data"] is False
    assert con.execute("SELECT count(*) FROM supplier_class").fetchone()[0] == 0
    with pytest.raises(ValueError):
        referential.supplier_info(con, "12345678901234")
    sn = siren_of(123)
    add_unit(con, sn, ess="O")
    assert referential.supplier_info(con, sn)["ess_reason"] == "sirene"


@needs_ref
def test_cli_supplier_json(db_path):
    c = store.connect(db_path)
    s = siret_of(siren_of(4444))
    add_unit(c, s[:9], name="CLI SAS", cat="PME", band="11", ess="N", cj="5710")
    add_etab(c, s, commune="59163", naf="43.21A")
    c.close()
    out = subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db_path), "supplier", s, "--json"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    info = json.loads(out.stdout)
    assert INFO_KEYS <= set(info)
    assert (info["siret"], info["name"], info["commune_code"], info["departement_code"]) == (
        s, "CLI SAS", "59163", "59")
    assert (info["ess"], info["ess_reason"], info["size_class"], info["naf"]) == (
        False, "aucune", "PME", "43.21A")
    bad = subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db_path), "supplier", siret_of(siren_of(1))],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert bad.returncode == 2 and "inconnu" in bad.stderr


# --- buyer and territories ---------------------------------------------------------------


@needs_ref
def test_cli_buyer_set_and_show(db_path):
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "analytics", "--db", str(db_path), "buyer", *a],
        capture_output=True, text=True, cwd=ROOT,
    )
    out = run("set", "--siret", "21590163800019", "--territory", "dep:59")
    assert out.returncode == 0, out.stderr
    shown = json.loads(run("show", "--json").stdout)
    assert shown["siret"] == "21590163800019" and shown["siren"] == "215901638"
    assert shown["territory"] == {"kind": "dep", "codes": ["59"]}
    assert shown["name"] == "Croix" and shown["body_kind"] == "commune"
    assert shown["territory_label"] == "Nord (59)"
    bad = run("set", "--siret", "21590163800019", "--territory", "dep:99")
    assert bad.returncode == 2 and "inconnu" in bad.stderr


def test_collectivite_sirens_are_valid():
    for siren, (kind, codes, _) in referential._COLLECTIVITES.items():
        assert stdnum_siren.is_valid(siren), siren
        assert kind in ("departement", "region") and codes


@needs_ref
def test_collectivite_codes_exist(con):
    deps = {r[0] for r in con.execute("SELECT code FROM ref_departements").fetchall()}
    regs = {r[0] for r in con.execute("SELECT code FROM ref_regions").fetchall()}
    for siren, (kind, codes, _) in referential._COLLECTIVITES.items():
        assert set(codes) <= (deps if kind == "departement" else regs), siren
    # every metropolitan and overseas département is covered by a département-level body or
    # by a single collectivité at région level (Corse, Guyane, Martinique) or by Paris
    covered = {c for k, cs, _ in referential._COLLECTIVITES.values() if k == "departement" for c in cs}
    assert deps - covered - {"2A", "2B", "972", "973", "75"} <= {"975", "977", "978", "984", "986",
                                                                 "987", "988", "989"}


@needs_ref
@pytest.mark.parametrize(
    "siret, kind, territory, name",
    [
        ("21590163800019", "commune", "dep:59", "Croix"),
        ("200093201", "epci", "dep:59", "Métropole Européenne de Lille"),
        ("22590001801244", "departement", "dep:59", "Département du Nord"),
        ("200053742", "region", "reg:32", "Région Hauts-de-France"),
        ("200094332", "departement", "dep:67,68", "Collectivité européenne d'Alsace"),
        ("200076958", "region", "reg:94", "Collectivité de Corse"),
        ("229850003", "departement", "dep:976", "Département de Mayotte"),
    ],
)
def test_set_buyer_recognises_public_bodies(con, siret, kind, territory, name):
    out = referential.set_buyer(con, siret=siret)
    assert out["body_kind"] == kind and out["name"] == name
    assert str(Territory(out["territory"]["kind"], tuple(out["territory"]["codes"]))) == territory
    assert out["territory_source"] == "proposé"
    assert referential.get_buyer(con)["territory"] == out["territory"]
    assert str(referential.default_territory(con)) == territory


@needs_ref
def test_buyer_explicit_territory_name_and_point(con):
    out = referential.set_buyer(con, siret="21590163800019", territory=Territory.parse("epci:200093201"),
                                name="Ville de Croix", who="test")
    assert out["name"] == "Ville de Croix" and out["territory_label"] == "Métropole Européenne de Lille"
    assert con.execute("SELECT updated_by FROM settings WHERE key='buyer'").fetchone()[0] == "test"
    croix = con.execute(
        "SELECT centroid_lon, centroid_lat FROM ref_communes WHERE code_commune='59163'"
    ).fetchone()
    assert referential.buyer_point(con) == pytest.approx(croix)
    # a private buyer whose SIRENE establishment is imported: its commune
    s = siret_of(siren_of(321))
    add_etab(con, s, commune="2A004")
    add_unit(con, s[:9], name="HOPITAL PRIVE")
    out = referential.set_buyer(con, siret=s, territory=Territory.parse("reg:94"))
    assert out["name"] == "HOPITAL PRIVE" and out["body_kind"] is None
    ajaccio = con.execute(
        "SELECT centroid_lon, centroid_lat FROM ref_communes WHERE code_commune='2A004'"
    ).fetchone()
    assert referential.buyer_point(con) == pytest.approx(ajaccio)
    # a département: its chef-lieu (Lille)
    referential.set_buyer(con, siret="225900018")
    lille = con.execute(
        "SELECT centroid_lon, centroid_lat FROM ref_communes WHERE code_commune='59350'"
    ).fetchone()
    assert referential.buyer_point(con) == pytest.approx(lille)
    # unknown private buyer without territory: no point, no territory
    referential.set_buyer(con, siret=siret_of(siren_of(654)))
    assert referential.buyer_point(con) is None and referential.default_territory(con) is None
    with pytest.raises(ValueError):
        referential.set_buyer(con, siret="123")


@needs_ref
def test_default_territory_without_configuration(con):
    assert referential.get_buyer(con) is None and referential.buyer_point(con) is None
    assert referential.default_territory(con) is None
    assert str(referential.default_territory(con, "21590163800019")) == "dep:59"
    assert str(referential.default_territory(con, "200093201")) == "dep:59"
    assert referential.default_territory(con, siret_of(siren_of(99))) is None


@needs_ref
def test_territory_label_and_predicate(con):
    lab = referential.territory_label
    assert lab(con, Territory.parse("dep:59")) == "Nord (59)"
    assert lab(con, Territory.parse("dep:2A,2B")) == "Corse-du-Sud (2A), Haute-Corse (2B)"
    assert lab(con, Territory.parse("reg:32")) == "Hauts-de-France"
    assert lab(con, Territory.parse("com:59350")) == "Lille (59350)"
    assert lab(con, Territory.parse("epci:200093201")) == "Métropole Européenne de Lille"
    a, b = siret_of(siren_of(1)), siret_of(siren_of(2))
    add_etab(con, a, commune="59350")
    add_etab(con, b, commune="62041")
    add_mandat(con, a)
    add_mandat(con, b)
    reclassify(con)
    for text, expected in (("dep:59", {a}), ("dep:59,62", {a, b}), ("reg:32", {a, b}),
                           ("epci:200093201", {a}), ("com:62041", {b})):
        sql, params = referential.territory_predicate(Territory.parse(text), alias="s")
        got = {r[0] for r in con.execute(f"SELECT supplier_key FROM supplier_class s WHERE {sql}", params).fetchall()}
        assert got == expected, text
    with pytest.raises(ValueError):
        referential.territory_predicate(Territory.parse("dep:59"), alias="s; DROP TABLE x")


@needs_ref
def test_reference_lookups(con):
    deps = referential.departements(con)
    assert {"2A", "2B", "971", "976"} <= set(deps["code"])
    assert deps.set_index("code").loc["59", "label"] == "Nord (59)"
    assert deps.set_index("code").loc["59", "region_nom"] == "Hauts-de-France"
    assert len(referential.regions(con)) >= 18
    assert referential.naf_label(con, "6201Z") == referential.naf_label(con, "62.01Z")
    assert referential.naf_label(con, "62.10Y") == "Activités de programmation informatique"
    assert referential.naf_label(con, "62").startswith("Programmation")
    assert referential.naf_label(con, None) is None
    assert referential.cpv_division_label(con, "45233140-2").lower().startswith("travaux de construction")
    assert referential.cpv_division_label(con, "45") == referential.cpv_division_label(con, "45000000")


# --- speed -----------------------------------------------------------------------------


@needs_ref
def test_speed_100k_suppliers(con):
    """Printed, not asserted: 100,000 suppliers with SIRENE facts classified in pure SQL."""
    n = int(os.environ.get("EMPREINTE_BENCH_SUPPLIERS", "100000"))
    con.execute(
        f"""CREATE TEMP TABLE _k AS SELECT i, lpad(i::VARCHAR, 9, '0') AS siren FROM range(1, {n} + 1) t(i)"""
    )
    # valid-looking keys are enough for speed (no Luhn check in the classification)
    con.execute(
        """INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_siret,
               supplier_name, supplier_postcode, supplier_identified, amount, amount_basis)
           SELECT 0, 'b' || i || '-' || j, DATE '2025-01-01', siren || '00012', siren || '00012',
                  'F ' || i, '59000', true, 10, 'HT' FROM _k, range(3) r(j)"""
    )
    con.execute(
        """INSERT INTO sirene_etablissements (import_id, siret, siren, siege, commune_code, naf,
               tranche_effectifs)
           SELECT 1, siren || '00012', siren, true,
                  (SELECT list(code_commune) FROM ref_communes WHERE type = 'commune-actuelle')[1 + i % 30000],
                  '62.01Z', '02' FROM _k"""
    )
    con.execute(
        """INSERT INTO sirene_unites (import_id, siren, denomination, categorie_juridique,
               categorie_entreprise, tranche_effectifs, ess)
           SELECT 1, siren, 'U' || i, CASE WHEN i % 10 = 0 THEN '9220' ELSE '5710' END, 'PME', '02',
                  CASE WHEN i % 7 = 0 THEN 'O' ELSE 'N' END FROM _k"""
    )
    t = time.perf_counter()
    got = reclassify(con)
    elapsed = time.perf_counter() - t
    print(f"\n[speed] reclassify: {got} suppliers in {elapsed:.2f} s")
    assert got == n
    located = con.execute("SELECT count(*) FROM supplier_class WHERE location_source = 'sirene'").fetchone()[0]
    assert located == n


def test_name_from_ess_list_when_nothing_better(con):
    """An ESS / ESUS list names a supplier with no SIRENE name and no name in the data;
    SIRENE and the payments' own name stay first."""
    a, b, c, d = (siren_of(n) for n in (82001, 82002, 82003, 82004))
    for sn, siret, name in (
        (a, siret_of(a), "ASSOCIATION DU LISTE"),
        (b, siret_of(b), "NOM DE LISTE B"),
        (c, siret_of(c), "NOM DE LISTE C"),
        (d, None, "  SIREN SEUL  "),
        (d, siret_of(d, 2), "AUTRE ETABLISSEMENT"),
    ):
        con.execute(
            "INSERT INTO ess_list (import_id, siret, siren, name, label) VALUES (0, $st, $s, $n, 'ESUS')",
            {"s": sn, "st": siret, "n": name},
        )
    add_unit(con, b, name="DENOMINATION SIRENE")
    add_mandat(con, siret_of(a))  # a payment without any name
    add_mandat(con, siret_of(b))
    add_mandat(con, siret_of(c), name="Nom dans l'export")
    add_mandat(con, siret_of(d))
    add_mandat(con, siret_of(d, 2))
    reclassify(con)
    assert cls(con, siret_of(a))["name"] == "ASSOCIATION DU LISTE"
    assert cls(con, siret_of(b))["name"] == "DENOMINATION SIRENE"
    assert cls(con, siret_of(c))["name"] == "Nom dans l'export"
    # no line of the same SIRET: the line of the SIREN, trimmed; the other SIRET has its own
    assert cls(con, siret_of(d))["name"] == "SIREN SEUL"
    assert cls(con, siret_of(d, 2))["name"] == "AUTRE ETABLISSEMENT"
    # a SIRET known only through the list
    e = siren_of(82005)
    con.execute(
        "INSERT INTO ess_list (import_id, siret, siren, name, label)"
        " VALUES (0, NULL, $s, 'SEULE LA LISTE', 'ESUS')",
        {"s": e},
    )
    info = referential.supplier_info(con, siret_of(e))
    assert (info["name"], info["ess_reason"], info["seen_in_data"]) == ("SEULE LA LISTE", "liste", False)
    assert referential.supplier_info(con, e)["name"] == "SEULE LA LISTE"


@needs_ref
def test_supplier_info_of_a_data_supplier_is_its_stored_class(con):
    """A supplier of the data: the card reads supplier_class (what the figures count),
    not a new classification from every line."""
    s = siret_of(siren_of(5151))
    add_unit(con, s[:9], ess="O")
    add_etab(con, s, commune="59350")
    add_mandat(con, s)
    reclassify(con)
    assert referential.supplier_info(con, s)["ess_reason"] == "sirene"
    con.execute("UPDATE supplier_class SET commune_code = '59009' WHERE supplier_key = ?", [s])
    info = referential.supplier_info(con, s)
    assert info["commune_code"] == "59009" and info["seen_in_data"] is True
    assert info["commune_name"] == "Villeneuve-d'Ascq"

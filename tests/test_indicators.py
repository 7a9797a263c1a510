"""Indicator engine: each figure against arithmetic written in the test.

Every database here is built with plain INSERTs (mandats, contracts, contract_holders,
supplier_class, insertion_hours): the tests depend on no importer and no referential.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analytics import indicators as ind
from analytics import referential, store
from analytics.filters import Filters, Territory
from analytics.fmt import fmt_date, fmt_eur, fmt_int, fmt_pct, fmt_points, fmt_value

ROOT = Path(__file__).resolve().parent.parent
D = dt.date
BUYER = "21590163800019"
Y2025 = Filters.year(2025, territory=Territory("dep", ("59",)))

# Suppliers of the main scenario (keys as referential.reclassify writes them).
A = "11111111100011"  # Lille (59), ESS, PME
B = "22222222200022"  # Arras (62), GE
C = "33333333300033"  # Roubaix (59), ESS association, EI (insertion), TPE
DK = "44444444400044"  # identified but unlocated, size unknown
E = "NOM:DUPONT"  # name only
F = "55555555500055"  # Paris (75), ESAT (handicap), ESS, PME

LILLE = (3.0573, 50.6292)  # the buyer's point
POINTS = {A: (3.0468, 50.6319), B: (2.7786, 50.2899), C: (3.1746, 50.6942), F: (2.3522, 48.8566)}

_seq = itertools.count(1)


def haversine(p, q) -> float:
    (lon1, lat1), (lon2, lat2) = p, q
    a = (
        math.sin(math.radians(lat2 - lat1) / 2) ** 2
        + math.cos(math.radians(lat1))
        * math.cos(math.radians(lat2))
        * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def mandat(con, key, amount, day, *, buyer=BUYER, invoice=None, payment=None, basis="TTC", **cols):
    row = {
        "import_id": 1,
        "natural_key": f"n{next(_seq)}",
        "buyer_siret": buyer,
        "spend_date": day,
        "payment_date": payment,
        "invoice_date": invoice,
        "supplier_key": key,
        "supplier_name": cols.pop("name", key),
        "supplier_identified": not key.startswith("NOM:"),
        "amount": amount,
        "amount_basis": basis,
        **cols,
    }
    names = ", ".join(row)
    con.execute(f"INSERT INTO mandats ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def supplier(con, key, **cols):
    row = {
        "supplier_key": key,
        "identified": not key.startswith("NOM:"),
        "name": f"Fournisseur {key[-4:]}",
        **cols,
    }
    if key in POINTS and "lon" not in cols:
        row["lon"], row["lat"] = POINTS[key]
    names = ", ".join(row)
    con.execute(
        f"INSERT INTO supplier_class ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    )


def contract(con, key, notified, amount, holders=(), *, import_id=10, seq=None, published=None, **cols):
    """One contract version and its holders: holders = [(siret, name, categorie), …]."""
    seq = seq or next(_seq)
    row = {
        "import_id": import_id,
        "seq": seq,
        "contract_key": key,
        "uid": cols.pop("uid", key),
        "id": cols.pop("id", key),
        "buyer_siret": cols.pop("buyer_siret", BUYER),
        "buyer_name": "Ville de Test",
        "date_notification": notified,
        "date_publication": published or notified,
        "amount": amount,
        "holder_count": len(holders),
        **cols,
    }
    names = ", ".join(row)
    con.execute(f"INSERT INTO contracts ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    for rank, (siret, name, categorie) in enumerate(holders, 1):
        con.execute(
            "INSERT INTO contract_holders (import_id, seq, contract_key, holder_rank, holder_siret, holder_name,"
            " categorie) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [import_id, seq, key, rank, siret, name, categorie],
        )


def by(df, column):
    """Index a breakdown by one column, the None group as '-'."""
    return df.assign(**{column: df[column].fillna("-")}).set_index(column)


def ref_views(con):
    """Small reference views standing for the shipped ones (names of places)."""
    con.execute(
        "CREATE OR REPLACE TEMP VIEW ref_departements AS SELECT * FROM (VALUES "
        "('59', 'Nord', '32'), ('62', 'Pas-de-Calais', '32'), ('75', 'Paris', '11')) t(code, nom, region)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW ref_regions AS SELECT * FROM (VALUES "
        "('32', 'Hauts-de-France'), ('11', 'Île-de-France')) t(code, nom)"
    )


@pytest.fixture
def with_point(monkeypatch):
    monkeypatch.setattr(referential, "buyer_point", lambda con: LILLE, raising=False)


@pytest.fixture
def no_point(monkeypatch):
    monkeypatch.setattr(referential, "buyer_point", lambda con: None, raising=False)


def build_main(con):
    """The main scenario: 2024 history, 2025 spend, 2025 contracts, insertion hours."""
    with store.transaction(con):  # one commit rather than one per row
        _build_main(con)


def _build_main(con):
    supplier(
        con,
        A,
        commune_code="59350",
        epci_siren="200093201",
        departement_code="59",
        region_code="32",
        ess=True,
        ess_reason="sirene",
        size_class="PME",
        naf_section="F",
        categorie_juridique="5710",
    )
    supplier(
        con,
        B,
        commune_code="62041",
        departement_code="62",
        region_code="32",
        ess=False,
        size_class="GE",
        naf_section="C",
        categorie_juridique="5599",
    )
    supplier(
        con,
        C,
        commune_code="59512",
        epci_siren="200093201",
        departement_code="59",
        region_code="32",
        ess=True,
        ess_reason="forme_juridique",
        inclusive_kind="EI",
        inclusive_family="insertion",
        size_class="TPE",
        naf_section="N",
        categorie_juridique="9220",
    )
    supplier(con, DK, identified=True)
    supplier(con, E, identified=False)
    supplier(
        con,
        F,
        commune_code="75056",
        departement_code="75",
        region_code="11",
        ess=True,
        inclusive_kind="ESAT",
        inclusive_family="handicap",
        size_class="PME",
        naf_section="Q",
        categorie_juridique="9220",
    )
    # 2024: the history (A and B already paid)
    mandat(con, A, 800, D(2024, 6, 1), nature="6156", service="Voirie")
    mandat(con, B, 100, D(2024, 1, 15), nature="2313", service="Bâtiments")
    # 2025
    mandat(
        con,
        A,
        1000,
        D(2025, 2, 10),
        invoice=D(2025, 1, 10),
        payment=D(2025, 2, 10),
        nature="6156",
        service="Voirie",
        contract_number="u-1",
    )
    mandat(
        con,
        A,
        500,
        D(2025, 3, 1),
        invoice=D(2025, 2, 15),
        payment=D(2025, 3, 1),
        nature="6156",
        service="Voirie",
    )
    mandat(
        con,
        A,
        -200,
        D(2025, 4, 1),
        invoice=D(2025, 3, 1),
        payment=D(2025, 4, 1),
        nature="6156",
        service="Voirie",
    )  # credit note
    mandat(
        con,
        B,
        3000,
        D(2025, 5, 5),
        invoice=D(2025, 4, 20),
        payment=D(2025, 5, 5),
        nature="2313",
        service="Bâtiments",
        basis="HT",
    )
    mandat(con, C, 400, D(2025, 6, 1), nature="611", service="Espaces verts", contract_number="LOT")
    mandat(con, DK, 600, D(2025, 7, 1), nature="6068", service="Voirie")
    mandat(con, E, 100, D(2025, 8, 1), category="Fournitures")
    mandat(con, F, 200, D(2025, 9, 1), nature="611", service="Espaces verts")
    # 2025 contracts. K1 published twice: the later version (90 000 €, three holders) stands.
    contract(
        con,
        "U1",
        D(2025, 3, 1),
        60000,
        [(A, "A", None)],
        import_id=10,
        published=D(2025, 3, 5),
        has_social=False,
        has_environmental=False,
        is_reserved=False,
    )
    contract(
        con,
        "U1",
        D(2025, 3, 1),
        90000,
        [(A, "A", None), (B, "B", None), (C, "C", None)],
        import_id=11,
        published=D(2025, 6, 1),
        has_social=True,
        has_environmental=True,
        is_reserved=False,
        offers_received=1,
        innovative=False,
        advance_rate=0.30,
        cpv_division="45",
        procedure="Appel d'offres ouvert",
        considerations_sociales=["Clause sociale"],
        considerations_environnementales=["Clause environnementale"],
    )
    # Two lots reusing the id "LOT": two contracts (tabular DECP keys uid|date|montant).
    contract(
        con,
        "LOT|2025-05-01|1000",
        D(2025, 5, 1),
        1000,
        [(DK, "D", "PME")],
        id="LOT",
        uid="LOT",
        has_social=False,
        has_environmental=False,
        is_reserved=False,
        offers_received=3,
        innovative=True,
        cpv_division="90",
        procedure="Procédure adaptée",
    )
    contract(
        con,
        "LOT|2025-06-01|2000",
        D(2025, 6, 1),
        2000,
        [(A, "A", None)],
        id="LOT",
        uid="LOT",
        advance_rate=0.05,
        cpv_division="90",
        procedure="Procédure adaptée",
    )  # considerations unknown (v1)
    contract(
        con,
        "K4",
        D(2025, 7, 1),
        4000,
        [(F, "F", None)],
        has_social=True,
        has_environmental=False,
        is_reserved=True,
        offers_received=2,
        innovative=False,
        advance_rate=0.40,
        cpv_division="45",
        procedure="Procédure adaptée",
    )
    # 2024 contract (history of holders on the notified basis)
    contract(
        con,
        "K0",
        D(2024, 4, 1),
        5000,
        [(B, "B", None)],
        has_social=False,
        has_environmental=False,
        is_reserved=False,
    )
    for hours, day in ((800, D(2025, 3, 31)), (807.5, D(2025, 9, 30)), (300, D(2024, 12, 31))):
        con.execute(
            "INSERT INTO insertion_hours (import_id, contract_id, period_date, hours) VALUES (1, 'U1', ?, ?)",
            [day, hours],
        )


@pytest.fixture
def main(con, with_point):
    build_main(con)
    ref_views(con)
    return con


# --------------------------------------------------------------------------------- paid basis


def test_total_spend_nets_credit_notes(main):
    h = ind.headline(main, Y2025)
    # A 1000 + 500 - 200 (credit note), B 3000, C 400, D 600, E 100, F 200
    assert h["total_spend"] == pytest.approx(1300 + 3000 + 400 + 600 + 100 + 200)
    assert h["coverage"]["total_spend"]["lines"] == 8
    assert h["coverage"]["total_spend"]["lines_ht"] == 1  # B's line was HT
    assert h["basis"] == "paid"


def test_supplier_count(main):
    h = ind.headline(main, Y2025)
    assert h["supplier_count"] == 6  # A, B, C, D, E (name only), F
    assert h["coverage"]["supplier_count"]["unidentified_suppliers"] == 1  # E


def test_local_share_excludes_unlocated(main):
    h = ind.headline(main, Y2025)
    # local (dep 59): A 1300 + C 400; located: A, B 3000, C, F 200; D and E unlocated
    assert h["local_share"] == pytest.approx(1700 / 4900)
    cov = h["coverage"]["local_share"]
    assert cov["located_amount"] == 4900 and cov["unlocated_amount"] == 700 and cov["total_amount"] == 5600
    assert h["unlocated_share"] == pytest.approx(700 / 5600)


def test_local_share_other_territory_kinds(main):
    assert ind.headline(main, Y2025.with_(territory=Territory("reg", ("32",))))[
        "local_share"
    ] == pytest.approx((1300 + 3000 + 400) / 4900)
    epci = ind.headline(main, Y2025.with_(territory=Territory("epci", ("200093201",))))
    # only A and C carry an EPCI: the located denominator is theirs
    assert epci["local_share"] == pytest.approx(1.0)
    assert epci["coverage"]["local_share"]["located_amount"] == 1700
    com = ind.headline(main, Y2025.with_(territory=Territory("com", ("59512", "75056"))))
    assert com["local_share"] == pytest.approx((400 + 200) / 4900)


def test_local_share_without_territory_is_none(main):
    h = ind.headline(main, Y2025.with_(territory=None))
    assert h["local_share"] is None
    assert "territoire" in h["reasons"]["local_share"].lower()
    assert "non configuré" in h["reasons"]["local_share"]


def test_ess_inclusive_shares(main):
    h = ind.headline(main, Y2025)
    assert h["ess_share"] == pytest.approx((1300 + 400 + 200) / 5600)
    assert h["coverage"]["ess_share"]["known_amount"] == 4900  # D and E: ESS status unknown
    assert h["inclusive_share"] == pytest.approx((400 + 200) / 5600)
    assert h["insertion_share"] == pytest.approx(400 / 5600)
    assert h["disability_share"] == pytest.approx(200 / 5600)


def test_sme_shares(main):
    h = ind.headline(main, Y2025)
    # PME/TPE: A 1300, C 400, F 200 over known size A, B 3000, C, F
    assert h["sme_share"] == pytest.approx(1900 / 4900)
    assert h["sme_count_share"] == pytest.approx(3 / 4)
    assert h["coverage"]["sme_share"]["known_amount"] == 4900


def test_new_suppliers(main):
    h = ind.headline(main, Y2025)
    # A and B were paid in 2024: C, D, E, F are new among 6
    assert h["new_supplier_share"] == pytest.approx(4 / 6)
    assert h["coverage"]["new_supplier_share"]["history_from"] == "2024-01-15"
    listed = ind.new_suppliers(main, Y2025)
    assert sorted(listed["supplier_key"]) == sorted([C, DK, E, F])
    assert listed.loc[listed.supplier_key == DK, "amount"].item() == 600


def test_new_suppliers_without_history_is_none(main):
    h = ind.headline(main, Filters.year(2024))
    assert h["new_supplier_share"] is None
    assert "antérieure" in h["reasons"]["new_supplier_share"]
    assert ind.new_suppliers(main, Filters.year(2024)).empty


def test_hhi_and_top10_main(main):
    h = ind.headline(main, Y2025)
    nets = [1300, 3000, 400, 600, 100, 200]
    total = sum(nets)
    assert h["hhi"] == pytest.approx(sum((x / total) ** 2 for x in nets))
    assert h["top10_share"] == pytest.approx(1.0)  # six suppliers: all in the top 10


def test_top10_and_hhi_by_hand(con, no_point):
    # 12 suppliers paid 100, 200, …, 1200; one with only a credit note; one line without supplier
    for i in range(1, 13):
        mandat(con, f"S{i:02d}", 100 * i, D(2025, 3, 1))
    mandat(con, "S99", -50, D(2025, 3, 1))
    mandat(con, "INCONNU", 999, D(2025, 3, 1))
    h = ind.headline(con, Filters.year(2025))
    total = 100 * sum(range(1, 13))  # 7800; S99 (net ≤ 0) and INCONNU are not suppliers here
    assert h["top10_share"] == pytest.approx(100 * sum(range(3, 13)) / total)  # 7500 / 7800
    assert h["hhi"] == pytest.approx(sum((100 * i / total) ** 2 for i in range(1, 13)))
    assert h["coverage"]["top10_share"]["suppliers"] == 12
    assert h["supplier_count"] == 12
    assert h["total_spend"] == pytest.approx(7800 - 50 + 999)
    conc = ind.concentration(con, Filters.year(2025)).iloc[0]
    assert conc["top10_share"] == pytest.approx(7500 / 7800)
    assert conc["supplier_count"] == 12
    lorenz = ind.lorenz_curve(con, Filters.year(2025))
    assert lorenz.iloc[0].tolist() == [0.0, 0.0]
    assert lorenz.iloc[-1].tolist() == pytest.approx([1.0, 1.0])
    assert lorenz["cum_spend_share"].iloc[1] == pytest.approx(100 / 7800)  # the smallest supplier
    assert len(lorenz) == 13


def test_lorenz_curve_is_capped(con, no_point):
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_identified, amount,"
        " amount_basis) SELECT 1, 'k' || i, DATE '2025-05-01', 'S' || i, TRUE, i, 'TTC' FROM range(1, 1001) r(i)"
    )
    lorenz = ind.lorenz_curve(con, Filters.year(2025))
    assert len(lorenz) <= 200
    assert lorenz.iloc[-1].tolist() == pytest.approx([1.0, 1.0])
    assert lorenz["cum_spend_share"].is_monotonic_increasing


def test_median_distance_by_hand(main):
    h = ind.headline(main, Y2025)
    # positive spend of located suppliers: A 1500 (credit note excluded), C 400, B 3000, F 200
    # by distance from Lille: A (~1 km), C (~11 km), B (~45 km), F (~204 km); half of 5100 = 2550
    # cumulated 1500, 1900, 4900 ≥ 2550 at B → median = distance to Arras
    assert haversine(LILLE, POINTS[A]) < haversine(LILLE, POINTS[C]) < haversine(LILLE, POINTS[B])
    assert h["median_distance_km"] == pytest.approx(haversine(LILLE, POINTS[B]), abs=1e-3)
    assert h["coverage"]["median_distance_km"]["weighted_amount"] == 5100
    assert h["coverage"]["median_distance_km"]["positive_amount"] == 5100 + 600 + 100
    dist = ind.distance_distribution(main, Y2025)
    assert dist["amount"].sum() == pytest.approx(5100)
    assert dist.loc[dist.km_min == 0, "amount"].item() == pytest.approx(1500)  # A within 10 km
    assert dist.loc[dist.km_min == 10, "amount"].item() == pytest.approx(400)  # C, Roubaix
    assert dist.loc[dist.km_min == 25, "amount"].item() == pytest.approx(3000)
    assert dist.loc[dist.km_min == 200, "amount"].item() == pytest.approx(200)


def test_median_distance_two_communes_equal_weight(con, with_point):
    supplier(con, A, commune_code="59350", departement_code="59")
    supplier(con, B, commune_code="62041", departement_code="62")
    mandat(con, A, 100, D(2025, 1, 5))
    mandat(con, B, 100, D(2025, 1, 5))
    # half the spend at each: the lower weighted median (Lille) is the smallest distance reaching 50 %
    h = ind.headline(con, Filters.year(2025))
    assert h["median_distance_km"] == pytest.approx(haversine(LILLE, POINTS[A]), abs=1e-3)
    mandat(con, B, 1, D(2025, 1, 6))
    assert ind.headline(con, Filters.year(2025))["median_distance_km"] == pytest.approx(
        haversine(LILLE, POINTS[B]), abs=1e-3
    )


def test_median_distance_without_buyer_point(main, no_point):
    h = ind.headline(main, Y2025)
    assert h["median_distance_km"] is None
    assert "acheteur" in h["reasons"]["median_distance_km"]
    assert ind.distance_distribution(main, Y2025).empty


def test_payment_delay(main):
    h = ind.headline(main, Y2025)
    # 31 days (A 10/01 → 10/02), 14 days (A 15/02 → 01/03), 15 days (B 20/04 → 05/05);
    # the credit note is not a payment
    assert h["payment_delay_days"] == pytest.approx((31 + 14 + 15) / 3)
    assert h["payment_within_30_share"] == pytest.approx(2 / 3)
    assert h["coverage"]["payment_delay_days"] == {"lines_with_dates": 3, "payment_lines": 7}
    months = ind.payment_delays(main, Y2025)
    assert months["month"].tolist() == [
        pd.Timestamp(2025, 2, 1),
        pd.Timestamp(2025, 3, 1),
        pd.Timestamp(2025, 5, 1),
    ]
    assert months["mean_days"].tolist() == [31, 14, 15]
    assert months["share_30"].tolist() == [0, 1, 1]


def test_insertion_hours_and_fte(main):
    h = ind.headline(main, Y2025)
    assert h["insertion_hours"] == pytest.approx(800 + 807.5)  # the 2024 row is out of the period
    assert h["insertion_fte"] == pytest.approx(1607.5 / 1607)


def test_empty_database_gives_none_with_reasons(con, no_point):
    h = ind.headline(con, Filters.year(2025, territory=Territory("dep", ("59",))))
    for key in ind.HEADLINE_KEYS:
        assert h[key] is None, key
        assert h["reasons"][key], key
    assert "mandat" in h["reasons"]["total_spend"].lower()


def test_zero_denominators(con, no_point):
    # spend exists but no size is known, nobody is located, and credit notes cancel it all
    supplier(con, "S1", identified=True)
    mandat(con, "S1", 100, D(2025, 2, 1))
    mandat(con, "S1", -100, D(2025, 3, 1))
    h = ind.headline(con, Filters.year(2025, territory=Territory("dep", ("59",))))
    assert h["total_spend"] == 0  # there is data: the net is a true zero
    for key in (
        "sme_share",
        "sme_count_share",
        "local_share",
        "ess_share",
        "unlocated_share",
        "top10_share",
        "hhi",
    ):
        assert h[key] is None, key
        assert h["reasons"][key], key
    assert h["payment_delay_days"] is None and h["payment_within_30_share"] is None
    assert h["contract_count"] is None and "contrat" in h["reasons"]["contract_count"]
    assert h["insertion_hours"] is None and h["insertion_fte"] is None


def test_filters_services_natures_amounts_classes(main):
    def total(**kw):
        return ind.headline(main, Y2025.with_(**kw))["total_spend"]

    assert total(services=("Voirie",)) == pytest.approx(1300 + 600)
    assert total(natures=("61",)) == pytest.approx(1300 + 400 + 200)  # 6156 (A) and 611 (C, F)
    assert total(natures=("2313", "6068")) == pytest.approx(3000 + 600)
    assert total(amount_min=0) == pytest.approx(5600 + 200)  # the credit note line is out
    assert total(amount_min=400, amount_max=1000) == pytest.approx(1000 + 500 + 400 + 600)
    assert total(supplier_classes=("ess",)) == pytest.approx(1900)
    assert total(supplier_classes=("insertion", "handicap")) == pytest.approx(600)
    assert total(supplier_classes=("pme",)) == pytest.approx(1900)
    assert total(supplier_classes=("local",)) == pytest.approx(1700)
    assert total(buyer_siret="21590163800019") == pytest.approx(5600)
    assert total(buyer_siret="215901638") == pytest.approx(5600)  # a SIREN scopes its establishments
    assert total(buyer_siret="99999999999999") is None
    with pytest.raises(ValueError):
        ind.headline(main, Y2025.with_(supplier_classes=("bio",)))


def test_supplier_class_filter_applies_to_payment_delay(main):
    h = ind.headline(main, Y2025.with_(supplier_classes=("pme",)))
    assert h["payment_delay_days"] == pytest.approx((31 + 14) / 2)  # A's two payments only


# ------------------------------------------------------------------------------- contracts


def test_contract_count_republished_once_and_reused_ids(main):
    h = ind.headline(main, Y2025)
    # U1 (two versions → one), LOT|…|1000 and LOT|…|2000 (same id, two contracts), K4
    assert h["contract_count"] == 4
    table = ind.contracts_table(main, Y2025)
    assert len(table) == 4
    u1 = table[table.contract_key == "U1"].iloc[0]
    assert u1["amount"] == 90000 and u1["holder_count"] == 3  # the later version stands


def test_contracts_table_names_holders_without_published_name(main):
    """DECP v2 publishes holders by identifier only: the table names them from the
    referential, else shows the identifier."""
    before = ind.contracts_table(main, Y2025).set_index("contract_key")["holders"]
    assert before.notna().all()
    main.execute("UPDATE contract_holders SET holder_name = NULL")
    named = dict(main.execute("SELECT supplier_key, name FROM supplier_class").fetchall())
    sirets = main.execute(
        "SELECT c.contract_key, h.holder_rank, h.holder_siret FROM contracts_current c "
        "JOIN contract_holders h USING (import_id, seq) ORDER BY 1, 2"
    ).fetchall()
    after = ind.contracts_table(main, Y2025).set_index("contract_key")["holders"]
    for key in after.index:
        expected = " ; ".join(named.get(s) or s for k, _, s in sirets if k == key and s)
        assert after[key] == expected, key


def test_clause_rates(main):
    h = ind.headline(main, Y2025)
    # considerations known for U1, LOT 1000 and K4 (LOT 2000: unknown, out of the denominator)
    assert h["social_clause_rate"] == pytest.approx(2 / 3)  # U1, K4
    assert h["coverage"]["social_clause_rate"] == {"contracts": 4, "known": 3, "unknown": 1}
    assert h["social_clause_rate_value"] == pytest.approx((90000 + 4000) / (90000 + 1000 + 4000))
    assert h["environmental_clause_rate"] == pytest.approx(1 / 3)  # U1
    assert h["environmental_clause_rate_value"] == pytest.approx(90000 / 95000)
    assert h["reserved_contract_rate"] == pytest.approx(1 / 3)  # K4
    assert h["reserved_contract_rate_value"] == pytest.approx(4000 / 95000)


def test_offer_innovation_advance_rates(main):
    h = ind.headline(main, Y2025)
    assert h["single_offer_rate"] == pytest.approx(1 / 3)  # offers known: U1 (1), LOT 1000 (3), K4 (2)
    assert h["innovative_rate"] == pytest.approx(1 / 3)  # known: U1 no, LOT 1000 yes, K4 no
    # SME contracts: U1 (A PME, C TPE), LOT 2000 (A), K4 (F PME), LOT 1000 (DECP categorie PME);
    # advance known for U1 (0.30 ≥ 0.30), LOT 2000 (0.05), K4 (0.40) → 2 / 3
    assert h["sme_advance_rate"] == pytest.approx(2 / 3)
    assert h["coverage"]["sme_advance_rate"] == {"sme_contracts": 4, "with_advance": 3}


def test_contract_filters(main):
    h = ind.headline(main, Y2025.with_(cpv_divisions=("45",)))
    assert h["contract_count"] == 2 and h["social_clause_rate"] == pytest.approx(1.0)
    h = ind.headline(main, Y2025.with_(procedures=("Procédure adaptée",)))
    assert h["contract_count"] == 3
    assert ind.headline(main, Y2025.with_(buyer_siret="12345678900011"))["contract_count"] is None


def test_clause_rate_unknown_considerations_only(con, no_point):
    contract(con, "V1", D(2023, 5, 1), 1000, [("S1", "S1", None)])
    h = ind.headline(con, Filters.year(2023))
    assert h["contract_count"] == 1
    assert h["social_clause_rate"] is None and "inconnues" in h["reasons"]["social_clause_rate"]
    assert h["coverage"]["social_clause_rate"] == {"contracts": 1, "known": 0, "unknown": 1}


def test_notified_basis_splits_amounts_among_holders(main):
    f = Y2025.with_(basis="notified")
    h = ind.headline(main, f)
    # U1 90 000 / 3 → A, B, C 30 000 each (version 1 at 60 000 ignored); LOT 1000 → D;
    # LOT 2000 → A; K4 4 000 → F
    assert h["total_spend"] == pytest.approx(97000)
    assert h["supplier_count"] == 5
    assert h["local_share"] == pytest.approx((32000 + 30000) / (32000 + 30000 + 30000 + 4000))
    assert h["unlocated_share"] == pytest.approx(1000 / 97000)
    assert h["ess_share"] == pytest.approx((32000 + 30000 + 4000) / 97000)
    assert h["sme_share"] == pytest.approx((32000 + 30000 + 4000) / 96000)
    assert h["basis"] == "notified"
    # B held K0 in 2024: A, C, D, F are new among 5
    assert h["new_supplier_share"] == pytest.approx(4 / 5)
    # count rates do not depend on the basis
    assert h["contract_count"] == 4
    # payment delays still come from mandats
    assert h["payment_delay_days"] == pytest.approx(20)
    deps = by(ind.spend_by_departement(main, f), "code")
    assert deps.loc["59", "amount"] == pytest.approx(62000)
    cats = ind.spend_by_category(main, f).set_index("code")
    assert cats.loc["45", "amount"] == pytest.approx(94000) and cats.loc["45", "kind"] == "cpv"


def test_notified_contract_without_holder(con, no_point):
    supplier(con, A, departement_code="59")
    contract(con, "X1", D(2025, 3, 1), 900, [(A, "A", None), (B, "B", None)])
    contract(con, "X2", D(2025, 3, 2), 100, [])  # no holder known: spend without a supplier
    h = ind.headline(con, Filters.year(2025, basis="notified", territory=Territory("dep", ("59",))))
    assert h["total_spend"] == pytest.approx(1000)
    assert h["supplier_count"] == 2  # A and B; the holder-less amount is no supplier
    assert h["local_share"] == pytest.approx(450 / 450)  # only A (450) is located
    assert h["unlocated_share"] == pytest.approx((450 + 100) / 1000)  # B (unclassified) and X2


def test_env_2026_boundary(con, no_point):
    contract(con, "E1", D(2026, 8, 21), 100, [("S1", "S1", None)], has_environmental=False, has_social=False)
    contract(con, "E2", D(2026, 8, 22), 200, [("S1", "S1", None)], has_environmental=False, has_social=False)
    contract(con, "E3", D(2026, 9, 1), 300, [("S1", "S1", None)], has_environmental=True, has_social=False)
    contract(con, "E4", D(2026, 10, 1), 400, [("S1", "S1", None)])  # considerations unknown
    f = Filters.year(2026)
    h = ind.headline(con, f)
    assert h["env_2026_compliance_count"] == 1  # E2 only: E1 is notified the day before
    assert h["coverage"]["env_2026_compliance_count"]["unknown"] == 1
    listed = ind.env_2026_compliance(con, f)
    assert listed["contract_key"].tolist() == ["E2"]
    assert list(listed.columns) == [
        "contract_key",
        "id",
        "objet",
        "date_notification",
        "amount",
        "cpv_division",
        "procedure",
        "buyer",
    ]
    assert ind.headline(con, Filters(D(2026, 8, 23), D(2026, 12, 31)))["env_2026_compliance_count"] == 0
    h25 = ind.headline(con, Filters.year(2025))
    assert (
        h25["env_2026_compliance_count"] is None
        and "22/08/2026" in h25["reasons"]["env_2026_compliance_count"]
    )
    assert "notification" in ind.DEFINITIONS["env_2026_compliance_count"]["definition"]


# ------------------------------------------------------------------------- previous period


def test_previous_year_deltas(main):
    both = ind.headline_with_previous(main, Y2025)
    cur, prev, delta = both["current"], both["previous"], both["delta"]
    assert prev["total_spend"] == pytest.approx(900)  # 2024: A 800, B 100
    assert delta["total_spend"] == pytest.approx((5600 - 900) / 900)  # relative change
    assert delta["supplier_count"] == pytest.approx((6 - 2) / 2)
    assert prev["ess_share"] == pytest.approx(800 / 900)
    assert delta["ess_share"] == pytest.approx(1900 / 5600 - 800 / 900)  # difference of fractions
    assert delta["hhi"] == pytest.approx(cur["hhi"] - prev["hhi"])
    assert prev["contract_count"] == 1 and delta["contract_count"] == pytest.approx(3.0)
    assert delta["new_supplier_share"] is None  # nothing before 2024
    assert delta["payment_delay_days"] is None  # no dated line in 2024


# ------------------------------------------------------------------------------ breakdowns


def test_spend_by_place(main):
    deps = ind.spend_by_departement(main, Y2025)
    assert deps["code"].tolist()[:3] == ["62", "59", "75"]
    assert pd.isna(deps["code"].iloc[-1]) and deps["name"].iloc[-1] == "Non localisé"
    d = deps.set_index("name")
    assert d.loc["Nord", "amount"] == 1700 and d.loc["Nord", "share"] == pytest.approx(1700 / 5600)
    assert d.loc["Nord", "suppliers"] == 2
    assert d.loc["Non localisé", "amount"] == 700
    assert deps["share"].sum() == pytest.approx(1.0)
    regs = ind.spend_by_region(main, Y2025).set_index("name")
    assert regs.loc["Hauts-de-France", "amount"] == 4700
    communes = ind.spend_by_commune(main, Y2025)
    assert set(communes["code"].dropna()) == {"59350", "62041", "59512", "75056"}
    epci = by(ind.spend_by_epci(main, Y2025), "code")
    assert epci.loc["200093201", "amount"] == 1700


def test_spend_by_classes(main):
    size = by(ind.spend_by_size(main, Y2025), "size_class")
    assert size.loc["PME", "amount"] == 1500 and size.loc["TPE", "amount"] == 400
    assert size.loc["-", "label"] == "Taille inconnue" and size.loc["-", "amount"] == 700
    naf = by(ind.spend_by_naf_section(main, Y2025), "code")
    assert naf.loc["F", "name"] == "Construction" and naf.loc["F", "amount"] == 1300
    kinds = ind.spend_by_inclusive_kind(main, Y2025).set_index("kind")
    assert kinds.loc["EI", "family"] == "insertion" and kinds.loc["ESAT", "amount"] == 200
    assert kinds.loc["EI", "share"] == pytest.approx(400 / 5600)
    fam = ind.spend_by_ess_family(main, Y2025).set_index("family")
    assert fam.loc["Association", "amount"] == 600  # C and F (9220)
    assert fam.loc["Autre entreprise de l'ESS", "amount"] == 1300  # A (5710, SAS)


def test_spend_by_category_and_service(main):
    cats = by(ind.spend_by_category(main, Y2025), "code")
    assert cats.loc["61", "amount"] == 1300 + 400 + 200 and cats.loc["61", "name"] == "Services extérieurs"
    assert cats.loc["23", "amount"] == 3000 and cats.loc["60", "amount"] == 600
    assert cats.loc["Fournitures", "kind"] == "categorie" and cats.loc["Fournitures", "amount"] == 100
    local = ind.local_share_by_category(main, Y2025).set_index("code")
    assert local.loc["61", "local_share"] == pytest.approx((1300 + 400) / (1300 + 400 + 200))
    assert local.loc["23", "local_share"] == 0
    assert pd.isna(local.loc["60", "local_share"])  # D is unlocated: no located spend
    svc = by(ind.spend_by_service(main, Y2025), "service")
    assert svc.loc["Voirie", "amount"] == 1900 and svc.loc["Voirie", "suppliers"] == 2


def test_monthly_series(main):
    m = ind.monthly_series(main, Y2025)
    m = m.set_index(m["month"].dt.date)
    assert m["amount"].sum() == pytest.approx(5600)
    assert m.loc[D(2025, 4, 1), "amount"] == -200  # the credit note month
    assert m.loc[D(2025, 6, 1), "ess_amount"] == 400 and m.loc[D(2025, 6, 1), "inclusive_amount"] == 400
    assert m["local_amount"].sum() == pytest.approx(1700)
    assert m["located_amount"].sum() == pytest.approx(4900)
    assert m.loc[D(2025, 4, 1), "suppliers"] == 0  # only a credit note
    assert ind.monthly_series(main, Y2025.with_(territory=None))["local_amount"].isna().all()


def test_top_suppliers_and_suppliers_table(main):
    top = ind.top_suppliers(main, Y2025, n=3)
    assert top["supplier_key"].tolist() == [B, A, DK]
    assert top["share"].iloc[0] == pytest.approx(3000 / 5600)
    assert list(top.columns) == [
        "supplier_key",
        "name",
        "amount",
        "share",
        "ess",
        "inclusive_kind",
        "departement_code",
        "size_class",
    ]
    table = ind.suppliers_table(main, Y2025)
    assert len(table) == 6
    a = table.set_index("supplier_key").loc[A]
    assert a["amount"] == 1300 and a["contracts"] == 2 and a["local"] and a["lines"] == 3  # U1, LOT 2000
    found = ind.suppliers_table(main, Y2025, search="dupont")
    assert found["supplier_key"].tolist() == [E]


LONG_DF_SQL = """
    SELECT * FROM (VALUES
        (1, NULL::INTEGER, DATE '2025-01-02', TIMESTAMP '2025-01-02 03:04:05', 12.34::DECIMAL(18, 2),
         TRUE, NULL::BOOLEAN, 'a', NULL::VARCHAR, 1.5::DOUBLE, ['x', 'y'], NULL::UBIGINT, 5::BIGINT),
        (2, 3, NULL, NULL, NULL, FALSE, TRUE, NULL, NULL, NULL, NULL, 4, NULL)
    ) t(i, ni, d, ts, dec, b, nb, s, ns, f, l, u, big) WHERE i <= $n
"""


@pytest.mark.parametrize("n", [2, 1, 0])
def test_long_results_read_as_arrow_keep_the_dtypes_of_df(n):
    """The supplier table is read through Arrow (``_long_df``): every type gives the same
    DataFrame as DuckDB's ``.df()``, with or without NULLs, and with no row at all."""
    import duckdb

    con = duckdb.connect()
    pd.testing.assert_frame_equal(
        ind._long_df(con, LONG_DF_SQL, {"n": n}), ind._df(con, LONG_DF_SQL, {"n": n})
    )


def test_suppliers_table_same_through_arrow(main, monkeypatch):
    for f in (Y2025, Y2025.with_(territory=None), Y2025.with_(basis="notified"), Filters.year(1990)):
        for search in (None, "dupont", "zzz"):
            got = ind.suppliers_table(main, f, search=search)
            monkeypatch.setattr(ind, "_long_df", ind._df)
            expected = ind.suppliers_table(main, f, search=search)
            monkeypatch.undo()
            pd.testing.assert_frame_equal(got, expected)


def test_top_suppliers_names_unreferenced_supplier_as_paid(main):
    """A supplier no referential names (E, name only) gets its name as written in the
    payments, read for the top keys only: the same as the per-line detail gives."""
    top = ind.top_suppliers(main, Y2025, n=10).set_index("supplier_key")
    table = ind.suppliers_table(main, Y2025).set_index("supplier_key")
    assert top.loc[E, "name"] and top.loc[E, "name"] == table.loc[E, "name"]
    main.execute("UPDATE supplier_class SET name = NULL WHERE supplier_key IN (?, ?)", [E, B])
    raw = dict(main.execute("SELECT supplier_key, min(supplier_name) FROM mandats GROUP BY 1").fetchall())
    top = ind.top_suppliers(main, Y2025, n=10).set_index("supplier_key")
    assert top.loc[E, "name"] == raw[E] and top.loc[B, "name"] == raw[B]
    assert top.loc[A, "name"] == table.loc[A, "name"]
    table = ind.suppliers_table(main, Y2025).set_index("supplier_key")
    assert top["name"].to_dict() == table.loc[top.index, "name"].to_dict()
    notified = Y2025.with_(basis="notified")
    nt = ind.top_suppliers(main, notified, n=10).set_index("supplier_key")
    assert (
        nt["name"].to_dict()
        == ind.suppliers_table(main, notified).set_index("supplier_key").loc[nt.index, "name"].to_dict()
    )


def test_supplier_history_equals_the_yearly_tables(main):
    whole = Y2025.with_(date_from=D(2020, 1, 1), date_to=D(2026, 12, 31))
    for basis in ("paid", "notified"):
        for key in (A, B, C, E):
            got = ind.supplier_history(main, whole.with_(basis=basis), key)
            expected = {}
            for y in range(2020, 2027):
                t = ind.suppliers_table(main, Filters.year(y).with_(basis=basis, territory=Y2025.territory))
                t = t[t["supplier_key"] == key]
                if len(t):
                    expected[y] = float(t["amount"].sum())
            assert dict(zip(got["year"], got["amount"])) == pytest.approx(expected), (basis, key)
    assert ind.supplier_history(main, whole, "NOM:PERSONNE").empty


def test_reconciliation(main):
    rec = ind.reconciliation(main, Y2025).set_index("contract_number")
    # "u-1" normalised to "U1" matches uid U1 (the standing version, 90 000 €)
    assert rec.loc["u-1", "contract_key"] == "U1"
    assert rec.loc["u-1", "notified"] == 90000 and rec.loc["u-1", "ratio"] == pytest.approx(1000 / 90000)
    # "LOT" matches the two lots sharing that id
    assert rec.loc["LOT", "contracts"] == 2 and rec.loc["LOT", "notified"] == 3000
    assert rec.loc["LOT", "paid"] == 400


def test_breakdowns_apply_the_same_filters(main):
    f = Y2025.with_(services=("Voirie",))
    assert ind.spend_by_departement(main, f)["amount"].sum() == pytest.approx(1900)
    assert ind.monthly_series(main, f)["amount"].sum() == pytest.approx(1900)
    assert ind.top_suppliers(main, f)["amount"].sum() == pytest.approx(1900)
    assert ind.suppliers_table(main, f)["amount"].sum() == pytest.approx(1900)


# ----------------------------------------------------------------------- JSON and the CLI

JSON_KEYS = [
    "basis",
    "period",
    "scope",
    "total_spend",
    "supplier_count",
    "local_share",
    "unlocated_share",
    "ess_share",
    "inclusive_share",
    "insertion_share",
    "disability_share",
    "sme_share",
    "sme_count_share",
    "new_supplier_share",
    "top10_share",
    "hhi",
    "median_distance_km",
    "contract_count",
    "social_clause_rate",
    "social_clause_rate_value",
    "environmental_clause_rate",
    "environmental_clause_rate_value",
    "reserved_contract_rate",
    "reserved_contract_rate_value",
    "single_offer_rate",
    "innovative_rate",
    "sme_advance_rate",
    "insertion_hours",
    "insertion_fte",
    "payment_delay_days",
    "payment_within_30_share",
    "env_2026_compliance_count",
    "coverage",
    "reasons",
    "previous",
    "delta",
    "spend_by_departement",
    "spend_by_region",
]


def test_headline_json_keys(main):
    d = ind.headline_json(main, Y2025)
    assert list(d) == JSON_KEYS
    assert d["basis"] == "paid" and d["period"] == {"from": "2025-01-01", "to": "2025-12-31"}
    assert d["scope"]["buyer"] is None
    assert d["scope"]["territory"]["kind"] == "dep" and d["scope"]["territory"]["codes"] == ["59"]
    assert d["scope"]["territory"]["label"]
    for key in ind.HEADLINE_KEYS:
        assert d[key] is None or type(d[key]) in (int, float), key
        assert key in d["delta"] and key in d["previous"]
    assert d["previous"]["period"] == {"from": "2024-01-01", "to": "2024-12-31"}
    assert d["spend_by_departement"][0] == {
        "code": "62",
        "name": "Pas-de-Calais",
        "amount": 3000.0,
        "share": pytest.approx(3000 / 5600),
    }
    assert {r["name"] for r in d["spend_by_region"]} >= {"Hauts-de-France", "Île-de-France"}
    json.dumps(d)  # plain JSON types only


def test_format_summary_is_french(main):
    text = ind.format_summary(ind.headline_json(main, Y2025))
    assert "Indicateurs du 01/01/2025 au 31/12/2025" in text
    assert "5 600 €" in text
    assert "34,7 %" in text  # local share 1700 / 4900
    assert "Nord" in text
    empty = ind.format_summary(ind.headline_json(main, Filters.year(2020)))
    assert "non disponible" in empty


def test_definitions_cover_every_key():
    units = {"eur", "share", "count", "days", "km", "hours", "fte", "index"}
    for key in ind.HEADLINE_KEYS:
        d = ind.DEFINITIONS[key]
        assert d["label"] and d["definition"] and d["unit"] in units, key
        assert d["source"] in ("mandats", "contrats", "suivi insertion"), key
    assert "10 000" in ind.DEFINITIONS["hhi"]["definition"]  # the [0, 1] scale is stated
    assert ind.describe("ess_share", "notified")["label"].endswith("(montant notifié)")
    assert ind.describe("ess_share", "notified")["source"] == "contrats"
    assert ind.describe("social_clause_rate", "notified") == ind.DEFINITIONS["social_clause_rate"]


def test_fmt_helpers():
    assert fmt_eur(1234567.4) == "1 234 567 €"
    assert fmt_pct(0.1234) == "12,3 %"
    assert fmt_int(1234567) == "1 234 567"
    assert fmt_date(D(2026, 11, 25)) == "25/11/2026" and fmt_date("2026-11-25") == "25/11/2026"
    assert fmt_points(0.012) == "+1,2 pt"
    assert fmt_pct(None) == "non disponible"
    assert fmt_value(12.34, "km") == "12,3 km"


def _cli(db, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "analytics", "--db", str(db), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_cli_indicators_json(con, db_path):
    build_main(con)
    con.close()
    out = _cli(db_path, "indicators", "--year", "2025", "--territory", "dep:59", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert list(d) == JSON_KEYS
    assert d["total_spend"] == 5600.0
    assert d["local_share"] == pytest.approx(1700 / 4900)
    assert d["contract_count"] == 4
    text = _cli(db_path, "indicators", "--year", "2025", "--territory", "dep:59")
    assert text.returncode == 0, text.stderr
    assert "5 600 €" in text.stdout
    # no --territory and no configured buyer: the local share is not computable, with its reason
    bare = _cli(db_path, "indicators", "--year", "2025", "--json")
    assert bare.returncode == 0, bare.stderr
    d = json.loads(bare.stdout)
    assert d["local_share"] is None and d["reasons"]["local_share"]
    assert d["scope"]["territory"] is None


def test_headlines_equal_one_headline_per_period(main):
    """The batched headlines (one statement per basis and buyer) give each period's headline."""
    periods = [
        Y2025,
        Y2025.previous_year(),
        Y2025.with_(date_from=D(2025, 3, 1), date_to=D(2025, 3, 31)),
        Y2025.with_(basis="notified"),
        Y2025.with_(buyer_siret=BUYER),
        Y2025.with_(supplier_classes=("ess",)),
        Y2025.with_(date_from=D(2019, 1, 1), date_to=D(2019, 12, 31)),  # no contract
        Y2025.with_(basis="notified", date_from=D(2024, 7, 1), date_to=D(2025, 6, 30)),
    ]
    many = ind.headlines(main, periods)
    assert len(many) == len(periods) and ind.headlines(main, []) == []
    for f, got in zip(periods, many):
        one = ind.headline(main, f)
        assert got.keys() == one.keys()
        for k in ind.HEADLINE_KEYS:
            assert got[k] == pytest.approx(one[k]) if one[k] is not None else got[k] is None, (f, k)
        assert got["reasons"] == one["reasons"] and got["period"] == one["period"]


@pytest.mark.parametrize(
    "base",
    [
        Y2025,
        Y2025.with_(supplier_classes=("ess", "local")),
        Y2025.with_(buyer_siret=BUYER),
        Filters.year(2025),
    ],
    ids=["dep59", "classes", "buyer", "no-territory"],
)
def test_light_headlines_of_whole_years_in_one_pass(main, base, monkeypatch):
    """Whole calendar years alike are computed in one statement by year
    (LIGHT_BY_YEAR_SQL): the same figures as each year's own light
    headline, a year without any spend (2019) and years out of order included."""
    from analytics import aggregates

    aggregates.rebuild(main)  # the lines of this database are written by hand
    assert aggregates.ready(main)
    years = [2025, 2019, 2024]
    periods = [base.with_(date_from=D(y, 1, 1), date_to=D(y, 12, 31)) for y in years]
    assert ind._whole_years_alike(periods)
    passes = []
    real = ind._light_by_year
    monkeypatch.setattr(ind, "_light_by_year", lambda *a: passes.append(1) or real(*a))
    many = ind.headlines(main, periods, light=True)
    assert passes == [1]
    assert many[1]["total_spend"] in (None, 0) and many[0]["total_spend"]
    for f, got in zip(periods, many):
        one = ind.headlines(main, [f], light=True)[0]
        for k in ind.HEADLINE_KEYS:
            assert got[k] == pytest.approx(one[k]) if one[k] is not None else got[k] is None, (f, k)
        assert got["reasons"] == one["reasons"] and got["coverage"] == one["coverage"]
    assert passes == [1]  # a single period takes the block path
    assert not ind._whole_years_alike(periods + [base.with_(date_from=D(2025, 1, 1), date_to=D(2025, 6, 30))])
    assert not ind._whole_years_alike(periods + [periods[0].with_(supplier_classes=("pme",))])


def test_light_headlines_skip_only_the_ranking_keys(main):
    periods = [Y2025, Y2025.previous_year(), Y2025.with_(basis="notified")]
    full = ind.headlines(main, periods)
    light = ind.headlines(main, periods, light=True)
    for a, b in zip(full, light):
        for k in ind.HEADLINE_KEYS:
            if k in ind.LIGHT_SKIPPED:
                assert b[k] is None and "Non calculé" in b["reasons"][k]
            elif a[k] is None:
                assert b[k] is None and b["reasons"][k] == a["reasons"][k], k
            else:
                assert b[k] == pytest.approx(a[k]), k

"""The levers, each rule on a small hand-built case."""

import datetime as dt

import pytest

from analytics import levers
from analytics.filters import Filters, Territory

# a small commune with no shipped SIAE, so only the structures inserted here count
NORD = Territory("com", ("59001",))


def _contract(con, key, *, notified, months, amount, cpv="90", objet="Objet", buyer="22590001801244"):
    end = levers._add_months(notified, months)
    con.execute(
        "INSERT INTO contracts (import_id, seq, contract_key, id, buyer_siret, objet, cpv, cpv_division,"
        " date_notification, date_publication, duration_months, end_date, amount, holder_count)"
        " VALUES (1, $seq, $k, $k, $b, $o, $cpv || '000000', $cpv, $n, $n, $m, $e, $a, 1)",
        {
            "seq": abs(hash(key)) % 10_000,
            "k": key,
            "b": buyer,
            "o": objet,
            "cpv": cpv,
            "n": notified,
            "m": months,
            "e": end,
            "a": amount,
        },
    )


def _structures(con, n, *, naf="81.21Z", kind="ACI", commune="59001"):
    for i in range(n):
        con.execute(
            "INSERT INTO structures (import_id, siret, name, kind, family, commune_code, naf)"
            " VALUES (1, $s, $n, $k, 'insertion', $c, $naf)",
            {"s": f"9{i:013d}", "n": f"S{i}", "k": kind, "c": commune, "naf": naf},
        )


def test_renewal_in_five_months_is_in_the_six_month_list(con):
    as_of = dt.date(2026, 11, 25)
    # ends 2027-04-25: 5 months ahead
    _contract(con, "A", notified=dt.date(2025, 4, 25), months=24, amount=100_000)
    # ends 2027-10-25: 11 months ahead
    _contract(con, "B", notified=dt.date(2025, 10, 25), months=24, amount=100_000)
    # ended already
    _contract(con, "C", notified=dt.date(2024, 1, 1), months=12, amount=100_000)
    df = levers.renewals(con, Filters.year(2025, territory=NORD), as_of=as_of)
    got = dict(zip(df["contract_id"], df["horizon"]))
    assert got == {"A": 6, "B": 12}


def test_renewal_counts_matching_structures_of_the_territory(con):
    _structures(con, 3, naf="81.21Z")  # cleaning → CPV 90
    _structures(con, 2, naf="62.01Z")  # IT: not CPV 90
    _contract(con, "A", notified=dt.date(2025, 4, 25), months=24, amount=100_000, cpv="90")
    df = levers.renewals(con, Filters.year(2025, territory=NORD), as_of=dt.date(2026, 11, 25))
    assert int(df.loc[0, "inclusive_structures"]) == 3


@pytest.mark.parametrize(
    "n,spend,expected",
    [
        (6, 600_000, "marché réservé"),  # 100 000 € per structure ≤ 300 000
        (6, 6_000_000, "lot réservé"),  # 1 M€ per structure: too much to absorb
        (2, 100_000, "lot réservé"),
        (1, 100_000, "clause sociale"),
        (0, 100_000, "aucune"),
    ],
)
def test_reservation_rule(n, spend, expected):
    rec, rule = levers.ReservationRules().recommend(n, spend)
    assert rec == expected and rule


def test_reservation_per_category_from_the_data(con):
    _structures(con, 6, naf="81.21Z")
    _contract(con, "A", notified=dt.date(2025, 3, 1), months=12, amount=600_000, cpv="90")
    _contract(con, "B", notified=dt.date(2025, 3, 1), months=12, amount=50_000, cpv="72")
    df = levers.reservation(con, Filters.year(2025, territory=NORD)).set_index("cpv_division")
    assert df.loc["90", "inclusive_structures"] == 6
    assert df.loc["90", "recommendation"] == "marché réservé"
    assert df.loc["72", "recommendation"] == "aucune"


def _mandat(con, key, supplier, amount_ht, nature="611"):
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_identified,"
        " amount, amount_basis, amount_ht, nature) VALUES (1, $k, DATE '2025-05-01', $s, true, $a, 'HT', $a, $n)",
        {"k": key, "s": supplier, "a": amount_ht, "n": nature},
    )


def test_threshold_split_at_exactly_40000(con):
    # supplier X: two lines of 20 000 € HT → one purchase of exactly 40 000 € → not under
    _mandat(con, "1", "X", 20_000)
    _mandat(con, "2", "X", 20_000)
    # supplier Y: 39 999.99 € HT → under
    _mandat(con, "3", "Y", 39_999.99)
    con.execute(
        "INSERT INTO supplier_class (supplier_key, identified, commune_code, ess) VALUES"
        " ('X', true, '59001', false), ('Y', true, '59001', true)"
    )
    d = levers.opportunities(con, Filters.year(2025, territory=NORD), as_of=dt.date(2026, 11, 25))
    assert d["under_40k"]["spend"] == pytest.approx(39_999.99)
    assert d["over_40k"]["spend"] == pytest.approx(40_000)
    assert d["under_40k"]["ess_share"] == pytest.approx(1.0)
    assert d["over_40k"]["ess_share"] == pytest.approx(0.0)
    assert d["under_40k"]["local_share"] == pytest.approx(1.0)
    assert set(d) >= {"renewals", "reservation", "under_40k", "over_40k", "lots"}
    assert set(d["lots"]) >= {"contracts_with_lots_share", "single_lot_large"}


def test_purchases_are_contract_numbers_else_supplier_nature_and_year(con):
    """A purchase is a contract number (whatever its suppliers and natures), else one
    supplier × nature × year; it is under the threshold when its whole amount excl. VAT is."""
    rows = [  # key, date, supplier, amount excl. VAT, nature, contract number
        ("1", "2025-02-01", "X", 30_000, "611", " M-1 "),  # M-1: 30 000 + 15 000 → one purchase of 45 000
        ("2", "2025-03-01", "Y", 15_000, "615", "M-1"),
        ("3", "2025-04-01", "X", 25_000, "611", None),  # X × 611: 25 000 + 20 000 → 45 000, over
        ("4", "2025-05-01", "X", 20_000, "611", ""),
        ("5", "2025-05-01", "X", 10_000, "615", None),  # X × 615: 10 000, under
        ("6", "2025-06-01", "Z", 5_000, None, None),  # Z without nature: 5 000 + 4 000 → 9 000, under
        ("7", "2025-07-01", "Z", 4_000, None, "  "),
    ]
    for key, day, supplier, amount, nature, number in rows:
        con.execute(
            "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_identified,"
            " amount, amount_basis, amount_ht, nature, contract_number)"
            " VALUES (1, $k, $d::DATE, $s, true, $a, 'HT', $a, $n, $c)",
            {"k": key, "d": day, "s": supplier, "a": amount, "n": nature, "c": number},
        )
    got = levers.purchases_by_threshold(con, Filters.year(2025)).set_index(["side", "category"])
    assert got["purchases"].to_dict() == {
        ("over", "611"): 2,  # M-1 and X × 611
        ("over", "615"): 1,  # M-1 again, in its other category
        ("under", "615"): 1,
        ("under", "?"): 1,
    }
    assert got["spend"].to_dict() == {
        ("over", "611"): 75_000,
        ("over", "615"): 15_000,
        ("under", "615"): 10_000,
        ("under", "?"): 9_000,
    }


def test_lots_detected_by_shared_object_and_date(con):
    day = dt.date(2025, 6, 1)
    _contract(con, "L1", notified=day, months=12, amount=100_000, objet="Entretien des espaces verts - lot 1")
    _contract(con, "L2", notified=day, months=12, amount=100_000, objet="Entretien des espaces verts - lot 2")
    _contract(con, "S", notified=day, months=12, amount=900_000, objet="Nettoyage des collèges", cpv="90")
    _structures(con, 1, naf="81.21Z")
    out = levers.lots(con, Filters.year(2025, territory=NORD))
    assert out["contracts_with_lots_share"] == pytest.approx(2 / 3)
    assert list(out["single_lot_large"]["contract_id"]) == ["S"]

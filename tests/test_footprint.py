"""Economic and carbon footprint: the IO arithmetic by hand, the shipped tables, the API."""

from __future__ import annotations

import datetime as dt
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from analytics import footprint as fp
from analytics.filters import Filters, Territory

# ---------------------------------------------------------------------------------------
# Leontief, by hand


def test_leontief_three_sectors_by_hand():
    # A textbook 3-sector economy.
    a = np.array([[0.2, 0.3, 0.2], [0.4, 0.1, 0.2], [0.1, 0.3, 0.2]])
    # I − A = [[0.8, −0.3, −0.2], [−0.4, 0.9, −0.2], [−0.1, −0.3, 0.8]]
    # det = 0.8·(0.72 − 0.06) − 0.3·(0.32 + 0.02) − 0.2·(0.12 + 0.09)
    #     = 0.528 − 0.102 − 0.042 = 0.384
    # cofactors, row by row: (0.66, 0.34, 0.21), (0.30, 0.62, 0.27), (0.24, 0.24, 0.60)
    # L = adj/det, so the column sums of L (output multipliers) are the cofactor row sums / det:
    #   1.21/0.384 = 3.15104…, 1.19/0.384 = 3.09896…, 1.08/0.384 = 2.8125
    lmat = fp.leontief(a)
    assert lmat[0, 0] == pytest.approx(0.66 / 0.384)
    assert lmat[1, 0] == pytest.approx(0.34 / 0.384)
    assert lmat[0, 2] == pytest.approx(0.24 / 0.384)
    assert fp.output_multipliers(a) == pytest.approx([1.21 / 0.384, 1.19 / 0.384, 1.08 / 0.384])
    # Jobs: e = (10, 5, 2) jobs per unit of output, final demand 1 on sector 3 only.
    # direct = 2 ; indirect = e·(L − I)[:, 3] = (10·0.24 + 5·0.24 + 2·(0.60 − 0.384)) / 0.384
    #        = (2.4 + 1.2 + 0.432) / 0.384 = 10.5
    eff = fp.jobs_effects(a, [10, 5, 2], [0, 0, 1])
    assert eff["direct"].sum() == pytest.approx(2.0)
    assert eff["indirect"].sum() == pytest.approx(10.5)
    assert eff["induced"] is None


def test_industry_technology_coefficients_by_hand():
    # 2 products × 2 branches. Branch 1 makes 90 of product 1 and 10 of product 2
    # (secondary output); branch 2 makes 100 of product 2.
    supply = np.array([[90.0, 0.0], [10.0, 100.0]])  # product × branch
    inter = np.array([[18.0, 22.0], [9.0, 33.0]])  # product used by branch
    # g = (100, 100) branch output ; q = (90, 110) product output
    # B = U·diag(g)⁻¹ = [[0.18, 0.22], [0.09, 0.33]]
    # D = V·diag(q)⁻¹ with V = supplyᵀ = [[90, 10], [0, 100]] → [[1, 10/110], [0, 100/110]]
    # A = D·B = [[0.18 + 0.09/11, 0.22 + 0.33/11], [0.9/11, 3.3/11]]
    a = fp.technical_coefficients(supply, inter)
    assert a == pytest.approx(np.array([[0.18 + 0.09 / 11, 0.22 + 0.03], [0.9 / 11, 0.3]]))
    # columns of A still sum to the input share of each branch: 27/100 and 55/100
    assert a.sum(axis=0) == pytest.approx([0.27, 0.55])


def test_closed_model_adds_induced_jobs():
    a = np.array([[0.1, 0.2], [0.3, 0.1]])
    e, f = np.array([8.0, 4.0]), np.array([1.0, 0.0])
    open_ = fp.jobs_effects(a, e, f)
    closed = fp.jobs_effects(a, e, f, wage_row=[0.3, 0.4], consumption_col=[0.25, 0.25])
    assert closed["induced"].sum() > 0
    # type-II inverse restricted to industries ≥ type-I inverse, element by element
    lbar = fp.closed_inverse(a, np.array([0.3, 0.4]), np.array([0.25, 0.25]))
    assert np.all(lbar[:2, :2] >= fp.leontief(a) - 1e-12)
    assert closed["indirect"].sum() == pytest.approx(open_["indirect"].sum())


# ---------------------------------------------------------------------------------------
# FLQ


def test_flq_known_values():
    # national employment (100, 300), regional (10, 10): Eʳ/Eⁿ = 20/400 = 0.05
    # SLQ = ((10/20)/(100/400), (10/20)/(300/400)) = (2, 2/3)
    # λ(δ = 0.3) = log2(1.05)^0.3 = 0.0703893^0.3 = 0.451080…
    lam = fp.flegg_lambda(0.05, 0.3)
    assert lam == pytest.approx(math.log2(1.05) ** 0.3)
    assert lam == pytest.approx(0.45108, abs=1e-5)
    m = fp.flq([10, 10], [100, 300], 0.3)
    assert m[0, 1] == 1.0  # CILQ = 2/(2/3) = 3 → 3λ = 1.35, capped at 1
    assert m[1, 0] == pytest.approx(lam / 3)  # CILQ = 1/3
    assert m[0, 0] == pytest.approx(min(1, 2 * lam))  # diagonal: λ·SLQ
    assert m[1, 1] == pytest.approx(2 / 3 * lam)
    # SLQ = 1 everywhere (population proxy): FLQ = λ in every cell
    assert fp.flq([5, 15], [100, 300], 0.3) == pytest.approx(np.full((2, 2), lam))
    # a larger δ means a smaller λ
    assert fp.flegg_lambda(0.05, 0.4) < fp.flegg_lambda(0.05, 0.3) < fp.flegg_lambda(0.05, 0.1)
    with pytest.raises(ValueError):
        fp.flegg_lambda(0, 0.3)


# ---------------------------------------------------------------------------------------
# Shipped tables


@pytest.fixture(scope="module")
def model():
    return fp.load_model(fp.IO_DIR)


@pytest.mark.parametrize(
    "naf,branch",
    [
        ("62.01Z", "JC"),  # programming: J62 → JC (not JB, which is J61 telecoms)
        ("6201Z", "JC"),
        ("61.10Z", "JB"),
        ("58.29C", "JA"),
        ("42.11Z", "FZ"),
        ("43.21A", "FZ"),
        ("81.21Z", "NZ"),
        ("56.29A", "IZ"),
        ("86.10Z", "QA"),
        ("88.99B", "QB"),
        ("71.12B", "MA"),
        ("35.11Z", "DZ"),
        ("38.11Z", "EZ"),
        ("01.11Z", "AZ"),
        (None, None),
        ("", None),
    ],
)
def test_naf_to_a38(model, naf, branch):
    assert fp.naf_to_a38(naf, model) == branch


def test_every_naf_division_maps_to_a_branch(model):
    assert len(model.naf_division) == 87
    assert set(model.naf_division.values()) <= set(model.branches)
    assert len(model.branches) == 37


@pytest.mark.parametrize(
    "cpv,branch",
    [
        ("45233140-2", "FZ"),
        ("90910000", "NZ"),  # cleaning (N81.2) overrides division 90
        ("90511000", "EZ"),
        ("72000000", "JC"),
        ("55523100", "IZ"),
        ("85311000", "QB"),
        ("85100000", "QA"),
        ("79341000", "MC"),
        ("79100000", "MA"),
        ("09310000", "DZ"),
        ("09134100", "CD"),
        ("99999999", None),
        (None, None),
    ],
)
def test_cpv_to_a38(model, cpv, branch):
    assert fp.cpv_to_a38(cpv, model) == branch


def test_type_i_output_multipliers_2019_plausible(model):
    m19 = fp.load_model(fp.IO_DIR, 2019)
    mult = pd.Series(m19.tables[2019].multipliers, index=m19.branches)
    # TZ (households as employers) has no intermediate consumption: multiplier 1 by construction
    assert mult["TZ"] == pytest.approx(1.0)
    rest = mult.drop("TZ")
    assert 1.2 <= rest.min() and rest.max() <= 2.15
    assert rest.idxmin() in {"QB", "LZ", "PZ"} and rest.idxmax() == "CA"
    # cross-check against the data README: the product-by-product model B·D gives 1.25 (QB) – 2.09 (CA)
    s = pd.read_csv(fp.IO_DIR / "tes_dom_A38_2019_supply.csv", index_col=0).loc[
        list(m19.branches), list(m19.branches)
    ]
    u = pd.read_csv(fp.IO_DIR / "tes_dom_A38_2019_intermediate.csv", index_col=0)
    u = u.loc[list(m19.branches), list(m19.branches)]
    g, q = s.to_numpy().sum(axis=0), s.to_numpy().sum(axis=1)
    b = u.to_numpy() / np.where(g > 0, g, 1)
    d = s.to_numpy().T / np.where(q > 0, q, 1)
    pp = pd.Series(fp.output_multipliers(b @ d), index=m19.branches).drop("TZ")
    assert round(pp.min(), 2) == 1.25 and pp.idxmin() == "QB"
    assert round(pp.max(), 2) == 2.09 and pp.idxmax() == "CA"
    for year, table in model.tables.items():
        assert 1.2 <= np.delete(table.multipliers, model.index("TZ")).min(), year


def test_jobs_coefficients_add_up_and_match_benchmarks(model):
    jobs = pd.read_csv(fp.IO_DIR / "jobs_a38.csv").set_index("branch")
    total = (jobs["jobs_per_meur"] * jobs["output_2015_meur"]).sum() / 1000
    assert total == pytest.approx(27390.9, rel=1e-3)  # ThreeME 2015 Labor, thousand persons
    # economy-wide direct average 7.11 persons per M€ of output (5_benchmarks)
    assert total / jobs["output_2015_meur"].sum() * 1000 == pytest.approx(7.11, abs=0.01)
    fz = model.index("FZ")
    e = model.jobs_per_eur * 1e6
    # public works: 7.05 direct job-years per M€ HT on site (1998/2007 instruction)
    assert 5.5 <= e[fz] <= 8.5
    # direct + suppliers: FNTP ≈ 8 ; instruction 7.05 + 0.7 + 1.06 × 7.05 ≈ 15
    type_i = (e @ fp.leontief(model.table.a))[fz]
    assert 8 <= type_i <= 16
    # BIPE 2005: ≈ 1 indirect job per direct job in construction
    assert 0.6 <= (type_i - e[fz]) / e[fz] <= 1.2


def test_carbon_intensities_and_fallbacks(model):
    assert fp.carbon_intensity("62.01Z", model) == ((48.0, 37.0, 51.0), "naf")
    (central, low, high), level = fp.carbon_intensity("42.11Z", model)
    assert central == 182 and low <= central <= high and level == "naf"
    # a classe without its sous-classe letter falls back on the division mean
    (c62, _, _), level = fp.carbon_intensity("62.01", model)
    assert level == "division" and 40 < c62 < 60
    # no NAF but a branch (from the CPV): the branch mean
    (cfz, _, _), level = fp.carbon_intensity(None, model, branch="FZ")
    assert level == "branche" and 100 < cfz < 250
    assert fp.carbon_intensity("99.00Z", model) == (None, None)


def test_shipped_data_is_small():
    size = sum(p.stat().st_size for p in fp.IO_DIR.iterdir() if p.is_file())
    assert size < 1_000_000


# ---------------------------------------------------------------------------------------
# The footprint of a small synthetic database

SUPPLIERS = [
    # key, name, naf, département, région
    ("11111111100011", "Routes du Nord", "42.11Z", "59", "32"),
    ("22222222200022", "Info Conseil", "62.01Z", "75", "11"),
    ("33333333300033", "Propreté Lille", "81.21Z", "59", "32"),
    ("44444444400044", "Restauration 62", "56.29A", "62", "32"),
    ("NOM:SANS NAF", "Sans NAF", None, None, None),
]


def _insert_suppliers(con, suppliers=SUPPLIERS):
    for key, name, naf, dep, reg in suppliers:
        con.execute(
            "INSERT INTO supplier_class (supplier_key, name, naf, departement_code, region_code, identified) "
            "VALUES ($k, $n, $naf, $dep, $reg, $id)",
            {"k": key, "n": name, "naf": naf, "dep": dep, "reg": reg, "id": not key.startswith("NOM:")},
        )


def _insert_mandat(con, n, key, amount, basis="HT", ht=None, date=dt.date(2024, 3, 15)):
    con.execute(
        "INSERT INTO mandats (import_id, natural_key, spend_date, supplier_key, supplier_identified, "
        "amount, amount_basis, amount_ht) VALUES (1, $nk, $d, $k, TRUE, $a, $b, $ht)",
        {"nk": f"m{n}", "d": date, "k": key, "a": amount, "b": basis, "ht": ht},
    )


@pytest.fixture
def demo_con(con):
    """Public works 600 k€, cleaning 150 k€ HT (180 k€ TTC), IT 100 k€, catering 100 k€,
    and 20 k€ to a supplier without NAF nor location."""
    _insert_suppliers(con)
    _insert_mandat(con, 1, "11111111100011", 400000, ht=400000)
    _insert_mandat(con, 2, "11111111100011", 200000, ht=200000)
    _insert_mandat(con, 3, "33333333300033", 180000, basis="TTC")  # no HT: 180 000 / 1.2
    _insert_mandat(con, 4, "22222222200022", 100000, ht=100000)
    _insert_mandat(con, 5, "44444444400044", 100000, ht=100000)
    _insert_mandat(con, 6, "NOM:SANS NAF", 20000, ht=20000)
    _insert_mandat(con, 7, "22222222200022", 999999, ht=999999, date=dt.date(2023, 12, 31))  # other year
    return con


REQUIRED = {
    "jobs_direct",
    "jobs_indirect",
    "jobs_induced",
    "carbon_tco2e",
    "spend",
    "by_branch",
    "by_departement",
    "method",
    "data_years",
    "jobs_per_million",
    "coverage",
    "reasons",
}


def test_footprint_json_keys(demo_con):
    d = fp.footprint_json(demo_con, Filters.year(2024, territory=Territory.parse("dep:59")))
    assert REQUIRED <= set(d)
    for key in ("jobs_direct", "jobs_indirect", "jobs_induced", "carbon_tco2e"):
        assert set(d[key]) == {"low", "central", "high"}
        assert d[key]["low"] <= d[key]["central"] <= d[key]["high"]
    for row in d["by_branch"]:
        assert {"branch", "label", "spend", "jobs_direct", "jobs_indirect", "carbon_tco2e"} <= set(row)
    for row in d["by_departement"]:
        assert {"code", "name", "spend", "jobs_direct"} <= set(row)
    assert (
        d["data_years"]["tes"] == 2019
        and d["data_years"]["jobs"] == 2015
        and d["data_years"]["carbon"] == 2022
    )
    assert isinstance(d["method"], str) and "FLQ" in d["method"] and "spend-based" in d["method"]
    import json

    json.dumps(d)  # plain JSON
    text = fp.format_summary(d)
    assert "Emplois soutenus dans le territoire" in text and "tCO2e" in text


def test_spend_basis_vat_leak_and_departements(demo_con):
    d = fp.footprint_json(demo_con, Filters.year(2024, territory=Territory.parse("dep:59")))
    s = d["spend"]
    # 600 000 + 150 000 + 100 000 + 100 000 + 20 000 (the 2023 mandat is outside the period)
    assert s["total"] == pytest.approx(970000)
    assert s["vat_estimated"] == pytest.approx(150000)
    assert s["local"] == pytest.approx(750000)  # works + cleaning, both in the Nord
    assert s["leak"] == pytest.approx(200000)  # IT in Paris, catering in the Pas-de-Calais
    assert s["unlocated"] == pytest.approx(20000)
    assert s["unclassified"] == pytest.approx(20000)
    deps = {r["code"]: r for r in d["by_departement"]}
    # direct jobs by supplier département: Nord = 0.6 × e_FZ + 0.15 × e_NZ (per M€)
    jobs = pd.read_csv(fp.IO_DIR / "jobs_a38.csv").set_index("branch")["jobs_per_meur"]
    assert deps["59"]["jobs_direct"] == pytest.approx(0.6 * jobs["FZ"] + 0.15 * jobs["NZ"], abs=0.01)
    assert deps["75"]["jobs_direct"] == pytest.approx(0.1 * jobs["JC"], abs=0.01)
    assert deps["59"]["in_territory"] is True and deps["75"]["in_territory"] is False
    assert deps[None]["name"] == "Non localisé"
    # local direct jobs = the Nord's direct jobs (all local spend is classified)
    assert d["jobs_direct"]["central"] == pytest.approx(deps["59"]["jobs_direct"], abs=0.05)
    # leakage: fewer jobs in the territory than in France
    assert d["jobs_indirect"]["central"] < d["national"]["jobs_indirect"]["central"]
    assert d["parameters"]["lambda"]["central"] == pytest.approx(
        fp.flegg_lambda(d["parameters"]["territory_share"], 0.3), abs=1e-4
    )


def test_supplier_class_filter(demo_con):
    """The sidebar's supplier classes apply: ESS suppliers only, or local ones (the class
    query used to name an alias it did not declare, and failed)."""
    demo_con.execute("UPDATE supplier_class SET ess = (supplier_key = '33333333300033')")
    t = Territory.parse("dep:59")
    ess = fp.footprint_json(demo_con, Filters.year(2024, territory=t).with_(supplier_classes=("ess",)))
    assert ess["spend"]["total"] == pytest.approx(150000)  # cleaning only, HT
    local = fp.footprint_json(demo_con, Filters.year(2024, territory=t).with_(supplier_classes=("local",)))
    assert local["spend"]["total"] == pytest.approx(750000)  # works + cleaning, in the Nord


def test_jobs_per_million_plausible(demo_con):
    d = fp.footprint_json(demo_con, Filters.year(2024))
    assert d["scope"] == "national"
    jpm = d["jobs_per_million"]["national"]
    # a few to about fifteen job-years per M€
    assert 5 <= jpm["direct"]["central"] <= 10
    assert 8 <= jpm["direct_indirect"]["central"] <= 15
    assert jpm["direct_indirect"]["central"] < jpm["total"]["central"] <= 20
    assert d["jobs_induced"]["central"] > 0
    n = d["jobs_direct"]["central"] + d["jobs_indirect"]["central"]
    assert n == pytest.approx(jpm["direct_indirect"]["central"] * 0.97, abs=0.2)


def test_carbon_sum_by_hand(con):
    # 100 000 € HT to 62.01Z (48 g/€) and 50 000 € HT to 42.11Z (182 g/€):
    # 100 000 × 48 + 50 000 × 182 = 4 800 000 + 9 100 000 g = 13.9 tCO2e
    _insert_suppliers(con, SUPPLIERS[:2])
    _insert_mandat(con, 1, "22222222200022", 100000, ht=100000)
    _insert_mandat(con, 2, "11111111100011", 60000, basis="TTC")  # 60 000 TTC → 50 000 HT
    d = fp.footprint_json(con, Filters.year(2024))
    assert d["carbon_tco2e"]["central"] == pytest.approx(13.9)
    top = d["carbon_top_suppliers"]
    assert top[0]["name"] == "Routes du Nord" and top[0]["carbon_tco2e"] == pytest.approx(9.1)
    assert {r["category"] for r in d["carbon_by_category"]} == {"NAF 62", "NAF 42"}
    # by_branch carbon adds up
    assert sum(r["carbon_tco2e"] for r in d["by_branch"]) == pytest.approx(13.9)


def test_top_emitters_same_from_one_row_or_several_per_supplier():
    """The paid basis gives one row per supplier (no grouping), the notified basis one per
    supplier and CPV (grouped): the same suppliers give the same top emitters, ties
    ordered by supplier key."""
    rows = pd.DataFrame(
        {
            "supplier_key": ["C", "A", "B", "D"],
            "name": ["Gamma", "Alpha", None, "Delta"],
            "naf": ["42.11Z", "62.01Z", "62.01Z", None],
            "cpv": [None, None, None, "45000000"],
            "branch_source": ["naf", "naf", "naf", "cpv"],
            "carbon_level": ["naf", "naf", "naf", "branche"],
            "spend": [1000.0, 2000.0, 2000.0, 500.0],
            "ci_central": [100.0, 50.0, 50.0, np.nan],
            "ci_low": [80.0, 40.0, 40.0, np.nan],
            "ci_high": [120.0, 60.0, 60.0, np.nan],
        }
    )
    one = fp._carbon(rows)
    halves = pd.concat([rows.assign(spend=rows["spend"] / 2)] * 2, ignore_index=True)
    several = fp._carbon(halves.sample(frac=1, random_state=3).reset_index(drop=True))
    assert one["by_supplier"]["supplier_key"].tolist() == ["A", "B", "C", "D"]
    pd.testing.assert_frame_equal(one["by_supplier"], several["by_supplier"])
    pd.testing.assert_frame_equal(one["by_category"], several["by_category"])


def test_top_emitters_among_many_suppliers_with_ties():
    """Over TOP_EMITTERS suppliers, the top emitters are the first rows of the whole list
    sorted by carbon then supplier key, ties at the boundary included."""
    n = 60
    rows = pd.DataFrame(
        {
            "supplier_key": [f"S{i:03d}" for i in range(n)][::-1],
            "name": [f"Fournisseur {i}" for i in range(n)],
            "naf": ["62.01Z"] * n,
            "cpv": [None] * n,
            "branch_source": ["naf"] * n,
            "carbon_level": ["naf"] * n,
            "spend": [1000.0 * (1 + i % 7) for i in range(n)],  # seven values: many ties
            "ci_central": [50.0] * (n - 3) + [np.nan] * 3,
            "ci_low": [40.0] * (n - 3) + [np.nan] * 3,
            "ci_high": [60.0] * (n - 3) + [np.nan] * 3,
        }
    )
    got = fp._carbon(rows)["by_supplier"]
    carbon = rows["spend"] * np.where(rows["ci_central"].notna(), rows["ci_central"], 50.0) / 1e6
    expected = (
        rows.assign(carbon_tco2e=carbon)
        .sort_values(["carbon_tco2e", "supplier_key"], ascending=[False, True])
        .head(fp.TOP_EMITTERS)
    )
    assert len(got) == fp.TOP_EMITTERS
    assert got["supplier_key"].tolist() == expected["supplier_key"].tolist()


def test_notified_basis_splits_holders_and_uses_cpv(con):
    _insert_suppliers(con, SUPPLIERS[:1])
    con.execute(
        "INSERT INTO contracts (import_id, seq, contract_key, cpv, cpv_division, date_notification, amount, "
        "holder_count) VALUES (1, 1, 'C1', '45233140', '45', DATE '2024-05-01', 1000000, 2), "
        "(1, 2, 'C2', '90910000', '90', DATE '2024-06-01', 200000, 1)"
    )
    con.execute(
        "INSERT INTO contract_holders (import_id, seq, contract_key, holder_rank, holder_siret, holder_name, "
        "departement_code) VALUES (1, 1, 'C1', 1, '11111111100011', 'Routes du Nord', NULL), "
        "(1, 1, 'C1', 2, '55555555500055', 'Routes SA', '62'), (1, 2, 'C2', 1, NULL, 'Nettoyage', '59')"
    )
    d = fp.footprint_json(con, Filters.year(2024, basis="notified", territory=Territory.parse("dep:59")))
    s = d["spend"]
    assert s["total"] == pytest.approx(1200000)
    assert s["local"] == pytest.approx(700000)  # 500 000 (Routes du Nord) + 200 000 (holder's own dep 59)
    assert s["leak"] == pytest.approx(500000)
    assert d["coverage"]["branch_from_naf"] == pytest.approx(500000)
    assert d["coverage"]["branch_from_cpv"] == pytest.approx(700000)
    branches = {r["branch"]: r["spend"] for r in d["by_branch"]}
    assert branches == {"FZ": 1000000, "NZ": 200000}
    assert "notifié" in d["method"]


def test_empty_period(con):
    d = fp.footprint_json(con, Filters.year(2024))
    assert d["spend"]["total"] == 0
    # nothing spent: no estimate (null with a reason), never a default 0
    assert d["jobs_direct"] is None and d["carbon_tco2e"] is None
    assert "Aucune dépense" in d["reasons"]["jobs_direct"]
    assert d["by_branch"] == [] and d["by_departement"] == []


# ---------------------------------------------------------------------------------------
# Replaceable tables


def test_user_tables_replace_shipped_ones(demo_con, tmp_path, monkeypatch):
    io = tmp_path / "io"
    shutil.copytree(fp.IO_DIR, io)
    jobs = pd.read_csv(io / "jobs_a38.csv")
    jobs.loc[jobs["branch"] == "FZ", "jobs_per_meur"] *= 2
    jobs = jobs.drop(columns=["wages_per_eur"])
    jobs.to_csv(io / "jobs_a38.csv", index=False)
    # an ADEME-style table keyed by NAF division only
    pd.DataFrame({"naf": ["42", "62"], "central": [300, 100], "low": [250, 80], "high": [400, 150]}).to_csv(
        io / "carbon_naf.csv", index=False
    )
    f = Filters.year(2024)
    base = fp.footprint_json(demo_con, f)
    mine = fp.footprint_json(demo_con, f, io_dir=io, year=2017)
    fz = {r["branch"]: r for r in base["by_branch"]}["FZ"]
    fz2 = {r["branch"]: r for r in mine["by_branch"]}["FZ"]
    assert fz2["jobs_direct"] == pytest.approx(2 * fz["jobs_direct"], abs=0.02)
    assert mine["data_years"]["tes"] == 2017
    assert mine["jobs_induced"] is None and "jobs_induced" in mine["reasons"]
    assert fz2["carbon_tco2e"] == pytest.approx(0.6 * 300)  # 600 000 € × 300 g/€
    # the environment variable points the whole engine at the user's folder
    monkeypatch.setenv("EMPREINTE_IO_DIR", str(io))
    assert fp.load_model().io_dir == io.resolve()
    # a newer year dropped in the folder becomes the default central year
    for part in ("supply", "intermediate", "final_uses"):
        shutil.copyfile(io / f"tes_dom_A38_2019_{part}.csv", io / f"tes_dom_A38_2021_{part}.csv")
    assert fp.available_years(io)[-1] == 2021
    assert fp.load_model(io).year == 2021


def test_delta_parameter_moves_local_indirect_jobs(demo_con):
    f = Filters.year(2024, territory=Territory.parse("dep:59"))
    lo = fp.footprint_json(demo_con, f, delta=0.4)["jobs_indirect"]["central"]
    hi = fp.footprint_json(demo_con, f, delta=0.1)["jobs_indirect"]["central"]
    assert lo < hi
    with pytest.raises(ValueError):
        fp.footprint(demo_con, f, delta=2)

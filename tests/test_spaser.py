"""SPASER trajectories and statuses, computed by hand."""

import datetime as dt

import pandas as pd
import pytest

from analytics import indicators, spaser
from analytics.filters import Filters


def test_trajectory_linear_from_base_to_target():
    # base 2023 at 20 %, target 2026 at 50 %: +10 points a year
    pts = [(2023, 0.20), (2026, 0.50)]
    assert spaser.trajectory_value(pts, 2022) is None
    assert spaser.trajectory_value(pts, 2023) == pytest.approx(0.20)
    assert spaser.trajectory_value(pts, 2024) == pytest.approx(0.30)
    assert spaser.trajectory_value(pts, 2025) == pytest.approx(0.40)
    assert spaser.trajectory_value(pts, 2027) == pytest.approx(0.50)


def test_trajectory_through_milestones():
    # milestones entered by the buyer: 2024 → 30 %, 2025 → 30 %, 2026 → 60 %
    pts = [(2023, 0.10), (2024, 0.30), (2025, 0.30), (2026, 0.60)]
    assert spaser.trajectory_value(pts, 2024) == pytest.approx(0.30)
    assert spaser.trajectory_value(pts, 2025) == pytest.approx(0.30)
    assert spaser.trajectory_value(pts, 2026) == pytest.approx(0.60)


@pytest.mark.parametrize(
    "actual,traj,target,expected",
    [
        (None, 0.3, 0.5, "non disponible"),
        (0.55, 0.3, 0.5, "atteint"),
        (0.50, 0.3, 0.5, "atteint"),
        (0.35, 0.3, 0.5, "en avance"),
        (0.30, 0.3, 0.5, "en avance"),
        (0.25, 0.3, 0.5, "en retard"),
        (0.25, None, 0.5, "non disponible"),
    ],
)
def test_status(actual, traj, target, expected):
    assert spaser.status(actual, traj, target) == expected


def test_targets_defaults_and_override(con):
    df = spaser.targets(con)
    env = df[df.indicator == "environmental_clause_rate"].iloc[0]
    assert env.target == 1.0 and env.source == "défaut national"
    spaser.set_target(con, "social_clause_rate", 2026, 0.35, who="test")
    df = spaser.targets(con)
    soc = df[df.indicator == "social_clause_rate"]
    assert list(soc.target) == [0.35] and list(soc.source) == ["acheteur"]
    with pytest.raises(ValueError):
        spaser.set_target(con, "social_clause_rate", 2026, 35)
    with pytest.raises(ValueError):
        spaser.set_target(con, "unknown", 2026, 0.3)


def _contracts(con, year: int, with_env: int, total: int) -> None:
    """``total`` contracts notified on 1 June ``year``, ``with_env`` of them with an
    environmental consideration."""
    for i in range(total):
        key = f"C{year}-{i}"
        con.execute(
            "INSERT INTO contracts (import_id, seq, contract_key, uid, id, buyer_siret, date_notification, "
            "amount, holder_count, has_environmental) VALUES (10, $seq, $k, $k, $k, '21590163800019', $d, "
            "1000, 0, $env)",
            {"seq": year * 100 + i, "k": key, "d": dt.date(year, 6, 1), "env": i < with_env},
        )


@pytest.fixture
def env_history(con):
    """Base year 2022 at 1/4 contracts with an environmental consideration, 2023 at 2/4,
    2024 at 3/4; one milestone: 100 % in 2026."""
    _contracts(con, 2022, 1, 4)
    _contracts(con, 2023, 2, 4)
    _contracts(con, 2024, 3, 4)
    spaser.set_base_year(con, 2022)
    spaser.set_target(con, "environmental_clause_rate", 2026, 1.0)
    return con


def test_base_year_value_is_the_base_years_headline(env_history):
    con = env_history
    base = indicators.headline(con, Filters.year(2022))["environmental_clause_rate"]
    assert base == pytest.approx(1 / 4)
    row = spaser.spaser_table(con, 2024).set_index("indicator").loc["environmental_clause_rate"]
    # Trajectory from the base year's actual (25 % in 2022) to 100 % in 2026: +18,75 points a
    # year, 62,5 % in 2024.
    assert row["trajectory"] == pytest.approx(base + (1.0 - base) * (2024 - 2022) / (2026 - 2022))
    assert row["trajectory"] == pytest.approx(0.625)
    assert row["actual"] == pytest.approx(3 / 4) and row["previous"] == pytest.approx(2 / 4)
    assert row["status"] == "en avance"


def test_each_years_headline_is_computed_once(env_history, monkeypatch):
    con = env_history
    calls = []
    real = indicators.headlines

    def counting(c, periods, light=False):
        calls.append([(f.date_from, f.date_to) for f in periods])
        return real(c, periods, light=light)

    monkeypatch.setattr(indicators, "headlines", counting)
    spaser.spaser_table(con, 2024)
    # 2024, 2023 (previous) and 2022 (base), whatever the number of indicators with targets,
    # in one engine call.
    assert calls == [[(dt.date(y, 1, 1), dt.date(y, 12, 31)) for y in (2022, 2023, 2024)]]
    calls.clear()
    tables = spaser.spaser_tables(con, (2023, 2024, 2025), Filters.year(2025))
    assert calls == [[(dt.date(y, 1, 1), dt.date(y, 12, 31)) for y in (2022, 2023, 2024, 2025)]]
    monkeypatch.setattr(indicators, "headlines", real)
    for y, table in tables.items():
        pd.testing.assert_frame_equal(table, spaser.spaser_table(con, y, Filters.year(2025)))
        h = indicators.headline(con, spaser._year_filters(Filters.year(2025), y))
        expected = pd.Series([h.get(k) for k in table["indicator"]], dtype=float)
        pd.testing.assert_series_equal(table["actual"].astype(float), expected, check_names=False)


def test_plan_is_the_tables_targets_without_its_actual_values(env_history, monkeypatch):
    """The monthly review reads the year's targets and trajectory only: the same as the
    table's, from the base year's headline alone."""
    con = env_history
    spaser.set_target(con, "social_clause_rate", 2025, 0.4)
    spaser.set_target(con, "social_clause_rate", 2027, 0.6)
    keys = ["indicator", "target", "target_year", "target_this_year", "trajectory"]
    calls = []
    real = indicators.headlines

    def counting(c, periods, light=False):
        calls.append([f.date_from.year for f in periods])
        return real(c, periods, light=light)

    for year in (2021, 2022, 2024, 2026, 2028):
        table = spaser.spaser_table(con, year)
        calls.clear()
        monkeypatch.setattr(indicators, "headlines", counting)
        plan = pd.DataFrame(spaser.plan(con, year, Filters.year(year)), columns=keys)
        monkeypatch.setattr(indicators, "headlines", real)
        assert calls == [[2022]]  # the base year only, whatever the year
        pd.testing.assert_frame_equal(plan, table[keys])


def test_tables_from_headlines_computed_once_equal_spaser_tables(env_history):
    """The dashboard computes the whole years' light headlines once (for the SPASER page
    and the ESS trend) and builds the tables from them: the same tables."""
    con = env_history
    spaser.set_target(con, "social_clause_rate", 2025, 0.4)
    f = Filters.year(2025)
    years = (2022, 2023, 2024, 2025)
    base = spaser.base_year(con)
    wanted = spaser.years_needed(years, base)
    assert wanted == [2021, 2022, 2023, 2024, 2025]
    heads = indicators.headlines(con, [spaser._year_filters(f, y) for y in wanted], light=True)
    got = spaser.tables_from(dict(zip(wanted, heads)), spaser.targets(con), base, years)
    expected = spaser.spaser_tables(con, years, f)
    assert list(got) == list(expected)
    for y in years:
        pd.testing.assert_frame_equal(got[y], expected[y])


def test_instrument_rates(con):
    for i, (social, env) in enumerate(
        [(["Clause sociale"], ["Critère environnemental"]), (["Clause sociale", "Marché réservé"], None)]
    ):
        con.execute(
            "INSERT INTO contracts (import_id, seq, contract_key, uid, id, buyer_siret, date_notification, "
            "amount, holder_count, considerations_sociales, considerations_environnementales) "
            "VALUES (10, $i, $k, $k, $k, '21590163800019', DATE '2025-03-01', 1000, 0, $s, $e)",
            {"i": i, "k": f"K{i}", "s": social, "e": env},
        )
    df = spaser.instrument_rates(con, Filters.year(2025)).set_index("Instrument")
    # Social considerations known on both contracts, environmental ones on the first only.
    assert df.loc["Clause sociale", "Contrats"] == 2 and df.loc["Clause sociale", "Taux"] == 1.0
    assert df.loc["Marché réservé", "Taux"] == 0.5
    assert df.loc["Critère environnemental", "Contrats aux considérations connues"] == 1
    assert df.loc["Clause environnementale", "Taux"] == 0.0
    assert not len(spaser.instrument_rates(con, Filters.year(2024)))

"""SPASER targets, trajectories and status (INDICATORS.md, "SPASER targets").

Targets are per indicator and year. The trajectory runs linearly from the base year's
actual value to the first milestone, then between the buyer's yearly milestones; after
the last milestone it stays at that target.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd

from analytics import indicators
from analytics.filters import Filters

# Indicators a SPASER follows, with the national plan's defaults (PNAD 2022-2025:
# 100 % of contracts with an environmental consideration, 30 % with a social one).
SPASER_INDICATORS: dict[str, dict] = {
    "environmental_clause_rate": {"default": 1.0, "value_key": "environmental_clause_rate_value"},
    "social_clause_rate": {"default": 0.30, "value_key": "social_clause_rate_value"},
    "reserved_contract_rate": {"default": None, "value_key": "reserved_contract_rate_value"},
    "inclusive_share": {"default": None, "value_key": None},
    "ess_share": {"default": None, "value_key": None},
    "local_share": {"default": None, "value_key": None},
    "sme_share": {"default": None, "value_key": None},
    "insertion_hours": {"default": None, "value_key": None},
}
DEFAULT_TARGET_YEAR = 2026

STATUSES = ("atteint", "en avance", "en retard", "non disponible")


def _check_indicator(indicator: str) -> None:
    if indicator not in SPASER_INDICATORS:
        raise ValueError(f"Indicateur SPASER inconnu « {indicator} » : {', '.join(SPASER_INDICATORS)}.")


def targets(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Targets in force: indicator, year, target, source ('acheteur' or 'défaut national')."""
    df = con.execute(
        "SELECT indicator, year, target, 'acheteur' AS source, updated_at, updated_by "
        "FROM spaser_targets ORDER BY indicator, year"
    ).df()
    have = set(df["indicator"]) if len(df) else set()
    defaults = [
        {
            "indicator": k,
            "year": DEFAULT_TARGET_YEAR,
            "target": v["default"],
            "source": "défaut national",
            "updated_at": None,
            "updated_by": None,
        }
        for k, v in SPASER_INDICATORS.items()
        if v["default"] is not None and k not in have
    ]
    if defaults:
        df = pd.concat([df, pd.DataFrame(defaults)], ignore_index=True) if len(df) else pd.DataFrame(defaults)
    return df.sort_values(["indicator", "year"]).reset_index(drop=True)


def set_target(
    con: duckdb.DuckDBPyConnection, indicator: str, year: int, value: float, who: str | None = None
) -> None:
    """Set (or replace) one milestone; shares are fractions in [0, 1]."""
    _check_indicator(indicator)
    if year is None or value is None:
        raise ValueError("--year et --value sont requis.")
    if indicator != "insertion_hours" and not 0 <= value <= 1:
        raise ValueError("Une cible de taux s'exprime entre 0 et 1 (ex. 0.30 pour 30 %).")
    con.execute(
        "INSERT OR REPLACE INTO spaser_targets VALUES ($i, $y, $v, $t, $w)",
        {"i": indicator, "y": int(year), "v": float(value), "t": dt.datetime.now(), "w": who},
    )


def delete_target(con: duckdb.DuckDBPyConnection, indicator: str, year: int) -> None:
    con.execute("DELETE FROM spaser_targets WHERE indicator = $i AND year = $y", {"i": indicator, "y": year})


def base_year(con: duckdb.DuckDBPyConnection) -> int | None:
    """The SPASER's base year: the setting 'spaser_base_year', else the first year with contracts."""
    row = con.execute("SELECT value FROM settings WHERE key = 'spaser_base_year'").fetchone()
    if row and row[0] is not None:
        return int(json.loads(row[0]))
    row = con.execute(
        "SELECT min(year(date_notification)) FROM contracts_current WHERE date_notification IS NOT NULL"
    ).fetchone()
    if row and row[0]:
        return int(row[0])
    row = con.execute("SELECT min(year(spend_date)) FROM mandats").fetchone()
    return int(row[0]) if row and row[0] else None


def set_base_year(con: duckdb.DuckDBPyConnection, year: int, who: str | None = None) -> None:
    con.execute(
        "INSERT OR REPLACE INTO settings VALUES ('spaser_base_year', $v, $t, $w)",
        {"v": json.dumps(int(year)), "t": dt.datetime.now(), "w": who},
    )


def trajectory_value(points: list[tuple[int, float]], year: int) -> float | None:
    """Piecewise-linear value at ``year`` through (year, value) points sorted by year."""
    pts = sorted(points)
    if not pts or year < pts[0][0]:
        return None
    if year >= pts[-1][0]:
        return pts[-1][1]
    for (y0, v0), (y1, v1) in zip(pts, pts[1:]):
        if y0 <= year <= y1:
            return v0 + (v1 - v0) * (year - y0) / (y1 - y0)
    return None


def status(actual: float | None, trajectory: float | None, target: float | None) -> str:
    """atteint (≥ final target), en avance (≥ trajectory), en retard (< trajectory), non disponible."""
    if actual is None:
        return "non disponible"
    if target is not None and actual >= target - 1e-12:
        return "atteint"
    if trajectory is None:
        return "non disponible"
    return "en avance" if actual >= trajectory - 1e-12 else "en retard"


def _year_filters(f: Filters, year: int) -> Filters:
    return f.with_(date_from=dt.date(year, 1, 1), date_to=dt.date(year, 12, 31))


class _YearHeadlines:
    """``indicators.headline`` over whole calendar years with one set of filters, each year
    computed once (a table needs its year, the year before and the base year; a trajectory
    chart needs every year)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, f: Filters) -> None:
        self.con, self.f, self.done = con, f, {}

    def prefetch(self, years) -> None:
        """Compute the missing years in one engine call (one history scan for all)."""
        todo = sorted({int(y) for y in years if y is not None} - set(self.done))
        heads = indicators.headlines(self.con, [_year_filters(self.f, y) for y in todo], light=True)
        self.done.update(zip(todo, heads))

    def __call__(self, year: int) -> dict:
        if year not in self.done:
            self.prefetch([year])
        return self.done[year]


def _plan(headline: _YearHeadlines, tg: pd.DataFrame, base: int | None, year: int) -> list[dict]:
    """For each targeted indicator in ``year``: its final target, target year, the year's
    milestone (target_this_year) and the trajectory. Only the base year's headline is read
    (the trajectory starts from its actual value), and only when the base year comes before
    the first milestone."""
    rows = []
    by_indicator: dict[str, list[tuple[int, float]]] = {}
    for r in tg.itertuples():  # one pass (a filter per indicator costs 10 ms a year)
        by_indicator.setdefault(r.indicator, []).append((int(r.year), float(r.target)))
    for key, meta in SPASER_INDICATORS.items():
        milestones = by_indicator.get(key)
        if not milestones:
            continue
        final_year, final_target = max(milestones)
        points = list(milestones)
        if base is not None and base < min(y for y, _ in milestones):
            base_value = headline(base).get(key)
            if base_value is not None:
                points.append((base, float(base_value)))
        rows.append(
            {
                "indicator": key,
                "meta": meta,
                "target": final_target,
                "target_year": final_year,
                "target_this_year": (
                    trajectory_value(milestones, year) if year >= min(y for y, _ in milestones) else None
                ),
                "trajectory": trajectory_value(points, year),
            }
        )
    return rows


def plan(con: duckdb.DuckDBPyConnection, year: int, filters) -> list[dict]:
    """The targets and trajectory of ``year`` without the year's actual values (what the
    monthly review compares with its own year-to-date figures): indicator, target,
    target_year, target_this_year, trajectory, as in :func:`spaser_table`."""
    headline = _YearHeadlines(con, filters)
    rows = _plan(headline, targets(con), base_year(con), int(year))
    return [{k: v for k, v in r.items() if k != "meta"} for r in rows]


def _table(headline: _YearHeadlines, tg: pd.DataFrame, base: int | None, year: int) -> pd.DataFrame:
    cur = headline(year)
    prev = headline(year - 1)
    rows = []
    for p in _plan(headline, tg, base, year):
        key, meta, traj = p["indicator"], p["meta"], p["trajectory"]
        actual = cur.get(key)
        previous = prev.get(key)
        rows.append(
            {
                "indicator": key,
                "label": indicators.DEFINITIONS.get(key, {}).get("label", key),
                "actual": actual,
                "actual_value": cur.get(meta["value_key"]) if meta["value_key"] else None,
                "target": p["target"],
                "target_year": p["target_year"],
                "target_this_year": p["target_this_year"],
                "trajectory": traj,
                "status": status(actual, traj, p["target"]),
                "previous": previous,
                "delta_points": (actual - previous) if actual is not None and previous is not None else None,
                "reason": (cur.get("reasons") or {}).get(key),
            }
        )
    return pd.DataFrame(rows)


def spaser_table(con: duckdb.DuckDBPyConnection, year: int, filters=None) -> pd.DataFrame:
    """For each targeted indicator in ``year``: label, actual (count basis), actual_value
    (notified value basis where it exists), target (final), target_year, trajectory,
    status, previous (year − 1), delta_points."""
    return spaser_tables(con, (year,), filters or Filters.year(year))[int(year)]


def spaser_tables(con: duckdb.DuckDBPyConnection, years, filters) -> dict[int, pd.DataFrame]:
    """{year: ``spaser_table(con, year, filters)``} for each year in ``years`` (a trajectory
    chart over the years), each year's headline computed once and shared between tables."""
    headline = _YearHeadlines(con, filters)
    tg, base = targets(con), base_year(con)
    headline.prefetch(years_needed(years, base))
    return {int(y): _table(headline, tg, base, int(y)) for y in years}


def years_needed(years, base: int | None) -> list[int]:
    """The years whose headline the tables of ``years`` read: each year, the year before,
    and the base year."""
    return sorted(
        {y for year in years for y in (int(year), int(year) - 1)} | ({int(base)} if base else set())
    )


def tables_from(heads: dict[int, dict], tg: pd.DataFrame, base: int | None, years) -> dict[int, pd.DataFrame]:
    """``spaser_tables`` from light headlines of whole years already computed (``heads``
    must hold :func:`years_needed`): the dashboard computes them once for the SPASER page
    and the ESS page's trend."""
    headline = _YearHeadlines(None, None)
    headline.done.update({int(y): h for y, h in heads.items()})
    return {int(y): _table(headline, tg, base, int(y)) for y in years}


# The instruments a contract's considerations name (DECP wording), by column.
INSTRUMENTS = {
    "considerations_sociales": ("Clause sociale", "Critère social", "Marché réservé"),
    "considerations_environnementales": ("Clause environnementale", "Critère environnemental"),
}


def instrument_rates(con: duckdb.DuckDBPyConnection, filters: Filters) -> pd.DataFrame:
    """Instrument, Contrats, Taux, Contrats aux considérations connues: the contracts notified
    under ``filters`` that use each instrument, over those whose considerations are known
    (empty without contracts)."""
    contracts = indicators.contracts_table(con, filters)
    if contracts is None or not len(contracts):
        return pd.DataFrame()
    rows = []
    for col, names in INSTRUMENTS.items():
        known = contracts[col].dropna()
        for name in names:
            n = int(sum(name in list(v) for v in known))
            rows.append(
                {
                    "Instrument": name,
                    "Contrats": n,
                    "Taux": n / len(known) if len(known) else None,
                    "Contrats aux considérations connues": len(known),
                }
            )
    return pd.DataFrame(rows)

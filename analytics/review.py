"""The monthly indicator review: frozen snapshots, revisions, alerts, data changes.

A snapshot freezes the indicators of one month (the month alone and the year to date),
computed with the data as it stands when it is taken. It never changes afterwards: when
a later import corrects the data, the review shows the difference as a revision.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import duckdb

from analytics import indicators
from analytics.filters import Filters, month_bounds
from analytics.fmt import MONTHS_FR

# Beyond these moves an indicator is highlighted (shares in points, amounts in %).
SHARE_THRESHOLD_POINTS = 0.02
AMOUNT_THRESHOLD_RELATIVE = 0.10
# the review follows every headline key of the engine (one list, in indicators.py)
HEADLINE_KEYS = indicators.HEADLINE_KEYS


# What changed in the data after a snapshot: imports loaded after it, and imports undone
# after it (an undo removes rows of an import the snapshot had counted).
CHANGED_IMPORTS_SQL = """
    SELECT import_id, kind, file_name, status, rows_loaded, rows_rejected, finished_at, undone_at
    FROM imports
    WHERE (import_id > $s AND status IN ('ok', 'undone'))
       OR (status = 'undone' AND $t::TIMESTAMP IS NOT NULL AND undone_at > $t::TIMESTAMP)
    ORDER BY import_id
"""
REJECTED_SQL = """
    SELECT reason, count(*) AS n
    FROM rejected_rows r JOIN imports i USING (import_id)
    WHERE r.import_id > $s AND i.status IN ('ok', 'undone')
    GROUP BY reason ORDER BY n DESC, reason LIMIT 20
"""
MONTHS_SQL = """
    SELECT DISTINCT strftime(d, '%Y-%m') AS m FROM (
        -- the distinct days first: strftime on a few thousand values, not on every line
        SELECT DISTINCT spend_date AS d FROM mandats WHERE spend_date IS NOT NULL
        UNION ALL
        SELECT DISTINCT date_notification FROM contracts WHERE date_notification IS NOT NULL
    ) ORDER BY m
"""
NEW_UNIDENTIFIED_SQL = """
    SELECT count(DISTINCT supplier_key) FROM mandats m
    WHERE import_id > $s AND NOT supplier_identified
      AND supplier_key NOT IN (SELECT supplier_key FROM mandats WHERE import_id <= $s)
"""


def _filters(con, month: str, base: Filters | None = None) -> tuple[Filters, Filters]:
    from analytics import referential

    start, end = month_bounds(month)
    if base is None:
        base = Filters(start, end, territory=referential.default_territory(con, None))
    f_month = base.with_(date_from=start, date_to=end)
    f_ytd = base.with_(date_from=dt.date(start.year, 1, 1), date_to=end)
    return f_month, f_ytd


def _compute(con, month: str, base: Filters | None = None) -> dict:
    return _compute_many(con, [month], base)[month]


def _compute_many(con, months: list[str], base: Filters | None = None) -> dict[str, dict]:
    """The month and year-to-date indicators of several months, in one engine call
    (``indicators.headlines``: one history scan for all the periods)."""
    from analytics import indicators

    months = list(dict.fromkeys(months))
    pairs = [_filters(con, m, base) for m in months]
    heads = indicators.headlines(con, [f for pair in pairs for f in pair])
    keep = lambda d: {k: d.get(k) for k in HEADLINE_KEYS}  # noqa: E731
    return {
        m: {
            "month": keep(heads[2 * i]),
            "ytd": keep(heads[2 * i + 1]),
            "territory": str(f_month.territory) if f_month.territory else None,
            "basis": f_month.basis,
        }
        for i, (m, (f_month, _)) in enumerate(zip(months, pairs))
    }


def take_snapshot(
    con: duckdb.DuckDBPyConnection, month: str, comment: str | None = None, who: str | None = None
) -> dict:
    """Freeze the month's indicators with the reviewer's comment; returns the snapshot."""
    values = _compute(con, month)
    last = con.execute("SELECT coalesce(max(import_id), 0) FROM imports WHERE status = 'ok'").fetchone()[0]
    sid = con.execute("SELECT nextval('snapshot_id_seq')").fetchone()[0]
    now = dt.datetime.now()
    con.execute(
        "INSERT INTO snapshots VALUES ($i, $m, $t, $w, $c, $l, $v)",
        {"i": sid, "m": month, "t": now, "w": who, "c": comment, "l": last, "v": json.dumps(values)},
    )
    return {
        "snapshot_id": sid,
        "month": month,
        "created_at": now.isoformat(timespec="seconds"),
        "comment": comment,
        "last_import_id": last,
        "indicators": values,
    }


def snapshots(con: duckdb.DuckDBPyConnection, month: str | None = None) -> list[dict]:
    """Stored snapshots (newest first), optionally of one month."""
    rows = con.execute(
        "SELECT snapshot_id, month, created_at, created_by, comment, last_import_id, indicators "
        "FROM snapshots WHERE $m IS NULL OR month = $m ORDER BY snapshot_id DESC",
        {"m": month},
    ).fetchall()
    return [
        {
            "snapshot_id": r[0],
            "month": r[1],
            "created_at": r[2].isoformat(timespec="seconds") if r[2] else None,
            "created_by": r[3],
            "comment": r[4],
            "last_import_id": r[5],
            "indicators": json.loads(r[6]),
        }
        for r in rows
    ]


def snapshots_state(con: duckdb.DuckDBPyConnection) -> str:
    """A key that changes whenever a snapshot is taken (the data version ignores snapshots)."""
    n, last = con.execute("SELECT count(*), coalesce(max(snapshot_id), 0) FROM snapshots").fetchone()
    return f"{n}|{last}"


def review_at(con: duckdb.DuckDBPyConnection, month: str, state: str) -> dict:
    """``review(con, month)``; ``state`` (:func:`snapshots_state`) only keys the dashboard's cache."""
    return review(con, month)


def _previous_month(month: str) -> str:
    start, _ = month_bounds(month)
    prev = start - dt.timedelta(days=1)
    return f"{prev.year:04d}-{prev.month:02d}"


def _same_month_last_year(month: str) -> str:
    y, m = month.split("-")
    return f"{int(y) - 1:04d}-{m}"


def _number(v) -> float | None:
    """A float, None for None/NaN (pandas turns a missing trajectory into NaN)."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _is_share(key: str) -> bool:
    return key.endswith(("_share", "_rate", "_rate_value")) or key == "hhi"


def _delta(key: str, now, before) -> float | None:
    if now is None or before is None:
        return None
    if _is_share(key):
        return now - before
    return (now - before) / abs(before) if before else None


def _moved(key: str, delta: float | None) -> bool:
    if delta is None:
        return False
    limit = SHARE_THRESHOLD_POINTS if _is_share(key) else AMOUNT_THRESHOLD_RELATIVE
    return abs(delta) > limit


def review(con: duckdb.DuckDBPyConnection, month: str) -> dict:
    """Compare the month with the previous snapshot and the same month last year."""
    from analytics import spaser

    month_bounds(month)  # validates
    mine = snapshots(con, month)
    snap = mine[0] if mine else None
    prev_month = _previous_month(month)
    prev_snaps = snapshots(con, prev_month)
    last_month = _same_month_last_year(month)
    computed = _compute_many(con, [month, last_month] + ([] if prev_snaps else [prev_month]))
    current, last_year = computed[month], computed[last_month]
    previous = prev_snaps[0]["indicators"] if prev_snaps else computed[prev_month]
    previous_source = (
        f"instantané n° {prev_snaps[0]['snapshot_id']}"
        if prev_snaps
        else "données actuelles (pas d'instantané)"
    )

    revisions = []
    if snap is not None:
        for scope in ("month", "ytd"):
            for k in HEADLINE_KEYS:
                a, b = snap["indicators"][scope].get(k), current[scope].get(k)
                if a != b and not (a is not None and b is not None and abs(a - b) < 1e-9):
                    revisions.append({"scope": scope, "key": k, "snapshot": a, "now": b})

    comparisons, alerts = [], []
    for k in HEADLINE_KEYS:
        now = current["month"].get(k)
        d_prev = _delta(k, now, previous["month"].get(k))
        d_ly = _delta(k, now, last_year["month"].get(k))
        comparisons.append(
            {
                "key": k,
                "value": now,
                "previous_month": previous["month"].get(k),
                "same_month_last_year": last_year["month"].get(k),
                "delta_previous": d_prev,
                "delta_last_year": d_ly,
                "ytd": current["ytd"].get(k),
            }
        )
        if _moved(k, d_prev):
            alerts.append({"key": k, "kind": "variation", "against": "mois précédent", "delta": d_prev})
        if _moved(k, d_ly):
            alerts.append({"key": k, "kind": "variation", "against": "même mois n-1", "delta": d_ly})

    year = int(month[:4])
    f_month, _ = _filters(con, month)
    try:
        # the targets and trajectory only: the actual values are the month's year to date
        plan = spaser.plan(con, year, f_month)
    except Exception as exc:  # the review must not fail because targets are incomplete
        alerts.append({"key": "spaser", "kind": "indisponible", "against": str(exc)})
        plan = []
    # The month is judged on its year to date (the data at the end of that month), not on
    # the whole year, whose later months may already be loaded.
    for r in plan:
        actual = current["ytd"].get(r["indicator"])
        trajectory, target = _number(r["trajectory"]), _number(r["target"])
        if not _is_share(r["indicator"]) and trajectory is not None:
            # a yearly volume (insertion hours): prorated to the months elapsed
            trajectory = trajectory * f_month.date_to.month / 12
            if target is not None:
                target = None if r["target_year"] != year else target * f_month.date_to.month / 12
        state = spaser.status(actual, trajectory, target)
        if state == "en retard":
            alerts.append(
                {
                    "key": r["indicator"],
                    "kind": "trajectoire",
                    "against": "trajectoire SPASER",
                    "value": actual,
                    "trajectory": trajectory,
                    "target": _number(r["target"]),
                    "target_year": int(r["target_year"]),
                }
            )

    ref = snap or (snapshots(con)[:1] or [None])[0]
    since = ref["last_import_id"] if ref else 0
    since_time = dt.datetime.fromisoformat(ref["created_at"]) if ref and ref["created_at"] else None
    params = {"s": since, "t": since_time}
    imports = con.execute(CHANGED_IMPORTS_SQL, params).fetchall()
    rejected = con.execute(REJECTED_SQL, {"s": since}).fetchall()
    new_unidentified = con.execute(NEW_UNIDENTIFIED_SQL, {"s": since}).fetchone()[0]
    return {
        "month": month,
        "snapshot": {
            k: snap[k] for k in ("snapshot_id", "created_at", "created_by", "comment", "last_import_id")
        }
        if snap
        else None,
        "current": current,
        "previous_source": previous_source,
        "revisions": revisions,
        "comparisons": comparisons,
        "alerts": alerts,
        "data_changes": {
            "since_snapshot_id": ref["snapshot_id"] if ref else None,
            "since_import_id": since,
            "imports": [
                {
                    "import_id": r[0],
                    "kind": r[1],
                    "file": r[2],
                    "status": r[3],
                    "rows_loaded": r[4],
                    "rows_rejected": r[5],
                    "finished_at": r[6].isoformat(timespec="seconds") if r[6] else None,
                    "undone_at": r[7].isoformat(timespec="seconds") if r[7] else None,
                }
                for r in imports
            ],
            "rows_rejected": sum(r[5] or 0 for r in imports if r[0] > since),
            "rejected_by_reason": [{"reason": r[0], "rows": r[1]} for r in rejected],
            "new_unidentified_suppliers": new_unidentified,
        },
        "thresholds": {"share_points": SHARE_THRESHOLD_POINTS, "amount_relative": AMOUNT_THRESHOLD_RELATIVE},
    }


def show_value(key: str, v) -> str:
    """An indicator value in French format, by the unit of its definition."""
    from analytics import fmt, indicators

    return fmt.fmt_value(v, indicators.DEFINITIONS.get(key, {}).get("unit", "count"))


def show_delta(key: str, d) -> str:
    """A move: points for shares, % for amounts and counts; '—' when not comparable."""
    from analytics import fmt

    if d is None:
        return "—"
    return fmt.fmt_points(d) if _is_share(key) else fmt.fmt_pct(d, sign=True)


def label(key: str) -> str:
    from analytics import indicators

    return indicators.DEFINITIONS.get(key, {}).get("label", key)


def alert_text(a: dict) -> str:
    """One French sentence for an alert."""
    if a["kind"] == "trajectoire":
        return (
            f"{label(a['key'])} : {show_value(a['key'], a['value'])} depuis janvier, sous la trajectoire "
            f"SPASER ({show_value(a['key'], a['trajectory'])} ; cible {show_value(a['key'], a['target'])}"
            f" en {a['target_year']})."
        )
    if a["kind"] == "variation":
        return f"{label(a['key'])} : {show_delta(a['key'], a['delta'])} par rapport au {a['against']}."
    return f"{label(a['key'])} : {a['against']}"


def month_label(month: str) -> str:
    """'2025-10' -> 'octobre 2025'."""
    return f"{MONTHS_FR[int(month[5:7]) - 1]} {month[:4]}"


def when_text(iso: str | None) -> str:
    """'2026-11-25T21:10:38' -> '25/11/2026 à 21:10' ('' for None)."""
    if not iso:
        return ""
    return dt.datetime.fromisoformat(iso).strftime("%d/%m/%Y à %H:%M")


def snapshot_text(s: dict | None) -> str:
    """One French line naming a snapshot (or saying there is none)."""
    if not s:
        return "Aucun instantané de ce mois : valeurs calculées sur les données actuelles."
    when = when_text(s.get("created_at"))
    return (
        f"Instantané n° {s['snapshot_id']} du {when}"
        + (f" par {s['created_by']}" if s.get("created_by") else "")
        + (f" : « {s['comment']} »" if s.get("comment") else "")
    )


def months_with_data(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Months ('YYYY-MM') with payments or notified contracts, oldest first."""
    rows = con.execute(MONTHS_SQL).fetchall()
    return [r[0] for r in rows]


def default_month(con: duckdb.DuckDBPyConnection, today: dt.date | None = None) -> str | None:
    """The last complete month (ended before today) with data; else the last month with data."""
    months = months_with_data(con)
    if not months:
        return None
    today = today or dt.date.today()
    done = [m for m in months if m < f"{today.year:04d}-{today.month:02d}"]
    return (done or months)[-1]


def review_tables(r: dict) -> dict:
    """The review as tables (one XLSX sheet each), raw numbers."""
    import pandas as pd

    comp = pd.DataFrame(
        [
            {
                "indicateur": c["key"],
                "libellé": label(c["key"]),
                "valeur": c["value"],
                "mois_précédent": c["previous_month"],
                "même_mois_n-1": c["same_month_last_year"],
                "écart_mois_précédent": c["delta_previous"],
                "écart_n-1": c["delta_last_year"],
                "écart_en": "points" if _is_share(c["key"]) else "relatif",
                "cumul_annuel": c["ytd"],
            }
            for c in r["comparisons"]
        ]
    )
    alerts = pd.DataFrame(
        [{"indicateur": a["key"], "type": a["kind"], "alerte": alert_text(a)} for a in r["alerts"]],
        columns=["indicateur", "type", "alerte"],
    )
    revisions = pd.DataFrame(
        [
            {
                "indicateur": v["key"],
                "libellé": label(v["key"]),
                "portée": v["scope"],
                "instantané": v["snapshot"],
                "actuel": v["now"],
            }
            for v in r["revisions"]
        ],
        columns=["indicateur", "libellé", "portée", "instantané", "actuel"],
    )
    dc = r["data_changes"]
    imports = pd.DataFrame(
        dc["imports"],
        columns=[
            "import_id",
            "kind",
            "file",
            "status",
            "rows_loaded",
            "rows_rejected",
            "finished_at",
            "undone_at",
        ],
    )
    s = r["snapshot"] or {}
    info = pd.DataFrame(
        {
            "champ": [
                "mois",
                "instantané",
                "pris le",
                "par",
                "commentaire",
                "dernier import pris en compte",
                "nouveaux fournisseurs non identifiés",
                "lignes rejetées depuis",
            ],
            "valeur": [
                r["month"],
                s.get("snapshot_id"),
                s.get("created_at"),
                s.get("created_by"),
                s.get("comment"),
                s.get("last_import_id"),
                dc["new_unidentified_suppliers"],
                dc["rows_rejected"],
            ],
        }
    )
    return {
        "Revue": info,
        "Comparaisons": comp,
        "Alertes": alerts,
        "Révisions": revisions,
        "Imports": imports,
    }


def format_review(r: dict) -> str:
    """A French text version of the review, for the monthly job's log or e-mail."""
    out = [f"Revue mensuelle des indicateurs — {month_label(r['month'])}", snapshot_text(r["snapshot"])]
    out.append("")
    for c in r["comparisons"]:
        k = c["key"]
        out.append(
            f"- {label(k)} : {show_value(k, c['value'])} (mois précédent {show_value(k, c['previous_month'])},"
            f" même mois n-1 {show_value(k, c['same_month_last_year'])})"
        )
    if r["alerts"]:
        out += ["", "À regarder :"]
        out += [f"- {alert_text(a)}" for a in r["alerts"]]
    if r["revisions"]:
        out += [
            "",
            f"Révisions depuis l'instantané : {len(r['revisions'])} valeur(s) changée(s) par des imports ultérieurs.",
        ]
        for v in r["revisions"]:
            scope = "mois" if v["scope"] == "month" else "cumul annuel"
            out.append(
                f"- {label(v['key'])} ({scope}) : {show_value(v['key'], v['snapshot'])} → {show_value(v['key'], v['now'])}"
            )
    dc = r["data_changes"]
    out += [
        "",
        f"Données depuis l'import n° {dc['since_import_id']} : {len(dc['imports'])} import(s) ou annulation(s), "
        f"{dc['rows_rejected']} ligne(s) rejetée(s), {dc['new_unidentified_suppliers']} nouveau(x) "
        "fournisseur(s) non identifié(s).",
    ]
    for i in dc["imports"]:
        what = "annulé" if i["status"] == "undone" else "importé"
        out.append(
            f"- import n° {i['import_id']} ({i['kind']}, {i['file']}) {what} : {i['rows_loaded']} ligne(s)"
        )
    return "\n".join(out)

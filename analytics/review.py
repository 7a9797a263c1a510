"""The monthly indicator review: frozen snapshots, revisions, alerts, data changes.

A snapshot freezes the indicators of one month (the month alone and the year to date),
computed with the data as it stands when it is taken. It never changes afterwards: when
a later import corrects the data, the review shows the difference as a revision.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb

from analytics.filters import Filters, month_bounds

# Beyond these moves an indicator is highlighted (shares in points, amounts in %).
SHARE_THRESHOLD_POINTS = 0.02
AMOUNT_THRESHOLD_RELATIVE = 0.10
HEADLINE_KEYS = (
    "total_spend",
    "supplier_count",
    "local_share",
    "unlocated_share",
    "ess_share",
    "inclusive_share",
    "insertion_share",
    "disability_share",
    "sme_share",
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
    "single_offer_rate",
    "innovative_rate",
    "sme_advance_rate",
    "insertion_hours",
    "insertion_fte",
    "payment_delay_days",
    "env_2026_compliance_count",
)


def _filters(con, month: str, base: Filters | None = None) -> tuple[Filters, Filters]:
    from analytics import referential

    start, end = month_bounds(month)
    if base is None:
        base = Filters(start, end, territory=referential.default_territory(con, None))
    f_month = base.with_(date_from=start, date_to=end)
    f_ytd = base.with_(date_from=dt.date(start.year, 1, 1), date_to=end)
    return f_month, f_ytd


def _compute(con, month: str, base: Filters | None = None) -> dict:
    from analytics import indicators

    f_month, f_ytd = _filters(con, month, base)
    keep = lambda d: {k: d.get(k) for k in HEADLINE_KEYS}  # noqa: E731
    return {
        "month": keep(indicators.headline(con, f_month)),
        "ytd": keep(indicators.headline(con, f_ytd)),
        "territory": str(f_month.territory) if f_month.territory else None,
        "basis": f_month.basis,
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


def _previous_month(month: str) -> str:
    start, _ = month_bounds(month)
    prev = start - dt.timedelta(days=1)
    return f"{prev.year:04d}-{prev.month:02d}"


def _same_month_last_year(month: str) -> str:
    y, m = month.split("-")
    return f"{int(y) - 1:04d}-{m}"


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
    current = _compute(con, month)
    mine = snapshots(con, month)
    snap = mine[0] if mine else None
    prev_month = _previous_month(month)
    prev_snaps = snapshots(con, prev_month)
    previous = prev_snaps[0]["indicators"] if prev_snaps else _compute(con, prev_month)
    last_year = _compute(con, _same_month_last_year(month))

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
    try:
        table = spaser.spaser_table(con, year)
        for r in table.to_dict(orient="records"):
            if r["status"] == "en retard":
                alerts.append(
                    {
                        "key": r["indicator"],
                        "kind": "trajectoire",
                        "against": "trajectoire SPASER",
                        "value": r["actual"],
                        "trajectory": r["trajectory"],
                    }
                )
    except Exception as exc:  # the review must not fail because targets are incomplete
        alerts.append({"key": "spaser", "kind": "indisponible", "against": str(exc)})

    since = snap["last_import_id"] if snap else (prev_snaps[0]["last_import_id"] if prev_snaps else 0)
    imports = con.execute(
        "SELECT import_id, kind, file_name, status, rows_loaded, rows_rejected, finished_at "
        "FROM imports WHERE import_id > $s AND status IN ('ok', 'undone') ORDER BY import_id",
        {"s": since},
    ).fetchall()
    new_unidentified = con.execute(
        "SELECT count(DISTINCT supplier_key) FROM mandats m WHERE import_id > $s "
        "AND NOT supplier_identified AND NOT EXISTS (SELECT 1 FROM mandats o "
        "WHERE o.supplier_key = m.supplier_key AND o.import_id <= $s)",
        {"s": since},
    ).fetchone()[0]
    return {
        "month": month,
        "snapshot": {k: snap[k] for k in ("snapshot_id", "created_at", "comment", "last_import_id")}
        if snap
        else None,
        "current": current,
        "revisions": revisions,
        "comparisons": comparisons,
        "alerts": alerts,
        "data_changes": {
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
                }
                for r in imports
            ],
            "rows_rejected": sum(r[5] or 0 for r in imports),
            "new_unidentified_suppliers": new_unidentified,
        },
        "thresholds": {"share_points": SHARE_THRESHOLD_POINTS, "amount_relative": AMOUNT_THRESHOLD_RELATIVE},
    }


def format_review(r: dict) -> str:
    """A French text version of the review, for the monthly job's log or e-mail."""
    from analytics import fmt, indicators

    def show(key, v):
        unit = indicators.DEFINITIONS.get(key, {}).get("unit")
        if v is None:
            return "non disponible"
        if unit == "share":
            return fmt.fmt_pct(v)
        if unit == "eur":
            return fmt.fmt_eur(v)
        return fmt.fmt_num(v) if hasattr(fmt, "fmt_num") else f"{v:,.1f}".replace(",", " ")

    out = [f"Revue mensuelle des indicateurs — {r['month']}"]
    s = r["snapshot"]
    out.append(
        f"Instantané n° {s['snapshot_id']} du {s['created_at']}"
        + (f" : {s['comment']}" if s["comment"] else "")
        if s
        else "Aucun instantané pour ce mois (valeurs calculées sur les données actuelles)."
    )
    out.append("")
    for c in r["comparisons"]:
        label = indicators.DEFINITIONS.get(c["key"], {}).get("label", c["key"])
        out.append(
            f"- {label} : {show(c['key'], c['value'])} (mois précédent {show(c['key'], c['previous_month'])},"
            f" même mois n-1 {show(c['key'], c['same_month_last_year'])})"
        )
    if r["alerts"]:
        out += ["", "À regarder :"]
        for a in r["alerts"]:
            label = indicators.DEFINITIONS.get(a["key"], {}).get("label", a["key"])
            out.append(f"- {label} : {a['kind']} ({a['against']})")
    if r["revisions"]:
        out += [
            "",
            f"Révisions depuis l'instantané : {len(r['revisions'])} valeur(s) changée(s) par des imports ultérieurs.",
        ]
    dc = r["data_changes"]
    out += [
        "",
        f"Données depuis l'import n° {dc['since_import_id']} : {len(dc['imports'])} import(s), "
        f"{dc['rows_rejected']} ligne(s) rejetée(s), {dc['new_unidentified_suppliers']} nouveau(x) "
        "fournisseur(s) non identifié(s).",
    ]
    return "\n".join(out)

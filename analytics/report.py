"""The SPASER annual report (code de la commande publique, L.2111-3): HTML, PDF, XLSX.

One function collects every figure from the engine (``collect``); the three formats
only lay it out, so the report shows exactly the engine's numbers. Charts and the map
are drawn as inline SVG from the shipped geometry: no browser is needed to print.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from pathlib import Path

import duckdb
import pandas as pd

from analytics import fmt
from analytics.filters import Filters

SPASER_KEYS = (
    "social_clause_rate",
    "social_clause_rate_value",
    "environmental_clause_rate",
    "environmental_clause_rate_value",
    "reserved_contract_rate",
    "single_offer_rate",
    "innovative_rate",
    "sme_advance_rate",
    "contract_count",
    "insertion_hours",
    "insertion_fte",
    "env_2026_compliance_count",
)
FOOTPRINT_KEYS = (
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
    "payment_delay_days",
)


def collect(con: duckdb.DuckDBPyConnection, year: int, filters: Filters | None = None) -> dict:
    """Every figure of the report for ``year``, from the engine's functions."""
    from analytics import indicators, referential, spaser

    territory = filters.territory if filters else referential.default_territory(con, None)
    f = (filters or Filters.year(year)).with_(
        date_from=dt.date(year, 1, 1), date_to=dt.date(year, 12, 31), territory=territory
    )
    hp = indicators.headline_with_previous(con, f)
    footprint = None
    try:
        from analytics import footprint as fp

        footprint = fp.footprint_json(con, f)
    except Exception as exc:  # the IO model is optional in the report
        footprint = {"error": str(exc)}
    imports = con.execute(
        "SELECT import_id, kind, file_name, finished_at, rows_loaded, rows_rejected FROM imports "
        "WHERE status = 'ok' ORDER BY import_id"
    ).df()
    contracts = indicators.contracts_table(con, f)
    return {
        "year": year,
        "generated_at": dt.datetime.now(),
        "buyer": referential.get_buyer(con),
        "territory": str(territory) if territory else None,
        "territory_label": referential.territory_label(con, territory) if territory else None,
        "filters": f,
        "headline": hp["current"],
        "previous": hp["previous"],
        "delta": hp["delta"],
        "spaser": spaser.spaser_table(con, year, f),
        "by_departement": indicators.spend_by_departement(con, f),
        "by_region": indicators.spend_by_region(con, f),
        "by_size": indicators.spend_by_size(con, f),
        "by_inclusive_kind": indicators.spend_by_inclusive_kind(con, f),
        "by_naf_section": indicators.spend_by_naf_section(con, f),
        "top_suppliers": indicators.top_suppliers(con, f, n=20),
        "env_2026": indicators.env_2026_compliance(con, f),
        "without_env": _without_env(contracts),
        "without_env_by_cpv": _without_env_by_cpv(con, contracts),
        "footprint": footprint,
        "imports": imports,
        "definitions": indicators.DEFINITIONS,
    }


def _without_env(contracts: pd.DataFrame) -> pd.DataFrame:
    """The year's contracts whose considerations are known and hold no environmental one."""
    cols = ["id", "objet", "date_notification", "amount", "cpv_division", "procedure"]
    if contracts is None or contracts.empty:
        return pd.DataFrame(columns=cols)
    lacking = contracts["has_environmental"].eq(False) & contracts["considerations_environnementales"].notna()
    return contracts.loc[lacking, cols].sort_values(["date_notification", "id"]).reset_index(drop=True)


CPV_DIVISION_NAMES_SQL = "SELECT division, libelle_fr FROM ref_cpv_divisions"


def _without_env_by_cpv(con: duckdb.DuckDBPyConnection, contracts: pd.DataFrame) -> pd.DataFrame:
    """cpv_division, name, contracts, without_env, share_without, amount_without: where the
    2026 obligation will bite, by CPV division (most contracts without first)."""
    cols = ["cpv_division", "name", "contracts", "without_env", "share_without", "amount_without"]
    if contracts is None or contracts.empty:
        return pd.DataFrame(columns=cols)
    known = contracts[contracts["considerations_environnementales"].notna()].copy()
    known["lacking"] = known["has_environmental"].eq(False)
    known["amount_lacking"] = known["amount"].where(known["lacking"], 0.0)
    g = known.groupby(known["cpv_division"].fillna("??"), sort=False).agg(
        contracts=("lacking", "size"),
        without_env=("lacking", "sum"),
        amount_without=("amount_lacking", "sum"),
    )
    g = g[g["without_env"] > 0].reset_index()
    try:
        names = dict(con.execute(CPV_DIVISION_NAMES_SQL).fetchall())
    except duckdb.Error:  # reference data absent: codes only
        names = {}
    g["name"] = [names.get(c) for c in g["cpv_division"]]
    g["share_without"] = g["without_env"] / g["contracts"]
    g["without_env"] = g["without_env"].astype(int)
    return g.sort_values(["without_env", "amount_without"], ascending=False)[cols].reset_index(drop=True)


# --- small SVG charts ----------------------------------------------------------------

BLUES = ["#eef3f9", "#cfdff0", "#a6c4e3", "#74a3d2", "#4682be", "#23629f", "#0b437a"]
STATUS_FILL = {
    "atteint": "#1b7f3b",
    "en avance": "#23629f",
    "en retard": "#b3261e",
    "non disponible": "#9aa5b1",
}
INCLUSIVE_KIND_LABELS = {
    "EI": "Entreprise d'insertion (EI)",
    "AI": "Association intermédiaire (AI)",
    "ACI": "Atelier et chantier d'insertion (ACI)",
    "ETTI": "Entreprise de travail temporaire d'insertion (ETTI)",
    "EITI": "Entreprise d'insertion par le travail indépendant (EITI)",
    "GEIQ": "Groupement d'employeurs pour l'insertion et la qualification (GEIQ)",
    "EA": "Entreprise adaptée (EA)",
    "EATT": "Entreprise adaptée de travail temporaire (EATT)",
    "ESAT": "Établissement et service d'aide par le travail (ESAT)",
}


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _eur_short(v: float) -> str:
    """A legend amount: 14 118 -> '14 k€', 1 013 112 -> '1,0 M€'."""
    if v >= 1e6:
        return f"{fmt.fmt_number(v / 1e6, 1 if v < 1e7 else 0)} M€"
    if v >= 1e3:
        return f"{fmt.fmt_number(v / 1e3, 0)} k€"
    return fmt.fmt_eur(v)


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap (SVG text does not wrap by itself)."""
    lines, line = [], ""
    for word in str(text).split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def map_classes(df: pd.DataFrame) -> tuple[dict[str, float], list[float]]:
    """Spend by département code and the lower bounds of the colour classes (log scale:
    spend spans orders of magnitude between départements)."""
    values = {str(r.code): float(r.amount) for r in df.itertuples() if r.code is not None and r.amount}
    pos = sorted(v for v in values.values() if v > 0)
    if not pos:
        return values, []
    lo, hi = math.log10(pos[0]), math.log10(pos[-1])
    step = (hi - lo) / len(BLUES) or 1
    return values, [10 ** (lo + i * step) for i in range(len(BLUES))]


def svg_map(df: pd.DataFrame, territory_codes: tuple[str, ...] = (), width: int = 460) -> str:
    """Départements (with overseas insets) coloured by spend (log classes); no legend."""
    from analytics import geo

    gj = geo.france_geojson("departement")
    values, bounds = map_classes(df)
    lons, lats = [], []

    def walk(coords):
        if isinstance(coords[0], (int, float)):
            lons.append(coords[0])
            lats.append(coords[1])
        else:
            for c in coords:
                walk(c)

    for feat in gj["features"]:
        walk(feat["geometry"]["coordinates"])
    k = math.cos(math.radians(46.5))
    x0, x1 = min(lons) * k, max(lons) * k
    y0, y1 = min(lats), max(lats)
    scale = width / (x1 - x0)
    height = int((y1 - y0) * scale) + 1

    def path(coords) -> str:
        parts = []
        polys = coords if isinstance(coords[0][0][0], (list, tuple)) else [coords]
        for poly in polys:
            for ring in poly:
                pts = " ".join(
                    f"{(lon * k - x0) * scale:.1f},{(y1 - lat) * scale:.1f}" for lon, lat, *_ in ring
                )
                parts.append(f"M{pts}Z")
        return " ".join(parts)

    out = [
        f'<svg class="map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">'
    ]
    outlines = []
    for feat in gj["features"]:
        code = str(feat["properties"]["code"])
        v = values.get(code)
        fill = "#f4f4f4"
        if v and v > 0 and bounds:
            fill = BLUES[max(i for i, b in enumerate(bounds) if v >= b * (1 - 1e-9))]
        title = f"{feat['properties'].get('nom', code)} : {fmt.fmt_eur(v) if v else 'aucune dépense'}"
        d = path(feat["geometry"]["coordinates"])
        out.append(
            f'<path d="{d}" fill="{fill}" stroke="#ffffff" stroke-width="0.5"><title>{_esc(title)}</title></path>'
        )
        if code in territory_codes:  # drawn last, so neighbours do not cover the outline
            outlines.append(f'<path d="{d}" fill="none" stroke="#d1495b" stroke-width="2.2"/>')
    out += outlines
    out.append("</svg>")
    return "".join(out)


def map_legend(bounds: list[float]) -> str:
    """The map's colour classes, one per line, plus 'no spend'."""
    if not bounds:
        return ""
    cells = []
    for i, (c, b) in enumerate(zip(BLUES, bounds)):
        upper = f" à {_eur_short(bounds[i + 1])}" if i + 1 < len(bounds) else " et plus"
        cells.append(f'<div class="lg"><i style="background:{c}"></i>{_esc(_eur_short(b))}{upper}</div>')
    cells.append('<div class="lg"><i style="background:#f4f4f4"></i>aucune dépense</div>')
    cells.append('<div class="lg"><i style="background:#fff;border:2px solid #d1495b"></i>territoire</div>')
    return '<div class="legend">' + "".join(cells) + "</div>"


def svg_bars(rows: list[dict], width: int = 680) -> str:
    """Progress towards the target, one row per SPASER indicator.

    rows: label, actual, target, target_year, trajectory, unit, status. Every bar is drawn
    against its own target (the red tick, at the same place on every row) so a 2 % share
    and a 100 % target read alike; the grey tick is this year's trajectory.
    """
    label_w, span, row_h = 250, 250, 34
    x_bar, tick = label_w + 10, 0.8  # the target sits at 80 % of the span; bars stop at 125 %
    height = len(rows) * row_h + 6
    out = [
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" font-size="11" font-family="DejaVu Sans, sans-serif">'
    ]
    for i, r in enumerate(rows):
        y = 4 + i * row_h
        lines = _wrap(r["label"], 40)[:2]
        for j, line in enumerate(lines):
            out.append(
                f'<text x="0" y="{y + 11 + j * 13 + (6 if len(lines) == 1 else 0)}">{_esc(line)}</text>'
            )
        out.append(f'<rect x="{x_bar}" y="{y + 4}" width="{span}" height="16" fill="#eef1f4"/>')
        actual, target, traj = r["actual"], r["target"], r["trajectory"]
        unit = r["unit"]
        if not _missing(actual) and not _missing(target) and target:
            length = max(0.0, min(actual / target * tick, 1.0)) * span
            fill = STATUS_FILL.get(r["status"], "#23629f")
            out.append(f'<rect x="{x_bar}" y="{y + 4}" width="{length:.1f}" height="16" fill="{fill}"/>')
        if not _missing(traj) and not _missing(target) and target:
            tx = x_bar + min(traj / target * tick, 1.0) * span
            out.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y + 1}" y2="{y + 23}" stroke="#333" '
                'stroke-width="1.5" stroke-dasharray="3,2"/>'
            )
        if not _missing(target):
            tx = x_bar + tick * span
            out.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y}" y2="{y + 24}" stroke="#d1495b" stroke-width="2.5"/>'
            )
        tx = x_bar + span + 10
        out.append(
            f'<text x="{tx}" y="{y + 12}" font-weight="bold">{_esc(fmt.fmt_value(actual, unit))}'
            f'<tspan font-weight="normal" fill="{STATUS_FILL.get(r["status"], "#333")}"> · {_esc(r["status"])}'
            "</tspan></text>"
        )
        target_text = (
            "aucune" if _missing(target) else f"{fmt.fmt_value(target, unit)} en {int(r['target_year'])}"
        )
        out.append(f'<text x="{tx}" y="{y + 25}" fill="#555" font-size="10">cible {_esc(target_text)}</text>')
    out.append("</svg>")
    return "".join(out)


# --- HTML ----------------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 16mm 16mm 18mm 16mm;
        @bottom-center { content: "Rapport SPASER — page " counter(page) " / " counter(pages);
                         font-family: "DejaVu Sans", Arial, sans-serif; font-size: 8.5pt; color: #555; }
        @bottom-right { content: string(buyer); font-family: "DejaVu Sans", Arial, sans-serif;
                        font-size: 7.5pt; color: #888; } }
@page :first { @bottom-right { content: none; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 9.5pt; color: #1d2733; line-height: 1.3; }
h1 { font-size: 19pt; color: #0b437a; margin: 0 0 3mm 0; line-height: 1.15; }
h2 { font-size: 13.5pt; color: #0b437a; border-bottom: 1.5px solid #0b437a; padding-bottom: 1mm;
     margin: 6mm 0 2.5mm 0; page-break-after: avoid; }
h3 { font-size: 10.5pt; color: #0b437a; margin: 4.5mm 0 1.5mm 0; page-break-after: avoid; }
.buyer { string-set: buyer content(); }
.newpage { page-break-before: always; }
table { border-collapse: collapse; width: 100%; margin: 1.5mm 0 3mm 0; font-size: 8.5pt; }
thead { display: table-header-group; }
tr, table.keep, div.keep { page-break-inside: avoid; }
th, td { border-bottom: 1px solid #d9dee4; padding: 1.1mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
th.n, td.n { text-align: right; } td.n { white-space: nowrap; }
.card { display: inline-block; vertical-align: top; border: 1px solid #d9dee4; border-radius: 2mm;
        padding: 2mm 2.5mm; width: 56mm; height: 23mm; margin: 0 2.5mm 2.5mm 0; box-sizing: border-box; }
.card:nth-child(3n) { margin-right: 0; }
.card b { display: block; font-size: 13pt; color: #0b437a; margin: 0.5mm 0; }
.card small { color: #555; font-size: 8pt; }
.status { white-space: nowrap; }
.status-atteint { color: #1b7f3b; font-weight: bold; } .status-en-avance { color: #23629f; }
.status-en-retard { color: #b3261e; font-weight: bold; } .status-non-disponible { color: #777; }
.summary { page-break-after: always; }
.note { color: #555; font-size: 8pt; }
.legend { font-size: 8pt; margin: 2mm 0; }
.lg { margin: 0.8mm 0; white-space: nowrap; }
.lg i { display: inline-block; width: 4mm; height: 3mm; margin-right: 1.5mm; border: 1px solid #ccc;
        vertical-align: middle; box-sizing: border-box; }
.two { display: flex; gap: 6mm; align-items: flex-start; page-break-inside: avoid; }
.two > div:first-child { width: 105mm; flex: none; } .two > div:last-child { flex: 1; min-width: 0; }
svg.map { width: 105mm; height: auto; }
svg.bars { width: 100%; height: auto; }
.defs td { font-size: 7.8pt; } .defs td:first-child { width: 48mm; }
.method { font-size: 7.5pt; color: #555; text-align: justify; }
@media screen { body { max-width: 180mm; margin: 10mm auto; } .summary { margin-bottom: 12mm; } }
"""


def _value(key: str, v, defs: dict) -> str:
    return fmt.fmt_value(v, defs.get(key, {}).get("unit", "count"))


def _delta_text(key: str, d, defs: dict) -> str:
    if _missing(d):
        return "—"
    if defs.get(key, {}).get("delta") == "points":
        return fmt.fmt_points(d)
    return fmt.fmt_pct(d, sign=True)


def _table(
    df: pd.DataFrame,
    columns: dict[str, tuple[str, str]],
    limit: int | None = None,
    empty: str = "Aucune donnée pour cette période.",
) -> str:
    """columns: source column -> (header, unit); unit 'text', 'date' or a fmt_value unit."""
    if df is None or df.empty:
        return f'<p class="note">{_esc(empty)}</p>'
    rows = df.head(limit) if limit else df
    head = "".join(
        f"<th{'' if unit in ('text', 'date') else ' class=n'}>{_esc(h)}</th>" for h, unit in columns.values()
    )
    body = []
    for r in rows.to_dict(orient="records"):
        cells = []
        for col, (_, unit) in columns.items():
            v = r.get(col)
            if unit == "text":
                cells.append(f"<td>{_esc('' if _missing(v) else v)}</td>")
            elif unit == "date":
                cells.append(f"<td>{_esc(fmt.fmt_date(v))}</td>")
            else:
                cells.append(f'<td class="n">{_esc(fmt.fmt_value(v, unit))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    keep = " class='keep'" if len(rows) <= 7 else ""  # a short table is not split across pages
    more = ""
    if limit and len(df) > limit:
        more = f"<p class='note'>{limit} premières lignes sur {len(df)} ; la liste complète est dans l'export XLSX.</p>"
    return f"<table{keep}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


SUMMARY_CARDS = (
    "total_spend",
    "social_clause_rate",
    "environmental_clause_rate",
    "reserved_contract_rate",
    "local_share",
    "ess_share",
    "inclusive_share",
    "sme_share",
    "insertion_hours",
)


def _spaser_rows(sp: pd.DataFrame, defs: dict) -> list[dict]:
    return [
        {
            "indicator": r["indicator"],
            "label": r["label"],
            "unit": defs.get(r["indicator"], {}).get("unit", "share"),
            **{
                k: (None if _missing(r[k]) else r[k])
                for k in ("actual", "actual_value", "target", "trajectory")
            },
            "target_year": r["target_year"],
            "previous": None if _missing(r["previous"]) else r["previous"],
            "status": r["status"],
        }
        for r in sp.to_dict(orient="records")
    ]


def render_html(data: dict) -> str:
    """The report as one standalone French HTML page (print CSS for the PDF)."""
    defs = data["definitions"]
    h = data["headline"]
    year = data["year"]
    buyer = data["buyer"] or {}
    sp = _spaser_rows(data["spaser"], defs)
    name = buyer.get("name") or "Acheteur non configuré"
    terr = data["territory_label"] or "territoire non configuré"
    imports = data["imports"]
    as_of = imports["finished_at"].max() if len(imports) else None
    parts = [
        "<!DOCTYPE html><html lang='fr'><head><meta charset='utf-8'>",
        f"<title>Rapport SPASER {year} — {_esc(name)}</title><style>{CSS}</style></head><body>",
        '<section class="summary">',
        f"<h1>Schéma de promotion des achats socialement et écologiquement responsables — rapport {year}</h1>",
        f"<p><b class='buyer'>{_esc(name)}</b> (SIRET {_esc(buyer.get('siret') or '—')}) · territoire de "
        f"référence : {_esc(terr)} · données au {fmt.fmt_date(as_of) if as_of is not None else '—'}, "
        f"rapport établi le {fmt.fmt_date(data['generated_at'])}.</p>",
        "<p class='note'>Rapport établi en application de l'article L.2111-3 du code de la commande "
        "publique. Taux en nombre de marchés notifiés dans l'année (DECP) et en valeur (montant notifié) ; "
        "montants payés issus des mandats (TTC si disponible, sinon HT). Évolutions : en points pour les "
        f"parts et taux, en % pour les montants et volumes, par rapport à {year - 1}.</p>",
        "<h2>Synthèse</h2><div class='cards'>",
    ]
    for key in SUMMARY_CARDS:
        parts.append(
            f"<div class='card'><small>{_esc(defs[key]['label'])}</small><b>{_esc(_value(key, h.get(key), defs))}</b>"
            f"<small>vs {year - 1} : {_esc(_delta_text(key, data['delta'].get(key), defs))}</small></div>"
        )
    parts.append("</div>")
    if sp:
        late = [r["label"] for r in sp if r["status"] == "en retard"]
        ok = [r for r in sp if r["status"] in ("atteint", "en avance")]
        unknown = [r["label"] for r in sp if r["status"] == "non disponible"]
        parts.append("<h2>Cibles SPASER</h2>")
        parts.append(svg_bars(sp))
        parts.append(
            f"<p class='note'>Barre : réalisé {year}, rapporté à la cible (trait rouge) ; pointillé : trajectoire "
            f"{year} vers la cible. Couleur : statut (vert atteint, bleu en avance, rouge en retard).</p>"
        )
        summary = (
            f"<b>{len(ok)} indicateur(s) sur {len(sp)}</b> atteignent leur cible ou suivent leur trajectoire"
        )
        if late:
            summary += f" ; en retard : {_esc(', '.join(late))}"
        if unknown:
            summary += f" ; non disponible(s) : {_esc(', '.join(unknown))}"
        parts.append(f"<p>{summary}.</p>")
    parts.append("</section>")

    # 1-2. SPASER indicators and contracts
    parts.append("<h2>1. Indicateurs du SPASER : réalisé, cible, trajectoire</h2>")
    if not sp:
        parts.append("<p class='note'>Aucune cible saisie.</p>")
    else:
        rows = []
        for r in sp:
            unit, st = r["unit"], r["status"]
            value = "—" if r["actual_value"] is None else fmt.fmt_value(r["actual_value"], "share")
            rows.append(
                f"<tr><td>{_esc(r['label'])}</td><td class='n'>{_esc(fmt.fmt_value(r['actual'], unit))}</td>"
                f"<td class='n'>{_esc(value)}</td>"
                f"<td class='n'>{_esc(fmt.fmt_value(r['trajectory'], unit))}</td>"
                f"<td class='n'>{_esc(fmt.fmt_value(r['target'], unit))} ({int(r['target_year'])})</td>"
                f"<td class='n'>{_esc(fmt.fmt_value(r['previous'], unit))}</td>"
                f"<td class='status status-{st.replace(' ', '-')}'>{_esc(st)}</td></tr>"
            )
        parts.append(
            "<table><thead><tr><th>Indicateur</th><th class=n>Réalisé (nombre)</th><th class=n>En valeur notifiée</th>"
            f"<th class=n>Trajectoire {year}</th><th class=n>Cible</th><th class=n>{year - 1}</th><th>Statut</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
        parts.append(
            "<p class='note'>Statut : « atteint » quand la cible finale est atteinte, « en avance » au-dessus "
            "de la trajectoire de l'année (linéaire de l'année de référence à la cible), « en retard » en "
            "dessous.</p>"
        )
    parts.append("<h2>2. Marchés notifiés et considérations</h2>")
    parts.append(_kv_table(list(SPASER_KEYS), h, data, defs))

    # 3. footprint
    parts.append("<h2 class='newpage'>3. Empreinte géographique et économique</h2><div class='two'><div>")
    t = data["filters"].territory
    codes = tuple(t.codes) if t and t.kind == "dep" else ()
    try:
        parts.append(svg_map(data["by_departement"], codes))
        legend = map_legend(map_classes(data["by_departement"])[1])
    except Exception as exc:  # geometry missing: the tables below still carry the figures
        parts.append(f"<p class='note'>Carte indisponible ({_esc(exc)}).</p>")
        legend = ""
    parts.append(
        f"</div><div><h3 style='margin-top:0'>Dépense payée {year} par département du fournisseur</h3>"
    )
    parts.append(legend)
    parts.append(
        f"<p>Part locale — {_esc(terr)} : <b>{_esc(_value('local_share', h.get('local_share'), defs))}</b><br>"
        f"Non localisée : {_esc(_value('unlocated_share', h.get('unlocated_share'), defs))}<br>"
        f"Distance médiane : {_esc(_value('median_distance_km', h.get('median_distance_km'), defs))}</p>"
        "<p class='note'>Classes en progression géométrique (la dépense va de quelques milliers à des "
        "centaines de millions d'euros selon le département). Les outre-mer figurent en médaillons.</p>"
    )
    parts.append("</div></div>")
    parts.append("<h3>Indicateurs de l'empreinte</h3>")
    parts.append(_kv_table(list(FOOTPRINT_KEYS), h, data, defs))
    parts.append("<h3>Dépense par département (10 premiers)</h3>")
    parts.append(
        _table(
            data["by_departement"],
            {
                "code": ("Code", "text"),
                "name": ("Département", "text"),
                "suppliers": ("Fournisseurs", "count"),
                "amount": ("Montant", "eur"),
                "share": ("Part", "share"),
            },
            10,
        )
    )
    parts.append("<h3>Par taille d'entreprise</h3>")
    parts.append(
        _table(
            data["by_size"],
            {
                "label": ("Taille", "text"),
                "suppliers": ("Fournisseurs", "count"),
                "amount": ("Montant", "eur"),
                "share": ("Part", "share"),
            },
        )
    )
    parts.append("<h3>Structures inclusives par type</h3>")
    inc = data["by_inclusive_kind"]
    if inc is not None and len(inc):
        inc = inc.assign(
            label=[INCLUSIVE_KIND_LABELS.get(k, k) for k in inc["kind"]],
            family=inc["family"].map({"insertion": "insertion", "handicap": "handicap"}),
        )
    parts.append(
        _table(
            inc,
            {
                "label": ("Type de structure", "text"),
                "family": ("Famille", "text"),
                "suppliers": ("Fournisseurs", "count"),
                "amount": ("Montant", "eur"),
                "share": ("Part de la dépense", "share"),
            },
            empty="Aucune dépense auprès de structures inclusives identifiées.",
        )
    )
    parts.append("<h3>Principaux fournisseurs (10 premiers)</h3>")
    parts.append(
        _table(
            data["top_suppliers"],
            {
                "name": ("Fournisseur", "text"),
                "departement_code": ("Dép.", "text"),
                "size_class": ("Taille", "text"),
                "amount": ("Montant", "eur"),
                "share": ("Part", "share"),
            },
            10,
        )
    )
    parts.append(_footprint_html(data.get("footprint") or {}))

    # 4. compliance
    parts.append(_compliance_html(data))

    # 5. sources and coverage
    parts.append("<h2>5. Sources et couverture des données</h2>")
    parts.append(
        _table(
            data["imports"],
            {
                "import_id": ("N°", "text"),
                "kind": ("Type", "text"),
                "file_name": ("Fichier", "text"),
                "finished_at": ("Importé le", "date"),
                "rows_loaded": ("Lignes", "count"),
                "rows_rejected": ("Rejets", "count"),
            },
        )
    )
    parts.append("<div class='keep'><h3>Couverture</h3>" + _coverage_html(h, defs) + "</div>")
    reasons = h.get("reasons") or {}
    if reasons:
        parts.append(
            "<h3>Indicateurs non disponibles</h3><ul>"
            + "".join(
                f"<li>{_esc(defs.get(k, {}).get('label', k))} : {_esc(v)}</li>" for k, v in reasons.items()
            )
            + "</ul>"
        )
    parts.append("<h2 class='newpage'>6. Définitions</h2>")
    common = _common_tail([d["definition"] for d in defs.values()])
    if common:
        parts.append(f"<p class='note'><b>Montants</b> (indicateurs marqués *) : {_esc(common)}</p>")
    parts.append("<table class='defs'><tbody>")
    for k, d in defs.items():
        text = d["definition"]
        if common and text.endswith(common):
            text = text[: -len(common)].rstrip() + "\u00a0*"
        parts.append(
            f"<tr><td><b>{_esc(d['label'])}</b><br><span class='note'>{_esc(k)}</span></td>"
            f"<td>{_esc(text)}</td></tr>"
        )
    parts.append("</tbody></table></body></html>")
    return "".join(parts)


def _common_tail(texts: list[str], marker: str = "Base « ") -> str | None:
    """The closing sentences several definitions share (the note on the amounts' basis),
    printed once above the table instead of in every row."""
    tails = [t[t.index(marker) :] for t in texts if marker in t]
    if not tails:
        return None
    best = max(set(tails), key=tails.count)
    return best if tails.count(best) >= 3 else None


def _footprint_html(fp: dict) -> str:
    if not fp or "error" in fp:
        return ""
    rows = []
    for key, label in (
        ("jobs_direct", "Emplois directs (ETP-année)"),
        ("jobs_indirect", "Emplois indirects"),
        ("jobs_induced", "Emplois induits"),
        ("carbon_tco2e", "Émissions (tCO2e)"),
    ):
        v = fp.get(key)
        if isinstance(v, dict):
            rows.append(
                f"<tr><td>{label}</td><td class='n'>{fmt.fmt_number(v.get('low'))}</td>"
                f"<td class='n'><b>{fmt.fmt_number(v.get('central'))}</b></td>"
                f"<td class='n'>{fmt.fmt_number(v.get('high'))}</td></tr>"
            )
        else:
            reason = (fp.get("reasons") or {}).get(key, "non disponible")
            rows.append(f"<tr><td>{label}</td><td colspan='3'>{_esc(reason)}</td></tr>")
    return (
        "<h3>Emplois soutenus et empreinte carbone (estimation)</h3>"
        "<table><thead><tr><th></th><th class=n>Bas</th><th class=n>Central</th><th class=n>Haut</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table><p class='method'>{_esc(fp.get('method', ''))}</p>"
    )


def _compliance_html(data: dict) -> str:
    year = data["year"]
    env = data["env_2026"]
    out = [
        "<h2>4. Conformité 2026 : marchés sans considération environnementale</h2>",
        "<p class='note'>À partir du 22/08/2026 (loi Climat et Résilience), tout marché doit comporter au "
        "moins une considération environnementale. La règle vise les procédures lancées à partir de cette "
        "date ; les DECP ne portent pas la date de lancement : la date de notification en tient lieu.</p>",
    ]
    if year >= 2026:
        out.append(
            _table(
                env,
                {
                    "id": ("N°", "text"),
                    "objet": ("Objet", "text"),
                    "date_notification": ("Notifié le", "date"),
                    "cpv_division": ("CPV", "text"),
                    "procedure": ("Procédure", "text"),
                    "amount": ("Montant notifié", "eur"),
                },
                60,
                empty="Aucun marché notifié depuis le 22/08/2026 sans considération environnementale.",
            )
        )
    else:
        out.append(f"<p>L'obligation ne s'applique pas encore aux marchés notifiés en {year}.</p>")
    by_cpv = data.get("without_env_by_cpv")
    if by_cpv is not None and len(by_cpv):
        n = len(data["without_env"])
        known = ((data["headline"].get("coverage") or {}).get("environmental_clause_rate") or {}).get("known")
        of = f" sur {fmt.fmt_number(known)} aux considérations connues" if known else ""
        out.append(
            f"<h3>Où porter l'effort : marchés notifiés en {year} sans considération environnementale, par "
            "catégorie d'achat</h3>"
            f"<p>{fmt.fmt_number(n)} marché(s){of} n'ont aucune considération environnementale ; leur liste "
            "est dans l'export XLSX (feuille « Marchés sans environnement »).</p>"
        )
        out.append(
            _table(
                by_cpv,
                {
                    "cpv_division": ("CPV", "text"),
                    "name": ("Catégorie", "text"),
                    "without_env": ("Sans", "count"),
                    "contracts": ("Marchés", "count"),
                    "share_without": ("Part sans", "share"),
                    "amount_without": ("Montant sans", "eur"),
                },
                10,
            )
        )
    return "".join(out)


def _coverage_html(h: dict, defs: dict) -> str:
    """A few plain sentences on what the figures rest on (the full detail is in the XLSX)."""
    cov = h.get("coverage") or {}
    rows = []
    spend = cov.get("total_spend") or {}
    if spend.get("lines") is not None:
        rows.append(
            (
                "Lignes de mandats",
                f"{fmt.fmt_number(spend['lines'])} (dont {fmt.fmt_number(spend.get('lines_ttc'))} en TTC, "
                f"{fmt.fmt_number(spend.get('lines_ht'))} en HT)",
            )
        )
    local = cov.get("local_share") or {}
    if local.get("located_fraction") is not None:
        rows.append(("Dépense localisée (part locale)", fmt.fmt_pct(local["located_fraction"])))
    for key, label in (
        ("sme_share", "Dépense de taille d'entreprise connue"),
        ("ess_share", "Dépense au statut ESS connu"),
    ):
        c = cov.get(key) or {}
        if c.get("known_amount") is not None and c.get("total_amount"):
            rows.append((label, fmt.fmt_pct(c["known_amount"] / c["total_amount"])))
    sup = cov.get("supplier_count") or {}
    if sup.get("unidentified_suppliers") is not None:
        rows.append(("Fournisseurs sans SIRET ni SIREN", fmt.fmt_number(sup["unidentified_suppliers"])))
    soc = cov.get("social_clause_rate") or {}
    if soc.get("contracts") is not None:
        rows.append(
            (
                "Marchés aux considérations connues",
                f"{fmt.fmt_number(soc.get('known'))} sur {fmt.fmt_number(soc['contracts'])}",
            )
        )
    ins = cov.get("insertion_hours") or {}
    if ins.get("rows") is not None:
        rows.append(
            (
                "Suivi des heures d'insertion",
                f"{fmt.fmt_number(ins['rows'])} lignes, {fmt.fmt_number(ins.get('contracts'))} marchés",
            )
        )
    if not rows:
        return "<p class='note'>Couverture non disponible.</p>"
    body = "".join(f"<tr><td>{_esc(a)}</td><td class='n'>{_esc(b)}</td></tr>" for a, b in rows)
    return (
        "<p class='note'>Ce sur quoi reposent les chiffres ; le détail par indicateur figure dans l'export XLSX "
        f"(feuille Couverture).</p><table class='keep'><tbody>{body}</tbody></table>"
    )


def _kv_table(keys: list[str], h: dict, data: dict, defs: dict) -> str:
    year = data["year"]
    rows = []
    for k in keys:
        if k not in defs:
            continue
        rows.append(
            f"<tr><td>{_esc(defs[k]['label'])}</td><td class='n'>{_esc(_value(k, h.get(k), defs))}</td>"
            f"<td class='n'>{_esc(_value(k, data['previous'].get(k), defs))}</td>"
            f"<td class='n'>{_esc(_delta_text(k, data['delta'].get(k), defs))}</td></tr>"
        )
    return (
        f"<table><thead><tr><th>Indicateur</th><th class=n>{year}</th><th class=n>{year - 1}</th>"
        f"<th class=n>Évolution</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


# --- XLSX ----------------------------------------------------------------------------


def xlsx_tables(data: dict) -> dict[str, pd.DataFrame]:
    """One table per sheet; numbers stay numbers (raw engine values)."""
    defs = data["definitions"]
    h, p, d = data["headline"], data["previous"], data["delta"]
    keys = [k for k in defs if k in h]
    headline = pd.DataFrame(
        {
            "indicateur": keys,
            "libellé": [defs[k]["label"] for k in keys],
            "unité": [defs[k]["unit"] for k in keys],
            f"valeur_{data['year']}": [h.get(k) for k in keys],
            f"valeur_{data['year'] - 1}": [p.get(k) for k in keys],
            "évolution": [d.get(k) for k in keys],
            "raison_si_indisponible": [(h.get("reasons") or {}).get(k) for k in keys],
        }
    )
    cov = h.get("coverage") or {}
    coverage = pd.DataFrame(
        [
            {
                "indicateur": k,
                **({"détail": str(v)} if not isinstance(v, dict) else {kk: vv for kk, vv in v.items()}),
            }
            for k, v in cov.items()
        ]
    )
    sources = data["imports"].copy()
    definitions = pd.DataFrame(
        {
            "indicateur": list(defs),
            "libellé": [v["label"] for v in defs.values()],
            "définition": [v["definition"] for v in defs.values()],
        }
    )
    buyer = data["buyer"] or {}
    info = pd.DataFrame(
        {
            "champ": ["acheteur", "SIRET", "territoire", "année", "généré le"],
            "valeur": [
                buyer.get("name"),
                buyer.get("siret"),
                data["territory_label"],
                str(data["year"]),
                data["generated_at"].strftime("%d/%m/%Y %H:%M"),
            ],
        }
    )
    tables = {
        "Acheteur": info,
        "Indicateurs": headline,
        "SPASER": data["spaser"],
        "Départements": data["by_departement"],
        "Régions": data["by_region"],
        "Tailles": data["by_size"],
        "Inclusion": data["by_inclusive_kind"],
        "Secteurs NAF": data["by_naf_section"],
        "Principaux fournisseurs": data["top_suppliers"],
        "Conformité 2026": data["env_2026"],
        "Marchés sans environnement": data["without_env"],
        "Sans environnement par CPV": data["without_env_by_cpv"],
        "Couverture": coverage,
        "Sources": sources,
        "Définitions": definitions,
    }
    fp = data.get("footprint") or {}
    if fp and "error" not in fp:
        tables["Emplois par branche"] = pd.DataFrame(fp.get("by_branch") or [])
    return tables


def write_report(con: duckdb.DuckDBPyConnection, *, year: int, fmt: str = "pdf", out: str | Path) -> Path:
    """Write the report for ``year`` as pdf, html or xlsx; returns the path."""
    from analytics import exports

    out = Path(out)
    if fmt not in ("pdf", "html", "xlsx"):
        raise ValueError(f"Format inconnu « {fmt} » : pdf, html ou xlsx.")
    data = collect(con, year)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "xlsx":
        out.write_bytes(exports.to_xlsx_bytes(xlsx_tables(data)))
    else:
        page = render_html(data)
        if fmt == "html":
            out.write_text(page, encoding="utf-8")
        else:
            from weasyprint import HTML

            HTML(string=page).write_pdf(out)
    return out


def report_bytes(con: duckdb.DuckDBPyConnection, *, year: int, fmt: str = "pdf") -> bytes:
    """The report as bytes (for the dashboard's download button)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_report(con, year=year, fmt=fmt, out=Path(tmp) / f"rapport.{fmt}")
        return path.read_bytes()

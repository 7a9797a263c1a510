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
        "env_2026": indicators.env_2026_compliance(con, f),
        "footprint": footprint,
        "imports": imports,
        "definitions": indicators.DEFINITIONS,
    }


# --- small SVG charts ----------------------------------------------------------------

BLUES = ["#eef3f9", "#cfdff0", "#a6c4e3", "#74a3d2", "#4682be", "#23629f", "#0b437a"]


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def svg_map(df: pd.DataFrame, territory_codes: tuple[str, ...] = (), width: int = 460) -> str:
    """Départements (with overseas insets) coloured by spend (quantile classes)."""
    from analytics import geo

    gj = geo.france_geojson("departement")
    values = {str(r.code): float(r.amount) for r in df.itertuples() if r.code is not None and r.amount}
    pos = sorted(v for v in values.values() if v > 0)
    # log classes: spend spans orders of magnitude between départements
    if pos:
        lo, hi = math.log10(pos[0]), math.log10(pos[-1])
        step = (hi - lo) / len(BLUES) or 1
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
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
    ]
    for feat in gj["features"]:
        code = str(feat["properties"]["code"])
        v = values.get(code)
        if v and v > 0 and pos:
            idx = min(int((math.log10(v) - lo) / step), len(BLUES) - 1)
            fill = BLUES[idx]
        else:
            fill = "#f4f4f4"
        stroke, sw = ("#d1495b", 2.2) if code in territory_codes else ("#ffffff", 0.5)
        title = f"{feat['properties'].get('nom', code)} : {fmt.fmt_eur(v) if v else 'aucune dépense'}"
        out.append(
            f'<path d="{path(feat["geometry"]["coordinates"])}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{sw}"><title>{_esc(title)}</title></path>'
        )
    out.append("</svg>")
    legend = ""
    if pos:
        cells = []
        for i, c in enumerate(BLUES):
            a = 10 ** (lo + i * step)
            cells.append(f'<span class="lg"><i style="background:{c}"></i>≥ {_esc(fmt.fmt_eur(a))}</span>')
        legend = '<div class="legend">' + "".join(cells) + "</div>"
    return "".join(out) + legend


def svg_bars(rows: list[tuple[str, float | None, float | None]], width: int = 680) -> str:
    """Horizontal bars (actual) with a target tick, for shares in [0, 1]."""
    bar_h, gap, label_w = 18, 12, 300
    height = len(rows) * (bar_h + gap) + 10
    out = [
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-size="11" font-family="DejaVu Sans, sans-serif">'
    ]
    span = width - label_w - 60
    for i, (label, actual, target) in enumerate(rows):
        y = 5 + i * (bar_h + gap)
        out.append(f'<text x="0" y="{y + 13}">{_esc(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{span}" height="{bar_h}" fill="#eef1f4"/>')
        if actual is not None:
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{max(0.0, min(actual, 1.0)) * span:.1f}" height="{bar_h}" fill="#23629f"/>'
            )
            out.append(f'<text x="{label_w + span + 6}" y="{y + 13}">{_esc(fmt.fmt_pct(actual))}</text>')
        else:
            out.append(f'<text x="{label_w + 6}" y="{y + 13}" fill="#666">non disponible</text>')
        if target is not None:
            tx = label_w + max(0.0, min(target, 1.0)) * span
            out.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y - 3}" y2="{y + bar_h + 3}" stroke="#d1495b" stroke-width="2.5"/>'
            )
    out.append("</svg>")
    return "".join(out)


# --- HTML ----------------------------------------------------------------------------

CSS = """
@page { size: A4; margin: 18mm 16mm 20mm 16mm;
        @bottom-center { content: "Rapport SPASER — page " counter(page) " / " counter(pages);
                         font-size: 9pt; color: #555; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; color: #1d2733; }
h1 { font-size: 20pt; color: #0b437a; margin: 0 0 4mm 0; }
h2 { font-size: 14pt; color: #0b437a; border-bottom: 1.5px solid #0b437a; padding-bottom: 1mm;
     margin-top: 7mm; page-break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0 4mm 0; font-size: 9pt; }
th, td { border-bottom: 1px solid #d9dee4; padding: 1.2mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
td.n { text-align: right; white-space: nowrap; }
.cards { display: flex; flex-wrap: wrap; gap: 3mm; }
.card { border: 1px solid #d9dee4; border-radius: 2mm; padding: 2.5mm; width: 52mm; }
.card b { display: block; font-size: 14pt; color: #0b437a; }
.card small { color: #555; }
.status-atteint { color: #1b7f3b; font-weight: bold; } .status-en-avance { color: #1b7f3b; }
.status-en-retard { color: #b3261e; font-weight: bold; } .status-non-disponible { color: #777; }
.summary { page-break-after: always; }
.note { color: #555; font-size: 8.5pt; }
.legend { font-size: 8pt; margin-top: 1mm; } .lg { margin-right: 3mm; white-space: nowrap; }
.lg i { display: inline-block; width: 3mm; height: 3mm; margin-right: 1mm; border: 1px solid #ccc; }
.two { display: flex; gap: 6mm; align-items: flex-start; }
.two > div:first-child { width: 88mm; flex: none; } .two > div:last-child { flex: 1; min-width: 0; }
.two svg { width: 88mm; height: auto; }
svg.bars { width: 100%; height: auto; }
"""


def _value(key: str, v, defs: dict) -> str:
    return fmt.fmt_value(v, defs.get(key, {}).get("unit", "count"))


def _delta_text(key: str, d, defs: dict) -> str:
    if d is None:
        return "—"
    if defs.get(key, {}).get("delta") == "points":
        return fmt.fmt_points(d)
    return fmt.fmt_pct(d, sign=True)


def _table(df: pd.DataFrame, columns: dict[str, tuple[str, str]], limit: int | None = None) -> str:
    """columns: source column -> (header, unit)."""
    if df is None or df.empty:
        return '<p class="note">Aucune donnée pour cette période.</p>'
    rows = df.head(limit) if limit else df
    head = "".join(f"<th>{_esc(h)}</th>" for h, _ in columns.values())
    body = []
    for r in rows.to_dict(orient="records"):
        cells = []
        for col, (_, unit) in columns.items():
            v = r.get(col)
            if unit == "text":
                cells.append(
                    f"<td>{_esc('' if v is None or (isinstance(v, float) and math.isnan(v)) else v)}</td>"
                )
            elif unit == "date":
                cells.append(f"<td>{_esc(fmt.fmt_date(v))}</td>")
            else:
                cells.append(f'<td class="n">{_esc(fmt.fmt_value(v, unit))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(data: dict) -> str:
    """The report as one standalone French HTML page (print CSS for the PDF)."""
    defs = data["definitions"]
    h = data["headline"]
    year = data["year"]
    buyer = data["buyer"] or {}
    sp = data["spaser"]
    name = buyer.get("name") or "Acheteur non configuré"
    terr = data["territory_label"] or "territoire non configuré"
    parts = [
        "<!DOCTYPE html><html lang='fr'><head><meta charset='utf-8'>",
        f"<title>Rapport SPASER {year} — {_esc(name)}</title><style>{CSS}</style></head><body>",
        '<section class="summary">',
        f"<h1>Schéma de promotion des achats socialement et écologiquement responsables — rapport {year}</h1>",
        f"<p><b>{_esc(name)}</b> (SIRET {_esc(buyer.get('siret') or '—')}) · territoire de référence : "
        f"{_esc(terr)} · données arrêtées au {fmt.fmt_date(data['generated_at'])}.</p>",
        "<p class='note'>Rapport établi en application de l'article L.2111-3 du code de la commande "
        "publique. Taux en nombre de marchés notifiés dans l'année (DECP) et en valeur (montant notifié) ; "
        "montants payés issus des mandats (TTC si disponible, sinon HT).</p>",
        "<h2>Synthèse</h2><div class='cards'>",
    ]
    for key in (
        "total_spend",
        "social_clause_rate",
        "environmental_clause_rate",
        "reserved_contract_rate",
        "local_share",
        "ess_share",
        "inclusive_share",
        "sme_share",
        "insertion_hours",
    ):
        parts.append(
            f"<div class='card'><small>{_esc(defs[key]['label'])}</small><b>{_esc(_value(key, h.get(key), defs))}</b>"
            f"<small>vs {year - 1} : {_esc(_delta_text(key, data['delta'].get(key), defs))}</small></div>"
        )
    parts.append("</div>")
    if not sp.empty:
        parts.append("<h2>Cibles SPASER</h2>")
        parts.append(svg_bars([(r.label, r.actual, r.target) for r in sp.itertuples()]))
        parts.append("<p class='note'>Barre : réalisé " + str(year) + " ; trait rouge : cible finale.</p>")
    parts.append("</section>")

    # SPASER indicators
    parts.append("<h2>1. Indicateurs du SPASER : réalisé, cible, trajectoire</h2>")
    if sp.empty:
        parts.append("<p class='note'>Aucune cible saisie.</p>")
    else:
        rows = []
        for r in sp.to_dict(orient="records"):
            unit = defs.get(r["indicator"], {}).get("unit", "share")
            st = r["status"]
            rows.append(
                f"<tr><td>{_esc(r['label'])}</td><td class='n'>{_esc(fmt.fmt_value(r['actual'], unit))}</td>"
                f"<td class='n'>{_esc(fmt.fmt_value(r['actual_value'], 'share')) if r['actual_value'] is not None else '—'}</td>"
                f"<td class='n'>{_esc(fmt.fmt_value(r['trajectory'], unit))}</td>"
                f"<td class='n'>{_esc(fmt.fmt_value(r['target'], unit))} ({r['target_year']})</td>"
                f"<td class='n'>{_esc(fmt.fmt_value(r['previous'], unit))}</td>"
                f"<td class='status-{st.replace(' ', '-')}'>{_esc(st)}</td></tr>"
            )
        parts.append(
            "<table><thead><tr><th>Indicateur</th><th>Réalisé (nombre)</th><th>En valeur notifiée</th>"
            f"<th>Trajectoire {year}</th><th>Cible</th><th>{year - 1}</th><th>Statut</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
    parts.append("<h2>2. Marchés notifiés et considérations</h2>")
    parts.append(_kv_table([k for k in SPASER_KEYS], h, data, defs))

    # footprint
    parts.append("<h2>3. Empreinte géographique et économique</h2><div class='two'><div>")
    codes = (
        tuple(data["filters"].territory.codes)
        if data["filters"].territory and data["filters"].territory.kind == "dep"
        else ()
    )
    try:
        parts.append(svg_map(data["by_departement"], codes))
    except Exception as exc:  # geometry missing: the table below still carries the figures
        parts.append(f"<p class='note'>Carte indisponible ({_esc(exc)}).</p>")
    parts.append(
        "<p class='note'>Dépense payée par département du fournisseur ; contour rouge : territoire.</p></div><div>"
    )
    parts.append(_kv_table(list(FOOTPRINT_KEYS), h, data, defs))
    parts.append("</div></div>")
    parts.append("<h3>Dépense par département (10 premiers)</h3>")
    parts.append(
        _table(
            data["by_departement"],
            {
                "code": ("Code", "text"),
                "name": ("Département", "text"),
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
            {"label": ("Taille", "text"), "amount": ("Montant", "eur"), "share": ("Part", "share")},
        )
    )
    parts.append("<h3>Structures inclusives par type</h3>")
    parts.append(
        _table(
            data["by_inclusive_kind"],
            {
                c: (c, "eur" if c == "amount" else "share" if c == "share" else "text")
                for c in data["by_inclusive_kind"].columns
                if c in ("code", "label", "amount", "share")
            },
        )
    )
    fp = data.get("footprint") or {}
    if fp and "error" not in fp:
        parts.append("<h3>Emplois soutenus et empreinte carbone (estimation)</h3>")
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
                    f"<td class='n'><b>{fmt.fmt_number(v.get('central'))}</b></td><td class='n'>{fmt.fmt_number(v.get('high'))}</td></tr>"
                )
            else:
                reason = (fp.get("reasons") or {}).get(key, "non disponible")
                rows.append(f"<tr><td>{label}</td><td colspan='3'>{_esc(reason)}</td></tr>")
        parts.append(
            "<table><thead><tr><th></th><th>Bas</th><th>Central</th><th>Haut</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
        parts.append(f"<p class='note'>{_esc(fp.get('method', ''))}</p>")

    # compliance
    env = data["env_2026"]
    parts.append("<h2>4. Conformité 2026 : marchés sans considération environnementale</h2>")
    parts.append(
        "<p class='note'>Marchés notifiés à partir du 22/08/2026 sans considération environnementale. "
        "La règle (loi Climat et Résilience) vise les procédures lancées à partir de cette date ; "
        "les DECP ne portent pas la date de lancement : la date de notification en tient lieu.</p>"
    )
    parts.append(
        _table(
            env,
            {
                c: (c, "date" if "date" in c else "eur" if c in ("amount", "montant") else "text")
                for c in env.columns
                if c in ("id", "objet", "date_notification", "amount", "cpv_division", "procedure")
            },
            60,
        )
    )

    # sources and definitions
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
    cov = data["headline"].get("coverage") or {}
    reasons = data["headline"].get("reasons") or {}
    if reasons:
        parts.append(
            "<p><b>Indicateurs non disponibles :</b></p><ul>"
            + "".join(
                f"<li>{_esc(defs.get(k, {}).get('label', k))} : {_esc(v)}</li>" for k, v in reasons.items()
            )
            + "</ul>"
        )
    if cov:
        parts.append(
            f"<p class='note'>Couverture : {len(cov)} indicateurs reposent sur une part identifiée des données ; "
            "le détail figure dans l'export XLSX (feuille Couverture).</p>"
        )
    parts.append("<h2>6. Définitions</h2><table><tbody>")
    for k, d in defs.items():
        parts.append(
            f"<tr><td><b>{_esc(d['label'])}</b><br><span class='note'>{_esc(k)}</span></td><td>{_esc(d['definition'])}</td></tr>"
        )
    parts.append("</tbody></table></body></html>")
    return "".join(parts)


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
        f"<table><thead><tr><th>Indicateur</th><th>{year}</th><th>{year - 1}</th><th>Évolution</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
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
        "Conformité 2026": data["env_2026"],
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

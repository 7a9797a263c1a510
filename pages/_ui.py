"""What every page shares: the filters of the frame, headline cards, tables with their
downloads, charts, empty states, and the guard that keeps tracebacks away from users.
Not a page (not registered in the navigation)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import traceback
import urllib.parse

import pandas as pd
import streamlit as st

from analytics import cached, exports
from analytics.filters import Filters
from analytics.fmt import fmt_eur, fmt_number, fmt_pct, fmt_value

log = logging.getLogger("empreinte")

SHARE_UNITS = {"share"}
MAX_ROWS_ON_SCREEN = 1_000

# Units by key prefix/suffix when the engine's DEFINITIONS do not say.
_GUESS = (
    ("_share", "share"),
    ("_rate", "share"),
    ("_value", "share"),
    ("total_spend", "eur"),
    ("_count", "count"),
    ("_km", "km"),
    ("_days", "days"),
    ("_hours", "hours"),
    ("_fte", "fte"),
    ("hhi", "index"),
)

IMPORT_LABELS = {
    "import_id": "N°",
    "kind": "Type",
    "file": "Fichier",
    "status": "État",
    "rows_read": "Lues",
    "contracts": "Contrats",
    "rows_loaded": "Chargées",
    "rows_rejected": "Rejetées",
    "rows_duplicate": "Doublons",
    "amount_total": "Montant",
    "finished_at": "Date",
    "who": "Par",
    "undone_at": "Annulé le",
    "started_at": "Début",
    "sha256": "Empreinte SHA-256",
}

IMPORT_HINTS = {
    "mandats": "Importez vos mandats (export comptable) depuis la page **Import**.",
    "decp": "Importez vos marchés (DECP, registre des contrats) depuis la page **Import**.",
    "sirene": "Importez un extrait SIRENE de vos fournisseurs depuis la page **Import** "
    "pour les localiser et les classer.",
    "structures": "Importez une liste de structures inclusives (SIAE, EA, ESAT) depuis la page **Import**.",
    "insertion": "Importez le fichier de suivi des heures d'insertion depuis la page **Import**.",
}


def requested_path() -> str | None:
    """The last segment of the address in the browser (``spaser`` for …/spaser), or None."""
    try:
        url = st.context.url
    except Exception:  # no browser session (AppTest, bare mode)
        return None
    path = urllib.parse.urlparse(url or "").path.rstrip("/")
    return path.rsplit("/", 1)[-1] or None


def filters() -> Filters:
    """The filters chosen in the sidebar (built once per run by the frame).

    A page opened by its address as the very first request to a freshly started server
    runs without the frame (Streamlit serves pages/ directly until dashboard.py has run
    st.navigation once) and had no filters: it failed with an error box. It now goes to
    the frame with the address it was asked for, and the frame opens that page."""
    if "filters" not in st.session_state:
        st.session_state["requested_path"] = requested_path()
        st.switch_page("dashboard.py")
    return st.session_state["filters"]


def page_drawn() -> None:
    """Keep the calls the page made for the next start of the server (cached.resume)."""
    try:
        cached.page_drawn()
    except Exception:  # never a reason for a page to fail
        log.debug("appels récents non enregistrés", exc_info=True)


def guard(body, page_name: str) -> None:
    """Run a page body; an unexpected error becomes one French sentence, the traceback
    goes to the log."""
    try:
        body()
        page_drawn()
    except Exception as exc:  # a user never sees a traceback
        log.error("Erreur sur la page %s :\n%s", page_name, traceback.format_exc())
        st.error(
            f"Cette page n'a pas pu être affichée entièrement ({type(exc).__name__}). "
            "L'incident est consigné dans le journal du serveur ; essayez une autre période "
            "ou signalez-le à l'administrateur."
        )


def fragment(page_name: str):
    """``st.fragment`` whose body is guarded like a page (a fragment reruns on its own)."""

    def deco(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            guard(lambda: fn(*args, **kwargs), page_name)

        return st.fragment(inner)

    return deco


def empty(kind: str, what: str = "Aucune donnée pour cette sélection.") -> None:
    st.info(f"{what} {IMPORT_HINTS.get(kind, '')}".strip(), icon=":material/upload_file:")


# --- indicators ----------------------------------------------------------------------


def definitions() -> dict:
    mod = cached.resolve("indicators.DEFINITIONS")
    return mod if isinstance(mod, dict) else {}


def unit_of(key: str) -> str:
    d = definitions().get(key)
    if isinstance(d, dict) and d.get("unit"):
        return d["unit"]
    for suffix, unit in _GUESS:
        if key.endswith(suffix) or key == suffix:
            return unit
    return "count"


# Card titles are cut after ~27 characters: shorter names, the full one in the tooltip.
SHORT_LABELS = {
    "social_clause_rate": "Clause sociale",
    "environmental_clause_rate": "Clause environnementale",
    "social_clause_rate_value": "Clause sociale (montant)",
    "environmental_clause_rate_value": "Clause environ. (montant)",
    "reserved_contract_rate": "Marchés réservés",
    "new_supplier_share": "Nouveaux fournisseurs",
    "top10_share": "Part des 10 premiers",
    "insertion_hours": "Heures d'insertion",
    "insertion_fte": "ETP d'insertion",
    "hhi": "Concentration (HHI)",
    "median_distance_km": "Distance médiane",
    "payment_within_30_share": "Payé en 30 jours",
    "payment_delay_days": "Délai de paiement",
    "sme_count_share": "PME (en nombre)",
    "env_2026_compliance_count": "Sans clause environ. 2026",
    "single_offer_rate": "Offre unique",
    "innovative_rate": "Marchés innovants",
    "sme_advance_rate": "Avance ≥ 30 % aux PME",
}


def short_label(key: str) -> str:
    return SHORT_LABELS.get(key) or label_of(key)


def label_of(key: str, default: str | None = None) -> str:
    d = definitions().get(key)
    if isinstance(d, dict) and (d.get("label") or d.get("label_fr")):
        return d.get("label") or d["label_fr"]
    return default or key


def _num(v):
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def delta_text(key: str, now, before) -> str | None:
    """Points for shares, % for amounts and counts; None when not comparable."""
    a, b = _num(now), _num(before)
    if a is None or b is None:
        return None
    if unit_of(key) in SHARE_UNITS:
        return f"{fmt_number((a - b) * 100, 1, sign=True)} pt"
    if b == 0:
        return None
    return f"{fmt_number((a - b) / abs(b) * 100, 1, sign=True)} %"


def help_text(key: str, head: dict) -> str:
    """The tooltip of a card: definition, basis, coverage, or the reason it is missing."""
    d = definitions().get(key) or {}
    parts = [f"**{label_of(key)}**"]
    if d.get("definition"):
        parts.append(str(d["definition"]))
    if d.get("basis"):
        parts.append(f"Base : {d['basis']}.")
    cov = (head.get("coverage") or {}).get(key)
    if cov is not None:
        parts.append(f"Couverture : {_coverage_text(cov)}.")
    reason = (head.get("reasons") or {}).get(key)
    if reason:
        parts.append(f"Non disponible : {reason}")
    return "\n\n".join(parts)


COVERAGE_LABELS = {
    "basis": "base",
    "lines": "lignes",
    "lines_ttc": "lignes en TTC",
    "lines_ht": "lignes en HT",
    "unidentified_suppliers": "fournisseurs non identifiés",
    "territory": "territoire",
    "local_amount": "dépense locale",
    "located_amount": "dépense localisée",
    "total_amount": "dépense totale",
    "unlocated_amount": "dépense non localisée",
    "located_fraction": "part localisée",
    "known_amount": "dépense au statut connu",
    "identified_amount": "dépense identifiée",
    "known_suppliers": "fournisseurs de taille connue",
    "suppliers": "fournisseurs",
    "new_suppliers": "nouveaux fournisseurs",
    "history_from": "historique depuis",
    "amount": "dépense",
    "excluded_suppliers": "fournisseurs exclus",
    "weighted_amount": "dépense localisée à la commune",
    "positive_amount": "dépense positive",
    "contracts": "contrats",
    "rows": "lignes de suivi",
    "hours_per_fte": "heures par ETP",
    "lines_with_dates": "lignes datées",
    "payment_lines": "lignes de paiement",
}
_SKIP = {"buyer_lon", "buyer_lat"}


def _coverage_text(cov) -> str:
    if not isinstance(cov, dict):
        return fmt_pct(cov) if isinstance(cov, float) and 0 <= cov <= 1 else str(cov)
    bits = []
    for k, v in cov.items():
        if k in _SKIP or v is None:
            continue
        label = COVERAGE_LABELS.get(k, k.replace("_", " "))
        if k == "basis":
            v = {"paid": "payé", "notified": "notifié"}.get(v, v)
        elif isinstance(v, (int, float)) and (k.endswith("amount") or k == "amount"):
            v = fmt_eur(v)
        elif isinstance(v, float) and (k.endswith("fraction") or k.endswith("share")):
            v = fmt_pct(v)
        elif isinstance(v, (int, float)):
            v = fmt_number(v, 0)
        bits.append(f"{label} {v}")
    return ", ".join(bits)


def cards(
    keys: list[str],
    head: dict,
    prev: dict | None,
    *,
    per_row: int = 4,
    inverse: tuple[str, ...] = (
        "unlocated_share",
        "single_offer_rate",
        "top10_share",
        "hhi",
        "payment_delay_days",
    ),
) -> None:
    """Headline cards with the change against the previous period and a tooltip."""
    for start in range(0, len(keys), per_row):
        cols = st.columns(per_row)
        for col, key in zip(cols, keys[start : start + per_row]):
            value = head.get(key)
            delta = delta_text(key, value, (prev or {}).get(key)) if prev is not None else None
            shown = fmt_value(value, unit_of(key))
            tip = help_text(key, head)
            if unit_of(key) == "eur" and value is not None and abs(float(value)) >= 1e6:
                # a card is narrow: millions in M€, the exact amount in the tooltip
                shown = f"{fmt_number(float(value) / 1e6, 1)} M€"
                tip = f"{fmt_eur(value)}. {tip or ''}".strip()
            col.metric(
                short_label(key),
                shown,
                delta=delta,
                delta_color="inverse" if key in inverse else "normal",
                help=tip,
                border=True,
            )


# --- tables and charts ---------------------------------------------------------------


def table(
    df: pd.DataFrame | None,
    key: str,
    *,
    title: str | None = None,
    money: tuple[str, ...] = (),
    shares: tuple[str, ...] = (),
    ints: tuple[str, ...] = (),
    dates: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
    height: int | None = None,
    empty_kind: str = "mandats",
    display: pd.DataFrame | None = None,
) -> None:
    """A table in French format with CSV and XLSX downloads of the same rows (numbers kept).

    ``display``: an already formatted version shown on screen instead of ``df``."""
    if title:
        st.markdown(f"**{title}**")
    if df is None or not len(df):
        empty(empty_kind)
        return
    labels = labels or {}
    shown = (display if display is not None else df).head(MAX_ROWS_ON_SCREEN).copy()
    fmt = {c: fmt_eur for c in money if c in shown}
    fmt.update({c: fmt_pct for c in shares if c in shown})
    fmt.update({c: (lambda v: fmt_number(v, 0)) for c in ints if c in shown})
    fmt.update({c: _date_cell for c in dates if c in shown})
    for c in shown.columns:
        if c in fmt:
            continue
        dtype = shown[c].dtype
        if pd.api.types.is_bool_dtype(dtype) or (pd.api.types.is_object_dtype(dtype) and _all_bool(shown[c])):
            shown[c] = shown[c].map(_bool_cell).astype(str)  # oui / non, not a checkbox
        elif not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype)):
            shown[c] = shown[c].map(_text_cell).astype(str)
        elif pd.api.types.is_integer_dtype(dtype):
            fmt[c] = lambda v: fmt_number(v, 0)
        elif pd.api.types.is_float_dtype(dtype):
            fmt[c] = lambda v: fmt_number(v, 2 if abs(v or 0) < 10 else 1 if abs(v or 0) < 100 else 0)
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            fmt[c] = _date_cell
    styler = shown.style.format(fmt, na_rep="–").hide(axis="index")
    config = {c: st.column_config.Column(labels[c]) for c in shown.columns if c in labels}
    st.dataframe(
        styler,
        hide_index=True,
        column_config=config,
        height=height or "auto",
        key=f"{key}_df",
        placeholder="–",
    )
    if len(df) > MAX_ROWS_ON_SCREEN:
        st.caption(
            f"{fmt_number(MAX_ROWS_ON_SCREEN)} premières lignes sur {fmt_number(len(df))} : "
            "le téléchargement contient tout."
        )
    downloads(
        df.rename(columns=labels),
        key,
        title,
        money=tuple(labels.get(c, c) for c in money),
        shares=tuple(labels.get(c, c) for c in shares),
    )


def downloads(df: pd.DataFrame, key: str, title: str | None = None, *, money=(), shares=()) -> None:
    """CSV and XLSX download buttons for a table (formula-like text neutralised)."""
    stem = exports.file_stem(title or key)
    row = st.container(horizontal=True, gap="small")
    row.download_button(
        "CSV",
        data=lambda: exports.to_csv_bytes(df),  # built on click: 100k rows cost seconds per run
        file_name=f"{stem}.csv",
        mime="text/csv",
        key=f"{key}_csv",
        icon=":material/download:",
        on_click="ignore",
    )
    row.download_button(
        "XLSX",
        data=lambda: exports.to_xlsx_bytes(df, money=tuple(money), shares=tuple(shares)),
        file_name=f"{stem}.xlsx",
        mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        key=f"{key}_xlsx",
        icon=":material/download:",
        on_click="ignore",
    )


def _all_bool(col: pd.Series) -> bool:
    vals = col.dropna()
    return len(vals) > 0 and all(isinstance(v, bool) for v in vals.head(50))


def _bool_cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "–"
    return "oui" if v else "non"


def _text_cell(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) or "–"
    if hasattr(v, "tolist") and not isinstance(v, str):
        return ", ".join(str(x) for x in v.tolist()) or "–"
    if isinstance(v, (dt.date, dt.datetime)):
        return _date_cell(v)
    return str(v)


def _date_cell(v) -> str:
    from analytics.fmt import fmt_date

    try:
        return fmt_date(v)
    except (TypeError, ValueError, AttributeError):
        return "–" if v is None else str(v)


def chart(fig, key: str) -> None:
    """A plotly chart, toolbar with the PNG download, French number format."""
    st.plotly_chart(
        fig,
        key=key,
        width="stretch",
        theme=None,
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "scale": 2, "filename": key},
            "modeBarButtonsToRemove": ["lasso2d", "select2d"],
        },
    )


def year_headlines(f: Filters, year: int | None = None) -> dict[int, dict]:
    """{year: light headline of the whole calendar year, with the other filters of ``f``}
    for every year of data (and ``year``), the year before the first, and the SPASER base
    year: the years the SPASER page's tables read. One cached engine call that the SPASER
    page and the ESS page's trend share (the same key from both pages)."""
    from analytics import spaser

    years = sorted({*cached.facets()["years"], *([year] if year else [])})
    if not years:
        return {}
    wanted = spaser.years_needed(years, cached.call("spaser.base_year"))
    periods = tuple(f.with_(date_from=dt.date(y, 1, 1), date_to=dt.date(y, 12, 31)) for y in wanted)
    return dict(zip(wanted, cached.call("indicators.headlines", periods, light=True)))


def period_label(f: Filters) -> str:
    from analytics.fmt import fmt_date

    return f"du {fmt_date(f.date_from)} au {fmt_date(f.date_to)}"

"""Fournisseurs: a searchable table of the period's suppliers with their classification
(and its reasons), spend and contracts; the detail of one supplier."""

import datetime as dt

import pandas as pd
import streamlit as st

from analytics import cached, charts
from analytics.fmt import fmt_eur, fmt_number
from pages import _ui

CLASSES = {"ess": "ESS", "inclusive": "Structure inclusive", "pme": "PME (dont TPE)"}
LABELS = {
    "name": "Fournisseur",
    "siret": "SIRET",
    "amount": "Montant",
    "share": "Part",
    "contracts": "Contrats",
    "lines": "Lignes",
    "departement_code": "Dép.",
    "commune_code": "Commune",
    "local": "Local",
    "ess": "ESS",
    "ess_reason": "Motif ESS",
    "inclusive_kind": "Inclusif",
    "size_class": "Taille",
    "naf_label": "Activité (NAF)",
    "first_date": "Premier paiement",
}
COLUMNS = [
    "name",
    "siret",
    "amount",
    "share",
    "contracts",
    "lines",
    "departement_code",
    "local",
    "ess",
    "ess_reason",
    "inclusive_kind",
    "size_class",
    "naf_label",
]
REASONS = {
    "sirene": "indicateur ESS de SIRENE",
    "forme_juridique": "forme juridique de l'ESS",
    "liste": "liste ESS importée",
}


def body() -> None:
    f = _ui.filters()
    st.title("Fournisseurs")
    c1, c2 = st.columns([2, 2])
    search = c1.text_input(
        "Rechercher (nom, SIRET)", key="sup_search", placeholder="ex. 'transports' ou 35600000000048"
    )
    classes = c2.multiselect(
        "Catégorie", list(CLASSES), format_func=CLASSES.get, key="sup_classes", placeholder="Toutes"
    )
    g = f.with_(supplier_classes=tuple(classes)) if classes else f
    df = cached.call("indicators.suppliers_table", g, search=search or None)
    if df is None or not len(df):
        _ui.empty("mandats", "Aucun fournisseur ne correspond à la sélection.")
        return
    st.caption(
        f"{fmt_number(len(df))} fournisseurs, {fmt_eur(df['amount'].sum())} sur la période "
        f"{_ui.period_label(f)}."
    )
    _ui.table(
        df[[c for c in COLUMNS if c in df]],
        "sup_table",
        money=("amount",),
        shares=("share",),
        ints=("contracts", "lines"),
        labels=LABELS,
        height=420,
    )
    detail(f, df)


def detail(f, df: pd.DataFrame) -> None:
    st.subheader("Fiche fournisseur")
    top = df.head(500)
    names = dict(zip(top["supplier_key"], top["name"].fillna(top["supplier_key"])))
    key = st.selectbox(
        "Fournisseur",
        list(names),
        format_func=lambda k: f"{names[k]} ({k})",
        key="sup_detail",
        index=0,
        placeholder="Choisir un fournisseur du tableau…",
    )
    if not key:
        return
    info = cached.call_or_none("referential.supplier_info", key) or {}
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"### {info.get('name') or names[key]}")
        facts = {
            "SIRET": info.get("siret") or "non identifié",
            "Localisation": _place(info),
            "Source de la localisation": info.get("location_source") or "–",
            "ESS": "oui" if info.get("ess") else "non" if info.get("ess") is False else "inconnu",
            "Motif ESS": REASONS.get(info.get("ess_reason"), info.get("ess_reason") or "–"),
            "Structure inclusive": info.get("inclusive_kind") or "non",
            "Taille": info.get("size_class") or "inconnue",
            "Activité": f"{info.get('naf') or ''} {info.get('naf_label') or ''}".strip() or "inconnue",
            "Forme juridique": info.get("categorie_juridique_label") or "–",
        }
        st.markdown("\n".join(f"- **{k}** : {v}" for k, v in facts.items()))
        hist = history(f, key)
        _ui.chart(charts.columns(hist, "year", "amount", title="Montant par année"), "sup_history")
    with right:
        if info.get("lon") is not None and info.get("lat") is not None:
            pts = pd.DataFrame([{"lon": info["lon"], "lat": info["lat"], "name": info.get("name") or key}])
            dep = info.get("departement_code")
            _ui.chart(
                charts.points_map(
                    pts, departement=dep, geojson_url=dep and cached.geojson_url("commune", dep)
                ),
                "sup_map",
            )
        else:
            st.info("Fournisseur non localisé : un extrait SIRENE le situerait.")


def history(f, key: str) -> pd.DataFrame:
    """The supplier's spend per year over every year of data (one query, every year)."""
    years = cached.facets()["years"]
    if not years:
        return pd.DataFrame({"year": [], "amount": []})
    whole = f.with_(date_from=dt.date(min(years), 1, 1), date_to=dt.date(max(years), 12, 31))
    got = cached.call("indicators.supplier_history", whole, key)
    amounts = dict(zip(got["year"], got["amount"])) if got is not None and len(got) else {}
    return pd.DataFrame({"year": years, "amount": [float(amounts.get(y, 0.0)) for y in years]})


def _place(info: dict) -> str:
    parts = [
        info.get("commune_name"),
        info.get("departement_name") and f"{info['departement_name']} ({info.get('departement_code')})",
        info.get("region_name"),
    ]
    return ", ".join(p for p in parts if p) or "non localisé"


_ui.guard(body, "Fournisseurs")

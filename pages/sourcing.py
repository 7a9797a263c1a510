"""Sourcing: for one purchase category, the spend that leaves the territory or goes to
non-ESS suppliers; then the directory of the ESS and inclusive structures of the
territory whose activity matches a CPV category (``levers.sourcing_directory``), with
its export for a sourcing meeting and a map."""

import pandas as pd
import streamlit as st

from analytics import cached, charts
from analytics.fmt import fmt_eur, fmt_number
from pages import _ui

DIRECTORY_LABELS = {
    "name": "Structure",
    "type": "Type",
    "commune": "Commune",
    "departement_code": "Dép.",
    "distance_km": "Distance",
    "past_spend": "Déjà payé (toutes années)",
    "naf": "NAF",
    "siret": "SIRET",
}
SUPPLIER_LABELS = {
    "name": "Fournisseur",
    "amount": "Montant",
    "departement_code": "Dép.",
    "local": "Local",
    "ess": "ESS",
    "naf_label": "Activité",
    "siret": "SIRET",
}


def body() -> None:
    f = _ui.filters()
    st.title("Sourcing")
    if f.territory is None:
        st.info(
            "Choisissez un territoire de référence (barre latérale) ou configurez l'acheteur (page Import) : "
            "le sourcing cherche les structures situées dans ce territoire."
        )
        return
    code = category_spend(f)
    directory(f, code if f.basis == "notified" else None)


def category_spend(f) -> str | None:
    """The chosen purchase category, its cards and the suppliers outside the territory or the ESS."""
    cats = cached.call("indicators.spend_by_category", f)
    cats = cats[cats["kind"].isin(["nature", "cpv"]) & (cats["amount"] > 0)] if len(cats) else cats
    if not len(cats):
        _ui.empty("mandats", "Aucune dépense classée par catégorie sur la période.")
        return None
    names = dict(zip(cats["code"], cats["name"]))
    amounts = dict(zip(cats["code"], cats["amount"]))
    code = st.selectbox(
        "Catégorie d'achat",
        list(names),
        key="src_cat",
        format_func=lambda c: f"{c} – {names[c]} ({fmt_eur(amounts[c])})",
    )
    g = f.with_(cpv_divisions=(code,)) if f.basis == "notified" else f.with_(natures=(code,))
    _ui.cards(["total_spend", "local_share", "ess_share", "inclusive_share"], cached.headline(g), None)

    sup = cached.call("indicators.suppliers_table", g)
    outside = sup[(sup["local"] == False) | (sup["ess"] != True)] if len(sup) else sup  # noqa: E712
    st.subheader("Dépense hors du territoire ou hors ESS")
    st.caption(
        "Fournisseurs de la catégorie situés hors du territoire ou n'appartenant pas à l'ESS, "
        "par montant décroissant : les achats où une structure locale de l'ESS pourrait être consultée."
    )
    cols = [
        c
        for c in ("name", "siret", "amount", "departement_code", "local", "ess", "naf_label")
        if c in outside
    ]
    _ui.table(outside[cols].head(100), "src_outside", money=("amount",), labels=SUPPLIER_LABELS)
    return code


def directory(f, suggested: str | None) -> None:
    """The engine's sourcing directory for one CPV category, with its export and a map."""
    st.subheader("Structures de l'ESS et de l'inclusion du territoire")
    counts = cached.call("levers.actors_by_cpv", f.territory).set_index("cpv_division")
    corr = cached.call("levers.cpv_naf_table").set_index("cpv_division")
    options = [None, *corr.index]

    def label(c):
        if c is None:
            return "Toutes les activités"
        n_ess = int(counts["ess_structures"].get(c, 0)) if c in counts.index else 0
        n_inc = int(counts["inclusive_structures"].get(c, 0)) if c in counts.index else 0
        text = f"{c} {corr.loc[c, 'cpv_label'] or ''}".strip()
        if len(text) > 70:
            text = text[:69].rstrip(" ,;:") + "…"
        return f"{text} · {n_inc} inclusives, {n_ess} ESS"

    # On the notified basis the directory follows the purchase category chosen above,
    # until the user picks another one here.
    if suggested in options and st.session_state.get("_src_followed") != suggested:
        st.session_state["src_cpv"] = suggested
        st.session_state["_src_followed"] = suggested
    cpv = st.selectbox(
        "Catégorie de marché à sourcer (division CPV)",
        options,
        format_func=label,
        key="src_cpv",
        help="Les structures dont l'activité principale (NAF) correspond à la catégorie, "
        "selon la correspondance CPV ↔ NAF décrite sur la page Leviers d'action.",
    )
    df = cached.call("levers.sourcing_directory", f, cpv)
    if not len(df):
        _ui.empty("structures", "Aucune structure inclusive ou de l'ESS du territoire pour cette catégorie.")
        return
    family = df["inclusive_family"].fillna("ESS")
    n = {k: fmt_number((family == k).sum()) for k in ("insertion", "handicap")}
    st.caption(
        f"{fmt_number(len(df))} structures : {fmt_number(df['inclusive_family'].notna().sum())} inclusives "
        f"({n['insertion']} d'insertion, {n['handicap']} du handicap) et "
        f"{fmt_number(df['type'].str.contains('ESS').sum())} de l'ESS (une structure peut être les deux) ; "
        f"{fmt_number((df['past_spend'] > 0).sum())} déjà payées par l'acheteur. "
        f"Activités NAF retenues : {corr.loc[cpv, 'naf_labels'] if cpv else 'toutes'}. "
        "Téléchargez la liste (CSV, XLSX) pour préparer une réunion de sourcing."
    )
    cols = [c for c in DIRECTORY_LABELS if c in df]
    km = df["distance_km"].map(lambda v: "–" if pd.isna(v) else f"{fmt_number(v, 1)} km")
    _ui.table(
        df[[*cols, "inclusive_family"]],
        "src_directory",
        title=f"Annuaire de sourcing {('CPV ' + cpv) if cpv else ''}".strip(),
        money=("past_spend",),
        labels={**DIRECTORY_LABELS, "inclusive_family": "Famille"},
        height=420,
        display=df[cols].assign(distance_km=km),
    )
    dep = f.territory.codes[0] if f.territory.kind == "dep" and len(f.territory.codes) == 1 else None
    _ui.chart(
        charts.points_map(
            df.assign(family=family),
            departement=dep,
            color="family",
            geojson_url=dep and cached.geojson_url("commune", dep),
            color_labels={
                "insertion": "Insertion (SIAE)",
                "handicap": "Handicap (EA, ESAT)",
                "ESS": "Autre structure de l'ESS",
            },
        ),
        "src_map",
    )


_ui.guard(body, "Sourcing")

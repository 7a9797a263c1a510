"""Sourcing: for one purchase category, the spend that leaves the territory or goes to
non-ESS suppliers, beside the ESS and inclusive structures located in the territory
whose activity matches: where to look first."""

import pandas as pd
import streamlit as st

from analytics import cached, charts
from analytics.fmt import fmt_eur, fmt_number
from pages import _ui

STRUCT_LABELS = {
    "name": "Structure",
    "kind": "Type",
    "family": "Famille",
    "naf": "NAF",
    "commune": "Commune",
    "departement_code": "Dép.",
    "source": "Source",
    "paid_all_time": "Déjà payé (toutes années)",
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
    cats = cached.call("indicators.spend_by_category", f)
    cats = cats[cats["kind"].isin(["nature", "cpv"]) & (cats["amount"] > 0)] if len(cats) else cats
    if not len(cats):
        _ui.empty("mandats", "Aucune dépense classée par catégorie sur la période.")
        return
    names = dict(zip(cats["code"], cats["name"]))
    code = st.selectbox(
        "Catégorie d'achat",
        list(names),
        key="src_cat",
        format_func=lambda c: f"{c} – {names[c]} ({fmt_eur(cats.set_index('code').loc[c, 'amount'])})",
    )
    g = f.with_(cpv_divisions=(code,)) if f.basis == "notified" else f.with_(natures=(code,))
    head = cached.headline(g)
    _ui.cards(["total_spend", "local_share", "ess_share", "inclusive_share"], head, None)

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

    st.subheader("Structures de l'ESS et de l'inclusion du territoire")
    structures = directory(f)
    if structures is None or not len(structures):
        _ui.empty("structures", "Aucune structure inclusive ou de l'ESS connue dans ce territoire.")
        return
    div_labels = dict(
        zip(structures["naf_division"], structures.get("naf_division_label", structures["naf_division"]))
    )
    divisions = sorted(d for d in div_labels if isinstance(d, str))
    chosen = st.multiselect(
        "Activité (division NAF) des structures",
        divisions,
        key="src_naf",
        format_func=lambda d: f"{d} {div_labels.get(d) or ''}"[:70],
        placeholder="Toutes les activités",
        help="Restreignez aux activités qui répondent à la catégorie d'achat choisie.",
    )
    shown = structures[structures["naf_division"].isin(chosen)] if chosen else structures
    st.caption(
        f"{fmt_number(len(shown))} structures ({fmt_number((shown['family'] == 'insertion').sum())} "
        f"d'insertion, {fmt_number((shown['family'] == 'handicap').sum())} du handicap, "
        f"{fmt_number((shown['family'] == 'ESS').sum())} autres de l'ESS)."
    )
    left, right = st.columns([3, 2])
    with left:
        cols = [c for c in STRUCT_LABELS if c in shown]
        _ui.table(shown[cols], "src_structures", money=("paid_all_time",), labels=STRUCT_LABELS, height=420)
    with right:
        dep = f.territory.codes[0] if f.territory.kind == "dep" and len(f.territory.codes) == 1 else None
        _ui.chart(
            charts.points_map(
                shown,
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


def directory(f) -> pd.DataFrame:
    """The engine's sourcing directory when present, else the structures located in the territory."""
    own = cached.call_or_none("levers.sourcing_directory", f)
    if isinstance(own, pd.DataFrame) and {"name", "naf_division", "family"} <= set(own.columns):
        return own
    return cached.call("facets.structures_in_territory", f.territory)


_ui.guard(body, "Sourcing")

"""ESS et inclusion: the shares paid to the social and solidarity economy and to
inclusive structures, their trend, by kind and by category; reserved contracts,
insertion hours; the top ESS and inclusive suppliers."""

import pandas as pd
import streamlit as st

from analytics import cached, charts
from analytics.filters import Filters
from pages import _ui

CARDS = [
    "ess_share",
    "inclusive_share",
    "insertion_share",
    "disability_share",
    "reserved_contract_rate",
    "social_clause_rate",
    "insertion_hours",
    "insertion_fte",
]
KIND_LABELS = {
    "EI": "Entreprise d'insertion (EI)",
    "AI": "Association intermédiaire (AI)",
    "ACI": "Atelier et chantier d'insertion (ACI)",
    "ETTI": "Entreprise de travail temporaire d'insertion",
    "EITI": "Entreprise d'insertion par le travail indépendant",
    "GEIQ": "GEIQ",
    "EA": "Entreprise adaptée (EA)",
    "EATT": "EA de travail temporaire",
    "ESAT": "ESAT",
}
SUPPLIER_LABELS = {
    "name": "Fournisseur",
    "amount": "Montant",
    "share": "Part",
    "inclusive_kind": "Type",
    "departement_code": "Département",
    "size_class": "Taille",
    "supplier_key": "Identifiant",
    "ess": "ESS",
}


def body() -> None:
    f = _ui.filters()
    st.title("ESS et inclusion")
    head, prev = cached.headline_with_previous(f)
    if head.get("total_spend") is None and head.get("contract_count") is None:
        _ui.empty("mandats", "Aucune dépense ni aucun marché sur la période choisie.")
        return
    _ui.cards(CARDS, head, prev)

    st.subheader("Évolution par année")
    years = cached.facets()["years"]
    trend = pd.DataFrame(_year_rows(f, years))
    _ui.chart(
        charts.share_lines(
            trend,
            "year",
            {
                "ess_share": "Part ESS",
                "inclusive_share": "Part inclusive",
                "insertion_share": "dont insertion",
                "disability_share": "dont handicap",
            },
        ),
        "ess_trend",
    )
    st.caption(
        "Années civiles entières (la dernière jusqu'à la dernière donnée), avec les autres filtres choisis."
    )

    left, right = st.columns(2)
    with left:
        st.subheader("ESS par famille")
        fam = cached.call("indicators.spend_by_ess_family", f)
        _ui.chart(charts.bar_h(fam, "family", "amount", color=charts.ACCENT), "ess_family")
    with right:
        st.subheader("Structures inclusives par type")
        kinds = cached.call("indicators.spend_by_inclusive_kind", f)
        if kinds is not None and len(kinds):
            kinds = kinds.assign(label=kinds["kind"].map(KIND_LABELS).fillna(kinds["kind"]))
        _ui.chart(charts.bar_h(kinds, "label", "amount", color=charts.ACCENT), "ess_kinds")

    st.subheader("Part ESS et inclusive par catégorie d'achat")
    cats = cached.call("indicators.spend_by_category", f)
    ess = cached.call("indicators.spend_by_category", f.with_(supplier_classes=("ess",)))
    inc = cached.call("indicators.spend_by_category", f.with_(supplier_classes=("inclusive",)))
    if cats is not None and len(cats):
        by = cats[["code", "name", "amount"]].copy()
        by["ess_share"] = by["code"].map(ess.set_index("code")["amount"]).fillna(0) / by["amount"]
        by["inclusive_share"] = by["code"].map(inc.set_index("code")["amount"]).fillna(0) / by["amount"]
        by = by[by["amount"] > 0]
        _ui.table(
            by,
            "ess_by_cat",
            money=("amount",),
            shares=("ess_share", "inclusive_share"),
            labels={
                "code": "Code",
                "name": "Catégorie",
                "amount": "Dépense",
                "ess_share": "Part ESS",
                "inclusive_share": "Part inclusive",
            },
        )

    left, right = st.columns(2)
    with left:
        top = cached.call("indicators.top_suppliers", f.with_(supplier_classes=("ess",)), n=20)
        _ui.table(
            top,
            "ess_top",
            title="Premiers fournisseurs de l'ESS",
            money=("amount",),
            shares=("share",),
            labels=SUPPLIER_LABELS,
            empty_kind="sirene",
            display=_narrow(top),
        )
    with right:
        top = cached.call("indicators.top_suppliers", f.with_(supplier_classes=("inclusive",)), n=20)
        _ui.table(
            top,
            "inc_top",
            title="Premières structures inclusives",
            money=("amount",),
            shares=("share",),
            labels=SUPPLIER_LABELS,
            empty_kind="structures",
            display=_narrow(
                top.assign(name=top["name"] + " (" + top["inclusive_kind"].fillna("?") + ")")
                if len(top)
                else top
            ),
        )

    st.subheader("Marchés réservés de la période")
    contracts = cached.call("indicators.contracts_table", f)
    reserved = contracts[contracts["is_reserved"].fillna(False).astype(bool)] if len(contracts) else contracts
    if len(reserved):
        cols = ["id", "objet", "date_notification", "amount", "holders", "procedure"]
        reserved = reserved[[c for c in cols if reserved[c].notna().any()]]
    _ui.table(
        reserved,
        "ess_reserved",
        money=("amount",),
        dates=("date_notification",),
        labels={
            "id": "N°",
            "objet": "Objet",
            "date_notification": "Notifié le",
            "amount": "Montant notifié",
            "holders": "Titulaire(s)",
            "procedure": "Procédure",
        },
        empty_kind="decp",
    )


def _narrow(df, cols=("name", "amount", "share")):
    """Fewer columns for a half-width table (the download keeps them all)."""
    return df[[c for c in cols if c in df]] if df is not None and len(df) else None


def _year_rows(f: Filters, years: list[int]) -> list[dict]:
    """The shares of every year, from the whole years' headlines the SPASER page reads too
    (one engine call for all years, computed once for both pages)."""
    heads = _ui.year_headlines(f, f.date_to.year)
    keys = ("ess_share", "inclusive_share", "insertion_share", "disability_share")
    return [{"year": y, **{k: heads[y].get(k) for k in keys}} for y in years]


_ui.guard(body, "ESS et inclusion")

"""Vue d'ensemble: the headline figures of the period against the same period a year
earlier, and the monthly trend."""

import pandas as pd
import streamlit as st

from analytics import cached, charts
from analytics.fmt import fmt_pct, fmt_value
from pages import _ui

CARDS = [
    "total_spend",
    "supplier_count",
    "local_share",
    "ess_share",
    "inclusive_share",
    "sme_share",
    "social_clause_rate",
    "environmental_clause_rate",
]


def body() -> None:
    f = _ui.filters()
    st.title("Vue d'ensemble")
    st.caption(
        f"Période {_ui.period_label(f)}, comparée à la même période de l'année précédente. "
        "Le point d'interrogation de chaque carte donne sa définition et sa couverture."
    )
    head, prev = cached.headline_with_previous(f)
    if head.get("total_spend") is None and head.get("contract_count") is None:
        _ui.empty("mandats", "Aucune dépense ni aucun marché sur la période choisie.")
        if cached.last_import() is None:
            st.markdown(
                "Pour commencer : importez l'export de vos **mandats** (CSV ou XLSX de votre "
                "logiciel financier), puis vos **marchés** (DECP) et un **extrait SIRENE** de vos "
                "fournisseurs pour les localiser et les classer."
            )
        return
    _ui.cards(CARDS, head, prev)
    unloc = head.get("unlocated_share")
    if unloc:
        st.caption(
            f"Dépense auprès de fournisseurs non localisés : {fmt_pct(unloc)} (hors dénominateur "
            "de la part locale). Un extrait SIRENE de vos fournisseurs la réduit."
        )

    st.subheader("Évolution mensuelle")
    series = cached.call("indicators.monthly_series", f)
    previous = cached.call("indicators.monthly_series", f.previous_year())
    _ui.chart(charts.monthly(series, previous=previous, label=_spend_label(f)), "vue_mensuel")

    left, right = st.columns(2)
    with left:
        st.subheader("Par catégorie d'achat")
        cats = cached.call("indicators.spend_by_category", f)
        _ui.chart(charts.bar_h(cats, "name", "amount", top=10), "vue_categories")
    with right:
        st.subheader("Premiers fournisseurs")
        top = cached.call("indicators.top_suppliers", f, n=10)
        _ui.chart(charts.bar_h(top, "name", "amount", top=10), "vue_top")

    with st.expander("Tous les indicateurs de la période"):
        keys = [k for k in head if k not in ("basis", "period", "coverage", "reasons")]
        units = [_ui.unit_of(k) for k in keys]
        raw = pd.DataFrame(
            {
                "Indicateur": [_ui.label_of(k) for k in keys],
                "Clé": keys,
                "Valeur": [head.get(k) for k in keys],
                "Année précédente": [prev.get(k) for k in keys],
                "Unité": units,
                "Raison si non disponible": [(head.get("reasons") or {}).get(k, "") for k in keys],
            }
        )
        shown = raw.assign(
            **{
                "Valeur": [fmt_value(v, u) for v, u in zip(raw["Valeur"], units)],
                "Année précédente": [fmt_value(v, u) for v, u in zip(raw["Année précédente"], units)],
            }
        )
        _ui.table(raw, "vue_indicateurs", title="Indicateurs de la période", display=shown)


def _spend_label(f) -> str:
    return "Montant payé" if f.basis == "paid" else "Montant notifié"


_ui.guard(body, "Vue d'ensemble")

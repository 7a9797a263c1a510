"""Empreinte économique: who is paid (size, sector, category), how concentrated the spend
is, new suppliers, and the jobs the spend supports (input–output estimate)."""

import streamlit as st

from analytics import cached, charts
from analytics.fmt import fmt_eur, fmt_number, fmt_pct
from pages import _ui

SUPPLIER_LABELS = {
    "supplier_key": "Identifiant",
    "name": "Fournisseur",
    "amount": "Montant",
    "share": "Part",
    "ess": "ESS",
    "inclusive_kind": "Structure inclusive",
    "departement_code": "Département",
    "size_class": "Taille",
    "first_date": "Premier paiement",
}


def body() -> None:
    f = _ui.filters()
    st.title("Empreinte économique")
    head, prev = cached.headline_with_previous(f)
    if head.get("total_spend") is None:
        _ui.empty("mandats", "Aucune dépense sur la période choisie.")
        return
    _ui.cards(["total_spend", "sme_share", "top10_share", "new_supplier_share"], head, prev)

    st.subheader("Taille des entreprises fournisseurs")
    size = cached.call("indicators.spend_by_size", f)
    order = {"TPE": 0, "PME": 1, "ETI": 2, "GE": 3}
    size = size.sort_values("size_class", key=lambda s: s.map(order).fillna(9)) if len(size) else size
    _ui.chart(charts.stacked_share(size, "label", "amount"), "eco_size")
    st.caption(
        "Taille selon la catégorie d'entreprise SIRENE (TPE = moins de 10 salariés). "
        f"{_ui.label_of('sme_share')} sur la dépense de taille connue : {fmt_pct(head.get('sme_share'))}."
    )

    left, right = st.columns(2)
    with left:
        st.subheader("Secteurs d'activité (NAF)")
        naf = cached.call("indicators.spend_by_naf_section", f)
        _ui.chart(charts.bar_h(naf, "name", "amount", top=12, label_len=34), "eco_naf")
    with right:
        st.subheader("Catégories d'achat")
        cat = cached.call("indicators.spend_by_category", f)
        _ui.chart(charts.bar_h(cat, "name", "amount", top=12, label_len=34), "eco_cat")

    st.subheader("Concentration")
    left, right = st.columns([3, 2])
    with left:
        _ui.chart(
            charts.lorenz(
                cached.call("indicators.lorenz_curve", f), x="cum_suppliers_share", y="cum_spend_share"
            ),
            "eco_lorenz",
        )
    with right:
        hhi = head.get("hhi")
        st.metric(
            _ui.label_of("hhi"),
            "non disponible" if hhi is None else fmt_number(hhi * 10_000, 0),
            help=_ui.help_text("hhi", head),
            border=True,
        )
        st.caption(
            "Échelle usuelle 0–10 000 : moins de 1 500, dépense peu concentrée ; plus de 2 500, "
            "très concentrée."
        )
        st.metric(
            _ui.label_of("top10_share"),
            fmt_pct(head.get("top10_share")),
            help=_ui.help_text("top10_share", head),
            border=True,
        )
    top = cached.call("indicators.top_suppliers", f, n=50)
    _ui.table(
        top,
        "eco_top",
        title="Premiers fournisseurs",
        money=("amount",),
        shares=("share",),
        labels=SUPPLIER_LABELS,
    )
    new = cached.call("indicators.new_suppliers", f)
    st.subheader("Nouveaux fournisseurs")
    if new is None or not len(new):
        st.info(
            head.get("reasons", {}).get("new_supplier_share") or "Aucun nouveau fournisseur sur la période."
        )
    else:
        st.caption(
            f"{fmt_number(len(new))} fournisseurs payés pour la première fois, pour "
            f"{fmt_eur(new['amount'].sum())}."
        )
        _ui.table(new, "eco_new", money=("amount",), dates=("first_date",), labels=SUPPLIER_LABELS)
    jobs(f)


@_ui.fragment("Empreinte économique")
def jobs(f) -> None:
    st.subheader("Emplois soutenus par la dépense")
    if not cached.available("footprint.footprint"):
        st.info("Le modèle d'empreinte économique n'est pas installé dans cette version.")
        return
    try:
        fp = cached.call("footprint.footprint", f)
    except (FileNotFoundError, ValueError) as exc:
        st.info(f"Estimation indisponible : {exc}")
        return
    cols = st.columns(4)
    for col, key, label in zip(
        cols,
        ("jobs_direct", "jobs_indirect", "jobs_induced"),
        ("Emplois directs", "Emplois indirects", "Emplois induits"),
    ):
        r = fp.get(key)
        if r is None:
            col.metric(label, "non disponible", help=(fp.get("reasons") or {}).get(key), border=True)
        else:
            col.metric(
                label,
                fmt_number(r["central"], 0),
                help=f"Fourchette : {fmt_number(r['low'], 0)} à {fmt_number(r['high'], 0)} "
                "emplois-années (équivalents temps plein sur un an).",
                border=True,
            )
    c = fp.get("carbon_tco2e") or {}
    cols[3].metric(
        "Empreinte carbone",
        f"{fmt_number(c.get('central'), 0)} tCO2e",
        help=f"Estimation monétaire (dépense × intensité carbone du secteur) : de "
        f"{fmt_number(c.get('low'), 0)} à {fmt_number(c.get('high'), 0)} tCO2e.",
        border=True,
    )
    st.caption(
        f"Périmètre : {'territoire de référence' if fp.get('scope') == 'territoire' else 'France entière'}. "
        "Emplois-années soutenus : un ordre de grandeur, pas un décompte."
    )
    with st.expander("Méthode, données et incertitude"):
        st.markdown(fp.get("method", ""))
    _ui.table(
        fp.get("by_branch"),
        "eco_branches",
        title="Par branche (A38)",
        money=("spend", "spend_local"),
        labels={
            "branch": "Branche",
            "label": "Libellé",
            "spend": "Dépense",
            "spend_local": "Dépense locale",
            "jobs_direct": "Emplois directs",
            "jobs_indirect": "Emplois indirects",
            "jobs_direct_national": "Emplois directs (France)",
            "jobs_per_meur": "Emplois par M€",
        },
    )


_ui.guard(body, "Empreinte économique")

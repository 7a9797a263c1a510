"""Leviers d'action: where the buyer can act next. Contracts to renew (source before
relaunching), categories that could be reserved to inclusive structures (L.2113-12 and
L.2113-13) with the rule beside each recommendation, purchases under 40 000 € HT, and
lots and joint bids. The engine is ``analytics.levers``; thresholds are editable here."""

import datetime as dt

import streamlit as st

from analytics import cached
from analytics.fmt import fmt_date, fmt_eur, fmt_number
from pages import _leviers_ui as _lev
from pages import _ui


def body() -> None:
    f = _ui.filters()
    st.title("Leviers d'action")
    st.caption(
        "Où agir ensuite : les marchés à renouveler, les achats qui pourraient être réservés, "
        "les petits achats et l'allotissement, rapprochés des structures de l'ESS et de l'inclusion du territoire."
    )
    if f.territory is None:
        st.warning(
            "Aucun territoire de référence : les structures du territoire ne sont pas comptées. "
            "Choisissez-en un dans la barre latérale, ou configurez l'acheteur (page Import)."
        )
    renewals(f)
    reservation(f)
    _lev.under_threshold(f)
    _lev.lots(f)


def renewals(f) -> None:
    st.subheader("Renouvellements à venir")
    today = dt.date.today()
    months = st.segmented_control(
        "Marchés arrivant à échéance dans les",
        [6, 12, 18],
        default=12,
        format_func=lambda m: f"{m} mois",
        key="lev_horizon",
    )
    df = cached.call("levers.renewals", f, as_of=today, months=18)
    if not len(df):
        _ui.empty("decp", "Aucun marché n'arrive à échéance dans les 18 prochains mois.")
        return
    shown = _lev.with_category(df[df["horizon"] <= (months or 18)])
    sourceable = int(((shown["ess_structures"] + shown["inclusive_structures"]) > 0).sum())
    st.caption(
        f"{fmt_number(len(shown))} marchés finissent d'ici {months or 18} mois (à partir du {fmt_date(today)}, "
        f"quelle que soit la période choisie), pour {fmt_eur(shown['amount'].sum())} ; "
        f"{fmt_number(sourceable)} dans une catégorie où au moins une structure de l'ESS ou inclusive "
        "du territoire peut répondre : à consulter avant de relancer. "
        "Fin = date de notification + durée, modifications comprises. Une structure peut répondre quand son "
        "activité (NAF) correspond à la catégorie CPV du marché, selon la table ci-dessous."
    )
    cols = [
        "end_date",
        "object",
        "amount",
        "inclusive_structures",
        "ess_structures",
        "category",
        "contract_id",
    ]
    _ui.table(
        shown[cols],
        "lev_renewals",
        money=("amount",),
        dates=("end_date",),
        labels=_lev.LABELS,
        height=360,
        display=_lev.clipped(shown[cols], object=55, category=40),
    )
    _lev.cpv_naf(set(shown["cpv_division"].dropna()))


@_ui.fragment("Leviers d'action")
def reservation(f) -> None:
    st.subheader("Potentiel de réservation")
    st.caption(
        "Un marché ou un lot peut être réservé aux entreprises adaptées et ESAT (code de la commande publique, "
        "art. L.2113-12) ou aux structures d'insertion par l'activité économique (art. L.2113-13). "
        "Par catégorie de marchés notifiés sur la période, les structures inclusives du territoire qui "
        "peuvent y répondre et la recommandation, avec la règle qui l'a produite."
    )
    rules = _lev.rules_inputs()
    st.markdown(
        f"Règles, dans l'ordre : **marché réservé** si au moins {fmt_number(rules.reserve_min_structures)} "
        f"structures inclusives et au plus {fmt_eur(rules.absorb_max_per_structure)} par structure ; sinon "
        f"**lot réservé** si au moins {fmt_number(rules.lot_min_structures)} ; sinon **clause sociale** si au "
        f"moins {fmt_number(rules.clause_min_structures)} ; sinon **aucune**."
    )
    df = cached.call("levers.reservation", f, rules)
    if not len(df):
        _ui.empty("decp", "Aucun marché notifié avec une catégorie CPV sur la période.")
        return
    counts = df["recommendation"].value_counts()
    st.caption(
        " · ".join(
            f"{rec} : {fmt_number(counts.get(rec, 0))} catégorie(s)"
            for rec in ("marché réservé", "lot réservé", "clause sociale", "aucune")
        )
    )
    # The strongest recommendations first, then by amount.
    df = _lev.with_category(df).sort_values(
        ["recommendation", "spend"],
        key=lambda c: c.map(_lev.RECOMMENDATION_ORDER) if c.name == "recommendation" else -c,
    )
    cols = [
        "category",
        "spend",
        "inclusive_structures",
        "recommendation",
        "rule",
        "contracts",
        "ess_structures",
    ]
    _ui.table(
        df[cols],
        "lev_reservation",
        money=("spend",),
        labels=_lev.LABELS,
        height=420,
        display=_lev.clipped(df[cols], category=30),
    )


_ui.guard(body, "Leviers d'action")

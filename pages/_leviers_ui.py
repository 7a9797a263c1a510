"""The Leviers d'action page's shared pieces: column labels, on-screen tables, the
reservation rules' inputs, and its sections on purchases under 40 000 € HT and on lots.
Not a page (not registered in the navigation)."""

import pandas as pd
import streamlit as st

from analytics import cached
from analytics.fmt import fmt_eur, fmt_number, fmt_pct, fmt_points
from analytics.levers import ReservationRules
from pages import _ui

DEFAULTS = ReservationRules()
# ReservationRules field -> (widget key, label, unit: amounts are typed in k€)
RESERVATION_INPUTS = {
    "reserve_min_structures": ("lev_reserve_min", "Marché réservé : structures inclusives, au moins", 1),
    "absorb_max_per_structure": ("lev_absorb_max", "… et montant par structure, au plus (k€)", 1_000),
    "lot_min_structures": ("lev_lot_min", "Lot réservé : structures inclusives, au moins", 1),
    "clause_min_structures": ("lev_clause_min", "Clause sociale : structures inclusives, au moins", 1),
}
RECOMMENDATION_ORDER = {"marché réservé": 0, "lot réservé": 1, "clause sociale": 2, "aucune": 3}
LABELS = {
    "end_date": "Fin",
    "horizon": "Échéance (mois)",
    "object": "Objet",
    "category": "Catégorie CPV",
    "amount": "Montant notifié",
    "spend": "Montant notifié",
    "contracts": "Marchés",
    "ess_structures": "ESS",
    "inclusive_structures": "Inclusives",
    "local_smes": "PME locales",
    "recommendation": "Recommandation",
    "rule": "Règle appliquée",
    "contract_id": "N° du marché",
    "date_notification": "Notifié le",
    "holder_count": "Cotitulaires",
    "with_ess": "Avec une structure de l'ESS",
    "account": "Compte",
    "spend_under": "Dépense < seuil",
    "spend_over": "Dépense ≥ seuil",
    "under_share": "Part sous le seuil",
    "purchases_under": "Achats < seuil",
    "local_share_under": "Part locale < seuil",
    "local_share_over": "Part locale ≥ seuil",
    "ess_share_under": "Part ESS < seuil",
    "ess_share_over": "Part ESS ≥ seuil",
    "inclusive_share_under": "Part inclusive < seuil",
    "inclusive_share_over": "Part inclusive ≥ seuil",
    "local_pair": "Locale (< | ≥ seuil)",
    "ess_pair": "ESS (< | ≥ seuil)",
    "inclusive_pair": "Inclusive (< | ≥ seuil)",
}


def with_category(df: pd.DataFrame) -> pd.DataFrame:
    """``category``: the CPV division with its label."""
    names = dict(cached.facets()["cpv_divisions"])
    return df.assign(category=[f"{c} {names.get(c, '')}".strip() if c else "–" for c in df["cpv_division"]])


def clipped(df: pd.DataFrame, **widths: int) -> pd.DataFrame:
    """The on-screen version of a table: long texts cut so the figures stay in view
    (the downloads keep them whole)."""

    def clip(v, n):
        return v if not isinstance(v, str) or len(v) <= n else v[: n - 1] + "…"

    return df.assign(**{c: df[c].map(lambda v, n=n: clip(v, n)) for c, n in widths.items() if c in df})


def cpv_naf(present: set) -> None:
    """The CPV ↔ NAF correspondence behind the counts, for the categories shown."""
    with st.expander("Correspondance CPV ↔ NAF : quelles structures peuvent répondre"):
        st.markdown(
            "Une structure est comptée pour un marché quand son activité principale (code NAF) relève d'une "
            "division NAF associée à la division CPV du marché. Aucune table officielle ne relie les deux "
            "nomenclatures à ce niveau : celle-ci a été écrite à partir de leurs libellés "
            "(`CPV_NAF` dans `analytics/levers.py`). Structures **ESS** : établissements de l'économie sociale "
            "et solidaire (extrait SIRENE, liste ESS) ; **inclusives** : SIAE, entreprises adaptées, ESAT."
        )
        corr = cached.call("levers.cpv_naf_table")
        _ui.table(
            corr[corr["cpv_division"].isin(present)] if present else corr,
            "lev_cpv_naf",
            labels={
                "cpv_division": "CPV",
                "cpv_label": "Catégorie CPV",
                "naf_divisions": "Divisions NAF",
                "naf_labels": "Activités NAF",
            },
        )


def reset_rules() -> None:
    for field, (key, _, unit) in RESERVATION_INPUTS.items():
        st.session_state[key] = int(getattr(DEFAULTS, field) / unit)


def rules_inputs() -> ReservationRules:
    values = {}
    with st.expander("Modifier les seuils des règles"):
        cols = st.columns(len(RESERVATION_INPUTS))
        for col, (field, (key, label, unit)) in zip(cols, RESERVATION_INPUTS.items()):
            default = int(getattr(DEFAULTS, field) / unit)
            typed = col.number_input(label, min_value=0, value=default, step=1 if unit == 1 else 50, key=key)
            values[field] = typed * unit
        st.button("Valeurs par défaut", key="lev_rules_reset", on_click=reset_rules)
    return ReservationRules(**values)


def under_threshold(f) -> None:
    st.subheader("Achats de moins de 40 000 € HT")
    st.caption(
        "Sous 40 000 € HT, un achat peut être passé sans publicité ni mise en concurrence préalables "
        "(art. R.2122-8) : l'occasion de consulter des fournisseurs proches, de l'ESS ou inclusifs. "
        "Comparaison avec les achats des mêmes comptes au-dessus du seuil, sur la dépense payée de la période."
    )
    d = cached.call("levers.threshold_split", f)
    if not d["under"]["spend"] and not d["over"]["spend"]:
        _ui.empty("mandats", "Aucun mandat sur la période choisie.")
        return
    total = d["under"]["spend"] + d["over"]["spend"]
    for side, title in (("under", "Moins de 40 000 € HT"), ("over", "40 000 € HT et plus")):
        v, other = d[side], d["over"]
        st.markdown(f"**{title}** · {fmt_number(v['purchases'])} achats")
        cols = st.columns(4)
        cols[0].metric(
            "Dépense",
            fmt_eur(v["spend"]),
            help=f"{fmt_pct(v['spend'] / total if total else None)} de la dépense payée",
            border=True,
        )
        for col, key, label in zip(
            cols[1:],
            ("local_share", "ess_share", "inclusive_share"),
            ("Part locale", "Part ESS", "Part inclusive"),
        ):
            delta = None
            if side == "under" and v[key] is not None and other[key] is not None:
                delta = f"{fmt_points(v[key] - other[key])} vs ≥ seuil"
            col.metric(label, fmt_pct(v[key]), delta=delta, border=True)
    st.caption(
        "Un **achat** regroupe les mandats d'un même numéro de marché ; sans numéro, ceux d'un même fournisseur, "
        "d'une même nature comptable et d'une même année. Son montant HT est celui de l'export comptable, "
        "sinon le TTC divisé par 1,2. Le seuil de 100 000 € HT des achats innovants (R.2122-9-1) ne peut pas "
        "être appliqué : les mandats ne disent pas si un achat est innovant. Part locale sur la dépense localisée, "
        "parts ESS et inclusive sur toute la dépense."
    )
    st.markdown("**Par compte (nature comptable)**")
    by = d["by_category"]
    if len(by):
        by = by.assign(account=(by["category"] + " " + by["label"]).str.strip()).drop(
            columns=["category", "label"]
        )
        by = by[["account", *[c for c in by.columns if c != "account"]]]
        # On screen, each share under | over the threshold in one cell; the download keeps one column each.
        screen = by[["account", "spend_under", "under_share"]].assign(
            **{
                f"{k}_pair": [
                    f"{fmt_pct(a)} | {fmt_pct(b)}"
                    for a, b in zip(by[f"{k}_share_under"], by[f"{k}_share_over"])
                ]
                for k in ("local", "ess", "inclusive")
            },
            purchases_under=by["purchases_under"],
        )
        _ui.table(
            by,
            "lev_under",
            money=("spend_under", "spend_over"),
            shares=tuple(c for c in by.columns if "share" in c),
            ints=("purchases_under",),
            labels=LABELS,
            height=360,
            display=screen.replace("non disponible", "–", regex=True),
        )
    st.page_link(
        "pages/sourcing.py",
        label="Trouver les structures à consulter : page Sourcing",
        icon=":material/travel_explore:",
    )


def lots(f) -> None:
    st.subheader("Allotissement et cotraitance")
    large = 1_000 * st.number_input(
        "Grand marché non alloti à partir de (k€)",
        min_value=0,
        value=int(DEFAULTS.large_single_lot / 1_000),
        step=100,
        key="lev_large_lot",
        width=320,
    )
    out = cached.call("levers.lots", f, ReservationRules(large_single_lot=float(large)))
    if not out["contracts"]:
        _ui.empty("decp", "Aucun marché notifié sur la période choisie.")
        return
    c = st.columns(4)
    c[0].metric("Marchés notifiés", fmt_number(out["contracts"]), border=True)
    c[1].metric("Marchés allotis", fmt_pct(out["contracts_with_lots_share"]), border=True)
    c[2].metric("En cotraitance", fmt_pct(out["joint_share"]), border=True)
    c[3].metric(
        "Cotraitance avec l'ESS",
        fmt_number(out["joint_with_ess"]),
        border=True,
        help="Marchés à plusieurs titulaires dont au moins un relève de l'ESS.",
    )
    st.caption(
        "Un marché est compté comme alloti quand un autre marché du même acheteur a été notifié le même jour "
        "pour le même objet (mention du lot retirée), ou quand son objet mentionne un lot."
    )
    big = out["single_lot_large"]
    st.markdown(
        f"**Grands marchés non allotis** (≥ {fmt_eur(large)}) dans une catégorie où des PME, des structures de "
        f"l'ESS ou inclusives du territoire existent : {fmt_number(len(big))}. Ceux où l'ESS et l'inclusion "
        "sont présentes d'abord, puis par montant."
    )
    cols = [
        "object",
        "amount",
        "inclusive_structures",
        "ess_structures",
        "local_smes",
        "category",
        "date_notification",
        "contract_id",
    ]
    if len(big):
        big = with_category(big).assign(_social=big["inclusive_structures"] + big["ess_structures"])
        big = big.sort_values(["_social", "amount"], ascending=False)[cols]
        _ui.table(
            big,
            "lev_single_lot",
            money=("amount",),
            dates=("date_notification",),
            labels=LABELS,
            height=320,
            display=clipped(big, object=55, category=35),
        )
    else:
        st.success("Aucun grand marché non alloti dans une catégorie où le territoire a une offre.")
    joint = out["joint"]
    with st.expander(f"Marchés en cotraitance ({fmt_number(len(joint))})"):
        _ui.table(joint, "lev_joint", labels=LABELS, empty_kind="decp")

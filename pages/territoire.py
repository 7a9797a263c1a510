"""Empreinte territoriale: where the money goes. Maps by département / région (overseas
in insets) and by commune for one département, local share by category, distances,
top communes and EPCI."""

import streamlit as st

from analytics import cached, charts
from analytics.fmt import fmt_number, fmt_pct
from pages import _ui

PLACE_LABELS = {
    "code": "Code",
    "name": "Nom",
    "amount": "Montant",
    "share": "Part",
    "suppliers": "Fournisseurs",
}


def body() -> None:
    f = _ui.filters()
    st.title("Empreinte territoriale")
    head = cached.headline(f)
    if head.get("total_spend") is None:
        _ui.empty("mandats", "Aucune dépense sur la période choisie.")
        return
    terr = cached.call_or_none("referential.territory_label", f.territory) if f.territory else None
    c1, c2, c3 = st.columns(3)
    c1.metric(
        _ui.label_of("local_share"),
        fmt_pct(head.get("local_share")),
        help=_ui.help_text("local_share", head),
        border=True,
    )
    c2.metric(
        _ui.label_of("unlocated_share"),
        fmt_pct(head.get("unlocated_share")),
        help=_ui.help_text("unlocated_share", head),
        border=True,
    )
    km = head.get("median_distance_km")
    c3.metric(
        _ui.label_of("median_distance_km"),
        "non disponible" if km is None else f"{fmt_number(km, 0)} km",
        help=_ui.help_text("median_distance_km", head),
        border=True,
    )
    st.caption(
        f"Territoire de référence : **{terr or 'non défini'}** (contour noir sur la carte). "
        f"Période {_ui.period_label(f)}."
    )
    france_map(f)
    communes_map(f)

    left, right = st.columns(2)
    with left:
        st.subheader("Part locale par catégorie d'achat")
        lsc = cached.call("indicators.local_share_by_category", f)
        if f.territory is None:
            st.info(
                "Choisissez un territoire de référence dans la barre latérale (ou configurez l'acheteur "
                "depuis la page Import) pour calculer la part locale."
            )
        else:
            _ui.chart(
                charts.bar_h(lsc.dropna(subset=["local_share"]), "name", "local_share", kind="pct", top=12),
                "terr_local_cat",
            )
    with right:
        st.subheader("Distance acheteur → fournisseur")
        dist = cached.call("indicators.distance_distribution", f)
        if dist is None or not len(dist):
            st.info(
                "Position de l'acheteur inconnue : configurez l'acheteur (page Import, « Acheteur et "
                "territoire »)."
            )
        else:
            dist = dist.assign(bin=dist["bin"].str.replace(" km et plus", " et +").str.replace(" km", ""))
            _ui.chart(
                charts.columns(dist, "bin", "amount", x_title="Distance à vol d'oiseau (km)"), "terr_distance"
            )
    left, right = st.columns(2)
    with left:
        communes = cached.call("indicators.spend_by_commune", f)
        _ui.table(
            communes.dropna(subset=["code"]).head(50),
            "terr_communes",
            title="Premières communes",
            money=("amount",),
            shares=("share",),
            ints=("suppliers",),
            labels=PLACE_LABELS,
        )
    with right:
        epci = cached.call("indicators.spend_by_epci", f)
        _ui.table(
            epci.dropna(subset=["code"]).head(50),
            "terr_epci",
            title="Premiers EPCI",
            money=("amount",),
            shares=("share",),
            ints=("suppliers",),
            labels=PLACE_LABELS,
        )


@_ui.fragment("Empreinte territoriale")
def france_map(f) -> None:
    level = st.segmented_control(
        "Maille",
        ["departement", "region"],
        default="departement",
        key="terr_level",
        format_func={"departement": "Départements", "region": "Régions"}.get,
    )
    level = level or "departement"
    df = cached.call(
        "indicators.spend_by_departement" if level == "departement" else "indicators.spend_by_region", f
    )
    left, right = st.columns([3, 2])
    with left:
        fig = charts.departement_map(
            df.dropna(subset=["code"]),
            f.territory,
            level=level,
            value_label=_amount_label(f),
            geojson_url=cached.geojson_url(level),
        )
        _ui.chart(fig, f"terr_map_{level}")
    with right:
        _ui.table(
            df,
            f"terr_table_{level}",
            title="Dépense par " + ("département" if level == "departement" else "région"),
            money=("amount",),
            shares=("share",),
            ints=("suppliers",),
            labels=PLACE_LABELS,
            height=560,
            display=df.drop(columns=["code"]),
        )


@_ui.fragment("Empreinte territoriale")
def communes_map(f) -> None:
    st.subheader("Communes d'un département")
    deps = cached.call("referential.departements")
    labels = dict(zip(deps["code"], deps["label"]))
    default = f.territory.codes[0] if f.territory is not None and f.territory.kind == "dep" else None
    options = list(labels)
    dep = st.selectbox(
        "Département",
        options,
        index=options.index(default) if default in options else None,
        format_func=labels.get,
        key="terr_dep",
        placeholder="Choisir un département…",
    )
    if not dep:
        st.caption("Choisissez un département pour voir la dépense par commune.")
        return
    df = cached.call("indicators.spend_by_commune", f)
    df = df[df["code"].notna() & df["code"].astype(str).str.startswith(dep)]
    fig = charts.commune_map(
        df, dep, f.territory, value_label=_amount_label(f), geojson_url=cached.geojson_url("commune", dep)
    )
    _ui.chart(fig, f"terr_communes_{dep}")


def _amount_label(f) -> str:
    return "Montant payé" if f.basis == "paid" else "Montant notifié"


_ui.guard(body, "Empreinte territoriale")

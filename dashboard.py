"""Empreinte: the dashboard's frame. Navigation, login gate, the sidebar filters every
page shares, and the data's freshness. Run: ``streamlit run dashboard.py``."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import streamlit as st

from analytics import auth, cached
from analytics.filters import Filters, Territory
from analytics.fmt import fmt_date

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("empreinte")

st.set_page_config(
    page_title="Empreinte",
    page_icon="📍",
    layout="wide",
    menu_items={
        "About": "Empreinte : l'empreinte territoriale, économique et sociale "
        "des achats publics. Logiciel libre."
    },
)

BASIS_LABELS = {"paid": "Payé (mandats)", "notified": "Notifié (marchés)"}
KIND_LABELS = {"buyer": "Territoire de l'acheteur", "dep": "Département(s)", "reg": "Région", "epci": "EPCI"}


def login_gate() -> str:
    """Stop here unless the user may see the dashboards; return the role."""
    if auth.login_enabled() and not auth.is_logged_in():
        st.title("Empreinte")
        st.write("Connectez-vous pour consulter les tableaux de bord de vos achats.")
        st.button("Se connecter", on_click=st.login, type="primary", key="login")
        st.stop()
    role = auth.current_role()
    if role is None:
        st.title("Empreinte")
        st.error("Votre compte n'a pas d'accès à ce tableau de bord. Demandez-le à l'administrateur.")
        st.button("Se déconnecter", on_click=st.logout, key="logout_denied")
        st.stop()
    return role


# The file name (stem) of each page by its address: until the frame has run once,
# Streamlit also serves a page under its file name (…/ess_inclusion).
PAGE_FILES: dict[str, str] = {}


def _page(file: str, **kw):
    page = st.Page("pages/" + file, **kw)
    PAGE_FILES[page.url_path] = Path(file).stem
    return page


def pages(role: str) -> dict:
    # Readers do not see the Import page in the menu; reached by its address, it refuses
    # every action (the role is checked again by each action on the server).
    data = [
        _page(
            "import_donnees.py",
            title="Import",
            icon=":material/upload_file:",
            url_path="import",
            visibility="visible" if role == "analyst" else "hidden",
        ),
        _page("methodes.py", title="Données et méthodes", icon=":material/menu_book:", url_path="methodes"),
    ]
    return {
        "Pilotage": [
            _page(
                "vue_ensemble.py",
                title="Vue d'ensemble",
                icon=":material/dashboard:",
                url_path="vue-ensemble",
                default=True,
            ),
            _page("spaser.py", title="SPASER", icon=":material/flag:", url_path="spaser"),
            _page("revue.py", title="Revue mensuelle", icon=":material/event_note:", url_path="revue"),
        ],
        "Analyse": [
            _page(
                "territoire.py",
                title="Empreinte territoriale",
                icon=":material/map:",
                url_path="territoire",
            ),
            _page(
                "economie.py",
                title="Empreinte économique",
                icon=":material/factory:",
                url_path="economie",
            ),
            _page(
                "ess_inclusion.py",
                title="ESS et inclusion",
                icon=":material/diversity_3:",
                url_path="ess-inclusion",
            ),
            _page(
                "fournisseurs.py",
                title="Fournisseurs",
                icon=":material/storefront:",
                url_path="fournisseurs",
            ),
            _page("sourcing.py", title="Sourcing", icon=":material/travel_explore:", url_path="sourcing"),
            _page("leviers.py", title="Leviers d'action", icon=":material/lightbulb:", url_path="leviers"),
        ],
        "Données": data,
    }


def _months(first: dt.date, last: dt.date) -> list[str]:
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _territory(fac: dict, buyer_siret: str | None) -> Territory | None:
    kind = st.sidebar.selectbox(
        "Territoire de référence",
        list(KIND_LABELS),
        format_func=KIND_LABELS.get,
        key="f_terr_kind",
        help="Le territoire où une dépense compte comme locale.",
    )
    if kind == "buyer":
        return cached.call_or_none("referential.default_territory", buyer_siret)
    choices = dict(cached.call("facets.territory_choices", kind))
    codes = st.sidebar.multiselect(
        "Codes",
        list(choices),
        format_func=lambda c: choices.get(c, c),
        key=f"f_terr_codes_{kind}",
        max_selections=1 if kind != "dep" else None,
        placeholder="Choisir…",
    )
    return Territory(kind, tuple(codes)) if codes else None


def sidebar_filters() -> Filters:
    """Read the sidebar widgets (kept across pages by their keys) into one Filters."""
    fac = cached.facets()
    today = dt.date.today()
    years = fac["years"] or [today.year]
    last = fac["last"] or today
    first = fac["first"] or dt.date(years[0], 1, 1)
    sb = st.sidebar
    sb.markdown("### Filtres")
    mode = sb.radio("Période", ["Année", "Mois"], horizontal=True, key="f_mode")
    if mode == "Année":
        year = sb.selectbox("Année", sorted(years, reverse=True), key="f_year")
        start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
        if start <= last < end:
            end = last  # the year to date, compared with the same dates a year before
    else:
        months = _months(first, last)
        default = (months[max(0, len(months) - 12)], months[-1])
        a, b = sb.select_slider("Mois", months, value=default, key="f_months")
        start = dt.date.fromisoformat(a + "-01")
        end = (dt.date.fromisoformat(b + "-01") + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    basis = sb.radio(
        "Base des montants",
        list(BASIS_LABELS),
        format_func=BASIS_LABELS.get,
        key="f_basis",
        help="Payé : mandats de la comptabilité. Notifié : montants des marchés (DECP), "
        "une estimation ou un plafond, pas un paiement.",
    )
    buyer_siret = None
    with sb.expander("Plus de filtres"):
        if len(fac["buyers"]) > 1:
            names = dict(fac["buyers"])
            buyer_siret = st.selectbox(
                "Entité acheteuse",
                [None, *names],
                format_func=lambda s: "Toutes" if s is None else f"{names[s] or s}",
                key="f_buyer",
            )
        services = st.multiselect(
            "Service / direction", fac["services"], key="f_services", placeholder="Tous"
        )
        cpv = dict(fac["cpv_divisions"])
        cpv_sel = st.multiselect(
            "Catégorie CPV (marchés)",
            list(cpv),
            format_func=lambda c: f"{c} {cpv.get(c, '')}"[:60],
            key="f_cpv",
            placeholder="Toutes",
        )
        nat = dict(fac["natures"])
        nat_sel = st.multiselect(
            "Nature comptable (mandats)",
            list(nat),
            format_func=lambda c: f"{c} {nat.get(c, '')}",
            key="f_natures",
            placeholder="Toutes",
        )
    territory = _territory(fac, buyer_siret)
    return Filters(
        date_from=start,
        date_to=end,
        basis=basis,
        buyer_siret=buyer_siret,
        territory=territory,
        services=tuple(services),
        cpv_divisions=tuple(cpv_sel),
        natures=tuple(nat_sel),
    )


def freshness(f: Filters, role: str) -> None:
    sb = st.sidebar
    sb.divider()
    terr = "non défini"
    if f.territory is not None:
        terr = cached.call_or_none("referential.territory_label", f.territory) or str(f.territory)
    extra = [
        f"{len(v)} {k}"
        for k, v in (("service(s)", f.services), ("CPV", f.cpv_divisions), ("nature(s)", f.natures))
        if v
    ]
    sb.caption(
        f"**Sélection** : {fmt_date(f.date_from)} → {fmt_date(f.date_to)} · {BASIS_LABELS[f.basis].lower()} · "
        f"territoire : {terr}" + (" · " + ", ".join(extra) if extra else "")
    )
    last = cached.last_import()
    if last:
        when = fmt_date(last["finished_at"]) if last.get("finished_at") else "?"
        sb.caption(
            f"**Données** : import n° {last['import_id']} ({last['kind']}, {last['file_name']}) du {when}"
        )
    else:
        sb.caption("**Données** : aucun import. Commencez par la page Import.")
    if auth.login_enabled():
        sb.caption(f"Connecté : {auth.who()} ({auth.role_label(role)})")
        sb.button("Se déconnecter", on_click=st.logout, key="logout")


def main() -> None:
    role = login_gate()
    try:
        cached.data_version(refresh=True)
    except Exception as exc:  # the database is locked by another process, or unreadable
        log.exception("Base inaccessible")
        st.error(f"La base de données n'est pas accessible : {exc}")
        st.stop()
    cached.preload()
    cached.resume()
    menu = pages(role)
    page = st.navigation(menu)
    wanted = st.session_state.pop("requested_path", None)
    if wanted:  # a page's address opened before the frame had run (pages/_ui.filters)
        match = [
            q
            for section in menu.values()
            for q in section
            if wanted in (q.url_path, PAGE_FILES.get(q.url_path))
        ]
        if match and match[0].url_path != page.url_path:
            st.switch_page(match[0])
    try:
        f = sidebar_filters()
    except Exception:
        log.exception("Filtres")
        st.sidebar.error("Les filtres n'ont pas pu être lus ; la période par défaut est utilisée.")
        f = Filters.year(dt.date.today().year)
    st.session_state["filters"] = f
    st.session_state["role"] = role
    freshness(f, role)
    page.run()


main()

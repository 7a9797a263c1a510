"""SPASER: the buyer's targets, actual against trajectory with a status, clause rates by
instrument, and the contracts notified since 22/08/2026 without an environmental
consideration. Targets are editable by analysts."""

import pandas as pd
import streamlit as st

from analytics import cached, charts, spaser
from analytics.fmt import fmt_number, fmt_pct, fmt_points
from pages import _spaser_ui, _ui

STATUS_COLORS = {"atteint": "green", "en avance": "blue", "en retard": "red", "non disponible": "gray"}


def body() -> None:
    f = _ui.filters()
    year = f.date_to.year
    st.title(f"SPASER {year}")
    if not cached.available("spaser.spaser_table"):
        st.info("Le suivi du SPASER n'est pas disponible dans cette version.")
        return
    _spaser_ui.report_button(year)
    # The year's table and the trajectory chart's from the headlines of whole calendar years,
    # computed once (one engine call) and shared with the ESS page's trend: the key is the
    # same for every period of the year.
    years = sorted({*cached.facets()["years"], year})
    heads = _ui.year_headlines(f, year)
    tables = spaser.tables_from(heads, cached.call("spaser.targets"), cached.call("spaser.base_year"), years)
    table = tables[year]
    if table is None or not len(table):
        st.info("Aucune cible SPASER définie : les analystes peuvent en saisir ci-dessous.")
    else:
        status_cards(table)
        trajectories(tables, table)
    instruments(f)
    compliance(f)
    _spaser_ui.targets_editor()


def status_cards(table: pd.DataFrame) -> None:
    cols = st.columns(4)
    for i, r in enumerate(table.itertuples()):
        hours = r.indicator == "insertion_hours"
        value = fmt_number(r.actual, 0) + " h" if hours and pd.notna(r.actual) else fmt_pct(r.actual)
        target = fmt_number(r.target, 0) + " h" if hours else fmt_pct(r.target)
        delta = None if pd.isna(r.delta_points) or hours else fmt_points(r.delta_points)
        with cols[i % 4].container(border=True):
            st.metric(
                _ui.short_label(r.indicator),
                value,
                delta=delta,
                help=f"{_ui.help_text(r.indicator, {})}\n\n"
                f"Trajectoire cette année : {fmt_pct(r.trajectory) if not hours else fmt_number(r.trajectory)}"
                + (f"\n\n{r.reason}" if isinstance(r.reason, str) and r.reason else ""),
            )
            color = STATUS_COLORS.get(r.status, "gray")
            st.markdown(f":{color}-badge[{r.status}] cible {target} en {int(r.target_year)}")


def trajectories(tables: dict, table: pd.DataFrame) -> None:
    st.subheader("Réalisé et trajectoire")
    years = cached.facets()["years"]
    wanted = [k for k in ("environmental_clause_rate", "social_clause_rate") if k in set(table["indicator"])]
    cols = st.columns(max(len(wanted), 1))
    for col, key in zip(cols, wanted):
        rows = []
        for y in years:
            t = tables[y]
            r = t[t["indicator"] == key]
            if len(r):
                rows.append({"year": y, "actual": r["actual"].iloc[0], "trajectory": r["trajectory"].iloc[0]})
        final = table.loc[table["indicator"] == key, "target"].iloc[0]
        with col:
            _ui.chart(
                charts.trajectory(pd.DataFrame(rows), label=_ui.label_of(key), final_target=final),
                f"spaser_traj_{key}",
            )


def instruments(f) -> None:
    st.subheader("Contrats par instrument")
    df = cached.call("spaser.instrument_rates", f)
    if not len(df):
        _ui.empty("decp", "Aucun contrat notifié sur la période.")
        return
    left, right = st.columns([2, 3])
    with left:
        _ui.chart(charts.bar_h(df, "Instrument", "Taux", kind="pct", top=10), "spaser_instruments")
    with right:
        _ui.table(
            df,
            "spaser_instr_table",
            shares=("Taux",),
            ints=("Contrats", "Contrats aux considérations connues"),
        )


def compliance(f) -> None:
    st.subheader("Contrats notifiés depuis le 22/08/2026 sans considération environnementale")
    st.caption((_ui.definitions().get("env_2026_compliance_count") or {}).get("definition", ""))
    df = cached.call("indicators.env_2026_compliance", f)
    if df is None or not len(df):
        st.success("Aucun contrat concerné sur la période choisie.")
        return
    df = df.drop(columns=["contract_key"], errors="ignore")
    _ui.table(
        df,
        "spaser_env2026",
        money=("amount",),
        dates=("date_notification",),
        labels={
            "contract_key": "Clé",
            "id": "N°",
            "objet": "Objet",
            "date_notification": "Notifié le",
            "amount": "Montant notifié",
            "cpv_division": "CPV",
            "procedure": "Procédure",
            "buyer": "Acheteur",
        },
    )


_ui.guard(body, "SPASER")

"""SPASER: the buyer's targets, actual against trajectory with a status, clause rates by
instrument, and the contracts notified since 22/08/2026 without an environmental
consideration. Targets are editable by analysts."""

import datetime as dt

import pandas as pd
import streamlit as st

from analytics import auth, cached, charts
from analytics.fmt import fmt_number, fmt_pct, fmt_points
from pages import _ui

STATUS_COLORS = {"atteint": "green", "en avance": "blue", "en retard": "red", "non disponible": "gray"}
INSTRUMENTS = {
    "considerations_sociales": ("Clause sociale", "Critère social", "Marché réservé"),
    "considerations_environnementales": ("Clause environnementale", "Critère environnemental"),
}


def body() -> None:
    f = _ui.filters()
    year = f.date_to.year
    st.title(f"SPASER {year}")
    if not cached.available("spaser.spaser_table"):
        st.info("Le suivi du SPASER n'est pas disponible dans cette version.")
        return
    report_button(year)
    table = cached.call("spaser.spaser_table", year, f)
    if table is None or not len(table):
        st.info("Aucune cible SPASER définie : les analystes peuvent en saisir ci-dessous.")
    else:
        status_cards(table)
        trajectories(f, table)
    instruments(f)
    compliance(f)
    targets_editor()


REPORT_FORMATS = {
    "pdf": ("PDF", "application/pdf"),
    "html": ("HTML", "text/html"),
    "xlsx": ("XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def report_button(year: int) -> None:
    """The annual report (L.2111-3) of a chosen year, generated when the button is clicked.
    A reading: every role may download it."""
    years = sorted(cached.facets()["years"], reverse=True)
    if not years:  # nothing imported: no report to publish
        return
    with st.container(border=True):
        st.markdown("**Rapport annuel SPASER** (code de la commande publique, art. L.2111-3)")
        row = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
        chosen = row.selectbox(
            "Année",
            years,
            index=years.index(year) if year in years else 0,
            key="spaser_report_year",
            width=200,
        )
        fmt = (
            row.segmented_control(
                "Format",
                list(REPORT_FORMATS),
                default="pdf",
                format_func=lambda k: REPORT_FORMATS[k][0],
                key="spaser_report_fmt",
            )
            or "pdf"
        )
        row.download_button(
            f"Télécharger le rapport {chosen} ({REPORT_FORMATS[fmt][0]})",
            data=lambda: report_file(chosen, fmt),
            file_name=f"rapport_spaser_{chosen}.{fmt}",
            mime=REPORT_FORMATS[fmt][1],
            key="spaser_report_dl",
            icon=":material/download:",
            on_click="ignore",
            type="primary",
        )
        st.caption(
            "Indicateurs SPASER en nombre et en valeur avec leurs cibles, empreinte économique et "
            "territoriale, heures d'insertion, conformité 2026, sources et définitions. "
            "Le fichier est produit au clic (quelques secondes pour le PDF)."
        )


def report_file(year: int, fmt: str) -> bytes:
    """What the download button sends: ``report.report_bytes`` on a cursor of the app's
    connection (run by Streamlit outside the page's script, hence no session cache)."""
    from analytics import report

    with cached.cursor() as cur:
        return report.report_bytes(cur, year=year, fmt=fmt)


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


def trajectories(f, table: pd.DataFrame) -> None:
    st.subheader("Réalisé et trajectoire")
    years = cached.facets()["years"]
    wanted = [k for k in ("environmental_clause_rate", "social_clause_rate") if k in set(table["indicator"])]
    cols = st.columns(max(len(wanted), 1))
    for col, key in zip(cols, wanted):
        rows = []
        for y in years:
            t = cached.call(
                "spaser.spaser_table", y, f.with_(date_from=dt.date(y, 1, 1), date_to=dt.date(y, 12, 31))
            )
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
    contracts = cached.call("indicators.contracts_table", f)
    if contracts is None or not len(contracts):
        _ui.empty("decp", "Aucun contrat notifié sur la période.")
        return
    rows = []
    for col, names in INSTRUMENTS.items():
        known = contracts[col].dropna()
        for name in names:
            n = int(sum(name in list(v) for v in known))
            rows.append(
                {
                    "Instrument": name,
                    "Contrats": n,
                    "Taux": n / len(known) if len(known) else None,
                    "Contrats aux considérations connues": len(known),
                }
            )
    df = pd.DataFrame(rows)
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


def targets_editor() -> None:
    st.subheader("Cibles")
    from analytics import spaser

    tg = cached.call("spaser.targets")
    labels = {k: _ui.label_of(k) for k in spaser.SPASER_INDICATORS}
    view = pd.DataFrame(
        {
            "indicator": tg["indicator"],
            "Année": tg["year"].astype(int),
            "Cible": [
                v if k == "insertion_hours" else v * 100 for k, v in zip(tg["indicator"], tg["target"])
            ],
            "Source": tg["source"],
        }
    )
    st.caption(
        "Cibles en % (heures pour les heures d'insertion). Sans cible saisie, le défaut national s'applique "
        "(100 % de contrats avec une considération environnementale, 30 % avec une considération sociale)."
    )
    if not auth.is_analyst():
        _ui.table(view.assign(indicator=view["indicator"].map(labels)), "spaser_targets_ro")
        return
    with st.form("spaser_targets_form"):
        edited = st.data_editor(
            view,
            key="spaser_targets",
            num_rows="dynamic",
            hide_index=True,
            disabled=["Source"],
            column_config={
                "indicator": st.column_config.SelectboxColumn(
                    "Indicateur", options=list(labels), required=True, format_func=labels.get
                ),
                "Année": st.column_config.NumberColumn(min_value=2015, max_value=2040, step=1, required=True),
                "Cible": st.column_config.NumberColumn(min_value=0.0, required=True, format="%.1f"),
            },
        )
        if st.form_submit_button("Enregistrer les cibles"):
            save_targets(tg, edited)


def save_targets(before: pd.DataFrame, edited: pd.DataFrame) -> None:
    from analytics import spaser

    try:
        auth.require_analyst()
        keep = set()
        for r in edited.dropna(subset=["indicator", "Année", "Cible"]).itertuples():
            value = float(r.Cible) if r.indicator == "insertion_hours" else float(r.Cible) / 100
            cached.write(spaser.set_target, r.indicator, int(r.Année), value)
            keep.add((r.indicator, int(r.Année)))
        for r in before[before["source"] == "acheteur"].itertuples():
            if (r.indicator, int(r.year)) not in keep:
                cached.write(spaser.delete_target, r.indicator, int(r.year))
    except (ValueError, auth.PermissionDenied) as exc:
        st.error(f"Cibles non enregistrées : {exc}")
        return
    st.rerun()


_ui.guard(body, "SPASER")
